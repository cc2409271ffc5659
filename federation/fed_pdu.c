/* fed_pdu.c - PDUs received from other servers: the signatures and content
 * hash of each event (spec "Validating hashes and signatures on received
 * events"), with the signing keys fetched asynchronously first, and the
 * pipeline of an inbound transaction's PDUs: verify, store through
 * room_remote, fill gaps, answer with a result per PDU. Gaps (bounded, as
 * Synapse does them): a pushed event with unknown prev_events gets them
 * from get_missing_events (once per room), else it is refused; an event
 * pulled that way whose prev_events are still unknown gets the state at
 * each of them (/state_ids, then /state and /event for what is missing,
 * stored as outliers); unknown auth events come from /event_auth. Runs on the receiving worker's loop with
 * its database connection; never blocks on the network. */
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cjson.h"
#include "fed_internal.h"
#include "keys.h"
#include "log.h"
#include "room_acl.h"
#include "room_remote.h"
#include "sign.h"

#define FETCH_MAX_SERVERS 32
#define GME_LIMIT 20
#define STATE_MAX_FETCHES 8
#define MAX_RUNS 12
#define FETCH_TIMEOUT_MS 10000

/* ---- signatures ---- */

/* The servers whose signatures an event needs: its sender's (and for a
 * restricted join, the authorising server's). */
static int needed_servers(const struct event_rules *r, const json_t *pdu, const char **out, int max)
{
	int n = 0;
	const char *sender = json_string_value(json_object_get(pdu, "sender"));
	const char *s = sender ? strchr(sender, ':') : NULL;
	if (s && n < max)
		out[n++] = s + 1;
	/* versions 1-2: the server that named the event signs it too */
	const char *eid = r->id_format == 1 ? json_string_value(json_object_get(pdu, "event_id")) : NULL;
	const char *es = eid ? strchr(eid, ':') : NULL;
	if (es && n < max && (!s || strcmp(es + 1, s + 1) != 0))
		out[n++] = es + 1;
	const char *type = json_string_value(json_object_get(pdu, "type"));
	json_t *c = json_object_get(pdu, "content");
	const char *via = json_string_value(json_object_get(c, "join_authorised_via_users_server"));
	const char *m = json_string_value(json_object_get(c, "membership"));
	if (r->restricted && type && strcmp(type, "m.room.member") == 0 && m && strcmp(m, "join") == 0 && via) {
		const char *v = strchr(via, ':');
		if (v && n < max && (!s || strcmp(v + 1, s + 1) != 0))
			out[n++] = v + 1;
	}
	return n;
}

/* Does server have a signature on pdu made with a key we can check? */
static bool key_known(struct federation *fed, const char *server, const json_t *pdu)
{
	if (federation_is_local(fed->app, server))
		return true;
	json_t *sigs = json_object_get(json_object_get(pdu, "signatures"), server);
	int64_t ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
	const char *kid;
	json_t *v;
	json_object_foreach(sigs, kid, v)
	{
		unsigned char pk[32];
		if (fed_keys_lookup(fed->keys, server, kid, ts, pk) == FED_KEY_OK)
			return true;
	}
	return false;
}

/* 0 when server signed red (the redacted event) with a key we know and
 * no known key's signature fails. */
static int verify_server_sig(struct federation *fed, const json_t *red, int64_t ts, const char *server, char *why,
			     size_t whylen)
{
	json_t *sigs = json_object_get(json_object_get(red, "signatures"), server);
	int good = 0, badsig = 0;
	const char *kid;
	json_t *v;
	json_object_foreach(sigs, kid, v)
	{
		unsigned char pk[32];
		bool have = false;
		if (federation_is_local(fed->app, server))
			have = keys_lookup_own(fed->app->keys, kid, pk) == 0;
		else
			have = fed_keys_lookup(fed->keys, server, kid, ts, pk) == FED_KEY_OK;
		if (!have)
			continue; /* unknown or expired keys are skipped */
		struct al_error e = {0};
		if (sign_verify_json(red, server, kid, pk, &e) == 0)
			good++;
		else
			badsig++;
	}
	if (badsig > 0 || good == 0) {
		snprintf(why, whylen, "%s signature of %s", badsig ? "bad" : "no valid", server);
		return -1;
	}
	return 0;
}

int fed_pdu_verify_server(struct federation *fed, const struct event_rules *r, const json_t *pdu, const char *server,
			  char *why, size_t whylen)
{
	json_t *red = event_redact(pdu, r);
	if (!red) {
		snprintf(why, whylen, "cannot redact");
		return -1;
	}
	int rc = verify_server_sig(fed, red, json_integer_value(json_object_get(pdu, "origin_server_ts")), server, why,
				   whylen);
	json_decref(red);
	return rc;
}

int fed_pdu_verify(struct federation *fed, const struct event_rules *r, const json_t *pdu, json_t **verified, char *why,
		   size_t whylen)
{
	*verified = NULL;
	const char *servers[3];
	int ns = needed_servers(r, pdu, servers, 3);
	if (ns == 0) {
		snprintf(why, whylen, "no sender");
		return -1;
	}
	json_t *red = event_redact(pdu, r);
	if (!red) {
		snprintf(why, whylen, "cannot redact");
		return -1;
	}
	int64_t ts = json_integer_value(json_object_get(pdu, "origin_server_ts"));
	for (int i = 0; i < ns; i++) {
		if (verify_server_sig(fed, red, ts, servers[i], why, whylen) < 0) {
			json_decref(red);
			return -1;
		}
	}
	struct al_error e = {0};
	if (event_check_content_hash(pdu, &e) == 0) {
		*verified = json_incref((json_t *)pdu);
		json_decref(red);
	} else {
		/* spec: treat it as the redacted copy we computed */
		log_info("fed_pdu", "content hash mismatch: redacting sender=%s type=%s",
			 json_string_value(json_object_get(pdu, "sender")),
			 json_string_value(json_object_get(pdu, "type")));
		*verified = red;
	}
	return 0;
}

/* ---- key fetching for a batch ---- */

struct keys_job {
	void (*cb)(void *arg);
	void *arg;
	int pending;
};

static void keys_one_done(void *arg, bool ok)
{
	(void)ok;
	struct keys_job *j = arg;
	if (--j->pending == 0) {
		j->cb(j->arg);
		free(j);
	}
}

int fed_pdus_fetch_keys(struct federation *fed, struct event_base *base, json_t *pdus, const char *version,
			void (*cb)(void *arg), void *arg)
{
	struct event_rules r;
	if (event_rules_for(version, &r) < 0)
		event_rules_for("11", &r);
	char names[FETCH_MAX_SERVERS][256];
	int nn = 0;
	size_t i;
	json_t *p;
	json_array_foreach(pdus, i, p)
	{
		const char *servers[3];
		int ns = needed_servers(&r, p, servers, 3);
		for (int k = 0; k < ns; k++) {
			if (key_known(fed, servers[k], p))
				continue;
			bool dup = false;
			for (int q = 0; q < nn && !dup; q++)
				dup = strcasecmp(names[q], servers[k]) == 0;
			if (!dup && nn < FETCH_MAX_SERVERS && strlen(servers[k]) < 256)
				snprintf(names[nn++], 256, "%s", servers[k]);
		}
	}
	struct keys_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->cb = cb;
	j->arg = arg;
	j->pending = 1;
	for (int k = 0; k < nn; k++) {
		j->pending++;
		if (fed_keys_fetch(fed, names[k], base, keys_one_done, j) < 0)
			j->pending--;
	}
	keys_one_done(j, true); /* runs cb now when nothing was started */
	return 0;
}

int fed_pdus_fetch_keys_of(struct federation *fed, struct event_base *base, const char *server, const json_t *pdu,
			   void (*cb)(void *arg), void *arg)
{
	struct keys_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->cb = cb;
	j->arg = arg;
	j->pending = 1;
	if (!key_known(fed, server, pdu)) {
		j->pending++;
		if (fed_keys_fetch(fed, server, base, keys_one_done, j) < 0)
			j->pending--;
	}
	keys_one_done(j, true);
	return 0;
}

/* ---- an inbound transaction's PDUs ---- */

enum item_state { IT_VERIFY, IT_PENDING, IT_DONE };

struct txn_job {
	struct federation *fed;
	struct http_worker *w;
	char origin[256];
	json_t *items;       /* array of objects, see add_item */
	json_t *results;     /* event_id -> {} or {error} */
	json_t *tried;       /* room_id -> true: get_missing_events asked once */
	json_t *state_tried; /* event ID -> true: the state at its prev events asked */
	json_t *auth_tried;  /* event ID -> true: its auth chain asked */
	json_t *state_for;   /* prev event ID -> the state IDs before it (from /state_ids) */
	int pending;
	int fetches;
	bool accepted_any;
	int runs; /* passes over the items (bounded) */
	fed_pdu_done_fn cb;
	void *arg;
};

static void job_run(struct txn_job *j);

static struct room_ctx ctx_of(struct txn_job *j)
{
	struct room_ctx c = {.db = &j->w->db, .keys = j->fed->app->keys, .app = j->fed->app};
	return c;
}

static void result(struct txn_job *j, json_t *it, const char *error)
{
	json_object_set_new(it, "state", json_integer(IT_DONE));
	if (json_is_true(json_object_get(it, "fetched")))
		return;
	const char *id = json_string_value(json_object_get(it, "event_id"));
	if (!id)
		return;
	json_object_set_new(j->results, id, error ? json_pack("{s:s}", "error", error) : json_object());
}

/* flags of an item: fetched (pulled by us, not pushed), outlier (an
 * auth chain or the state at a gap). */
static void add_item(struct txn_job *j, json_t *pdu, bool fetched, bool outlier, json_t *versions)
{
	const char *room_id = json_string_value(json_object_get(pdu, "room_id"));
	json_t *it = json_pack("{s:O, s:b, s:b, s:i}", "pdu", pdu, "fetched", fetched, "outlier", outlier, "state",
			       IT_VERIFY);
	json_array_append_new(j->items, it);
	const char *version = room_id ? json_string_value(json_object_get(versions, room_id)) : NULL;
	struct event_rules r;
	struct al_error err = {0};
	char id[EVENT_ID_MAX];
	if (!version) {
		if (!fetched) {
			/* without the room's version the ID is computed as in the
			 * current versions (or taken from the event) */
			const char *given = json_string_value(json_object_get(pdu, "event_id"));
			event_rules_for("11", &r);
			if (given && strlen(given) < sizeof(id))
				snprintf(id, sizeof(id), "%s", given);
			else if (event_compute_id(pdu, &r, id, sizeof(id), &err) < 0)
				snprintf(id, sizeof(id), "pdu_%zu", json_array_size(j->items));
			json_object_set_new(it, "event_id", json_string(id));
			result(j, it, "unknown room");
		}
		json_object_set_new(it, "state", json_integer(IT_DONE));
		return;
	}
	json_object_set_new(it, "version", json_string(version));
	event_rules_for(version, &r);
	if (event_compute_id(pdu, &r, id, sizeof(id), &err) < 0) {
		json_object_set_new(it, "state", json_integer(IT_DONE));
		return;
	}
	json_object_set_new(it, "event_id", json_string(id));
	if (room_pdu_check_format(&r, pdu, &err) < 0) {
		result(j, it, err.message);
		return;
	}
	if (!room_remote_version_supported(version))
		result(j, it, "unsupported room version");
}

/* Room versions never change: the rooms of recent transactions are
 * remembered (shared by the workers, under a mutex). */
#define VERSION_CACHE 32

static pthread_mutex_t version_mu = PTHREAD_MUTEX_INITIALIZER;
static struct {
	char room_id[256];
	char version[8];
} version_cache[VERSION_CACHE];
static int version_next;

/* Fills out with what the cache knows of ids; returns the rest. */
static json_t *versions_cached(json_t *ids, json_t *out)
{
	json_t *rest = json_array();
	size_t i;
	json_t *v;
	pthread_mutex_lock(&version_mu);
	json_array_foreach(ids, i, v)
	{
		const char *room = json_string_value(v);
		bool hit = false;
		for (int k = 0; k < VERSION_CACHE && !hit; k++)
			if (strcmp(version_cache[k].room_id, room) == 0) {
				json_object_set_new(out, room, json_string(version_cache[k].version));
				hit = true;
			}
		if (!hit)
			json_array_append(rest, v);
	}
	pthread_mutex_unlock(&version_mu);
	return rest;
}

static void version_remember(const char *room, const char *version)
{
	if (strlen(room) >= sizeof(version_cache[0].room_id) || strlen(version) >= sizeof(version_cache[0].version))
		return;
	pthread_mutex_lock(&version_mu);
	snprintf(version_cache[version_next].room_id, sizeof(version_cache[0].room_id), "%s", room);
	snprintf(version_cache[version_next].version, sizeof(version_cache[0].version), "%s", version);
	version_next = (version_next + 1) % VERSION_CACHE;
	pthread_mutex_unlock(&version_mu);
}

/* The versions of the rooms of pdus: from the cache, the rest in one
 * query. */
static json_t *room_versions(struct txn_job *j, json_t *pdus)
{
	json_t *out = json_object();
	json_t *ids = json_array(), *seen = json_object();
	size_t i;
	json_t *p;
	json_array_foreach(pdus, i, p)
	{
		const char *room = json_string_value(json_object_get(p, "room_id"));
		if (room && strlen(room) <= 255 && !json_object_get(seen, room)) {
			json_object_set_new(seen, room, json_true());
			json_array_append_new(ids, json_string(room));
		}
	}
	json_decref(seen);
	json_t *rest = versions_cached(ids, out);
	json_decref(ids);
	char *text = json_array_size(rest) ? cjson_encode(rest, NULL, NULL) : NULL;
	json_decref(rest);
	if (!text)
		return out;
	struct al_error err = {0};
	const char *params[] = {text};
	PGresult *r = db_exec(&j->w->db, &err,
			      "SELECT room_id, room_version FROM rooms WHERE room_id IN "
			      "(SELECT jsonb_array_elements_text($1::jsonb))",
			      1, params);
	free(text);
	if (!r)
		return out;
	for (int k = 0; k < PQntuples(r); k++) {
		json_object_set_new(out, PQgetvalue(r, k, 0), json_string(PQgetvalue(r, k, 1)));
		version_remember(PQgetvalue(r, k, 0), PQgetvalue(r, k, 1));
	}
	PQclear(r);
	return out;
}

static void job_finish(struct txn_job *j)
{
	/* PDUs never decided (should not happen) */
	size_t i;
	json_t *it;
	json_array_foreach(j->items, i, it)
	{
		if (json_integer_value(json_object_get(it, "state")) != IT_DONE)
			result(j, it, "not processed");
	}
	if (j->accepted_any && j->fed->notify)
		j->fed->notify(j->fed->app);
	j->cb(j->arg, j->results);
	json_decref(j->items);
	json_decref(j->results);
	json_decref(j->tried);
	json_decref(j->state_tried);
	json_decref(j->auth_tried);
	json_decref(j->state_for);
	free(j);
}

static void verify_items(struct txn_job *j)
{
	size_t i;
	json_t *it;
	json_array_foreach(j->items, i, it)
	{
		if (json_integer_value(json_object_get(it, "state")) != IT_VERIFY)
			continue;
		struct event_rules r;
		event_rules_for(json_string_value(json_object_get(it, "version")), &r);
		json_t *verified = NULL;
		char why[300];
		if (fed_pdu_verify(j->fed, &r, json_object_get(it, "pdu"), &verified, why, sizeof(why)) < 0) {
			log_info("fed_pdu", "dropped origin=%s event_id=%s: %s", j->origin,
				 json_string_value(json_object_get(it, "event_id")), why);
			result(j, it, why);
			continue;
		}
		json_object_set_new(it, "pdu", verified);
		json_object_set_new(it, "state", json_integer(IT_PENDING));
	}
}

static void keys_ready(void *arg)
{
	struct txn_job *j = arg;
	verify_items(j);
	job_run(j);
}

/* Collect the PDUs awaiting verification and fetch the keys they need. */
static void verify_then_run(struct txn_job *j)
{
	json_t *pdus = json_array();
	size_t i;
	json_t *it;
	const char *version = "11";
	json_array_foreach(j->items, i, it)
	{
		if (json_integer_value(json_object_get(it, "state")) == IT_VERIFY) {
			json_array_append(pdus, json_object_get(it, "pdu"));
			version = json_string_value(json_object_get(it, "version"));
		}
	}
	int rc = fed_pdus_fetch_keys(j->fed, j->w->base, pdus, version, keys_ready, j);
	json_decref(pdus);
	if (rc < 0)
		keys_ready(j);
}

static int depth_order(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	json_int_t dx = json_integer_value(json_object_get(json_object_get(x, "pdu"), "depth"));
	json_int_t dy = json_integer_value(json_object_get(json_object_get(y, "pdu"), "depth"));
	return dx < dy ? -1 : dx > dy;
}

enum fetch_kind { F_MISSING, F_AUTH, F_STATE_IDS, F_STATE, F_EVENT };

struct fetch_ctx {
	struct txn_job *j;
	enum fetch_kind kind;
	char room_id[256];
	char event_id[EVENT_ID_MAX]; /* F_STATE_IDS, F_STATE, F_EVENT: the prev event */
};

static int fetch(struct txn_job *j, enum fetch_kind kind, const char *room_id, const char *event_id, const char *method,
		 const char *path, json_t *body);

static json_t *versions_of(struct txn_job *j, const char *room_id)
{
	json_t *versions = json_object();
	struct al_error err = {0};
	char version[4];
	if (room_remote_room_version(&j->w->db, room_id, version, &err) == 0)
		json_object_set_new(versions, room_id, json_string(version));
	return versions;
}

static void add_list(struct txn_job *j, json_t *list, const char *room_id, bool outlier, size_t max)
{
	json_t *versions = versions_of(j, room_id);
	size_t i;
	json_t *p;
	json_array_foreach(list, i, p)
	{
		if (i >= max)
			break;
		const char *r = json_is_object(p) ? json_string_value(json_object_get(p, "room_id")) : NULL;
		if (r && strcmp(r, room_id) == 0)
			add_item(j, p, true, outlier, versions);
	}
	json_decref(versions);
}

static char *path_of(const char *fmt_prefix, const char *room_id, const char *event_id, const char *query)
{
	char *er = evhttp_encode_uri(room_id), *ee = event_id ? evhttp_encode_uri(event_id) : NULL;
	char buf[1200];
	int n = snprintf(buf, sizeof(buf), "/_matrix/federation/v1/%s/%s%s%s%s%s", fmt_prefix, er ? er : "",
			 ee && !query ? "/" : "", ee && !query ? ee : "", query ? query : "", ee && query ? ee : "");
	free(er);
	free(ee);
	return n > 0 && (size_t)n < sizeof(buf) ? strdup(buf) : NULL;
}

/* After /state_ids at a prev event: fetch what of it we do not have. */
static void state_ids_done(struct txn_job *j, struct fetch_ctx *fc, json_t *body)
{
	json_t *ids = json_object_get(body, "pdu_ids"), *chain = json_object_get(body, "auth_chain_ids");
	if (!json_is_array(ids) || json_array_size(ids) > 50000 || (chain && !json_is_array(chain)))
		return;
	json_object_set_new(j->state_for, fc->event_id, json_pack("{s:s, s:O}", "room", fc->room_id, "ids", ids));
	json_t *all = json_array();
	json_array_extend(all, ids);
	if (chain)
		json_array_extend(all, chain);
	json_array_append_new(all, json_string(fc->event_id));
	char *text = cjson_encode(all, NULL, NULL);
	json_decref(all);
	if (!text)
		return;
	struct al_error err = {0};
	const char *p[] = {text};
	PGresult *r = db_exec(
		&j->w->db, &err,
		"SELECT x, x = ANY(SELECT event_id FROM events WHERE event_id IN "
		"(SELECT jsonb_array_elements_text($1::jsonb))) FROM jsonb_array_elements_text($1::jsonb) x",
		1, p);
	free(text);
	if (!r)
		return;
	bool need_state = false, need_event = false;
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQgetvalue(r, i, 1)[0] == 't')
			continue;
		if (strcmp(PQgetvalue(r, i, 0), fc->event_id) == 0)
			need_event = true;
		else
			need_state = true;
	}
	PQclear(r);
	if (need_state) {
		char *path = path_of("state", fc->room_id, fc->event_id, "?event_id=");
		if (path)
			fetch(j, F_STATE, fc->room_id, fc->event_id, "GET", path, NULL);
		free(path);
	}
	if (need_event) {
		char *enc = evhttp_encode_uri(fc->event_id);
		char path[700];
		snprintf(path, sizeof(path), "/_matrix/federation/v1/event/%s", enc ? enc : "");
		free(enc);
		fetch(j, F_EVENT, fc->room_id, fc->event_id, "GET", path, NULL);
	}
}

static void fetched(const struct fed_response *resp, void *arg)
{
	struct fetch_ctx *fc = arg;
	struct txn_job *j = fc->j;
	json_t *body = resp->status == 200 && json_is_object(resp->body) ? resp->body : NULL;
	static const char *const names[] = {"missing events", "auth chain", "state ids", "state", "event"};
	if (!body) {
		log_info("fed_pdu", "cannot fill a gap (%s) origin=%s room_id=%s status=%d %s", names[fc->kind],
			 j->origin, fc->room_id, resp->status, resp->err.message);
	} else {
		switch (fc->kind) {
		case F_MISSING: add_list(j, json_object_get(body, "events"), fc->room_id, false, GME_LIMIT); break;
		case F_AUTH: add_list(j, json_object_get(body, "auth_chain"), fc->room_id, true, 1000); break;
		case F_STATE_IDS: state_ids_done(j, fc, body); break;
		case F_STATE:
			add_list(j, json_object_get(body, "auth_chain"), fc->room_id, true, 20000);
			add_list(j, json_object_get(body, "pdus"), fc->room_id, true, 20000);
			break;
		case F_EVENT: add_list(j, json_object_get(body, "pdus"), fc->room_id, true, 1); break;
		}
		log_info("fed_pdu", "fetched %s origin=%s room_id=%s", names[fc->kind], j->origin, fc->room_id);
	}
	free(fc);
	if (--j->pending == 0)
		verify_then_run(j);
}

static int fetch(struct txn_job *j, enum fetch_kind kind, const char *room_id, const char *event_id, const char *method,
		 const char *path, json_t *body)
{
	struct fetch_ctx *fc = calloc(1, sizeof(*fc));
	if (!fc)
		return -1;
	fc->j = j;
	fc->kind = kind;
	snprintf(fc->room_id, sizeof(fc->room_id), "%s", room_id);
	if (event_id)
		snprintf(fc->event_id, sizeof(fc->event_id), "%s", event_id);
	struct fed_request rq = {.method = method,
				 .destination = j->origin,
				 .path = path,
				 .body = body,
				 .sign = true,
				 .timeout_ms = FETCH_TIMEOUT_MS};
	j->pending++;
	if (fed_client_submit(j->fed->fc, &rq, j->w->base, fetched, fc) < 0) {
		j->pending--;
		free(fc);
		return -1;
	}
	return 0;
}

static json_t *extremities(struct txn_job *j, const char *room_id)
{
	struct al_error err = {0};
	const char *p[] = {room_id};
	PGresult *r = db_exec(&j->w->db, &err, "SELECT event_id FROM room_extremities WHERE room_id = $1 LIMIT 20", 1,
			      p);
	json_t *a = json_array();
	for (int i = 0; r && i < PQntuples(r); i++)
		json_array_append_new(a, json_string(PQgetvalue(r, i, 0)));
	if (r)
		PQclear(r);
	return a;
}

/* Accept one item; true when it is decided (a result was given). */
static bool accept_item(struct txn_job *j, json_t *it, unsigned flags, struct room_pdu_outcome *o)
{
	struct room_ctx c = ctx_of(j);
	json_t *pdu = json_object_get(it, "pdu");
	const char *room_id = json_string_value(json_object_get(pdu, "room_id"));
	const char *event_id = json_string_value(json_object_get(it, "event_id"));
	struct al_error err = {0};
	if (room_remote_accept(&c, room_id, pdu, event_id, flags, o, &err) < 0) {
		result(j, it, err.message);
		return true;
	}
	if (o->status == ROOM_PDU_MISSING)
		return false;
	if (o->status == ROOM_PDU_ACCEPTED)
		j->accepted_any = true;
	/* a rejected event is stored as such: no error for it (spec) */
	result(j, it, NULL);
	return true;
}

/* The PDUs of one room pushed to us, pending, in depth order (order[0, n)),
 * through room_remote_accept_run: the common case in one database
 * transaction; what it leaves goes item by item (job_run). */
static void accept_room_run(struct txn_job *j, json_t **order, size_t n, const char *room_id)
{
	struct room_pdu_run_item items[ROOM_REMOTE_RUN_MAX];
	json_t *its[ROOM_REMOTE_RUN_MAX];
	int k = 0;
	for (size_t i = 0; i < n && k < ROOM_REMOTE_RUN_MAX; i++) {
		json_t *it = order[i];
		json_t *pdu = json_object_get(it, "pdu");
		const char *r = json_string_value(json_object_get(pdu, "room_id"));
		const char *id = json_string_value(json_object_get(it, "event_id"));
		if (json_integer_value(json_object_get(it, "state")) != IT_PENDING || !r || strcmp(r, room_id) != 0 ||
		    !id || json_is_true(json_object_get(it, "fetched")) || json_is_true(json_object_get(it, "outlier")))
			continue;
		items[k] = (struct room_pdu_run_item){.pdu = pdu, .event_id = id};
		its[k++] = it;
	}
	struct room_ctx c = ctx_of(j);
	struct al_error err = {0};
	int done = room_remote_accept_run(&c, room_id, items, k, &err);
	if (done < 0)
		log_info("fed_pdu", "run not stored room_id=%s: %s", room_id, err.message);
	for (int i = 0; i < done; i++) {
		if (items[i].out.status == ROOM_PDU_ACCEPTED)
			j->accepted_any = true;
		result(j, its[i], NULL);
		room_pdu_outcome_clear(&items[i].out);
	}
}

/* accept_room_run for each room with pushed PDUs pending. */
static void accept_runs(struct txn_job *j, json_t **order, size_t n)
{
	json_t *seen = json_object();
	for (size_t i = 0; i < n; i++) {
		json_t *it = order[i];
		const char *room_id = json_string_value(json_object_get(json_object_get(it, "pdu"), "room_id"));
		if (json_integer_value(json_object_get(it, "state")) != IT_PENDING || !room_id ||
		    json_object_get(seen, room_id) || json_is_true(json_object_get(it, "fetched")))
			continue;
		json_object_set_new(seen, room_id, json_true());
		accept_room_run(j, order + i, n - i, room_id);
	}
	json_decref(seen);
}

static void ask_event_auth(struct txn_job *j, const char *room_id, const char *event_id)
{
	char *path = path_of("event_auth", room_id, event_id, NULL);
	if (path)
		fetch(j, F_AUTH, room_id, NULL, "GET", path, NULL);
	free(path);
}

static void job_run(struct txn_job *j)
{
	size_t n = json_array_size(j->items);
	json_t **order = calloc(n + 1, sizeof(*order));
	if (!order) {
		job_finish(j);
		return;
	}
	for (size_t i = 0; i < n; i++)
		order[i] = json_array_get(j->items, i);
	qsort(order, n, sizeof(*order), depth_order);
	struct room_ctx c = ctx_of(j);
	j->runs++;
	json_t *byid = json_object(); /* event ID -> item */
	for (size_t i = 0; i < n; i++) {
		const char *id = json_string_value(json_object_get(order[i], "event_id"));
		if (id)
			json_object_set(byid, id, order[i]);
	}
	/* pass A: outliers (auth chains, the state at a gap) */
	for (size_t i = 0; i < n; i++) {
		json_t *it = order[i];
		struct room_pdu_outcome o;
		if (json_integer_value(json_object_get(it, "state")) == IT_PENDING &&
		    json_is_true(json_object_get(it, "outlier"))) {
			if (!accept_item(j, it, ROOM_ACCEPT_OUTLIER | ROOM_ACCEPT_GAPS, &o))
				result(j, it, "not stored");
			room_pdu_outcome_clear(&o);
		}
	}
	/* the state after each prev event that was fetched for a gap */
	const char *pid;
	json_t *ids;
	void *tmp;
	json_object_foreach_safe(j->state_for, tmp, pid, ids)
	{
		struct al_error err = {0};
		const char *room_id = json_string_value(json_object_get(ids, "room"));
		if (room_remote_set_state_after(&c, room_id, pid, json_object_get(ids, "ids"), &err) < 0)
			log_info("fed_pdu", "cannot use the state at %s: %s", pid, err.message);
		json_object_del(j->state_for, pid);
	}
	/* pass B: the timeline, oldest first; runs of one room in one
	 * transaction first, as far as they go */
	if (j->runs == 1)
		accept_runs(j, order, n);
	json_t *gaps = json_object(); /* room_id -> [event IDs with unknown prev_events] */
	for (size_t i = 0; i < n; i++) {
		json_t *it = order[i];
		if (json_integer_value(json_object_get(it, "state")) != IT_PENDING)
			continue;
		json_t *pdu = json_object_get(it, "pdu");
		const char *room_id = json_string_value(json_object_get(pdu, "room_id"));
		const char *event_id = json_string_value(json_object_get(it, "event_id"));
		bool pulled = json_is_true(json_object_get(it, "fetched"));
		bool state_tried = json_object_get(j->state_tried, event_id) != NULL;
		bool auth_tried = json_object_get(j->auth_tried, event_id) != NULL;
		struct room_pdu_outcome o;
		if (accept_item(j, it, state_tried ? ROOM_ACCEPT_GAPS : 0, &o)) {
			room_pdu_outcome_clear(&o);
			continue;
		}
		bool waits = false; /* a missing prev event is in this job, not decided yet */
		size_t k;
		json_t *m;
		json_array_foreach(o.missing_prev, k, m)
		{
			json_t *dep = json_object_get(byid, json_string_value(m));
			if (dep && json_integer_value(json_object_get(dep, "state")) != IT_DONE)
				waits = true;
		}
		if (waits && j->runs < MAX_RUNS) {
			room_pdu_outcome_clear(&o);
			continue;
		}
		if (o.missing_prev && !pulled) {
			/* pushed to us: its prev_events come from get_missing_events
			 * (once per room), else it is refused (spec: the sender must
			 * divulge them) */
			if (!json_object_get(j->tried, room_id)) {
				json_t *g = json_object_get(gaps, room_id);
				if (!g) {
					g = json_array();
					json_object_set_new(gaps, room_id, g);
				}
				json_array_append_new(g, json_string(event_id));
			} else {
				result(j, it, "its prev_events could not be fetched");
			}
		} else if (o.missing_prev && !state_tried && j->fetches < STATE_MAX_FETCHES) {
			/* pulled: ask for the state at each missing prev event */
			json_object_set_new(j->state_tried, event_id, json_true());
			json_array_foreach(o.missing_prev, k, m)
			{
				if (k >= 3 || j->fetches >= STATE_MAX_FETCHES)
					break;
				j->fetches++;
				char *path = path_of("state_ids", room_id, json_string_value(m), "?event_id=");
				if (path)
					fetch(j, F_STATE_IDS, room_id, json_string_value(m), "GET", path, NULL);
				free(path);
			}
		} else if (o.missing_auth && !auth_tried && j->fetches < STATE_MAX_FETCHES) {
			json_object_set_new(j->auth_tried, event_id, json_true());
			j->fetches++;
			ask_event_auth(j, room_id, event_id);
		} else {
			/* nothing more to ask: decide with what we have */
			room_pdu_outcome_clear(&o);
			if (!accept_item(j, it, ROOM_ACCEPT_GAPS, &o))
				result(j, it, "missing events");
		}
		room_pdu_outcome_clear(&o);
	}
	free(order);
	json_decref(byid);
	json_t *gids;
	json_object_foreach(gaps, pid, gids)
	{
		json_object_set_new(j->tried, pid, json_true());
		char *path = path_of("get_missing_events", pid, NULL, NULL);
		json_t *body = json_pack("{s:o, s:O, s:i, s:i}", "earliest_events", extremities(j, pid),
					 "latest_events", gids, "limit", GME_LIMIT, "min_depth", 0);
		if (path)
			fetch(j, F_MISSING, pid, NULL, "POST", path, body);
		free(path);
		json_decref(body);
	}
	json_decref(gaps);
	if (j->pending > 0)
		return; /* fetched() continues */
	size_t k;
	json_t *it;
	json_array_foreach(j->items, k, it)
	{
		if (json_integer_value(json_object_get(it, "state")) == IT_PENDING) {
			job_run(j); /* a fetch could not be started: decide now */
			return;
		}
	}
	job_finish(j);
}

int fed_pdu_process(struct federation *fed, struct http_worker *w, const char *origin, json_t *pdus, fed_pdu_done_fn cb,
		    void *arg)
{
	struct txn_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->fed = fed;
	j->w = w;
	snprintf(j->origin, sizeof(j->origin), "%s", origin);
	j->items = json_array();
	j->results = json_object();
	j->tried = json_object();
	j->state_tried = json_object();
	j->auth_tried = json_object();
	j->state_for = json_object();
	j->cb = cb;
	j->arg = arg;
	json_t *versions = room_versions(j, pdus);
	json_t *denied = room_acl_denied_rooms(&w->db, versions, origin);
	size_t i;
	json_t *p;
	json_array_foreach(pdus, i, p)
	{
		if (!json_is_object(p))
			continue;
		add_item(j, p, false, false, versions);
		json_t *it = json_array_get(j->items, json_array_size(j->items) - 1);
		if (json_integer_value(json_object_get(it, "state")) != IT_DONE &&
		    json_object_get(denied, json_string_value(json_object_get(p, "room_id"))))
			result(j, it, "the room's server ACL denies the origin");
	}
	json_decref(denied);
	json_decref(versions);
	verify_then_run(j);
	return 0;
}
