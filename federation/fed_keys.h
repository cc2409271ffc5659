/* fed_keys.h - remote servers' signing keys: an in-memory store (rwlock
 * hash) backed by federation_key_documents, filled by fetching
 * /_matrix/key/v2/server directly or /_matrix/key/v2/query through a
 * notary, always asynchronously through fed_client. Documents are checked
 * (server name, every verify key's self-signature, bounds) before they are
 * stored; a key that disappears without being listed in old_verify_keys is
 * recorded in the audit log (category keys). */
#ifndef AL_FED_KEYS_H
#define AL_FED_KEYS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

struct federation;
struct event_base;
struct fed_keys;

#define FED_KEYS_MAX_PER_SERVER 16
#define FED_KEYS_MAX_SERVERS 100000
#define FED_KEYS_MAX_DOCUMENT 65536

enum fed_key_status { FED_KEY_OK = 0, FED_KEY_UNKNOWN, FED_KEY_EXPIRED };

struct fed_key {
	char key_id[65];
	unsigned char pk[32];
	int64_t valid_until_ts; /* of the document, for current keys */
	int64_t expired_ts;     /* old keys: when they stopped; 0 for current keys */
};

struct fed_key_doc {
	char server_name[256];
	int64_t valid_until_ts;
	int nkeys;
	struct fed_key keys[FED_KEYS_MAX_PER_SERVER];
};

struct fed_keys *fed_keys_new(void);
void fed_keys_free(struct fed_keys *ks);

/* Fill the memory store from PostgreSQL (start-up). */
int fed_keys_load(struct fed_keys *ks, struct db *db, struct al_error *err);

/* Key of server usable for a signature made at at_ms: a current key until
 * the document's valid_until_ts, an old key before its expired_ts. */
enum fed_key_status fed_keys_lookup(struct fed_keys *ks, const char *server, const char *key_id,
				    int64_t at_ms, unsigned char pk[32]);

/* The stored document of server (canonical JSON, malloc'd) or NULL;
 * *valid_until gets its valid_until_ts. */
char *fed_keys_document(struct fed_keys *ks, const char *server, int64_t *valid_until);

/* Check a key document: server_name equals expect_server (when non-NULL),
 * verify_keys/old_verify_keys well-formed and bounded, signed by every
 * verify key. Pure. 0 or -1 with err. */
int fed_keys_parse_document(const json_t *doc, const char *expect_server, struct fed_key_doc *out,
			    struct al_error *err);

/* Check and store a document (memory + PostgreSQL, audit entries in the
 * same transaction). */
int fed_keys_store(struct federation *fed, struct db *db, const json_t *doc, const char *expect_server,
		   struct al_error *err);

/* Fetch server's keys: directly, then through notaries (trusted peers)
 * when that fails. cb(arg, ok) runs on base's loop. Never blocks. */
typedef void (*fed_keys_cb)(void *arg, bool ok);
int fed_keys_fetch(struct federation *fed, const char *server, struct event_base *base,
		   fed_keys_cb cb, void *arg);

/* Counters for tests and benchmarks. */
long fed_keys_fetch_count(struct fed_keys *ks);

#endif
