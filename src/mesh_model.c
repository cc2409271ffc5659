/* mesh_model.c - latency prediction for mesh paths, learned from reports.
 *
 * The model. The one-way latency of a link between nodes a and b is
 *
 *     link(a, b) = max(floor(a, b), floor(a, b) * (1 + g) + acc[a] + acc[b] + corr[a, b])
 *
 *   floor(a, b)  great-circle distance / (2/3 c): light in fibre on the
 *                shortest possible cable. Nothing is faster; it is exact and
 *                needs no learning. It obeys the triangle inequality, which
 *                the route search uses for its bounds.
 *   g            how much longer real cables are than the great circle, on
 *                average over every link reported (>= 0, learned; real
 *                networks: 0.2..0.5). Unreported links inherit it.
 *   acc[n]       the access delay of node n (last mile, NAT, the host's own
 *                stack): one number per node, shared by every link of n, so
 *                a report on one path improves predictions for all paths
 *                through its nodes. Starts at MESH_ACCESS_PRIOR_MS.
 *   corr[a, b]   a correction for the link itself (cable detours, peering,
 *                congestion): what the node terms cannot explain. Starts at 0
 *                and exists only for links somebody reported on.
 *
 * A path's latency is the sum of its links (a relay pays its access delay
 * twice, in and out).
 *
 * Learning: a Kalman filter over the terms of the reported path (the
 * covariance kept diagonal, so each term carries one variance). A report
 * gives the measured latency L of a path whose prediction (before
 * clamping) was P; the residual is r = L - P. Node i appears c_i times in
 * the sum (1 for an end, 2 for a relay), each link once. With the prior
 * variances P_i of the access delays and Q_l of the link corrections and
 * the measurement noise R = (MESH_REPORT_NOISE_SHARE * L)^2:
 *     S      = sum c_i^2 P_i + sum Q_l + F^2 G + R     (F = sum of floors)
 *     g     += (F G / S) r              G   -= F^2 G^2 / S
 *     acc_i += (c_i P_i / S) r          P_i -= c_i^2 P_i^2 / S
 *     corr_l+= (Q_l / S) r              Q_l -= Q_l^2 / S
 * (plus MESH_DRIFT_VAR to each variance, so they never freeze). A new node
 * starts at MESH_ACCESS_PRIOR_MS with sd MESH_ACCESS_PRIOR_SD_MS, a new link
 * at 0 with sd 0.5 * floor + 20 ms. The residual is thus shared between
 * what every link of a node has in common and what belongs to this link,
 * in proportion to how uncertain each still is: a node's first reports
 * mostly move its access delay (which helps all its other paths); once it
 * is known, the rest goes to the links. Each update is the exact Bayesian
 * posterior mean for Gaussian priors, so the error of a path that keeps
 * being reported shrinks like the noise over the square root of reports.
 * Corrections live in a bounded hash table (MESH_MODEL_MAX_LINKS): when it
 * is full, a new link evicts the least used of a few sampled links (see
 * evict_one). They are not persisted (access delays are, in
 * mesh_nodes.access_delay_ms).
 */
#include "mesh_model.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct link_entry {
	uint64_t key; /* 0 = empty */
	float corr;
	float var;     /* 0 = prior */
	uint32_t uses; /* reports on the link, halved as evictions go on (evict_one) */
};

struct mesh_model {
	struct link_entry *tab;
	size_t cap; /* power of two */
	size_t count;
	size_t max_links;  /* MESH_MODEL_MAX_LINKS unless a test sets less */
	uint64_t rng;      /* xorshift state for eviction samples */
	uint64_t evictions;
	double corr_min; /* <= every corr, <= 0 */
	double g, g_var; /* global inflation of the floor (>= 0) and its variance */
};

struct mesh_model *mesh_model_new(void)
{
	struct mesh_model *m = calloc(1, sizeof(*m));
	if (!m)
		return NULL;
	m->cap = 1024;
	m->max_links = MESH_MODEL_MAX_LINKS;
	m->rng = 0x9E3779B97F4A7C15ull;
	m->g = MESH_INFLATION_PRIOR;
	m->g_var = MESH_INFLATION_PRIOR_SD * MESH_INFLATION_PRIOR_SD;
	m->tab = calloc(m->cap, sizeof(*m->tab));
	if (!m->tab) {
		free(m);
		return NULL;
	}
	return m;
}

void mesh_model_free(struct mesh_model *m)
{
	if (!m)
		return;
	free(m->tab);
	free(m);
}

void mesh_mnode_set_position(struct mesh_mnode *n, double lat_deg, double lon_deg)
{
	double la = lat_deg * M_PI / 180.0, lo = lon_deg * M_PI / 180.0;
	n->x = (float)(cos(la) * cos(lo));
	n->y = (float)(cos(la) * sin(lo));
	n->z = (float)sin(la);
}

double mesh_model_distance_km(const struct mesh_mnode *a, const struct mesh_mnode *b)
{
	/* The chord length c gives the angle 2*asin(c/2), accurate for small
	 * and large distances alike (unlike acos of the dot product). */
	double dx = (double)a->x - b->x, dy = (double)a->y - b->y, dz = (double)a->z - b->z;
	double c = sqrt(dx * dx + dy * dy + dz * dz);
	if (c > 2.0)
		c = 2.0;
	return 2.0 * asin(c / 2.0) * MESH_EARTH_RADIUS_KM;
}

double mesh_model_floor_ms(const struct mesh_mnode *a, const struct mesh_mnode *b)
{
	return mesh_model_distance_km(a, b) / MESH_FIBRE_KM_PER_MS;
}

static uint64_t link_key(uint32_t a, uint32_t b)
{
	return a < b ? ((uint64_t)a << 32) | b : ((uint64_t)b << 32) | a;
}

static size_t slot_of(uint64_t key, size_t cap)
{
	uint64_t h = key * 0x9E3779B97F4A7C15ull;
	return (size_t)(h >> 20) & (cap - 1);
}

static const struct link_entry *find(const struct mesh_model *m, uint64_t key)
{
	if (!m->count)
		return NULL;
	for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
		if (m->tab[i].key == key)
			return &m->tab[i];
		if (!m->tab[i].key)
			return NULL;
	}
}

static int grow(struct mesh_model *m)
{
	size_t ncap = m->cap * 2;
	struct link_entry *t = calloc(ncap, sizeof(*t));
	if (!t)
		return -1;
	for (size_t i = 0; i < m->cap; i++) {
		if (!m->tab[i].key)
			continue;
		size_t j = slot_of(m->tab[i].key, ncap);
		while (t[j].key)
			j = (j + 1) & (ncap - 1);
		t[j] = m->tab[i];
	}
	free(m->tab);
	m->tab = t;
	m->cap = ncap;
	return 0;
}

/* Backward-shift deletion at i (linear probing without tombstones). */
static void delete_at(struct mesh_model *m, size_t i)
{
	size_t mask = m->cap - 1;
	m->tab[i].key = 0;
	m->count--;
	for (size_t j = (i + 1) & mask; m->tab[j].key; j = (j + 1) & mask) {
		size_t home = slot_of(m->tab[j].key, m->cap);
		/* move j to i when its home is not in (i, j] cyclically */
		bool between = i <= j ? (home > i && home <= j) : (home > i || home <= j);
		if (!between) {
			m->tab[i] = m->tab[j];
			m->tab[j].key = 0;
			i = j;
		}
	}
}

/* The table is full: drop the least used of MESH_MODEL_EVICT_SAMPLES
 * entries sampled at random (an approximation of least-used over the whole
 * table at O(1) cost, as Redis samples for its LFU eviction). Use counts
 * age: every time as many links were evicted as the table holds, all
 * counts are halved (O(cap) once per max_links evictions), so a link that
 * stopped being reported loses its place to links in use instead of
 * holding it forever. corr_min stays a valid lower bound. */
static bool kept(uint64_t key, const uint64_t *keep, int nkeep)
{
	for (int i = 0; i < nkeep; i++)
		if (keep[i] == key)
			return true;
	return false;
}

static void evict_one(struct mesh_model *m, const uint64_t *keep, int nkeep)
{
	size_t victim = SIZE_MAX;
	/* the sample: the first entries from a random slot on (slots hold
	 * hashed keys, so neighbours are unrelated links); the table is at
	 * least half empty, so this walks about 2 * SAMPLES slots */
	m->rng ^= m->rng << 13;
	m->rng ^= m->rng >> 7;
	m->rng ^= m->rng << 17;
	size_t i = (size_t)(m->rng & (m->cap - 1));
	for (size_t step = 0, k = 0; step < m->cap && k < MESH_MODEL_EVICT_SAMPLES; step++, i = (i + 1) & (m->cap - 1)) {
		if (!m->tab[i].key || kept(m->tab[i].key, keep, nkeep))
			continue;
		k++;
		if (victim == SIZE_MAX || m->tab[i].uses < m->tab[victim].uses)
			victim = i;
	}
	if (victim == SIZE_MAX)
		return;
	delete_at(m, victim);
	if (++m->evictions % m->max_links == 0)
		for (size_t j = 0; j < m->cap; j++)
			m->tab[j].uses /= 2;
}

/* Make sure key has an entry (evicting when the table is full, never one
 * of keep[0..nkeep-1]: the other links of the same report). -1 when it
 * could not be added. Insertions move entries (growth, eviction): look
 * pointers up with find() only after the last one. */
static int add_link(struct mesh_model *m, uint64_t key, const uint64_t *keep, int nkeep)
{
	if (find(m, key))
		return 0;
	if (m->count >= m->max_links) {
		evict_one(m, keep, nkeep);
		if (m->count >= m->max_links)
			return -1;
	}
	if ((m->count + 1) * 2 > m->cap && grow(m) < 0)
		return -1;
	size_t i = slot_of(key, m->cap);
	while (m->tab[i].key)
		i = (i + 1) & (m->cap - 1);
	m->tab[i].key = key;
	m->tab[i].corr = 0;
	m->tab[i].var = 0;
	m->tab[i].uses = 0;
	m->count++;
	return 0;
}

static double raw_link(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
		       double *floor_out)
{
	double fl = mesh_model_floor_ms(a, b);
	const struct link_entry *e = find(m, link_key(a->key, b->key));
	if (floor_out)
		*floor_out = fl;
	return fl * (1.0 + m->g) + a->acc_ms + b->acc_ms + (e ? e->corr : 0.0);
}

double mesh_model_link_ms(const struct mesh_model *m, const struct mesh_mnode *a,
			  const struct mesh_mnode *b)
{
	double fl;
	double v = raw_link(m, a, b, &fl);
	return v < fl ? fl : v;
}

double mesh_model_corr_lower_bound(const struct mesh_model *m)
{
	return m->corr_min;
}

static double link_prior_var(double floor_ms)
{
	double sd = MESH_LINK_PRIOR_SD_SHARE * floor_ms + MESH_LINK_PRIOR_SD_MS;
	return sd * sd;
}

void mesh_model_learn(struct mesh_model *m, struct mesh_mnode *const *nodes, int n, double actual_ms)
{
	if (n < 2 || n > 4 || !(actual_ms >= 0) || actual_ms > 1e6)
		return;
	int links = n - 1;
	struct link_entry *le[3];
	uint64_t keys[3];
	double q[3], fl[3], pred = 0, s = 0;
	for (int i = 0; i < links; i++) {
		pred += raw_link(m, nodes[i], nodes[i + 1], &fl[i]);
		keys[i] = link_key(nodes[i]->key, nodes[i + 1]->key);
	}
	for (int i = 0; i < links; i++)
		add_link(m, keys[i], keys, links); /* failed: the link keeps no correction */
	for (int i = 0; i < links; i++) {
		le[i] = (struct link_entry *)find(m, keys[i]);
		q[i] = le[i] && le[i]->var > 0 ? le[i]->var : link_prior_var(fl[i]);
		s += q[i];
	}
	double sum_floor = 0;
	for (int i = 0; i < links; i++)
		sum_floor += mesh_model_floor_ms(nodes[i], nodes[i + 1]);
	s += sum_floor * sum_floor * m->g_var;
	double p[4];
	for (int i = 0; i < n; i++) {
		double c = (i == 0 || i == n - 1) ? 1 : 2;
		p[i] = nodes[i]->acc_var > 0 ? nodes[i]->acc_var
					     : MESH_ACCESS_PRIOR_SD_MS * MESH_ACCESS_PRIOR_SD_MS;
		s += c * c * p[i];
	}
	double noise = MESH_REPORT_NOISE_SHARE * actual_ms;
	s += noise * noise + 1e-6;
	double r = actual_ms - pred;
	double kg = m->g_var * sum_floor / s;
	m->g += kg * r;
	if (m->g < 0)
		m->g = 0; /* nothing is faster than light in fibre */
	if (m->g > 5)
		m->g = 5;
	m->g_var = m->g_var - kg * sum_floor * m->g_var + 1e-7;
	for (int i = 0; i < n; i++) {
		struct mesh_mnode *x = nodes[i];
		double c = (i == 0 || i == n - 1) ? 1 : 2;
		double v = x->acc_ms + c * p[i] / s * r;
		x->acc_ms = (float)(v < 0 ? 0 : v > 1000 ? 1000 : v);
		x->acc_var = (float)(p[i] - c * c * p[i] * p[i] / s + MESH_DRIFT_VAR);
	}
	for (int i = 0; i < links; i++) {
		struct link_entry *e = le[i];
		if (!e)
			continue; /* out of memory: the link keeps no correction */
		if (e->uses < UINT32_MAX)
			e->uses++;
		double v = e->corr + q[i] / s * r;
		e->corr = (float)(v > 5000 ? 5000 : v < -5000 ? -5000 : v);
		e->var = (float)(q[i] - q[i] * q[i] / s + MESH_DRIFT_VAR);
		if (e->corr < m->corr_min)
			m->corr_min = e->corr;
	}
}

void mesh_model_forget_node(struct mesh_model *m, uint32_t key)
{
	if (!m->count)
		return;
	struct link_entry *old = m->tab;
	struct link_entry *t = calloc(m->cap, sizeof(*t));
	if (!t)
		return; /* keeps stale corrections of a node that is gone: harmless */
	size_t count = 0;
	for (size_t i = 0; i < m->cap; i++) {
		uint64_t k = old[i].key;
		if (!k || (uint32_t)(k >> 32) == key || (uint32_t)k == key)
			continue;
		size_t j = slot_of(k, m->cap);
		while (t[j].key)
			j = (j + 1) & (m->cap - 1);
		t[j] = old[i];
		count++;
	}
	free(old);
	m->tab = t;
	m->count = count;
}

double mesh_model_inflation(const struct mesh_model *m)
{
	return m->g;
}

size_t mesh_model_links(const struct mesh_model *m)
{
	return m->count;
}

void mesh_model_set_max_links(struct mesh_model *m, size_t max)
{
	m->max_links = max ? max : 1;
	while (m->count > m->max_links)
		evict_one(m, NULL, 0);
}

uint64_t mesh_model_evictions(const struct mesh_model *m)
{
	return m->evictions;
}

size_t mesh_model_memory_bytes(const struct mesh_model *m)
{
	return sizeof(*m) + m->cap * sizeof(struct link_entry);
}
