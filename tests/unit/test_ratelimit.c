#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

/* The clock is a parameter: times below are milliseconds chosen by the test. */

START_TEST(new_bucket_allows_burst_then_refuses)
{
	struct ratelimit_bucket b = {0};
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(ratelimit_bucket_take(&b, 1.0, 3, 1000), 0);
	/* Empty: one token comes back after 1 s at 1/s. */
	ck_assert_int_eq(ratelimit_bucket_take(&b, 1.0, 3, 1000), 1000);
}
END_TEST

START_TEST(refill_is_proportional_to_time)
{
	struct ratelimit_bucket b = {0};
	ck_assert_int_eq(ratelimit_bucket_take(&b, 2.0, 1, 5000), 0);
	/* 2/s: half a token after 250 ms, so 250 ms more to wait. */
	ck_assert_int_eq(ratelimit_bucket_take(&b, 2.0, 1, 5250), 250);
	ck_assert_int_eq(ratelimit_bucket_take(&b, 2.0, 1, 5500), 0);
}
END_TEST

START_TEST(refill_caps_at_burst)
{
	struct ratelimit_bucket b = {0};
	ck_assert_int_eq(ratelimit_bucket_take(&b, 10.0, 2, 1), 0);
	ck_assert_int_eq(ratelimit_bucket_take(&b, 10.0, 2, 1), 0);
	/* An hour idle gives back 2 tokens, not 36000. */
	ck_assert_int_eq(ratelimit_bucket_take(&b, 10.0, 2, 3600001), 0);
	ck_assert_int_eq(ratelimit_bucket_take(&b, 10.0, 2, 3600001), 0);
	ck_assert_int_gt(ratelimit_bucket_take(&b, 10.0, 2, 3600001), 0);
}
END_TEST

START_TEST(clock_going_back_does_not_refill)
{
	struct ratelimit_bucket b = {0};
	ck_assert_int_eq(ratelimit_bucket_take(&b, 1.0, 1, 10000), 0);
	ck_assert_int_eq(ratelimit_bucket_take(&b, 1.0, 1, 2000), 1000);
}
END_TEST

START_TEST(slow_rate_wait_rounds_up)
{
	struct ratelimit_bucket b = {0};
	ck_assert_int_eq(ratelimit_bucket_take(&b, 0.3, 1, 100), 0);
	/* 1 token at 0.3/s: 3333.3 ms, rounded up. */
	ck_assert_int_eq(ratelimit_bucket_take(&b, 0.3, 1, 100), 3334);
}
END_TEST

START_TEST(table_keys_are_separate)
{
	struct ratelimit_table *t = ratelimit_table_new(16);
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(ratelimit_table_take(t, "login", "ip:1.2.3.4", 1.0, 1, 100), 0);
	ck_assert_int_gt(ratelimit_table_take(t, "login", "ip:1.2.3.4", 1.0, 1, 100), 0);
	/* Another client, another action: own buckets. */
	ck_assert_int_eq(ratelimit_table_take(t, "login", "ip:1.2.3.5", 1.0, 1, 100), 0);
	ck_assert_int_eq(ratelimit_table_take(t, "register", "ip:1.2.3.4", 1.0, 1, 100), 0);
	/* "a"+"bc" and "ab"+"c" must not share a bucket. */
	ck_assert_int_eq(ratelimit_table_take(t, "a", "bc", 1.0, 1, 100), 0);
	ck_assert_int_eq(ratelimit_table_take(t, "ab", "c", 1.0, 1, 100), 0);
	ck_assert_int_eq(ratelimit_table_take(t, "login", "ip:1.2.3.4", 1.0, 1, 1100), 0);
	ratelimit_table_free(t);
}
END_TEST

START_TEST(table_rate_zero_disables)
{
	struct ratelimit_table *t = ratelimit_table_new(1);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(ratelimit_table_take(t, "x", "y", 0.0, 1, 100), 0);
	ratelimit_table_free(t);
}
END_TEST

START_TEST(table_memory_is_bounded_and_evicts_idle)
{
	/* One set of RATELIMIT_WAYS buckets for 1000 clients. */
	struct ratelimit_table *t = ratelimit_table_new(1);
	char who[32];
	for (int i = 0; i < 1000; i++) {
		snprintf(who, sizeof(who), "ip:%d", i);
		ck_assert_int_eq(ratelimit_table_take(t, "login", who, 1.0, 1, 1000 + i), 0);
	}
	/* The most recent clients are still limited... */
	ck_assert_int_gt(ratelimit_table_take(t, "login", "ip:999", 1.0, 1, 1999), 0);
	/* ...an evicted one starts again with a full bucket. */
	ck_assert_int_eq(ratelimit_table_take(t, "login", "ip:0", 1.0, 1, 1999), 0);
	ratelimit_table_free(t);
}
END_TEST

START_TEST(long_keys_are_truncated_safely)
{
	struct ratelimit_table *t = ratelimit_table_new(4);
	char who[2000];
	memset(who, 'x', sizeof(who) - 1);
	who[sizeof(who) - 1] = '\0';
	ck_assert_int_eq(ratelimit_table_take(t, "login", who, 1.0, 1, 10), 0);
	ck_assert_int_gt(ratelimit_table_take(t, "login", who, 1.0, 1, 10), 0);
	ratelimit_table_free(t);
}
END_TEST

UNIT_MAIN("ratelimit", new_bucket_allows_burst_then_refuses, refill_is_proportional_to_time, refill_caps_at_burst,
	  clock_going_back_does_not_refill, slow_rate_wait_rounds_up, table_keys_are_separate, table_rate_zero_disables,
	  table_memory_is_bounded_and_evicts_idle, long_keys_are_truncated_safely)
