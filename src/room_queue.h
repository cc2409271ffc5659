/* room_queue.h - group commit of timeline events (issue 6).
 *
 * A PUT /send of a non-state event is not written on the HTTP worker that
 * received it: it is queued under its room, and a writer thread (one of a
 * few, each with its own PostgreSQL connection) takes everything queued for
 * that room, up to ROOM_QUEUE_MAX_BATCH, and writes it with room_send_batch
 * in one transaction: one room lock, one state read, one INSERT, one commit
 * (one WAL flush) for the whole batch. While a batch is being written, new
 * requests for that room queue up for the next one, so the batch size grows
 * with the load by itself; nothing waits for a timer.
 *
 * Only after that commit, on_commit(commit_arg, room_id) runs once (sync_notify_room),
 * then every job's done(arg, result) runs on the event_base it was
 * submitted from: a 200 means the event is durably committed.
 *
 * A room always goes to the same writer thread (by the hash of its ID),
 * which writes one batch of it at a time (its new jobs wait for the next
 * batch), so a room's events are stored in the order their requests were
 * queued, and the writer's room_write_cache keeps the room's auth state
 * between batches. The rooms row lock taken by room_send_batch still
 * serialises them against every other writer (room_send, other
 * processes). */
#ifndef AL_ROOM_QUEUE_H
#define AL_ROOM_QUEUE_H

#include <stdint.h>

#include "error.h"
#include "event.h"
#include "room.h"

struct app;
struct event_base;
struct keys;
struct room_queue;

#define ROOM_QUEUE_MAX_BATCH 256  /* events per transaction */
#define ROOM_QUEUE_MAX_JOBS 16384 /* queued in all rooms; then submit refuses */
#define ROOM_QUEUE_MAX_THREADS 16
#define ROOM_QUEUE_CACHED_ROOMS 64 /* per writer: rooms whose auth state stays in memory */

struct room_queue_result {
	int rc; /* 0: committed (stream 0: a repeated txnId) */
	char event_id[EVENT_ID_MAX];
	int64_t stream;
	struct al_error err; /* rc < 0 */
};

/* done runs on reply_base's loop; result is valid during the call. */
typedef void (*room_queue_done_fn)(void *arg, const struct room_queue_result *result);

/* nthreads writer threads (1..ROOM_QUEUE_MAX_THREADS), each with its own
 * connection to conninfo; app goes into their room_ctx (the stored-event
 * hook). on_commit may be NULL; it runs on a writer
 * thread. NULL (err filled) on failure. Requires evthread_use_pthreads(). */
struct room_queue *room_queue_new(const char *conninfo, const struct keys *keys, struct app *app, int nthreads,
				  void (*on_commit)(void *, const char *room_id), void *commit_arg,
				  struct al_error *err);

/* Queue one timeline event (spec->state_key and spec->redacts NULL). The
 * strings are copied; spec->content is referenced (json_incref) until the
 * job is done. Returns 0; -1 when the queue is stopping (nothing queued:
 * the caller writes it itself), -2 when ROOM_QUEUE_MAX_JOBS are waiting or
 * memory ran out (nothing queued: the caller answers 503). */
int room_queue_submit(struct room_queue *q, struct event_base *reply_base, const char *room_id, const char *sender,
		      const struct room_event_spec *spec, room_queue_done_fn done, void *arg);

/* Writes what is queued, answers it, stops the threads and frees q. Call
 * while the reply bases still dispatch. NULL is a no-op. */
void room_queue_free(struct room_queue *q);

#endif
