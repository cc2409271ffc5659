/* tags.h - room tags of a user (domain logic, no HTTP): kept as the room
 * account data event m.tag ({"tags": {tag: {order?}}}), so /sync reports
 * them like any room account data. */
#ifndef AL_TAGS_H
#define AL_TAGS_H

#include <jansson.h>

#include "db.h"
#include "error.h"

#define TAGS_NAME_MAX 255     /* bytes of a tag name */
#define TAGS_CONTENT_MAX 4096 /* bytes of one tag's content as JSON */
#define TAGS_PER_ROOM_MAX 100

/* {tag: content, ...} of user_id in room_id ({} when none). New reference. */
json_t *tags_get(struct db *db, const char *user_id, const char *room_id, struct al_error *err);

/* Set tag (content an object, order a number when present) or, with
 * content NULL, remove it. Bounded as above (400 M_INVALID_PARAM). */
int tags_put(struct db *db, const char *user_id, const char *room_id, const char *tag, json_t *content,
	     struct al_error *err);

#endif
