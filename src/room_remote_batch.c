/* room_remote_batch.c - room_remote_accept_run: the common case of an
 * inbound transaction (a line of timeline events of one room, each on the
 * one before it or on the room's forward extremities, all on the current
 * state) checked and stored in one database transaction of three round
 * trips, instead of one transaction of about ten per PDU. Whatever does
 * not fit (state events, redactions, gaps, forks of the state, soft
 * failures, rejections) ends the run and goes through room_remote_accept
 * as before, in the same order. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "calls.h"
#include "cjson.h"
#include "keys.h"
#include "log.h"
#include "room_auth.h"
#include "room_dag.h"
#include "room_remote.h"
#include "room_remote_internal.h"
#include "state_res.h"

#define STREAM_LOCK "6006"

struct run {
	const struct room_ctx *c;
	const char *room_id;
	struct room_pdu_run_item *items;
	int n;
	struct event_rules rules;
	int64_t group; /* the room's current state group */
	json_t *known; /* stored events: ID -> {pdu, rejected, group, outlier} */
	json_t *mine;  /* IDs of the items taken into the run -> true */
	json_t *pdus;  /* per item: a copy with its event_id, without unsigned */
	json_t *keys;  /* the state keys the run's auth checks need -> true */
	json_t *state; /* those keys at group: key -> PDU with event_id */
	int taken;     /* items [0, taken) are in the run */
};

static const char *server_of(const char *user_id)
{
	const char *s = user_id ? strchr(user_id, ':') : NULL;
	return s ? s + 1 : NULL;
}

static char *ids_array(json_t *ids)
{
	size_t n = json_array_size(ids);
	const char **v = calloc(n + 1, sizeof(*v));
	if (!v)
		return NULL;
	for (size_t i = 0; i < n; i++)
		v[i] = json_string_value(json_array_get(ids, i));
	char *a = room_pg_array(v, (int)n);
	free(v);
	return a;
}

/* The IDs the run looks up: the items', their prev and auth events'. */
static char *lookup_ids(struct run *r)
{
	json_t *ids = json_array();
	for (int i = 0; i < r->n; i++) {
		const json_t *pdu = r->items[i].pdu;
		json_array_append_new(ids, json_string(r->items[i].event_id));
		json_t *a = event_ref_ids(json_object_get(pdu, "auth_events"));
		json_t *p = event_ref_ids(json_object_get(pdu, "prev_events"));
		json_array_extend(ids, a);
		json_array_extend(ids, p);
		json_decref(a);
		json_decref(p);
	}
	char *text = ids_array(ids);
	json_decref(ids);
	return text;
}

static void known_from(struct run *r, PGresult *res)
{
	for (int i = 0; i < PQntuples(res); i++) {
		json_t *kp = json_loads(PQgetvalue(res, i, 1), JSON_DECODE_ANY, NULL);
		if (!kp)
			continue;
		json_object_set_new(kp, "event_id", json_string(PQgetvalue(res, i, 0)));
		json_object_set_new(r->known, PQgetvalue(res, i, 0),
				    json_pack("{s:o, s:b, s:I, s:b}", "pdu", kp, "rejected",
					      PQgetvalue(res, i, 2)[0] == 't', "group",
					      (json_int_t)strtoll(PQgetvalue(res, i, 3), NULL, 10), "outlier",
					      PQgetvalue(res, i, 4)[0] == 't'));
	}
}

/* BEGIN, the room row locked (its version and current state group, and
 * whether a forward extremity is on another state), the stored events the
 * run refers to: one round trip. 0 when the run may go on (transaction
 * open), 1 when it may not (transaction closed), -1 on error (closed). */
static int run_open(struct run *r, struct al_error *err)
{
	char *ids = lookup_ids(r);
	if (!ids)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p1[] = {r->room_id};
	const char *p2[] = {r->room_id, ids};
	struct db_stmt st[3] = {
		{.sql = "BEGIN"},
		{.name = "remote_run_lock",
		 .sql = "SELECT r.room_version, coalesce(r.state_group, 0), EXISTS (SELECT 1 FROM room_extremities x "
			"JOIN events e ON e.event_id = x.event_id WHERE x.room_id = r.room_id "
			"AND e.state_group IS DISTINCT FROM r.state_group) FROM rooms r WHERE r.room_id = $1 FOR "
			"UPDATE",
		 .nparams = 1,
		 .params = p1},
		{.name = "remote_run_known",
		 .sql = "SELECT event_id, json, rejected, coalesce(state_group, 0), outlier FROM events "
			"WHERE room_id = $1 AND event_id = ANY($2::text[])",
		 .nparams = 2,
		 .params = p2},
	};
	int rc = db_pipeline(r->c->db, st, 3, NULL, err);
	free(ids);
	if (rc < 0) {
		db_rollback(r->c->db);
		return -1;
	}
	PGresult *lock = st[1].result;
	rc = 1;
	if (PQntuples(lock) == 1 && PQgetvalue(lock, 0, 2)[0] == 'f' &&
	    event_rules_for(PQgetvalue(lock, 0, 0), &r->rules) == 0) {
		r->group = strtoll(PQgetvalue(lock, 0, 1), NULL, 10);
		known_from(r, st[2].result);
		rc = r->group > 0 ? 0 : 1;
	}
	PQclear(st[0].result);
	PQclear(lock);
	PQclear(st[2].result);
	if (rc)
		db_rollback(r->c->db);
	return rc;
}

/* Is each prev event of pdu on the current state: stored in the timeline
 * with the room's state group, or an earlier item of the run? */
static bool prevs_on_current(struct run *r, const json_t *pdu)
{
	json_t *prev = json_object_get(pdu, "prev_events");
	if (json_array_size(prev) == 0)
		return false;
	size_t i;
	json_t *v;
	json_array_foreach(prev, i, v)
	{
		const char *id = event_ref_id(v);
		if (!id)
			return false;
		if (json_object_get(r->mine, id))
			continue;
		json_t *k = json_object_get(r->known, id);
		if (!k || json_is_true(json_object_get(k, "rejected")) || json_is_true(json_object_get(k, "outlier")) ||
		    json_integer_value(json_object_get(k, "group")) != r->group)
			return false;
	}
	return true;
}

/* Item i fits the run: a timeline event of another server (no state, no
 * redaction) on the current state, allowed by its auth events. */
static bool fits(struct run *r, json_t *pdu)
{
	const char *type = event_str(pdu, "type");
	const char *from = server_of(event_str(pdu, "sender"));
	if (!type || json_object_get(pdu, "state_key") || strcmp(type, "m.room.redaction") == 0 || !from ||
	    strcmp(from, keys_server_name(r->c->keys)) == 0 || !prevs_on_current(r, pdu))
		return false;
	struct room_pdu_outcome o = {0};
	json_t *auth_map = NULL;
	char reason[256];
	bool ok = room_remote_check_auth_events(pdu, r->known, &o, &auth_map) == 0 &&
		  room_remote_auth_against(&r->rules, pdu, auth_map, reason, sizeof(reason)) == 0;
	json_decref(auth_map);
	room_pdu_outcome_clear(&o);
	if (!ok)
		return false;
	char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
	int nk = state_res_auth_types(pdu, keys);
	for (int k = 0; k < nk; k++)
		json_object_set_new(r->keys, keys[k], json_true());
	return true;
}

/* Take the leading items that fit; items stored already are decided
 * (ROOM_PDU_KNOWN). Pure. */
static void run_take(struct run *r)
{
	for (int i = 0; i < r->n; i++) {
		struct room_pdu_run_item *it = &r->items[i];
		json_t *pdu = json_deep_copy(it->pdu);
		if (!pdu)
			break;
		json_object_del(pdu, "unsigned");
		json_object_set_new(pdu, "event_id", json_string(it->event_id));
		json_array_append_new(r->pdus, pdu);
		if (json_object_get(r->known, it->event_id) || json_object_get(r->mine, it->event_id)) {
			it->out.status = ROOM_PDU_KNOWN;
		} else if (fits(r, pdu)) {
			it->out.status = ROOM_PDU_ACCEPTED;
			json_object_set_new(r->mine, it->event_id, json_true());
		} else {
			break;
		}
		r->taken = i + 1;
	}
}

/* ---- the auth state at a state group, cached ----
 * A state group never changes, so what a run read of one (the events of
 * some keys) stays true: the next runs on the same group (every
 * transaction of a busy room until its state changes) skip that query.
 * Shared by the workers (copies in and out, under a mutex). */
#define STATE_CACHE_ROOMS 16
#define STATE_CACHE_KEYS 256 /* per group: more keys and it starts over */

struct state_cache_entry {
	char room_id[ROOM_ID_MAX + 1];
	int64_t group;
	json_t *state; /* key -> PDU with event_id */
};

static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;
static struct state_cache_entry cache[STATE_CACHE_ROOMS];
static int cache_next;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_free(void)
{
	for (int i = 0; i < STATE_CACHE_ROOMS; i++)
		json_decref(cache[i].state);
	memset(cache, 0, sizeof(cache));
}

static void cache_init(void)
{
	atexit(cache_free);
}

/* Under cache_mu. */
static struct state_cache_entry *cache_find(const char *room_id, int64_t group)
{
	for (int i = 0; i < STATE_CACHE_ROOMS; i++)
		if (cache[i].state && cache[i].group == group && strcmp(cache[i].room_id, room_id) == 0)
			return &cache[i];
	return NULL;
}

/* Copy what the cache holds of r->keys into r->state; the keys still
 * missing go into missing. */
static void cache_get(struct run *r, json_t *missing)
{
	pthread_once(&cache_once, cache_init);
	pthread_mutex_lock(&cache_mu);
	struct state_cache_entry *e = cache_find(r->room_id, r->group);
	const char *k;
	json_t *v;
	json_object_foreach(r->keys, k, v)
	{
		json_t *pdu = e ? json_object_get(e->state, k) : NULL;
		if (pdu)
			json_object_set_new(r->state, k, json_deep_copy(pdu));
		else
			json_object_set_new(missing, k, json_true());
	}
	pthread_mutex_unlock(&cache_mu);
}

static void cache_put(struct run *r, json_t *found)
{
	if (strlen(r->room_id) > ROOM_ID_MAX)
		return;
	pthread_mutex_lock(&cache_mu);
	struct state_cache_entry *e = cache_find(r->room_id, r->group);
	if (!e || json_object_size(e->state) + json_object_size(found) > STATE_CACHE_KEYS) {
		if (!e) {
			e = &cache[cache_next];
			cache_next = (cache_next + 1) % STATE_CACHE_ROOMS;
		}
		json_decref(e->state);
		e->state = json_object();
		snprintf(e->room_id, sizeof(e->room_id), "%s", r->room_id);
		e->group = r->group;
	}
	const char *k;
	json_t *v;
	json_object_foreach(found, k, v)
	{
		json_object_set_new(e->state, k, json_deep_copy(v));
	}
	pthread_mutex_unlock(&cache_mu);
}

/* The state the run's auth checks need, at the current group, with the
 * events: from the cache, else one round trip. */
static int run_state(struct run *r, struct al_error *err)
{
	json_t *missing = json_object();
	cache_get(r, missing);
	if (json_object_size(missing) == 0) {
		json_decref(missing);
		return 0;
	}
	json_t *pairs = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(missing, k, v)
	{
		const char *sep = strchr(k, '\x1f');
		if (sep)
			json_array_append_new(pairs, json_pack("[s%, s]", k, (size_t)(sep - k), sep + 1));
	}
	json_decref(missing);
	char *text = cjson_encode(pairs, NULL, err);
	json_decref(pairs);
	if (!text)
		return -1;
	char g[24];
	snprintf(g, sizeof(g), "%" PRId64, r->group);
	const char *p[] = {g, text, r->room_id};
	PGresult *res = db_exec_prepared(
		r->c->db, err, NULL, "remote_run_state",
		"WITH RECURSIVE g(id, lvl) AS (SELECT $1::bigint, 0 UNION ALL "
		"SELECT s.prev_group, g.lvl + 1 FROM state_groups s JOIN g ON s.id = g.id "
		"WHERE s.prev_group IS NOT NULL), "
		"k AS (SELECT DISTINCT ON (e.type, e.state_key) e.type, e.state_key, e.event_id "
		"FROM state_group_edits e JOIN g ON e.state_group = g.id "
		"WHERE (e.type, e.state_key) IN (SELECT x->>0, x->>1 FROM jsonb_array_elements($2::jsonb) x) "
		"ORDER BY e.type, e.state_key, g.lvl) "
		"SELECT k.type, k.state_key, k.event_id, v.json FROM k JOIN events v ON v.event_id = k.event_id "
		"WHERE v.room_id = $3",
		3, p);
	free(text);
	if (!res)
		return -1;
	json_t *found = json_object();
	for (int i = 0; i < PQntuples(res); i++) {
		char key[ROOM_AUTH_KEY_MAX + 1];
		json_t *pdu = json_loads(PQgetvalue(res, i, 3), JSON_DECODE_ANY, NULL);
		if (pdu && room_auth_key(PQgetvalue(res, i, 0), PQgetvalue(res, i, 1), key, sizeof(key)) == 0) {
			json_object_set_new(pdu, "event_id", json_string(PQgetvalue(res, i, 2)));
			json_object_set(r->state, key, pdu);
			json_object_set_new(found, key, pdu);
		} else {
			json_decref(pdu);
		}
	}
	PQclear(res);
	cache_put(r, found);
	json_decref(found);
	return 0;
}

/* Each item against the state before it (the current state: no soft
 * failure to check); the run ends before the first that is not allowed. */
static void run_check_state(struct run *r)
{
	for (int i = 0; i < r->taken; i++) {
		if (r->items[i].out.status != ROOM_PDU_ACCEPTED)
			continue;
		json_t *pdu = json_array_get(r->pdus, (size_t)i);
		char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
		int nk = state_res_auth_types(pdu, keys);
		json_t *auth = json_object();
		for (int k = 0; k < nk; k++) {
			json_t *e = json_object_get(r->state, keys[k]);
			if (e)
				json_object_set(auth, keys[k], e);
		}
		char reason[256];
		int rc = room_remote_auth_against(&r->rules, pdu, auth, reason, sizeof(reason));
		json_decref(auth);
		if (rc < 0) {
			r->taken = i;
			return;
		}
	}
}

/* Column arrays of the run's INSERT (malloc'd PostgreSQL array texts). */
enum { C_ID, C_DEPTH, C_TYPE, C_SENDER, C_TS, C_JSON, C_EDGE_EV, C_EDGE_PREV, C_AUTH_EV, C_AUTH_ID, C_LEAVES, C_N };

struct cols {
	char *arr[C_N];
	char *texts[ROOM_REMOTE_RUN_MAX];
	char nums[2][ROOM_REMOTE_RUN_MAX][24];
	const char *head;
	int64_t max_depth;
	int rows;
};

static void cols_free(struct cols *c)
{
	for (int i = 0; i < C_N; i++)
		free(c->arr[i]);
	for (int i = 0; i < ROOM_REMOTE_RUN_MAX; i++)
		free(c->texts[i]);
}

static bool is_prev_in_run(struct run *r, const char *id)
{
	for (int i = 0; i < r->taken; i++) {
		if (r->items[i].out.status != ROOM_PDU_ACCEPTED)
			continue;
		json_t *prev = json_object_get(json_array_get(r->pdus, (size_t)i), "prev_events");
		size_t k;
		json_t *v;
		json_array_foreach(prev, k, v)
		{
			const char *p = event_ref_id(v);
			if (p && strcmp(p, id) == 0)
				return true;
		}
	}
	return false;
}

static int append_refs(json_t *list, const char *id, const char **ev, const char **ref, int *n, int max)
{
	size_t k;
	json_t *v;
	json_array_foreach(list, k, v)
	{
		const char *p = event_ref_id(v);
		if (!p)
			continue;
		if (*n >= max)
			return -1;
		ev[*n] = id;
		ref[*n] = p;
		(*n)++;
	}
	return 0;
}

static int cols_build(struct run *r, struct cols *c, struct al_error *err)
{
	const int max_refs = ROOM_REMOTE_RUN_MAX * (EVENT_MAX_PREV + EVENT_MAX_AUTH);
	const char *v[C_LEAVES + 1][ROOM_REMOTE_RUN_MAX];
	const char **ev = calloc((size_t)max_refs * 4, sizeof(*ev));
	if (!ev)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char **pv = ev + max_refs, **ae = ev + 2 * max_refs, **ai = ev + 3 * max_refs;
	int n = 0, ne = 0, na = 0, nl = 0, rc = 0;
	for (int i = 0; i < r->taken && rc == 0; i++) {
		if (r->items[i].out.status != ROOM_PDU_ACCEPTED)
			continue;
		json_t *pdu = json_array_get(r->pdus, (size_t)i);
		const char *id = r->items[i].event_id;
		int64_t depth = json_integer_value(json_object_get(pdu, "depth"));
		c->texts[n] = room_remote_stored_text(pdu, &r->rules, err);
		if (!c->texts[n])
			rc = -1;
		snprintf(c->nums[0][n], 24, "%" PRId64, depth);
		snprintf(c->nums[1][n], 24, "%" PRId64,
			 (int64_t)json_integer_value(json_object_get(pdu, "origin_server_ts")));
		v[C_ID][n] = id;
		v[C_DEPTH][n] = c->nums[0][n];
		v[C_TYPE][n] = event_str(pdu, "type");
		v[C_SENDER][n] = event_str(pdu, "sender");
		v[C_TS][n] = c->nums[1][n];
		v[C_JSON][n] = c->texts[n];
		if (rc == 0 && (append_refs(json_object_get(pdu, "prev_events"), id, ev, pv, &ne, max_refs) < 0 ||
				append_refs(json_object_get(pdu, "auth_events"), id, ae, ai, &na, max_refs) < 0))
			rc = al_error_set(err, 500, "M_UNKNOWN", "too many references");
		if (!is_prev_in_run(r, id))
			v[C_LEAVES][nl++] = id;
		if (depth > c->max_depth)
			c->max_depth = depth;
		c->head = id;
		n++;
	}
	c->rows = n;
	for (int i = 0; rc == 0 && i <= C_JSON; i++)
		c->arr[i] = room_pg_array(v[i], n);
	if (rc == 0) {
		c->arr[C_EDGE_EV] = room_pg_array(ev, ne);
		c->arr[C_EDGE_PREV] = room_pg_array(pv, ne);
		c->arr[C_AUTH_EV] = room_pg_array(ae, na);
		c->arr[C_AUTH_ID] = room_pg_array(ai, na);
		c->arr[C_LEAVES] = room_pg_array(v[C_LEAVES], nl);
		for (int i = 0; i < C_N; i++)
			if (!c->arr[i])
				rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	free(ev);
	return rc;
}

/* The run's rows and COMMIT in one round trip: the stream lock first (held
 * to commit, as every writer: room.h), stream positions in the run's
 * order, edges, the forward extremities (the prev events of the run go,
 * its leaves come), the head. 0 committed, 1 nothing to store (the
 * transaction is open), -1 (the transaction is open or its outcome
 * unknown: the caller rolls back). */
static int run_store(struct run *r, struct al_error *err)
{
	struct cols c = {0};
	int rc = cols_build(r, &c, err);
	if (rc < 0 || c.rows == 0) {
		cols_free(&c);
		return rc < 0 ? -1 : 1;
	}
	char g[24], d[24];
	snprintf(g, sizeof(g), "%" PRId64, r->group);
	snprintf(d, sizeof(d), "%" PRId64, c.max_depth);
	const char *p[] = {r->room_id,
			   c.arr[C_ID],
			   c.arr[C_DEPTH],
			   c.arr[C_TYPE],
			   c.arr[C_SENDER],
			   c.arr[C_TS],
			   c.arr[C_JSON],
			   g,
			   c.arr[C_EDGE_EV],
			   c.arr[C_EDGE_PREV],
			   c.arr[C_AUTH_EV],
			   c.arr[C_AUTH_ID],
			   c.arr[C_LEAVES],
			   c.head,
			   d};
	struct db_stmt st[2] = {
		{.name = "remote_run_insert",
		 .sql = "WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock(" STREAM_LOCK ")), "
			"u AS (SELECT u.* FROM l, unnest($2::text[], $3::bigint[], $4::text[], $5::text[], "
			"$6::bigint[], $7::text[]) WITH ORDINALITY AS u(event_id, depth, type, sender, ts, json, "
			"ord)), "
			"e AS (INSERT INTO events (event_id, room_id, stream_ordering, depth, type, sender, "
			"origin_server_ts, json, state_group) SELECT x.event_id, $1::text, nextval('al_stream_seq'), "
			"x.depth, x.type, x.sender, x.ts, x.json, $8::bigint FROM (SELECT * FROM u ORDER BY ord) x "
			"RETURNING event_id, stream_ordering), "
			"p AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT * FROM unnest($9::text[], "
			"$10::text[]) ON CONFLICT DO NOTHING), "
			"a AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT * FROM unnest($11::text[], "
			"$12::text[]) ON CONFLICT DO NOTHING), "
			"xd AS (DELETE FROM room_extremities WHERE room_id = $1::text AND event_id = "
			"ANY($10::text[])), "
			"xi AS (INSERT INTO room_extremities (room_id, event_id) SELECT $1::text, x FROM l, "
			"unnest($13::text[]) x WHERE NOT EXISTS (SELECT 1 FROM event_edges WHERE prev_event_id = x) "
			"ON CONFLICT DO NOTHING), "
			"h AS (UPDATE rooms SET head_event_id = $14::text, head_depth = greatest(head_depth, "
			"$15::bigint) WHERE room_id = $1::text) "
			"SELECT event_id, stream_ordering FROM e",
		 .nparams = 15,
		 .params = p},
		{.sql = "COMMIT"},
	};
	rc = db_pipeline(r->c->db, st, 2, NULL, err);
	cols_free(&c);
	if (rc < 0)
		return -1;
	PGresult *res = st[0].result;
	for (int j = 0; j < PQntuples(res); j++)
		for (int i = 0; i < r->taken; i++)
			if (strcmp(r->items[i].event_id, PQgetvalue(res, j, 0)) == 0)
				r->items[i].out.stream = strtoll(PQgetvalue(res, j, 1), NULL, 10);
	PQclear(res);
	PQclear(st[1].result);
	return 0;
}

static void run_free(struct run *r)
{
	json_decref(r->known);
	json_decref(r->mine);
	json_decref(r->pdus);
	json_decref(r->keys);
	json_decref(r->state);
}

/* After the commit (or with only known items): the stored-event hook, one
 * log line; the items after the run are left as they came. */
static void run_done(struct run *r)
{
	for (int i = r->taken; i < r->n; i++)
		memset(&r->items[i].out, 0, sizeof(r->items[i].out));
	int accepted = 0;
	for (int i = 0; i < r->taken; i++) {
		struct room_pdu_run_item *it = &r->items[i];
		it->done = true;
		if (it->out.status != ROOM_PDU_ACCEPTED)
			continue;
		accepted++;
		json_t *pdu = json_array_get(r->pdus, (size_t)i);
		calls_on_event(r->c->app, r->c->db, r->room_id, it->event_id, event_str(pdu, "type"), pdu);
	}
	log_info("room_remote", "events room_id=%s accepted=%d known=%d (one transaction)", r->room_id, accepted,
		 r->taken - accepted);
}

int room_remote_accept_run(const struct room_ctx *c, const char *room_id, struct room_pdu_run_item *items, int n,
			   struct al_error *err)
{
	if (n <= 0)
		return 0;
	if (n > ROOM_REMOTE_RUN_MAX)
		n = ROOM_REMOTE_RUN_MAX;
	for (int i = 0; i < n; i++) {
		memset(&items[i].out, 0, sizeof(items[i].out));
		items[i].done = false;
	}
	struct run r = {.c = c,
			.room_id = room_id,
			.items = items,
			.n = n,
			.known = json_object(),
			.mine = json_object(),
			.pdus = json_array(),
			.keys = json_object(),
			.state = json_object()};
	int rc = r.known && r.mine && r.pdus && r.keys && r.state
			 ? run_open(&r, err)
			 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	if (rc != 0) {
		run_free(&r);
		return rc < 0 ? -1 : 0;
	}
	run_take(&r);
	bool any = false;
	for (int i = 0; i < r.taken; i++)
		any = any || items[i].out.status == ROOM_PDU_ACCEPTED;
	if (any && run_state(&r, err) < 0)
		rc = -1;
	if (rc == 0 && any)
		run_check_state(&r);
	int stored = rc == 0 && r.taken > 0 ? run_store(&r, err) : 1;
	if (stored < 0)
		rc = -1;
	if (rc < 0 || r.taken == 0 || stored > 0)
		db_rollback(c->db);
	if (rc < 0 || r.taken == 0) {
		for (int i = 0; i < n; i++)
			memset(&items[i].out, 0, sizeof(items[i].out));
		run_free(&r);
		return rc;
	}
	run_done(&r);
	int taken = r.taken;
	run_free(&r);
	return taken;
}
