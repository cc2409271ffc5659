/* mesh_model.h - the latency model of the mesh: physical floor plus learned
 * per-node access delays plus learned per-link corrections. See the header
 * of mesh_model.c for the model and its update rule. Domain module: no HTTP,
 * no SQL; not thread-safe by itself (the registry's lock guards it). */
#ifndef AL_MESH_MODEL_H
#define AL_MESH_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Speed of light in fibre, about 2/3 c, in km per millisecond. */
#define MESH_FIBRE_KM_PER_MS 199.86
#define MESH_EARTH_RADIUS_KM 6371.0
/* Access delay assumed for a node nobody has measured yet (ms, one way),
 * and the standard deviation of that guess. */
#define MESH_ACCESS_PRIOR_MS 10.0
#define MESH_ACCESS_PRIOR_SD_MS 15.0
/* Standard deviation of a link's correction before any report: a share of
 * its floor (cable detours grow with distance) plus a constant. */
#define MESH_LINK_PRIOR_SD_SHARE 0.5
#define MESH_LINK_PRIOR_SD_MS 20.0
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

/* The part of a node the model needs. key is unique per node for the life of
 * the model (the registry's serial); x,y,z its position on the unit sphere. */
struct mesh_mnode {
	uint32_t key;
	float x, y, z;
	float acc_ms;      /* learned one-way access delay estimate */
	float acc_var;     /* its variance (ms^2); 0 = not learned yet (prior) */
};

struct mesh_model;

struct mesh_model *mesh_model_new(void);
void mesh_model_free(struct mesh_model *m);

/* Position from degrees (latitude -90..90, longitude -180..180). */
void mesh_mnode_set_position(struct mesh_mnode *n, double lat_deg, double lon_deg);

/* Great-circle distance (km) between two nodes, and its latency floor at
 * 2/3 c (ms, one way). Both obey the triangle inequality. */
double mesh_model_distance_km(const struct mesh_mnode *a, const struct mesh_mnode *b);
double mesh_model_floor_ms(const struct mesh_mnode *a, const struct mesh_mnode *b);

/* Predicted one-way latency of the link a-b (ms):
 * max(floor, floor * (1 + g) + acc_a + acc_b + corr_ab). */
double mesh_model_link_ms(const struct mesh_model *m, const struct mesh_mnode *a,
			  const struct mesh_mnode *b);

/* A lower bound on every learned correction (<= 0); see mesh_route.h. */
double mesh_model_corr_lower_bound(const struct mesh_model *m);

/* Learn from the measured one-way latency of the path nodes[0..n-1]
 * (2 <= n <= 4). Updates the access delays of the nodes on it and the
 * corrections of its links. */
void mesh_model_learn(struct mesh_model *m, struct mesh_mnode *const *nodes, int n, double actual_ms);

/* Forget the links of a node (it was removed). O(links). */
void mesh_model_forget_node(struct mesh_model *m, uint32_t key);

/* The learned global inflation g (>= 0). */
double mesh_model_inflation(const struct mesh_model *m);
size_t mesh_model_links(const struct mesh_model *m);
/* Tests: a smaller bound (evicts at once down to it); evictions so far. */
void mesh_model_set_max_links(struct mesh_model *m, size_t max);
uint64_t mesh_model_evictions(const struct mesh_model *m);
size_t mesh_model_memory_bytes(const struct mesh_model *m);

#endif
