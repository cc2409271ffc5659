#include "keys.h"

#include <errno.h>
#include <event2/buffer.h>
#include <fcntl.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "b64.h"
#include "cjson.h"
#include "log.h"

#define MAX_OLD_KEYS 64
#define KEY_LINE_MAX 256

struct old_key {
	char key_id[64];
	unsigned char pk[32];
	int64_t expired_ts;
};

struct keys {
	char server_name[256];
	int64_t validity_ms;
	struct sign_key current;
	struct old_key old[MAX_OLD_KEYS];
	int nold;
	pthread_rwlock_t lock; /* guards the cached document */
	char *doc;
	size_t doc_len;
	int64_t doc_valid_until;
};

static int valid_version(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 32)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') || (v[i] >= '0' && v[i] <= '9') ||
		      v[i] == '_'))
			return 0;
	return 1;
}

static int parse_key_line(const char *line, struct sign_key *key, struct al_error *err)
{
	char alg[16], version[40], seed_b64[128];
	if (sscanf(line, "%15s %39s %127s", alg, version, seed_b64) != 3 || strcmp(alg, "ed25519") != 0 ||
	    !valid_version(version))
		return al_error_set(err, 500, "M_UNKNOWN",
				    "signing key file: expected 'ed25519 <version> <base64 seed>'");
	unsigned char seed[32];
	size_t n = 0;
	if (b64_decode(seed_b64, strlen(seed_b64), seed, sizeof(seed), &n) < 0 || n != sizeof(seed))
		return al_error_set(err, 500, "M_UNKNOWN", "signing key file: seed is not 32 bytes of base64");
	char key_id[64];
	snprintf(key_id, sizeof(key_id), "ed25519:%s", version);
	int rc = sign_key_from_seed(key, key_id, seed);
	sodium_memzero(seed, sizeof(seed));
	if (rc < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "signing key file: bad seed");
	return 0;
}

static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	char *ok = fgets(buf, (int)len, f);
	fclose(f);
	return ok ? 0 : -1;
}

/* Written to a temporary file and renamed, so a crash never leaves half a key. */
static int write_file_atomic(const char *path, const char *text, mode_t mode, struct al_error *err)
{
	char tmp[1100];
	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return al_error_set(err, 500, "M_UNKNOWN", "path too long: %s", path);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot write %s: %s", tmp, strerror(errno));
	size_t len = strlen(text);
	int ok = write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
	ok = (close(fd) == 0) && ok;
	if (!ok || rename(tmp, path) < 0) {
		unlink(tmp);
		return al_error_set(err, 500, "M_UNKNOWN", "cannot write %s: %s", path, strerror(errno));
	}
	return 0;
}

static int write_new_key(const char *path, struct al_error *err)
{
	unsigned char seed[32], rnd[4];
	randombytes_buf(seed, sizeof(seed));
	randombytes_buf(rnd, sizeof(rnd));
	static const char alnum[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
	char version[8] = "a_";
	for (int i = 0; i < 4; i++)
		version[2 + i] = alnum[rnd[i] % (sizeof(alnum) - 1)];
	version[6] = '\0';
	char *seed_b64 = b64_encode(seed, sizeof(seed));
	sodium_memzero(seed, sizeof(seed));
	if (!seed_b64)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	char line[KEY_LINE_MAX];
	snprintf(line, sizeof(line), "ed25519 %s %s\n", version, seed_b64);
	sodium_memzero(seed_b64, strlen(seed_b64));
	free(seed_b64);
	int rc = write_file_atomic(path, line, 0600, err);
	sodium_memzero(line, sizeof(line));
	return rc;
}

int keys_generate_file(const char *path, int *created, struct al_error *err)
{
	*created = 0;
	if (access(path, F_OK) == 0)
		return 0;
	if (write_new_key(path, err) < 0)
		return -1;
	*created = 1;
	return 0;
}

int keys_rotate_file(const char *path, int64_t now_ms, struct al_error *err)
{
	char line[KEY_LINE_MAX];
	struct sign_key cur;
	if (read_line(path, line, sizeof(line)) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot read signing key %s", path);
	int rc = parse_key_line(line, &cur, err);
	sodium_memzero(line, sizeof(line));
	if (rc < 0)
		return -1;
	char *pk = b64_encode(cur.pk, sizeof(cur.pk));
	char oldpath[1100];
	snprintf(oldpath, sizeof(oldpath), "%s.old", path);
	FILE *f = pk ? fopen(oldpath, "a") : NULL;
	int ok = f && fprintf(f, "ed25519 %s %s %lld\n", cur.key_id + strlen("ed25519:"), pk, (long long)now_ms) > 0;
	ok = f && fclose(f) == 0 && ok;
	free(pk);
	sign_key_wipe(&cur);
	if (!ok)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot append to %s", oldpath);
	return write_new_key(path, err);
}

static int load_old_keys(struct keys *k, const char *path, struct al_error *err)
{
	char oldpath[1100];
	snprintf(oldpath, sizeof(oldpath), "%s.old", path);
	FILE *f = fopen(oldpath, "r");
	if (!f)
		return 0;
	char line[KEY_LINE_MAX];
	int rc = 0;
	while (rc == 0 && fgets(line, sizeof(line), f)) {
		char alg[16], version[40], pk_b64[128];
		long long ts;
		struct old_key *o = &k->old[k->nold];
		size_t n = 0;
		if (sscanf(line, "%15s %39s %127s %lld", alg, version, pk_b64, &ts) != 4 ||
		    strcmp(alg, "ed25519") != 0 || !valid_version(version) ||
		    b64_decode(pk_b64, strlen(pk_b64), o->pk, sizeof(o->pk), &n) < 0 || n != 32)
			rc = al_error_set(err, 500, "M_UNKNOWN", "%s: malformed line", oldpath);
		else if (k->nold == MAX_OLD_KEYS)
			rc = al_error_set(err, 500, "M_UNKNOWN", "%s: more than %d old keys", oldpath, MAX_OLD_KEYS);
		else {
			snprintf(o->key_id, sizeof(o->key_id), "ed25519:%s", version);
			o->expired_ts = ts;
			k->nold++;
		}
	}
	fclose(f);
	return rc;
}

struct keys *keys_load(const char *path, const char *server_name, int validity_hours, struct al_error *err)
{
	struct keys *k = calloc(1, sizeof(*k));
	if (!k) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	snprintf(k->server_name, sizeof(k->server_name), "%s", server_name);
	k->validity_ms = (int64_t)validity_hours * 3600 * 1000;
	pthread_rwlock_init(&k->lock, NULL);
	char line[KEY_LINE_MAX];
	if (read_line(path, line, sizeof(line)) < 0) {
		al_error_set(err, 500, "M_UNKNOWN",
			     "signing_key_path: cannot read %s (create it with auralinkd --generate-keys)", path);
		goto fail;
	}
	int rc = parse_key_line(line, &k->current, err);
	sodium_memzero(line, sizeof(line));
	if (rc < 0 || load_old_keys(k, path, err) < 0)
		goto fail;
	return k;
fail:
	keys_free(k);
	return NULL;
}

void keys_free(struct keys *k)
{
	if (!k)
		return;
	sign_key_wipe(&k->current);
	pthread_rwlock_destroy(&k->lock);
	free(k->doc);
	free(k);
}

const struct sign_key *keys_current(const struct keys *k)
{
	return &k->current;
}

const char *keys_server_name(const struct keys *k)
{
	return k->server_name;
}

static json_t *key_object(const unsigned char pk[32])
{
	char *b = b64_encode(pk, 32);
	json_t *o = b ? json_pack("{s:s}", "key", b) : NULL;
	free(b);
	return o;
}

json_t *keys_server_document(struct keys *k, int64_t now_ms)
{
	json_t *verify = json_object();
	json_t *old = json_object();
	json_object_set_new(verify, k->current.key_id, key_object(k->current.pk));
	for (int i = 0; i < k->nold; i++) {
		json_t *o = key_object(k->old[i].pk);
		json_object_set_new(o, "expired_ts", json_integer(k->old[i].expired_ts));
		json_object_set_new(old, k->old[i].key_id, o);
	}
	json_t *doc = json_pack("{s:s, s:o, s:o, s:I}", "server_name", k->server_name, "verify_keys", verify,
				"old_verify_keys", old, "valid_until_ts", (json_int_t)(now_ms + k->validity_ms));
	if (doc && sign_json(doc, k->server_name, &k->current, NULL) < 0) {
		json_decref(doc);
		return NULL;
	}
	return doc;
}

static int document_fresh(const struct keys *k, int64_t now_ms)
{
	return k->doc && k->doc_valid_until - now_ms > k->validity_ms / 2;
}

static int refresh_document(struct keys *k, int64_t now_ms)
{
	json_t *doc = keys_server_document(k, now_ms);
	if (!doc)
		return -1;
	size_t len = 0;
	char *text = cjson_encode(doc, &len, NULL);
	json_decref(doc);
	if (!text)
		return -1;
	free(k->doc);
	k->doc = text;
	k->doc_len = len;
	k->doc_valid_until = now_ms + k->validity_ms;
	return 0;
}

int keys_write_server_document(struct keys *k, int64_t now_ms, struct evbuffer *out)
{
	pthread_rwlock_rdlock(&k->lock);
	if (document_fresh(k, now_ms)) {
		int rc = evbuffer_add(out, k->doc, k->doc_len);
		pthread_rwlock_unlock(&k->lock);
		return rc;
	}
	pthread_rwlock_unlock(&k->lock);
	pthread_rwlock_wrlock(&k->lock);
	int rc = document_fresh(k, now_ms) ? 0 : refresh_document(k, now_ms);
	if (rc == 0)
		rc = evbuffer_add(out, k->doc, k->doc_len);
	pthread_rwlock_unlock(&k->lock);
	return rc;
}

int keys_lookup_own(const struct keys *k, const char *key_id, unsigned char pk[32])
{
	if (strcmp(key_id, k->current.key_id) == 0) {
		memcpy(pk, k->current.pk, 32);
		return 0;
	}
	for (int i = 0; i < k->nold; i++) {
		if (strcmp(key_id, k->old[i].key_id) == 0) {
			memcpy(pk, k->old[i].pk, 32);
			return 0;
		}
	}
	return -1;
}
