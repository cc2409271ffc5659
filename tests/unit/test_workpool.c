#include "unit.h"

#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>

#include "workpool.h"

struct job {
	pthread_t main_thread;
	pthread_t work_thread;
	int done_on_main;
	int *remaining;
	struct event_base *base;
};

static void work(void *arg)
{
	struct job *j = arg;
	j->work_thread = pthread_self();
}

static void done(void *arg)
{
	struct job *j = arg;
	j->done_on_main = pthread_equal(pthread_self(), j->main_thread);
	if (--*j->remaining == 0)
		event_base_loopbreak(j->base);
}

START_TEST(work_off_loop_done_on_loop)
{
	ck_assert_int_eq(evthread_use_pthreads(), 0);
	struct event_base *base = event_base_new();
	struct workpool *pool = workpool_new(2);
	ck_assert_ptr_nonnull(pool);
	enum { N = 50 };
	struct job jobs[N];
	int remaining = N;
	for (int i = 0; i < N; i++) {
		jobs[i] = (struct job){.main_thread = pthread_self(), .remaining = &remaining, .base = base};
		ck_assert_int_eq(workpool_submit(pool, base, work, done, &jobs[i]), 0);
	}
	event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
	ck_assert_int_eq(remaining, 0);
	for (int i = 0; i < N; i++) {
		ck_assert(!pthread_equal(jobs[i].work_thread, pthread_self()));
		ck_assert_int_eq(jobs[i].done_on_main, 1);
	}
	workpool_free(pool);
	event_base_free(base);
}
END_TEST

START_TEST(bad_arguments)
{
	ck_assert_ptr_null(workpool_new(0));
	ck_assert_int_eq(workpool_submit(NULL, NULL, work, done, NULL), -1);
	workpool_free(NULL);
}
END_TEST

UNIT_MAIN("workpool", work_off_loop_done_on_loop, bad_arguments)
