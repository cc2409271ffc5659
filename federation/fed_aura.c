/* fed_aura.c - outbound queries for client handlers: remote profiles and
 * AuraIDs hosted on other servers (fan-out to known peers, attestation
 * verified with the answering server's key, positive and negative cache). */
#include <ctype.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fed_internal.h"
#include "log.h"
#include "sign.h"

#define AURA_CACHE_MAX 1024
#define AURA_TTL_MS (5 * 60 * 1000)
#define AURA_NEG_TTL_MS (30 * 1000)
#define AURA_FANOUT 8
#define AURA_TIMEOUT_MS 5000

struct aura_entry {
	char handle[48]; /* lower case */
	char *record;    /* JSON text; NULL: negative entry */
	int status;
	int64_t expires_ms;
};

struct fed_aura_cache {
	pthread_mutex_t lock;
	struct aura_entry e[AURA_CACHE_MAX];
	int n;
};

struct fed_aura_cache *fed_aura_new(void)
{
	struct fed_aura_cache *c = calloc(1, sizeof(*c));
	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void fed_aura_free(struct fed_aura_cache *c)
{
	if (!c)
		return;
	for (int i = 0; i < c->n; i++)
		free(c->e[i].record);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static void lower_copy(char *dst, size_t len, const char *src)
{
	size_t i = 0;
	for (; src[i] && i + 1 < len; i++)
		dst[i] = (char)tolower((unsigned char)src[i]);
	dst[i] = '\0';
}

/* 1 hit (status/record filled; record malloc'd or NULL), 0 miss. */
static int cache_get(struct fed_aura_cache *c, const char *handle, int *status, char **record)
{
	char key[48];
	lower_copy(key, sizeof(key), handle);
	int hit = 0;
	int64_t now = http_now_ms();
	pthread_mutex_lock(&c->lock);
	for (int i = 0; i < c->n; i++) {
		if (strcmp(c->e[i].handle, key) != 0)
			continue;
		if (c->e[i].expires_ms > now) {
			*status = c->e[i].status;
			*record = c->e[i].record ? strdup(c->e[i].record) : NULL;
			hit = 1;
		}
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return hit;
}

static void cache_put(struct fed_aura_cache *c, const char *handle, int status, const char *record, int64_t ttl_ms)
{
	char key[48];
	lower_copy(key, sizeof(key), handle);
	int64_t now = http_now_ms();
	pthread_mutex_lock(&c->lock);
	struct aura_entry *e = NULL;
	for (int i = 0; i < c->n && !e; i++)
		if (strcmp(c->e[i].handle, key) == 0)
			e = &c->e[i];
	if (!e && c->n < AURA_CACHE_MAX)
		e = &c->e[c->n++];
	if (!e) {
		e = &c->e[0];
		for (int i = 1; i < c->n; i++)
			if (c->e[i].expires_ms < e->expires_ms)
				e = &c->e[i];
		free(e->record);
		e->record = NULL;
	} else if (e->handle[0]) {
		free(e->record);
		e->record = NULL;
	}
	snprintf(e->handle, sizeof(e->handle), "%s", key);
	e->record = record ? strdup(record) : NULL;
	e->status = status;
	e->expires_ms = now + ttl_ms;
	pthread_mutex_unlock(&c->lock);
}

/* ---- delivery to the caller's loop ---- */

struct delivery {
	federation_json_cb cb;
	void *arg;
	int status;
	json_t *body;
	struct al_error err;
};

static void deliver_run(void *arg)
{
	struct delivery *d = arg;
	d->cb(d->arg, d->status, d->body, &d->err);
	json_decref(d->body);
	free(d);
}

/* Takes body. */
static void deliver(struct federation *fed, struct event_base *base, federation_json_cb cb, void *arg, int status,
		    json_t *body, const char *errcode, const char *msg)
{
	struct delivery *d = calloc(1, sizeof(*d));
	if (!d) {
		json_decref(body);
		return;
	}
	d->cb = cb;
	d->arg = arg;
	d->status = status;
	d->body = body;
	if (errcode)
		al_error_set(&d->err, status ? status : 502, errcode, "%s", msg ? msg : "");
	if (fed_client_defer(fed->fc, base, deliver_run, d) < 0) {
		log_error("fed_aura", "cannot deliver a result");
		json_decref(body);
		free(d);
	}
}

/* ---- AuraID resolve ----
 *
 * Every step after federation_resolve_aura_id runs on the federation
 * thread. Peers are asked in rank order (0 whitelisted, 1 trusted or
 * verified, 2 others; fed_servers_pick) and several may answer with
 * verified attestations for the same handle, each naming a user of its own
 * domain. The answer of the best-ranked peer wins: a verified answer is
 * accepted only once no better-ranked peer is still outstanding, and at the
 * latest AURA_TIMEOUT_MS after the start (then the best answer so far). */

#define AURA_RANKS 3

struct resolve {
	struct federation *fed;
	char handle[48];
	struct event_base *base; /* the caller's */
	federation_json_cb cb;
	void *arg;
	int npeers;
	char (*peers)[256];
	int ranks[AURA_FANOUT];
	int refs;                /* peers in flight + timer + start */
	int pending[AURA_RANKS]; /* peers whose outcome is still to come */
	struct event *deadline;
	json_t *best; /* the best verified record so far */
	char best_dest[256];
	int best_rank;
	bool starting;
	bool done;
	bool forbidden;
	bool unreachable;
};

struct peer {
	struct resolve *r;
	char dest[256];
	int rank;
	json_t *record;
};

static void resolve_unref(struct resolve *r)
{
	if (--r->refs > 0)
		return;
	json_decref(r->best);
	free(r->peers);
	free(r);
}

static void deadline_cancel(struct resolve *r)
{
	if (!r->deadline)
		return;
	event_free(r->deadline);
	r->deadline = NULL;
	resolve_unref(r);
}

static void accept_best(struct resolve *r)
{
	r->done = true;
	json_object_set_new(r->best, "server", json_string(r->best_dest));
	char *text = json_dumps(r->best, JSON_COMPACT);
	if (text) {
		cache_put(r->fed->aura, r->handle, 200, text, AURA_TTL_MS);
		free(text);
	}
	deliver(r->fed, r->base, r->cb, r->arg, 200, json_incref(r->best), NULL, NULL);
}

/* Decide when the outcome can no longer change (or the deadline passed). */
static void resolve_decide(struct resolve *r, bool deadline_passed)
{
	if (r->done || r->starting)
		return;
	int better = 0, total = 0;
	for (int i = 0; i < AURA_RANKS; i++) {
		total += r->pending[i];
		if (r->best && i < r->best_rank)
			better += r->pending[i];
	}
	if (r->best && (better == 0 || deadline_passed)) {
		accept_best(r);
	} else if (total == 0) {
		r->done = true;
		if (r->forbidden) {
			deliver(r->fed, r->base, r->cb, r->arg, 403, NULL, "M_FORBIDDEN",
				"The owner's server refused to share this AuraID");
		} else {
			if (!r->unreachable)
				cache_put(r->fed->aura, r->handle, 404, NULL, AURA_NEG_TTL_MS);
			deliver(r->fed, r->base, r->cb, r->arg, 404, NULL, "M_NOT_FOUND", "Unknown AuraID");
		}
	}
	if (r->done)
		deadline_cancel(r);
}

static void deadline_fired(evutil_socket_t fd, short what, void *arg)
{
	struct resolve *r = arg;
	(void)fd;
	(void)what;
	event_free(r->deadline);
	r->deadline = NULL;
	resolve_decide(r, true);
	resolve_unref(r);
}

int fed_aura_attestation_check(const char *dest, const char *handle, const json_t *rec, int64_t now_ms, int64_t skew_ms)
{
	json_t *att = json_object_get(rec, "attestation");
	const char *server = json_string_value(json_object_get(att, "server"));
	const char *aid = json_string_value(json_object_get(att, "aura_id"));
	const char *uid = json_string_value(json_object_get(att, "user_id"));
	json_t *vu = json_object_get(att, "valid_until_ts");
	if (!dest || !handle || !server || !aid || !uid || !json_is_integer(vu) || strcasecmp(server, dest) != 0 ||
	    strcasecmp(aid, handle) != 0 ||
	    !fed_keys_times_check(json_integer_value(json_object_get(att, "issued_ts")), json_integer_value(vu), now_ms,
				  skew_ms))
		return 0;
	/* The user must be one of the answering server's own: the part after
	 * the first ':' (localparts hold none) is its server name. */
	const char *colon = strchr(uid, ':');
	if (uid[0] != '@' || !colon || colon == uid + 1 || strcasecmp(colon + 1, dest) != 0)
		return 0;
	/* The record's visible fields must match the attestation. */
	const char *ruid = json_string_value(json_object_get(rec, "user_id"));
	const char *raid = json_string_value(json_object_get(rec, "aura_id"));
	if (!ruid || strcmp(ruid, uid) != 0 || (raid && strcasecmp(raid, aid) != 0))
		return 0;
	return 1;
}

/* 1 verified, 0 bad, -1 key unknown (fetch needed). */
static int check_record(struct federation *fed, const char *dest, const char *handle, json_t *rec)
{
	if (!fed_aura_attestation_check(dest, handle, rec, http_now_ms(), fed_clock_skew_ms(fed)))
		return 0;
	json_t *att = json_object_get(rec, "attestation");
	json_t *sigs = json_object_get(json_object_get(att, "signatures"), dest);
	const char *kid;
	json_t *v;
	int rc = 0;
	json_object_foreach(sigs, kid, v)
	{
		unsigned char pk[32];
		enum fed_key_status st = fed_keys_lookup_signed(
			fed, dest, kid, json_integer_value(json_object_get(att, "issued_ts")), pk);
		if (st == FED_KEY_OK) {
			if (sign_verify_json(att, dest, kid, pk, NULL) == 0)
				return 1;
			return 0;
		}
		rc = -1;
	}
	return rc;
}

/* The peer's outcome is known: a verified record (ok) or nothing. */
static void peer_verified(struct peer *p, bool ok)
{
	struct resolve *r = p->r;
	r->pending[p->rank]--;
	if (!ok && p->record)
		log_warn("fed_aura", "attestation refused aura_id=%s server=%s", r->handle, p->dest);
	if (ok && r->best) {
		const char *mine = json_string_value(json_object_get(p->record, "user_id"));
		const char *kept = json_string_value(json_object_get(r->best, "user_id"));
		bool better = p->rank < r->best_rank && !r->done;
		log_warn("fed_aura",
			 "conflicting answers aura_id=%s kept=%s rank=%d user_id=%s"
			 " dropped=%s rank=%d user_id=%s",
			 r->handle, better ? p->dest : r->best_dest, better ? p->rank : r->best_rank,
			 better ? mine : kept, better ? r->best_dest : p->dest, better ? r->best_rank : p->rank,
			 better ? kept : mine);
		ok = better;
	}
	if (ok && !r->done) {
		json_decref(r->best);
		r->best = json_incref(p->record);
		snprintf(r->best_dest, sizeof(r->best_dest), "%s", p->dest);
		r->best_rank = p->rank;
	}
	json_decref(p->record);
	free(p);
	resolve_decide(r, false);
	resolve_unref(r);
}

static void peer_keys_fetched(void *arg, bool ok)
{
	struct peer *p = arg;
	(void)ok;
	peer_verified(p, check_record(p->r->fed, p->dest, p->r->handle, p->record) == 1);
}

static void peer_done(const struct fed_response *resp, void *arg)
{
	struct peer *p = arg;
	struct resolve *r = p->r;
	if (resp->status == 403)
		r->forbidden = true;
	if (resp->status == 0 || resp->status >= 500)
		r->unreachable = true;
	/* A better-ranked answer already won: nothing to verify. */
	if (resp->status != 200 || !json_is_object(resp->body) || (r->done && r->best)) {
		peer_verified(p, false);
		return;
	}
	p->record = json_deep_copy(resp->body);
	int rc = check_record(r->fed, p->dest, r->handle, p->record);
	if (rc >= 0) {
		peer_verified(p, rc == 1);
		return;
	}
	if (fed_keys_fetch(r->fed, p->dest, fed_client_base(r->fed->fc), peer_keys_fetched, p) < 0)
		peer_verified(p, false);
}

/* On the federation thread: ask every picked peer, arm the deadline. */
static void resolve_start(void *arg)
{
	struct resolve *r = arg;
	struct federation *fed = r->fed;
	char *enc = evhttp_encode_uri(r->handle);
	char path[256];
	snprintf(path, sizeof(path), "/_matrix/federation/v1/query/org.auralink.aura_id?aura_id=%s", enc ? enc : "");
	free(enc);
	r->refs = 1;
	r->starting = true;
	for (int i = 0; i < r->npeers; i++) {
		struct peer *p = calloc(1, sizeof(*p));
		if (!p)
			break;
		p->r = r;
		p->rank = r->ranks[i] >= 0 && r->ranks[i] < AURA_RANKS ? r->ranks[i] : AURA_RANKS - 1;
		snprintf(p->dest, sizeof(p->dest), "%s", r->peers[i]);
		struct fed_request rq = {.method = "GET",
					 .destination = p->dest,
					 .path = path,
					 .sign = true,
					 .timeout_ms = AURA_TIMEOUT_MS};
		if (fed_client_submit(fed->fc, &rq, fed_client_base(fed->fc), peer_done, p) < 0) {
			free(p);
			continue;
		}
		r->refs++;
		r->pending[p->rank]++;
	}
	r->deadline = evtimer_new(fed_client_base(fed->fc), deadline_fired, r);
	if (r->deadline) {
		struct timeval tv = {AURA_TIMEOUT_MS / 1000, (AURA_TIMEOUT_MS % 1000) * 1000};
		if (evtimer_add(r->deadline, &tv) == 0) {
			r->refs++;
		} else {
			event_free(r->deadline);
			r->deadline = NULL;
		}
	}
	r->starting = false;
	resolve_decide(r, false);
	resolve_unref(r);
}

int federation_resolve_aura_id(struct app *app, const char *aura_id, struct event_base *base, federation_json_cb cb,
			       void *arg)
{
	struct federation *fed = fed_of(app);
	if (!fed || !aura_id || strlen(aura_id) > 40)
		return -1;
	int status = 0;
	char *rec = NULL;
	if (cache_get(fed->aura, aura_id, &status, &rec)) {
		json_t *body = rec ? json_loads(rec, 0, NULL) : NULL;
		free(rec);
		deliver(fed, base, cb, arg, status, body, status == 200 ? NULL : "M_NOT_FOUND", "Unknown AuraID");
		return 0;
	}
	struct resolve *r = calloc(1, sizeof(*r));
	char(*peers)[256] = calloc(AURA_FANOUT, 256);
	if (!r || !peers) {
		free(r);
		free(peers);
		return -1;
	}
	r->fed = fed;
	snprintf(r->handle, sizeof(r->handle), "%s", aura_id);
	r->base = base;
	r->cb = cb;
	r->arg = arg;
	r->peers = peers;
	r->npeers = fed_servers_pick(fed->servers, peers, AURA_FANOUT, false, r->ranks);
	if (fed_client_defer(fed->fc, fed_client_base(fed->fc), resolve_start, r) < 0) {
		free(peers);
		free(r);
		return -1;
	}
	return 0;
}

/* ---- remote profile ---- */

struct profile_q {
	federation_json_cb cb;
	void *arg;
};

static void profile_done(const struct fed_response *resp, void *arg)
{
	struct profile_q *q = arg;
	q->cb(q->arg, resp->status, resp->body, &resp->err);
	free(q);
}

int federation_query_profile(struct app *app, const char *user_id, const char *field, struct event_base *base,
			     federation_json_cb cb, void *arg)
{
	struct federation *fed = fed_of(app);
	const char *colon = user_id ? strchr(user_id, ':') : NULL;
	if (!fed || !colon || strlen(user_id) > 255)
		return -1;
	char *enc = evhttp_encode_uri(user_id);
	if (!enc)
		return -1;
	char path[1024];
	snprintf(path, sizeof(path), "/_matrix/federation/v1/query/profile?user_id=%s%s%s", enc, field ? "&field=" : "",
		 field ? field : "");
	free(enc);
	struct profile_q *q = malloc(sizeof(*q));
	if (!q)
		return -1;
	q->cb = cb;
	q->arg = arg;
	struct fed_request rq = {
		.method = "GET", .destination = colon + 1, .path = path, .sign = true, .timeout_ms = 10000};
	if (fed_client_submit(fed->fc, &rq, base, profile_done, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}
