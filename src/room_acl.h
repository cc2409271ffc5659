/* room_acl.h - server ACLs (spec "Server Access Control Lists"): the
 * m.room.server_acl state event of a room decides which servers may take
 * part in it over federation. Domain logic, no HTTP: the federation layer
 * asks before it serves a room endpoint or accepts a PDU or EDU.
 *
 * A server name is matched without its port. An IP literal is refused
 * when allow_ip_literals is false; then a deny entry that matches refuses
 * it; then it must match an allow entry (no allow list: nobody). Entries
 * are globs (* any run of characters, ? one), matched case-insensitively;
 * entries that are not strings are ignored. A room without the event
 * allows everyone. A room created with m.federate false admits no other
 * server at all. */
#ifndef AL_ROOM_ACL_H
#define AL_ROOM_ACL_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

#define ROOM_ACL_MAX_ENTRIES 1000 /* entries looked at per list */

/* Does the content of an m.room.server_acl event allow server? Pure. */
bool room_acl_allows(const json_t *content, const char *server);

/* Glob match (* and ?, case-insensitive), bounded work. Pure. */
bool room_acl_glob(const char *pattern, const char *name);

/* 0 when server may take part in room_id (also when the room is unknown
 * here), -1 with 403 M_FORBIDDEN when its ACL refuses it, or a database
 * error. */
int room_acl_check(struct db *db, const char *room_id, const char *server, struct al_error *err);

/* Of the rooms named by the keys of rooms (an object; values ignored),
 * those whose ACL refuses server: a new object room_id -> true (empty on
 * a database error, which is logged). One query. */
json_t *room_acl_denied_rooms(struct db *db, const json_t *rooms, const char *server);

#endif
