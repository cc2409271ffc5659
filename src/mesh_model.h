/* mesh_model.h - the latency model of the mesh: physical floor plus learned
 * per-node access delays plus learned per-link corrections. See the header
 * of mesh_model.c for the model and its update rule. Domain module: no HTTP,
 * no SQL; not thread-safe by itself (the registry's lock guards it). */
#ifndef AL_MESH_MODEL_H
#define AL_MESH_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Speed of light in fibre, about 2/3 c, in km per millisecond. */
#define MESH_FIBRE_KM_PER_MS 199.86
#define MESH_EARTH_RADIUS_KM 6371.0
/* Access delay assumed for a node nobody has measured yet (ms, one way)
 * before anything was learned: where each class's mean access delay
 * starts (with sd MESH_CLASS_MEAN_PRIOR_SD_MS); the mean is learned from
 * the first reports of the class's nodes. It is also what the database
 * holds for a node that was never measured. */
#define MESH_ACCESS_PRIOR_MS 10.0
/* A node nobody measured yet is predicted at its class's
 * mean, with an sd of MESH_ACCESS_SPREAD_SHARE times that mean (access
 * delays are positive and skewed: as for an exponential distribution, the
 * spread is about the mean), at least MESH_ACCESS_SPREAD_MIN_MS. The
 * registry re-applies the means to unmeasured nodes whenever one moved by
 * MESH_CLASS_REFRESH_MS (mesh_model_prior_version). */
#define MESH_CLASS_MEAN_PRIOR_SD_MS 5.0
#define MESH_ACCESS_SPREAD_SHARE 1.0
#define MESH_ACCESS_SPREAD_MIN_MS 1.0
#define MESH_CLASS_REFRESH_MS 0.25
/* A heartbeat's latency to the mesh (mesh_model_heartbeat) is the node's
 * access delay plus what the relay side adds: an offset learned from
 * nodes with at least MESH_HB_CALIBRATE_LINKS reported links, which
 * starts at MESH_HB_OFFSET_PRIOR_MS (sd ..._SD_MS, worth MESH_HB_PRIOR_N
 * nodes). */
#define MESH_HB_OFFSET_PRIOR_MS 5.0
#define MESH_HB_OFFSET_PRIOR_SD_MS 5.0
#define MESH_HB_PRIOR_N 10.0
#define MESH_HB_CALIBRATE_LINKS 3
/* The correction of a link before any report: a mixture of "normal"
 * (mean 0, variance (s0 * floor)^2 + MESH_LINK_SD_MS^2) and "detour" (mean
 * mu1 * floor, variance (s1 * floor)^2 + MESH_DETOUR_SD_MS^2: a detour
 * can add tens of ms even to a short link) at a rate pi.
 * pi, mu1, s0 and s1 are learned; they start at MESH_DETOUR_PRIOR_RATE,
 * MESH_DETOUR_PRIOR_SHARE, MESH_LINK_SD_SHARE and MESH_DETOUR_SD_SHARE,
 * worth MESH_DETOUR_PRIOR_N first reports on links of
 * MESH_DETOUR_PRIOR_FLOOR_MS. */
#define MESH_LINK_SD_SHARE 0.25
#define MESH_LINK_SD_MS 5.0
#define MESH_DETOUR_SD_MS 30.0
#define MESH_DETOUR_SD_SHARE 0.6
#define MESH_DETOUR_PRIOR_RATE 0.1
#define MESH_DETOUR_PRIOR_SHARE 1.0
#define MESH_DETOUR_PRIOR_N 50.0
#define MESH_DETOUR_PRIOR_FLOOR_MS 30.0
/* Measurement noise of a report (share of the measured latency) and the
 * drift added to every variance per update (so the model keeps following
 * slow changes). */
#define MESH_REPORT_NOISE_SHARE 0.03
/* Global inflation of the floor before any report, and its sd. */
#define MESH_INFLATION_PRIOR 0.3
#define MESH_INFLATION_PRIOR_SD 0.15
#define MESH_DRIFT_VAR 0.5
/* At most this many learned link corrections are kept. When the table is
 * full a new link evicts the least used (fewest reports, counts halved
 * after every table's worth of evictions) of MESH_MODEL_EVICT_SAMPLES
 * entries sampled at random. */
#define MESH_MODEL_MAX_LINKS (1u << 18)
#define MESH_MODEL_EVICT_SAMPLES 16

/* A node remembers the other ends of up to this many of its reported
 * links; while it has no more links than that, its access delay is
 * re-estimated from all of them after each report (mesh_model.c). */
#define MESH_NODE_LINKS 6

/* The part of a node the model needs. key is unique per node for the life of
 * the model (the registry's serial); x,y,z its position on the unit sphere. */
struct mesh_mnode {
	uint32_t key;
	float x, y, z;
	float acc_ms;                  /* learned one-way access delay estimate */
	float acc_var;                 /* its variance (ms^2); 0 = nothing measured: the class mean */
	uint8_t cls;                   /* MESH_CLASS_*: whose access delays it shares a prior with */
	uint8_t nlinks;                /* distinct links reported on (saturates at 255) */
	uint8_t src;                   /* MESH_ACC_*: where acc_ms comes from */
	float hb_ms;                   /* its latency to the mesh from heartbeats, 0 = none */
	uint32_t nbr[MESH_NODE_LINKS]; /* keys of the other ends of its first links */
};

/* Where a node's access delay estimate comes from: its class mean (then
 * acc_var is 0), its heartbeats, or reports (or the database, which holds
 * what reports taught). */
#define MESH_ACC_PRIOR 0
#define MESH_ACC_HEARTBEAT 1
#define MESH_ACC_MEASURED 2

/* Classes of nodes for the access-delay prior: end devices (peers: home
 * and mobile links) and infrastructure (relay, edge, super_node: hosted
 * machines). Each class has a learned mean (see mesh_model.c). */
#define MESH_CLASS_DEVICE 0
#define MESH_CLASS_INFRA 1
#define MESH_CLASSES 2

struct mesh_model;

struct mesh_model *mesh_model_new(void);
void mesh_model_free(struct mesh_model *m);

/* Position from degrees (latitude -90..90, longitude -180..180). */
void mesh_mnode_set_position(struct mesh_mnode *n, double lat_deg, double lon_deg);

/* Great-circle distance (km) between two nodes, and its latency floor at
 * 2/3 c (ms, one way). Both obey the triangle inequality. */
double mesh_model_distance_km(const struct mesh_mnode *a, const struct mesh_mnode *b);
double mesh_model_floor_ms(const struct mesh_mnode *a, const struct mesh_mnode *b);

/* A lower bound on mesh_model_floor_ms(a, b), at most 0.06 ms below it,
 * without asin (for the search's pruning; a few multiplications and one
 * sqrt). The floor is the angle 2 asin(x), x = chord / 2, times
 * MESH_EARTH_RADIUS_KM / MESH_FIBRE_KM_PER_MS. Up to 90 degrees (x^2 <=
 * 1/2) asin(x) is bounded below by its Taylor series cut after x^9 (every
 * term is positive); beyond, asin(x) = pi/2 - asin(y), y = sqrt(1 - x^2)
 * <= 1/sqrt(2), and asin(y) is bounded above by the same terms plus
 * 0.00082, what the cut terms add at y = 1/sqrt(2) at most (they grow
 * with y). Both cuts lose at most 0.00082 of asin (0.05 ms of floor);
 * 1e-6 rad more covers the rounding. */
#define MESH_FLOOR_LB_MAX_ERR_MS 0.06 /* floor - mesh_model_floor_lb_ms never exceeds it */
static inline double mesh_model_floor_lb_ms(const struct mesh_mnode *a, const struct mesh_mnode *b)
{
	double dx = (double)a->x - b->x, dy = (double)a->y - b->y, dz = (double)a->z - b->z;
	double x2 = (dx * dx + dy * dy + dz * dz) * 0.25, th;
	if (x2 <= 0.5) {
		double x = __builtin_sqrt(x2);
		th = 2 * x * (1 + x2 * (1.0 / 6 + x2 * (3.0 / 40 + x2 * (5.0 / 112 + x2 * (35.0 / 1152)))));
	} else {
		double y2 = x2 < 1 ? 1 - x2 : 0, y = __builtin_sqrt(y2);
		double asin_y = y * (1 + y2 * (1.0 / 6 + y2 * (3.0 / 40 + y2 * (5.0 / 112 + y2 * (35.0 / 1152))))) +
				0.00082;
		th = 3.14159265358979323846 - 2 * asin_y;
	}
	th -= 1e-6;
	return th > 0 ? th * (MESH_EARTH_RADIUS_KM / MESH_FIBRE_KM_PER_MS) : 0;
}

/* Predicted one-way latency of the link a-b (ms):
 * max(floor, floor * (1 + g) + acc_a + acc_b + corr_ab). */
double mesh_model_link_ms(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b);

/* What the model believes of the link a-b beyond its predicted mean: with
 * probability p_ok its latency is about N(ok_ms, ok_var) -- for a link
 * nobody reported on, that it is not a detour (p_ok = 1 - detour rate;
 * ok_ms its latency then, below the mean, which counts the detour risk);
 * for a reported link, p_ok = 1 and ok_ms = mesh_model_link_ms. The
 * variances count the link's terms as independent. */
struct mesh_link_belief {
	double ok_ms, ok_var, p_ok;
	bool reported;
};
void mesh_model_link_belief(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			    struct mesh_link_belief *out);

/* A lower bound on every learned correction (<= 0); see mesh_route.h. */
double mesh_model_corr_lower_bound(const struct mesh_model *m);

/* A lower bound on mesh_model_link_ms(m, a, b) when floor(a, b) >=
 * floor_lb, without the link table or asin. A link nobody reported on is
 * predicted at floor * (1 + g + its expected detour share) + acc[a] +
 * acc[b], and whether it was reported on is known from the ends' lists of
 * links (mesh_mnode.nbr) while one of them holds all of its links; else
 * the bound takes the least correction learned. */
double mesh_model_link_lb(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			  double floor_lb);
/* Bounds on mesh_model_link_belief(m, a, b) when floor(a, b) is between
 * floor_lb and floor_lb + MESH_FLOOR_LB_MAX_ERR_MS, without the link table
 * or asin: *ok_lb <= its ok_ms, *var_ub >= its ok_var. */
void mesh_model_belief_bound(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			     double floor_lb, double *ok_lb, double *var_ub);

/* Learn from the measured one-way latency of the path nodes[0..n-1]
 * (2 <= n <= 4). Updates the access delays of the nodes on it, the
 * corrections of its links and what is learned across links (g, the
 * class means, the detour mixture, the heartbeat offset). */
void mesh_model_learn(struct mesh_model *m, struct mesh_mnode *const *nodes, int n, double actual_ms);

/* Forget the links of a node (it was removed). O(links). */
void mesh_model_forget_node(struct mesh_model *m, uint32_t key);

/* The learned mean access delay of a class (>= 0), and a number that
 * changes whenever a class mean moved by MESH_CLASS_REFRESH_MS since the
 * last change: then the caller applies the means to its unmeasured nodes
 * with mesh_model_apply_prior (predictions read acc_ms as it is stored, so
 * the bounds of mesh_route hold at every moment). */
double mesh_model_class_mean(const struct mesh_model *m, int cls);
uint32_t mesh_model_prior_version(const struct mesh_model *m);
/* A node nobody measured (acc_var == 0) gets its class's mean. */
void mesh_model_apply_prior(const struct mesh_model *m, struct mesh_mnode *n);

/* A heartbeat's avg_latency_ms (> 0): the node's own measurement of its
 * latency to the mesh (its nearest relays). It includes the node's access
 * delay, so it bounds it, and minus what the relay side adds (a learned
 * offset) it estimates it: a node nobody reported on starts there, with
 * the offset's learned spread, instead of at its class mean. */
void mesh_model_heartbeat(const struct mesh_model *m, struct mesh_mnode *n, double avg_latency_ms);
/* The learned offset (and its sd). */
double mesh_model_heartbeat_offset(const struct mesh_model *m, double *sd);

/* The learned global inflation g (>= 0) of links that are not detours,
 * and the learned detour rate and excess (share of the floor). */
double mesh_model_inflation(const struct mesh_model *m);
void mesh_model_detours(const struct mesh_model *m, double *rate, double *share, double *sd_ok, double *sd_det);
size_t mesh_model_links(const struct mesh_model *m);
/* Tests: a smaller bound (evicts at once down to it); evictions so far. */
void mesh_model_set_max_links(struct mesh_model *m, size_t max);
uint64_t mesh_model_evictions(const struct mesh_model *m);
size_t mesh_model_memory_bytes(const struct mesh_model *m);

#endif
