/* workpool.h - a small pthread pool for CPU-bound work (argon2id) that must
 * not block an event loop. work() runs on a pool thread; done() then runs on
 * the thread of the event_base the job was submitted with. Requires
 * evthread_use_pthreads() before that base was created. */
#ifndef AL_WORKPOOL_H
#define AL_WORKPOOL_H

struct event_base;
struct workpool;

#define WORKPOOL_DEFAULT_THREADS 2
#define WORKPOOL_MAX_QUEUE 4096

/* A pool of nthreads threads (1..64). NULL on failure. */
struct workpool *workpool_new(int nthreads);

/* Queue a job. work(arg) runs on a pool thread and must not touch the
 * submitting thread's state (its database connection, its event_base);
 * afterwards done(arg) runs on reply_base's loop. done may be NULL.
 * Returns 0, or -1 when the queue is full, the pool is stopping or memory
 * ran out (then neither callback runs). */
int workpool_submit(struct workpool *pool, struct event_base *reply_base, void (*work)(void *), void (*done)(void *),
		    void *arg);

/* Stop the threads after the jobs already queued ran, then free the pool.
 * Call after the reply bases stopped dispatching: done callbacks that did
 * not run by then are dropped. NULL is a no-op. */
void workpool_free(struct workpool *pool);

#endif
