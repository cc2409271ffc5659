#include "tokencache.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct tc_slot {
	bool used;
	unsigned char hash[TOKENCACHE_HASH_BYTES];
	struct tokencache_entry e;
	int64_t added_ms;
	_Atomic int64_t used_ms; /* touched under the read lock */
};

struct tokencache {
	pthread_rwlock_t lock;
	size_t mask; /* nsets - 1 */
	int64_t ttl_ms;
	uint64_t generation; /* changed under the write lock */
	struct tc_slot *slots;
};

struct tokencache *tokencache_new(size_t nsets, int64_t ttl_ms)
{
	size_t n = 1;
	while (n < nsets && n < ((size_t)1 << 24))
		n <<= 1;
	struct tokencache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->slots = calloc(n * TOKENCACHE_WAYS, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	pthread_rwlock_init(&c->lock, NULL);
	c->mask = n - 1;
	c->ttl_ms = ttl_ms;
	return c;
}

void tokencache_free(struct tokencache *c)
{
	if (!c)
		return;
	sodium_memzero(c->slots, (c->mask + 1) * TOKENCACHE_WAYS * sizeof(*c->slots));
	free(c->slots);
	pthread_rwlock_destroy(&c->lock);
	free(c);
}

/* The key is a SHA-256: its first bytes are already uniform. */
static struct tc_slot *set_of(struct tokencache *c, const unsigned char *hash)
{
	uint64_t h;
	memcpy(&h, hash, sizeof(h));
	return &c->slots[(h & c->mask) * TOKENCACHE_WAYS];
}

static bool expired(const struct tokencache *c, const struct tc_slot *s, int64_t now_ms)
{
	return c->ttl_ms > 0 && now_ms - s->added_ms > c->ttl_ms;
}

int tokencache_get(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES], int64_t now_ms,
		   struct tokencache_entry *out)
{
	int hit = 0;
	pthread_rwlock_rdlock(&c->lock);
	struct tc_slot *set = set_of(c, hash);
	for (int i = 0; i < TOKENCACHE_WAYS; i++) {
		struct tc_slot *s = &set[i];
		/* Every way is compared, in constant time, so the time taken
		 * does not depend on where (or whether) the key matched. */
		int eq = sodium_memcmp(s->hash, hash, TOKENCACHE_HASH_BYTES) == 0;
		if (s->used && eq && !hit && !expired(c, s, now_ms)) {
			*out = s->e;
			atomic_store_explicit(&s->used_ms, now_ms, memory_order_relaxed);
			hit = 1;
		}
	}
	pthread_rwlock_unlock(&c->lock);
	return hit;
}

uint64_t tokencache_generation(struct tokencache *c)
{
	pthread_rwlock_rdlock(&c->lock);
	uint64_t g = c->generation;
	pthread_rwlock_unlock(&c->lock);
	return g;
}

int tokencache_put(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES],
		   const struct tokencache_entry *e, uint64_t gen, int64_t now_ms)
{
	if (strnlen(e->user_id, TOKENCACHE_ID_MAX) == TOKENCACHE_ID_MAX ||
	    strnlen(e->device_id, TOKENCACHE_ID_MAX) == TOKENCACHE_ID_MAX)
		return 0;
	pthread_rwlock_wrlock(&c->lock);
	if (c->generation != gen) {
		pthread_rwlock_unlock(&c->lock);
		return 0;
	}
	struct tc_slot *set = set_of(c, hash);
	struct tc_slot *victim = NULL;
	for (int i = 0; i < TOKENCACHE_WAYS && !victim; i++)
		if (set[i].used && sodium_memcmp(set[i].hash, hash, TOKENCACHE_HASH_BYTES) == 0)
			victim = &set[i];
	for (int i = 0; i < TOKENCACHE_WAYS && !victim; i++)
		if (!set[i].used || expired(c, &set[i], now_ms))
			victim = &set[i];
	if (!victim) {
		victim = &set[0];
		for (int i = 1; i < TOKENCACHE_WAYS; i++)
			if (atomic_load(&set[i].used_ms) < atomic_load(&victim->used_ms))
				victim = &set[i];
	}
	victim->used = true;
	memcpy(victim->hash, hash, TOKENCACHE_HASH_BYTES);
	victim->e = *e;
	victim->added_ms = now_ms;
	atomic_store(&victim->used_ms, now_ms);
	pthread_rwlock_unlock(&c->lock);
	return 1;
}

static void clear_slot(struct tc_slot *s)
{
	sodium_memzero(s->hash, sizeof(s->hash));
	memset(&s->e, 0, sizeof(s->e));
	s->used = false;
}

void tokencache_forget_token(struct tokencache *c, const unsigned char hash[TOKENCACHE_HASH_BYTES])
{
	pthread_rwlock_wrlock(&c->lock);
	c->generation++;
	struct tc_slot *set = set_of(c, hash);
	for (int i = 0; i < TOKENCACHE_WAYS; i++)
		if (set[i].used && sodium_memcmp(set[i].hash, hash, TOKENCACHE_HASH_BYTES) == 0)
			clear_slot(&set[i]);
	pthread_rwlock_unlock(&c->lock);
}

void tokencache_forget_user(struct tokencache *c, const char *user_id, const char *device_id)
{
	pthread_rwlock_wrlock(&c->lock);
	c->generation++;
	size_t n = (c->mask + 1) * TOKENCACHE_WAYS;
	for (size_t i = 0; i < n; i++) {
		struct tc_slot *s = &c->slots[i];
		if (s->used && strcmp(s->e.user_id, user_id) == 0 &&
		    (!device_id || strcmp(s->e.device_id, device_id) == 0))
			clear_slot(s);
	}
	pthread_rwlock_unlock(&c->lock);
}

size_t tokencache_count(struct tokencache *c)
{
	size_t count = 0;
	pthread_rwlock_rdlock(&c->lock);
	size_t n = (c->mask + 1) * TOKENCACHE_WAYS;
	for (size_t i = 0; i < n; i++)
		count += c->slots[i].used;
	pthread_rwlock_unlock(&c->lock);
	return count;
}
