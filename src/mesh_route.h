/* mesh_route.h - route selection: the score of a path, the exact pruned
 * search over direct, one-relay and two-relay paths, and the route cache.
 * Domain module: no HTTP, no SQL. */
#ifndef AL_MESH_ROUTE_H
#define AL_MESH_ROUTE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mesh_model.h"

/* What the search needs of a node. Relays handed to the search must already
 * be eligible (mesh_registry decides: trust, capacity, media). */
struct mesh_rnode {
	struct mesh_mnode m; /* position and learned access delay */
	float bw_avail_mbps; /* bandwidth_capacity - bandwidth_used, >= 0 */
	float reputation;    /* 0..100 */
	float uptime;        /* uptime_percentage 0..100 */
	bool aic;            /* supports_aic */
	uint32_t epoch;      /* bumped when the node goes offline or loses trust */
};

/* ---- the score: the one place that defines it ----
 *
 * A path of 1..3 links (direct, one relay, two relays) is described by
 *   latency_ms    sum of the links' one-way latencies
 *   bandwidth     the bottleneck: least available bandwidth of its nodes
 *   reputation    the least reputation of its nodes
 *   uptime        the least uptime of its nodes
 *   links         hop count (1..3)
 *   aic           every node supports AIC
 * Each factor is normalised to 0..1 on an absolute scale (never relative to
 * the other candidates, so a score means the same in every query and can be
 * recomputed with measured values):
 *   latency_n   = min(latency_ms, 300) / 300      (300 ms one way: unusable)
 *   bandwidth_n = min(bandwidth, 100) / 100       (100 Mbit/s: more is no better)
 *   reputation_n= reputation / 100
 *   hop_n       = (links - 1) / 2
 *   aic_n       = 1 or 0
 *   uptime_n    = uptime / 100
 * raw = -0.40 latency_n + 0.25 bandwidth_n + 0.15 reputation_n
 *       -0.10 hop_n + 0.05 aic_n + 0.05 uptime_n       (in [-0.5, 0.5])
 * score = 100 * (raw + 0.5)                            (in [0, 100])
 * The score never increases with latency or hop count and never decreases
 * with bandwidth, reputation, uptime or AIC; the search's bounds rely on it.
 */
#define MESH_W_LATENCY (-0.40)
#define MESH_W_BANDWIDTH 0.25
#define MESH_W_REPUTATION 0.15
#define MESH_W_HOPS (-0.10)
#define MESH_W_AIC 0.05
#define MESH_W_UPTIME 0.05
#define MESH_LATENCY_SCALE_MS 300.0
#define MESH_BANDWIDTH_SCALE_MBPS 100.0

/* A route is optimal (mesh_routes.is_optimal, the optimal_routes of the
 * analytics) when, re-scored with its measured latency (the mean of its
 * reports) in place of the predicted one, it scores within this many
 * points of the best path the search finds between the same two nodes
 * after learning from those reports, or is that path itself. Until a
 * latency is reported a route is not counted as optimal. 2 points are
 * 15 ms of one-way latency, the tolerance of bench/mesh_sim's route-choice
 * accuracy. */
#define MESH_OPTIMAL_TOLERANCE_POINTS 2.0

struct mesh_path_metrics {
	double latency_ms;
	double bandwidth_mbps;
	double reputation;
	double uptime;
	int links;
	bool aic;
};

/* The six normalised factors, in the order latency, bandwidth, reputation,
 * hop_count, aic_support, uptime. */
void mesh_route_factors(const struct mesh_path_metrics *pm, double f[6]);
double mesh_route_score(const struct mesh_path_metrics *pm);

/* ---- latency of a link, as the search sees it ---- */
struct mesh_oracle {
	double (*link_ms)(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b);
	void *ctx;
	/* Promise: link_ms(a,b) >= floor(a,b) + max(0, a->m.acc_ms + b->m.acc_ms
	 * + corr_lb) for every a, b. */
	double corr_lb;
	/* Optional (NULL: no exploration): what is believed of a link beyond
	 * link_ms (mesh_model_link_belief). */
	void (*link_belief)(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b,
			    struct mesh_link_belief *out);
	/* Optional: a lower bound on link_ms(a, b) for any floor(a, b) >=
	 * floor_lb, cheaper than link_ms (mesh_model_link_lb); the search
	 * bounds with the larger of it and the promise above. */
	double (*link_lb)(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb);
	/* Optional, with link_belief: bounds on link_belief(a, b) for any
	 * floor(a, b) in [floor_lb, floor_lb + MESH_FLOOR_LB_MAX_ERR_MS]:
	 * *ok_lb <= ok_ms, *var_ub >= ok_var (mesh_model_belief_bound). */
	void (*belief_bound)(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb,
			     double *ok_lb, double *var_ub);
};

/* The learned model as an oracle (ctx = the struct mesh_model). */
double mesh_route_model_link(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b);
void mesh_route_model_link_belief(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b,
				  struct mesh_link_belief *out);
double mesh_route_model_link_lb(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb);
void mesh_route_model_belief_bound(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb,
				   double *ok_lb, double *var_ub);
void mesh_route_model_oracle(struct mesh_oracle *o, const struct mesh_model *m);

struct mesh_route_query {
	const struct mesh_rnode *src, *dst;
	const struct mesh_rnode *const *relays; /* eligible relays (src, dst skipped) */
	size_t nrelays;
	bool require_aic;
	int max_relays; /* 0, 1 or 2 */
	const struct mesh_oracle *lat;
	/* > 0: explore (see mesh_route_search); the cost of trying a path, in
	 * score points. 0: the path of best predicted score. */
	double explore_cost;
	/* Optional: acc_min <= m.acc_ms of every relay in relays. Without it
	 * the search reads every relay for it; with it a query whose bounds
	 * rule every relayed path out reads none. */
	bool acc_min_known;
	double acc_min;
};

/* Exploration. The best predicted path is the best choice for one call,
 * but a path nobody reported on may be better than predicted, and only a
 * call over it tells. With explore_cost > 0 the search then weighs what a
 * try could find: each path with an unreported link gets Weitzman's index
 * for opening a box (the Pandora rule): the score z at which the expected
 * gain of trying it, E[max(0, S - z)] for its score S, equals
 * explore_cost. S is what the model believes of the path: with
 * probability w (no link on it a detour) about N(mean, sd^2) from the
 * links' link_belief, else lower (which adds nearly nothing to the gain
 * above z, so it is left out): w sd f((mean - z) / sd) = explore_cost. A
 * path whose links were all reported keeps its predicted score. The path of highest index is chosen. So an
 * uncertain path is tried while it could plausibly beat the best known
 * one by more than the cost, and trying stops once a known path is better
 * than every untried path's index: a few tries, then the best of them for
 * good (the rule is optimal for opening boxes at a cost). Only the direct
 * and one-relay paths are candidates for a try; the route reports the
 * chosen path's predicted metrics, never the index. */
#define MESH_EXPLORE_COST_POINTS 0.5

struct mesh_route_result {
	const struct mesh_rnode *path[4];
	int n; /* nodes on the path, 2..4 */
	struct mesh_path_metrics pm;
	double score;
	size_t evaluated; /* paths whose latency was computed in full */
	bool explored;    /* chosen to be tried, not the best predicted path */
};

/* Metrics of a given path under the oracle. */
void mesh_route_path_metrics(const struct mesh_oracle *lat, const struct mesh_rnode *const *path, int n,
			     struct mesh_path_metrics *pm);

/* The best path from src to dst: exact (the same optimum as trying every
 * path), pruned with upper bounds on the achievable score. Returns 0, or -1
 * when there is none (require_aic and an endpoint without AIC) or memory
 * ran out. */
int mesh_route_search(const struct mesh_route_query *q, struct mesh_route_result *out);

/* Every path, for tests and the simulator's checks; with explore_cost > 0
 * the index of every direct and one-relay path, unpruned. */
int mesh_route_brute_force(const struct mesh_route_query *q, struct mesh_route_result *out);

/* ---- route cache: 5 minutes, dropped when a node on it changes ---- */
#define MESH_ROUTE_TTL_MS (5 * 60 * 1000)
#define MESH_ROUTE_KEY_MAX 600

struct mesh_cached_route {
	char route_id[40];
	int64_t expires_ms;
	int n;
	uint32_t keys[4];   /* mesh_mnode.key of the nodes */
	uint32_t epochs[4]; /* their epochs when the route was chosen */
	char node_ids[4][37];
	struct mesh_path_metrics pm;
	double score;
};

/* Tells whether node `key` still has `epoch` (online, trust unchanged). */
typedef bool (*mesh_route_valid_fn)(void *ctx, uint32_t key, uint32_t epoch);

struct mesh_route_cache;
struct mesh_route_cache *mesh_route_cache_new(size_t nsets);
void mesh_route_cache_free(struct mesh_route_cache *c);
/* 0 and *out filled on a hit; -1 on a miss (absent, expired or a node
 * changed: such an entry is dropped). Thread-safe. */
int mesh_route_cache_get(struct mesh_route_cache *c, const char *key, int64_t now_ms, mesh_route_valid_fn valid,
			 void *ctx, struct mesh_cached_route *out);
void mesh_route_cache_put(struct mesh_route_cache *c, const char *key, const struct mesh_cached_route *r);
/* Drop the entry whose route_id is given (e.g. after a failure report). */
void mesh_route_cache_drop_route(struct mesh_route_cache *c, const char *route_id);

#endif
