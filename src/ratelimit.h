/* ratelimit.h - token buckets shared by every endpoint that needs one: per
 * user for authenticated requests, per client IP otherwise. */
#ifndef AL_RATELIMIT_H
#define AL_RATELIMIT_H

#include <stdint.h>

#include "http.h"

/* Take one token from the bucket for (action, who); who is req->user_id when
 * set, else the peer address. Returns 0 when allowed; otherwise replies 429
 * M_LIMIT_EXCEEDED with retry_after_ms and returns -1. A configured
 * rate_per_second of 0 disables limiting. */
int ratelimit_check(struct http_req *req, const char *action);

/* ---- module life cycle (main.c start_modules / stop_modules) ---- */
int ratelimit_start(struct app *app);
void ratelimit_stop(struct app *app);

/* ---- the parts below are pure and exposed for unit tests ---- */

struct ratelimit_bucket {
	double tokens;
	int64_t last_ms;
};

/* Refill the bucket for the time since last_ms (rate tokens per second, at
 * most burst) and take one token. A new bucket (last_ms 0) starts full.
 * Returns 0 when a token was taken, else the milliseconds until one is
 * available (>= 1). */
int64_t ratelimit_bucket_take(struct ratelimit_bucket *b, double rate, int burst, int64_t now_ms);

/* A bounded table of buckets keyed by "action\0who": nsets sets of
 * RATELIMIT_WAYS buckets; a new key replaces a bucket of its set that is
 * full again (equivalent to absent) or else the one idle longest. */
#define RATELIMIT_WAYS 4
#define RATELIMIT_KEY_MAX 320
struct ratelimit_table;
struct ratelimit_table *ratelimit_table_new(size_t nsets);
void ratelimit_table_free(struct ratelimit_table *t);
/* As ratelimit_bucket_take, for the bucket of (action, who). */
int64_t ratelimit_table_take(struct ratelimit_table *t, const char *action, const char *who, double rate, int burst,
			     int64_t now_ms);

#endif
