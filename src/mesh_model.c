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
 *   g            how much longer ordinary cables are than the great circle
 *                (>= 0, learned; real networks: 0.2..0.5).
 *   acc[n]       the access delay of node n (last mile, NAT, the host's own
 *                stack): one number per node, shared by every link of n, so
 *                a report on one path improves predictions for all paths
 *                through its nodes.
 *   corr[a, b]   a correction for the link itself (cable detours, peering,
 *                congestion): what the node terms cannot explain. It exists
 *                only for links somebody reported on.
 *
 * A path's latency is the sum of its links (a relay pays its access delay
 * twice, in and out).
 *
 * Priors: what is known before a report.
 *  - Access delays. A node nobody measured gets the learned mean of its
 *    class (end devices, or infrastructure: relays, edges, super nodes,
 *    which sit in data centres and are faster), sd MESH_ACCESS_SPREAD_SHARE
 *    times that mean. A node that sends heartbeats with its measured
 *    latency to the mesh (avg_latency_ms) gets that latency minus a learned
 *    offset instead (mesh_model_heartbeat, learn_heartbeat).
 *  - Links. Most links are about as long as g says, some are detours
 *    (routing through a far exchange): corr of a link nobody reported on is
 *    the mixture (1 - pi) N(0, v0) + pi N(mu1 F, v1) of "normal" and
 *    "detour", v0 and v1 growing with the floor F. pi, mu1 and both spreads
 *    are learned from the links' first reports (learn_mixture, an online
 *    EM). Predictions take the mixture's mean (pi mu1 F): the expected
 *    latency, which is what the score, linear in latency, needs.
 *
 * Learning: a Kalman filter over the terms of the reported path (the
 * covariance kept diagonal, so each term carries one variance), run under
 * each hypothesis on the path's unreported links (normal or detour: up to
 * 8) and collapsed to one Gaussian per term, weighted by each hypothesis's
 * likelihood. A report gives the measured latency L; under a hypothesis
 * with prior mean P the residual is r = L - P. Node i appears c_i times in
 * the sum (1 for an end, 2 for a relay), each link once. With the prior
 * variances P_i of the access delays and Q_l of the link corrections and
 * the measurement noise R = (MESH_REPORT_NOISE_SHARE * L)^2:
 *     S      = sum c_i^2 P_i + sum Q_l + F^2 G + R     (F = sum of floors)
 *     g     += (F G / S) r              G   -= F^2 G^2 / S
 *     acc_i += (c_i P_i / S) r          P_i -= c_i^2 P_i^2 / S
 *     corr_l+= (Q_l / S) r              Q_l -= Q_l^2 / S
 * (plus MESH_DRIFT_VAR to each variance, so they never freeze). A node's
 * first report also moves its class mean (which is then a term of the sum
 * too, with its own variance). The residual is thus shared between what
 * every link of a node has in common and what belongs to this link, in
 * proportion to how uncertain each still is, and a residual far above
 * what normal links give is put on the link as a detour rather than on
 * the access delays of its ends. Each update is the Bayesian posterior
 * for the priors above (moment-matched), so the error of a path that
 * keeps being reported shrinks like the noise over the square root of
 * reports. After the update, the access delays of the path's nodes are
 * re-estimated from all their reported links (recenter): the sequential
 * filter never revisits how it split an earlier residual.
 *
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
	float floor;   /* its floor (ms), for re-estimating its ends (recenter) */
};

struct mesh_model {
	struct link_entry *tab;
	size_t cap; /* power of two */
	size_t count;
	size_t max_links; /* MESH_MODEL_MAX_LINKS unless a test sets less */
	uint64_t rng;     /* xorshift state for eviction samples */
	uint64_t evictions;
	double corr_min; /* <= every corr, <= 0 */
	double var_max;  /* >= every var */
	double g, g_var; /* global inflation of the floor (>= 0) and its variance */
	/* per class: mean access delay of its unmeasured nodes, its variance,
	 * the value applied last (see mesh_model_prior_version) */
	double cls_mean[MESH_CLASSES], cls_var[MESH_CLASSES], cls_applied[MESH_CLASSES];
	uint32_t prior_version;
	/* the detour mixture of unreported links (see learn_mixture):
	 * sum of detour probabilities over det_n first reports, and the sums
	 * of rho * floor and rho * E[corr | detour] */
	double det_rho, det_n, det_w, det_x;
	/* and for the spreads of both kinds: sums of weight * floor^2 and of
	 * weight * (second moment - the constant part of the variance) */
	double sp0_w, sp0_x, sp1_w, sp1_x;
	/* calibration of heartbeats: weight, mean and sum of squared deviations
	 * of hb_ms - acc_ms over well measured nodes (see learn_heartbeat) */
	double hb_n, hb_mean, hb_m2;
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
	for (int c = 0; c < MESH_CLASSES; c++) {
		m->cls_mean[c] = m->cls_applied[c] = MESH_ACCESS_PRIOR_MS;
		m->cls_var[c] = MESH_CLASS_MEAN_PRIOR_SD_MS * MESH_CLASS_MEAN_PRIOR_SD_MS;
	}
	m->det_n = MESH_DETOUR_PRIOR_N;
	m->det_rho = MESH_DETOUR_PRIOR_RATE * MESH_DETOUR_PRIOR_N;
	m->det_w = m->det_rho * MESH_DETOUR_PRIOR_FLOOR_MS;
	m->det_x = m->det_w * MESH_DETOUR_PRIOR_SHARE;
	m->hb_n = MESH_HB_PRIOR_N;
	m->hb_mean = MESH_HB_OFFSET_PRIOR_MS;
	m->hb_m2 = MESH_HB_PRIOR_N * MESH_HB_OFFSET_PRIOR_SD_MS * MESH_HB_OFFSET_PRIOR_SD_MS;
	m->sp0_w = (MESH_DETOUR_PRIOR_N - m->det_rho) * MESH_DETOUR_PRIOR_FLOOR_MS * MESH_DETOUR_PRIOR_FLOOR_MS;
	m->sp0_x = m->sp0_w * MESH_LINK_SD_SHARE * MESH_LINK_SD_SHARE;
	m->sp1_w = m->det_rho * MESH_DETOUR_PRIOR_FLOOR_MS * MESH_DETOUR_PRIOR_FLOOR_MS;
	m->sp1_x = m->sp1_w * MESH_DETOUR_SD_SHARE * MESH_DETOUR_SD_SHARE;
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
	for (size_t step = 0, k = 0; step < m->cap && k < MESH_MODEL_EVICT_SAMPLES;
	     step++, i = (i + 1) & (m->cap - 1)) {
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
	m->tab[i].floor = 0;
	m->count++;
	return 0;
}

/* ---- the prior of a link nobody reported on ----
 * corr ~ (1 - pi) N(0, v0(F)) + pi N(mu1 F, v1(F)): most links are about
 * as long as the inflation g says (spread v0), a few are detours (rate pi,
 * an excess of mu1 times their floor, spread v1). pi and mu1 are learned
 * from the links' first reports (see learn_mixture). */
static double share2(double x, double w, double lo, double hi)
{
	double v = x / w;
	return v < lo * lo ? lo * lo : v > hi * hi ? hi * hi : v;
}

static double v0_of(const struct mesh_model *m, double fl)
{
	return share2(m->sp0_x, m->sp0_w, 0.02, 2) * fl * fl + MESH_LINK_SD_MS * MESH_LINK_SD_MS;
}

static double v1_of(const struct mesh_model *m, double fl)
{
	return share2(m->sp1_x, m->sp1_w, 0.05, 5) * fl * fl + MESH_DETOUR_SD_MS * MESH_DETOUR_SD_MS;
}

static double detour_rate(const struct mesh_model *m)
{
	return m->det_rho / m->det_n;
}

static double detour_share(const struct mesh_model *m)
{
	return m->det_x / m->det_w;
}

/* Mean and variance of an unreported link's correction. */
static double unknown_mean(const struct mesh_model *m, double fl)
{
	return detour_rate(m) * detour_share(m) * fl;
}

static bool known(const struct link_entry *e)
{
	return e && e->var > 0;
}

static double raw_link(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
		       double *floor_out)
{
	double fl = mesh_model_floor_ms(a, b);
	const struct link_entry *e = find(m, link_key(a->key, b->key));
	if (floor_out)
		*floor_out = fl;
	return fl * (1.0 + m->g) + a->acc_ms + b->acc_ms + (known(e) ? e->corr : unknown_mean(m, fl));
}

double mesh_model_link_ms(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b)
{
	double fl;
	double v = raw_link(m, a, b, &fl);
	return v < fl ? fl : v;
}

static double node_var(const struct mesh_model *m, const struct mesh_mnode *n);
static double spread_var(const struct mesh_model *m, int cls);
static void hb_prior(const struct mesh_model *m, const struct mesh_mnode *n, double *mean, double *var);
static void learn_heartbeat(struct mesh_model *m, const struct mesh_mnode *n);

void mesh_model_link_belief(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			    struct mesh_link_belief *out)
{
	double fl = mesh_model_floor_ms(a, b);
	const struct link_entry *e = find(m, link_key(a->key, b->key));
	double nodes = node_var(m, a) + node_var(m, b) + fl * fl * m->g_var;
	double v;
	out->reported = known(e);
	if (out->reported) {
		v = fl * (1.0 + m->g) + a->acc_ms + b->acc_ms + e->corr;
		out->ok_var = e->var + nodes;
		out->p_ok = 1;
	} else {
		v = fl * (1.0 + m->g) + a->acc_ms + b->acc_ms;
		out->ok_var = v0_of(m, fl) + nodes;
		out->p_ok = 1 - detour_rate(m);
	}
	out->ok_ms = v < fl ? fl : v;
}

double mesh_model_corr_lower_bound(const struct mesh_model *m)
{
	return m->corr_min;
}

/* Does n hold every link it was reported on in nbr (remember_link), and
 * none with other? Then the link n-other has no learned correction. */
static bool surely_unreported(const struct mesh_mnode *n, uint32_t other)
{
	if (n->nlinks > MESH_NODE_LINKS)
		return false;
	for (int i = 0; i < n->nlinks; i++)
		if (n->nbr[i] == other)
			return false;
	return true;
}

void mesh_model_belief_bound(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			     double floor_lb, double *ok_lb, double *var_ub)
{
	double acc = (double)a->acc_ms + b->acc_ms, fl_ub = floor_lb + MESH_FLOOR_LB_MAX_ERR_MS;
	double nodes = node_var(m, a) + node_var(m, b) + fl_ub * fl_ub * m->g_var;
	double v = floor_lb * (1.0 + m->g) + acc, v0 = v0_of(m, fl_ub);
	if (surely_unreported(a, b->key) || surely_unreported(b, a->key)) {
		*var_ub = v0 + nodes;
	} else {
		v += m->corr_min;
		*var_ub = (v0 > m->var_max ? v0 : m->var_max) + nodes;
	}
	*ok_lb = v > floor_lb ? v : floor_lb;
}

double mesh_model_link_lb(const struct mesh_model *m, const struct mesh_mnode *a, const struct mesh_mnode *b,
			  double floor_lb)
{
	double acc = (double)a->acc_ms + b->acc_ms;
	if (surely_unreported(a, b->key) || surely_unreported(b, a->key))
		return floor_lb * (1.0 + m->g + detour_rate(m) * detour_share(m)) + acc; /* >= floor_lb */
	double v = floor_lb * (1.0 + m->g) + acc + m->corr_min;
	return v > floor_lb ? v : floor_lb;
}

static int class_of(const struct mesh_mnode *n)
{
	return n->cls < MESH_CLASSES ? n->cls : MESH_CLASS_DEVICE;
}

/* Variance of an unmeasured node's access delay around its class mean. */
static double spread_var(const struct mesh_model *m, int cls)
{
	double sd = MESH_ACCESS_SPREAD_SHARE * m->cls_mean[cls];
	if (sd < MESH_ACCESS_SPREAD_MIN_MS)
		sd = MESH_ACCESS_SPREAD_MIN_MS;
	return sd * sd;
}

static double node_var(const struct mesh_model *m, const struct mesh_mnode *n)
{
	if (n->acc_var > 0)
		return n->acc_var;
	return spread_var(m, class_of(n)) + m->cls_var[class_of(n)];
}

/* Online EM for the mixture: a link's first report gave it detour
 * probability rho and rho * E[corr | detour] = det_mean. Counts are halved
 * now and then so the estimates keep following the network. */
static void learn_mixture(struct mesh_model *m, double fl, double rho, double det_mean, double m2_ok, double m2_det)
{
	double b0 = MESH_LINK_SD_MS * MESH_LINK_SD_MS, b1 = MESH_DETOUR_SD_MS * MESH_DETOUR_SD_MS;
	m->det_n += 1;
	m->det_rho += rho;
	m->det_w += rho * fl;
	m->det_x += det_mean;
	m->sp0_w += (1 - rho) * fl * fl;
	m->sp0_x += m2_ok - (1 - rho) * b0;
	m->sp1_w += rho * fl * fl;
	m->sp1_x += m2_det - rho * b1;
	if (m->det_n > 1e6) {
		m->det_n /= 2;
		m->det_rho /= 2;
		m->det_w /= 2;
		m->det_x /= 2;
		m->sp0_w /= 2;
		m->sp0_x /= 2;
		m->sp1_w /= 2;
		m->sp1_x /= 2;
	}
	if (m->det_x < 0)
		m->det_x = 0;
}

/* One term of a report's sum: it enters with coefficient h and has prior
 * variance p (cov = h p with the measurement). */
struct term {
	double h, p;
};

/* Collapse of the posteriors over the hypotheses: for a term with
 * covariance cov, mean shift and variance over the weighted hypotheses
 * (innovation e[k], its variance s[k], weight w[k]). */
static void collapse(const double *w, const double *e, const double *s, int nh, double cov, double p, double *shift,
		     double *var)
{
	double mean = 0, v = 0;
	for (int k = 0; k < nh; k++)
		mean += w[k] * cov * e[k] / s[k];
	for (int k = 0; k < nh; k++) {
		double d = cov * e[k] / s[k] - mean;
		v += w[k] * (p - cov * cov / s[k] + d * d);
	}
	*shift = mean;
	*var = v;
}

/* Log-density ratio helpers for the two components of a link. */
static double detour_prob(const struct mesh_model *m, double fl, double x)
{
	double pi = detour_rate(m), d = detour_share(m) * fl, v0 = v0_of(m, fl), v1 = v1_of(m, fl);
	double l0 = log(1 - pi) - 0.5 * log(v0) - 0.5 * x * x / v0;
	double l1 = log(pi) - 0.5 * log(v1) - 0.5 * (x - d) * (x - d) / v1;
	return l1 > l0 ? 1 / (1 + exp(l0 - l1)) : exp(l1 - l0) / (1 + exp(l1 - l0));
}

static void remember_link(struct mesh_mnode *a, uint32_t other)
{
	int k = a->nlinks < MESH_NODE_LINKS ? a->nlinks : MESH_NODE_LINKS;
	for (int i = 0; i < k; i++)
		if (a->nbr[i] == other)
			return;
	if (a->nlinks < MESH_NODE_LINKS)
		a->nbr[a->nlinks] = other;
	if (a->nlinks < 255)
		a->nlinks++;
}

/* A report moved the access delay of node a by delta. Its other reported
 * links (not on this path) were measured before, and what their reports
 * determined is their sum acc + corr: keep it, moving their corrections by
 * -delta. (A filter with the full covariance would do this by itself: the
 * access delay and the correction of a reported link are strongly
 * anti-correlated. The diagonal one forgets it, and a node's other paths
 * would drift off what was measured.) Only for nodes whose links are all
 * remembered (MESH_NODE_LINKS); for busier ones the shifts are small. */
static void keep_other_links(struct mesh_model *m, const struct mesh_mnode *a, double delta, const uint64_t *path_keys,
			     int npath)
{
	if (delta == 0 || a->nlinks > MESH_NODE_LINKS)
		return;
	for (int i = 0; i < a->nlinks; i++) {
		uint64_t k = link_key(a->key, a->nbr[i]);
		bool on_path = false;
		for (int j = 0; j < npath && !on_path; j++)
			on_path = path_keys[j] == k;
		struct link_entry *x = (struct link_entry *)find(m, k);
		if (on_path || !known(x))
			continue;
		double c = x->corr - delta;
		x->corr = (float)(c > 5000 ? 5000 : c < -5000 ? -5000 : c);
		if (x->corr < m->corr_min)
			m->corr_min = x->corr;
	}
}

/* Re-estimate the access delay of a node from all its reported links.
 * The sequential update splits each residual once, by the variances at
 * that moment, and never revisits the split: a slow first path puts part
 * of a detour on the access delays of its ends, and that stays, making
 * every other path of these nodes look slower than it is. What the
 * reports determine is the sum acc + corr of each link (and the sums
 * along paths): moving delta from every link's correction of the node to
 * its access delay keeps each of them, and so every known path's
 * prediction, and changes only the predictions of links not yet reported.
 * The delta is the most probable one under the priors: the class mean for
 * the access delay, the normal/detour mixture for each correction (a few
 * EM steps). Only for nodes with at most MESH_NODE_LINKS links (all of
 * them remembered); nodes with more are well determined by their many
 * reports anyway. */
static void recenter(struct mesh_model *m, struct mesh_mnode *a)
{
	struct link_entry *e[MESH_NODE_LINKS];
	double fl[MESH_NODE_LINKS];
	int k = 0;
	if (a->nlinks > MESH_NODE_LINKS || a->acc_var <= 0)
		return;
	for (int i = 0; i < a->nlinks; i++) {
		struct link_entry *x = (struct link_entry *)find(m, link_key(a->key, a->nbr[i]));
		if (!known(x))
			continue;
		e[k] = x;
		fl[k] = x->floor;
		k++;
	}
	if (!k)
		return;
	int cl = class_of(a);
	double mu = m->cls_mean[cl], sv = spread_var(m, cl), mu1 = detour_share(m);
	if (a->hb_ms > 0)
		hb_prior(m, a, &mu, &sv);
	double delta = 0;
	for (int it = 0; it < 4; it++) {
		double num = (mu - a->acc_ms) / sv, den = 1 / sv;
		for (int i = 0; i < k; i++) {
			double c = e[i]->corr, v0 = v0_of(m, fl[i]), v1 = v1_of(m, fl[i]);
			double rho = detour_prob(m, fl[i], c - delta);
			num += (1 - rho) * c / v0 + rho * (c - mu1 * fl[i]) / v1;
			den += (1 - rho) / v0 + rho / v1;
		}
		delta = num / den;
	}
	double na = a->acc_ms + delta;
	if (na < 0)
		na = 0;
	if (na > 1000)
		na = 1000;
	delta = na - a->acc_ms;
	a->acc_ms = (float)na;
	for (int i = 0; i < k; i++) {
		double c = e[i]->corr - delta;
		e[i]->corr = (float)(c > 5000 ? 5000 : c < -5000 ? -5000 : c);
		if (e[i]->corr < m->corr_min)
			m->corr_min = e[i]->corr;
	}
}

void mesh_model_learn(struct mesh_model *m, struct mesh_mnode *const *nodes, int n, double actual_ms)
{
	if (n < 2 || n > 4 || !(actual_ms >= 0) || actual_ms > 1e6)
		return;
	int links = n - 1;
	struct link_entry *le[3];
	uint64_t keys[3];
	double fl[3], pred = 0, s0 = 0;
	bool unk[3];
	int nunk = 0;
	for (int i = 0; i < links; i++) {
		fl[i] = mesh_model_floor_ms(nodes[i], nodes[i + 1]);
		keys[i] = link_key(nodes[i]->key, nodes[i + 1]->key);
	}
	for (int i = 0; i < links; i++)
		add_link(m, keys[i], keys, links); /* failed: the link keeps no correction */
	/* the prediction without the detour expectation of unreported links
	 * (each hypothesis below adds its own) */
	double sum_floor = 0;
	for (int i = 0; i < links; i++) {
		le[i] = (struct link_entry *)find(m, keys[i]);
		unk[i] = !known(le[i]);
		nunk += unk[i];
		sum_floor += fl[i];
		pred += fl[i] * (1.0 + m->g) + (unk[i] ? 0.0 : le[i]->corr);
		if (!unk[i])
			s0 += le[i]->var;
	}
	struct term tg = {sum_floor, m->g_var};
	s0 += tg.h * tg.h * tg.p;
	/* node terms: a measured node its own estimate (variance p); an
	 * unmeasured one its class mean (shared: k[c] counts how often the
	 * path adds it) plus its own deviation (variance p = spread) */
	struct term tn[4];
	double k[MESH_CLASSES] = {0};
	for (int i = 0; i < n; i++) {
		tn[i].h = (i == 0 || i == n - 1) ? 1 : 2;
		pred += tn[i].h * nodes[i]->acc_ms;
		if (nodes[i]->acc_var > 0) {
			tn[i].p = nodes[i]->acc_var;
		} else {
			tn[i].p = spread_var(m, class_of(nodes[i]));
			k[class_of(nodes[i])] += tn[i].h;
		}
		s0 += tn[i].h * tn[i].h * tn[i].p;
	}
	for (int c = 0; c < MESH_CLASSES; c++)
		s0 += k[c] * k[c] * m->cls_var[c];
	double noise = MESH_REPORT_NOISE_SHARE * actual_ms;
	s0 += noise * noise + 1e-6;
	double r = actual_ms - pred;

	/* hypotheses: each unreported link normal or a detour (bit i of kh) */
	int nh = 1 << nunk;
	double w[8], e[8], sv[8], pi = detour_rate(m), mu1 = detour_share(m), lw_max = -HUGE_VAL;
	for (int kh = 0; kh < nh; kh++) {
		double mean = 0, var = s0, lw = 0;
		for (int i = 0, bit = 0; i < links; i++) {
			if (!unk[i])
				continue;
			bool det = kh >> bit++ & 1;
			mean += det ? mu1 * fl[i] : 0;
			var += det ? v1_of(m, fl[i]) : v0_of(m, fl[i]);
			lw += log(det ? pi : 1 - pi);
		}
		e[kh] = r - mean;
		sv[kh] = var;
		w[kh] = lw - 0.5 * log(var) - 0.5 * e[kh] * e[kh] / var;
		if (w[kh] > lw_max)
			lw_max = w[kh];
	}
	double wsum = 0;
	for (int kh = 0; kh < nh; kh++)
		wsum += (w[kh] = exp(w[kh] - lw_max));
	for (int kh = 0; kh < nh; kh++)
		w[kh] /= wsum;

	double shift, var;
	collapse(w, e, sv, nh, tg.h * tg.p, tg.p, &shift, &var);
	m->g += shift;
	if (m->g < 0)
		m->g = 0; /* nothing is faster than light in fibre */
	if (m->g > 5)
		m->g = 5;
	m->g_var = var + 1e-7;
	for (int i = 0; i < n; i++) {
		struct mesh_mnode *x = nodes[i];
		double cov = tn[i].h * tn[i].p, p = tn[i].p;
		if (x->acc_var <= 0) {
			/* first measurement: from the class mean, which the
			 * residual also informs */
			int cl = class_of(x);
			cov += k[cl] * m->cls_var[cl];
			p += m->cls_var[cl];
		}
		collapse(w, e, sv, nh, cov, p, &shift, &var);
		double v = x->acc_ms + shift;
		v = v < 0 ? 0 : v > 1000 ? 1000 : v;
		keep_other_links(m, x, v - x->acc_ms, keys, links);
		x->acc_ms = (float)v;
		x->acc_var = (float)(var + MESH_DRIFT_VAR);
		x->src = MESH_ACC_MEASURED;
	}
	for (int c = 0; c < MESH_CLASSES; c++) {
		if (!k[c])
			continue;
		collapse(w, e, sv, nh, k[c] * m->cls_var[c], m->cls_var[c], &shift, &var);
		double v = m->cls_mean[c] + shift;
		m->cls_mean[c] = v < 0 ? 0 : v > 1000 ? 1000 : v;
		m->cls_var[c] = var + 1e-4;
		if (fabs(m->cls_mean[c] - m->cls_applied[c]) >= MESH_CLASS_REFRESH_MS) {
			m->cls_applied[c] = m->cls_mean[c];
			m->prior_version++;
		}
	}
	for (int i = 0, bit = 0; i < links; i++) {
		struct link_entry *e_ = le[i];
		double mean, v2;
		if (!unk[i]) {
			collapse(w, e, sv, nh, e_->var, e_->var, &shift, &var);
			mean = e_->corr + shift;
			v2 = var;
		} else {
			/* per hypothesis the link's own prior (normal or
			 * detour), collapsed to one Gaussian; the weighted
			 * moments feed learn_mixture */
			double rho = 0, det_mean = 0, m2_ok = 0, m2_det = 0, dm = mu1 * fl[i];
			mean = 0;
			for (int kh = 0; kh < nh; kh++) {
				bool det = kh >> bit & 1;
				double p = det ? v1_of(m, fl[i]) : v0_of(m, fl[i]);
				double mk = (det ? dm : 0) + p * e[kh] / sv[kh];
				double pk = p - p * p / sv[kh];
				mean += w[kh] * mk;
				if (det) {
					rho += w[kh];
					det_mean += w[kh] * mk;
					m2_det += w[kh] * (pk + (mk - dm) * (mk - dm));
				} else {
					m2_ok += w[kh] * (pk + mk * mk);
				}
			}
			v2 = 0;
			for (int kh = 0; kh < nh; kh++) {
				bool det = kh >> bit & 1;
				double p = det ? v1_of(m, fl[i]) : v0_of(m, fl[i]);
				double mk = (det ? dm : 0) + p * e[kh] / sv[kh];
				v2 += w[kh] * (p - p * p / sv[kh] + (mk - mean) * (mk - mean));
			}
			bit++;
			learn_mixture(m, fl[i], rho, det_mean, m2_ok, m2_det);
		}
		if (!e_)
			continue; /* out of memory: the link keeps no correction */
		if (e_->uses < UINT32_MAX)
			e_->uses++;
		e_->corr = (float)(mean > 5000 ? 5000 : mean < -5000 ? -5000 : mean);
		e_->var = (float)(v2 + MESH_DRIFT_VAR);
		if (e_->var > m->var_max)
			m->var_max = e_->var;
		e_->floor = (float)fl[i];
		if (e_->corr < m->corr_min)
			m->corr_min = e_->corr;
	}
	for (int i = 0; i < links; i++) {
		remember_link(nodes[i], nodes[i + 1]->key);
		remember_link(nodes[i + 1], nodes[i]->key);
	}
	for (int sweep = 0; sweep < 2; sweep++)
		for (int i = 0; i < n; i++)
			recenter(m, nodes[i]);
	for (int i = 0; i < n; i++)
		learn_heartbeat(m, nodes[i]);
}

static void hb_prior(const struct mesh_model *m, const struct mesh_mnode *n, double *mean, double *var)
{
	double v = n->hb_ms - m->hb_mean;
	*mean = v < 0 ? 0 : v > n->hb_ms ? n->hb_ms : v;
	*var = m->hb_m2 / m->hb_n + 1.0;
}

/* What a heartbeat adds to the access delay (the relay side of what the
 * node measured) is learned from nodes whose access delay reports
 * determine: MESH_NODE_LINKS distinct links or more (Welford's running
 * mean and variance, a prior worth MESH_HB_PRIOR_N nodes, counts halved
 * past 1e5 so it keeps following the network). */
static void learn_heartbeat(struct mesh_model *m, const struct mesh_mnode *n)
{
	if (!(n->hb_ms > 0) || n->nlinks < MESH_HB_CALIBRATE_LINKS)
		return;
	double x = n->hb_ms - n->acc_ms;
	m->hb_n += 1;
	double d = x - m->hb_mean;
	m->hb_mean += d / m->hb_n;
	m->hb_m2 += d * (x - m->hb_mean);
	if (m->hb_n > 1e5) {
		m->hb_n /= 2;
		m->hb_m2 /= 2;
	}
}

void mesh_model_heartbeat(const struct mesh_model *m, struct mesh_mnode *n, double avg_latency_ms)
{
	if (!(avg_latency_ms > 0) || avg_latency_ms > 1000)
		return;
	n->hb_ms = (float)avg_latency_ms;
	if (n->src == MESH_ACC_MEASURED)
		return; /* reports know it better */
	double mean, var;
	hb_prior(m, n, &mean, &var);
	n->acc_ms = (float)mean;
	n->acc_var = (float)var;
	n->src = MESH_ACC_HEARTBEAT;
}

double mesh_model_class_mean(const struct mesh_model *m, int cls)
{
	return m->cls_mean[cls >= 0 && cls < MESH_CLASSES ? cls : MESH_CLASS_DEVICE];
}

uint32_t mesh_model_prior_version(const struct mesh_model *m)
{
	return m->prior_version;
}

void mesh_model_apply_prior(const struct mesh_model *m, struct mesh_mnode *n)
{
	if (n->acc_var <= 0)
		n->acc_ms = (float)m->cls_applied[class_of(n)];
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

double mesh_model_heartbeat_offset(const struct mesh_model *m, double *sd)
{
	if (sd)
		*sd = sqrt(m->hb_m2 / m->hb_n);
	return m->hb_mean;
}

void mesh_model_detours(const struct mesh_model *m, double *rate, double *share, double *sd_ok, double *sd_det)
{
	*rate = detour_rate(m);
	*share = detour_share(m);
	*sd_ok = sqrt(share2(m->sp0_x, m->sp0_w, 0.02, 2));
	*sd_det = sqrt(share2(m->sp1_x, m->sp1_w, 0.05, 5));
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
