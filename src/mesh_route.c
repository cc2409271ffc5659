/* mesh_route.c - score, exact pruned path search and route cache
 * (the score is defined in mesh_route.h).
 *
 * The search. The endpoints s and d are fixed. Every path is s-d,
 * s-r-d or s-r1-r2-d over the eligible relays R.
 *  1. One pass over R computes a[r] = link(s, r) and b[r] = link(r, d) and
 *     scores the direct path and every one-relay path exactly (2|R| link
 *     predictions).
 *  2. Two-relay paths s-r1-r2-d. Since the score is monotone in every
 *     factor, a path's score is at most the score of (its min-terms over the
 *     nodes known so far, a lower bound on its latency). For r1:
 *       latency >= a[r1] + link(r1,r2) + link(r2,d)
 *               >= a[r1] + floor(r1,d) + max(0, acc[r1] + minacc + corr_lb)
 *                                       + max(0, minacc + acc[d] + corr_lb)
 *     (great-circle floors obey the triangle inequality, minacc is the least
 *     access delay in R). r1 are visited by this bound, best first, and the
 *     loop stops when the bound cannot beat the best path found. For each r1,
 *     r2 are visited in increasing b[r2]:
 *       latency >= a[r1] + b[r2] + floor(r1,r2) + max(0, acc[r1]+acc[r2]+corr_lb)
 *     first without the floor term (a bound that only grows along the sorted
 *     order: the loop stops there), then with it and r2's min-terms; only
 *     paths that pass both get link(r1, r2) predicted.
 *  Nothing that could beat the best is skipped, so the result is the
 *  optimum (test_mesh_route checks it against brute force).
 *  3. With explore_cost > 0, one more pass over the direct and one-relay
 *     paths (their links predicted in step 1) computes Weitzman's index of
 *     those with an unreported link (see mesh_route.h) and may choose one
 *     of them to try instead.
 */
#include "mesh_route.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define EPS 1e-9

static double clamp01(double v)
{
	return v < 0 ? 0 : v > 1 ? 1 : v;
}

void mesh_route_factors(const struct mesh_path_metrics *pm, double f[6])
{
	f[0] = clamp01(pm->latency_ms / MESH_LATENCY_SCALE_MS);
	f[1] = clamp01(pm->bandwidth_mbps / MESH_BANDWIDTH_SCALE_MBPS);
	f[2] = clamp01(pm->reputation / 100.0);
	f[3] = clamp01((pm->links - 1) / 2.0);
	f[4] = pm->aic ? 1.0 : 0.0;
	f[5] = clamp01(pm->uptime / 100.0);
}

double mesh_route_score(const struct mesh_path_metrics *pm)
{
	double f[6];
	mesh_route_factors(pm, f);
	double raw = MESH_W_LATENCY * f[0] + MESH_W_BANDWIDTH * f[1] + MESH_W_REPUTATION * f[2] + MESH_W_HOPS * f[3] +
		     MESH_W_AIC * f[4] + MESH_W_UPTIME * f[5];
	return 100.0 * (raw + 0.5);
}

double mesh_route_model_link(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b)
{
	return mesh_model_link_ms((const struct mesh_model *)model, &a->m, &b->m);
}

void mesh_route_model_link_belief(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b,
				  struct mesh_link_belief *out)
{
	mesh_model_link_belief((const struct mesh_model *)model, &a->m, &b->m, out);
}

void mesh_route_model_oracle(struct mesh_oracle *o, const struct mesh_model *m)
{
	o->link_ms = mesh_route_model_link;
	o->ctx = (void *)m;
	o->corr_lb = mesh_model_corr_lower_bound(m);
	o->link_belief = mesh_route_model_link_belief;
}

/* Min-terms of a node set, accumulated. */
struct terms {
	double bw, rep, up;
	bool aic;
};

static void terms_init(struct terms *t, const struct mesh_rnode *n)
{
	t->bw = n->bw_avail_mbps;
	t->rep = n->reputation;
	t->up = n->uptime;
	t->aic = n->aic;
}

static void terms_add(struct terms *t, const struct mesh_rnode *n)
{
	if (n->bw_avail_mbps < t->bw)
		t->bw = n->bw_avail_mbps;
	if (n->reputation < t->rep)
		t->rep = n->reputation;
	if (n->uptime < t->up)
		t->up = n->uptime;
	t->aic = t->aic && n->aic;
}

static double score_of(const struct terms *t, double latency, int links, struct mesh_path_metrics *pm)
{
	struct mesh_path_metrics local;
	if (!pm)
		pm = &local;
	pm->latency_ms = latency;
	pm->bandwidth_mbps = t->bw;
	pm->reputation = t->rep;
	pm->uptime = t->up;
	pm->links = links;
	pm->aic = t->aic;
	return mesh_route_score(pm);
}

/* The latency below which a path with these min-terms and hop count
 * scores above best (+EPS): score(L) = score(0) - 40/300 * min(L, 300)
 * (see the score in mesh_route.h). HUGE_VAL when any latency does, <= 0
 * when none does. */
static double latency_budget(const struct terms *t, int links, double best)
{
	double s0 = score_of(t, 0, links, NULL);
	double per_ms = -100.0 * MESH_W_LATENCY / MESH_LATENCY_SCALE_MS;
	double room = s0 - best - EPS;
	if (room - per_ms * MESH_LATENCY_SCALE_MS > 0)
		return HUGE_VAL;
	return room / per_ms;
}

/* Is the chord between a and b shorter than the distance light in fibre
 * covers in ms? The chord never exceeds the arc, so "no" proves
 * floor(a, b) >= ms. */
static bool chord_below(const struct mesh_mnode *a, const struct mesh_mnode *b, double ms)
{
	double lim = ms * MESH_FIBRE_KM_PER_MS / MESH_EARTH_RADIUS_KM;
	double dx = (double)a->x - b->x, dy = (double)a->y - b->y, dz = (double)a->z - b->z;
	return dx * dx + dy * dy + dz * dz < lim * lim * (1 + 1e-6) + 1e-12;
}

static double pos0(double v)
{
	return v > 0 ? v : 0;
}

void mesh_route_path_metrics(const struct mesh_oracle *lat, const struct mesh_rnode *const *path, int n,
			     struct mesh_path_metrics *pm)
{
	struct terms t;
	double l = 0;
	terms_init(&t, path[0]);
	for (int i = 1; i < n; i++) {
		terms_add(&t, path[i]);
		l += lat->link_ms(lat->ctx, path[i - 1], path[i]);
	}
	score_of(&t, l, n - 1, pm);
}

/* ---- exploration: Weitzman's index ----
 * For S ~ N(mu, sd^2), E[max(0, S - z)] = sd * f((mu - z) / sd) with
 * f(u) = u Phi(u) + phi(u), increasing from 0 to infinity. The index z
 * solves sd * f(u) = cost: z = mu - sd * u*(cost / sd). u* from a table
 * over log(t), filled once. */
#define UTAB_N 1024
#define UTAB_LO (-40.0)
#define UTAB_HI 4.0
static double utab[UTAB_N];
static pthread_once_t utab_once = PTHREAD_ONCE_INIT;

static double f_of(double u)
{
	return u * 0.5 * erfc(-u / M_SQRT2) + exp(-0.5 * u * u) / sqrt(2 * M_PI);
}

static void utab_fill(void)
{
	for (int i = 0; i < UTAB_N; i++) {
		double t = exp(UTAB_LO + (UTAB_HI - UTAB_LO) * i / (UTAB_N - 1));
		double lo = -15, hi = t + 1;
		for (int k = 0; k < 80; k++) {
			double mid = 0.5 * (lo + hi);
			if (f_of(mid) < t)
				lo = mid;
			else
				hi = mid;
		}
		utab[i] = 0.5 * (lo + hi);
	}
}

static double u_star(double t)
{
	double x = (log(t) - UTAB_LO) / (UTAB_HI - UTAB_LO) * (UTAB_N - 1);
	if (x <= 0)
		return utab[0];
	if (x >= UTAB_N - 1)
		return t; /* f(u) ~ u for large u */
	int i = (int)x;
	double w = x - i;
	return utab[i] * (1 - w) + utab[i + 1] * w;
}

/* The index of the path (score), nodes path[0..n-1] with min-terms t; a
 * path whose links were all reported: its predicted score pred. */
static double path_index(const struct mesh_oracle *lat, const struct mesh_rnode *const *path, int n,
			 const struct terms *t, double pred, double cost)
{
	struct mesh_link_belief b;
	double ok = 0, var = 0, w = 1, fl = 0;
	bool rep = true;
	for (int i = 1; i < n; i++) {
		lat->link_belief(lat->ctx, path[i - 1], path[i], &b);
		ok += b.ok_ms;
		var += b.ok_var;
		w *= b.p_ok;
		rep = rep && b.reported;
		fl += mesh_model_floor_ms(&path[i - 1]->m, &path[i]->m);
	}
	if (rep || var <= 0 || w <= 0)
		return pred;
	/* the score is linear in latency (below the scale): sd in points */
	double per_ms = -100.0 * MESH_W_LATENCY / MESH_LATENCY_SCALE_MS;
	double sd = sqrt(var) * per_ms;
	double lat_ms = ok + sd * u_star(cost / (w * sd)) / per_ms; /* the latency the index stands for */
	if (lat_ms < fl)
		lat_ms = fl;
	return score_of(t, lat_ms, n - 1, NULL);
}

static void take(struct mesh_route_result *out, const struct mesh_route_query *q, double score,
		 const struct mesh_path_metrics *pm, const struct mesh_rnode *r1, const struct mesh_rnode *r2)
{
	out->score = score;
	out->pm = *pm;
	out->n = 0;
	out->path[out->n++] = q->src;
	if (r1)
		out->path[out->n++] = r1;
	if (r2)
		out->path[out->n++] = r2;
	out->path[out->n++] = q->dst;
}

struct cand {
	const struct mesh_rnode *r;
	double a, b, key;
};

static int by_key_desc(const void *x, const void *y)
{
	double a = ((const struct cand *)x)->key, b = ((const struct cand *)y)->key;
	return a < b ? 1 : a > b ? -1 : 0;
}

static int by_b_asc(const void *x, const void *y)
{
	double a = ((const struct cand *)x)->b, b = ((const struct cand *)y)->b;
	return a < b ? -1 : a > b ? 1 : 0;
}

/* The exploration pass (see mesh_route.h) over the direct path and the
 * one-relay paths byb[0..n-1] (their a, b computed), after the search put
 * the best predicted path in out. */
static void explore(const struct mesh_route_query *q, struct mesh_route_result *out, const struct terms *sd,
		    const struct cand *byb, size_t n)
{
	const struct mesh_oracle *lat = q->lat;
	const struct mesh_rnode *s = q->src, *d = q->dst;
	pthread_once(&utab_once, utab_fill);
	struct terms t = *sd;
	for (int i = 1; i < out->n - 1; i++)
		terms_add(&t, out->path[i]);
	double best = path_index(lat, out->path, out->n, &t, out->score, q->explore_cost);
	const struct mesh_rnode *pick = NULL;
	bool pick_direct = false;
	if (out->n != 2) {
		const struct mesh_rnode *p[2] = {s, d};
		struct mesh_path_metrics pm;
		mesh_route_path_metrics(lat, p, 2, &pm);
		double z = path_index(lat, p, 2, sd, mesh_route_score(&pm), q->explore_cost);
		if (z > best + EPS) {
			best = z;
			pick_direct = true;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct mesh_rnode *r1 = byb[i].r;
		if (out->n == 3 && out->path[1] == r1)
			continue;
		t = *sd;
		terms_add(&t, r1);
		/* cheap test first: even at its floor it cannot win */
		double f2 = mesh_model_floor_ms(&s->m, &r1->m) + mesh_model_floor_ms(&r1->m, &d->m);
		if (score_of(&t, f2, 2, NULL) <= best + EPS)
			continue;
		const struct mesh_rnode *p[3] = {s, r1, d};
		double z = path_index(lat, p, 3, &t, score_of(&t, byb[i].a + byb[i].b, 2, NULL), q->explore_cost);
		if (z > best + EPS) {
			best = z;
			pick = r1;
			pick_direct = false;
		}
	}
	if (!pick && !pick_direct)
		return;
	struct mesh_path_metrics pm;
	const struct mesh_rnode *path[3] = {s, pick ? pick : d, d};
	mesh_route_path_metrics(lat, path, pick ? 3 : 2, &pm);
	take(out, q, mesh_route_score(&pm), &pm, pick, NULL);
	out->explored = true;
}

int mesh_route_search(const struct mesh_route_query *q, struct mesh_route_result *out)
{
	const struct mesh_oracle *lat = q->lat;
	const struct mesh_rnode *s = q->src, *d = q->dst;
	struct cand *c = NULL, *byb = NULL;
	memset(out, 0, sizeof(*out));
	if (q->require_aic && (!s->aic || !d->aic))
		return -1;

	struct terms sd;
	terms_init(&sd, s);
	terms_add(&sd, d);
	struct mesh_path_metrics pm;
	double best = score_of(&sd, lat->link_ms(lat->ctx, s, d), 1, &pm);
	take(out, q, best, &pm, NULL, NULL);
	out->evaluated = 1;
	size_t n = 0;
	if (q->max_relays < 1 || !q->nrelays)
		goto done;

	c = malloc(q->nrelays * sizeof(*c));
	byb = malloc(q->nrelays * sizeof(*byb));
	if (!c || !byb)
		goto fail;
	double minacc = 1e30;
	for (size_t i = 0; i < q->nrelays; i++) {
		const struct mesh_rnode *r = q->relays[i];
		if (r == s || r == d || (q->require_aic && !r->aic))
			continue;
		c[n].r = r;
		c[n].a = lat->link_ms(lat->ctx, s, r);
		c[n].b = lat->link_ms(lat->ctx, r, d);
		if (r->m.acc_ms < minacc)
			minacc = r->m.acc_ms;
		struct terms t = sd;
		terms_add(&t, r);
		double sc = score_of(&t, c[n].a + c[n].b, 2, &pm);
		out->evaluated++;
		if (sc > best + EPS) {
			best = sc;
			take(out, q, sc, &pm, r, NULL);
		}
		byb[n] = c[n];
		n++;
	}
	if (q->max_relays < 2 || n < 2)
		goto done;

	/* bounds for r1 */
	double cl = lat->corr_lb;
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		const struct mesh_rnode *r1 = c[i].r;
		struct terms t = sd;
		terms_add(&t, r1);
		double lb = c[i].a + mesh_model_floor_ms(&r1->m, &d->m) + pos0(r1->m.acc_ms + minacc + cl) +
			    pos0(minacc + d->m.acc_ms + cl);
		double ub = score_of(&t, lb, 3, NULL);
		if (ub <= best + EPS)
			continue;
		c[m] = c[i];
		c[m].key = ub;
		m++;
	}
	if (!m)
		goto done;
	/* r2 candidates: every relay of the first pass, by b ascending */
	size_t nb = n;
	qsort(c, m, sizeof(*c), by_key_desc);
	qsort(byb, nb, sizeof(*byb), by_b_asc);
	for (size_t i = 0; i < m; i++) {
		if (c[i].key <= best + EPS)
			break;
		const struct mesh_rnode *r1 = c[i].r;
		struct terms t1 = sd;
		terms_add(&t1, r1);
		double base = c[i].a + pos0(r1->m.acc_ms + minacc + cl);
		double b1 = latency_budget(&t1, 3, best); /* for any r2 */
		for (size_t j = 0; j < nb; j++) {
			if (base + byb[j].b >= b1)
				break; /* b ascending: no later r2 fits either */
			const struct mesh_rnode *r2 = byb[j].r;
			if (r2 == r1)
				continue;
			/* floor(r1,r2) >= chord / speed: a test without asin */
			double acc12 = pos0(r1->m.acc_ms + r2->m.acc_ms + cl);
			double rem = b1 - c[i].a - byb[j].b - acc12;
			if (rem <= 0 || !chord_below(&r1->m, &r2->m, rem))
				continue;
			struct terms t2 = t1;
			terms_add(&t2, r2);
			double b2 = latency_budget(&t2, 3, best);
			double lb = c[i].a + byb[j].b + mesh_model_floor_ms(&r1->m, &r2->m) + acc12;
			if (lb >= b2)
				continue;
			double l = c[i].a + lat->link_ms(lat->ctx, r1, r2) + byb[j].b;
			double sc = score_of(&t2, l, 3, &pm);
			out->evaluated++;
			if (sc > best + EPS) {
				best = sc;
				b1 = latency_budget(&t1, 3, best);
				take(out, q, sc, &pm, r1, r2);
			}
		}
	}
done:
	if (q->explore_cost > 0 && lat->link_belief)
		explore(q, out, &sd, byb, n);
	free(c);
	free(byb);
	return 0;
fail:
	free(c);
	free(byb);
	return -1;
}

int mesh_route_brute_force(const struct mesh_route_query *q, struct mesh_route_result *out)
{
	const struct mesh_rnode *s = q->src, *d = q->dst;
	memset(out, 0, sizeof(*out));
	if (q->require_aic && (!s->aic || !d->aic))
		return -1;
	struct mesh_path_metrics pm;
	const struct mesh_rnode *p[4] = {s, d};
	mesh_route_path_metrics(q->lat, p, 2, &pm);
	take(out, q, mesh_route_score(&pm), &pm, NULL, NULL);
	for (size_t i = 0; q->max_relays >= 1 && i < q->nrelays; i++) {
		const struct mesh_rnode *r1 = q->relays[i];
		if (r1 == s || r1 == d || (q->require_aic && !r1->aic))
			continue;
		const struct mesh_rnode *p1[4] = {s, r1, d};
		mesh_route_path_metrics(q->lat, p1, 3, &pm);
		double sc = mesh_route_score(&pm);
		if (sc > out->score + EPS)
			take(out, q, sc, &pm, r1, NULL);
		for (size_t j = 0; q->max_relays >= 2 && j < q->nrelays; j++) {
			const struct mesh_rnode *r2 = q->relays[j];
			if (r2 == s || r2 == d || r2 == r1 || (q->require_aic && !r2->aic))
				continue;
			const struct mesh_rnode *p2[4] = {s, r1, r2, d};
			mesh_route_path_metrics(q->lat, p2, 4, &pm);
			sc = mesh_route_score(&pm);
			if (sc > out->score + EPS)
				take(out, q, sc, &pm, r1, r2);
		}
	}
	return 0;
}

/* ---- cache ---- */

#define CACHE_WAYS 4

struct cache_slot {
	uint64_t hash;
	char key[MESH_ROUTE_KEY_MAX];
	struct mesh_cached_route r;
	bool used;
};

struct mesh_route_cache {
	pthread_mutex_t lock;
	size_t nsets;
	struct cache_slot *slots;
};

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

struct mesh_route_cache *mesh_route_cache_new(size_t nsets)
{
	struct mesh_route_cache *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->nsets = nsets ? nsets : 1;
	c->slots = calloc(c->nsets * CACHE_WAYS, sizeof(*c->slots));
	if (!c->slots) {
		free(c);
		return NULL;
	}
	pthread_mutex_init(&c->lock, NULL);
	return c;
}

void mesh_route_cache_free(struct mesh_route_cache *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c->slots);
	free(c);
}

int mesh_route_cache_get(struct mesh_route_cache *c, const char *key, int64_t now_ms, mesh_route_valid_fn valid,
			 void *ctx, struct mesh_cached_route *out)
{
	if (strlen(key) >= MESH_ROUTE_KEY_MAX)
		return -1;
	uint64_t h = fnv(key);
	int rc = -1;
	pthread_mutex_lock(&c->lock);
	struct cache_slot *set = &c->slots[(h % c->nsets) * CACHE_WAYS];
	for (int i = 0; i < CACHE_WAYS; i++) {
		struct cache_slot *sl = &set[i];
		if (!sl->used || sl->hash != h || strcmp(sl->key, key))
			continue;
		bool ok = sl->r.expires_ms > now_ms;
		for (int k = 0; ok && k < sl->r.n; k++)
			ok = valid(ctx, sl->r.keys[k], sl->r.epochs[k]);
		if (!ok) {
			sl->used = false;
			break;
		}
		*out = sl->r;
		rc = 0;
		break;
	}
	pthread_mutex_unlock(&c->lock);
	return rc;
}

void mesh_route_cache_put(struct mesh_route_cache *c, const char *key, const struct mesh_cached_route *r)
{
	size_t len = strlen(key);
	if (len >= MESH_ROUTE_KEY_MAX)
		return;
	uint64_t h = fnv(key);
	pthread_mutex_lock(&c->lock);
	struct cache_slot *set = &c->slots[(h % c->nsets) * CACHE_WAYS];
	struct cache_slot *victim = NULL;
	for (int i = 0; i < CACHE_WAYS && !victim; i++)
		if (set[i].used && set[i].hash == h && !strcmp(set[i].key, key))
			victim = &set[i];
	for (int i = 0; i < CACHE_WAYS && !victim; i++)
		if (!set[i].used)
			victim = &set[i];
	if (!victim) {
		victim = &set[0];
		for (int i = 1; i < CACHE_WAYS; i++)
			if (set[i].r.expires_ms < victim->r.expires_ms)
				victim = &set[i];
	}
	victim->used = true;
	victim->hash = h;
	memcpy(victim->key, key, len + 1);
	victim->r = *r;
	pthread_mutex_unlock(&c->lock);
}

void mesh_route_cache_drop_route(struct mesh_route_cache *c, const char *route_id)
{
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->nsets * CACHE_WAYS; i++)
		if (c->slots[i].used && !strcmp(c->slots[i].r.route_id, route_id))
			c->slots[i].used = false;
	pthread_mutex_unlock(&c->lock);
}
