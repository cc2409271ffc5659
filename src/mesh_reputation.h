/* mesh_reputation.h - node reputation (0..100), its trust tiers, the
 * standard changes, and the batched node_reputation_events log. */
#ifndef AL_MESH_REPUTATION_H
#define AL_MESH_REPUTATION_H

#include <pthread.h>
#include <stddef.h>

#include "db.h"
#include "error.h"

/* Tiers: >= 90 verified, >= 70 trusted, >= 30 new, >= 10 suspicious,
 * below 10 banned. */
enum mesh_trust {
	MESH_TRUST_BANNED,
	MESH_TRUST_SUSPICIOUS,
	MESH_TRUST_NEW,
	MESH_TRUST_TRUSTED,
	MESH_TRUST_VERIFIED,
};

#define MESH_REPUTATION_INITIAL 50.0
#define MESH_RELAY_MIN_REPUTATION 70.0

enum mesh_trust mesh_reputation_tier(double score);
const char *mesh_trust_name(enum mesh_trust t);

/* node_reputation_events.event_type */
enum mesh_rep_event {
	MESH_REP_ROUTE_SUCCESS,
	MESH_REP_ROUTE_FAILURE,
	MESH_REP_MISSED_HEARTBEAT,
	MESH_REP_ABUSE_CONFIRMED,
	MESH_REP_ADMIN_ADJUSTMENT,
	MESH_REP_UPTIME_BONUS,
	MESH_REP_NEVENTS
};

/* Standard changes (points) */
#define MESH_REP_DELTA_ROUTE_SUCCESS 0.5
#define MESH_REP_DELTA_ROUTE_FAILURE (-2.0)
#define MESH_REP_DELTA_MISSED_HEARTBEAT (-1.0)

const char *mesh_rep_event_name(enum mesh_rep_event e);
/* -1 when unknown */
int mesh_rep_event_parse(const char *name);
/* The change for a confirmed abuse report of a severity (low..critical). */
double mesh_reputation_abuse_delta(const char *severity);

/* New score after a change, clamped to 0..100. */
double mesh_reputation_apply(double score, double change);

/* ---- the event log, written in batches ---- */
struct mesh_rep_queue;
struct mesh_rep_queue *mesh_rep_queue_new(void);
void mesh_rep_queue_free(struct mesh_rep_queue *q);
/* Queue one row (node_id a uuid string; description and route_id may be
 * NULL). Thread-safe. Returns -1 when the queue is full (event dropped and
 * counted). */
int mesh_rep_queue_push(struct mesh_rep_queue *q, const char *node_id, enum mesh_rep_event e, double prev, double now,
			double change, const char *description, const char *route_id);
size_t mesh_rep_queue_len(struct mesh_rep_queue *q);
/* Write every queued row with one INSERT ... SELECT FROM unnest(...).
 * Rows of nodes deleted meanwhile are skipped. On failure they stay queued. */
int mesh_rep_queue_flush(struct mesh_rep_queue *q, struct db *db, struct al_error *err);

#endif
