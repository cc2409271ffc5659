#include "latency_ring.h"

#include <stdlib.h>

void latency_ring_add(struct latency_ring *r, uint64_t us)
{
	r->us[r->count % LATENCY_RING_SIZE] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	r->count++;
}

static int by_value(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* nearest rank: the smallest sample with at least p of them at or below */
static double rank_ms(const uint32_t *sorted, size_t n, double p)
{
	size_t k = (size_t)(p * (double)n + 0.999999);
	if (k < 1)
		k = 1;
	return sorted[(k > n ? n : k) - 1] / 1000.0;
}

json_t *latency_ring_summary(const struct latency_ring *r)
{
	size_t n = r->count < LATENCY_RING_SIZE ? (size_t)r->count : LATENCY_RING_SIZE;
	uint32_t *s = malloc((n + 1) * sizeof(*s));
	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i++)
		s[i] = r->us[i];
	qsort(s, n, sizeof(*s), by_value);
	json_t *o = json_pack("{s:I, s:I}", "count", (json_int_t)r->count, "samples", (json_int_t)n);
	if (o && n > 0) {
		json_object_set_new(o, "p50_ms", json_real(rank_ms(s, n, 0.50)));
		json_object_set_new(o, "p90_ms", json_real(rank_ms(s, n, 0.90)));
		json_object_set_new(o, "p99_ms", json_real(rank_ms(s, n, 0.99)));
		json_object_set_new(o, "max_ms", json_real(s[n - 1] / 1000.0));
	}
	free(s);
	return o;
}
