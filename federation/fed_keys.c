#include "fed_keys.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "b64.h"
#include "cjson.h"
#include "fed_internal.h"
#include "log.h"
#include "sign.h"

#define NBUCKETS 1024
#define MAX_NOTARIES 2

struct fk_server {
	struct fed_key_doc doc;
	char *text; /* canonical JSON of the document */
	size_t text_len;
	int64_t last_refetch_ms; /* last fetch while this document was current */
	struct fk_server *next;
};

/* Someone waiting for a fetch in flight. */
struct fk_waiter {
	struct event_base *base;
	fed_keys_cb cb;
	void *arg;
	struct fk_waiter *next;
};

/* A fetch in flight: one per (server, direct_only); later callers join. */
struct fk_pending {
	char server[256];
	bool direct_only;
	struct fk_waiter *waiters;
	struct fk_pending *next;
};

struct fed_keys {
	pthread_rwlock_t lock;
	struct fk_server *buckets[NBUCKETS];
	int count;
	atomic_long fetches;
	atomic_long coalesced, suppressed;
	pthread_mutex_t plock; /* pending */
	struct fk_pending *pending;
	int npending;
};

static unsigned bucket_of(const char *name)
{
	unsigned h = 5381;
	for (const char *p = name; *p; p++) {
		char c = *p;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		h = h * 33 + (unsigned char)c;
	}
	return h % NBUCKETS;
}

struct fed_keys *fed_keys_new(void)
{
	struct fed_keys *ks = calloc(1, sizeof(*ks));
	if (!ks)
		return NULL;
	pthread_rwlock_init(&ks->lock, NULL);
	pthread_mutex_init(&ks->plock, NULL);
	atomic_init(&ks->fetches, 0);
	atomic_init(&ks->coalesced, 0);
	atomic_init(&ks->suppressed, 0);
	return ks;
}

void fed_keys_free(struct fed_keys *ks)
{
	if (!ks)
		return;
	for (int i = 0; i < NBUCKETS; i++) {
		struct fk_server *s = ks->buckets[i];
		while (s) {
			struct fk_server *n = s->next;
			free(s->text);
			free(s);
			s = n;
		}
	}
	/* Fetches still pending lost their federation thread: drop them. */
	while (ks->pending) {
		struct fk_pending *p = ks->pending;
		ks->pending = p->next;
		while (p->waiters) {
			struct fk_waiter *w = p->waiters;
			p->waiters = w->next;
			free(w);
		}
		free(p);
	}
	pthread_mutex_destroy(&ks->plock);
	pthread_rwlock_destroy(&ks->lock);
	free(ks);
}

long fed_keys_fetch_count(struct fed_keys *ks)
{
	return atomic_load(&ks->fetches);
}

long fed_keys_coalesced_count(struct fed_keys *ks)
{
	return atomic_load(&ks->coalesced);
}

long fed_keys_suppressed_count(struct fed_keys *ks)
{
	return atomic_load(&ks->suppressed);
}

/* a <= b + s for s >= 0, without overflow (b comes from remote JSON). */
static bool le_plus(int64_t a, int64_t b, int64_t s)
{
	if (s < 0)
		s = 0;
	if (b > INT64_MAX - s)
		return true;
	return a <= b + s;
}

static struct fk_server *find_locked(struct fed_keys *ks, const char *server)
{
	for (struct fk_server *s = ks->buckets[bucket_of(server)]; s; s = s->next)
		if (strcasecmp(s->doc.server_name, server) == 0)
			return s;
	return NULL;
}

enum fed_key_status fed_keys_lookup(struct fed_keys *ks, const char *server, const char *key_id, int64_t at_ms,
				    unsigned char pk[32])
{
	return fed_keys_lookup_skew(ks, server, key_id, at_ms, 0, pk);
}

enum fed_key_status fed_keys_lookup_skew(struct fed_keys *ks, const char *server, const char *key_id, int64_t at_ms,
					 int64_t skew_ms, unsigned char pk[32])
{
	enum fed_key_status st = FED_KEY_UNKNOWN;
	pthread_rwlock_rdlock(&ks->lock);
	struct fk_server *s = find_locked(ks, server);
	for (int i = 0; s && i < s->doc.nkeys; i++) {
		const struct fed_key *k = &s->doc.keys[i];
		if (strcmp(k->key_id, key_id) != 0)
			continue;
		bool ok = k->expired_ts ? at_ms < k->expired_ts : le_plus(at_ms, k->valid_until_ts, skew_ms);
		if (ok) {
			memcpy(pk, k->pk, 32);
			st = FED_KEY_OK;
		} else {
			st = FED_KEY_EXPIRED;
		}
		break;
	}
	pthread_rwlock_unlock(&ks->lock);
	return st;
}

int64_t fed_clock_skew_ms(const struct federation *fed)
{
	return fed->app->cfg.fed_clock_skew_ms;
}

enum fed_key_status fed_keys_lookup_signed(struct federation *fed, const char *server, const char *key_id,
					   int64_t signed_ts, unsigned char pk[32])
{
	return fed_keys_lookup_skew(fed->keys, server, key_id, signed_ts, fed_clock_skew_ms(fed), pk);
}

bool fed_keys_times_check(int64_t issued_ts, int64_t valid_until_ts, int64_t now_ms, int64_t skew_ms)
{
	return issued_ts <= valid_until_ts && le_plus(issued_ts, now_ms, skew_ms) &&
	       le_plus(now_ms, valid_until_ts, skew_ms);
}

bool fed_keys_times_ok(const struct federation *fed, const json_t *obj)
{
	json_t *is = json_object_get(obj, "issued_ts"), *vu = json_object_get(obj, "valid_until_ts");
	if (!json_is_integer(is) || !json_is_integer(vu))
		return false;
	return fed_keys_times_check(json_integer_value(is), json_integer_value(vu), http_now_ms(),
				    fed_clock_skew_ms(fed));
}

char *fed_keys_document(struct fed_keys *ks, const char *server, int64_t *valid_until)
{
	char *out = NULL;
	pthread_rwlock_rdlock(&ks->lock);
	struct fk_server *s = find_locked(ks, server);
	if (s) {
		out = strndup(s->text, s->text_len);
		*valid_until = s->doc.valid_until_ts;
	}
	pthread_rwlock_unlock(&ks->lock);
	return out;
}

static int parse_key(const char *key_id, const json_t *v, struct fed_key *out, struct al_error *err)
{
	const char *b = json_string_value(json_object_get(v, "key"));
	size_t n = 0;
	if (strncmp(key_id, "ed25519:", 8) != 0 || strlen(key_id) >= sizeof(out->key_id) || !key_id[8])
		return -2; /* other algorithms are skipped */
	if (!b || b64_decode(b, strlen(b), out->pk, 32, &n) < 0 || n != 32)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key %s is not 32 bytes of base64", key_id);
	snprintf(out->key_id, sizeof(out->key_id), "%s", key_id);
	return 0;
}

int fed_keys_parse_document(const json_t *doc, const char *expect_server, struct fed_key_doc *out, struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(doc))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document is not an object");
	const char *name = json_string_value(json_object_get(doc, "server_name"));
	if (!name || strlen(name) >= sizeof(out->server_name))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document has no server_name");
	if (expect_server && strcasecmp(name, expect_server) != 0)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document is for %s, not %s", name, expect_server);
	snprintf(out->server_name, sizeof(out->server_name), "%s", name);
	json_t *vu = json_object_get(doc, "valid_until_ts");
	if (!json_is_integer(vu))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document has no valid_until_ts");
	out->valid_until_ts = json_integer_value(vu);
	json_t *vk = json_object_get(doc, "verify_keys");
	json_t *ok = json_object_get(doc, "old_verify_keys");
	if (!json_is_object(vk) || json_object_size(vk) == 0)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document has no verify_keys");
	if (ok && !json_is_object(ok))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "old_verify_keys is not an object");
	if (json_object_size(vk) + (ok ? json_object_size(ok) : 0) > FED_KEYS_MAX_PER_SERVER)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "too many keys in the key document");
	const char *kid;
	json_t *v;
	json_object_foreach(vk, kid, v)
	{
		struct fed_key *k = &out->keys[out->nkeys];
		int rc = parse_key(kid, v, k, err);
		if (rc == -2)
			continue;
		if (rc < 0)
			return -1;
		k->valid_until_ts = out->valid_until_ts;
		/* Every current key must have signed the document. */
		struct al_error e = {0};
		if (sign_verify_json(doc, name, kid, k->pk, &e) < 0)
			return al_error_set(err, 401, "M_UNAUTHORIZED",
					    "key document of %s is not signed by its key %s", name, kid);
		out->nkeys++;
	}
	if (out->nkeys == 0)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document has no ed25519 key");
	json_object_foreach(ok, kid, v)
	{
		struct fed_key *k = &out->keys[out->nkeys];
		int rc = parse_key(kid, v, k, err);
		if (rc == -2)
			continue;
		if (rc < 0)
			return -1;
		json_t *ex = json_object_get(v, "expired_ts");
		if (!json_is_integer(ex) || json_integer_value(ex) <= 0)
			return al_error_set(err, 401, "M_UNAUTHORIZED", "old key %s has no expired_ts", kid);
		k->expired_ts = json_integer_value(ex);
		out->nkeys++;
	}
	return 0;
}

static const struct fed_key *doc_key(const struct fed_key_doc *d, const char *key_id)
{
	for (int i = 0; i < d->nkeys; i++)
		if (strcmp(d->keys[i].key_id, key_id) == 0)
			return &d->keys[i];
	return NULL;
}

/* The spec: use the lesser of valid_until_ts and 7 days after the fetch. */
static void cap_validity(struct fed_key_doc *d, int64_t fetched_ms)
{
	int64_t cap = fetched_ms + FED_KEYS_MAX_VALIDITY_MS;
	if (d->valid_until_ts <= cap)
		return;
	d->valid_until_ts = cap;
	for (int i = 0; i < d->nkeys; i++)
		if (!d->keys[i].expired_ts)
			d->keys[i].valid_until_ts = cap;
}

/* Put a checked document in memory. Takes text. */
static int memory_put(struct fed_keys *ks, const struct fed_key_doc *d, char *text, size_t len)
{
	pthread_rwlock_wrlock(&ks->lock);
	struct fk_server *s = find_locked(ks, d->server_name);
	if (!s) {
		if (ks->count >= FED_KEYS_MAX_SERVERS || !(s = calloc(1, sizeof(*s)))) {
			pthread_rwlock_unlock(&ks->lock);
			free(text);
			return -1;
		}
		unsigned b = bucket_of(d->server_name);
		s->next = ks->buckets[b];
		ks->buckets[b] = s;
		ks->count++;
	}
	s->doc = *d;
	free(s->text);
	s->text = text;
	s->text_len = len;
	pthread_rwlock_unlock(&ks->lock);
	return 0;
}

int fed_keys_load(struct fed_keys *ks, struct db *db, struct al_error *err)
{
	PGresult *r = db_exec(db, err,
			      "SELECT server_name, document::text, (extract(epoch from fetched_at) * 1000)::bigint "
			      "FROM federation_key_documents",
			      0, NULL);
	if (!r)
		return -1;
	int n = PQntuples(r), loaded = 0;
	for (int i = 0; i < n; i++) {
		const char *text = PQgetvalue(r, i, 1);
		json_t *doc = cjson_parse_object(text, strlen(text), NULL, NULL);
		struct fed_key_doc d;
		size_t len = 0;
		char *canon = doc ? cjson_encode(doc, &len, NULL) : NULL;
		if (canon && fed_keys_parse_document(doc, PQgetvalue(r, i, 0), &d, NULL) == 0) {
			cap_validity(&d, strtoll(PQgetvalue(r, i, 2), NULL, 10));
			if (memory_put(ks, &d, canon, len) == 0)
				loaded++;
		} else {
			free(canon);
		}
		json_decref(doc);
	}
	PQclear(r);
	log_info("fed_keys", "loaded key documents count=%d", loaded);
	return 0;
}

int fed_keys_memory_store(struct fed_keys *ks, const json_t *doc, const char *expect_server, int64_t fetched_ms,
			  struct al_error *err)
{
	struct fed_key_doc d;
	size_t len = 0;
	if (fed_keys_parse_document(doc, expect_server, &d, err) < 0)
		return -1;
	char *text = cjson_encode(doc, &len, err);
	if (!text)
		return -1;
	cap_validity(&d, fetched_ms);
	if (memory_put(ks, &d, text, len) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "key store full");
	return 0;
}

int fed_keys_store(struct federation *fed, struct db *db, const json_t *doc, const char *expect_server,
		   struct al_error *err)
{
	struct fed_keys *ks = fed->keys;
	struct fed_key_doc d, prev;
	bool had_prev = false;
	char *text = NULL;
	size_t len = 0;
	json_t *changed = NULL, *vk_json = NULL;
	if (fed_keys_parse_document(doc, expect_server, &d, err) < 0)
		return -1;
	text = cjson_encode(doc, &len, err);
	if (!text)
		return -1;
	if (len > FED_KEYS_MAX_DOCUMENT) {
		free(text);
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document too large");
	}
	pthread_rwlock_rdlock(&ks->lock);
	struct fk_server *s = find_locked(ks, d.server_name);
	if (s) {
		prev = s->doc;
		had_prev = true;
	}
	pthread_rwlock_unlock(&ks->lock);
	/* Keys that vanished without rotation (not in old_verify_keys) or that
	 * changed under the same id. */
	changed = json_array();
	bool new_ids = !had_prev;
	for (int i = 0; had_prev && i < prev.nkeys; i++) {
		const struct fed_key *k = doc_key(&d, prev.keys[i].key_id);
		if (!k || memcmp(k->pk, prev.keys[i].pk, 32) != 0)
			json_array_append_new(changed, json_string(prev.keys[i].key_id));
	}
	for (int i = 0; had_prev && i < d.nkeys; i++)
		if (!doc_key(&prev, d.keys[i].key_id))
			new_ids = true;
	vk_json = json_object_get(doc, "verify_keys");
	char vu[24];
	snprintf(vu, sizeof(vu), "%lld", (long long)d.valid_until_ts);
	char *vk_text = cjson_encode(vk_json, NULL, err);
	if (!vk_text)
		goto fail;
	const char *p[4] = {d.server_name, text, vu, vk_text};
	if (db_begin(db, err) < 0) {
		free(vk_text);
		goto fail;
	}
	PGresult *r = db_exec(
		db, err,
		"WITH doc AS (INSERT INTO federation_key_documents (server_name, document, valid_until_ts, fetched_at) "
		"VALUES ($1, $2::jsonb, $3::bigint, now()) ON CONFLICT (server_name) DO UPDATE SET "
		"document = EXCLUDED.document, valid_until_ts = EXCLUDED.valid_until_ts, fetched_at = now() "
		"RETURNING 1) "
		"INSERT INTO federation_servers (domain, verify_keys, last_seen_at) VALUES ($1, $4::jsonb, now()) "
		"ON CONFLICT ((lower(domain))) DO UPDATE SET verify_keys = EXCLUDED.verify_keys",
		4, p);
	free(vk_text);
	if (!r)
		goto rollback;
	PQclear(r);
	if (json_array_size(changed) > 0) {
		json_t *det = json_pack("{s:O}", "key_ids", changed);
		int rc = audit_append(db, "keys", "key_changed_without_rotation", NULL, d.server_name, d.server_name,
				      det, err);
		json_decref(det);
		if (rc < 0)
			goto rollback;
		log_warn("fed_keys", "server key changed without rotation server=%s", d.server_name);
	} else if (new_ids) {
		json_t *det = json_pack("{s:I}", "valid_until_ts", (json_int_t)d.valid_until_ts);
		int rc = audit_append(db, "keys", had_prev ? "keys_rotated" : "keys_fetched", NULL, d.server_name,
				      d.server_name, det, err);
		json_decref(det);
		if (rc < 0)
			goto rollback;
	}
	if (db_commit(db, err) < 0)
		goto rollback;
	json_decref(changed);
	cap_validity(&d, http_now_ms());
	if (memory_put(ks, &d, text, len) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "key store full");
	return 0;
rollback:
	db_rollback(db);
fail:
	json_decref(changed);
	free(text);
	return -1;
}

/* ---- asynchronous fetch ----
 *
 * A fetch is one context on the federation thread: the direct request,
 * then (unless direct_only) the notaries in turn. Callers that ask for a
 * server whose fetch is in flight join its waiters. Direct-only fetches
 * (a notary's own keys, needed to check its answer) are separate entries
 * that wait on nothing but their own request, so a fetch never waits on a
 * fetch that waits on it. */

#define MAX_PENDING 4096
#define MAX_NOTARY_DOCS 16

struct fetch_ctx {
	struct federation *fed;
	char server[256];
	bool direct_only;
	bool ok;
	char notaries[MAX_NOTARIES][256];
	int nnotaries, next_notary;
	json_t *held;          /* a notary's answer kept while its key is fetched */
	bool notary_key_tried; /* for the current notary */
};

struct fk_delivery {
	fed_keys_cb cb;
	void *arg;
	bool ok;
};

static void delivery_run(void *arg)
{
	struct fk_delivery *d = arg;
	d->cb(d->arg, d->ok);
	free(d);
}

/* Hand ok to every waiter (each on its own loop) and free them. */
static void deliver_all(struct federation *fed, struct fk_waiter *w, bool ok, const char *server)
{
	while (w) {
		struct fk_waiter *next = w->next;
		struct fk_delivery *d = malloc(sizeof(*d));
		if (d) {
			d->cb = w->cb;
			d->arg = w->arg;
			d->ok = ok;
		}
		if (!d || fed_client_defer(fed->fc, w->base, delivery_run, d) < 0) {
			log_error("fed_keys", "cannot deliver a key fetch result server=%s", server);
			free(d);
		}
		free(w);
		w = next;
	}
}

/* Remove the pending entry of (server, direct_only); returns its waiters. */
static struct fk_waiter *pending_take(struct fed_keys *ks, const char *server, bool direct_only)
{
	struct fk_waiter *w = NULL;
	pthread_mutex_lock(&ks->plock);
	for (struct fk_pending **pp = &ks->pending; *pp; pp = &(*pp)->next) {
		struct fk_pending *p = *pp;
		if (p->direct_only == direct_only && strcasecmp(p->server, server) == 0) {
			*pp = p->next;
			ks->npending--;
			w = p->waiters;
			free(p);
			break;
		}
	}
	pthread_mutex_unlock(&ks->plock);
	return w;
}

static void fetch_finish(struct fetch_ctx *c)
{
	struct fk_waiter *w = pending_take(c->fed->keys, c->server, c->direct_only);
	deliver_all(c->fed, w, c->ok, c->server);
	json_decref(c->held);
	free(c);
}

static int keys_fetch(struct federation *fed, const char *server, bool direct_only, struct event_base *base,
		      fed_keys_cb cb, void *arg);
static void notary_done(const struct fed_response *resp, void *arg);

static void try_next_notary(struct fetch_ctx *c)
{
	json_decref(c->held);
	c->held = NULL;
	while (c->next_notary < c->nnotaries) {
		const char *notary = c->notaries[c->next_notary++];
		c->notary_key_tried = false;
		char *enc = evhttp_encode_uri(c->server);
		char path[600];
		snprintf(path, sizeof(path), "/_matrix/key/v2/query/%s", enc ? enc : "");
		free(enc);
		struct fed_request rq = {
			.method = "GET", .destination = notary, .path = path, .sign = false, .timeout_ms = 10000};
		atomic_fetch_add(&c->fed->keys->fetches, 1);
		if (fed_client_submit(c->fed->fc, &rq, fed_client_base(c->fed->fc), notary_done, c) == 0)
			return;
	}
	fetch_finish(c);
}

/* Check a notary's answer: 1 a document of c->server verified (notary's
 * signature and the server's own) and stored; 0 none; -1 none, but some
 * carry a signature of the notary under a key we do not hold. */
static int notary_check(struct fetch_ctx *c, const char *notary, json_t *body)
{
	json_t *list = json_object_get(body, "server_keys");
	size_t i;
	json_t *doc;
	bool key_missing = false;
	json_array_foreach(list, i, doc)
	{
		if (i >= MAX_NOTARY_DOCS)
			break;
		/* The notary's own signature must verify with a key we hold. */
		json_t *nsigs = json_object_get(json_object_get(doc, "signatures"), notary);
		const char *kid;
		json_t *v;
		bool notary_ok = false;
		json_object_foreach(nsigs, kid, v)
		{
			unsigned char pk[32];
			enum fed_key_status st = fed_keys_lookup_signed(c->fed, notary, kid, http_now_ms(), pk);
			if (st == FED_KEY_OK && sign_verify_json(doc, notary, kid, pk, NULL) == 0) {
				notary_ok = true;
				break;
			}
			if (st != FED_KEY_OK)
				key_missing = true;
		}
		struct al_error err = {0};
		if (!notary_ok)
			continue;
		if (fed_keys_store(c->fed, fed_client_db(c->fed->fc), doc, c->server, &err) == 0) {
			log_info("fed_keys", "keys fetched through a notary server=%s notary=%s", c->server, notary);
			return 1;
		}
		log_warn("fed_keys", "key document from a notary refused server=%s notary=%s: %s", c->server, notary,
			 err.message);
	}
	return key_missing ? -1 : 0;
}

static void notary_key_done(void *arg, bool ok)
{
	struct fetch_ctx *c = arg;
	const char *notary = c->notaries[c->next_notary - 1];
	if (!ok)
		log_info("fed_keys", "cannot fetch a notary's own keys server=%s notary=%s", c->server, notary);
	if (ok && notary_check(c, notary, c->held) == 1) {
		c->ok = true;
		fetch_finish(c);
		return;
	}
	try_next_notary(c);
}

static void notary_done(const struct fed_response *resp, void *arg)
{
	struct fetch_ctx *c = arg;
	const char *notary = c->notaries[c->next_notary - 1];
	int rc = resp->status == 200 ? notary_check(c, notary, resp->body) : 0;
	if (rc == 1) {
		c->ok = true;
		fetch_finish(c);
		return;
	}
	if (rc < 0 && !c->notary_key_tried) {
		/* We do not hold the notary's key yet: fetch it (directly from
		 * the notary), then check the same answer again. */
		c->notary_key_tried = true;
		c->held = json_deep_copy(resp->body);
		if (c->held && keys_fetch(c->fed, notary, true, fed_client_base(c->fed->fc), notary_key_done, c) == 0)
			return;
	}
	if (resp->status != 200)
		log_info("fed_keys", "notary key query failed server=%s notary=%s status=%d %s", c->server, notary,
			 resp->status, resp->err.message);
	try_next_notary(c);
}

static void direct_done(const struct fed_response *resp, void *arg)
{
	struct fetch_ctx *c = arg;
	struct al_error err = {0};
	if (resp->status == 200 && json_is_object(resp->body)) {
		if (fed_keys_store(c->fed, fed_client_db(c->fed->fc), resp->body, c->server, &err) == 0)
			c->ok = true;
		else
			log_warn("fed_keys", "key document refused server=%s: %s", c->server, err.message);
	} else {
		log_info("fed_keys", "direct key fetch failed server=%s status=%d %s", c->server, resp->status,
			 resp->err.message);
	}
	if (c->ok || c->direct_only) {
		fetch_finish(c);
		return;
	}
	c->nnotaries = fed_servers_pick(c->fed->servers, c->notaries, MAX_NOTARIES, true, NULL);
	/* never ask the server itself */
	for (int i = 0; i < c->nnotaries; i++)
		if (strcasecmp(c->notaries[i], c->server) == 0)
			memcpy(c->notaries[i], c->notaries[--c->nnotaries], 256);
	try_next_notary(c);
}

/* Start the context of a fetch registered as pending (federation thread
 * or any thread: fed_client_submit is thread-safe). */
static void fetch_start(struct fetch_ctx *c)
{
	struct fed_request rq = {.method = "GET",
				 .destination = c->server,
				 .path = "/_matrix/key/v2/server",
				 .sign = false,
				 .timeout_ms = 10000};
	atomic_fetch_add(&c->fed->keys->fetches, 1);
	if (fed_client_submit(c->fed->fc, &rq, fed_client_base(c->fed->fc), direct_done, c) < 0) {
		log_warn("fed_keys", "cannot start a key fetch server=%s", c->server);
		fetch_finish(c); /* every waiter hears ok=false */
	}
}

/* A fetch while we hold a current document of server happens because a
 * key id is unknown (or a notary client wants a later valid_until_ts):
 * at most one per federation.key_refetch_interval_seconds per server, so
 * that requests naming made-up key ids cannot multiply our traffic. */
static bool refetch_allowed(struct federation *fed, const char *server)
{
	struct fed_keys *ks = fed->keys;
	int64_t now = http_now_ms();
	int64_t interval = (int64_t)fed->app->cfg.fed_key_refetch_interval_s * 1000;
	bool ok = true;
	pthread_rwlock_wrlock(&ks->lock);
	struct fk_server *s = find_locked(ks, server);
	if (s && s->doc.valid_until_ts > now) {
		if (s->last_refetch_ms && now - s->last_refetch_ms < interval)
			ok = false;
		else
			s->last_refetch_ms = now;
	}
	pthread_rwlock_unlock(&ks->lock);
	return ok;
}

static int keys_fetch(struct federation *fed, const char *server, bool direct_only, struct event_base *base,
		      fed_keys_cb cb, void *arg)
{
	struct fed_keys *ks = fed->keys;
	if (strlen(server) >= 256 || !server[0])
		return -1;
	struct fk_waiter *w = calloc(1, sizeof(*w));
	if (!w)
		return -1;
	w->base = base;
	w->cb = cb;
	w->arg = arg;
	pthread_mutex_lock(&ks->plock);
	for (struct fk_pending *p = ks->pending; p; p = p->next) {
		if (p->direct_only == direct_only && strcasecmp(p->server, server) == 0) {
			w->next = p->waiters;
			p->waiters = w;
			pthread_mutex_unlock(&ks->plock);
			atomic_fetch_add(&ks->coalesced, 1);
			log_debug("fed_keys", "joined a key fetch in flight server=%s", server);
			return 0;
		}
	}
	if (ks->npending >= MAX_PENDING) {
		pthread_mutex_unlock(&ks->plock);
		free(w);
		return -1;
	}
	if (!refetch_allowed(fed, server)) {
		pthread_mutex_unlock(&ks->plock);
		atomic_fetch_add(&ks->suppressed, 1);
		log_info("fed_keys", "key refetch suppressed server=%s interval_s=%d", server,
			 fed->app->cfg.fed_key_refetch_interval_s);
		deliver_all(fed, w, false, server);
		return 0;
	}
	struct fk_pending *p = calloc(1, sizeof(*p));
	struct fetch_ctx *c = calloc(1, sizeof(*c));
	if (!p || !c) {
		pthread_mutex_unlock(&ks->plock);
		free(p);
		free(c);
		free(w);
		return -1;
	}
	snprintf(p->server, sizeof(p->server), "%s", server);
	p->direct_only = direct_only;
	p->waiters = w;
	p->next = ks->pending;
	ks->pending = p;
	ks->npending++;
	pthread_mutex_unlock(&ks->plock);
	c->fed = fed;
	snprintf(c->server, sizeof(c->server), "%s", server);
	c->direct_only = direct_only;
	fetch_start(c);
	return 0;
}

int fed_keys_fetch(struct federation *fed, const char *server, struct event_base *base, fed_keys_cb cb, void *arg)
{
	return keys_fetch(fed, server, false, base, cb, arg);
}
