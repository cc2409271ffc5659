#include "uia.h"

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"

#define UIA_BUCKETS 1024

struct session {
	char id[UIA_SESSION_ID_LEN + 1];
	json_t *params;
	char *password;
	char completed_user_id[256];
	int64_t created_ms;
	struct session *next_in_bucket;
	struct session *older, *newer; /* creation order, for eviction */
};

struct uia_sessions {
	pthread_mutex_t lock;
	struct session *buckets[UIA_BUCKETS];
	struct session *oldest, *newest;
	size_t count, max;
	int64_t ttl_ms;
};

struct uia_sessions *uia_sessions_new(size_t max_sessions, int64_t ttl_ms)
{
	struct uia_sessions *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	s->max = max_sessions;
	s->ttl_ms = ttl_ms;
	return s;
}

static size_t bucket_of(const char *id)
{
	uint64_t h = 1469598103934665603ULL;
	for (; *id; id++)
		h = (h ^ (unsigned char)*id) * 1099511628211ULL;
	return (size_t)(h % UIA_BUCKETS);
}

static void unlink_session(struct uia_sessions *s, struct session *x)
{
	struct session **p = &s->buckets[bucket_of(x->id)];
	while (*p && *p != x)
		p = &(*p)->next_in_bucket;
	if (*p)
		*p = x->next_in_bucket;
	if (x->older)
		x->older->newer = x->newer;
	else
		s->oldest = x->newer;
	if (x->newer)
		x->newer->older = x->older;
	else
		s->newest = x->older;
	s->count--;
	json_decref(x->params);
	accounts_secret_free(x->password);
	free(x);
}

/* Drop expired sessions and, to make room for `incoming` more, the oldest.
 * Called with the lock. */
static void evict(struct uia_sessions *s, int64_t now_ms, size_t incoming)
{
	while (s->oldest && (now_ms - s->oldest->created_ms > s->ttl_ms || s->count + incoming > s->max))
		unlink_session(s, s->oldest);
}

void uia_sessions_free(struct uia_sessions *s)
{
	if (!s)
		return;
	while (s->oldest)
		unlink_session(s, s->oldest);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

int uia_session_create(struct uia_sessions *s, const json_t *params, const char *password, int64_t now_ms,
		       char id[UIA_SESSION_ID_LEN + 1])
{
	struct session *x = calloc(1, sizeof(*x));
	if (!x)
		return -1;
	unsigned char rnd[UIA_SESSION_ID_LEN / 2];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(x->id, sizeof(x->id), rnd, sizeof(rnd));
	x->params = json_deep_copy(params);
	x->password = password ? strdup(password) : NULL;
	x->created_ms = now_ms;
	if (!x->params || (password && !x->password)) {
		json_decref(x->params);
		accounts_secret_free(x->password);
		free(x);
		return -1;
	}
	pthread_mutex_lock(&s->lock);
	evict(s, now_ms, 1);
	size_t b = bucket_of(x->id);
	x->next_in_bucket = s->buckets[b];
	s->buckets[b] = x;
	x->older = s->newest;
	if (s->newest)
		s->newest->newer = x;
	else
		s->oldest = x;
	s->newest = x;
	s->count++;
	pthread_mutex_unlock(&s->lock);
	memcpy(id, x->id, sizeof(x->id));
	return 0;
}

static struct session *find(struct uia_sessions *s, const char *id)
{
	struct session *x = s->buckets[bucket_of(id)];
	while (x && strcmp(x->id, id) != 0)
		x = x->next_in_bucket;
	return x;
}

int uia_session_get(struct uia_sessions *s, const char *id, int64_t now_ms, struct uia_session_view *view)
{
	memset(view, 0, sizeof(*view));
	pthread_mutex_lock(&s->lock);
	evict(s, now_ms, 0);
	struct session *x = find(s, id);
	int rc = -1;
	if (x) {
		view->params = json_deep_copy(x->params); /* not shared across threads */
		view->password = x->password ? strdup(x->password) : NULL;
		snprintf(view->completed_user_id, sizeof(view->completed_user_id), "%s", x->completed_user_id);
		rc = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return rc;
}

void uia_session_complete(struct uia_sessions *s, const char *id, const char *user_id)
{
	pthread_mutex_lock(&s->lock);
	struct session *x = find(s, id);
	if (x) {
		snprintf(x->completed_user_id, sizeof(x->completed_user_id), "%s", user_id);
		accounts_secret_free(x->password);
		x->password = NULL;
	}
	pthread_mutex_unlock(&s->lock);
}
