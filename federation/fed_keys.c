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
	struct fk_server *next;
};

struct fed_keys {
	pthread_rwlock_t lock;
	struct fk_server *buckets[NBUCKETS];
	int count;
	atomic_long fetches;
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
	atomic_init(&ks->fetches, 0);
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
	pthread_rwlock_destroy(&ks->lock);
	free(ks);
}

long fed_keys_fetch_count(struct fed_keys *ks)
{
	return atomic_load(&ks->fetches);
}

static struct fk_server *find_locked(struct fed_keys *ks, const char *server)
{
	for (struct fk_server *s = ks->buckets[bucket_of(server)]; s; s = s->next)
		if (strcasecmp(s->doc.server_name, server) == 0)
			return s;
	return NULL;
}

enum fed_key_status fed_keys_lookup(struct fed_keys *ks, const char *server, const char *key_id,
				    int64_t at_ms, unsigned char pk[32])
{
	enum fed_key_status st = FED_KEY_UNKNOWN;
	pthread_rwlock_rdlock(&ks->lock);
	struct fk_server *s = find_locked(ks, server);
	for (int i = 0; s && i < s->doc.nkeys; i++) {
		const struct fed_key *k = &s->doc.keys[i];
		if (strcmp(k->key_id, key_id) != 0)
			continue;
		bool ok = k->expired_ts ? at_ms < k->expired_ts : at_ms <= k->valid_until_ts;
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
	if (strncmp(key_id, "ed25519:", 8) != 0 || strlen(key_id) >= sizeof(out->key_id) ||
	    !key_id[8])
		return -2; /* other algorithms are skipped */
	if (!b || b64_decode(b, strlen(b), out->pk, 32, &n) < 0 || n != 32)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key %s is not 32 bytes of base64", key_id);
	snprintf(out->key_id, sizeof(out->key_id), "%s", key_id);
	return 0;
}

int fed_keys_parse_document(const json_t *doc, const char *expect_server, struct fed_key_doc *out,
			    struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	if (!json_is_object(doc))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document is not an object");
	const char *name = json_string_value(json_object_get(doc, "server_name"));
	if (!name || strlen(name) >= sizeof(out->server_name))
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document has no server_name");
	if (expect_server && strcasecmp(name, expect_server) != 0)
		return al_error_set(err, 401, "M_UNAUTHORIZED", "key document is for %s, not %s", name,
				    expect_server);
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
	json_object_foreach(vk, kid, v) {
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
	json_object_foreach(ok, kid, v) {
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
	PGresult *r = db_exec(db, err, "SELECT server_name, document::text FROM federation_key_documents",
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
		if (canon && fed_keys_parse_document(doc, PQgetvalue(r, i, 0), &d, NULL) == 0 &&
		    memory_put(ks, &d, canon, len) == 0)
			loaded++;
		else
			free(canon);
		json_decref(doc);
	}
	PQclear(r);
	log_info("fed_keys", "loaded key documents count=%d", loaded);
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
	PGresult *r = db_exec(db, err,
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
		int rc = audit_append(db, "keys", "key_changed_without_rotation", NULL, d.server_name,
				      d.server_name, det, err);
		json_decref(det);
		if (rc < 0)
			goto rollback;
		log_warn("fed_keys", "server key changed without rotation server=%s", d.server_name);
	} else if (new_ids) {
		json_t *det = json_pack("{s:I}", "valid_until_ts", (json_int_t)d.valid_until_ts);
		int rc = audit_append(db, "keys", had_prev ? "keys_rotated" : "keys_fetched", NULL,
				      d.server_name, d.server_name, det, err);
		json_decref(det);
		if (rc < 0)
			goto rollback;
	}
	if (db_commit(db, err) < 0)
		goto rollback;
	json_decref(changed);
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

/* ---- asynchronous fetch ---- */

struct fetch_ctx {
	struct federation *fed;
	char server[256];
	struct event_base *base;
	fed_keys_cb cb;
	void *arg;
	bool ok;
	char notaries[MAX_NOTARIES][256];
	int nnotaries, next_notary;
};

static void fetch_finish_cb(void *arg)
{
	struct fetch_ctx *c = arg;
	c->cb(c->arg, c->ok);
	free(c);
}

static void fetch_finish(struct fetch_ctx *c)
{
	if (fed_client_defer(c->fed->fc, c->base, fetch_finish_cb, c) < 0) {
		log_error("fed_keys", "cannot deliver a key fetch result server=%s", c->server);
		free(c);
	}
}

static void notary_done(const struct fed_response *resp, void *arg);

static void try_next_notary(struct fetch_ctx *c)
{
	while (c->next_notary < c->nnotaries) {
		const char *notary = c->notaries[c->next_notary++];
		char *enc = evhttp_encode_uri(c->server);
		char path[600];
		snprintf(path, sizeof(path), "/_matrix/key/v2/query/%s", enc ? enc : "");
		free(enc);
		struct fed_request rq = {.method = "GET", .destination = notary, .path = path,
					 .sign = false, .timeout_ms = 10000};
		atomic_fetch_add(&c->fed->keys->fetches, 1);
		if (fed_client_submit(c->fed->fc, &rq, fed_client_base(c->fed->fc), notary_done, c) == 0)
			return;
	}
	fetch_finish(c);
}

static void notary_done(const struct fed_response *resp, void *arg)
{
	struct fetch_ctx *c = arg;
	const char *notary = c->notaries[c->next_notary - 1];
	json_t *list = resp->status == 200 ? json_object_get(resp->body, "server_keys") : NULL;
	size_t i;
	json_t *doc;
	json_array_foreach(list, i, doc) {
		if (i >= 16)
			break;
		/* The notary's own signature must verify with a key we hold. */
		json_t *nsigs = json_object_get(json_object_get(doc, "signatures"), notary);
		const char *kid;
		json_t *v;
		bool notary_ok = false;
		json_object_foreach(nsigs, kid, v) {
			unsigned char pk[32];
			if (fed_keys_lookup(c->fed->keys, notary, kid, http_now_ms(), pk) == FED_KEY_OK &&
			    sign_verify_json(doc, notary, kid, pk, NULL) == 0) {
				notary_ok = true;
				break;
			}
		}
		struct al_error err = {0};
		if (notary_ok &&
		    fed_keys_store(c->fed, fed_client_db(c->fed->fc), doc, c->server, &err) == 0) {
			c->ok = true;
			break;
		}
	}
	if (c->ok)
		fetch_finish(c);
	else
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
		log_info("fed_keys", "direct key fetch failed server=%s status=%d %s", c->server,
			 resp->status, resp->err.message);
	}
	if (c->ok) {
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

int fed_keys_fetch(struct federation *fed, const char *server, struct event_base *base,
		   fed_keys_cb cb, void *arg)
{
	if (strlen(server) >= 256)
		return -1;
	struct fetch_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return -1;
	c->fed = fed;
	snprintf(c->server, sizeof(c->server), "%s", server);
	c->base = base;
	c->cb = cb;
	c->arg = arg;
	struct fed_request rq = {.method = "GET", .destination = server, .path = "/_matrix/key/v2/server",
				 .sign = false, .timeout_ms = 10000};
	atomic_fetch_add(&fed->keys->fetches, 1);
	if (fed_client_submit(fed->fc, &rq, fed_client_base(fed->fc), direct_done, c) < 0) {
		free(c);
		return -1;
	}
	return 0;
}
