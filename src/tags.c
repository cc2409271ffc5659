#include "tags.h"

#include <stdlib.h>
#include <string.h>

/* Stream writers draw positions under this lock and hold it to commit
 * (room.c, sync.c): it also makes the read-modify-write below atomic. */
#define TAGS_STREAM_LOCK "6006"

static json_t *tags_of(const char *content_text)
{
	json_t *c = content_text ? json_loads(content_text, 0, NULL) : NULL;
	json_t *tags = json_object_get(c, "tags");
	json_t *out = json_is_object(tags) ? json_deep_copy(tags) : json_object();
	json_decref(c);
	return out;
}

json_t *tags_get(struct db *db, const char *user_id, const char *room_id, struct al_error *err)
{
	const char *p[] = {user_id, room_id};
	PGresult *r = db_exec(db, err,
			      "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = 'm.tag'",
			      2, p);
	if (!r)
		return NULL;
	json_t *tags = tags_of(PQntuples(r) == 1 ? PQgetvalue(r, 0, 0) : NULL);
	PQclear(r);
	if (!tags)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return tags;
}

int tags_put(struct db *db, const char *user_id, const char *room_id, const char *tag, json_t *content,
	     struct al_error *err)
{
	if (!tag || !*tag || strlen(tag) > TAGS_NAME_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "tag must be 1-%d bytes", TAGS_NAME_MAX);
	if (content) {
		json_t *order = json_object_get(content, "order");
		if (!json_is_object(content) || (order && !json_is_number(order)))
			return al_error_set(err, 400, "M_INVALID_PARAM", "a tag is an object whose order is a number");
		char *text = json_dumps(content, JSON_COMPACT);
		size_t n = text ? strlen(text) : 0;
		free(text);
		if (!n || n > TAGS_CONTENT_MAX)
			return al_error_set(err, 400, "M_INVALID_PARAM", "tag content is too large");
	}
	if (db_begin(db, err) < 0)
		return -1;
	json_t *tags = NULL;
	char *text = NULL;
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(" TAGS_STREAM_LOCK ")", 0, NULL);
	if (!r)
		goto fail;
	PQclear(r);
	if (!(tags = tags_get(db, user_id, room_id, err)))
		goto fail;
	if (content) {
		if (!json_object_get(tags, tag) && json_object_size(tags) >= TAGS_PER_ROOM_MAX) {
			al_error_set(err, 400, "M_INVALID_PARAM", "at most %d tags per room", TAGS_PER_ROOM_MAX);
			goto fail;
		}
		json_object_set(tags, tag, content);
	} else {
		json_object_del(tags, tag);
	}
	json_t *doc = json_pack("{s:O}", "tags", tags);
	text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(doc);
	if (!text) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	const char *p[] = {user_id, room_id, text};
	r = db_exec(db, err,
		    "INSERT INTO account_data (user_id, room_id, type, content, stream_ordering) "
		    "VALUES ($1, $2, 'm.tag', $3, nextval('al_stream_seq')) ON CONFLICT (user_id, room_id, type) "
		    "DO UPDATE SET content = EXCLUDED.content, stream_ordering = EXCLUDED.stream_ordering",
		    3, p);
	if (!r)
		goto fail;
	PQclear(r);
	json_decref(tags);
	free(text);
	return db_commit(db, err);
fail:
	db_rollback(db);
	json_decref(tags);
	free(text);
	return -1;
}
