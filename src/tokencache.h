/* tokencache.h - the in-memory access-token cache behind auth: sha256 of a
 * token -> user and device. Bounded (set-associative, least recently used
 * entry of a set is evicted), behind a rwlock, safe from every thread.
 *
 * A miss is resolved from the database by the caller. To keep a
 * concurrent invalidation from being undone by a lookup that read the
 * database just before it, the caller takes tokencache_generation() before
 * the query and passes it to tokencache_put, which refuses the entry if
 * any invalidation happened in between. */
#ifndef AL_TOKENCACHE_H
#define AL_TOKENCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TOKENCACHE_HASH_BYTES 32
#define TOKENCACHE_ID_MAX 256 /* user and device IDs are at most 255 bytes */

struct tokencache;

struct tokencache_entry {
	char user_id[TOKENCACHE_ID_MAX];
	char device_id[TOKENCACHE_ID_MAX];
	bool is_guest;
};

/* nsets sets of TOKENCACHE_WAYS entries; nsets is rounded up to a power
 * of two. ttl_ms bounds how long an entry is trusted (0: forever). */
#define TOKENCACHE_WAYS 4
struct tokencache *tokencache_new(size_t nsets, int64_t ttl_ms);
void tokencache_free(struct tokencache *c);

/* 1 and *out filled on a hit, 0 on a miss. */
int tokencache_get(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES], int64_t now_ms,
		   struct tokencache_entry *out);

uint64_t tokencache_generation(struct tokencache *c);

/* Store an entry unless an invalidation happened since generation gen.
 * Returns 1 stored, 0 refused (stale or IDs too long). */
int tokencache_put(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES],
		   const struct tokencache_entry *e, uint64_t gen, int64_t now_ms);

/* Invalidation: one token, one device of a user (device_id NULL: every
 * device of the user). */
void tokencache_forget_token(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES]);
void tokencache_forget_user(struct tokencache *c, const char *user_id, const char *device_id);

/* Number of live entries (for tests). */
size_t tokencache_count(struct tokencache *c);

#endif
