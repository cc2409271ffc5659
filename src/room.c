#include "room.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calls.h"
#include "calls_state.h"
#include "cjson.h"
#include "federation.h"
#include "keys.h"
#include "log.h"
#include "room_auth.h"
#include "room_dag.h"
#include "room_visibility.h"
#include "sync.h"

#define STREAM_LOCK "6006"

int64_t room_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t room_token_parse(const char *tok)
{
	if (!tok)
		return -1;
	bool history = *tok == 'b'; /* "b<k>": backfilled history, position -(BASE + k) */
	if (*tok == 's' || *tok == 't' || history)
		tok++;
	/* a /sync token "s<stream>_<typing>_<to_device>" pages from its stream part */
	size_t n = strcspn(tok, "_");
	if (n == 0 || n > 18 || strlen(tok) > 64 || strspn(tok + n, "_0123456789") != strlen(tok + n))
		return -1;
	int64_t v = 0;
	for (size_t i = 0; i < n; i++) {
		if (tok[i] < '0' || tok[i] > '9')
			return -1;
		v = v * 10 + (tok[i] - '0');
	}
	return history ? -ROOM_BACKFILL_BASE - v : v;
}

void room_token_format(int64_t pos, char *out, size_t len)
{
	if (pos <= -ROOM_BACKFILL_BASE) {
		int64_t k = -ROOM_BACKFILL_BASE - pos;
		snprintf(out, len, "b%" PRId64, k > INT64_C(999999999999999999) ? INT64_C(999999999999999999) : k);
	} else {
		snprintf(out, len, "s%" PRId64, pos < 0 ? 0 : pos);
	}
}

char *room_pg_array(const char *const *items, int n)
{
	size_t cap = 3;
	for (int i = 0; i < n; i++)
		cap += items[i] ? 2 * strlen(items[i]) + 3 : 5;
	char *s = malloc(cap), *p = s;
	if (!s)
		return NULL;
	*p++ = '{';
	for (int i = 0; i < n; i++) {
		if (i)
			*p++ = ',';
		if (!items[i]) {
			memcpy(p, "NULL", 4);
			p += 4;
			continue;
		}
		*p++ = '"';
		for (const char *q = items[i]; *q; q++) {
			if (*q == '"' || *q == '\\')
				*p++ = '\\';
			*p++ = *q;
		}
		*p++ = '"';
	}
	*p++ = '}';
	*p = 0;
	return s;
}

static void fmt_i64(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

static int64_t col_i64(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *col_str(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

static const char *server_part(const char *id)
{
	const char *c = id ? strchr(id, ':') : NULL;
	return c ? c + 1 : NULL;
}

/* ---- the version of new rooms ---- */

static char default_version[4] = ROOM_DEFAULT_VERSION;

void room_set_default_version(const char *version)
{
	struct event_rules r;
	if (version && event_rules_for(version, &r) == 0)
		snprintf(default_version, sizeof(default_version), "%s", version);
}

const char *room_default_version(void)
{
	return default_version;
}

/* ---- client format ---- */

json_t *room_client_event(const char *json_text, const char *event_id, const char *sender, const char *txn_device,
			  const char *txn_id, const char *viewer, const char *viewer_device)
{
	json_t *pdu = json_loads(json_text, JSON_DECODE_ANY, NULL);
	if (!pdu)
		return NULL;
	json_t *ev = event_to_client(pdu, event_id);
	json_decref(pdu);
	if (!ev)
		return NULL;
	if (txn_id && txn_device && viewer && viewer_device && sender && strcmp(sender, viewer) == 0 &&
	    strcmp(txn_device, viewer_device) == 0) {
		json_t *u = json_object_get(ev, "unsigned");
		if (!json_is_object(u)) {
			u = json_object();
			json_object_set_new(ev, "unsigned", u);
		}
		json_object_set_new(u, "transaction_id", json_string(txn_id));
	}
	json_t *u = json_object_get(ev, "unsigned");
	json_t *ts = json_object_get(ev, "origin_server_ts");
	if (json_is_integer(ts)) {
		if (!json_is_object(u)) {
			u = json_object();
			json_object_set_new(ev, "unsigned", u);
		}
		json_object_set_new(u, "age", json_integer(room_now_ms() - json_integer_value(ts)));
	}
	return ev;
}

/* ---- the writer: events into one locked room ---- */

struct writer {
	const struct room_ctx *c;
	char room_id[ROOM_ID_MAX + 1];
	char version[4];
	struct event_rules rules;
	char head[EVENT_ID_MAX];
	char prevs[ROOM_MAX_PREV][EVENT_ID_MAX]; /* the forward extremities */
	json_t *prev_pdus[ROOM_MAX_PREV];        /* their PDUs (room versions 1-2 only) */
	int nprev;
	int64_t depth;
	int64_t group;
	int chain_len;
	json_t *state; /* room_auth map; each PDU carries its "event_id" */
	bool stream_locked;
	int64_t stream;
	struct room_batch *batch; /* room_send_batch: rows collected for one INSERT */
};

static const char *pdu_id(const json_t *pdu)
{
	return json_string_value(json_object_get(pdu, "event_id"));
}

static void writer_clear(struct writer *w)
{
	json_decref(w->state);
	w->state = NULL;
	for (int i = 0; i < ROOM_MAX_PREV; i++) {
		json_decref(w->prev_pdus[i]);
		w->prev_pdus[i] = NULL;
	}
}

static int state_put(json_t *state, const char *type, const char *sk, json_t *pdu_with_id)
{
	char k[ROOM_AUTH_KEY_MAX + 1];
	if (room_auth_key(type, sk, k, sizeof(k)) < 0)
		return -1;
	return json_object_set(state, k, pdu_with_id);
}

static int load_state_rows(struct writer *w, PGresult *r)
{
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = json_loads(PQgetvalue(r, i, 3), JSON_DECODE_ANY, NULL);
		if (!pdu)
			return -1;
		json_object_set_new(pdu, "event_id", json_string(PQgetvalue(r, i, 2)));
		state_put(w->state, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), pdu);
		json_decref(pdu);
	}
	return 0;
}

/* Lock the room row and load the state the next event needs. The caller
 * has begun a transaction. */
static int writer_load(struct writer *w, const struct room_ctx *c, const char *room_id, const char *sender,
		       const char *target, const char *type, const char *sk, struct al_error *err)
{
	memset(w, 0, sizeof(*w));
	w->c = c;
	w->state = json_object();
	if (!w->state || strlen(room_id) > ROOM_ID_MAX)
		return al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
	snprintf(w->room_id, sizeof(w->room_id), "%s", room_id);
	const char *p1[] = {room_id};
	PGresult *r = db_exec(c->db, err,
			      "SELECT r.room_version, r.head_event_id, r.head_depth, r.state_group, "
			      "coalesce(g.chain_len, 0) FROM rooms r LEFT JOIN state_groups g ON g.id = r.state_group "
			      "WHERE r.room_id = $1 FOR UPDATE OF r",
			      1, p1);
	if (!r)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
	}
	snprintf(w->version, sizeof(w->version), "%s", PQgetvalue(r, 0, 0));
	snprintf(w->head, sizeof(w->head), "%s", col_str(r, 0, 1) ? col_str(r, 0, 1) : "");
	w->depth = col_i64(r, 0, 2);
	w->group = col_i64(r, 0, 3);
	w->chain_len = (int)col_i64(r, 0, 4);
	PQclear(r);
	if (event_rules_for(w->version, &w->rules) < 0)
		return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", w->version);
	r = db_exec(c->db, err,
		    "SELECT x.event_id, e.json FROM room_extremities x JOIN events e ON e.event_id = x.event_id "
		    "WHERE x.room_id = $1 ORDER BY e.depth DESC, x.event_id LIMIT " ROOM_MAX_PREV_STR,
		    1, p1);
	if (!r)
		return -1;
	for (int i = 0; i < PQntuples(r) && i < ROOM_MAX_PREV; i++) {
		snprintf(w->prevs[w->nprev], EVENT_ID_MAX, "%s", PQgetvalue(r, i, 0));
		/* versions 1-2 refer to prev events with their reference hash */
		w->prev_pdus[w->nprev++] = w->rules.id_format == 1
						   ? json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL)
						   : NULL;
	}
	PQclear(r);
	if (w->nprev == 0 && w->head[0])
		snprintf(w->prevs[w->nprev++], EVENT_ID_MAX, "%s", w->head);
	const char *p[] = {room_id, sender, target ? target : sender, type ? type : "", sk ? sk : ""};
	r = db_exec(c->db, err,
		    "SELECT cs.type, cs.state_key, e.event_id, e.json FROM current_state cs "
		    "JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 AND ("
		    "(cs.state_key = '' AND cs.type IN ('m.room.create', 'm.room.power_levels', "
		    "'m.room.join_rules')) OR (cs.type = 'm.room.member' AND cs.state_key IN ($2, $3)) "
		    "OR (cs.type = $4 AND cs.state_key = $5))",
		    5, p);
	if (!r)
		return -1;
	int rc = load_state_rows(w, r);
	PQclear(r);
	return rc < 0 ? al_error_set(err, 500, "M_UNKNOWN", "bad stored event") : 0;
}

/* New state group for a state event; sets w->group. */
static int writer_new_group(struct writer *w, const char *type, const char *sk, const char *event_id,
			    struct al_error *err)
{
	char prev[24], len[24];
	bool snapshot = w->group == 0 || w->chain_len + 1 >= ROOM_SNAPSHOT_INTERVAL;
	fmt_i64(prev, sizeof(prev), w->group);
	fmt_i64(len, sizeof(len), snapshot ? 0 : w->chain_len + 1);
	const char *p[] = {w->room_id, snapshot ? NULL : prev, len, type, sk, event_id};
	PGresult *r = db_exec(
		w->c->db, err,
		snapshot ? "WITH g AS (INSERT INTO state_groups (room_id, prev_group, chain_len) "
			   "VALUES ($1::text, $2::bigint, $3::int) RETURNING id), "
			   "x AS (INSERT INTO state_group_edits (state_group, type, state_key, event_id) "
			   "SELECT g.id, cs.type, cs.state_key, cs.event_id FROM current_state cs, g "
			   "WHERE cs.room_id = $1::text AND NOT (cs.type = $4::text AND cs.state_key = $5::text) "
			   "UNION ALL SELECT g.id, $4::text, $5::text, $6::text FROM g) SELECT id FROM g"
			 : "WITH g AS (INSERT INTO state_groups (room_id, prev_group, chain_len) "
			   "VALUES ($1::text, $2::bigint, $3::int) RETURNING id), "
			   "x AS (INSERT INTO state_group_edits (state_group, type, state_key, event_id) "
			   "SELECT g.id, $4::text, $5::text, $6::text FROM g) SELECT id FROM g",
		6, p);
	if (!r)
		return -1;
	w->group = col_i64(r, 0, 0);
	w->chain_len = snapshot ? 0 : w->chain_len + 1;
	PQclear(r);
	return 0;
}

/* The endpoint a txnId belongs to: PUT /redact or PUT /send. */
static const char *txn_kind(const struct room_event_spec *spec)
{
	return spec->redacts ? "redact" : "send";
}

static int batch_add(struct writer *w, const char *sender, const struct room_event_spec *spec, const char *event_id,
		     json_t *pdu, char **text, const char *const *auth_ids, int nauth, struct al_error *err);

/* Build and authorise one event against the writer's state; sign: hash
 * and sign it and fill event_id (else an unsigned template). */
static json_t *writer_build(struct writer *w, const char *sender, const struct room_event_spec *spec, bool sign,
			    char *event_id, struct al_error *err)
{
	const struct sign_key *key = keys_current(w->c->keys);
	const char *server = keys_server_name(w->c->keys);
	json_t *pdu = NULL, *content = NULL;
	if (!spec->type || strlen(spec->type) > EVENT_TYPE_MAX || !*spec->type ||
	    (spec->state_key && strlen(spec->state_key) > EVENT_TYPE_MAX)) {
		al_error_set(err, 400, "M_INVALID_PARAM", "event type or state key too long");
		return NULL;
	}
	content = spec->content ? json_deep_copy(spec->content) : json_object();
	if (!json_is_object(content)) {
		al_error_set(err, 400, "M_BAD_JSON", "content must be an object");
		goto fail;
	}
	if (spec->redacts && w->rules.redacts_in_content)
		json_object_set_new(content, "redacts", json_string(spec->redacts));
	pdu = json_pack("{s:s, s:s, s:s, s:O, s:I, s:I}", "room_id", w->room_id, "sender", sender, "type", spec->type,
			"content", content, "depth", (json_int_t)(w->depth + 1), "origin_server_ts",
			(json_int_t)room_now_ms());
	if (!pdu) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	if (spec->state_key)
		json_object_set_new(pdu, "state_key", json_string(spec->state_key));
	if (spec->redacts && !w->rules.redacts_in_content)
		json_object_set_new(pdu, "redacts", json_string(spec->redacts));
	if (!w->rules.redact_v11)
		json_object_set_new(pdu, "origin", json_string(server));
	if (w->rules.id_format == 1) {
		/* v1-2: the origin names its events "$random:server" */
		unsigned char rnd[16];
		char hex[33], id[EVENT_ID_MAX];
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		snprintf(id, sizeof(id), "$%s:%s", hex, server);
		json_object_set_new(pdu, "event_id", json_string(id));
	}
	json_t *prev = json_array();
	for (int i = 0; i < w->nprev; i++)
		json_array_append_new(prev, w->rules.id_format == 1
						    ? event_ref_make(w->prev_pdus[i], w->prevs[i], &w->rules)
						    : json_string(w->prevs[i]));
	json_object_set_new(pdu, "prev_events", prev);
	const char *auth_ids[5];
	int nauth = room_auth_select(pdu, w->state, auth_ids, 5, pdu_id);
	json_t *auth = json_array();
	for (int i = 0; i < nauth; i++) {
		json_t *ae = NULL;
		if (w->rules.id_format == 1) {
			const char *k;
			json_t *v;
			json_object_foreach(w->state, k, v)
			{
				if (pdu_id(v) && strcmp(pdu_id(v), auth_ids[i]) == 0)
					ae = event_ref_make(v, auth_ids[i], &w->rules);
			}
		}
		json_array_append_new(auth, ae ? ae : json_string(auth_ids[i]));
	}
	json_object_set_new(pdu, "auth_events", auth);
	const char *create_id = pdu_id(room_auth_state_get(w->state, "m.room.create", ""));
	bool is_first = w->nprev == 1 && create_id && strcmp(w->prevs[0], create_id) == 0;
	if (room_auth_check(&w->rules, pdu, w->state, is_first, err) < 0)
		goto fail;
	if (!sign) {
		json_decref(content);
		return pdu;
	}
	if (event_hash_and_sign(pdu, &w->rules, server, key, err) < 0)
		goto fail;
	if (event_compute_id(pdu, &w->rules, event_id, EVENT_ID_MAX, err) < 0)
		goto fail;
	long size = event_canonical_size(pdu);
	if (size < 0 || size > EVENT_MAX_BYTES) {
		al_error_set(err, 413, "M_TOO_LARGE", "event is larger than %d bytes", EVENT_MAX_BYTES);
		goto fail;
	}
	json_decref(content);
	return pdu;
fail:
	json_decref(pdu);
	json_decref(content);
	return NULL;
}

/* Build, authorise, sign and store one event; queue it for the other
 * servers in the room. */
static int writer_append(struct writer *w, const char *sender, const struct room_event_spec *spec, char *event_id,
			 struct al_error *err)
{
	const char *server = keys_server_name(w->c->keys);
	json_t *client = NULL, *content = NULL;
	char *text = NULL, *prev_arr = NULL, *auth_arr = NULL;
	int rc = -1;
	json_t *pdu = writer_build(w, sender, spec, true, event_id, err);
	if (!pdu)
		return -1;
	content = json_incref(json_object_get(pdu, "content"));
	const char *auth_ids[EVENT_MAX_AUTH];
	int nauth = 0;
	json_t *auth = json_object_get(pdu, "auth_events");
	for (size_t i = 0; i < json_array_size(auth) && nauth < EVENT_MAX_AUTH; i++)
		auth_ids[nauth++] = event_ref_id(json_array_get(auth, i));
	/* the servers in the room before this event, and the target of a
	 * kick or ban */
	const char *extra = NULL;
	if (spec->state_key && strcmp(spec->type, "m.room.member") == 0) {
		const char *m = json_string_value(json_object_get(content, "membership"));
		if (m && strcmp(m, "invite") != 0)
			extra = room_dag_server_of(spec->state_key);
	}
	/* a batch's rows are queued by its one INSERT (batch_store_commit) */
	if (!w->batch && room_dag_fanout(w->c->db, w->room_id, server, pdu, extra, NULL, err) < 0)
		goto out;
	if (spec->state_key) {
		json_t *old = room_auth_state_get(w->state, spec->type, spec->state_key);
		if (old)
			json_object_set_new(pdu, "unsigned",
					    json_pack("{s:s, s:O, s:s}", "replaces_state", pdu_id(old), "prev_content",
						      json_object_get(old, "content"), "prev_sender",
						      json_string_value(json_object_get(old, "sender"))));
	}
	text = cjson_encode(pdu, NULL, err);
	if (!text)
		goto out;
	if (w->batch) {
		/* room_send_batch: stored with the rest of the batch. */
		rc = batch_add(w, sender, spec, event_id, pdu, &text, auth_ids, nauth, err);
		goto out;
	}
	if (!w->stream_locked) {
		PGresult *l = db_exec(w->c->db, err, "SELECT pg_advisory_xact_lock(" STREAM_LOCK ")", 0, NULL);
		if (!l)
			goto out;
		PQclear(l);
		w->stream_locked = true;
	}
	if (spec->state_key && writer_new_group(w, spec->type, spec->state_key, event_id, err) < 0)
		goto out;
	const char *prevs[ROOM_MAX_PREV];
	for (int i = 0; i < w->nprev; i++)
		prevs[i] = w->prevs[i];
	prev_arr = room_pg_array(prevs, w->nprev);
	auth_arr = room_pg_array(auth_ids, nauth);
	char depth[24], ts[24], group[24];
	fmt_i64(depth, sizeof(depth), w->depth + 1);
	fmt_i64(ts, sizeof(ts), json_integer_value(json_object_get(pdu, "origin_server_ts")));
	fmt_i64(group, sizeof(group), w->group);
	const char *membership = NULL;
	if (strcmp(spec->type, "m.room.member") == 0 && spec->state_key)
		membership = json_string_value(json_object_get(content, "membership"));
	const char *p[] = {event_id,
			   w->room_id,
			   depth,
			   spec->type,
			   spec->state_key,
			   sender,
			   ts,
			   text,
			   w->group ? group : NULL,
			   spec->txn_id ? spec->device_id : NULL,
			   spec->txn_id,
			   prev_arr,
			   auth_arr,
			   membership,
			   txn_kind(spec)};
	int conflict = 0;
	PGresult *r = db_exec_unique(
		w->c->db, err, &conflict,
		"WITH e AS (INSERT INTO events (event_id, room_id, stream_ordering, depth, type, state_key, "
		"sender, origin_server_ts, json, state_group, txn_device, txn_id) VALUES ($1::text, $2::text, "
		"nextval('al_stream_seq'), $3::bigint, $4::text, $5::text, $6::text, $7::bigint, $8::text, "
		"$9::bigint, $10::text, $11::text) RETURNING stream_ordering), "
		"p AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT $1::text, unnest($12::text[])), "
		"a AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT $1::text, unnest($13::text[])), "
		"t AS (INSERT INTO event_txns (user_id, device_id, txn_id, room_id, event_id, kind) "
		"SELECT $6::text, $10::text, $11::text, $2::text, $1::text, $15::text WHERE $11::text IS NOT NULL), "
		"s AS (INSERT INTO current_state (room_id, type, state_key, event_id) "
		"SELECT $2::text, $4::text, $5::text, $1::text WHERE $5::text IS NOT NULL "
		"ON CONFLICT (room_id, type, state_key) DO UPDATE SET event_id = EXCLUDED.event_id), "
		"m AS (INSERT INTO room_memberships (room_id, user_id, membership, event_id, stream_ordering) "
		"SELECT $2::text, $5::text, $14::text, $1::text, e.stream_ordering FROM e WHERE $14::text IS NOT NULL "
		"ON CONFLICT (room_id, user_id) DO UPDATE SET membership = EXCLUDED.membership, "
		"event_id = EXCLUDED.event_id, stream_ordering = EXCLUDED.stream_ordering, forgotten = false), "
		"r AS (UPDATE rooms SET head_event_id = $1::text, head_depth = $3::bigint, "
		"state_group = $9::bigint WHERE room_id = $2::text), "
		"xd AS (DELETE FROM room_extremities WHERE room_id = $2::text AND event_id = ANY($12::text[])), "
		"xi AS (INSERT INTO room_extremities (room_id, event_id) VALUES ($2::text, $1::text)) "
		"SELECT stream_ordering FROM e",
		15, p);
	if (conflict) {
		al_error_set(err, 500, "M_UNKNOWN", "concurrent write of the same transaction");
		rc = -2;
	}
	if (!r)
		goto out;
	w->stream = col_i64(r, 0, 0);
	PQclear(r);
	snprintf(w->head, sizeof(w->head), "%s", event_id);
	snprintf(w->prevs[0], EVENT_ID_MAX, "%s", event_id);
	for (int i = 0; i < ROOM_MAX_PREV; i++) {
		json_decref(w->prev_pdus[i]);
		w->prev_pdus[i] = NULL;
	}
	if (w->rules.id_format == 1)
		w->prev_pdus[0] = json_incref(pdu);
	w->nprev = 1;
	w->depth++;
	if (spec->state_key) {
		json_object_set_new(pdu, "event_id", json_string(event_id));
		state_put(w->state, spec->type, spec->state_key, pdu);
	}
	if (spec->redacts && strcmp(spec->type, "m.room.redaction") == 0) {
		client = event_to_client(pdu, event_id);
		if (!client || room_dag_redact(w->c->db, &w->rules, w->room_id, spec->redacts, client, err) < 0)
			goto out;
	}
	rc = 0;
out:
	json_decref(client);
	json_decref(pdu);
	json_decref(content);
	free(text);
	free(prev_arr);
	free(auth_arr);
	return rc;
}

/* ---- sending ---- */

static int txn_lookup(struct db *db, const char *user, const char *room_id, const struct room_event_spec *spec,
		      char *event_id, struct al_error *err)
{
	const char *p[] = {user, spec->device_id, room_id, txn_kind(spec), spec->txn_id};
	PGresult *r = db_exec(db, err,
			      "SELECT event_id FROM event_txns WHERE user_id = $1 AND device_id = $2 AND room_id = $3 "
			      "AND kind = $4 AND txn_id = $5",
			      5, p);
	if (!r)
		return -1;
	int found = PQntuples(r) == 1;
	if (found)
		snprintf(event_id, EVENT_ID_MAX, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return found;
}

/* The redaction's extra rule (spec: servers check the redact level or
 * that the sender redacts her own event). */
static int check_redact(struct writer *w, const char *sender, const char *target, struct al_error *err)
{
	const char *p[] = {target};
	PGresult *r = db_exec(w->c->db, err, "SELECT sender, room_id FROM events WHERE event_id = $1", 1, p);
	if (!r)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
	}
	if (strcmp(PQgetvalue(r, 0, 1), w->room_id) != 0) {
		PQclear(r);
		return al_error_set(err, 400, "M_INVALID_PARAM", "Cannot redact an event of a different room");
	}
	bool own = strcmp(PQgetvalue(r, 0, 0), sender) == 0;
	PQclear(r);
	if (own)
		return 0;
	if (room_auth_user_level(w->state, sender) >= room_auth_named_level(w->state, "redact"))
		return 0;
	return al_error_set(err, 403, "M_FORBIDDEN", "your power level is too low to redact other users' events");
}

/* Is membership m one of the space-separated list? */
static bool membership_in(const char *m, const char *list)
{
	size_t n = strlen(m);
	for (const char *p = list; *p;) {
		size_t k = strcspn(p, " ");
		if (k == n && strncmp(p, m, n) == 0)
			return true;
		p += k;
		p += strspn(p, " ");
	}
	return false;
}

/* Would an event of sender with content repeat the current state event? */
static bool same_state(const json_t *cur, const char *sender, const json_t *content)
{
	const char *cs = json_string_value(json_object_get(cur, "sender"));
	json_t *cc = json_object_get(cur, "content");
	json_t *empty = content ? NULL : json_object();
	bool same = cs && strcmp(cs, sender) == 0 && json_is_string(json_object_get(cur, "event_id")) &&
		    json_equal(cc, content ? (json_t *)content : empty);
	json_decref(empty);
	return same;
}

int room_send(const struct room_ctx *c, const char *room_id, const char *sender, const struct room_event_spec *spec,
	      char *event_id, int64_t *stream, struct al_error *err)
{
	struct writer w;
	memset(&w, 0, sizeof(w));
	*stream = 0;
	bool txn = spec->txn_id && spec->device_id;
	if (db_begin(c->db, err) < 0)
		return -1;
	int found = txn ? txn_lookup(c->db, sender, room_id, spec, event_id, err) : 0;
	if (found != 0) {
		db_rollback(c->db);
		return found < 0 ? -1 : 0;
	}
	const char *target = NULL;
	if (spec->state_key && strcmp(spec->type, "m.room.member") == 0)
		target = spec->state_key;
	if (writer_load(&w, c, room_id, sender, target, spec->type, spec->state_key, err) < 0)
		goto fail;
	/* A request with the same txnId may have committed while we waited
	 * for the room lock. */
	found = txn ? txn_lookup(c->db, sender, room_id, spec, event_id, err) : 0;
	if (found != 0) {
		db_rollback(c->db);
		writer_clear(&w);
		return found < 0 ? -1 : 0;
	}
	if (spec->require_membership && target &&
	    !membership_in(room_auth_membership(w.state, target), spec->require_membership)) {
		al_error_set(err, 403, "M_FORBIDDEN", "%s's membership is not %s", target, spec->require_membership);
		goto fail;
	}
	/* The same state again from the same sender is no change: the current
	 * event stands and its ID is the answer (as Synapse deduplicates). */
	json_t *cur = spec->state_key && !spec->redacts ? room_auth_state_get(w.state, spec->type, spec->state_key)
							: NULL;
	if (cur && same_state(cur, sender, spec->content)) {
		snprintf(event_id, EVENT_ID_MAX, "%s", json_string_value(json_object_get(cur, "event_id")));
		db_rollback(c->db);
		writer_clear(&w);
		return 0;
	}
	if (spec->redacts && check_redact(&w, sender, spec->redacts, err) < 0)
		goto fail;
	int rc = writer_append(&w, sender, spec, event_id, err);
	if (rc == -2 && txn) {
		db_rollback(c->db);
		writer_clear(&w);
		struct al_error lerr = {0};
		found = txn_lookup(c->db, sender, room_id, spec, event_id, &lerr);
		return found == 1 ? 0 : -1;
	}
	if (rc < 0)
		goto fail;
	if (db_commit(c->db, err) < 0)
		goto fail_nr;
	*stream = w.stream;
	writer_clear(&w);
	calls_on_event(c->app, c->db, room_id, event_id, spec->type, NULL);
	return 0;
fail:
	db_rollback(c->db);
fail_nr:
	writer_clear(&w);
	return -1;
}

int room_build_event(const struct room_ctx *c, const char *room_id, const char *sender,
		     const struct room_event_spec *spec, bool sign, json_t **pdu_out, char *event_id,
		     struct al_error *err)
{
	struct writer w;
	memset(&w, 0, sizeof(w));
	*pdu_out = NULL;
	if (db_begin(c->db, err) < 0)
		return -1;
	const char *target = NULL;
	if (spec->state_key && strcmp(spec->type, "m.room.member") == 0)
		target = spec->state_key;
	int rc = -1;
	if (writer_load(&w, c, room_id, sender, target, spec->type, spec->state_key, err) == 0) {
		*pdu_out = writer_build(&w, sender, spec, sign, event_id, err);
		rc = *pdu_out ? 0 : -1;
	}
	db_rollback(c->db);
	writer_clear(&w);
	return rc;
}

/* ---- group commit: timeline events of one room, one transaction ---- */

struct batch_row {
	int item; /* index into the caller's items */
	char event_id[EVENT_ID_MAX];
	char prev[ROOM_MAX_PREV][EVENT_ID_MAX]; /* its prev_events */
	int nprev;
	char depth[24], ts[24];
	const char *type, *sender, *device, *txn; /* borrowed from the item */
	char *json;
	char auth[EVENT_MAX_AUTH][EVENT_ID_MAX];
	int nauth;
};

struct room_batch {
	struct batch_row *rows;
	int n, cap;
	int cur; /* the item writer_append is working on */
	/* the room's forward extremities when the batch began (sorted by
	 * event ID, comma-joined) and those it leaves after its commit: the
	 * ones the first event did not take as prev_events, and the last
	 * event */
	char *xset;
	const char **xall; /* all of them, in writer_load's order */
	int nxall;
};

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* ids sorted and comma-joined (malloc'd). */
static char *xset_join(const char **ids, int n)
{
	size_t len = 1;
	for (int i = 0; i < n; i++)
		len += strlen(ids[i]) + 1;
	char *s = malloc(len), *p = s;
	if (!s)
		return NULL;
	qsort(ids, (size_t)n, sizeof(*ids), cmp_str);
	*p = 0;
	for (int i = 0; i < n; i++) {
		size_t k = strlen(ids[i]);
		if (i)
			*p++ = ',';
		memcpy(p, ids[i], k);
		p += k;
		*p = 0;
	}
	return s;
}

/* writer_append's store step while w->batch is set: the row waits for the
 * batch's one INSERT; the writer moves on to the new head. */
static int batch_add(struct writer *w, const char *sender, const struct room_event_spec *spec, const char *event_id,
		     json_t *pdu, char **text, const char *const *auth_ids, int nauth, struct al_error *err)
{
	struct room_batch *b = w->batch;
	if (spec->state_key || spec->redacts || b->n >= b->cap || nauth > EVENT_MAX_AUTH)
		return al_error_set(err, 500, "M_UNKNOWN", "not a timeline event");
	struct batch_row *row = &b->rows[b->n];
	row->item = b->cur;
	snprintf(row->event_id, sizeof(row->event_id), "%s", event_id);
	/* as room_send: the first event takes the room's forward extremities,
	 * each next one the event before it */
	row->nprev = w->nprev;
	for (int i = 0; i < w->nprev; i++)
		snprintf(row->prev[i], sizeof(row->prev[i]), "%s", w->prevs[i]);
	fmt_i64(row->depth, sizeof(row->depth), w->depth + 1);
	fmt_i64(row->ts, sizeof(row->ts), json_integer_value(json_object_get(pdu, "origin_server_ts")));
	row->type = spec->type;
	row->sender = sender;
	row->txn = spec->txn_id;
	row->device = spec->txn_id ? spec->device_id : NULL;
	row->json = *text;
	*text = NULL;
	row->nauth = nauth;
	for (int i = 0; i < nauth; i++)
		snprintf(row->auth[i], sizeof(row->auth[i]), "%s", auth_ids[i]);
	b->n++;
	snprintf(w->head, sizeof(w->head), "%s", event_id);
	snprintf(w->prevs[0], EVENT_ID_MAX, "%s", event_id);
	for (int i = 0; i < ROOM_MAX_PREV; i++) {
		json_decref(w->prev_pdus[i]);
		w->prev_pdus[i] = NULL;
	}
	if (w->rules.id_format == 1)
		w->prev_pdus[0] = json_incref(pdu);
	w->nprev = 1;
	w->depth++;
	return 0;
}

/* What a batch writer knew about a room after its last commit. It stays
 * valid while the room's head and forward extremities are those that batch
 * left: every local writer that adds an event or changes the state moves
 * rooms.head_event_id under the room lock, and every event accepted from
 * another server changes the forward extremities (it need not move the
 * head), so the state after them is all the cache holds. */
struct wc_entry {
	char room_id[ROOM_ID_MAX + 1];
	char version[4];
	char head[EVENT_ID_MAX];
	int64_t depth, group;
	int chain_len;
	char *xset;      /* the forward extremities the batch left (xset_join) */
	json_t *state;   /* create, power levels, join rules, members read so far */
	json_t *queried; /* user IDs whose member event was looked up at this head */
	uint64_t used;
};

struct room_write_cache {
	int cap;
	uint64_t clock;
	struct wc_entry entries[];
};

#define WC_MAX_MEMBERS 2000 /* a room whose senders need more is not cached */

struct room_write_cache *room_write_cache_new(int max_rooms)
{
	if (max_rooms < 1)
		max_rooms = 1;
	struct room_write_cache *c = calloc(1, sizeof(*c) + (size_t)max_rooms * sizeof(c->entries[0]));
	if (c)
		c->cap = max_rooms;
	return c;
}

static void wc_clear(struct wc_entry *e)
{
	json_decref(e->state);
	json_decref(e->queried);
	free(e->xset);
	memset(e, 0, sizeof(*e));
}

void room_write_cache_free(struct room_write_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->cap; i++)
		wc_clear(&c->entries[i]);
	free(c);
}

static struct wc_entry *wc_find(struct room_write_cache *c, const char *room_id)
{
	for (int i = 0; c && i < c->cap; i++)
		if (c->entries[i].state && strcmp(c->entries[i].room_id, room_id) == 0)
			return &c->entries[i];
	return NULL;
}

/* After a commit: remember w (state and the queried set shared) and the
 * forward extremities the batch left. */
static void wc_store(struct room_write_cache *c, const struct writer *w, json_t *queried)
{
	if (!c)
		return;
	const struct room_batch *b = w->batch;
	int skip = b && b->n > 0 ? b->rows[0].nprev : 0;
	const char **left = calloc((size_t)(b ? b->nxall : 0) + 2, sizeof(*left));
	char *xset = NULL;
	int nl = 0;
	if (left && b) {
		for (int i = skip; i < b->nxall; i++)
			left[nl++] = b->xall[i];
		if (b->n > 0)
			left[nl++] = w->head;
		xset = xset_join(left, nl);
	}
	free(left);
	struct wc_entry *e = wc_find(c, w->room_id);
	if (!e) {
		e = &c->entries[0];
		for (int i = 1; i < c->cap && e->state; i++)
			if (!c->entries[i].state || c->entries[i].used < e->used)
				e = &c->entries[i];
	}
	wc_clear(e);
	if (!xset || json_object_size(queried) > WC_MAX_MEMBERS) {
		free(xset);
		return;
	}
	e->xset = xset;
	snprintf(e->room_id, sizeof(e->room_id), "%s", w->room_id);
	snprintf(e->version, sizeof(e->version), "%s", w->version);
	snprintf(e->head, sizeof(e->head), "%s", w->head);
	e->depth = w->depth;
	e->group = w->group;
	e->chain_len = w->chain_len;
	e->state = json_incref(w->state);
	e->queried = json_incref(queried);
	e->used = ++c->clock;
}

/* The statements of a batch. The room row is locked as writer_load does
 * (FOR UPDATE, so the batch is serialised with room_send and other
 * processes). */
#define BATCH_LOCK_SQL                                                                                   \
	"SELECT r.room_version, r.head_event_id, r.head_depth, r.state_group, coalesce(g.chain_len, 0) " \
	"FROM rooms r LEFT JOIN state_groups g ON g.id = r.state_group WHERE r.room_id = $1 FOR UPDATE OF r"
/* the forward extremities, all of them (writer_load's order: the first
 * ROOM_MAX_PREV are the prev_events, their PDUs wanted in versions 1-2) */
#define BATCH_PREVS_SQL                                                                                            \
	"SELECT x.event_id, CASE WHEN row_number() OVER (ORDER BY e.depth DESC, x.event_id) <= " ROOM_MAX_PREV_STR \
	" THEN e.json END FROM room_extremities x JOIN events e ON e.event_id = x.event_id "                       \
	"WHERE x.room_id = $1 ORDER BY e.depth DESC, x.event_id"
/* the auth state the batch needs (with_base: create, power levels, join
 * rules; always the member events of the senders in $2) */
#define BATCH_STATE_SQL                                                               \
	"SELECT cs.type, cs.state_key, e.event_id, e.json FROM current_state cs "     \
	"JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 AND ("       \
	"(cs.state_key = '' AND cs.type IN ('m.room.create', 'm.room.power_levels', " \
	"'m.room.join_rules')) OR (cs.type = 'm.room.member' AND cs.state_key = ANY($2::text[])))"
#define BATCH_MEMBERS_SQL                                                         \
	"SELECT cs.type, cs.state_key, e.event_id, e.json FROM current_state cs " \
	"JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 "        \
	"AND cs.type = 'm.room.member' AND cs.state_key = ANY($2::text[])"
/* one primary key lookup per item whatever the statistics say: OFFSET 0
 * keeps the LATERAL a parameterised scan (joined, the planner hashed the
 * whole of event_txns while its statistics were those of a small table:
 * 2.5 ms a batch, growing with the table) */
#define BATCH_TXNS_SQL                                                                            \
	"SELECT u.i, t.event_id FROM unnest($2::text[], $3::text[], $4::text[]) WITH ORDINALITY " \
	"AS u(usr, dev, txn, i) CROSS JOIN LATERAL (SELECT event_id FROM event_txns WHERE "       \
	"user_id = u.usr AND device_id = u.dev AND room_id = $1 AND kind = 'send' AND txn_id = u.txn OFFSET 0) t"

/* The locked row into w. */
static int batch_parse_lock(struct writer *w, PGresult *r, struct al_error *err)
{
	if (PQntuples(r) != 1)
		return al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
	snprintf(w->version, sizeof(w->version), "%s", PQgetvalue(r, 0, 0));
	snprintf(w->head, sizeof(w->head), "%s", col_str(r, 0, 1) ? col_str(r, 0, 1) : "");
	w->depth = col_i64(r, 0, 2);
	w->group = col_i64(r, 0, 3);
	w->chain_len = (int)col_i64(r, 0, 4);
	if (event_rules_for(w->version, &w->rules) < 0)
		return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", w->version);
	return 0;
}

/* The forward extremities into w (prev_events as writer_load takes them)
 * and w->batch (all of them, and their set). */
static int batch_parse_prevs(struct writer *w, PGresult *r, struct al_error *err)
{
	struct room_batch *b = w->batch;
	int n = PQntuples(r);
	b->xall = calloc((size_t)n + 1, sizeof(*b->xall));
	const char **tmp = calloc((size_t)n + 1, sizeof(*tmp));
	if (!b->xall || !tmp) {
		free(tmp);
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	for (int i = 0; i < n; i++) {
		b->xall[i] = strdup(PQgetvalue(r, i, 0));
		if (!b->xall[i]) {
			free(tmp);
			return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		}
		b->nxall++;
		tmp[i] = b->xall[i];
		if (w->nprev < ROOM_MAX_PREV) {
			snprintf(w->prevs[w->nprev], EVENT_ID_MAX, "%s", PQgetvalue(r, i, 0));
			w->prev_pdus[w->nprev++] = w->rules.id_format == 1 && !PQgetisnull(r, i, 1)
							   ? json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL)
							   : NULL;
		}
	}
	if (w->nprev == 0 && w->head[0])
		snprintf(w->prevs[w->nprev++], EVENT_ID_MAX, "%s", w->head);
	b->xset = xset_join(tmp, n);
	free(tmp);
	return b->xset ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

static bool has_txn(const struct room_batch_item *it)
{
	return it->spec.txn_id && it->spec.device_id;
}

/* The txnId lookup's parameters: one row per item with a txnId. */
struct batch_txns {
	int k;
	int *idx; /* row -> item */
	char *arr[3];
};

static void batch_txns_clear(struct batch_txns *t)
{
	free(t->idx);
	for (int i = 0; i < 3; i++)
		free(t->arr[i]);
	memset(t, 0, sizeof(*t));
}

static int batch_txns_prepare(struct batch_txns *t, const struct room_batch_item *items, int n, const bool *done,
			      struct al_error *err)
{
	memset(t, 0, sizeof(*t));
	const char **cols = calloc((size_t)n * 3 + 1, sizeof(*cols));
	t->idx = calloc((size_t)n + 1, sizeof(*t->idx));
	if (!cols || !t->idx) {
		free(cols);
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	for (int i = 0; i < n; i++) {
		if (done[i] || !has_txn(&items[i]))
			continue;
		cols[t->k] = items[i].sender;
		cols[n + t->k] = items[i].spec.device_id;
		cols[2 * n + t->k] = items[i].spec.txn_id;
		t->idx[t->k++] = i;
	}
	for (int i = 0; i < 3 && t->k > 0; i++)
		t->arr[i] = room_pg_array(cols + i * n, t->k);
	free(cols);
	if (t->k > 0 && (!t->arr[0] || !t->arr[1] || !t->arr[2]))
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return 0;
}

/* Items whose txnId is already stored: their first event's ID, stream 0. */
static void batch_txns_apply(const struct batch_txns *t, PGresult *r, struct room_batch_item *items, bool *done)
{
	for (int j = 0; j < PQntuples(r); j++) {
		long o = strtol(PQgetvalue(r, j, 0), NULL, 10);
		if (o < 1 || o > t->k)
			continue;
		struct room_batch_item *it = &items[t->idx[o - 1]];
		snprintf(it->event_id, sizeof(it->event_id), "%s", PQgetvalue(r, j, 1));
		it->stream = 0;
		it->rc = 0;
		done[t->idx[o - 1]] = true;
	}
}

/* An earlier item of this batch with the same txnId that succeeded: this
 * one is its repeat. */
static const struct room_batch_item *batch_twin(const struct room_batch_item *items, const bool *done, int i)
{
	const struct room_batch_item *it = &items[i];
	if (!has_txn(it))
		return NULL;
	for (int j = 0; j < i; j++) {
		const struct room_batch_item *o = &items[j];
		if (done[j] && o->rc == 0 && has_txn(o) && strcmp(o->spec.txn_id, it->spec.txn_id) == 0 &&
		    strcmp(o->spec.device_id, it->spec.device_id) == 0 && strcmp(o->sender, it->sender) == 0)
			return o;
	}
	return NULL;
}

/* BEGIN, the room lock, the txnId lookup and the auth state in one round
 * trip (pipelined; each statement still runs after the one before, so the
 * lookups see everything committed before the lock was granted). The
 * state comes from the writer's cache when the locked head is the one its
 * last batch wrote (then only senders not looked up yet are read), else it
 * is read: in the same round trip when the cache has nothing for the room,
 * in one more when what it has is stale. *queried: the senders looked up
 * (new ref). */
static int batch_open(struct writer *w, struct room_write_cache *cache, const char *const *senders, int ns,
		      struct room_batch_item *items, int n, bool *done, json_t **queried, struct al_error *err)
{
	struct wc_entry *e = wc_find(cache, w->room_id);
	struct batch_txns t;
	const char **missing = calloc((size_t)ns + 1, sizeof(*missing));
	char *arr_missing = NULL, *arr_all = NULL;
	struct db_stmt st[5];
	PGresult *reread = NULL;
	int nst = 0, rc = -1, i_txn = -1, i_state = -1;
	memset(st, 0, sizeof(st));
	if (!missing || batch_txns_prepare(&t, items, n, done, err) < 0) {
		free(missing);
		return missing ? -1 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	int nm = 0;
	for (int i = 0; i < ns; i++)
		if (!e || !json_object_get(e->queried, senders[i]))
			missing[nm++] = senders[i];
	arr_missing = room_pg_array(missing, nm);
	arr_all = room_pg_array(senders, ns);
	if (!arr_missing || !arr_all) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	const char *p_lock[] = {w->room_id};
	const char *p_txn[] = {w->room_id, t.arr[0], t.arr[1], t.arr[2]};
	const char *p_state[] = {w->room_id, e ? arr_missing : arr_all};
	st[nst++] = (struct db_stmt){.sql = "BEGIN"};
	st[nst++] = (struct db_stmt){.name = "room_batch_lock", .sql = BATCH_LOCK_SQL, .nparams = 1, .params = p_lock};
	st[nst++] = (struct db_stmt){
		.name = "room_batch_prevs", .sql = BATCH_PREVS_SQL, .nparams = 1, .params = p_lock};
	if (t.k > 0) {
		i_txn = nst;
		st[nst++] = (struct db_stmt){
			.name = "room_batch_txns", .sql = BATCH_TXNS_SQL, .nparams = 4, .params = p_txn};
	}
	if (!e || nm > 0) {
		i_state = nst;
		st[nst++] = e ? (struct db_stmt){.name = "room_batch_members",
						 .sql = BATCH_MEMBERS_SQL,
						 .nparams = 2,
						 .params = p_state}
			      : (struct db_stmt){.name = "room_batch_state",
						 .sql = BATCH_STATE_SQL,
						 .nparams = 2,
						 .params = p_state};
	}
	if (db_pipeline(w->c->db, st, nst, NULL, err) < 0)
		goto out;
	if (batch_parse_lock(w, st[1].result, err) < 0 || batch_parse_prevs(w, st[2].result, err) < 0)
		goto out;
	bool fresh = e && strcmp(e->head, w->head) == 0 && strcmp(e->version, w->version) == 0 &&
		     e->group == w->group && e->depth == w->depth && e->xset && strcmp(e->xset, w->batch->xset) == 0;
	w->state = fresh ? json_incref(e->state) : json_object();
	*queried = fresh ? json_incref(e->queried) : json_object();
	if (!w->state || !*queried) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	PGresult *state = i_state >= 0 ? st[i_state].result : NULL;
	if (e && !fresh) {
		/* someone else wrote to the room since: read it all again */
		const char *p[] = {w->room_id, arr_all};
		state = reread = db_exec_prepared(w->c->db, err, NULL, "room_batch_state", BATCH_STATE_SQL, 2, p);
		if (!state)
			goto out;
		nm = ns;
		memcpy(missing, senders, (size_t)ns * sizeof(*senders));
	}
	if (state && load_state_rows(w, state) < 0) {
		al_error_set(err, 500, "M_UNKNOWN", "bad stored event");
		goto out;
	}
	for (int i = 0; i < nm; i++)
		json_object_set_new(*queried, missing[i], json_true());
	if (i_txn >= 0)
		batch_txns_apply(&t, st[i_txn].result, items, done);
	rc = 0;
out:
	for (int i = 0; i < nst; i++)
		PQclear(st[i].result);
	PQclear(reread);
	batch_txns_clear(&t);
	free(missing);
	free(arr_missing);
	free(arr_all);
	return rc;
}

#define BATCH_STALE ROOM_BATCH_AGAIN /* the cached path: the room moved, nothing written */
#define BATCH_UNCACHED (-4)          /* the cached path cannot take this batch */

/* What the cached path expects of the room (decimal depth). */
struct batch_guard {
	const char *head, *depth;
};

/* The stream lock first (STREAM_LOCK, held to commit: see room.h; u
 * joins l, so no row, and no nextval, exists before the lock is held). */
#define BATCH_LOCK_STREAM_SQL "WITH l AS MATERIALIZED (SELECT pg_advisory_xact_lock(" STREAM_LOCK ")), "
/* The cached path's check, under the room row lock taken here (before
 * the stream lock, as batch_open takes them): the room is as this
 * writer's last batch left it ($19 the head, the only forward extremity;
 * $20 its depth; $10 the state group) and no item's txnId is stored yet.
 * If not, l is empty and nothing is written. The extremities are read in
 * key order (a plain index scan, which marks the dead entries every
 * batch leaves: a bitmap scan walked all of them, a thousand after ten
 * seconds of sends, until autovacuum) and so deleted (xd). */
#define BATCH_GUARD_SQL                                                                                             \
	"WITH g AS MATERIALIZED (SELECT 1 FROM rooms r WHERE r.room_id = $1::text AND r.head_event_id = $19::text " \
	"AND r.head_depth = $20::bigint AND r.state_group IS NOT DISTINCT FROM $10::bigint FOR UPDATE OF r), "      \
	"gx AS MATERIALIZED (SELECT 1 FROM g WHERE ARRAY(SELECT event_id FROM room_extremities "                    \
	"WHERE room_id = $1::text ORDER BY event_id LIMIT 2) = ARRAY[$19::text] AND NOT EXISTS (SELECT 1 FROM "     \
	"unnest($5::text[], $8::text[], "                                                                           \
	"$9::text[]) q(usr, dev, txn) CROSS JOIN LATERAL (SELECT 1 FROM event_txns t WHERE t.user_id = q.usr "      \
	"AND t.device_id = q.dev AND t.room_id = $1::text AND t.kind = 'send' AND t.txn_id = q.txn OFFSET 0) t)), " \
	"l AS MATERIALIZED (SELECT pg_advisory_xact_lock(" STREAM_LOCK ") FROM gx), "
#define BATCH_INSERT_SQL                                                                                                                                          \
	"u AS (SELECT u.* FROM l, unnest($2::text[], $3::bigint[], $4::text[], $5::text[], "                                                                      \
	"$6::bigint[], "                                                                                                                                          \
	"$7::text[], $8::text[], $9::text[]) WITH ORDINALITY AS u(event_id, depth, type, sender, ts, "                                                            \
	"json, "                                                                                                                                                  \
	"txn_device, txn_id, ord)), "                                                                                                                             \
	"e AS (INSERT INTO events (event_id, room_id, stream_ordering, depth, type, sender, "                                                                     \
	"origin_server_ts, "                                                                                                                                      \
	"json, state_group, txn_device, txn_id) SELECT x.event_id, $1::text, nextval('al_stream_seq'), "                                                          \
	"x.depth, "                                                                                                                                               \
	"x.type, x.sender, x.ts, x.json, $10::bigint, x.txn_device, x.txn_id FROM (SELECT * FROM u "                                                              \
	"ORDER BY ord) x "                                                                                                                                        \
	"RETURNING event_id, stream_ordering), "                                                                                                                  \
	"p AS (INSERT INTO event_edges (event_id, prev_event_id) SELECT x.* FROM l, unnest($11::text[], "                                                         \
	"$12::text[]) x), "                                                                                                                                       \
	"a AS (INSERT INTO event_auth (event_id, auth_event_id) SELECT x.* FROM l, unnest($13::text[], "                                                          \
	"$14::text[]) x), "                                                                                                                                       \
	"t AS (INSERT INTO event_txns (user_id, device_id, txn_id, room_id, event_id, kind) "                                                                     \
	"SELECT u.sender, u.txn_device, u.txn_id, $1::text, u.event_id, 'send' FROM u "                                                                           \
	"WHERE u.txn_device IS NOT NULL AND u.txn_id IS NOT NULL), "                                                                                              \
	"h AS (UPDATE rooms SET head_event_id = $15::text, head_depth = $16::bigint WHERE room_id = "                                                             \
	"$1::text AND EXISTS (SELECT 1 FROM l)), "                                                                                                                \
	"xd AS (DELETE FROM room_extremities x USING l, unnest($17::text[]) d(id) "                                                                               \
	"WHERE x.room_id = $1::text AND x.event_id = d.id), "                                                                                                     \
	"xi AS (INSERT INTO room_extremities (room_id, event_id) SELECT $1::text, $15::text FROM l), " /* the rows for the other servers in the room, in order */ \
	"f AS (INSERT INTO federation_outbox (destination, kind, payload) SELECT d.s, 'pdu', "                                                                    \
	"x.json::jsonb FROM (SELECT DISTINCT substring(user_id from position(':' in user_id) + 1) AS s "                                                          \
	"FROM room_memberships WHERE room_id = $1::text AND membership = 'join') d, u x "                                                                         \
	"WHERE d.s <> $18::text ORDER BY d.s, x.ord) "                                                                                                            \
	"SELECT event_id, stream_ordering FROM e"

/* The batch's INSERT and COMMIT in one round trip: events, edges, auth
 * edges, txnIds, the new head, the federation outbox rows for the other
 * servers in the room. The INSERT first takes the stream lock
 * (STREAM_LOCK, held to commit: see room.h; u joins l, so no row, and no
 * nextval, exists before the lock is held), then draws the stream
 * positions in row order (nextval in the target list of an ordered
 * subquery; checked after). Guarded (the cached path) it also begins the
 * transaction. store_prepare builds the statements, store_outcome reads
 * them: 0 committed, 1 a unique violation (nothing committed), -1 an
 * error before COMMIT (nothing committed), -2 COMMIT failed (outcome
 * unknown), 3 the guard refused (nothing written, nothing open). The
 * transaction is open on 1 and -1. */
struct batch_store {
	const char **cols;
	char *arr[13];
	char group[24], depth[24];
	const char *p[20];
	struct db_stmt st[3];
	int from; /* the first of st sent: unguarded, batch_open began the transaction */
	bool guarded;
};

static void store_clear(struct batch_store *s)
{
	for (int i = 0; i < 13; i++)
		free(s->arr[i]);
	free(s->cols);
	for (int i = 0; i < 3; i++)
		PQclear(s->st[i].result);
	memset(s, 0, sizeof(*s));
}

static int store_prepare(const struct writer *w, const struct batch_guard *guard, struct batch_store *s,
			 struct al_error *err)
{
	const struct room_batch *b = w->batch;
	int n = b->n, na = 0, ne = 0, np = 0;
	memset(s, 0, sizeof(*s));
	for (int i = 0; i < n; i++) {
		na += b->rows[i].nauth;
		np += b->rows[i].nprev;
	}
	s->cols = calloc((size_t)(8 * n + 2 * np + 2 * na + ROOM_MAX_PREV) + 1, sizeof(*s->cols));
	if (!s->cols)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char **c8 = s->cols, **edge = s->cols + 8 * n, **auth = s->cols + 8 * n + 2 * np,
		   **first = s->cols + 8 * n + 2 * np + 2 * na;
	for (int i = 0; i < n; i++) {
		const struct batch_row *r = &b->rows[i];
		c8[0 * n + i] = r->event_id;
		c8[1 * n + i] = r->depth;
		c8[2 * n + i] = r->type;
		c8[3 * n + i] = r->sender;
		c8[4 * n + i] = r->ts;
		c8[5 * n + i] = r->json;
		c8[6 * n + i] = r->device;
		c8[7 * n + i] = r->txn;
		for (int j = 0; j < r->nprev; j++) {
			edge[ne] = r->event_id;
			edge[np + ne] = r->prev[j];
			ne++;
		}
	}
	/* the extremities the first event took as prev_events go; the last
	 * event is one (those between were each taken by the next) */
	for (int j = 0; j < b->rows[0].nprev; j++)
		first[j] = b->rows[0].prev[j];
	int k = 0;
	for (int i = 0; i < n; i++)
		for (int j = 0; j < b->rows[i].nauth; j++) {
			auth[k] = b->rows[i].event_id;
			auth[na + k] = b->rows[i].auth[j];
			k++;
		}
	for (int i = 0; i < 8; i++)
		s->arr[i] = room_pg_array(c8 + i * n, n);
	s->arr[8] = room_pg_array(edge, ne);
	s->arr[9] = room_pg_array(edge + np, ne);
	s->arr[10] = room_pg_array(auth, na);
	s->arr[11] = room_pg_array(auth + na, na);
	s->arr[12] = room_pg_array(first, b->rows[0].nprev);
	for (int i = 0; i < 13; i++)
		if (!s->arr[i])
			return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	fmt_i64(s->group, sizeof(s->group), w->group);
	fmt_i64(s->depth, sizeof(s->depth), w->depth);
	const char *p[20] = {w->room_id,
			     s->arr[0],
			     s->arr[1],
			     s->arr[2],
			     s->arr[3],
			     s->arr[4],
			     s->arr[5],
			     s->arr[6],
			     s->arr[7],
			     w->group ? s->group : NULL,
			     s->arr[8],
			     s->arr[9],
			     s->arr[10],
			     s->arr[11],
			     w->head,
			     s->depth,
			     s->arr[12],
			     keys_server_name(w->c->keys),
			     guard ? guard->head : NULL,
			     guard ? guard->depth : NULL};
	memcpy(s->p, p, sizeof(p));
	s->guarded = guard != NULL;
	s->from = guard ? 0 : 1;
	s->st[0] = (struct db_stmt){.sql = "BEGIN"};
	s->st[1] = (struct db_stmt){.name = guard ? "room_batch_insert_guarded" : "room_batch_insert",
				    .sql = guard ? BATCH_GUARD_SQL BATCH_INSERT_SQL
						 : BATCH_LOCK_STREAM_SQL BATCH_INSERT_SQL,
				    .nparams = guard ? 20 : 18,
				    .params = s->p};
	s->st[2] = (struct db_stmt){.sql = "COMMIT"};
	return 0;
}

/* rc: db_pipeline's (or db_pipeline_recv's) for s->st + s->from. */
static int store_outcome(struct writer *w, struct room_batch_item *items, struct batch_store *s, int rc, int conflict,
			 struct al_error *err)
{
	struct room_batch *b = w->batch;
	int n = b->n;
	if (rc < 0) {
		/* INERROR: the INSERT failed, COMMIT did not run. IDLE: COMMIT
		 * itself failed. A broken connection: unknown as well. */
		PGTransactionStatusType ts = PQtransactionStatus(w->c->db->conn);
		rc = conflict ? 1 : -1;
		if (!conflict &&
		    (ts == PQTRANS_IDLE || ts == PQTRANS_UNKNOWN || PQstatus(w->c->db->conn) == CONNECTION_BAD))
			rc = -2;
		if (!conflict && !err->errcode[0])
			al_error_set(err, 500, "M_UNKNOWN", "internal database error");
		return rc;
	}
	PGresult *r = s->st[1].result;
	if (s->guarded && PQntuples(r) == 0)
		return 3; /* the room moved since the cached batch: nothing was written */
	for (int j = 0; j < PQntuples(r); j++) {
		const char *id = PQgetvalue(r, j, 0);
		for (int i = 0; i < n; i++)
			if (strcmp(b->rows[i].event_id, id) == 0) {
				items[b->rows[i].item].stream = col_i64(r, j, 1);
				break;
			}
	}
	bool ordered = PQntuples(r) == n;
	for (int i = 0; ordered && i < n; i++)
		ordered = items[b->rows[i].item].stream > (i ? items[b->rows[i - 1].item].stream : 0);
	if (!ordered) /* cannot happen (see above); committed all the same */
		log_error("room", "batch stream positions out of DAG order room_id=%s", w->room_id);
	return 0;
}

static int batch_store_commit(struct writer *w, struct room_batch_item *items, const struct batch_guard *guard,
			      struct al_error *err)
{
	struct batch_store s;
	int conflict = 0, rc = store_prepare(w, guard, &s, err);
	if (rc == 0) {
		rc = db_pipeline(w->c->db, s.st + s.from, 3 - s.from, &conflict, err);
		rc = store_outcome(w, items, &s, rc, conflict, err);
	}
	store_clear(&s);
	return rc;
}

/* The cached path: the room as this writer's last batch left it, with
 * its head the only forward extremity and every sender's membership
 * known; no statement before the INSERT, whose guard checks all of it
 * (a batch's first round trip). Room versions 1 and 2 (prev_events carry
 * hashes) take the other path. */
static bool batch_cached_ok(const struct wc_entry *e, const char *const *senders, int ns)
{
	if (!e || !e->xset || strcmp(e->xset, e->head) != 0 || !e->head[0])
		return false;
	struct event_rules rules;
	if (event_rules_for(e->version, &rules) < 0 || rules.id_format == 1)
		return false;
	for (int i = 0; i < ns; i++)
		if (!json_object_get(e->queried, senders[i]))
			return false;
	return true;
}

static int batch_open_cached(struct writer *w, const struct wc_entry *e, json_t **queried, struct al_error *err)
{
	struct room_batch *b = w->batch;
	snprintf(w->version, sizeof(w->version), "%s", e->version);
	snprintf(w->head, sizeof(w->head), "%s", e->head);
	w->depth = e->depth;
	w->group = e->group;
	w->chain_len = e->chain_len;
	if (event_rules_for(w->version, &w->rules) < 0)
		return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "room version %s", w->version);
	snprintf(w->prevs[0], EVENT_ID_MAX, "%s", e->head);
	w->nprev = 1;
	b->xall = calloc(2, sizeof(*b->xall));
	if (b->xall)
		b->xall[0] = strdup(e->head);
	b->nxall = b->xall && b->xall[0] ? 1 : 0;
	b->xset = strdup(e->head);
	w->state = json_incref(e->state);
	*queried = json_incref(e->queried);
	if (!b->nxall || !b->xset)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return 0;
}

/* One batch from its items to its outcome (run_build, then the store,
 * then run_end); in flight (room_batch_start) between the last two. */
struct room_batch_flight {
	struct room_ctx ctx;
	struct room_write_cache *cache;
	struct room_batch_item *items;
	int n, ns, stored;
	struct writer w;
	struct room_batch b;
	struct al_error err;
	json_t *queried;
	/* per item: not looked at yet, done before this batch (not a timeline
	 * event, or its txnId was stored), done in this batch (refused, repeat
	 * of an earlier item, or a row of the INSERT) */
	enum { ITEM_PENDING, ITEM_EARLIER, ITEM_THIS } * how;
	bool *done;
	const char **senders;
	bool cached, retry_each;
	bool cache_stored; /* in flight: the cache already shows this batch */
	char guard_head[EVENT_ID_MAX], guard_depth[24];
	struct batch_guard guard; /* .head set: the cached path */
	struct batch_store store;
};

/* store_outcome's answers, and run_build's when it ends a batch before
 * the store (run_end takes either) */
enum {
	STORE_UNKNOWN = -2,
	STORE_ERROR = -1,
	STORE_OK = 0,
	STORE_CONFLICT = 1,
	STORE_STALE = 3,
	RUN_NOTHING = 100, /* no timeline item */
	RUN_BUILT,         /* ready for the store */
	RUN_FAIL,          /* every item fails with f->err */
	RUN_FAIL_ROLLBACK, /* roll back, then as f->retry_each says */
};

static void run_free(struct room_batch_flight *f)
{
	if (!f)
		return;
	for (int i = 0; i < f->b.n; i++)
		free(f->b.rows[i].json);
	free(f->b.rows);
	for (int i = 0; i < f->b.nxall; i++)
		free((char *)f->b.xall[i]);
	free(f->b.xall);
	free(f->b.xset);
	free(f->how);
	free(f->done);
	free(f->senders);
	json_decref(f->queried);
	writer_clear(&f->w);
	store_clear(&f->store);
	free(f);
}

static struct room_batch_flight *run_new(const struct room_ctx *c, const char *room_id, struct room_batch_item *items,
					 int n, struct room_write_cache *cache, bool cached)
{
	struct room_batch_flight *f = calloc(1, sizeof(*f));
	if (!f)
		return NULL;
	f->ctx = *c;
	f->cache = cache;
	f->items = items;
	f->n = n;
	f->cached = cached;
	f->w.c = &f->ctx;
	f->how = calloc((size_t)n + 1, sizeof(*f->how));
	f->done = calloc((size_t)n + 1, sizeof(*f->done));
	f->senders = calloc((size_t)n + 1, sizeof(*f->senders));
	f->b.rows = calloc((size_t)n + 1, sizeof(*f->b.rows));
	f->b.cap = n;
	snprintf(f->w.room_id, sizeof(f->w.room_id), "%s", room_id);
	for (int i = 0; i < n; i++) {
		items[i].rc = -1;
		items[i].stream = 0;
		items[i].event_id[0] = 0;
		memset(&items[i].err, 0, sizeof(items[i].err));
	}
	if (!f->how || !f->done || !f->senders || !f->b.rows || strlen(room_id) > ROOM_ID_MAX) {
		run_free(f);
		return NULL;
	}
	return f;
}

/* Up to the store: RUN_BUILT, or how the batch ends without one
 * (RUN_NOTHING, RUN_FAIL, RUN_FAIL_ROLLBACK, BATCH_UNCACHED). */
static int run_build(struct room_batch_flight *f)
{
	struct room_batch_item *items = f->items;
	int n = f->n;
	for (int i = 0; i < n; i++) {
		if (items[i].spec.state_key || items[i].spec.redacts || !items[i].sender || !items[i].spec.type) {
			al_error_set(&items[i].err, 500, "M_UNKNOWN", "not a timeline event");
			f->done[i] = true;
			f->how[i] = ITEM_EARLIER;
			continue;
		}
		bool seen = false;
		for (int j = 0; j < f->ns && !seen; j++)
			seen = strcmp(f->senders[j], items[i].sender) == 0;
		if (!seen)
			f->senders[f->ns++] = items[i].sender;
	}
	if (f->ns == 0)
		return RUN_NOTHING;
	f->w.batch = &f->b;
	struct wc_entry *ce = f->cached ? wc_find(f->cache, f->w.room_id) : NULL;
	if (ce && batch_cached_ok(ce, f->senders, f->ns)) {
		snprintf(f->guard_head, sizeof(f->guard_head), "%s", ce->head);
		fmt_i64(f->guard_depth, sizeof(f->guard_depth), ce->depth);
		f->guard = (struct batch_guard){.head = f->guard_head, .depth = f->guard_depth};
		if (batch_open_cached(&f->w, ce, &f->queried, &f->err) < 0)
			return RUN_FAIL;
	} else if (f->cached) {
		return BATCH_UNCACHED;
	} else if (batch_open(&f->w, f->cache, f->senders, f->ns, items, n, f->done, &f->queried, &f->err) < 0) {
		/* 404 and the like answer every item; a database error is
		 * retried item by item. */
		f->retry_each = f->err.status == 500;
		return RUN_FAIL_ROLLBACK;
	}
	for (int i = 0; i < n; i++) {
		if (f->done[i]) {
			if (f->how[i] == ITEM_PENDING)
				f->how[i] = ITEM_EARLIER; /* its txnId was stored */
			continue;
		}
		const struct room_batch_item *twin = batch_twin(items, f->done, i);
		f->done[i] = true;
		f->how[i] = ITEM_THIS;
		if (twin) {
			snprintf(items[i].event_id, sizeof(items[i].event_id), "%s", twin->event_id);
			items[i].rc = 0;
			continue;
		}
		f->b.cur = i;
		if (writer_append(&f->w, items[i].sender, &items[i].spec, items[i].event_id, &items[i].err) == 0)
			items[i].rc = 0;
	}
	return RUN_BUILT;
}

/* From code (store_outcome's, or run_build's) to the items' answers: the
 * number of events stored, or BATCH_STALE / BATCH_UNCACHED (nothing
 * written; the caller writes the batch again on the usual path). With
 * segments in flight on the connection (in_flight) nothing may be sent:
 * every failure then answers BATCH_STALE. */
static int run_end(struct room_batch_flight *f, int code, bool in_flight)
{
	const struct room_ctx *c = &f->ctx;
	struct room_batch_item *items = f->items;
	int n = f->n, stored = 0;
	if (code == RUN_NOTHING)
		return 0;
	if (code == BATCH_UNCACHED)
		return BATCH_UNCACHED;
	if (code == RUN_BUILT) { /* nothing to insert */
		if (f->guard.head)
			return BATCH_STALE; /* all refused on cached state: ask the database */
		code = db_commit(c->db, &f->err) < 0 ? STORE_UNKNOWN : STORE_OK;
	}
	if (code == STORE_STALE || (in_flight && code != STORE_OK && code != STORE_UNKNOWN))
		return BATCH_STALE;
	switch (code) {
	case STORE_OK:
		stored = f->b.n;
		if (!f->cache_stored)
			wc_store(f->cache, &f->w, f->queried);
		/* the stored-event hook, as room_send runs it after its commit */
		for (int i = 0; i < f->b.n; i++) {
			const struct room_batch_item *it = &items[f->b.rows[i].item];
			calls_on_event(c->app, c->db, f->w.room_id, it->event_id, it->spec.type, NULL);
		}
		return stored;
	case STORE_UNKNOWN:
		/* Unknown outcome: no retry here (a client's txnId can). */
		for (int i = 0; i < n; i++) {
			if (f->how[i] == ITEM_THIS && items[i].rc == 0) {
				items[i].rc = -1;
				items[i].stream = 0;
				items[i].err = f->err;
			}
		}
		return 0;
	case STORE_CONFLICT:
	case STORE_ERROR:
		f->retry_each = true;
		/* fall through */
	case RUN_FAIL_ROLLBACK: db_rollback(c->db); break;
	default: /* RUN_FAIL */ break;
	}
	for (int i = 0; i < n; i++) {
		if (f->how[i] == ITEM_EARLIER && items[i].rc < 0)
			continue; /* not a timeline event */
		if (f->retry_each) {
			/* One at a time through room_send, the reference path. */
			memset(&items[i].err, 0, sizeof(items[i].err));
			items[i].rc = room_send(c, f->w.room_id, items[i].sender, &items[i].spec, items[i].event_id,
						&items[i].stream, &items[i].err);
			stored += items[i].rc == 0 && items[i].stream > 0;
		} else {
			items[i].rc = -1;
			items[i].stream = 0;
			items[i].err = f->err;
		}
	}
	if (f->retry_each && wc_find(f->cache, f->w.room_id))
		wc_clear(wc_find(f->cache, f->w.room_id));
	return stored;
}

static int send_batch(const struct room_ctx *c, const char *room_id, struct room_batch_item *items, int n,
		      struct room_write_cache *cache, bool cached)
{
	struct room_batch_flight *f = run_new(c, room_id, items, n, cache, cached);
	if (!f) {
		for (int i = 0; i < n; i++)
			al_error_set(&items[i].err, 500, "M_UNKNOWN", "out of memory");
		return 0;
	}
	int code = run_build(f);
	if (code == RUN_BUILT && f->b.n > 0)
		code = batch_store_commit(&f->w, items, f->guard.head ? &f->guard : NULL, &f->err);
	int stored = run_end(f, code, false);
	run_free(f);
	return stored;
}

int room_send_batch(const struct room_ctx *c, const char *room_id, struct room_batch_item *items, int n,
		    struct room_write_cache *cache)
{
	int stored = send_batch(c, room_id, items, n, cache, true);
	if (stored != BATCH_STALE && stored != BATCH_UNCACHED)
		return stored;
	struct wc_entry *e = stored == BATCH_STALE ? wc_find(cache, room_id) : NULL;
	if (e)
		wc_clear(e);
	return send_batch(c, room_id, items, n, cache, false);
}

struct room_batch_flight *room_batch_start(const struct room_ctx *c, const char *room_id, struct room_batch_item *items,
					   int n, struct room_write_cache *cache)
{
	for (int i = 0; i < n; i++)
		if (calls_kind_parse(items[i].spec.type) >= 0)
			return NULL; /* their hook reads the database after the commit */
	struct room_batch_flight *f = run_new(c, room_id, items, n, cache, true);
	if (!f)
		return NULL;
	if (run_build(f) != RUN_BUILT || f->b.n == 0 || !f->guard.head ||
	    store_prepare(&f->w, &f->guard, &f->store, &f->err) < 0 ||
	    db_pipeline_send(f->ctx.db, f->store.st, 3, &f->err) < 0) {
		run_free(f);
		return NULL;
	}
	/* the next batch builds on this one as if committed; room_batch_finish
	 * forgets it if not */
	wc_store(cache, &f->w, f->queried);
	f->cache_stored = true;
	return f;
}

int room_batch_finish(struct room_batch_flight *f, bool earlier_failed)
{
	int conflict = 0;
	int rc = db_pipeline_recv(f->ctx.db, f->store.st, 3, &conflict, &f->err);
	rc = store_outcome(&f->w, f->items, &f->store, rc, conflict, &f->err);
	if (earlier_failed && rc != STORE_UNKNOWN && rc != STORE_OK)
		rc = STORE_STALE; /* written later, after the earlier batch */
	int stored = run_end(f, rc, f->ctx.db->segments > 0);
	if (stored == BATCH_STALE) {
		struct wc_entry *e = wc_find(f->cache, f->w.room_id);
		if (e)
			wc_clear(e);
		if (f->ctx.db->segments == 0)
			db_rollback(f->ctx.db); /* an aborted transaction, if any */
	}
	run_free(f);
	return stored;
}
/* ---- aliases ---- */

int room_alias_put(struct db *db, const char *alias, const char *room_id, const char *creator, struct al_error *err)
{
	int conflict = 0;
	const char *p[] = {alias, room_id, creator};
	PGresult *r = db_exec_unique(db, err, &conflict,
				     "INSERT INTO room_aliases (alias, room_id, creator) "
				     "SELECT $1, room_id, $3 FROM rooms WHERE room_id = $2",
				     3, p);
	if (conflict)
		return al_error_set(err, 409, "M_UNKNOWN", "Room alias %s already exists", alias);
	if (!r)
		return -1;
	bool done = strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	return done ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
}

int room_alias_resolve(struct db *db, const char *alias, char *room_id, struct al_error *err)
{
	const char *p[] = {alias};
	PGresult *r = db_exec(db, err, "SELECT room_id FROM room_aliases WHERE alias = $1", 1, p);
	if (!r)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return al_error_set(err, 404, "M_NOT_FOUND", "Room alias %s not found", alias);
	}
	snprintf(room_id, ROOM_ID_MAX + 1, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}

int room_guest_join_check(struct db *db, const char *room_id_or_alias, struct al_error *err)
{
	char room_id[ROOM_ID_MAX + 1];
	if (!room_id_or_alias || strlen(room_id_or_alias) > ROOM_ID_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "bad room ID");
	if (room_id_or_alias[0] == '#') {
		if (room_alias_resolve(db, room_id_or_alias, room_id, err) < 0)
			return -1;
	} else {
		snprintf(room_id, sizeof(room_id), "%s", room_id_or_alias);
	}
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err,
			      "SELECT e.json::jsonb #>> '{content,guest_access}' = 'can_join' FROM current_state cs "
			      "JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 "
			      "AND cs.type = 'm.room.guest_access' AND cs.state_key = ''",
			      1, p);
	if (!r)
		return -1;
	bool ok = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return ok ? 0 : al_error_set(err, 403, "M_FORBIDDEN", "Guest access not allowed");
}

int room_alias_delete(struct db *db, const char *alias, const char *user_id, struct al_error *err)
{
	const char *p[] = {alias, user_id};
	/* The creator of the alias, or a member with the power to change
	 * m.room.canonical_alias, may delete it. */
	PGresult *r = db_exec(db, err, "SELECT a.creator = $2, a.room_id FROM room_aliases a WHERE a.alias = $1", 2, p);
	if (!r)
		return -1;
	if (PQntuples(r) != 1) {
		PQclear(r);
		return al_error_set(err, 404, "M_NOT_FOUND", "Room alias %s not found", alias);
	}
	bool own = PQgetvalue(r, 0, 0)[0] == 't';
	char room_id[ROOM_ID_MAX + 1];
	snprintf(room_id, sizeof(room_id), "%s", PQgetvalue(r, 0, 1));
	PQclear(r);
	if (!own) {
		const char *q[] = {room_id, user_id};
		r = db_exec(db, err,
			    "SELECT cs.type, cs.state_key, e.event_id, e.json FROM current_state cs "
			    "JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 AND ("
			    "(cs.state_key = '' AND cs.type IN ('m.room.create', 'm.room.power_levels')) "
			    "OR (cs.type = 'm.room.member' AND cs.state_key = $2))",
			    2, q);
		if (!r)
			return -1;
		struct writer w;
		memset(&w, 0, sizeof(w));
		w.state = json_object();
		load_state_rows(&w, r);
		PQclear(r);
		bool ok = strcmp(room_auth_membership(w.state, user_id), "join") == 0 &&
			  room_auth_user_level(w.state, user_id) >=
				  room_auth_event_level(w.state, "m.room.canonical_alias", true);
		json_decref(w.state);
		if (!ok)
			return al_error_set(err, 403, "M_FORBIDDEN", "You may not delete this alias");
	}
	r = db_exec(db, err, "DELETE FROM room_aliases WHERE alias = $1", 1, p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

json_t *room_alias_list(struct db *db, const char *room_id, struct al_error *err)
{
	const char *p[] = {room_id};
	json_t *a = db_exec_strings(db, err, "SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias", 1, p);
	return a ? json_pack("{s:o}", "aliases", a) : NULL;
}

/* ---- membership ---- */

static int profile_of(struct db *db, const char *user_id, json_t *content, struct al_error *err)
{
	const char *p[] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT displayname, avatar_url FROM users WHERE user_id = $1", 1, p);
	if (!r)
		return -1;
	if (PQntuples(r) == 1) {
		if (col_str(r, 0, 0))
			json_object_set_new(content, "displayname", json_string(col_str(r, 0, 0)));
		if (col_str(r, 0, 1))
			json_object_set_new(content, "avatar_url", json_string(col_str(r, 0, 1)));
	}
	PQclear(r);
	return 0;
}

static int membership_send(const struct room_ctx *c, const char *room_id_or_alias, const char *sender,
			   const char *target, const char *membership, const char *require, const char *reason,
			   json_t *extra_content, char *room_id_out, int64_t *stream, struct al_error *err)
{
	char room_id[ROOM_ID_MAX + 1];
	char event_id[EVENT_ID_MAX];
	if (!room_id_or_alias || strlen(room_id_or_alias) > ROOM_ID_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "bad room ID");
	if (room_id_or_alias[0] == '#') {
		if (room_alias_resolve(c->db, room_id_or_alias, room_id, err) < 0)
			return -1;
	} else if (room_id_or_alias[0] == '!') {
		snprintf(room_id, sizeof(room_id), "%s", room_id_or_alias);
	} else {
		return al_error_set(err, 400, "M_INVALID_PARAM", "not a room ID or alias");
	}
	if (!target)
		target = sender;
	if (target[0] != '@' || !server_part(target) || strlen(target) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "user_id is not a user ID");
	json_t *content = json_is_object(extra_content) ? json_deep_copy(extra_content) : json_object();
	if (!content)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_object_set_new(content, "membership", json_string(membership));
	if (reason)
		json_object_set_new(content, "reason", json_string(reason));
	if ((strcmp(membership, "join") == 0 && !json_object_get(content, "displayname")) ||
	    strcmp(membership, "invite") == 0) {
		if (profile_of(c->db, target, content, err) < 0) {
			json_decref(content);
			return -1;
		}
	}
	struct room_event_spec spec = {
		.type = "m.room.member", .state_key = target, .content = content, .require_membership = require};
	int rc = room_send(c, room_id, sender, &spec, event_id, stream, err);
	json_decref(content);
	if (rc == 0 && room_id_out)
		snprintf(room_id_out, ROOM_ID_MAX + 1, "%s", room_id);
	return rc;
}

int room_membership(const struct room_ctx *c, const char *room_id_or_alias, const char *sender, const char *target,
		    const char *membership, const char *reason, json_t *extra_content, char *room_id_out,
		    int64_t *stream, struct al_error *err)
{
	return membership_send(c, room_id_or_alias, sender, target, membership, NULL, reason, extra_content,
			       room_id_out, stream, err);
}

int room_kick(const struct room_ctx *c, const char *room_id, const char *sender, const char *target, const char *reason,
	      int64_t *stream, struct al_error *err)
{
	if (!room_id || room_id[0] != '!')
		return al_error_set(err, 400, "M_INVALID_PARAM", "not a room ID");
	return membership_send(c, room_id, sender, target, "leave", "join invite knock", reason, NULL, NULL, stream,
			       err);
}

int room_unban(const struct room_ctx *c, const char *room_id, const char *sender, const char *target,
	       const char *reason, int64_t *stream, struct al_error *err)
{
	if (!room_id || room_id[0] != '!')
		return al_error_set(err, 400, "M_INVALID_PARAM", "not a room ID");
	return membership_send(c, room_id, sender, target, "leave", "ban", reason, NULL, NULL, stream, err);
}

int room_forget(struct db *db, const char *room_id, const char *user_id, struct al_error *err)
{
	const char *p[] = {room_id, user_id};
	PGresult *r = db_exec(db, err,
			      "UPDATE room_memberships SET forgotten = true WHERE room_id = $1 AND user_id = $2 "
			      "AND membership IN ('leave', 'ban') RETURNING 1",
			      2, p);
	if (!r)
		return -1;
	int n = PQntuples(r);
	PQclear(r);
	if (n == 0) {
		const char *q[] = {room_id, user_id};
		r = db_exec(db, err, "SELECT membership FROM room_memberships WHERE room_id = $1 AND user_id = $2", 2,
			    q);
		if (!r)
			return -1;
		bool member = PQntuples(r) == 1;
		PQclear(r);
		if (member)
			return al_error_set(err, 400, "M_UNKNOWN", "You must leave the room before forgetting it");
	}
	return 0;
}

/* ---- createRoom ---- */

static bool is_user_id(const char *s)
{
	return s && s[0] == '@' && strchr(s, ':') && strlen(s) <= 255;
}

static json_t *default_power_levels(const char *creator, const char *preset, json_t *invites)
{
	json_t *pl = json_pack("{s:{s:i}, s:i, s:{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i}, s:i, s:i, s:i, "
			       "s:i, s:i, s:i}",
			       "users", creator, 100, "users_default", 0, "events", "m.room.name", 50,
			       "m.room.power_levels", 100, "m.room.history_visibility", 100, "m.room.canonical_alias",
			       50, "m.room.avatar", 50, "m.room.tombstone", 100, "m.room.server_acl", 100,
			       "m.room.encryption", 100, "events_default", 0, "state_default", 50, "ban", 50, "kick",
			       50, "redact", 50, "invite", strcmp(preset, "public_chat") == 0 ? 50 : 0);
	if (pl && strcmp(preset, "trusted_private_chat") == 0) {
		size_t i;
		json_t *v;
		json_array_foreach(invites, i, v)
		{
			json_object_set_new(json_object_get(pl, "users"), json_string_value(v), json_integer(100));
		}
	}
	return pl;
}

static int create_validate(json_t *body, const char **version, const char **preset, struct al_error *err)
{
	json_t *v = json_object_get(body, "room_version");
	*version = default_version;
	if (v && !json_is_null(v)) {
		struct event_rules r;
		*version = json_string_value(v);
		if (!*version)
			return al_error_set(err, 400, "M_BAD_JSON", "room_version must be a string");
		if (event_rules_for(*version, &r) < 0)
			return al_error_set(err, 400, "M_UNSUPPORTED_ROOM_VERSION", "unsupported room version %s",
					    *version);
	}
	const char *vis = json_string_value(json_object_get(body, "visibility"));
	if (json_object_get(body, "visibility") && (!vis || (strcmp(vis, "public") && strcmp(vis, "private"))))
		return al_error_set(err, 400, "M_INVALID_PARAM", "visibility must be public or private");
	*preset = json_string_value(json_object_get(body, "preset"));
	if (json_object_get(body, "preset") && !*preset)
		return al_error_set(err, 400, "M_INVALID_PARAM", "preset must be a string");
	if (!*preset)
		*preset = vis && strcmp(vis, "public") == 0 ? "public_chat" : "private_chat";
	if (strcmp(*preset, "public_chat") && strcmp(*preset, "private_chat") &&
	    strcmp(*preset, "trusted_private_chat"))
		return al_error_set(err, 400, "M_INVALID_PARAM", "unknown preset");
	static const char *const strs[] = {"name", "topic", "room_alias_name", NULL};
	for (const char *const *k = strs; *k; k++) {
		json_t *x = json_object_get(body, *k);
		if (x && !json_is_null(x) && !json_is_string(x))
			return al_error_set(err, 400, "M_INVALID_PARAM", "%s must be a string", *k);
	}
	json_t *inv = json_object_get(body, "invite");
	if (inv && !json_is_array(inv))
		return al_error_set(err, 400, "M_INVALID_PARAM", "invite must be a list of user IDs");
	size_t i;
	json_array_foreach(inv, i, v)
	{
		if (!is_user_id(json_string_value(v)))
			return al_error_set(err, 400, "M_INVALID_PARAM", "invite must be a list of user IDs");
	}
	if (json_array_size(inv) > 100)
		return al_error_set(err, 400, "M_INVALID_PARAM", "too many invites");
	json_t *is = json_object_get(body, "initial_state");
	if (is && !json_is_array(is))
		return al_error_set(err, 400, "M_INVALID_PARAM", "initial_state must be a list");
	json_array_foreach(is, i, v)
	{
		json_t *sk = json_object_get(v, "state_key");
		if (!json_is_object(v) || !json_is_string(json_object_get(v, "type")) ||
		    !json_is_object(json_object_get(v, "content")) || (sk && !json_is_string(sk)))
			return al_error_set(err, 400, "M_INVALID_PARAM", "bad initial_state event");
	}
	if (json_array_size(is) > 100)
		return al_error_set(err, 400, "M_INVALID_PARAM", "too many initial_state events");
	json_t *cc = json_object_get(body, "creation_content");
	if (cc && !json_is_object(cc))
		return al_error_set(err, 400, "M_INVALID_PARAM", "creation_content must be an object");
	json_t *plo = json_object_get(body, "power_level_content_override");
	if (plo && !json_is_null(plo) && !json_is_object(plo))
		return al_error_set(err, 400, "M_INVALID_PARAM", "power_level_content_override must be an object");
	return 0;
}

static int append_state(struct writer *w, const char *sender, const char *type, const char *sk, json_t *content,
			struct al_error *err)
{
	char id[EVENT_ID_MAX];
	struct room_event_spec s = {.type = type, .state_key = sk, .content = content};
	int rc = content ? writer_append(w, sender, &s, id, err) : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_decref(content);
	return rc;
}

static bool initial_state_has(json_t *is, const char *type)
{
	size_t i;
	json_t *v;
	json_array_foreach(is, i, v)
	{
		const char *t = json_string_value(json_object_get(v, "type"));
		const char *sk = json_string_value(json_object_get(v, "state_key"));
		if (t && strcmp(t, type) == 0 && (!sk || !*sk))
			return true;
	}
	return false;
}

int room_create(const struct room_ctx *c, const char *creator, json_t *body, char *room_id, int64_t *stream,
		struct al_error *err)
{
	const char *version = NULL, *preset = NULL;
	const char *server = keys_server_name(c->keys);
	char alias[ROOM_ID_MAX + 1] = "";
	struct writer w;
	memset(&w, 0, sizeof(w));
	if (create_validate(body, &version, &preset, err) < 0)
		return -1;
	const char *alias_name = json_string_value(json_object_get(body, "room_alias_name"));
	if (alias_name) {
		int n = snprintf(alias, sizeof(alias), "#%s:%s", alias_name, server);
		if (n < 0 || (size_t)n >= sizeof(alias) || !*alias_name || strchr(alias_name, ':') ||
		    strpbrk(alias_name, " \t\n#"))
			return al_error_set(err, 400, "M_INVALID_PARAM", "invalid room_alias_name");
	}
	unsigned char rnd[12];
	randombytes_buf(rnd, sizeof(rnd));
	char local[25];
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	for (size_t i = 0; i < 18; i++)
		local[i] = letters[(rnd[i % 12] + i * 7) % 52];
	local[18] = 0;
	randombytes_buf(rnd, sizeof(rnd));
	for (size_t i = 0; i < 12; i++)
		local[i] = letters[rnd[i] % 52];
	int n = snprintf(room_id, ROOM_ID_MAX + 1, "!%s:%s", local, server);
	if (n < 0 || n > ROOM_ID_MAX)
		return al_error_set(err, 500, "M_UNKNOWN", "server name too long");

	json_t *invites = json_object_get(body, "invite");
	json_t *is = json_object_get(body, "initial_state");
	bool is_direct = json_is_true(json_object_get(body, "is_direct"));
	const char *vis = json_string_value(json_object_get(body, "visibility"));
	if (db_begin(c->db, err) < 0)
		return -1;
	const char *rp[] = {room_id, version, creator, vis && strcmp(vis, "public") == 0 ? "t" : "f"};
	PGresult *r = db_exec(c->db, err,
			      "INSERT INTO rooms (room_id, room_version, creator, is_public) VALUES ($1, $2, $3, $4)",
			      4, rp);
	if (!r)
		goto fail;
	PQclear(r);
	w.c = c;
	w.state = json_object();
	snprintf(w.room_id, sizeof(w.room_id), "%s", room_id);
	snprintf(w.version, sizeof(w.version), "%s", version);
	event_rules_for(version, &w.rules);

	json_t *cc = json_object_get(body, "creation_content");
	json_t *create = cc ? json_deep_copy(cc) : json_object();
	json_object_set_new(create, "room_version", json_string(version));
	if (!w.rules.creator_is_sender)
		json_object_set_new(create, "creator", json_string(creator));
	else
		json_object_del(create, "creator");
	if (append_state(&w, creator, "m.room.create", "", create, err) < 0)
		goto fail;
	json_t *member = json_pack("{s:s}", "membership", "join");
	if (profile_of(c->db, creator, member, err) < 0) {
		json_decref(member);
		goto fail;
	}
	if (append_state(&w, creator, "m.room.member", creator, member, err) < 0)
		goto fail;
	json_t *pl = default_power_levels(creator, preset, invites);
	json_t *plo = json_object_get(body, "power_level_content_override");
	if (pl && json_is_object(plo))
		json_object_update(pl, plo);
	if (append_state(&w, creator, "m.room.power_levels", "", pl, err) < 0)
		goto fail;
	if (alias[0]) {
		if (room_alias_put(c->db, alias, room_id, creator, err) < 0) {
			if (err->status == 409)
				al_error_set(err, 400, "M_ROOM_IN_USE", "Room alias already taken");
			goto fail;
		}
		if (append_state(&w, creator, "m.room.canonical_alias", "", json_pack("{s:s}", "alias", alias), err) <
		    0)
			goto fail;
	}
	bool public = strcmp(preset, "public_chat") == 0;
	if (!initial_state_has(is, "m.room.join_rules") &&
	    append_state(&w, creator, "m.room.join_rules", "",
			 json_pack("{s:s}", "join_rule", public ? "public" : "invite"), err) < 0)
		goto fail;
	if (!initial_state_has(is, "m.room.history_visibility") &&
	    append_state(&w, creator, "m.room.history_visibility", "",
			 json_pack("{s:s}", "history_visibility", "shared"), err) < 0)
		goto fail;
	if (!public && !initial_state_has(is, "m.room.guest_access") &&
	    append_state(&w, creator, "m.room.guest_access", "", json_pack("{s:s}", "guest_access", "can_join"), err) <
		    0)
		goto fail;
	size_t i;
	json_t *v;
	json_array_foreach(is, i, v)
	{
		const char *sk = json_string_value(json_object_get(v, "state_key"));
		if (append_state(&w, creator, json_string_value(json_object_get(v, "type")), sk ? sk : "",
				 json_deep_copy(json_object_get(v, "content")), err) < 0)
			goto fail;
	}
	const char *name = json_string_value(json_object_get(body, "name"));
	if (name && append_state(&w, creator, "m.room.name", "", json_pack("{s:s}", "name", name), err) < 0)
		goto fail;
	const char *topic = json_string_value(json_object_get(body, "topic"));
	if (topic && append_state(&w, creator, "m.room.topic", "", json_pack("{s:s}", "topic", topic), err) < 0)
		goto fail;
	json_array_foreach(invites, i, v)
	{
		const char *uid = json_string_value(v);
		if (strcmp(server_part(uid), server) != 0)
			continue; /* invited through federation once the room exists */
		json_t *inv = json_pack("{s:s}", "membership", "invite");
		if (is_direct)
			json_object_set_new(inv, "is_direct", json_true());
		if (profile_of(c->db, uid, inv, err) < 0) {
			json_decref(inv);
			goto fail;
		}
		if (append_state(&w, creator, "m.room.member", uid, inv, err) < 0)
			goto fail;
	}
	if (db_commit(c->db, err) < 0)
		goto fail_nr;
	*stream = w.stream;
	writer_clear(&w);
	log_info("room", "created room_id=%s version=%s preset=%s", room_id, version, preset);
	return 0;
fail:
	db_rollback(c->db);
fail_nr:
	writer_clear(&w);
	return -1;
}

/* ---- reads ---- */

/* How user_id may read a room. max: the highest stream position she may
 * see (INT64_MAX while joined, and for an invitee or a non-member of a
 * world-readable room; the membership event's position after leaving or
 * being banned). checked_upto: events at or below it go through the
 * history visibility rules (room_visibility.h); the ones after a joined
 * user's join are hers to see. */
struct viewer {
	int64_t max;
	int64_t checked_upto;
	bool joined;
};

/* invite_ok: an invitee may read the timeline (filtered per event);
 * otherwise only a world-readable room lets a non-member in. 403 else. */
static int viewer_limit(struct db *db, const char *room_id, const char *user_id, bool invite_ok, struct viewer *v,
			struct al_error *err)
{
	const char *p[] = {room_id, user_id};
	PGresult *r = db_exec_prepared(
		db, err, NULL, "room_viewer",
		"SELECT m.membership, m.stream_ordering, (SELECT 1 FROM rooms WHERE room_id = $1), "
		"(SELECT (e.json::jsonb) -> 'content' ->> 'history_visibility' FROM current_state cs "
		"JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 "
		"AND cs.type = 'm.room.history_visibility' AND cs.state_key = '') "
		"FROM (SELECT 1) x LEFT JOIN room_memberships m ON m.room_id = $1 AND m.user_id = $2",
		2, p);
	if (!r)
		return -1;
	const char *m = col_str(r, 0, 0), *hv = col_str(r, 0, 3);
	bool exists = !PQgetisnull(r, 0, 2);
	bool world = hv && strcmp(hv, "world_readable") == 0;
	int64_t s = col_i64(r, 0, 1);
	int rc = 0;
	v->max = INT64_MAX;
	v->checked_upto = INT64_MAX;
	v->joined = m && strcmp(m, "join") == 0;
	if (v->joined)
		v->checked_upto = s;
	else if (m && (strcmp(m, "leave") == 0 || strcmp(m, "ban") == 0) && !world)
		v->max = s;
	else if (!world && !(invite_ok && m && strcmp(m, "invite") == 0))
		rc = exists ? al_error_set(err, 403, "M_FORBIDDEN", "You are not a member of room %s", room_id)
			    : al_error_set(err, 403, "M_FORBIDDEN", "Unknown room %s", room_id);
	PQclear(r);
	return rc;
}

/* visible[i] for the n rows of r (event ID in column 0, stream position in
 * column scol): the ones after v->checked_upto without a query. */
static int rows_visible(struct db *db, const char *user_id, const struct viewer *v, PGresult *r, int scol,
			bool *visible, struct al_error *err)
{
	int n = PQntuples(r), k = 0;
	const char **ids = calloc((size_t)n + 1, sizeof(*ids));
	int *at = calloc((size_t)n + 1, sizeof(*at));
	bool *vis = calloc((size_t)n + 1, sizeof(*vis));
	int rc = 0;
	if (!ids || !at || !vis) {
		rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	for (int i = 0; i < n; i++) {
		visible[i] = col_i64(r, i, scol) > v->checked_upto;
		if (!visible[i]) {
			ids[k] = PQgetvalue(r, i, 0);
			at[k++] = i;
		}
	}
	if (k > 0 && (rc = room_visibility_filter(db, user_id, ids, k, vis, err)) == 0)
		for (int i = 0; i < k; i++)
			visible[at[i]] = vis[i];
done:
	free(ids);
	free(at);
	free(vis);
	return rc;
}

/* The state of a group (chosen by the subquery G) expanded: rows
 * (event_id, json, sender, type, state_key). */
#define STATE_OF_GROUP_SQL(G)                                                                                      \
	"WITH RECURSIVE chain(id, prev, lvl) AS (SELECT id, prev_group, 0 FROM state_groups WHERE id = (" G ") "   \
	"UNION ALL SELECT g.id, g.prev_group, c.lvl + 1 FROM state_groups g JOIN chain c ON g.id = c.prev) "       \
	"SELECT e.event_id, e.json, e.sender, x.type, x.state_key FROM (SELECT DISTINCT ON (s.type, s.state_key) " \
	"s.type, s.state_key, s.event_id FROM state_group_edits s JOIN chain c ON s.state_group = c.id "           \
	"ORDER BY s.type, s.state_key, c.lvl) x JOIN events e ON e.event_id = x.event_id ORDER BY e.stream_ordering"

/* Rows (event_id, json, sender, type, state_key) of the room state at
 * stream position max (current state when INT64_MAX). */
static PGresult *state_rows(struct db *db, const char *room_id, int64_t max, struct al_error *err)
{
	if (max == INT64_MAX) {
		const char *p[] = {room_id};
		return db_exec(
			db, err,
			"SELECT e.event_id, e.json, e.sender, cs.type, cs.state_key FROM current_state cs "
			"JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = $1 ORDER BY e.stream_ordering",
			1, p);
	}
	char ms[24];
	fmt_i64(ms, sizeof(ms), max);
	const char *p[] = {room_id, ms};
	return db_exec(db, err,
		       STATE_OF_GROUP_SQL("SELECT state_group FROM events WHERE room_id = $1 "
					  "AND stream_ordering <= $2::bigint AND stream_ordering > 0 "
					  "AND state_group IS NOT NULL ORDER BY stream_ordering DESC LIMIT 1"),
		       2, p);
}

/* The same rows for the state of the room after event_id. */
static PGresult *state_rows_at_event(struct db *db, const char *room_id, const char *event_id, struct al_error *err)
{
	const char *p[] = {room_id, event_id};
	return db_exec(db, err,
		       STATE_OF_GROUP_SQL("SELECT state_group FROM events WHERE room_id = $1 AND event_id = $2"), 2, p);
}

static json_t *state_events(PGresult *r)
{
	json_t *a = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *ev = room_client_event(PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), NULL, NULL, NULL, NULL, NULL);
		if (ev)
			json_array_append_new(a, ev);
	}
	return a;
}

json_t *room_state(struct db *db, const char *room_id, const char *user_id, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, false, &v, err) < 0)
		return NULL;
	PGresult *r = state_rows(db, room_id, v.max, err);
	if (!r)
		return NULL;
	json_t *a = state_events(r);
	PQclear(r);
	return a;
}

json_t *room_state_event(struct db *db, const char *room_id, const char *user_id, const char *type,
			 const char *state_key, bool as_event, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, false, &v, err) < 0)
		return NULL;
	PGresult *r = state_rows(db, room_id, v.max, err);
	if (!r)
		return NULL;
	json_t *content = NULL;
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 3), type) == 0 && strcmp(PQgetvalue(r, i, 4), state_key) == 0) {
			if (as_event) {
				content = room_client_event(PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), NULL, NULL, NULL,
							    NULL, NULL);
				break;
			}
			json_t *pdu = json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL);
			content = json_incref(json_object_get(pdu, "content"));
			json_decref(pdu);
			break;
		}
	}
	PQclear(r);
	if (!content)
		al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
	return content;
}

json_t *room_members(struct db *db, const char *room_id, const char *user_id, const char *membership,
		     const char *not_membership, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, false, &v, err) < 0)
		return NULL;
	PGresult *r = state_rows(db, room_id, v.max, err);
	if (!r)
		return NULL;
	json_t *chunk = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		if (strcmp(PQgetvalue(r, i, 3), "m.room.member") != 0)
			continue;
		json_t *ev = room_client_event(PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), NULL, NULL, NULL, NULL, NULL);
		const char *m = json_string_value(json_object_get(json_object_get(ev, "content"), "membership"));
		if (!ev || !m || (membership && strcmp(m, membership) != 0) ||
		    (not_membership && strcmp(m, not_membership) == 0)) {
			json_decref(ev);
			continue;
		}
		json_array_append_new(chunk, ev);
	}
	PQclear(r);
	return json_pack("{s:o}", "chunk", chunk);
}

json_t *room_joined_members(struct db *db, const char *room_id, const char *user_id, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, false, &v, err) < 0)
		return NULL;
	if (!v.joined) {
		al_error_set(err, 403, "M_FORBIDDEN", "You are not in room %s", room_id);
		return NULL;
	}
	const char *p[] = {room_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT m.user_id, e.json FROM room_memberships m JOIN events e ON e.event_id = m.event_id "
		"WHERE m.room_id = $1 AND m.membership = 'join'",
		1, p);
	if (!r)
		return NULL;
	json_t *joined = json_object();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = json_loads(PQgetvalue(r, i, 1), JSON_DECODE_ANY, NULL);
		json_t *c = json_object_get(pdu, "content");
		json_t *o = json_object();
		json_t *dn = json_object_get(c, "displayname"), *av = json_object_get(c, "avatar_url");
		json_object_set_new(o, "display_name", json_is_string(dn) ? json_copy(dn) : json_null());
		json_object_set_new(o, "avatar_url", json_is_string(av) ? json_copy(av) : json_null());
		json_object_set_new(joined, PQgetvalue(r, i, 0), o);
		json_decref(pdu);
	}
	PQclear(r);
	return json_pack("{s:o}", "joined", joined);
}

json_t *room_joined_rooms(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[] = {user_id};
	json_t *a = db_exec_strings(db, err,
				    "SELECT room_id FROM room_memberships WHERE user_id = $1 AND membership = 'join' "
				    "ORDER BY stream_ordering",
				    1, p);
	return a ? json_pack("{s:o}", "joined_rooms", a) : NULL;
}

int room_require_joined(struct db *db, const char *room_id, const char *user_id, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, false, &v, err) < 0)
		return -1;
	if (!v.joined)
		return al_error_set(err, 403, "M_FORBIDDEN", "You are not in room %s", room_id);
	return 0;
}

/* ---- receipts ---- */

int room_receipt_check(struct db *db, const char *room_id, const char *user_id, const char *event_id,
		       struct al_error *err)
{
	if (!event_id || event_id[0] != '$' || strlen(event_id) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "malformed event ID");
	if (room_require_joined(db, room_id, user_id, err) < 0)
		return -1;
	const char *p[] = {room_id, event_id};
	PGresult *r = db_exec(db, err, "SELECT 1 FROM events WHERE room_id = $1 AND event_id = $2", 2, p);
	if (!r)
		return -1;
	bool found = PQntuples(r) == 1;
	PQclear(r);
	return found ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
}

/* A public receipt goes to the room's other servers (m.receipt EDU). */
static int receipt_to_servers(struct db *db, const char *room_id, const char *user_id, const char *thread_id,
			      const char *event_id, struct al_error *err)
{
	json_t *data = json_pack("{s:I}", "ts", (json_int_t)room_now_ms());
	if (data && thread_id)
		json_object_set_new(data, "thread_id", json_string(thread_id));
	json_t *c = data ? json_pack("{s:{s:{s:{s:[s], s:o}}}}", room_id, "m.read", user_id, "event_ids", event_id,
				     "data", data)
			 : NULL;
	const char *self = strchr(user_id, ':');
	int rc = c && self ? federation_edu_to_room(db, room_id, self + 1, "m.receipt", c, err)
			   : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_decref(c);
	return rc;
}

int room_receipt_put(struct db *db, const char *room_id, const char *user_id, const char *type, const char *thread_id,
		     const char *event_id, bool *changed, struct al_error *err)
{
	*changed = false;
	bool fully_read = strcmp(type, "m.fully_read") == 0;
	if (!fully_read && strcmp(type, "m.read") != 0 && strcmp(type, "m.read.private") != 0)
		return al_error_set(err, 400, "M_INVALID_PARAM", "unknown receipt type");
	if (thread_id && fully_read)
		return al_error_set(err, 400, "M_INVALID_PARAM", "m.fully_read has no thread");
	if (thread_id && strcmp(thread_id, "main") != 0 && (thread_id[0] != '$' || strlen(thread_id) > 255))
		return al_error_set(err, 400, "M_INVALID_PARAM", "thread_id must be main or an event ID");
	if (room_receipt_check(db, room_id, user_id, event_id, err) < 0)
		return -1;
	if (fully_read) {
		json_t *c = json_pack("{s:s}", "event_id", event_id);
		int rc = c ? sync_account_data_put(db, user_id, room_id, "m.fully_read", c, err)
			   : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		json_decref(c);
		*changed = rc == 0;
		return rc;
	}
	char ts[24];
	fmt_i64(ts, sizeof(ts), room_now_ms());
	const char *p[] = {room_id, user_id, type, thread_id ? thread_id : "", event_id, ts};
	if (db_begin(db, err) < 0)
		return -1;
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(" STREAM_LOCK ")", 0, NULL);
	if (!r)
		goto fail;
	PQclear(r);
	/* A receipt only moves forward: one for an earlier event is ignored. */
	r = db_exec(
		db, err,
		"INSERT INTO receipts AS x (room_id, user_id, receipt_type, thread_id, event_id, ts, stream_ordering) "
		"VALUES ($1, $2, $3, $4, $5, $6::bigint, nextval('al_stream_seq')) "
		"ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET event_id = EXCLUDED.event_id, "
		"ts = EXCLUDED.ts, stream_ordering = EXCLUDED.stream_ordering "
		"WHERE coalesce((SELECT stream_ordering FROM events WHERE event_id = x.event_id), 0) < "
		"(SELECT stream_ordering FROM events WHERE event_id = EXCLUDED.event_id) RETURNING 1",
		6, p);
	if (!r)
		goto fail;
	*changed = PQntuples(r) == 1;
	PQclear(r);
	if (*changed && strcmp(type, "m.read") == 0 &&
	    receipt_to_servers(db, room_id, user_id, thread_id, event_id, err) < 0)
		goto fail;
	if (db_commit(db, err) < 0)
		goto fail;
	return 0;
fail:
	db_rollback(db);
	*changed = false;
	return -1;
}

#define EVENT_COLS "event_id, json, sender, txn_device, txn_id, stream_ordering"

static json_t *row_event(PGresult *r, int i, const char *viewer, const char *device)
{
	return room_client_event(PQgetvalue(r, i, 1), PQgetvalue(r, i, 0), PQgetvalue(r, i, 2), col_str(r, i, 3),
				 col_str(r, i, 4), viewer, device);
}

json_t *room_get_event(struct db *db, const char *room_id, const char *user_id, const char *event_id,
		       struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, true, &v, err) < 0)
		return NULL;
	char ms[24];
	fmt_i64(ms, sizeof(ms), v.max);
	const char *p[] = {room_id, event_id, ms};
	PGresult *r = db_exec(db, err,
			      "SELECT " EVENT_COLS " FROM events WHERE room_id = $1 AND event_id = $2 "
			      "AND stream_ordering <= $3::bigint",
			      3, p);
	if (!r)
		return NULL;
	bool visible = false;
	if (PQntuples(r) == 1 && rows_visible(db, user_id, &v, r, 5, &visible, err) < 0) {
		PQclear(r);
		return NULL;
	}
	json_t *ev = visible ? row_event(r, 0, user_id, NULL) : NULL;
	PQclear(r);
	if (!ev)
		al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
	return ev;
}

static bool type_allowed(json_t *filter, const char *type)
{
	json_t *types = json_object_get(filter, "types"), *not_types = json_object_get(filter, "not_types");
	size_t i;
	json_t *v;
	json_array_foreach(not_types, i, v)
	{
		const char *t = json_string_value(v);
		if (t && strcmp(t, type) == 0)
			return false;
	}
	if (!json_is_array(types))
		return true;
	json_array_foreach(types, i, v)
	{
		const char *t = json_string_value(v);
		size_t n = t ? strlen(t) : 0;
		if (t && (strcmp(t, type) == 0 || (n && t[n - 1] == '*' && strncmp(t, type, n - 1) == 0)))
			return true;
	}
	return false;
}

json_t *room_messages(struct db *db, const char *room_id, const char *user_id, const char *device_id, const char *from,
		      const char *to, char dir, int limit, json_t *filter, struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, true, &v, err) < 0)
		return NULL;
	int64_t max = v.max;
	/* the timeline: positive positions, then backfilled history below
	 * -ROOM_BACKFILL_BASE (outliers and hidden events lie in between) */
	int64_t f = from ? room_token_parse(from) : (dir == 'b' ? INT64_MAX : INT64_MIN + 1);
	int64_t t = to ? room_token_parse(to) : (dir == 'b' ? INT64_MIN + 1 : INT64_MAX);
	if ((f < 0 && f > -ROOM_BACKFILL_BASE) || (t < 0 && t > -ROOM_BACKFILL_BASE)) {
		al_error_set(err, 400, "M_INVALID_PARAM", "malformed pagination token");
		return NULL;
	}
	char lo[24], hi[24], lim[16];
	if (dir == 'b') {
		fmt_i64(hi, sizeof(hi), f < max ? f : max);
		fmt_i64(lo, sizeof(lo), t);
	} else {
		fmt_i64(lo, sizeof(lo), f);
		fmt_i64(hi, sizeof(hi), t < max ? t : max);
	}
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *p[] = {room_id, lo, hi, lim};
	PGresult *r = db_exec(
		db, err,
		dir == 'b' ? "SELECT " EVENT_COLS " FROM events WHERE room_id = $1 AND stream_ordering > $2::bigint "
			     "AND stream_ordering <= $3::bigint AND (stream_ordering > 0 OR stream_ordering <= "
			     "-" ROOM_BACKFILL_BASE_SQL ") ORDER BY stream_ordering DESC LIMIT $4::int"
			   : "SELECT " EVENT_COLS " FROM events WHERE room_id = $1 AND stream_ordering > $2::bigint "
			     "AND stream_ordering <= $3::bigint AND (stream_ordering > 0 OR stream_ordering <= "
			     "-" ROOM_BACKFILL_BASE_SQL ") ORDER BY stream_ordering ASC LIMIT $4::int",
		4, p);
	if (!r)
		return NULL;
	int n = PQntuples(r);
	bool *visible = calloc((size_t)n + 1, sizeof(*visible));
	if (!visible || rows_visible(db, user_id, &v, r, 5, visible, err) < 0) {
		if (!visible)
			al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		free(visible);
		PQclear(r);
		return NULL;
	}
	json_t *chunk = json_array();
	for (int i = 0; i < n; i++) {
		if (!visible[i])
			continue;
		json_t *ev = row_event(r, i, user_id, device_id);
		if (ev && filter && !type_allowed(filter, json_string_value(json_object_get(ev, "type")))) {
			json_decref(ev);
			continue;
		}
		if (ev)
			json_array_append_new(chunk, ev);
	}
	char start[32], end[32];
	if (from)
		snprintf(start, sizeof(start), "%s", from);
	else if (n > 0)
		room_token_format(dir == 'b' ? col_i64(r, 0, 5) : col_i64(r, 0, 5) - 1, start, sizeof(start));
	else
		room_token_format(dir == 'b' ? (max == INT64_MAX ? 0 : max) : f, start, sizeof(start));
	json_t *state = json_array();
	if (json_is_true(json_object_get(filter, "lazy_load_members")) && n > 0) {
		const char **senders = calloc((size_t)n, sizeof(*senders));
		int ns = 0;
		for (int i = 0; senders && i < n; i++) {
			bool seen = !visible[i];
			for (int j = 0; j < ns && !seen; j++)
				seen = strcmp(senders[j], PQgetvalue(r, i, 2)) == 0;
			if (!seen)
				senders[ns++] = PQgetvalue(r, i, 2);
		}
		char *arr = senders ? room_pg_array(senders, ns) : NULL;
		const char *q[] = {room_id, arr};
		PGresult *m = arr ? db_exec(db, err,
					    "SELECT e.event_id, e.json FROM current_state cs JOIN events e ON "
					    "e.event_id = cs.event_id "
					    "WHERE cs.room_id = $1 AND cs.type = 'm.room.member' AND cs.state_key = "
					    "ANY($2::text[])",
					    2, q)
				  : NULL;
		for (int i = 0; m && i < PQntuples(m); i++) {
			json_t *ev = room_client_event(PQgetvalue(m, i, 1), PQgetvalue(m, i, 0), NULL, NULL, NULL, NULL,
						       NULL);
			if (ev)
				json_array_append_new(state, ev);
		}
		if (m)
			PQclear(m);
		free(arr);
		free(senders);
	}
	json_t *out = json_pack("{s:o, s:s, s:o}", "chunk", chunk, "start", start, "state", state);
	if (n > 0) {
		int64_t last = col_i64(r, n - 1, 5);
		room_token_format(dir == 'b' ? last - 1 : last, end, sizeof(end));
		json_object_set_new(out, "end", json_string(end));
	}
	PQclear(r);
	free(visible);
	return out;
}

/* The parts of room_context's rows: the event itself, before it, after it. */
struct context_parts {
	json_t *event, *before, *after;
	int64_t start, end;
	const char *last_id; /* the last event returned (in r) */
};

static void context_collect(PGresult *r, const bool *visible, int half, int after, const char *user_id,
			    struct context_parts *c)
{
	int nb = 0, na = 0;
	for (int i = 0; i < PQntuples(r); i++) {
		int part = atoi(PQgetvalue(r, i, 6));
		int64_t s = col_i64(r, i, 5);
		if (part == 0) {
			c->start = s - 1;
			c->end = s;
			if (visible[i])
				c->event = row_event(r, i, user_id, NULL);
			if (!c->last_id)
				c->last_id = PQgetvalue(r, i, 0);
			continue;
		}
		/* invisible events count towards the limits too, so start and
		 * end are where the events returned stop */
		if (part == 1 && nb < half) {
			nb++;
			c->start = s - 1;
		} else if (part == 2 && na < after) {
			na++;
			c->end = s;
		} else {
			continue;
		}
		json_t *e = visible[i] ? row_event(r, i, user_id, NULL) : NULL;
		if (!e)
			continue;
		json_array_append_new(part == 1 ? c->before : c->after, e);
		if (part == 2)
			c->last_id = PQgetvalue(r, i, 0);
	}
}

json_t *room_context(struct db *db, const char *room_id, const char *user_id, const char *event_id, int limit,
		     struct al_error *err)
{
	struct viewer v;
	if (viewer_limit(db, room_id, user_id, true, &v, err) < 0)
		return NULL;
	char ms[24], lim[16];
	fmt_i64(ms, sizeof(ms), v.max);
	int half = limit / 2, after = limit - half;
	snprintf(lim, sizeof(lim), "%d", half > after ? half : after);
	const char *p[] = {room_id, event_id, ms, lim};
	/* the event first, then before it newest first, after it oldest first */
	PGresult *r = db_exec(
		db, err,
		"WITH x AS (SELECT stream_ordering s FROM events WHERE room_id = $1 AND event_id = $2 "
		"AND stream_ordering <= $3::bigint AND stream_ordering > 0) "
		"SELECT " EVENT_COLS ", 0 AS part FROM events, x WHERE event_id = $2 "
		"UNION ALL (SELECT " EVENT_COLS ", 1 FROM events, x WHERE room_id = $1 AND stream_ordering < x.s "
		"AND stream_ordering > 0 "
		"ORDER BY stream_ordering DESC LIMIT $4::int) "
		"UNION ALL (SELECT " EVENT_COLS ", 2 FROM events, x WHERE room_id = $1 AND stream_ordering > x.s "
		"AND stream_ordering <= $3::bigint ORDER BY stream_ordering ASC LIMIT $4::int)",
		4, p);
	if (!r)
		return NULL;
	int n = PQntuples(r);
	bool *visible = calloc((size_t)n + 1, sizeof(*visible));
	struct context_parts c = {.before = json_array(), .after = json_array()};
	json_t *state = NULL, *out = NULL;
	if (!visible) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto done;
	}
	if (rows_visible(db, user_id, &v, r, 5, visible, err) < 0)
		goto done;
	context_collect(r, visible, half, after, user_id, &c);
	if (!c.event) {
		al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
		goto done;
	}
	/* the state of the room at the last event returned */
	PGresult *sr = state_rows_at_event(db, room_id, c.last_id, err);
	if (!sr)
		goto done;
	state = state_events(sr);
	PQclear(sr);
	char st[32], en[32];
	room_token_format(c.start, st, sizeof(st));
	room_token_format(c.end, en, sizeof(en));
	out = json_pack("{s:o, s:o, s:o, s:o, s:s, s:s}", "event", c.event, "events_before", c.before, "events_after",
			c.after, "state", state, "start", st, "end", en);
	c.event = c.before = c.after = NULL;
done:
	json_decref(c.event);
	json_decref(c.before);
	json_decref(c.after);
	free(visible);
	PQclear(r);
	return out;
}
