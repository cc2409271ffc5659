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
 * the document's valid_until_ts (capped at 7 days after it was fetched,
 * per the spec), an old key before its expired_ts. No clock tolerance. */
enum fed_key_status fed_keys_lookup(struct fed_keys *ks, const char *server, const char *key_id, int64_t at_ms,
				    unsigned char pk[32]);
/* The same with skew_ms of tolerance on valid_until_ts (current keys
 * only: an old key's expired_ts and the signing time both come from the
 * signer's clock, so at_ms < expired_ts stays strict). */
enum fed_key_status fed_keys_lookup_skew(struct fed_keys *ks, const char *server, const char *key_id, int64_t at_ms,
					 int64_t skew_ms, unsigned char pk[32]);

/* federation.clock_skew_ms. */
int64_t fed_clock_skew_ms(const struct federation *fed);

/* The key to verify a signature that server made at signed_ts (ms since
 * the epoch, the signer's claim): X-Matrix requests are signed now (pass
 * the current time); an attestation at its issued_ts; a PDU at its
 * origin_server_ts. A key in old_verify_keys is accepted when its
 * expired_ts > signed_ts; a current key while signed_ts <= valid_until_ts +
 * federation.clock_skew_ms. */
enum fed_key_status fed_keys_lookup_signed(struct federation *fed, const char *server, const char *key_id,
					   int64_t signed_ts, unsigned char pk[32]);

/* The time fields of a signed object such as an attestation: issued_ts
 * and valid_until_ts are integers, issued_ts <= valid_until_ts, issued_ts
 * is not in the future and valid_until_ts not in the past by more than
 * federation.clock_skew_ms. */
bool fed_keys_times_ok(const struct federation *fed, const json_t *obj);
/* The rule itself, pure (unit tests). */
bool fed_keys_times_check(int64_t issued_ts, int64_t valid_until_ts, int64_t now_ms, int64_t skew_ms);

/* The longest a fetched document's valid_until_ts is believed. */
#define FED_KEYS_MAX_VALIDITY_MS (7LL * 24 * 3600 * 1000)

/* The stored document of server (canonical JSON, malloc'd) or NULL;
 * *valid_until gets its valid_until_ts. */
char *fed_keys_document(struct fed_keys *ks, const char *server, int64_t *valid_until);

/* Check a key document: server_name equals expect_server (when non-NULL),
 * verify_keys/old_verify_keys well-formed and bounded, signed by every
 * verify key. Pure. 0 or -1 with err. */
int fed_keys_parse_document(const json_t *doc, const char *expect_server, struct fed_key_doc *out,
			    struct al_error *err);

/* Check a document and put it into memory only (tests, benchmarks);
 * fetched_ms caps valid_until_ts at fetched_ms + 7 days. */
int fed_keys_memory_store(struct fed_keys *ks, const json_t *doc, const char *expect_server, int64_t fetched_ms,
			  struct al_error *err);

/* Check and store a document (memory + PostgreSQL, audit entries in the
 * same transaction). */
int fed_keys_store(struct federation *fed, struct db *db, const json_t *doc, const char *expect_server,
		   struct al_error *err);

/* Fetch server's keys: directly, then through notaries (whitelisted or
 * trusted peers) when that fails; a notary whose own key we do not hold
 * yet is asked for it first. cb(arg, ok) runs on base's loop. Never
 * blocks. Concurrent fetches of one server share one; while we hold a
 * current document of server (the caller misses a key id), a new fetch
 * happens at most once per federation.key_refetch_interval_seconds and
 * otherwise cb gets ok=false at once. -1 (cb never runs) only when it
 * cannot be queued. */
typedef void (*fed_keys_cb)(void *arg, bool ok);
int fed_keys_fetch(struct federation *fed, const char *server, struct event_base *base, fed_keys_cb cb, void *arg);

/* Counters for tests and benchmarks: key requests sent, fetches that
 * joined one in flight, refetches suppressed by the interval. */
long fed_keys_fetch_count(struct fed_keys *ks);
long fed_keys_coalesced_count(struct fed_keys *ks);
long fed_keys_suppressed_count(struct fed_keys *ks);

#endif
