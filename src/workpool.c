#include "workpool.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "log.h"

struct wp_job {
	void (*work)(void *);
	void (*done)(void *);
	void *arg;
	struct event_base *reply_base;
	struct wp_job *next;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct wp_job *head, *tail;
	int queued;
	bool stopping;
	int nthreads;
	pthread_t threads[];
};

static void on_done(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct wp_job *job = arg;
	if (job->done)
		job->done(job->arg);
	free(job);
}

static void *pool_main(void *arg)
{
	struct workpool *pool = arg;
	for (;;) {
		pthread_mutex_lock(&pool->lock);
		while (!pool->head && !pool->stopping)
			pthread_cond_wait(&pool->cond, &pool->lock);
		struct wp_job *job = pool->head;
		if (!job) {
			pthread_mutex_unlock(&pool->lock);
			return NULL;
		}
		pool->head = job->next;
		if (!pool->head)
			pool->tail = NULL;
		pool->queued--;
		pthread_mutex_unlock(&pool->lock);

		job->work(job->arg);
		/* event_base_once takes the base's lock and wakes its loop, so
		 * it is safe from this thread once evthread_use_pthreads ran. */
		static const struct timeval now = {0, 0};
		if (event_base_once(job->reply_base, -1, EV_TIMEOUT, on_done, job, &now) < 0) {
			log_error("workpool", "cannot schedule a completion; job dropped");
			free(job);
		}
	}
}

struct workpool *workpool_new(int nthreads)
{
	if (nthreads < 1 || nthreads > 64)
		return NULL;
	struct workpool *pool = calloc(1, sizeof(*pool) + (size_t)nthreads * sizeof(pthread_t));
	if (!pool)
		return NULL;
	pthread_mutex_init(&pool->lock, NULL);
	pthread_cond_init(&pool->cond, NULL);
	for (int i = 0; i < nthreads; i++) {
		if (pthread_create(&pool->threads[i], NULL, pool_main, pool) != 0) {
			log_error("workpool", "cannot start thread %d", i);
			workpool_free(pool);
			return NULL;
		}
		pool->nthreads = i + 1;
	}
	return pool;
}

int workpool_submit(struct workpool *pool, struct event_base *reply_base, void (*work)(void *), void (*done)(void *),
		    void *arg)
{
	if (!pool || !reply_base || !work)
		return -1;
	struct wp_job *job = calloc(1, sizeof(*job));
	if (!job)
		return -1;
	job->work = work;
	job->done = done;
	job->arg = arg;
	job->reply_base = reply_base;
	pthread_mutex_lock(&pool->lock);
	if (pool->stopping || pool->queued >= WORKPOOL_MAX_QUEUE) {
		pthread_mutex_unlock(&pool->lock);
		free(job);
		return -1;
	}
	if (pool->tail)
		pool->tail->next = job;
	else
		pool->head = job;
	pool->tail = job;
	pool->queued++;
	pthread_cond_signal(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	return 0;
}

void workpool_free(struct workpool *pool)
{
	if (!pool)
		return;
	pthread_mutex_lock(&pool->lock);
	pool->stopping = true;
	pthread_cond_broadcast(&pool->cond);
	pthread_mutex_unlock(&pool->lock);
	for (int i = 0; i < pool->nthreads; i++)
		pthread_join(pool->threads[i], NULL);
	pthread_mutex_destroy(&pool->lock);
	pthread_cond_destroy(&pool->cond);
	free(pool);
}
