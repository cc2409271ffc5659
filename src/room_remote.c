#include "room_remote.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "cjson.h"
#include "keys.h"
#include "log.h"
#include "room_auth.h"
#include "room_dag.h"
#include "room_remote_internal.h"
#include "state_res.h"

#define STREAM_LOCK "6006"

static void fmt_i64(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

void room_pdu_outcome_clear(struct room_pdu_outcome *o)
{
	json_decref(o->missing_prev);
	json_decref(o->missing_auth);
	json_decref(o->state_before);
	memset(o, 0, sizeof(*o));
}

const char *room_pdu_status_name(enum room_pdu_status s)
{
	switch (s) {
	case ROOM_PDU_ACCEPTED: return "accepted";
	case ROOM_PDU_SOFT_FAILED: return "soft_failed";
	case ROOM_PDU_REJECTED: return "rejected";
	case ROOM_PDU_OUTLIER: return "outlier";
	case ROOM_PDU_KNOWN: return "known";
	case ROOM_PDU_MISSING: return "missing";
	}
	return "?";
}

bool room_remote_version_supported(const char *version)
{
	struct event_rules r;
	return event_rules_for(version, &r) == 0;
}

/* ---- format ---- */

static bool id_ok(const char *s, char sigil)
{
	return s && s[0] == sigil && strlen(s) <= EVENT_ID_MAX - 1 && (sigil == '$' || strchr(s, ':'));
}

static int bad(struct al_error *err, const char *what)
{
	return al_error_set(err, 400, "M_BAD_JSON", "invalid event: %s", what);
}

/* v3+: event IDs; v1-2: [event_id, {"sha256": hash}] pairs. */
static int id_list_ok(const json_t *a, size_t max, bool pairs)
{
	if (!json_is_array(a) || json_array_size(a) > max)
		return 0;
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (pairs ? !json_is_array(v) || json_array_size(v) != 2 || !json_is_object(json_array_get(v, 1))
			  : !json_is_string(v))
			return 0;
		if (!id_ok(event_ref_id(v), '$'))
			return 0;
	}
	return 1;
}

int room_pdu_check_format(const struct event_rules *r, const json_t *pdu, struct al_error *err)
{
	if (!json_is_object(pdu))
		return bad(err, "not an object");
	long size = event_canonical_size(pdu);
	if (size < 0)
		return bad(err, "not canonical JSON (floats or integers out of range)");
	if (size > EVENT_MAX_BYTES)
		return al_error_set(err, 413, "M_TOO_LARGE", "event is larger than %d bytes", EVENT_MAX_BYTES);
	if (!id_ok(event_str(pdu, "room_id"), '!'))
		return bad(err, "room_id");
	if (!id_ok(event_str(pdu, "sender"), '@'))
		return bad(err, "sender");
	const char *type = event_str(pdu, "type");
	if (!type || !*type || strlen(type) > EVENT_TYPE_MAX)
		return bad(err, "type");
	json_t *sk = json_object_get(pdu, "state_key");
	if (sk && (!json_is_string(sk) || strlen(json_string_value(sk)) > EVENT_TYPE_MAX))
		return bad(err, "state_key");
	if (!json_is_object(json_object_get(pdu, "content")))
		return bad(err, "content");
	if (!json_is_integer(json_object_get(pdu, "origin_server_ts")))
		return bad(err, "origin_server_ts");
	json_t *depth = json_object_get(pdu, "depth");
	if (!json_is_integer(depth) || json_integer_value(depth) < 0)
		return bad(err, "depth");
	if (!id_list_ok(json_object_get(pdu, "prev_events"), EVENT_MAX_PREV, r->id_format == 1))
		return bad(err, "prev_events");
	if (!id_list_ok(json_object_get(pdu, "auth_events"), EVENT_MAX_AUTH, r->id_format == 1))
		return bad(err, "auth_events");
	if (!json_is_string(json_object_get(json_object_get(pdu, "hashes"), "sha256")))
		return bad(err, "hashes");
	json_t *sigs = json_object_get(pdu, "signatures");
	if (!json_is_object(sigs) || json_object_size(sigs) == 0)
		return bad(err, "signatures");
	const char *k;
	json_t *v;
	json_object_foreach(sigs, k, v)
	{
		if (!json_is_object(v))
			return bad(err, "signatures");
	}
	json_t *u = json_object_get(pdu, "unsigned");
	if (u && !json_is_object(u))
		return bad(err, "unsigned");
	if (strcmp(type, "m.room.redaction") == 0) {
		const char *red = r->redacts_in_content ? event_content_str(pdu, "redacts") : event_str(pdu, "redacts");
		if (red && !id_ok(red, '$'))
			return bad(err, "redacts");
	}
	if (r->id_format == 1 && (!id_ok(event_str(pdu, "event_id"), '$') || !strchr(event_str(pdu, "event_id"), ':')))
		return bad(err, "event_id");
	if (strcmp(type, "m.room.create") == 0 && sk && !*json_string_value(sk)) {
		const char *rs = room_dag_server_of(event_str(pdu, "room_id"));
		const char *ss = room_dag_server_of(event_str(pdu, "sender"));
		if (!rs || !ss || strcmp(rs, ss) != 0)
			return bad(err, "the room ID of m.room.create is not on its sender's server");
	}
	return 0;
}

int room_remote_room_version(struct db *db, const char *room_id, char *version, struct al_error *err)
{
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err, "SELECT room_version FROM rooms WHERE room_id = $1", 1, p);
	if (!r)
		return -1;
	int n = PQntuples(r);
	if (n == 1)
		snprintf(version, 4, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return n == 1 ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Unknown room %s", room_id);
}

int room_remote_is_resident(struct db *db, const char *room_id, const char *self, struct al_error *err)
{
	const char *p[] = {room_id, self};
	PGresult *r = db_exec(db, err,
			      "SELECT 1 FROM room_memberships WHERE room_id = $1 AND membership = 'join' "
			      "AND substring(user_id from position(':' in user_id) + 1) = $2 LIMIT 1",
			      2, p);
	if (!r)
		return -1;
	int n = PQntuples(r);
	PQclear(r);
	return n > 0;
}

/* ---- accepting one event ---- */

static void set_reason(struct room_pdu_outcome *out, enum room_pdu_status st, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_reason(struct room_pdu_outcome *out, enum room_pdu_status st, const char *fmt, ...)
{
	out->status = st;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(out->reason, sizeof(out->reason), fmt, ap);
	va_end(ap);
}

static int stream_lock(struct db *db, struct al_error *err)
{
	PGresult *l = db_exec(db, err, "SELECT pg_advisory_xact_lock(" STREAM_LOCK ")", 0, NULL);
	if (!l)
		return -1;
	PQclear(l);
	return 0;
}

/* The text stored for a PDU: without unsigned (and event_id from v3). */
char *room_remote_stored_text(const json_t *pdu, const struct event_rules *r, struct al_error *err)
{
	json_t *c = json_copy((json_t *)pdu);
	if (!c) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	json_object_del(c, "unsigned");
	if (r->id_format >= 3)
		json_object_del(c, "event_id");
	char *t = cjson_encode(c, NULL, err);
	json_decref(c);
	return t;
}

enum ins_kind { INS_TIMELINE, INS_HIDDEN };

static int insert_event(struct db *db, const char *room_id, const char *event_id, const json_t *pdu,
			const struct event_rules *rules, enum ins_kind kind, int64_t group, bool rejected,
			bool soft_failed, bool outlier, int64_t *stream, struct al_error *err)
{
	char *text = room_remote_stored_text(pdu, rules, err);
	if (!text)
		return -1;
	json_t *prev = json_object_get(pdu, "prev_events"), *auth = json_object_get(pdu, "auth_events");
	const char *pv[EVENT_MAX_PREV], *av[EVENT_MAX_AUTH];
	int np = 0, na = 0;
	for (size_t i = 0; i < json_array_size(prev) && np < EVENT_MAX_PREV; i++)
		if (event_ref_id(json_array_get(prev, i)))
			pv[np++] = event_ref_id(json_array_get(prev, i));
	for (size_t i = 0; i < json_array_size(auth) && na < EVENT_MAX_AUTH; i++)
		if (event_ref_id(json_array_get(auth, i)))
			av[na++] = event_ref_id(json_array_get(auth, i));
	char *pa = room_pg_array(pv, np), *aa = room_pg_array(av, na);
	char depth[24], ts[24], g[24];
	fmt_i64(depth, sizeof(depth), json_integer_value(json_object_get(pdu, "depth")));
	fmt_i64(ts, sizeof(ts), json_integer_value(json_object_get(pdu, "origin_server_ts")));
	fmt_i64(g, sizeof(g), group);
	const char *p[] = {event_id,
			   room_id,
			   depth,
			   event_str(pdu, "type"),
			   event_str(pdu, "state_key"),
			   event_str(pdu, "sender"),
			   ts,
			   text,
			   group > 0 ? g : NULL,
			   rejected ? "t" : "f",
			   soft_failed ? "t" : "f",
			   outlier ? "t" : "f",
			   kind == INS_TIMELINE ? "t" : "f",
			   pa,
			   aa};
	PGresult *r = NULL;
	if (pa && aa)
		r = db_exec(
			db, err,
			"WITH e AS (INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, "
			"sender, origin_server_ts, json, state_group, rejected, soft_failed, outlier) VALUES ("
			"$1::text, $2::text, CASE WHEN $13::boolean THEN nextval('al_stream_seq') "
			"ELSE -nextval('al_outlier_seq') END, $3::bigint, $4::text, $5::text, $6::text, $7::bigint, "
			"$8::text, $9::bigint, $10::boolean, $11::boolean, $12::boolean) "
			"ON CONFLICT (event_id) DO NOTHING RETURNING stream_ordering), "
			"p AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT $1::text, x "
			"FROM unnest($14::text[]) x WHERE EXISTS (SELECT 1 FROM e) ON CONFLICT DO NOTHING), "
			"a AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT $1::text, x "
			"FROM unnest($15::text[]) x WHERE EXISTS (SELECT 1 FROM e) ON CONFLICT DO NOTHING) "
			"SELECT stream_ordering FROM e",
			15, p);
	else
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	free(text);
	free(pa);
	free(aa);
	if (!r)
		return -1;
	*stream = PQntuples(r) == 1 ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : 0;
	PQclear(r);
	return 0;
}

/* Spec auth rule 2 (the event's auth_events) and the auth rules against
 * them. Fills *auth_map (room_auth map). 0 allowed, 1 rejected (reason
 * set), 2 missing (out->missing_auth). */
int room_remote_check_auth_events(const json_t *pdu, json_t *known, struct room_pdu_outcome *out, json_t **auth_map)
{
	*auth_map = json_object();
	json_t *auth = json_object_get(pdu, "auth_events");
	const char *type = event_str(pdu, "type");
	bool is_create = strcmp(type, "m.room.create") == 0;
	char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
	int nk = state_res_auth_types(pdu, keys);
	size_t i;
	json_t *v;
	json_array_foreach(auth, i, v)
	{
		const char *aid = event_ref_id(v);
		json_t *a = aid ? json_object_get(known, aid) : NULL;
		if (!a) {
			if (!out->missing_auth)
				out->missing_auth = json_array();
			if (aid)
				json_array_append_new(out->missing_auth, json_string(aid));
			continue;
		}
		json_t *apdu = json_object_get(a, "pdu");
		if (json_is_true(json_object_get(a, "rejected"))) {
			set_reason(out, ROOM_PDU_REJECTED, "auth event %s was rejected", aid);
			return 1;
		}
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(event_str(apdu, "type"), event_str(apdu, "state_key"), k, sizeof(k)) < 0 ||
		    !json_object_get(apdu, "state_key")) {
			set_reason(out, ROOM_PDU_REJECTED, "auth event %s is not a state event", aid);
			return 1;
		}
		bool allowed = false;
		for (int j = 0; j < nk && !allowed; j++)
			allowed = strcmp(keys[j], k) == 0;
		if (!allowed) {
			set_reason(out, ROOM_PDU_REJECTED, "auth event %s is not one the auth rules select", aid);
			return 1;
		}
		if (json_object_get(*auth_map, k)) {
			set_reason(out, ROOM_PDU_REJECTED, "two auth events for the same state (%s)", aid);
			return 1;
		}
		json_object_set(*auth_map, k, apdu);
	}
	if (out->missing_auth)
		return 2;
	if (is_create) {
		if (json_array_size(auth) > 0) {
			set_reason(out, ROOM_PDU_REJECTED, "m.room.create has auth events");
			return 1;
		}
	} else if (!room_auth_state_get(*auth_map, "m.room.create", "")) {
		set_reason(out, ROOM_PDU_REJECTED, "no m.room.create among the auth events");
		return 1;
	}
	return 0;
}

static bool first_after_create(const json_t *pdu, json_t *auth_map)
{
	json_t *prev = json_object_get(pdu, "prev_events");
	json_t *create = room_auth_state_get(auth_map, "m.room.create", "");
	const char *cid = create ? event_str(create, "event_id") : NULL;
	const char *p0 = event_ref_id(json_array_get(prev, 0));
	return cid && p0 && json_array_size(prev) == 1 && strcmp(cid, p0) == 0;
}

int room_remote_auth_against(const struct event_rules *rules, const json_t *pdu, json_t *auth_map, char *reason,
			     size_t rlen)
{
	struct al_error e = {0};
	if (room_auth_check(rules, pdu, auth_map, first_after_create(pdu, auth_map), &e) == 0)
		return 0;
	snprintf(reason, rlen, "%s", e.message);
	return -1;
}

/* A redaction accepted into the timeline is applied when its sender may
 * (same server as the target's sender, or the redact power level in the
 * state before it). */
static int maybe_redact(struct db *db, const struct event_rules *rules, const char *room_id, const json_t *pdu,
			const char *event_id, json_t *auth_state, struct al_error *err)
{
	const char *target = rules->redacts_in_content ? event_content_str(pdu, "redacts") : event_str(pdu, "redacts");
	if (!target)
		return 0;
	const char *p[] = {target, room_id};
	PGresult *r = db_exec(db, err, "SELECT sender FROM events WHERE event_id = $1 AND room_id = $2", 2, p);
	if (!r)
		return -1;
	bool found = PQntuples(r) == 1;
	const char *ts = found ? room_dag_server_of(PQgetvalue(r, 0, 0)) : NULL;
	const char *ss = room_dag_server_of(event_str(pdu, "sender"));
	bool ok = found && ts && ss && strcmp(ts, ss) == 0;
	PQclear(r);
	if (!found)
		return 0;
	if (!ok)
		ok = room_auth_user_level(auth_state, event_str(pdu, "sender")) >=
		     room_auth_named_level(auth_state, "redact");
	if (!ok)
		return 0;
	json_t *client = event_to_client(pdu, event_id);
	int rc = client ? room_dag_redact(db, rules, room_id, target, client, err) : -1;
	json_decref(client);
	return rc;
}

/* The forward extremities once the event joined the timeline, and the
 * current state from them (resolved when their states differ). */
static int update_current(struct db *db, const char *room_id, const struct event_rules *rules, const char *event_id,
			  const json_t *pdu, int64_t group_after, int64_t old_current, int64_t stream,
			  struct al_error *err)
{
	json_t *prev = json_object_get(pdu, "prev_events");
	const char *pv[EVENT_MAX_PREV];
	int np = 0;
	for (size_t i = 0; i < json_array_size(prev) && np < EVENT_MAX_PREV; i++)
		if (event_ref_id(json_array_get(prev, i)))
			pv[np++] = event_ref_id(json_array_get(prev, i));
	char *pa = room_pg_array(pv, np);
	if (!pa)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {room_id, event_id, pa};
	PGresult *r = db_exec(
		db, err,
		"WITH d AS (DELETE FROM room_extremities WHERE room_id = $1 AND event_id = ANY($3::text[])) "
		"INSERT INTO room_extremities (room_id, event_id) SELECT $1, $2 WHERE NOT EXISTS "
		"(SELECT 1 FROM event_edges WHERE prev_event_id = $2) ON CONFLICT DO NOTHING",
		3, p);
	free(pa);
	if (!r)
		return -1;
	PQclear(r);
	char gb[24];
	fmt_i64(gb, sizeof(gb), group_after);
	const char *q[] = {room_id, gb};
	r = db_exec(db, err,
		    "SELECT e.state_group, (SELECT prev_group FROM state_groups WHERE id = $2::bigint) "
		    "FROM room_extremities x JOIN events e ON e.event_id = x.event_id "
		    "WHERE x.room_id = $1 AND e.state_group IS NOT NULL GROUP BY e.state_group "
		    "ORDER BY max(e.depth) DESC LIMIT " ROOM_DAG_MAX_GROUPS_STR,
		    2, q);
	if (!r)
		return -1;
	int64_t groups[ROOM_DAG_MAX_GROUPS];
	int ng = 0;
	int64_t after_prev = 0;
	for (int i = 0; i < PQntuples(r) && ng < ROOM_DAG_MAX_GROUPS; i++) {
		groups[ng++] = strtoll(PQgetvalue(r, i, 0), NULL, 10);
		after_prev = PQgetisnull(r, i, 1) ? 0 : strtoll(PQgetvalue(r, i, 1), NULL, 10);
	}
	PQclear(r);
	if (ng == 0)
		return 0;
	const char *type = event_str(pdu, "type"), *sk = event_str(pdu, "state_key");
	if (ng == 1 && groups[0] == group_after) {
		if (group_after == old_current)
			return 0;
		/* a line: the event moved the state by one key */
		if (sk && after_prev == old_current)
			return room_dag_set_current_key(db, room_id, type, sk, event_id, group_after, stream, err);
	}
	json_t *states[ROOM_DAG_MAX_GROUPS];
	if (room_dag_group_states(db, groups, ng, states, err) < 0)
		return -1;
	json_t *res = room_dag_resolve(db, room_id, rules, states, ng, err);
	int64_t group = ng == 1 ? groups[0] : 0;
	int rc = -1;
	if (res && ng > 1) {
		int cl = room_dag_chain_len(db, groups[0], err);
		group = cl >= 0 ? room_dag_new_group(db, room_id, res, groups[0], states[0], cl, NULL, err) : 0;
	}
	if (res && group > 0)
		rc = room_dag_set_current(db, room_id, res, group, stream, err);
	json_decref(res);
	for (int i = 0; i < ng; i++)
		json_decref(states[i]);
	return rc;
}

int room_remote_accept(const struct room_ctx *c, const char *room_id, const json_t *pdu_in, const char *event_id,
		       unsigned flags, struct room_pdu_outcome *out, struct al_error *err)
{
	struct db *db = c->db;
	const char *self = keys_server_name(c->keys);
	memset(out, 0, sizeof(*out));
	json_t *pdu = json_deep_copy(pdu_in), *known = NULL, *auth_map = NULL, *before = NULL, *before_auth = NULL;
	json_t *states[ROOM_DAG_MAX_GROUPS];
	json_t *ref_auth = NULL, *ref_prev = NULL; /* the IDs of auth_events / prev_events */
	int nstates = 0;
	int rc = -1;
	char reason[256] = "";
	if (!pdu)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_object_del(pdu, "unsigned");
	json_object_set_new(pdu, "event_id", json_string(event_id));
	if (db_begin(db, err) < 0) {
		json_decref(pdu);
		return -1;
	}
	const char *p1[] = {room_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT room_version, coalesce(state_group, 0), head_depth FROM rooms WHERE room_id = $1 FOR UPDATE", 1,
		p1);
	if (!r)
		goto fail;
	if (PQntuples(r) != 1) {
		PQclear(r);
		al_error_set(err, 404, "M_NOT_FOUND", "Unknown room %s", room_id);
		goto fail;
	}
	char version[4];
	snprintf(version, sizeof(version), "%s", PQgetvalue(r, 0, 0));
	int64_t current_group = strtoll(PQgetvalue(r, 0, 1), NULL, 10);
	PQclear(r);
	struct event_rules rules;
	if (event_rules_for(version, &rules) < 0) {
		al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", version);
		goto fail;
	}
	/* the event itself, its auth events and prev events, in one query */
	json_t *ids = json_array();
	json_array_append_new(ids, json_string(event_id));
	ref_auth = event_ref_ids(json_object_get(pdu, "auth_events"));
	ref_prev = event_ref_ids(json_object_get(pdu, "prev_events"));
	json_array_extend(ids, ref_auth);
	json_array_extend(ids, ref_prev);
	char *arr = NULL;
	{
		size_t n = json_array_size(ids);
		const char **v = calloc(n + 1, sizeof(*v));
		for (size_t i = 0; v && i < n; i++)
			v[i] = json_string_value(json_array_get(ids, i));
		arr = v ? room_pg_array(v, (int)n) : NULL;
		free(v);
	}
	json_decref(ids);
	if (!arr) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	const char *p2[] = {room_id, arr};
	r = db_exec(db, err,
		    "SELECT event_id, json, rejected, coalesce(state_group, 0), outlier FROM events "
		    "WHERE room_id = $1 AND event_id = ANY($2::text[])",
		    2, p2);
	free(arr);
	if (!r)
		goto fail;
	known = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *kp = json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL);
		if (!kp)
			continue;
		json_object_set_new(kp, "event_id", json_string(PQgetvalue(r, i, 0)));
		json_object_set_new(known, PQgetvalue(r, i, 0),
				    json_pack("{s:o, s:b, s:I, s:b}", "pdu", kp, "rejected",
					      PQgetvalue(r, i, 2)[0] == 't', "group",
					      (json_int_t)strtoll(PQgetvalue(r, i, 3), NULL, 10), "outlier",
					      PQgetvalue(r, i, 4)[0] == 't'));
	}
	PQclear(r);
	if (json_object_get(known, event_id)) {
		out->status = ROOM_PDU_KNOWN;
		rc = 0;
		goto rollback;
	}
	/* 4. auth against its auth events */
	int ar = room_remote_check_auth_events(pdu, known, out, &auth_map);
	if (ar == 2 && !(flags & ROOM_ACCEPT_GAPS)) {
		/* the prev events missing too: they are asked for first */
		size_t pi;
		json_t *pv;
		json_array_foreach(ref_prev, pi, pv)
		{
			json_t *k = json_object_get(known, json_string_value(pv));
			if (!k || json_integer_value(json_object_get(k, "group")) == 0) {
				if (!out->missing_prev)
					out->missing_prev = json_array();
				json_array_append(out->missing_prev, pv);
			}
		}
		out->status = ROOM_PDU_MISSING;
		rc = 0;
		goto rollback;
	}
	if (ar == 2) {
		set_reason(out, ROOM_PDU_REJECTED, "auth events are missing");
		ar = 1;
	}
	if (ar == 0 && room_remote_auth_against(&rules, pdu, auth_map, reason, sizeof(reason)) < 0) {
		set_reason(out, ROOM_PDU_REJECTED, "not allowed by its auth events: %s", reason);
		ar = 1;
	}
	const char *type = event_str(pdu, "type"), *sk = event_str(pdu, "state_key");
	int64_t stream = 0;
	/* rejected on its auth events: stored with the state before it when
	 * that is known (later events may build on it), else as an outlier */
	bool auth_rejected = ar == 1;
	bool in_timeline = false; /* accepted: not rejected, soft-failed nor an outlier */
	if (flags & ROOM_ACCEPT_OUTLIER) {
		if (ar == 0)
			out->status = ROOM_PDU_OUTLIER;
		if (insert_event(db, room_id, event_id, pdu, &rules, INS_HIDDEN, 0, ar == 1, false, true, &stream,
				 err) < 0)
			goto fail;
		goto commit;
	}
	/* the prev events: their states after them */
	json_t *prev = ref_prev;
	int64_t groups[ROOM_DAG_MAX_GROUPS];
	int ng = 0;
	bool outlier_prev = false; /* a prev event is known only from a gap's state */
	size_t i;
	json_t *v;
	json_array_foreach(prev, i, v)
	{
		json_t *k = json_object_get(known, json_string_value(v));
		int64_t g = k ? json_integer_value(json_object_get(k, "group")) : 0;
		if (!k || g == 0) {
			if (!out->missing_prev)
				out->missing_prev = json_array();
			json_array_append(out->missing_prev, v);
			continue;
		}
		if (json_is_true(json_object_get(k, "outlier")))
			outlier_prev = true;
		bool dup = false;
		for (int j = 0; j < ng && !dup; j++)
			dup = groups[j] == g;
		if (!dup && ng < ROOM_DAG_MAX_GROUPS)
			groups[ng++] = g;
	}
	if (out->missing_prev && !(flags & ROOM_ACCEPT_GAPS)) {
		out->status = ROOM_PDU_MISSING;
		rc = 0;
		goto rollback;
	}
	if (ng == 0) {
		/* nothing known before it (a gap we could not fill): keep it
		 * out of the timeline */
		if (!auth_rejected)
			out->status = ROOM_PDU_OUTLIER;
		if (insert_event(db, room_id, event_id, pdu, &rules, INS_HIDDEN, 0, auth_rejected, false, true, &stream,
				 err) < 0)
			goto fail;
		goto commit;
	}
	/* 5. the state before it */
	int64_t group_before = 0;
	if (ng == 1) {
		group_before = groups[0];
		if (flags & ROOM_ACCEPT_STATE) {
			if (room_dag_group_states(db, groups, 1, states, err) < 0)
				goto fail;
			nstates = 1;
			before = json_incref(states[0]);
		} else {
			char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
			const char *kl[STATE_RES_AUTH_TYPES];
			int nk = state_res_auth_types(pdu, keys);
			for (int j = 0; j < nk; j++)
				kl[j] = keys[j];
			before = room_dag_group_lookup(db, group_before, kl, nk, err);
		}
		if (!before)
			goto fail;
	} else {
		if (room_dag_group_states(db, groups, ng, states, err) < 0)
			goto fail;
		nstates = ng;
		before = room_dag_resolve(db, room_id, &rules, states, ng, err);
		if (!before)
			goto fail;
		int cl = room_dag_chain_len(db, groups[0], err);
		group_before = cl >= 0 ? room_dag_new_group(db, room_id, before, groups[0], states[0], cl, NULL, err)
				       : 0;
		if (!group_before)
			goto fail;
	}
	before_auth = room_dag_auth_state(db, room_id, pdu, before, err);
	if (!before_auth)
		goto fail;
	if (auth_rejected || room_remote_auth_against(&rules, pdu, before_auth, reason, sizeof(reason)) < 0) {
		if (!auth_rejected)
			set_reason(out, ROOM_PDU_REJECTED, "not allowed by the state before it: %s", reason);
		if (insert_event(db, room_id, event_id, pdu, &rules, INS_HIDDEN, group_before, true, false, false,
				 &stream, err) < 0)
			goto fail;
		goto commit;
	}
	if (strcmp(type, "m.room.redaction") == 0) {
		/* a redaction of an event of another room is refused */
		const char *target = rules.redacts_in_content ? event_content_str(pdu, "redacts")
							      : event_str(pdu, "redacts");
		const char *tp[] = {target, room_id};
		PGresult *tr = target ? db_exec(db, err, "SELECT 1 FROM events WHERE event_id = $1 AND room_id <> $2",
						2, tp)
				      : NULL;
		if (target && !tr)
			goto fail;
		bool elsewhere = tr && PQntuples(tr) > 0;
		if (tr)
			PQclear(tr);
		if (elsewhere) {
			set_reason(out, ROOM_PDU_REJECTED, "it redacts an event of another room");
			if (insert_event(db, room_id, event_id, pdu, &rules, INS_HIDDEN, group_before, true, false,
					 false, &stream, err) < 0)
				goto fail;
			goto commit;
		}
	}
	/* 6. soft failure against the current state */
	bool soft = false;
	if (current_group != group_before && current_group > 0) {
		json_t *cur = room_dag_current_state(db, room_id, err);
		if (cur && outlier_prev) {
			/* its state came from another server at a gap: the current
			 * state is the resolution of ours and that one (as Synapse) */
			json_t *full[1] = {NULL};
			if (room_dag_group_states(db, &group_before, 1, full, err) == 0) {
				json_t *sets[2] = {cur, full[0]};
				json_t *res = room_dag_resolve(db, room_id, &rules, sets, 2, err);
				json_decref(cur);
				cur = res;
			} else {
				json_decref(cur);
				cur = NULL;
			}
			json_decref(full[0]);
		}
		json_t *cur_auth = cur ? room_dag_auth_state(db, room_id, pdu, cur, err) : NULL;
		json_decref(cur);
		if (!cur_auth)
			goto fail;
		if (room_remote_auth_against(&rules, pdu, cur_auth, reason, sizeof(reason)) < 0) {
			soft = true;
			set_reason(out, ROOM_PDU_SOFT_FAILED, "not allowed by the current state: %s", reason);
		}
		json_decref(cur_auth);
	}
	/* the state after it */
	int64_t group_after = group_before;
	if (sk) {
		group_after = room_dag_group_add(db, room_id, group_before, type, sk, event_id, err);
		if (!group_after)
			goto fail;
	}
	if (!soft && stream_lock(db, err) < 0)
		goto fail;
	/* fan-out before the memberships change: the servers in the room
	 * before the event, plus the target of a kick or ban */
	const char *sender_server = room_dag_server_of(event_str(pdu, "sender"));
	bool local_sender = sender_server && strcmp(sender_server, self) == 0;
	if (!soft && (local_sender || (flags & ROOM_ACCEPT_FANOUT))) {
		const char *extra = NULL;
		const char *m = strcmp(type, "m.room.member") == 0 ? event_content_str(pdu, "membership") : NULL;
		if (m && sk && strcmp(m, "invite") != 0)
			extra = room_dag_server_of(sk);
		json_t *fed = json_copy(pdu);
		if (rules.id_format >= 3)
			json_object_del(fed, "event_id");
		int frc = room_dag_fanout(db, room_id, self, fed, extra, local_sender ? NULL : sender_server, err);
		json_decref(fed);
		if (frc < 0)
			goto fail;
	}
	if (insert_event(db, room_id, event_id, pdu, &rules, soft ? INS_HIDDEN : INS_TIMELINE, group_after, false, soft,
			 false, &stream, err) < 0)
		goto fail;
	if (!soft) {
		out->status = ROOM_PDU_ACCEPTED;
		in_timeline = true;
		out->stream = stream;
		if (update_current(db, room_id, &rules, event_id, pdu, group_after, current_group, stream, err) < 0)
			goto fail;
		char d[24];
		fmt_i64(d, sizeof(d), json_integer_value(json_object_get(pdu, "depth")));
		const char *hp[] = {room_id, event_id, d};
		r = db_exec(db, err,
			    "UPDATE rooms SET head_event_id = $2, head_depth = greatest(head_depth, $3::bigint) "
			    "WHERE room_id = $1",
			    3, hp);
		if (!r)
			goto fail;
		PQclear(r);
		if (strcmp(type, "m.room.redaction") == 0 &&
		    maybe_redact(db, &rules, room_id, pdu, event_id, before_auth, err) < 0)
			goto fail;
	}
	if ((flags & ROOM_ACCEPT_STATE) && before)
		out->state_before = json_incref(before);
commit:
	if (db_commit(db, err) < 0)
		goto fail_nr;
	rc = 0;
	log_info("room_remote", "event room_id=%s event_id=%s type=%s status=%s%s%s", room_id, event_id, type,
		 room_pdu_status_name(out->status), out->reason[0] ? " reason=" : "", out->reason);
	/* the stored-event hook, as room_send's: accepted timeline events only */
	if (in_timeline)
		calls_on_event(c->app, db, room_id, event_id, type, pdu);
	goto done;
rollback:
	db_rollback(db);
	goto done;
fail:
	db_rollback(db);
fail_nr:
	rc = -1;
done:
	for (int j = 0; j < nstates; j++)
		json_decref(states[j]);
	json_decref(ref_auth);
	json_decref(ref_prev);
	json_decref(before);
	json_decref(before_auth);
	json_decref(auth_map);
	json_decref(known);
	json_decref(pdu);
	return rc;
}

int room_remote_set_state_after(const struct room_ctx *c, const char *room_id, const char *event_id, json_t *ids,
				struct al_error *err)
{
	struct db *db = c->db;
	if (!room_id || !event_id || !json_is_array(ids))
		return al_error_set(err, 400, "M_BAD_JSON", "bad state");
	json_t *all = json_deep_copy(ids);
	json_array_append_new(all, json_string(event_id));
	char *text = cjson_encode(all, NULL, err);
	json_decref(all);
	if (!text)
		return -1;
	if (db_begin(db, err) < 0) {
		free(text);
		return -1;
	}
	const char *p1[] = {room_id};
	PGresult *r = db_exec(db, err, "SELECT 1 FROM rooms WHERE room_id = $1 FOR UPDATE", 1, p1);
	if (!r)
		goto fail;
	PQclear(r);
	const char *p[] = {text, room_id};
	r = db_exec(db, err,
		    "SELECT event_id, type, state_key, state_group IS NOT NULL FROM events WHERE room_id = $2 AND ("
		    "(event_id IN (SELECT jsonb_array_elements_text($1::jsonb)) AND NOT rejected "
		    "AND state_key IS NOT NULL) OR event_id = ($1::jsonb->>-1))",
		    2, p);
	if (!r)
		goto fail;
	json_t *st = json_object();
	bool found = false, has_group = false, self_state = false;
	char type[EVENT_TYPE_MAX + 1] = "", sk[EVENT_TYPE_MAX + 1] = "";
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 0), event_id) == 0) {
			found = true;
			has_group = PQgetvalue(r, i, 3)[0] == 't';
			if (!PQgetisnull(r, i, 2)) {
				self_state = true;
				snprintf(type, sizeof(type), "%s", PQgetvalue(r, i, 1));
				snprintf(sk, sizeof(sk), "%s", PQgetvalue(r, i, 2));
			}
			continue;
		}
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(PQgetvalue(r, i, 1), PQgetvalue(r, i, 2), k, sizeof(k)) == 0)
			json_object_set_new(st, k, json_string(PQgetvalue(r, i, 0)));
	}
	PQclear(r);
	free(text);
	text = NULL;
	if (!found || has_group) {
		json_decref(st);
		db_rollback(db);
		return found ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "event %s is not stored", event_id);
	}
	if (self_state) {
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(type, sk, k, sizeof(k)) == 0)
			json_object_set_new(st, k, json_string(event_id));
	}
	int64_t g = room_dag_new_group(db, room_id, st, 0, NULL, 0, NULL, err);
	json_decref(st);
	if (!g)
		goto fail;
	char gs[24];
	fmt_i64(gs, sizeof(gs), g);
	const char *u[] = {event_id, gs};
	r = db_exec(db, err, "UPDATE events SET state_group = $2::bigint WHERE event_id = $1 AND state_group IS NULL",
		    2, u);
	if (!r)
		goto fail;
	PQclear(r);
	if (db_commit(db, err) < 0)
		return -1;
	log_info("room_remote", "state at a gap room_id=%s event_id=%s", room_id, event_id);
	return 0;
fail:
	db_rollback(db);
	free(text);
	return -1;
}

/* ---- what a remote join, invite or leave brings ---- */

static int event_id_of(const struct event_rules *r, const json_t *pdu, char *id, struct al_error *err)
{
	return event_compute_id(pdu, r, id, EVENT_ID_MAX, err);
}

static int depth_cmp(const void *a, const void *b)
{
	const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t dx = json_integer_value(json_object_get(x, "depth")),
		   dy = json_integer_value(json_object_get(y, "depth"));
	if (dx != dy)
		return dx < dy ? -1 : 1;
	return strcmp(event_str(x, "event_id"), event_str(y, "event_id"));
}

int room_remote_store_join(const struct room_ctx *c, const char *room_id, const char *version, const json_t *join,
			   const char *join_id, json_t *state, json_t *auth_chain, int64_t *stream,
			   struct al_error *err)
{
	struct db *db = c->db;
	struct event_rules rules;
	*stream = 0;
	if (event_rules_for(version, &rules) < 0)
		return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", version);
	json_t *known = json_object(), *list = json_array(), *smap = json_object(), *rows = json_array();
	json_t *auth_map = NULL, *join_auth = NULL;
	json_t **sorted = NULL;
	char *rows_text = NULL;
	int rc = -1;
	json_t *srcs[2] = {auth_chain, state};
	for (int s = 0; s < 2; s++) {
		size_t i;
		json_t *v;
		json_array_foreach(srcs[s], i, v)
		{
			struct al_error e = {0};
			char id[EVENT_ID_MAX];
			if (room_pdu_check_format(&rules, v, &e) < 0 || strcmp(event_str(v, "room_id"), room_id) != 0 ||
			    event_id_of(&rules, v, id, &e) < 0)
				continue;
			if (json_object_get(known, id))
				continue;
			json_t *pdu = json_deep_copy(v);
			json_object_del(pdu, "unsigned");
			json_object_set_new(pdu, "event_id", json_string(id));
			json_object_set_new(known, id,
					    json_pack("{s:O, s:b, s:i}", "pdu", pdu, "rejected", 0, "group", 0));
			json_array_append_new(list, pdu);
		}
	}
	size_t n = json_array_size(list);
	sorted = calloc(n + 1, sizeof(*sorted));
	if (!sorted) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	for (size_t i = 0; i < n; i++)
		sorted[i] = json_array_get(list, i);
	qsort(sorted, n, sizeof(*sorted), depth_cmp);
	/* each event against its auth events, auth chains first */
	for (size_t i = 0; i < n; i++) {
		struct room_pdu_outcome o = {0};
		json_t *am = NULL;
		int ar = room_remote_check_auth_events(sorted[i], known, &o, &am);
		char reason[256];
		if (ar == 0 && room_remote_auth_against(&rules, sorted[i], am, reason, sizeof(reason)) < 0)
			ar = 1;
		if (ar != 0)
			json_object_set_new(json_object_get(known, event_str(sorted[i], "event_id")), "rejected",
					    json_true());
		json_decref(am);
		room_pdu_outcome_clear(&o);
	}
	/* the state map, without rejected events */
	size_t i;
	json_t *v;
	json_array_foreach(state, i, v)
	{
		struct al_error e = {0};
		char id[EVENT_ID_MAX], k[ROOM_AUTH_KEY_MAX + 1];
		json_t *kn;
		if (event_id_of(&rules, v, id, &e) < 0 || !(kn = json_object_get(known, id)) ||
		    json_is_true(json_object_get(kn, "rejected")) || !json_is_string(json_object_get(v, "state_key")) ||
		    room_auth_key(event_str(v, "type"), event_str(v, "state_key"), k, sizeof(k)) < 0)
			continue;
		json_object_set_new(smap, k, json_string(id));
	}
	char ck[ROOM_AUTH_KEY_MAX + 1];
	room_auth_key("m.room.create", "", ck, sizeof(ck));
	const char *create_id = json_string_value(json_object_get(smap, ck));
	json_t *create = create_id ? json_object_get(json_object_get(known, create_id), "pdu") : NULL;
	if (!create) {
		al_error_set(err, 502, "M_UNKNOWN", "the resident server sent no valid m.room.create");
		goto out;
	}
	const char *cv = event_content_str(create, "room_version");
	if (strcmp(cv ? cv : "1", version) != 0) {
		al_error_set(err, 502, "M_UNKNOWN", "the room version does not match m.room.create");
		goto out;
	}
	/* the join against the state before it */
	json_t *jp = json_deep_copy(join);
	json_object_del(jp, "unsigned");
	json_object_set_new(jp, "event_id", json_string(join_id));
	join_auth = json_object();
	{
		char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
		int nk = state_res_auth_types(jp, keys);
		for (int j = 0; j < nk; j++) {
			const char *id = json_string_value(json_object_get(smap, keys[j]));
			json_t *pdu = id ? json_object_get(json_object_get(known, id), "pdu") : NULL;
			if (pdu)
				json_object_set(join_auth, keys[j], pdu);
		}
	}
	char reason[256];
	if (room_remote_auth_against(&rules, jp, join_auth, reason, sizeof(reason)) < 0) {
		json_decref(jp);
		al_error_set(err, 403, "M_FORBIDDEN", "the join is not allowed by the room state: %s", reason);
		goto out;
	}
	/* rows for one INSERT of every outlier */
	for (size_t j = 0; j < n; j++) {
		json_t *pdu = sorted[j];
		const char *id = event_str(pdu, "event_id");
		struct al_error e = {0};
		char *text = room_remote_stored_text(pdu, &rules, &e);
		if (!text)
			continue;
		json_t *row = json_pack(
			"{s:s, s:I, s:s, s:O, s:s, s:I, s:s, s:b, s:o, s:o}", "id", id, "depth",
			json_integer_value(json_object_get(pdu, "depth")), "type", event_str(pdu, "type"), "sk",
			json_object_get(pdu, "state_key") ? json_object_get(pdu, "state_key") : json_null(), "sender",
			event_str(pdu, "sender"), "ts", json_integer_value(json_object_get(pdu, "origin_server_ts")),
			"json", text, "rejected", json_is_true(json_object_get(json_object_get(known, id), "rejected")),
			"prev", event_ref_ids(json_object_get(pdu, "prev_events")), "auth",
			event_ref_ids(json_object_get(pdu, "auth_events")));
		free(text);
		if (row)
			json_array_append_new(rows, row);
	}
	rows_text = cjson_encode(rows, NULL, err);
	if (!rows_text) {
		json_decref(jp);
		goto out;
	}
	if (db_begin(db, err) < 0) {
		json_decref(jp);
		goto out;
	}
	const char *rp[] = {room_id, version, event_str(create, "sender")};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3) "
			      "ON CONFLICT (room_id) DO UPDATE SET room_version = EXCLUDED.room_version",
			      3, rp);
	if (!r)
		goto fail;
	PQclear(r);
	const char *lp[] = {room_id};
	r = db_exec(db, err, "SELECT 1 FROM rooms WHERE room_id = $1 FOR UPDATE", 1, lp);
	if (!r)
		goto fail;
	PQclear(r);
	const char *op[] = {room_id, rows_text};
	r = db_exec(
		db, err,
		"WITH x AS (SELECT * FROM jsonb_to_recordset($2::jsonb) AS t(id text, depth bigint, type text, "
		"sk text, sender text, ts bigint, json text, rejected boolean, prev jsonb, auth jsonb)), "
		"e AS (INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, sender, "
		"origin_server_ts, json, rejected, outlier) SELECT id, $1, -nextval('al_outlier_seq'), depth, type, "
		"sk, sender, ts, json, rejected, true FROM x ON CONFLICT (event_id) DO NOTHING RETURNING event_id), "
		"p AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT e.event_id, "
		"jsonb_array_elements_text(x.prev) FROM e JOIN x ON x.id = e.event_id ON CONFLICT DO NOTHING), "
		"a AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT e.event_id, "
		"jsonb_array_elements_text(x.auth) FROM e JOIN x ON x.id = e.event_id ON CONFLICT DO NOTHING) "
		"SELECT count(*) FROM e",
		2, op);
	if (!r)
		goto fail;
	PQclear(r);
	int64_t g0 = room_dag_new_group(db, room_id, smap, 0, NULL, 0, NULL, err);
	const char *juser = event_str(jp, "state_key");
	int64_t g1 = g0 ? room_dag_group_add(db, room_id, g0, "m.room.member", juser, join_id, err) : 0;
	if (!g1 || stream_lock(db, err) < 0)
		goto fail;
	if (insert_event(db, room_id, join_id, jp, &rules, INS_TIMELINE, g1, false, false, false, stream, err) < 0)
		goto fail;
	char jk[ROOM_AUTH_KEY_MAX + 1];
	room_auth_key("m.room.member", juser, jk, sizeof(jk));
	json_object_set_new(smap, jk, json_string(join_id));
	char d[24];
	fmt_i64(d, sizeof(d), json_integer_value(json_object_get(jp, "depth")));
	const char *xp[] = {room_id, join_id, d, juser};
	r = db_exec(db, err,
		    "WITH d AS (DELETE FROM room_extremities WHERE room_id = $1), "
		    "i AS (DELETE FROM room_invite_state WHERE room_id = $1 AND user_id = $4), "
		    "u AS (UPDATE rooms SET head_event_id = $2, head_depth = greatest(head_depth, $3::bigint) "
		    "WHERE room_id = $1) "
		    "SELECT 1",
		    4, xp);
	if (!r)
		goto fail;
	PQclear(r);
	r = db_exec(db, err, "INSERT INTO room_extremities (room_id, event_id) VALUES ($1, $2)", 2, xp);
	if (!r)
		goto fail;
	PQclear(r);
	if (room_dag_set_current(db, room_id, smap, g1, *stream, err) < 0)
		goto fail;
	if (db_commit(db, err) < 0)
		goto fail_nr;
	log_info("room_remote", "joined room_id=%s event_id=%s state=%zu auth_chain=%zu", room_id, join_id,
		 json_array_size(state), json_array_size(auth_chain));
	json_decref(jp);
	rc = 0;
	goto out;
fail:
	db_rollback(db);
fail_nr:
	json_decref(jp);
	*stream = 0;
out:
	free(rows_text);
	free(sorted);
	json_decref(auth_map);
	json_decref(join_auth);
	json_decref(rows);
	json_decref(smap);
	json_decref(list);
	json_decref(known);
	return rc;
}

/* invite_room_state: at most 50 stripped events {type, state_key,
 * content, sender}. */
static json_t *stripped_state(json_t *irs, const json_t *invite)
{
	json_t *out = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(irs, i, v)
	{
		if (i >= 50)
			break;
		const char *t = event_str(v, "type"), *sk = event_str(v, "state_key"), *s = event_str(v, "sender");
		json_t *c = json_object_get(v, "content");
		if (!t || !sk || !s || !json_is_object(c) || strlen(t) > EVENT_TYPE_MAX ||
		    strlen(sk) > EVENT_TYPE_MAX || strcmp(t, "m.room.member") == 0)
			continue;
		json_array_append_new(
			out, json_pack("{s:s, s:s, s:s, s:O}", "type", t, "state_key", sk, "sender", s, "content", c));
	}
	json_array_append_new(out, json_pack("{s:s, s:s, s:s, s:O}", "type", "m.room.member", "state_key",
					     event_str(invite, "state_key"), "sender", event_str(invite, "sender"),
					     "content", json_object_get(invite, "content")));
	return out;
}

/* Store an invite or the leave that rejects it, for a room this server is
 * not in: the event (timeline position, not part of the DAG here), the
 * membership and the stripped state. */
static int store_membership_only(const struct room_ctx *c, const char *version, const json_t *pdu, const char *event_id,
				 json_t *irs, int64_t *stream, struct al_error *err)
{
	struct db *db = c->db;
	struct event_rules rules;
	*stream = 0;
	if (event_rules_for(version, &rules) < 0)
		return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", version);
	const char *room_id = event_str(pdu, "room_id"), *user = event_str(pdu, "state_key");
	const char *membership = event_content_str(pdu, "membership");
	char *st = NULL;
	if (irs) {
		json_t *ss = stripped_state(irs, pdu);
		st = ss ? cjson_encode(ss, NULL, err) : NULL;
		json_decref(ss);
		if (!st)
			return -1;
		if (strlen(st) > 65536) {
			free(st);
			return al_error_set(err, 413, "M_TOO_LARGE", "invite_room_state is too large");
		}
	}
	if (db_begin(db, err) < 0) {
		free(st);
		return -1;
	}
	const char *rp[] = {room_id, version, event_str(pdu, "sender")};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO rooms (room_id, room_version, creator) VALUES ($1, $2, $3) "
			      "ON CONFLICT (room_id) DO NOTHING",
			      3, rp);
	if (!r)
		goto fail;
	PQclear(r);
	const char *lp[] = {room_id};
	r = db_exec(db, err, "SELECT 1 FROM rooms WHERE room_id = $1 FOR UPDATE", 1, lp);
	if (!r)
		goto fail;
	PQclear(r);
	int res = room_remote_is_resident(db, room_id, keys_server_name(c->keys), err);
	if (res < 0)
		goto fail;
	if (res > 0) {
		/* the event reaches us through /send like any other */
		db_rollback(db);
		free(st);
		return 0;
	}
	if (stream_lock(db, err) < 0 ||
	    insert_event(db, room_id, event_id, pdu, &rules, INS_TIMELINE, 0, false, false, true, stream, err) < 0)
		goto fail;
	if (*stream == 0) { /* known already */
		db_rollback(db);
		free(st);
		return 0;
	}
	char s[24];
	fmt_i64(s, sizeof(s), *stream);
	const char *mp[] = {room_id, user, membership, event_id, s, st};
	r = db_exec(db, err,
		    "WITH m AS (INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) "
		    "VALUES ($1, $2, $3, $4, $5::bigint) ON CONFLICT (room_id, user_id) DO UPDATE SET "
		    "membership = EXCLUDED.membership, event_id = EXCLUDED.event_id, "
		    "stream_ordering = EXCLUDED.stream_ordering, forgotten = false), "
		    "d AS (DELETE FROM room_invite_state WHERE room_id = $1 AND user_id = $2 AND $6::jsonb IS NULL) "
		    "INSERT INTO room_invite_state (room_id, user_id, state) SELECT $1, $2, $6::jsonb "
		    "WHERE $6::jsonb IS NOT NULL ON CONFLICT (room_id, user_id) DO UPDATE SET state = EXCLUDED.state",
		    6, mp);
	if (!r)
		goto fail;
	PQclear(r);
	if (db_commit(db, err) < 0)
		goto fail_nr;
	free(st);
	log_info("room_remote", "%s for a room we are not in room_id=%s user_id=%s event_id=%s", membership, room_id,
		 user, event_id);
	return 0;
fail:
	db_rollback(db);
fail_nr:
	free(st);
	*stream = 0;
	return -1;
}

int room_remote_store_invite(const struct room_ctx *c, const char *version, const json_t *invite, const char *event_id,
			     json_t *invite_room_state, int64_t *stream, struct al_error *err)
{
	json_t *irs = json_is_array(invite_room_state) ? invite_room_state : NULL;
	json_t *empty = irs ? NULL : json_array();
	int rc = store_membership_only(c, version, invite, event_id, irs ? irs : empty, stream, err);
	json_decref(empty);
	return rc;
}

int room_remote_store_leave(const struct room_ctx *c, const json_t *leave, const char *event_id, int64_t *stream,
			    struct al_error *err)
{
	char version[4];
	if (room_remote_room_version(c->db, event_str(leave, "room_id"), version, err) < 0)
		return -1;
	return store_membership_only(c, version, leave, event_id, NULL, stream, err);
}
