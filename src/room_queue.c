#include "room_queue.h"

#include <event2/event.h>
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"

#define RQ_BUCKETS 256

struct rq_job {
	struct rq_job *next;
	struct event_base *reply_base;
	room_queue_done_fn done;
	void *arg;
	json_t *content;
	char *sender, *type, *device_id, *txn_id;
	struct room_queue_result res;
};

/* A room with queued jobs or a batch being written. */
struct rq_room {
	struct rq_room *hnext; /* hash chain */
	struct rq_room *rnext; /* ready list */
	struct rq_job *head, *tail;
	bool busy;  /* its writer is writing its batch */
	bool ready; /* on its writer's ready list */
	int writer; /* the one writer thread of this room */
	char room_id[ROOM_ID_MAX + 1];
};

/* A room always goes to the same writer (by the hash of its ID), so that
 * writer's cache holds its state between batches. */
struct rq_writer {
	struct room_queue *q;
	pthread_t thread;
	bool started;
	pthread_cond_t cond;
	struct rq_room *ready_head, *ready_tail; /* its rooms with jobs, not being written */
	struct db db;
	struct room_write_cache *cache;
	struct room_batch_item *items;
	struct rq_job **jobs;
};

struct room_queue {
	pthread_mutex_t mu;
	struct rq_room *buckets[RQ_BUCKETS];
	int total; /* jobs queued or being written */
	bool stopping;
	const struct keys *keys;
	struct app *app;
	void (*on_commit)(void *, const char *room_id);
	void *commit_arg;
	int nthreads;
	struct rq_writer writers[];
};

static unsigned bucket_of(const char *room_id)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)room_id; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % RQ_BUCKETS;
}

static void job_free(struct rq_job *j)
{
	if (!j)
		return;
	json_decref(j->content);
	free(j->sender);
	free(j->type);
	free(j->device_id);
	free(j->txn_id);
	free(j);
}

static char *dup_or_null(const char *s, bool *oom)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		*oom = true;
	return d;
}

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct rq_job *j = arg;
	j->done(j->arg, &j->res);
	job_free(j);
}

/* Under q->mu. */
static void ready_push(struct room_queue *q, struct rq_room *r)
{
	struct rq_writer *wr = &q->writers[r->writer];
	r->ready = true;
	r->rnext = NULL;
	if (wr->ready_tail)
		wr->ready_tail->rnext = r;
	else
		wr->ready_head = r;
	wr->ready_tail = r;
	pthread_cond_signal(&wr->cond);
}

/* Under q->mu: r has no jobs and no writer. */
static void room_remove(struct room_queue *q, struct rq_room *r)
{
	struct rq_room **pp = &q->buckets[bucket_of(r->room_id)];
	while (*pp && *pp != r)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = r->hnext;
	free(r);
}

static void write_batch(struct rq_writer *wr, struct rq_room *r, int n)
{
	struct room_queue *q = wr->q;
	struct room_ctx ctx = {.db = &wr->db, .keys = q->keys, .app = q->app};
	for (int i = 0; i < n; i++) {
		struct rq_job *j = wr->jobs[i];
		memset(&wr->items[i], 0, sizeof(wr->items[i]));
		wr->items[i].sender = j->sender;
		wr->items[i].spec.type = j->type;
		wr->items[i].spec.content = j->content;
		wr->items[i].spec.device_id = j->device_id;
		wr->items[i].spec.txn_id = j->txn_id;
	}
	int64_t t0 = log_enabled(LOG_LVL_DEBUG) ? room_now_ms() : 0;
	int stored = room_send_batch(&ctx, r->room_id, wr->items, n, wr->cache);
	log_debug("room_queue", "batch room_id=%s jobs=%d stored=%d ms=%lld", r->room_id, n, stored,
		  (long long)(log_enabled(LOG_LVL_DEBUG) ? room_now_ms() - t0 : 0));
	if (stored > 0 && q->on_commit)
		q->on_commit(q->commit_arg, r->room_id);
	static const struct timeval now = {0, 0};
	for (int i = 0; i < n; i++) {
		struct rq_job *j = wr->jobs[i];
		struct room_batch_item *it = &wr->items[i];
		j->res.rc = it->rc;
		j->res.stream = it->stream;
		snprintf(j->res.event_id, sizeof(j->res.event_id), "%s", it->event_id);
		j->res.err = it->err;
		if (it->rc < 0 && !j->res.err.errcode[0])
			al_error_set(&j->res.err, 500, "M_UNKNOWN", "internal error");
		json_decref(j->content);
		j->content = NULL;
		/* event_base_once is safe from this thread (evthread_use_pthreads). */
		if (event_base_once(j->reply_base, -1, EV_TIMEOUT, on_done, j, &now) < 0) {
			log_error("room_queue", "cannot schedule a reply; request dropped");
			job_free(j);
		}
	}
}

static void *writer_main(void *arg)
{
	struct rq_writer *wr = arg;
	struct room_queue *q = wr->q;
	for (;;) {
		pthread_mutex_lock(&q->mu);
		while (!wr->ready_head && !q->stopping)
			pthread_cond_wait(&wr->cond, &q->mu);
		struct rq_room *r = wr->ready_head;
		if (!r) {
			pthread_mutex_unlock(&q->mu);
			return NULL;
		}
		wr->ready_head = r->rnext;
		if (!wr->ready_head)
			wr->ready_tail = NULL;
		r->ready = false;
		r->busy = true;
		int n = 0;
		while (r->head && n < ROOM_QUEUE_MAX_BATCH) {
			wr->jobs[n++] = r->head;
			r->head = r->head->next;
		}
		if (!r->head)
			r->tail = NULL;
		pthread_mutex_unlock(&q->mu);

		write_batch(wr, r, n);

		pthread_mutex_lock(&q->mu);
		r->busy = false;
		q->total -= n;
		if (r->head)
			ready_push(q, r);
		else
			room_remove(q, r);
		pthread_mutex_unlock(&q->mu);
	}
}

struct room_queue *room_queue_new(const char *conninfo, const struct keys *keys, struct app *app, int nthreads,
				  void (*on_commit)(void *, const char *room_id), void *commit_arg,
				  struct al_error *err)
{
	if (nthreads < 1 || nthreads > ROOM_QUEUE_MAX_THREADS) {
		al_error_set(err, 500, "M_UNKNOWN", "room_queue: 1..%d threads", ROOM_QUEUE_MAX_THREADS);
		return NULL;
	}
	struct room_queue *q = calloc(1, sizeof(*q) + (size_t)nthreads * sizeof(q->writers[0]));
	if (!q) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	pthread_mutex_init(&q->mu, NULL);
	q->keys = keys;
	q->app = app;
	q->on_commit = on_commit;
	q->commit_arg = commit_arg;
	q->nthreads = nthreads;
	for (int i = 0; i < nthreads; i++)
		pthread_cond_init(&q->writers[i].cond, NULL);
	for (int i = 0; i < nthreads; i++) {
		struct rq_writer *wr = &q->writers[i];
		wr->q = q;
		wr->cache = room_write_cache_new(ROOM_QUEUE_CACHED_ROOMS);
		wr->items = calloc(ROOM_QUEUE_MAX_BATCH, sizeof(*wr->items));
		wr->jobs = calloc(ROOM_QUEUE_MAX_BATCH, sizeof(*wr->jobs));
		if (!wr->items || !wr->jobs || !wr->cache) {
			al_error_set(err, 500, "M_UNKNOWN", "out of memory");
			goto fail;
		}
		if (db_open(&wr->db, conninfo, err) < 0)
			goto fail;
		if (pthread_create(&wr->thread, NULL, writer_main, wr) != 0) {
			al_error_set(err, 500, "M_UNKNOWN", "room_queue: cannot start a thread");
			goto fail;
		}
		wr->started = true;
	}
	return q;
fail:
	room_queue_free(q);
	return NULL;
}

int room_queue_submit(struct room_queue *q, struct event_base *reply_base, const char *room_id, const char *sender,
		      const struct room_event_spec *spec, room_queue_done_fn done, void *arg)
{
	if (!q || !reply_base || !done || !room_id || strlen(room_id) > ROOM_ID_MAX || !sender || !spec->type ||
	    spec->state_key || spec->redacts)
		return -1;
	struct rq_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -2;
	bool oom = false;
	j->reply_base = reply_base;
	j->done = done;
	j->arg = arg;
	j->sender = dup_or_null(sender, &oom);
	j->type = dup_or_null(spec->type, &oom);
	j->device_id = dup_or_null(spec->device_id, &oom);
	j->txn_id = dup_or_null(spec->txn_id, &oom);
	j->content = json_incref(spec->content);
	if (oom) {
		job_free(j);
		return -2;
	}
	pthread_mutex_lock(&q->mu);
	int rc = 0;
	if (q->stopping) {
		rc = -1;
		goto out;
	}
	if (q->total >= ROOM_QUEUE_MAX_JOBS) {
		rc = -2;
		goto out;
	}
	unsigned b = bucket_of(room_id);
	struct rq_room *r = q->buckets[b];
	while (r && strcmp(r->room_id, room_id) != 0)
		r = r->hnext;
	if (!r) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			rc = -2;
			goto out;
		}
		snprintf(r->room_id, sizeof(r->room_id), "%s", room_id);
		r->writer = (int)(b % (unsigned)q->nthreads);
		r->hnext = q->buckets[b];
		q->buckets[b] = r;
	}
	if (r->tail)
		r->tail->next = j;
	else
		r->head = j;
	r->tail = j;
	q->total++;
	j = NULL;
	if (!r->busy && !r->ready)
		ready_push(q, r);
out:
	pthread_mutex_unlock(&q->mu);
	job_free(j);
	return rc;
}

void room_queue_free(struct room_queue *q)
{
	if (!q)
		return;
	pthread_mutex_lock(&q->mu);
	q->stopping = true;
	for (int i = 0; i < q->nthreads; i++)
		pthread_cond_broadcast(&q->writers[i].cond);
	pthread_mutex_unlock(&q->mu);
	for (int i = 0; i < q->nthreads; i++) {
		struct rq_writer *wr = &q->writers[i];
		if (wr->started)
			pthread_join(wr->thread, NULL);
		if (wr->db.conn)
			db_close(&wr->db);
		room_write_cache_free(wr->cache);
		free(wr->items);
		free(wr->jobs);
		pthread_cond_destroy(&wr->cond);
	}
	/* Jobs are left only when no writer ever started. */
	for (int b = 0; b < RQ_BUCKETS; b++) {
		while (q->buckets[b]) {
			struct rq_room *r = q->buckets[b];
			q->buckets[b] = r->hnext;
			while (r->head) {
				struct rq_job *j = r->head;
				r->head = j->next;
				job_free(j);
			}
			free(r);
		}
	}
	pthread_mutex_destroy(&q->mu);
	free(q);
}
