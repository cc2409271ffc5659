#include "room_dag.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"
#include "federation.h"
#include "log.h"
#include "room.h"
#include "room_auth.h"
#include "state_res.h"

static void fmt_i64(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

const char *room_dag_server_of(const char *id)
{
	const char *c = id ? strchr(id, ':') : NULL;
	return c && c[1] ? c + 1 : NULL;
}

/* "type\x1fstate_key" -> its two halves (pointers into a copy in buf). */
static int split_key(const char *k, char *buf, size_t len, const char **type, const char **sk)
{
	if (snprintf(buf, len, "%s", k) >= (int)len)
		return -1;
	char *sep = strchr(buf, '\x1f');
	if (!sep)
		return -1;
	*sep = 0;
	*type = buf;
	*sk = sep + 1;
	return 0;
}

int room_dag_group_states(struct db *db, const int64_t *groups, int n, json_t **out, struct al_error *err)
{
	for (int i = 0; i < n; i++)
		out[i] = NULL;
	if (n <= 0)
		return 0;
	char *ids[ROOM_DAG_MAX_GROUPS];
	char buf[ROOM_DAG_MAX_GROUPS][24];
	if (n > ROOM_DAG_MAX_GROUPS)
		return al_error_set(err, 500, "M_UNKNOWN", "too many state groups");
	for (int i = 0; i < n; i++) {
		fmt_i64(buf[i], sizeof(buf[i]), groups[i]);
		ids[i] = buf[i];
	}
	char *arr = room_pg_array((const char *const *)ids, n);
	if (!arr)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {arr};
	PGresult *r = db_exec(
		db, err,
		"WITH RECURSIVE g(origin, id, lvl) AS ("
		" SELECT o, o, 0 FROM unnest($1::bigint[]) o"
		" UNION ALL SELECT g.origin, s.prev_group, g.lvl + 1 FROM state_groups s JOIN g ON s.id = g.id"
		" WHERE s.prev_group IS NOT NULL) "
		"SELECT DISTINCT ON (g.origin, e.type, e.state_key) g.origin, e.type, e.state_key, e.event_id "
		"FROM state_group_edits e JOIN g ON e.state_group = g.id "
		"ORDER BY g.origin, e.type, e.state_key, g.lvl",
		1, p);
	free(arr);
	if (!r)
		return -1;
	for (int i = 0; i < n; i++)
		out[i] = json_object();
	for (int row = 0; row < PQntuples(r); row++) {
		int64_t g = strtoll(PQgetvalue(r, row, 0), NULL, 10);
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(PQgetvalue(r, row, 1), PQgetvalue(r, row, 2), k, sizeof(k)) < 0)
			continue;
		for (int i = 0; i < n; i++)
			if (groups[i] == g)
				json_object_set_new(out[i], k, json_string(PQgetvalue(r, row, 3)));
	}
	PQclear(r);
	return 0;
}

json_t *room_dag_group_lookup(struct db *db, int64_t group, const char *const *keys, int n, struct al_error *err)
{
	json_t *pairs = json_array();
	for (int i = 0; i < n; i++) {
		char buf[ROOM_AUTH_KEY_MAX + 1];
		const char *type, *sk;
		if (split_key(keys[i], buf, sizeof(buf), &type, &sk) == 0)
			json_array_append_new(pairs, json_pack("[s, s]", type, sk));
	}
	char *text = pairs ? cjson_encode(pairs, NULL, err) : NULL;
	json_decref(pairs);
	if (!text)
		return NULL;
	char g[24];
	fmt_i64(g, sizeof(g), group);
	const char *p[] = {g, text};
	PGresult *r = db_exec(
		db, err,
		"WITH RECURSIVE g(id, lvl) AS (SELECT $1::bigint, 0 UNION ALL "
		"SELECT s.prev_group, g.lvl + 1 FROM state_groups s JOIN g ON s.id = g.id "
		"WHERE s.prev_group IS NOT NULL) "
		"SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id "
		"FROM state_group_edits e JOIN g ON e.state_group = g.id "
		"WHERE (e.type, e.state_key) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements($2::jsonb) x) "
		"ORDER BY e.type, e.state_key, g.lvl",
		2, p);
	free(text);
	if (!r)
		return NULL;
	json_t *out = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), k, sizeof(k)) == 0)
			json_object_set_new(out, k, json_string(PQgetvalue(r, i, 2)));
	}
	PQclear(r);
	return out;
}

int room_dag_chain_len(struct db *db, int64_t group, struct al_error *err)
{
	char g[24];
	fmt_i64(g, sizeof(g), group);
	const char *p[] = {g};
	PGresult *r = db_exec(db, err, "SELECT chain_len FROM state_groups WHERE id = $1::bigint", 1, p);
	if (!r)
		return -1;
	int len = PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : 0;
	PQclear(r);
	return len;
}

/* [[type, state_key, event_id], ...] of the entries of state that differ
 * from base (all of them when base is NULL). */
static json_t *edits_of(json_t *state, json_t *base)
{
	json_t *a = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(state, k, v)
	{
		const char *old = base ? json_string_value(json_object_get(base, k)) : NULL;
		if (old && strcmp(old, json_string_value(v)) == 0)
			continue;
		char buf[ROOM_AUTH_KEY_MAX + 1];
		const char *type, *sk;
		if (split_key(k, buf, sizeof(buf), &type, &sk) == 0)
			json_array_append_new(a, json_pack("[s, s, O]", type, sk, v));
	}
	return a;
}

int64_t room_dag_new_group(struct db *db, const char *room_id, json_t *state, int64_t prev_group, json_t *prev_state,
			   int prev_chain_len, int *chain_len, struct al_error *err)
{
	bool delta = prev_group > 0 && prev_state && prev_chain_len + 1 < ROOM_SNAPSHOT_INTERVAL;
	if (delta) {
		/* a removed key needs a snapshot */
		const char *k;
		json_t *v;
		json_object_foreach(prev_state, k, v)
		{
			if (!json_object_get(state, k)) {
				delta = false;
				break;
			}
		}
	}
	json_t *edits = edits_of(state, delta ? prev_state : NULL);
	if (!edits) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return 0;
	}
	if (delta && json_array_size(edits) == 0) {
		json_decref(edits);
		if (chain_len)
			*chain_len = prev_chain_len;
		return prev_group;
	}
	char *text = cjson_encode(edits, NULL, err);
	json_decref(edits);
	if (!text)
		return 0;
	char prev[24], len[24];
	fmt_i64(prev, sizeof(prev), prev_group);
	fmt_i64(len, sizeof(len), delta ? prev_chain_len + 1 : 0);
	const char *p[] = {room_id, delta ? prev : NULL, len, text};
	PGresult *r = db_exec(db, err,
			      "WITH g AS (INSERT INTO state_groups (room_id, prev_group, chain_len) "
			      "VALUES ($1::text, $2::bigint, $3::int) RETURNING id), "
			      "x AS (INSERT INTO state_group_edits (state_group, type, state_key, event_id) "
			      "SELECT g.id, e->>0, e->>1, e->>2 FROM g, jsonb_array_elements($4::jsonb) e) "
			      "SELECT id FROM g",
			      4, p);
	free(text);
	if (!r)
		return 0;
	int64_t id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	if (chain_len)
		*chain_len = delta ? prev_chain_len + 1 : 0;
	return id;
}

int room_dag_set_current_key(struct db *db, const char *room_id, const char *type, const char *state_key,
			     const char *event_id, int64_t group, int64_t stream, struct al_error *err)
{
	char g[24], s[24];
	fmt_i64(g, sizeof(g), group);
	fmt_i64(s, sizeof(s), stream);
	const char *p[] = {room_id, type, state_key, event_id, g, s};
	PGresult *r = db_exec(
		db, err,
		"WITH c AS (INSERT INTO current_state (room_id, type, state_key, event_id) "
		"VALUES ($1::text, $2::text, $3::text, $4::text) ON CONFLICT (room_id, type, state_key) "
		"DO UPDATE SET event_id = EXCLUDED.event_id), "
		"m AS (INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) "
		"SELECT $1::text, $3::text, ev.json::jsonb->'content'->>'membership', $4::text, $6::bigint "
		"FROM events ev WHERE ev.event_id = $4::text AND $2::text = 'm.room.member' "
		"AND ev.json::jsonb->'content'->>'membership' IN ('join', 'invite', 'leave', 'ban', 'knock') "
		"ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership, "
		"event_id = EXCLUDED.event_id, stream_ordering = EXCLUDED.stream_ordering, forgotten = false) "
		"UPDATE rooms SET state_group = $5::bigint WHERE room_id = $1::text",
		6, p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

int64_t room_dag_group_add(struct db *db, const char *room_id, int64_t prev_group, const char *type,
			   const char *state_key, const char *event_id, struct al_error *err)
{
	int cl = prev_group > 0 ? room_dag_chain_len(db, prev_group, err) : 0;
	if (cl < 0)
		return 0;
	bool snapshot = prev_group <= 0 || cl + 1 >= ROOM_SNAPSHOT_INTERVAL;
	char prev[24], len[24];
	fmt_i64(prev, sizeof(prev), prev_group);
	fmt_i64(len, sizeof(len), snapshot ? 0 : cl + 1);
	const char *p[] = {room_id, prev, len, type, state_key, event_id};
	PGresult *r = db_exec(
		db, err,
		snapshot ? "WITH RECURSIVE c(id, lvl) AS (SELECT $2::bigint, 0 UNION ALL "
			   "SELECT s.prev_group, c.lvl + 1 FROM state_groups s JOIN c ON s.id = c.id "
			   "WHERE s.prev_group IS NOT NULL), "
			   "old AS (SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id "
			   "FROM state_group_edits e JOIN c ON e.state_group = c.id ORDER BY e.type, e.state_key, "
			   "c.lvl), "
			   "g AS (INSERT INTO state_groups (room_id, prev_group, chain_len) "
			   "VALUES ($1::text, NULL, $3::int) RETURNING id), "
			   "x AS (INSERT INTO state_group_edits (state_group, type, state_key, event_id) "
			   "SELECT g.id, o.type, o.state_key, o.event_id FROM old o, g "
			   "WHERE NOT (o.type = $4::text AND o.state_key = $5::text) "
			   "UNION ALL SELECT g.id, $4::text, $5::text, $6::text FROM g) SELECT id FROM g"
			 : "WITH g AS (INSERT INTO state_groups (room_id, prev_group, chain_len) "
			   "VALUES ($1::text, $2::bigint, $3::int) RETURNING id), "
			   "x AS (INSERT INTO state_group_edits (state_group, type, state_key, event_id) "
			   "SELECT g.id, $4::text, $5::text, $6::text FROM g) SELECT id FROM g",
		6, p);
	if (!r)
		return 0;
	int64_t id = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	return id;
}

json_t *room_dag_current_state(struct db *db, const char *room_id, struct al_error *err)
{
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err, "SELECT type, state_key, event_id FROM current_state WHERE room_id = $1", 1, p);
	if (!r)
		return NULL;
	json_t *st = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		char k[ROOM_AUTH_KEY_MAX + 1];
		if (room_auth_key(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), k, sizeof(k)) == 0)
			json_object_set_new(st, k, json_string(PQgetvalue(r, i, 2)));
	}
	PQclear(r);
	return st;
}

int room_dag_set_current(struct db *db, const char *room_id, json_t *state, int64_t group, int64_t stream,
			 struct al_error *err)
{
	json_t *cur = room_dag_current_state(db, room_id, err);
	if (!cur)
		return -1;
	json_t *edits = edits_of(state, cur);
	json_t *gone = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(cur, k, v)
	{
		char buf[ROOM_AUTH_KEY_MAX + 1];
		const char *type, *sk;
		if (!json_object_get(state, k) && split_key(k, buf, sizeof(buf), &type, &sk) == 0)
			json_array_append_new(gone, json_pack("[s, s]", type, sk));
	}
	json_decref(cur);
	char *et = edits ? cjson_encode(edits, NULL, err) : NULL;
	char *gt = gone ? cjson_encode(gone, NULL, err) : NULL;
	json_decref(edits);
	json_decref(gone);
	int rc = -1;
	if (!et || !gt) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	char g[24], s[24];
	fmt_i64(g, sizeof(g), group);
	fmt_i64(s, sizeof(s), stream);
	const char *p[] = {room_id, et, gt, g, s};
	PGresult *r = db_exec(
		db, err,
		"WITH d AS (SELECT e->>0 AS t, e->>1 AS sk, e->>2 AS id FROM jsonb_array_elements($2::jsonb) e), "
		"x AS (SELECT e->>0 AS t, e->>1 AS sk FROM jsonb_array_elements($3::jsonb) e), "
		"del AS (DELETE FROM current_state c USING x WHERE c.room_id = $1::text AND c.type = x.t "
		"AND c.state_key = x.sk), "
		"ins AS (INSERT INTO current_state (room_id, type, state_key, event_id) "
		"SELECT $1::text, t, sk, id FROM d ON CONFLICT (room_id, type, state_key) "
		"DO UPDATE SET event_id = EXCLUDED.event_id), "
		"m AS (INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) "
		"SELECT $1::text, d.sk, ev.json::jsonb->'content'->>'membership', d.id, $5::bigint "
		"FROM d JOIN events ev ON ev.event_id = d.id WHERE d.t = 'm.room.member' "
		"AND ev.json::jsonb->'content'->>'membership' IN ('join', 'invite', 'leave', 'ban', 'knock') "
		"ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership, "
		"event_id = EXCLUDED.event_id, stream_ordering = EXCLUDED.stream_ordering, forgotten = false), "
		"mg AS (UPDATE room_memberships rm SET membership = 'leave', stream_ordering = $5::bigint "
		"FROM x WHERE x.t = 'm.room.member' AND rm.room_id = $1::text AND rm.user_id = x.sk) "
		"UPDATE rooms SET state_group = $4::bigint WHERE room_id = $1::text",
		5, p);
	if (r) {
		PQclear(r);
		rc = 0;
	}
out:
	free(et);
	free(gt);
	return rc;
}

static char *ids_array(json_t *ids)
{
	size_t n = json_array_size(ids);
	const char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	int k = 0;
	for (size_t i = 0; i < n; i++) {
		const char *s = json_string_value(json_array_get(ids, i));
		if (s)
			v[k++] = s;
	}
	char *arr = room_pg_array(v, k);
	free(v);
	return arr;
}

json_t *room_dag_load_events(struct db *db, const char *room_id, json_t *ids, bool with_auth_chain, json_t **rejected,
			     struct al_error *err)
{
	if (rejected)
		*rejected = json_object();
	char *arr = ids_array(ids);
	if (!arr) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	const char *p[] = {arr, room_id};
	PGresult *r = db_exec(
		db, err,
		with_auth_chain ? "WITH RECURSIVE c(id) AS (SELECT unnest($1::text[]) UNION "
				  "SELECT a.auth_event_id FROM event_auth a JOIN c ON a.event_id = c.id) "
				  "SELECT e.event_id, e.json, e.rejected FROM c JOIN events e ON e.event_id = c.id "
				  "WHERE e.room_id = $2"
				: "SELECT event_id, json, rejected FROM events WHERE event_id = ANY($1::text[]) "
				  "AND room_id = $2",
		2, p);
	free(arr);
	if (!r)
		return NULL;
	json_t *out = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL);
		if (!json_is_object(pdu)) {
			json_decref(pdu);
			continue;
		}
		json_object_set_new(pdu, "event_id", json_string(PQgetvalue(r, i, 0)));
		json_object_set_new(out, PQgetvalue(r, i, 0), pdu);
		if (rejected && *rejected && PQgetvalue(r, i, 2)[0] == 't')
			json_object_set_new(*rejected, PQgetvalue(r, i, 0), json_true());
	}
	PQclear(r);
	return out;
}

json_t *room_dag_auth_state(struct db *db, const char *room_id, const json_t *ev, json_t *state, struct al_error *err)
{
	char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
	int nk = state_res_auth_types(ev, keys);
	json_t *ids = json_array();
	for (int i = 0; i < nk; i++) {
		json_t *id = json_object_get(state, keys[i]);
		if (id)
			json_array_append(ids, id);
	}
	json_t *evs = room_dag_load_events(db, room_id, ids, false, NULL, err);
	json_decref(ids);
	if (!evs)
		return NULL;
	json_t *out = json_object();
	for (int i = 0; i < nk; i++) {
		const char *id = json_string_value(json_object_get(state, keys[i]));
		json_t *pdu = id ? json_object_get(evs, id) : NULL;
		if (pdu)
			json_object_set(out, keys[i], pdu);
	}
	json_decref(evs);
	return out;
}

struct loaded {
	json_t *events;
	json_t *rejected;
};

static const json_t *loaded_event(void *arg, const char *id)
{
	return json_object_get(((struct loaded *)arg)->events, id);
}

static bool loaded_rejected(void *arg, const char *id)
{
	return json_object_get(((struct loaded *)arg)->rejected, id) != NULL;
}

json_t *room_dag_resolve(struct db *db, const char *room_id, const struct event_rules *r, json_t *const *states, int n,
			 struct al_error *err)
{
	if (n == 1)
		return json_deep_copy(states[0]);
	json_t *ids = json_array(), *seen = json_object();
	for (int i = 0; i < n; i++) {
		const char *k;
		json_t *v;
		json_object_foreach(states[i], k, v)
		{
			if (!json_object_get(seen, json_string_value(v))) {
				json_object_set_new(seen, json_string_value(v), json_true());
				json_array_append(ids, v);
			}
		}
	}
	json_decref(seen);
	struct loaded l = {0};
	l.events = room_dag_load_events(db, room_id, ids, true, &l.rejected, err);
	json_decref(ids);
	if (!l.events) {
		json_decref(l.rejected);
		return NULL;
	}
	struct state_res_source src = {loaded_event, loaded_rejected, &l};
	json_t *out = state_res_v2(r, states, n, &src, err);
	json_decref(l.events);
	json_decref(l.rejected);
	return out;
}

int room_dag_redact(struct db *db, const struct event_rules *r, const char *room_id, const char *target,
		    json_t *redaction, struct al_error *err)
{
	const char *p[] = {target, room_id};
	PGresult *res = db_exec(
		db, err, "SELECT json FROM events WHERE event_id = $1 AND room_id = $2 AND redacted_by IS NULL", 2, p);
	if (!res)
		return -1;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return 0;
	}
	json_t *pdu = json_loads(PQgetvalue(res, 0, 0), JSON_DECODE_ANY, NULL);
	PQclear(res);
	json_t *red = pdu ? event_redact(pdu, r) : NULL;
	json_decref(pdu);
	if (!red)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot redact");
	json_object_set_new(red, "unsigned",
			    json_pack("{s:O, s:O}", "redacted_because", redaction, "redacted_by",
				      json_object_get(redaction, "event_id")));
	char *text = cjson_encode(red, NULL, err);
	json_decref(red);
	if (!text)
		return -1;
	const char *by = json_string_value(json_object_get(redaction, "event_id"));
	const char *u[] = {target, text, by};
	res = db_exec(db, err, "UPDATE events SET json = $2, redacted_by = $3 WHERE event_id = $1", 3, u);
	free(text);
	if (!res)
		return -1;
	PQclear(res);
	return 0;
}

PGresult *room_dag_fanout_servers(struct db *db, const char *room_id, const char *self, const char *extra,
				  const char *except, struct al_error *err)
{
	const char *p[] = {room_id, self, extra, except};
	return db_exec_prepared(
		db, err, NULL, "room_dag_fanout_servers",
		"SELECT DISTINCT s FROM (SELECT substring(user_id from position(':' in user_id) + 1) AS s "
		"FROM room_memberships WHERE room_id = $1 AND membership = 'join' "
		"UNION SELECT $3::text WHERE $3::text IS NOT NULL) x "
		"WHERE s <> $2 AND s IS DISTINCT FROM $4::text",
		4, p);
}

int room_dag_fanout_to(struct db *db, PGresult *servers, const json_t *pdu, struct al_error *err)
{
	int n = PQntuples(servers);
	if (n == 0)
		return 0;
	const char **dests = calloc((size_t)n, sizeof(*dests));
	if (!dests)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	for (int i = 0; i < n; i++)
		dests[i] = PQgetvalue(servers, i, 0);
	int rc = fed_sender_enqueue_pdu(db, dests, n, pdu, err);
	free(dests);
	return rc;
}

int room_dag_fanout(struct db *db, const char *room_id, const char *self, const json_t *pdu, const char *extra,
		    const char *except, struct al_error *err)
{
	PGresult *r = room_dag_fanout_servers(db, room_id, self, extra, except, err);
	if (!r)
		return -1;
	int rc = room_dag_fanout_to(db, r, pdu, err);
	PQclear(r);
	return rc;
}
