/* fed_edu.c - the room EDUs (spec "Typing Notifications", "Receipts",
 * "Presence"): inbound m.typing, m.receipt and m.presence from /send, each
 * checked to be about a user of the origin (others are dropped, as are
 * those for rooms whose server ACL refuses the origin or where the user is
 * not joined); outbound ones queued in the durable outbox for the servers
 * of a room or of a user's rooms, in the caller's transaction. Inbound
 * m.device_list_update is accepted and ignored (no end-to-end keys here). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cjson.h"
#include "fed_internal.h"
#include "fed_sender.h"
#include "log.h"
#include "room_acl.h"
#include "typing.h"

#define EDU_MAX_ROWS 1000 /* receipts / presence updates per transaction */
#define EDU_ID_MAX 255
#define FED_TYPING_TIMEOUT_MS 30000

/* The server of a user ID column, in SQL. */
#define SRV_USER "substr(user_id, strpos(user_id, ':') + 1)"
#define SRV_B_USER "substr(b.user_id, strpos(b.user_id, ':') + 1)"
#define SRV_M_USER "substr(m.user_id, strpos(m.user_id, ':') + 1)"

static bool from_origin(const char *user_id, const char *origin)
{
	const char *c = user_id ? strchr(user_id, ':') : NULL;
	return user_id && user_id[0] == '@' && strlen(user_id) <= EDU_ID_MAX && c && strcasecmp(c + 1, origin) == 0;
}

static bool id_ok(const char *s, char sigil)
{
	return s && s[0] == sigil && strlen(s) <= EDU_ID_MAX;
}

/* ---- outbound ---- */

/* sql: $1 key, $2 the EDU (edu_type + content), $3 the server to leave out. */
static int enqueue_sql(struct db *db, const char *sql, const char *key, const char *edu_type, json_t *content,
		       const char *exclude, struct al_error *err)
{
	json_t *payload = json_pack("{s:s, s:O}", "edu_type", edu_type, "content", content);
	char *text = payload ? cjson_encode(payload, NULL, err) : NULL;
	json_decref(payload);
	if (!text)
		return -1;
	const char *p[] = {key, text, exclude};
	PGresult *r = db_exec(db, err, sql, 3, p);
	free(text);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

int federation_edu_to_room(struct db *db, const char *room_id, const char *self, const char *edu_type, json_t *content,
			   struct al_error *err)
{
	return enqueue_sql(db,
			   "INSERT INTO federation_outbox (destination, kind, payload) "
			   "SELECT DISTINCT " SRV_USER ", 'edu', $2::jsonb FROM room_memberships "
			   "WHERE room_id = $1 AND membership = 'join' AND lower(" SRV_USER ") <> lower($3)",
			   room_id, edu_type, content, self, err);
}

int federation_edu_to_peers(struct db *db, const char *user_id, const char *edu_type, json_t *content,
			    struct al_error *err)
{
	const char *c = strchr(user_id, ':');
	if (!c)
		return al_error_set(err, 400, "M_INVALID_PARAM", "malformed user ID");
	return enqueue_sql(db,
			   "INSERT INTO federation_outbox (destination, kind, payload) "
			   "SELECT DISTINCT " SRV_B_USER ", 'edu', $2::jsonb FROM room_memberships a "
			   "JOIN room_memberships b ON b.room_id = a.room_id WHERE a.user_id = $1 AND "
			   "a.membership = 'join' AND b.membership = 'join' AND lower(" SRV_B_USER ") <> lower($3)",
			   user_id, edu_type, content, c + 1, err);
}

int federation_presence_for_room(struct db *db, const char *room_id, const char *self, const char *dest,
				 struct al_error *err)
{
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, http_now_ms());
	const char *p[] = {room_id, self, dest, now};
	PGresult *r = db_exec(
		db, err,
		"WITH dests AS (SELECT DISTINCT " SRV_USER " AS d FROM room_memberships WHERE room_id = $1 "
		"AND membership = 'join' AND lower(" SRV_USER ") <> lower($2) "
		"AND ($3::text IS NULL OR lower(" SRV_USER ") = lower($3))), "
		"push AS (SELECT jsonb_agg(jsonb_build_object('user_id', p.user_id, 'presence', p.presence, "
		"'status_msg', p.status_msg, 'last_active_ago', greatest(0, $4::bigint - p.last_active_ts), "
		"'currently_active', p.presence = 'online' AND $4::bigint - p.last_active_ts < 60000)) AS j "
		"FROM presence p JOIN room_memberships m ON m.user_id = p.user_id WHERE m.room_id = $1 "
		"AND m.membership = 'join' AND lower(" SRV_M_USER ") = lower($2)) "
		"INSERT INTO federation_outbox (destination, kind, payload) SELECT d, 'edu', "
		"jsonb_build_object('edu_type', 'm.presence', 'content', jsonb_build_object('push', push.j)) "
		"FROM dests, push WHERE push.j IS NOT NULL",
		4, p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

/* ---- inbound ---- */

/* Of rows (objects with room_id and user_id), those whose room's ACL
 * admits origin and whose user is joined there; new array. One query. */
static json_t *admitted(struct db *db, const char *origin, json_t *rows, struct al_error *err)
{
	json_t *out = json_array();
	json_t *rooms = json_object();
	size_t i;
	json_t *row;
	json_array_foreach(rows, i, row)
	{
		json_object_set_new(rooms, json_string_value(json_object_get(row, "room_id")), json_true());
	}
	json_t *denied = room_acl_denied_rooms(db, rooms, origin);
	json_decref(rooms);
	json_t *keep = json_array();
	json_array_foreach(rows, i, row)
	{
		if (!json_object_get(denied, json_string_value(json_object_get(row, "room_id"))))
			json_array_append(keep, row);
	}
	json_decref(denied);
	char *text = json_array_size(keep) ? cjson_encode(keep, NULL, err) : NULL;
	if (!text) {
		json_decref(keep);
		return out;
	}
	const char *p[] = {text};
	PGresult *r = db_exec(db, err,
			      "SELECT x.ord - 1 FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY x(v, ord) "
			      "JOIN room_memberships m ON m.room_id = x.v->>'room_id' AND m.user_id = x.v->>'user_id' "
			      "AND m.membership = 'join' ORDER BY x.ord",
			      1, p);
	free(text);
	for (int k = 0; r && k < PQntuples(r); k++)
		json_array_append(out, json_array_get(keep, (size_t)atoll(PQgetvalue(r, k, 0))));
	PQclear(r);
	json_decref(keep);
	return out;
}

static int typing_edu(struct app *app, struct db *db, const char *origin, json_t *contents, struct al_error *err)
{
	json_t *rows = json_array();
	size_t i;
	json_t *c;
	json_array_foreach(contents, i, c)
	{
		const char *room_id = json_string_value(json_object_get(c, "room_id"));
		const char *user_id = json_string_value(json_object_get(c, "user_id"));
		if (id_ok(room_id, '!') && from_origin(user_id, origin) &&
		    json_is_boolean(json_object_get(c, "typing")))
			json_array_append(rows, c);
		else
			log_info("fed_edu", "m.typing dropped origin=%s user=%s", origin, user_id ? user_id : "-");
	}
	json_t *ok = admitted(db, origin, rows, err);
	json_decref(rows);
	int64_t now = http_now_ms();
	json_array_foreach(ok, i, c)
	{
		typing_set(app->typing, json_string_value(json_object_get(c, "room_id")),
			   json_string_value(json_object_get(c, "user_id")), json_is_true(json_object_get(c, "typing")),
			   FED_TYPING_TIMEOUT_MS, now);
	}
	json_decref(ok);
	return 0;
}

/* One receipt row per (room, user, thread): the last event ID listed. */
static void receipt_rows(json_t *rows, const char *origin, json_t *content)
{
	const char *room_id;
	json_t *types;
	json_object_foreach(content, room_id, types)
	{
		json_t *users = json_object_get(types, "m.read");
		const char *user_id;
		json_t *rr;
		json_object_foreach(users, user_id, rr)
		{
			json_t *ids = json_object_get(rr, "event_ids");
			const char *eid = json_string_value(json_array_get(ids, json_array_size(ids) - 1));
			json_t *data = json_object_get(rr, "data");
			const char *thread = json_string_value(json_object_get(data, "thread_id"));
			json_t *ts = json_object_get(data, "ts");
			if (!id_ok(room_id, '!') || !from_origin(user_id, origin) || !id_ok(eid, '$') ||
			    (thread && strlen(thread) > EDU_ID_MAX) || json_array_size(rows) >= EDU_MAX_ROWS) {
				log_info("fed_edu", "m.receipt dropped origin=%s user=%s", origin, user_id);
				continue;
			}
			json_array_append_new(
				rows,
				json_pack("{s:s, s:s, s:s, s:s, s:I, s:I}", "room_id", room_id, "user_id", user_id,
					  "event_id", eid, "thread_id", thread ? thread : "", "ts",
					  (json_int_t)(json_is_integer(ts) ? json_integer_value(ts) : http_now_ms()),
					  "ord", (json_int_t)json_array_size(rows)));
		}
	}
}

static int receipt_edu(struct app *app, struct db *db, const char *origin, json_t *contents, struct al_error *err)
{
	(void)app;
	json_t *rows = json_array();
	size_t i;
	json_t *c;
	json_array_foreach(contents, i, c)
	{
		receipt_rows(rows, origin, c);
	}
	json_t *ok = admitted(db, origin, rows, err);
	json_decref(rows);
	int rc = 0;
	char *text = json_array_size(ok) ? cjson_encode(ok, NULL, err) : NULL;
	json_decref(ok);
	if (!text)
		return 0;
	const char *p[] = {text};
	/* the stream lock (room.h), held to the commit of the transaction */
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(6006)", 0, NULL);
	PQclear(r);
	r = r ? db_exec(db, err,
			"INSERT INTO receipts AS x (room_id, user_id, receipt_type, thread_id, event_id, ts, "
			"stream_ordering) SELECT room_id, user_id, 'm.read', thread_id, event_id, ts, "
			"nextval('al_stream_seq') FROM (SELECT DISTINCT ON (room_id, user_id, thread_id) y.* FROM "
			"jsonb_to_recordset($1::jsonb) y(room_id text, user_id text, event_id text, "
			"thread_id text, ts bigint, ord bigint) "
			"WHERE EXISTS (SELECT 1 FROM events e WHERE e.event_id = y.event_id AND e.room_id = y.room_id) "
			"ORDER BY room_id, user_id, thread_id, ord DESC) z "
			"ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = "
			"EXCLUDED.event_id, ts = EXCLUDED.ts, stream_ordering = EXCLUDED.stream_ordering "
			"WHERE coalesce((SELECT stream_ordering FROM events WHERE event_id = x.event_id), 0) < "
			"(SELECT stream_ordering FROM events WHERE event_id = EXCLUDED.event_id)",
			1, p)
	      : NULL;
	free(text);
	if (!r)
		rc = -1;
	PQclear(r);
	return rc;
}

static bool presence_ok(const char *s)
{
	return s && (strcmp(s, "online") == 0 || strcmp(s, "unavailable") == 0 || strcmp(s, "offline") == 0);
}

static int presence_edu(struct app *app, struct db *db, const char *origin, json_t *contents, struct al_error *err)
{
	(void)app;
	json_t *rows = json_array();
	int64_t now = http_now_ms();
	size_t i, k;
	json_t *c, *u;
	json_array_foreach(contents, i, c)
	{
		json_array_foreach(json_object_get(c, "push"), k, u)
		{
			const char *user_id = json_string_value(json_object_get(u, "user_id"));
			const char *state = json_string_value(json_object_get(u, "presence"));
			json_t *msg = json_object_get(u, "status_msg");
			json_t *ago = json_object_get(u, "last_active_ago");
			if (!from_origin(user_id, origin) || !presence_ok(state) ||
			    (msg && !json_is_null(msg) &&
			     (!json_is_string(msg) || strlen(json_string_value(msg)) > 1024)) ||
			    json_array_size(rows) >= EDU_MAX_ROWS)
				continue;
			int64_t a = json_is_integer(ago) && json_integer_value(ago) > 0 ? json_integer_value(ago) : 0;
			json_array_append_new(
				rows, json_pack("{s:s, s:s, s:O?, s:I, s:I}", "user_id", user_id, "presence", state,
						"status_msg", json_is_string(msg) ? msg : NULL, "ts",
						(json_int_t)(now - a), "ord", (json_int_t)json_array_size(rows)));
		}
	}
	char *text = json_array_size(rows) ? cjson_encode(rows, NULL, err) : NULL;
	json_decref(rows);
	if (!text)
		return 0;
	const char *p[] = {text};
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(6006)", 0, NULL);
	PQclear(r);
	r = r ? db_exec(db, err,
			"INSERT INTO presence (user_id, presence, status_msg, last_active_ts, stream_ordering) "
			"SELECT user_id, presence, status_msg, ts, nextval('al_stream_seq') FROM ("
			"SELECT DISTINCT ON (user_id) y.* FROM jsonb_to_recordset($1::jsonb) "
			"y(user_id text, presence text, status_msg text, ts bigint, ord bigint) "
			"ORDER BY user_id, ord DESC) z "
			"ON CONFLICT (user_id) DO UPDATE SET presence = EXCLUDED.presence, status_msg = "
			"EXCLUDED.status_msg, last_active_ts = EXCLUDED.last_active_ts, stream_ordering = "
			"EXCLUDED.stream_ordering",
			1, p)
	      : NULL;
	free(text);
	int rc = r ? 0 : -1;
	PQclear(r);
	return rc;
}

static int ignore_edu(struct app *app, struct db *db, const char *origin, json_t *contents, struct al_error *err)
{
	(void)app;
	(void)db;
	(void)err;
	log_info("fed_edu", "ignored %zu EDUs origin=%s (no end-to-end keys here)", json_array_size(contents), origin);
	return 0;
}

int fed_edu_register_all(void)
{
	int rc = 0;
	rc |= fed_edu_register("m.typing", typing_edu);
	rc |= fed_edu_register("m.receipt", receipt_edu);
	rc |= fed_edu_register("m.presence", presence_edu);
	rc |= fed_edu_register("m.device_list_update", ignore_edu);
	rc |= fed_edu_register("m.signing_key_update", ignore_edu);
	return rc ? -1 : 0;
}
