/* room_directory.h - the public room directory (domain logic, no HTTP):
 * the rooms with rooms.is_public (createRoom visibility "public", or PUT
 * /directory/list/room/{roomId}), listed with their name, topic, aliases,
 * avatar and member count, searched and paginated. */
#ifndef AL_ROOM_DIRECTORY_H
#define AL_ROOM_DIRECTORY_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

#define ROOM_DIRECTORY_MAX_LIMIT 1000 /* rooms per page; also the page without a limit */
#define ROOM_DIRECTORY_SEARCH_MAX 256 /* bytes of generic_search_term */

/* One page: {chunk, next_batch?, prev_batch?, total_room_count_estimate}.
 * limit <= 0: ROOM_DIRECTORY_MAX_LIMIT. since: a next_batch/prev_batch
 * token or NULL (400 M_INVALID_PARAM when malformed). search: NULL or a
 * case-insensitive substring of name, topic or canonical alias. Ordered by
 * joined members (most first), then room ID. New reference. */
json_t *room_directory_list(struct db *db, int limit, const char *since, const char *search, struct al_error *err);

/* "public" or "private"; 404 M_NOT_FOUND for an unknown room. */
int room_directory_get_visibility(struct db *db, const char *room_id, bool *is_public, struct al_error *err);

/* Publish or hide a room: user_id must be joined with the power to send
 * m.room.canonical_alias (403 M_FORBIDDEN), the room known (404). */
int room_directory_set_visibility(struct db *db, const char *room_id, const char *user_id, bool is_public,
				  struct al_error *err);

/* The content of an m.room.canonical_alias event for room_id: alias and
 * alt_aliases (at most ROOM_DIRECTORY_ALT_ALIASES_MAX) must be room aliases
 * (400 M_INVALID_PARAM); those of server_name must exist and point to
 * room_id (400 M_BAD_ALIAS). */
#define ROOM_DIRECTORY_ALT_ALIASES_MAX 100
int room_directory_check_canonical(struct db *db, const char *server_name, const char *room_id, json_t *content,
				   struct al_error *err);

/* After alias of room_id was deleted: the room's m.room.canonical_alias
 * content without it, or NULL (and err untouched) when it does not name it.
 * New reference. */
json_t *room_directory_canonical_without(struct db *db, const char *room_id, const char *alias, struct al_error *err);

#endif
