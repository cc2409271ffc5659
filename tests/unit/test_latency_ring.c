/* The latency ring: nearest-rank percentiles, the window of the last
 * LATENCY_RING_SIZE samples, an empty ring. */
#include <stdlib.h>

#include "latency_ring.h"
#include "unit.h"

static double field(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	ck_assert_msg(json_is_real(v), "%s missing", key);
	return json_real_value(v);
}

START_TEST(percentiles_by_nearest_rank)
{
	struct latency_ring *r = calloc(1, sizeof(*r));
	for (int i = 100; i >= 1; i--) /* 1..100 ms, in any order */
		latency_ring_add(r, (uint64_t)i * 1000);
	json_t *o = latency_ring_summary(r);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "count")), 100);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "samples")), 100);
	ck_assert_double_eq(field(o, "p50_ms"), 50.0);
	ck_assert_double_eq(field(o, "p90_ms"), 90.0);
	ck_assert_double_eq(field(o, "p99_ms"), 99.0);
	ck_assert_double_eq(field(o, "max_ms"), 100.0);
	json_decref(o);
	free(r);
}
END_TEST

START_TEST(keeps_the_last_window)
{
	struct latency_ring *r = calloc(1, sizeof(*r));
	for (int i = 0; i < LATENCY_RING_SIZE; i++)
		latency_ring_add(r, 1000000); /* old: 1 s each */
	for (int i = 0; i < LATENCY_RING_SIZE; i++)
		latency_ring_add(r, 250);
	json_t *o = latency_ring_summary(r);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "count")), 2 * LATENCY_RING_SIZE);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "samples")), LATENCY_RING_SIZE);
	ck_assert_double_eq(field(o, "max_ms"), 0.25);
	json_decref(o);
	latency_ring_add(r, UINT64_MAX); /* clamped, not wrapped */
	o = latency_ring_summary(r);
	ck_assert_double_eq(field(o, "max_ms"), UINT32_MAX / 1000.0);
	json_decref(o);
	free(r);
}
END_TEST

START_TEST(empty)
{
	struct latency_ring *r = calloc(1, sizeof(*r));
	json_t *o = latency_ring_summary(r);
	ck_assert_int_eq(json_integer_value(json_object_get(o, "samples")), 0);
	ck_assert_ptr_null(json_object_get(o, "p99_ms"));
	json_decref(o);
	free(r);
}
END_TEST

UNIT_MAIN("latency_ring", percentiles_by_nearest_rank, keeps_the_last_window, empty)
