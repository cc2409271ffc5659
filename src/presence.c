#include "presence.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "federation.h"

/* The stream lock of room.c and sync.c: positions are drawn under it and it
 * is held to commit, so /sync never sees position N+1 before N. */
#define PRESENCE_STREAM_LOCK "6006"

/* viewer ($1) may see user ($2): herself, or a joined room in common. */
#define PRESENCE_VISIBLE_SQL                                                                                     \
	"($1 = $2 OR EXISTS (SELECT 1 FROM room_memberships a JOIN room_memberships b ON b.room_id = a.room_id " \
	"WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = $2 AND b.membership = 'join'))"

bool presence_state_valid(const char *s)
{
	return s && (strcmp(s, "online") == 0 || strcmp(s, "unavailable") == 0 || strcmp(s, "offline") == 0);
}

static int64_t col_i64(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static json_t *content_of(PGresult *r, int row, int col, int64_t now_ms);

/* The new presence goes to the servers sharing a room with the user
 * (m.presence EDU); r: presence, status_msg, last_active_ts. */
static int presence_to_servers(struct db *db, const char *user_id, PGresult *r, int64_t now_ms, struct al_error *err)
{
	json_t *c = content_of(r, 0, 0, now_ms);
	if (!c)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_object_set_new(c, "user_id", json_string(user_id));
	json_t *edu = json_pack("{s:[o]}", "push", c);
	int rc = edu ? federation_edu_to_peers(db, user_id, "m.presence", edu, err)
		     : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_decref(edu);
	return rc;
}

static int write_state(struct db *db, const char *user_id, const char *state, const char *status_msg, bool keep_msg,
		       int64_t now_ms, struct al_error *err)
{
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	const char *p[] = {user_id, state, status_msg, now, keep_msg ? "t" : "f"};
	if (db_begin(db, err) < 0)
		return -1;
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(" PRESENCE_STREAM_LOCK ")", 0, NULL);
	if (!r)
		goto fail;
	PQclear(r);
	/* Going offline is no activity: last_active_ts stays. */
	r = db_exec(db, err,
		    "INSERT INTO presence (user_id, presence, status_msg, last_active_ts, stream_ordering) "
		    "VALUES ($1, $2, $3, $4::bigint, nextval('al_stream_seq')) ON CONFLICT (user_id) DO UPDATE SET "
		    "presence = EXCLUDED.presence, "
		    "status_msg = CASE WHEN $5::boolean THEN presence.status_msg ELSE EXCLUDED.status_msg END, "
		    "last_active_ts = CASE WHEN EXCLUDED.presence = 'offline' THEN presence.last_active_ts "
		    "ELSE EXCLUDED.last_active_ts END, stream_ordering = EXCLUDED.stream_ordering "
		    "RETURNING presence, status_msg, last_active_ts",
		    5, p);
	if (!r)
		goto fail;
	int rc = PQntuples(r) == 1 ? presence_to_servers(db, user_id, r, now_ms, err) : 0;
	PQclear(r);
	if (rc < 0)
		goto fail;
	return db_commit(db, err);
fail:
	db_rollback(db);
	return -1;
}

int presence_set(struct db *db, const char *user_id, const char *state, const char *status_msg, int64_t now_ms,
		 struct al_error *err)
{
	if (!presence_state_valid(state))
		return al_error_set(err, 400, "M_INVALID_PARAM", "presence must be online, unavailable or offline");
	if (status_msg && strlen(status_msg) > PRESENCE_STATUS_MSG_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "status_msg is too long (at most %d bytes)",
				    PRESENCE_STATUS_MSG_MAX);
	return write_state(db, user_id, state, status_msg, false, now_ms, err);
}

int presence_touch(struct db *db, const char *user_id, const char *state, int64_t now_ms, bool *changed,
		   struct al_error *err)
{
	*changed = false;
	if (!presence_state_valid(state))
		return al_error_set(err, 400, "M_INVALID_PARAM", "set_presence must be online, unavailable or offline");
	const char *p[] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT presence, last_active_ts FROM presence WHERE user_id = $1", 1, p);
	if (!r)
		return -1;
	bool same = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), state) == 0;
	int64_t last = PQntuples(r) == 1 ? col_i64(r, 0, 1) : 0;
	PQclear(r);
	if (!same) {
		if (write_state(db, user_id, state, NULL, true, now_ms, err) < 0)
			return -1;
		*changed = true;
		return 0;
	}
	if (strcmp(state, "offline") == 0 || now_ms - last < PRESENCE_ACTIVE_MS)
		return 0;
	char now[24];
	snprintf(now, sizeof(now), "%" PRId64, now_ms);
	const char *u[] = {user_id, now};
	r = db_exec(db, err, "UPDATE presence SET last_active_ts = $2::bigint WHERE user_id = $1", 2, u);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

/* The m.presence content of a row (presence, status_msg, last_active_ts). */
static json_t *content_of(PGresult *r, int row, int col, int64_t now_ms)
{
	if (PQgetisnull(r, row, col))
		return json_pack("{s:s}", "presence", "offline");
	const char *state = PQgetvalue(r, row, col);
	int64_t ago = now_ms - col_i64(r, row, col + 2);
	if (ago < 0)
		ago = 0;
	if (strcmp(state, "online") == 0 && ago >= PRESENCE_IDLE_MS)
		state = "unavailable";
	json_t *c = json_pack("{s:s, s:I, s:b}", "presence", state, "last_active_ago", (json_int_t)ago,
			      "currently_active", strcmp(state, "online") == 0 && ago < PRESENCE_ACTIVE_MS);
	if (c && !PQgetisnull(r, row, col + 1))
		json_object_set_new(c, "status_msg", json_string(PQgetvalue(r, row, col + 1)));
	return c;
}

json_t *presence_get(struct db *db, const char *viewer, const char *user_id, int64_t now_ms, struct al_error *err)
{
	const char *p[] = {viewer, user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT " PRESENCE_VISIBLE_SQL ", p.presence, p.status_msg, p.last_active_ts "
			      "FROM (SELECT 1) x LEFT JOIN presence p ON p.user_id = $2",
			      2, p);
	if (!r)
		return NULL;
	json_t *c = NULL;
	if (PQntuples(r) != 1 || strcmp(PQgetvalue(r, 0, 0), "t") != 0)
		al_error_set(err, 403, "M_FORBIDDEN", "You are not allowed to see their presence");
	else if (!(c = content_of(r, 0, 1, now_ms)))
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	PQclear(r);
	return c;
}

/* presence_sync_events after a token: from the changes since (presence
 * rows, and memberships by their stream position: hers, then those of
 * the rooms she is in) instead of every room-mate of every room of hers
 * (35 ms for a user in 1,000 rooms under load). p: user, since, upto.
 * The two change sets are MATERIALIZED so they are read first, by their
 * stream indexes, whatever the statistics say: with statistics from
 * before she joined 1,000 rooms the planner walked her rooms and scanned
 * a whole index per room for the members who joined since (70 ms). */
static PGresult *presence_incremental(struct db *db, const char *const *p, struct al_error *err)
{
	/* planned with the token's value (no name): a generic plan takes
	 * "stream_ordering > $2" for a third of the table */
	return db_exec(
		db, err,
		"WITH px AS MATERIALIZED (SELECT user_id FROM presence WHERE stream_ordering > $2::bigint "
		"AND stream_ordering <= $3::bigint), "
		"mx AS MATERIALIZED (SELECT room_id, user_id FROM room_memberships WHERE stream_ordering > $2::bigint "
		"AND stream_ordering <= $3::bigint AND membership = 'join'), "
		/* changed presence of herself or of someone she shares a room with */
		"who AS (SELECT px.user_id FROM px WHERE px.user_id = $1 OR EXISTS (SELECT 1 FROM room_memberships b "
		"JOIN room_memberships a ON a.room_id = b.room_id AND a.user_id = $1 AND a.membership = 'join' "
		"WHERE b.user_id = px.user_id AND b.membership = 'join') "
		/* she joined since: everyone in those rooms */
		"UNION SELECT b.user_id FROM mx JOIN room_memberships b ON b.room_id = mx.room_id "
		"AND b.membership = 'join' AND b.user_id <> $1 WHERE mx.user_id = $1 "
		/* they joined since, into a room of hers */
		"UNION SELECT mx.user_id FROM mx JOIN room_memberships a ON a.room_id = mx.room_id AND a.user_id = $1 "
		"AND a.membership = 'join' WHERE mx.user_id <> $1) "
		"SELECT w.user_id, p.presence, p.status_msg, p.last_active_ts FROM who w "
		"LEFT JOIN presence p ON p.user_id = w.user_id ORDER BY coalesce(p.stream_ordering, 0), w.user_id",
		3, p);
}

json_t *presence_sync_events(struct db *db, const char *user_id, int64_t since, int64_t upto, int64_t now_ms,
			     struct al_error *err)
{
	char s_since[24], s_upto[24];
	snprintf(s_since, sizeof(s_since), "%" PRId64, since);
	snprintf(s_upto, sizeof(s_upto), "%" PRId64, upto);
	const char *p[] = {user_id, s_since, s_upto};
	/* Changed since, of herself or a room-mate; and in an incremental
	 * sync also the presence (offline when unknown) of whom she newly
	 * shares a room with (she joined it, or they did). */
	PGresult *r =
		since > 0 ? presence_incremental(db, p, err)
			  : db_exec(db, err,
				    "WITH mates AS (SELECT b.user_id, a.stream_ordering > $2::bigint "
				    "OR b.stream_ordering > $2::bigint AS new FROM room_memberships a "
				    "JOIN room_memberships b ON b.room_id = a.room_id WHERE a.user_id = $1 "
				    "AND a.membership = 'join' AND b.membership = 'join'), "
				    "who AS (SELECT user_id FROM presence WHERE stream_ordering > $2::bigint "
				    "AND stream_ordering <= $3::bigint AND (user_id = $1 OR user_id IN (SELECT user_id "
				    "FROM mates)) "
				    "UNION SELECT user_id FROM mates WHERE new AND $2::bigint > 0 AND user_id <> $1) "
				    "SELECT w.user_id, p.presence, p.status_msg, p.last_active_ts FROM who w "
				    "LEFT JOIN presence p ON p.user_id = w.user_id ORDER BY "
				    "coalesce(p.stream_ordering, 0), w.user_id",
				    3, p);
	if (!r)
		return NULL;
	json_t *a = json_array();
	for (int i = 0; a && i < PQntuples(r); i++) {
		json_t *c = content_of(r, i, 1, now_ms);
		if (c)
			json_array_append_new(a, json_pack("{s:s, s:s, s:o}", "type", "m.presence", "sender",
							   PQgetvalue(r, i, 0), "content", c));
	}
	PQclear(r);
	if (!a)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return a;
}
