/* handlers_room_remote.h - the client requests on rooms that need other
 * servers: joining a room this server is not in (by ID with server_name /
 * via, or by an alias on another server; accepting a remote invite),
 * rejecting a remote invite, inviting a user of another server (also the
 * remote invitees of createRoom). The local room code does everything
 * else. */
#ifndef AL_HANDLERS_ROOM_REMOTE_H
#define AL_HANDLERS_ROOM_REMOTE_H

#include <jansson.h>
#include <stdbool.h>

#include "http.h"

/* A membership change from handlers_room.c: true when it needs other
 * servers, the handshake started and the request will be answered when it
 * ends; false when the local path handles it. */
bool room_remote_membership(struct http_req *req, const char *room, const char *target, const char *membership,
			    const char *reason, json_t *extra, bool reply_room_id);

/* After createRoom: invite the invitees on other servers (body.invite),
 * then answer {room_id}. False (nothing started) when there are none. */
bool room_remote_create_invites(struct http_req *req, const char *room_id, json_t *body);

/* GET /directory/room/{alias} for an alias on another server: asked
 * there (true, answered later); false for local aliases. */
bool room_remote_alias_lookup(struct http_req *req, const char *alias);

/* Is user_id on another server? */
bool room_remote_user_is_remote(struct http_req *req, const char *user_id);

#endif
