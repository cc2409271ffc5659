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

/* One batch of a room: its jobs, their items, the batch in flight. */
struct rq_slot {
	struct rq_job **jobs;
	struct room_batch_item *items;
	int n;
	struct room_batch_flight *flight;
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
	struct rq_slot slots[2]; /* a batch in flight and the next one */
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

static void slot_fill(struct rq_slot *s)
{
	for (int i = 0; i < s->n; i++) {
		struct rq_job *j = s->jobs[i];
		memset(&s->items[i], 0, sizeof(s->items[i]));
		s->items[i].sender = j->sender;
		s->items[i].spec.type = j->type;
		s->items[i].spec.content = j->content;
		s->items[i].spec.device_id = j->device_id;
		s->items[i].spec.txn_id = j->txn_id;
	}
}

/* The batch's outcome to its requests: the commit notice, then every
 * job's reply on its own event_base. */
static void slot_deliver(struct rq_writer *wr, struct rq_room *r, struct rq_slot *s, int stored)
{
	struct room_queue *q = wr->q;
	log_debug("room_queue", "batch room_id=%s jobs=%d stored=%d", r->room_id, s->n, stored);
	if (stored > 0 && q->on_commit)
		q->on_commit(q->commit_arg, r->room_id);
	static const struct timeval now = {0, 0};
	for (int i = 0; i < s->n; i++) {
		struct rq_job *j = s->jobs[i];
		struct room_batch_item *it = &s->items[i];
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
	pthread_mutex_lock(&q->mu);
	q->total -= s->n;
	pthread_mutex_unlock(&q->mu);
	s->n = 0;
}

static void slot_write(struct rq_writer *wr, const struct room_ctx *ctx, struct rq_room *r, struct rq_slot *s)
{
	slot_deliver(wr, r, s, room_send_batch(ctx, r->room_id, s->items, s->n, wr->cache));
}

/* Under q->mu: up to ROOM_QUEUE_MAX_BATCH of r's jobs into s. */
static void slot_take(struct rq_room *r, struct rq_slot *s)
{
	s->n = 0;
	while (r->head && s->n < ROOM_QUEUE_MAX_BATCH) {
		s->jobs[s->n++] = r->head;
		r->head = r->head->next;
	}
	if (!r->head)
		r->tail = NULL;
}

/* Writes the batch in wr->slots[0] and whatever r queues meanwhile: each
 * next batch is built and sent while the one before it is in flight
 * (room_batch_start), so the database writes one while this thread
 * builds and signs the next. Any batch that cannot go that way, or that
 * finds the room moved, is written by room_send_batch, in order, once
 * nothing is in flight. It goes on while r has jobs and no other room of
 * this writer waits. */
static void write_room(struct rq_writer *wr, struct rq_room *r)
{
	struct room_queue *q = wr->q;
	struct room_ctx ctx = {.db = &wr->db, .keys = q->keys, .app = q->app};
	struct rq_slot *cur = &wr->slots[0], *nxt = &wr->slots[1];
	slot_fill(cur);
	cur->flight = room_batch_start(&ctx, r->room_id, cur->items, cur->n, wr->cache);
	if (!cur->flight) {
		slot_write(wr, &ctx, r, cur);
		return;
	}
	while (cur->flight) {
		/* another room of this writer waiting: r goes to the back of the
		 * line after this batch (writer_main), as without pipelining */
		pthread_mutex_lock(&q->mu);
		if (wr->ready_head)
			nxt->n = 0;
		else
			slot_take(r, nxt);
		pthread_mutex_unlock(&q->mu);
		if (nxt->n > 0) {
			slot_fill(nxt);
			nxt->flight = room_batch_start(&ctx, r->room_id, nxt->items, nxt->n, wr->cache);
		}
		int stored = room_batch_finish(cur->flight, false);
		cur->flight = NULL;
		if (stored == ROOM_BATCH_AGAIN) {
			log_debug("room_queue", "room_id=%s moved under a batch in flight: written again", r->room_id);
			int later = nxt->flight ? room_batch_finish(nxt->flight, true) : ROOM_BATCH_AGAIN;
			nxt->flight = NULL;
			slot_write(wr, &ctx, r, cur);
			if (nxt->n > 0 && later == ROOM_BATCH_AGAIN)
				slot_write(wr, &ctx, r, nxt);
			else if (nxt->n > 0)
				slot_deliver(wr, r, nxt, later);
			return;
		}
		slot_deliver(wr, r, cur, stored);
		if (nxt->n > 0 && !nxt->flight) {
			slot_write(wr, &ctx, r, nxt);
			return;
		}
		struct rq_slot *t = cur;
		cur = nxt;
		nxt = t;
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
		slot_take(r, &wr->slots[0]);
		pthread_mutex_unlock(&q->mu);

		write_room(wr, r); /* every batch delivered: both slots empty */

		pthread_mutex_lock(&q->mu);
		r->busy = false;
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
		bool oom = !wr->cache;
		for (int k = 0; k < 2; k++) {
			wr->slots[k].items = calloc(ROOM_QUEUE_MAX_BATCH, sizeof(*wr->slots[k].items));
			wr->slots[k].jobs = calloc(ROOM_QUEUE_MAX_BATCH, sizeof(*wr->slots[k].jobs));
			oom = oom || !wr->slots[k].items || !wr->slots[k].jobs;
		}
		if (oom) {
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
		for (int k = 0; k < 2; k++) {
			free(wr->slots[k].items);
			free(wr->slots[k].jobs);
		}
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
