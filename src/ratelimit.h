/* ratelimit.h - token buckets shared by every endpoint that needs one: per
 * user for authenticated requests, per client IP otherwise. */
#ifndef AL_RATELIMIT_H
#define AL_RATELIMIT_H

#include "http.h"

/* Take one token from the bucket for (action, who); who is req->user_id when
 * set, else the peer address. Returns 0 when allowed; otherwise replies 429
 * M_LIMIT_EXCEEDED with retry_after_ms and returns -1. A configured
 * rate_per_second of 0 disables limiting. */
int ratelimit_check(struct http_req *req, const char *action);

#endif
