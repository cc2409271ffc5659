#include "ratelimit.h"

#include <arpa/inet.h>
#include <math.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define RATELIMIT_SETS 4096

struct rl_slot {
	bool used;
	uint64_t key_hash;
	char key[RATELIMIT_KEY_MAX];
	size_t key_len;
	struct ratelimit_bucket b;
};

struct ratelimit_table {
	pthread_mutex_t lock;
	size_t mask;
	unsigned char hash_key[crypto_shorthash_KEYBYTES]; /* SipHash: keys chosen by clients */
	struct rl_slot *slots;
};

int64_t ratelimit_bucket_take(struct ratelimit_bucket *b, double rate, int burst, int64_t now_ms)
{
	if (burst < 1)
		burst = 1;
	if (b->last_ms == 0) {
		b->tokens = burst;
		b->last_ms = now_ms;
	} else if (now_ms > b->last_ms) {
		b->tokens += (double)(now_ms - b->last_ms) * rate / 1000.0;
		if (b->tokens > burst)
			b->tokens = burst;
		b->last_ms = now_ms;
	}
	if (b->tokens >= 1.0) {
		b->tokens -= 1.0;
		return 0;
	}
	double wait = ceil((1.0 - b->tokens) * 1000.0 / rate);
	if (wait < 1)
		wait = 1;
	if (wait > 86400000.0)
		wait = 86400000.0;
	return (int64_t)wait;
}

struct ratelimit_table *ratelimit_table_new(size_t nsets)
{
	size_t n = 1;
	while (n < nsets && n < ((size_t)1 << 22))
		n <<= 1;
	struct ratelimit_table *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->slots = calloc(n * RATELIMIT_WAYS, sizeof(*t->slots));
	if (!t->slots) {
		free(t);
		return NULL;
	}
	t->mask = n - 1;
	crypto_shorthash_keygen(t->hash_key);
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

void ratelimit_table_free(struct ratelimit_table *t)
{
	if (!t)
		return;
	pthread_mutex_destroy(&t->lock);
	free(t->slots);
	free(t);
}

/* A bucket that refilled to burst is the same as no bucket. */
static bool bucket_full(const struct ratelimit_bucket *b, double rate, int burst, int64_t now_ms)
{
	return b->tokens + (double)(now_ms - b->last_ms) * rate / 1000.0 >= burst;
}

int64_t ratelimit_table_take(struct ratelimit_table *t, const char *action, const char *who, double rate, int burst,
			     int64_t now_ms)
{
	if (rate <= 0)
		return 0;
	char key[RATELIMIT_KEY_MAX];
	size_t alen = strnlen(action, 64), wlen = strnlen(who, RATELIMIT_KEY_MAX - 66);
	memcpy(key, action, alen);
	key[alen] = '\0';
	memcpy(key + alen + 1, who, wlen);
	size_t klen = alen + 1 + wlen;
	unsigned char h8[crypto_shorthash_BYTES];
	crypto_shorthash(h8, (const unsigned char *)key, klen, t->hash_key);
	uint64_t h;
	memcpy(&h, h8, sizeof(h));

	pthread_mutex_lock(&t->lock);
	struct rl_slot *set = &t->slots[(h & t->mask) * RATELIMIT_WAYS];
	struct rl_slot *slot = NULL;
	for (int i = 0; i < RATELIMIT_WAYS && !slot; i++)
		if (set[i].used && set[i].key_hash == h && set[i].key_len == klen && memcmp(set[i].key, key, klen) == 0)
			slot = &set[i];
	if (!slot) {
		for (int i = 0; i < RATELIMIT_WAYS && !slot; i++)
			if (!set[i].used || bucket_full(&set[i].b, rate, burst, now_ms))
				slot = &set[i];
		if (!slot) {
			slot = &set[0];
			for (int i = 1; i < RATELIMIT_WAYS; i++)
				if (set[i].b.last_ms < slot->b.last_ms)
					slot = &set[i];
		}
		slot->used = true;
		slot->key_hash = h;
		memcpy(slot->key, key, klen);
		slot->key_len = klen;
		memset(&slot->b, 0, sizeof(slot->b));
	}
	int64_t wait = ratelimit_bucket_take(&slot->b, rate, burst, now_ms);
	pthread_mutex_unlock(&t->lock);
	return wait;
}

/* ---- HTTP glue ---- */

static int64_t monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* +1 so that no real time is 0, which marks a new bucket */
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + 1;
}

static void peer_address(struct http_req *req, char *out, size_t outlen)
{
	char *addr = NULL;
	ev_uint16_t port = 0;
	struct evhttp_connection *conn = evhttp_request_get_connection(req->ev);
	if (conn)
		evhttp_connection_get_peer(conn, &addr, &port);
	snprintf(out, outlen, "%s", addr ? addr : "-");
}

int ratelimit_check(struct http_req *req, const char *action)
{
	const struct al_config *cfg = &req->app->cfg;
	struct ratelimit_table *t = req->app->ratelimit;
	if (!t || cfg->rate_per_second <= 0)
		return 0;
	char who[300];
	if (req->user_id)
		snprintf(who, sizeof(who), "u:%s", req->user_id);
	else {
		char ip[INET6_ADDRSTRLEN + 1];
		peer_address(req, ip, sizeof(ip));
		snprintf(who, sizeof(who), "ip:%s", ip);
	}
	int64_t wait = ratelimit_table_take(t, action, who, cfg->rate_per_second, cfg->rate_burst, monotonic_ms());
	if (wait == 0)
		return 0;
	char secs[24];
	snprintf(secs, sizeof(secs), "%lld", (long long)((wait + 999) / 1000));
	evhttp_add_header(evhttp_request_get_output_headers(req->ev), "Retry-After", secs);
	http_reply_json(req, 429,
			json_pack("{s:s, s:s, s:I}", "errcode", "M_LIMIT_EXCEEDED", "error", "Too many requests",
				  "retry_after_ms", (json_int_t)wait));
	return -1;
}

int ratelimit_start(struct app *app)
{
	app->ratelimit = ratelimit_table_new(RATELIMIT_SETS);
	if (!app->ratelimit) {
		log_error("ratelimit", "out of memory");
		return -1;
	}
	return 0;
}

void ratelimit_stop(struct app *app)
{
	ratelimit_table_free(app->ratelimit);
	app->ratelimit = NULL;
}
