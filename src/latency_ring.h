/* latency_ring.h - the last LATENCY_RING_SIZE durations of something (in
 * microseconds) and their percentiles, for figures an operator can read
 * from the running server (GET /_auralink/admin/v1/sync/wakes). Not
 * thread-safe: the owner holds its lock around every call. */
#ifndef AL_LATENCY_RING_H
#define AL_LATENCY_RING_H

#include <jansson.h>
#include <stdint.h>

#define LATENCY_RING_SIZE 4096

struct latency_ring {
	uint32_t us[LATENCY_RING_SIZE];
	uint64_t count; /* all ever recorded */
};

void latency_ring_add(struct latency_ring *r, uint64_t us);

/* {count, samples, p50_ms, p90_ms, p99_ms, max_ms} over the samples kept. */
json_t *latency_ring_summary(const struct latency_ring *r);

#endif
