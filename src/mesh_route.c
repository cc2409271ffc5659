/* mesh_route.c - score, exact pruned path search and route cache
 * (the score is defined in mesh_route.h).
 *
 * The search. The endpoints s and d are fixed. Every path is s-d,
 * s-r-d or s-r1-r2-d over the eligible relays R. It is a branch and bound
 * on upper bounds of the score: the score is monotone in every factor, so
 * a path scores at most what its min-terms over the nodes known so far
 * and a lower bound on its latency give. The latency bounds come from the
 * oracle's promise link(a, b) >= floor(a, b) + max(0, acc[a] + acc[b] +
 * corr_lb), from the great-circle floors' triangle inequality, and from
 * mesh_model_floor_lb_ms (the floor without asin, at most 0.06 ms low).
 *  0. The direct path is scored exactly. Every relayed path has latency
 *     >= floor(s, d) + the least access terms over R and at most the
 *     endpoints' min-terms: when that bound cannot beat the direct path,
 *     steps 1 and 2 are skipped (no relay is looked at beyond its access
 *     delay).
 *  1. One pass over R bounds each s-r-d from floor lower bounds and
 *     min-terms (no link prediction). Those whose bound beats the best are
 *     scored exactly (a[r] = link(s, r), b[r] = link(r, d)), best bound
 *     first, until the next bound cannot beat the best found.
 *  2. Two-relay paths s-r1-r2-d. For r1:
 *       latency >= a[r1] + link(r1,r2) + link(r2,d)
 *               >= a[r1] + floor(r1,d) + max(0, acc[r1] + minacc + corr_lb)
 *                                       + max(0, minacc + acc[d] + corr_lb)
 *     (minacc is the least access delay in R), first with a's lower bound,
 *     then with a[r1] itself; r1 are visited by this bound, best first, and
 *     the loop stops when the bound cannot beat the best path found. For
 *     each r1, r2 are visited in increasing lower bound of b[r2] (only
 *     those that fit in some r1's latency budget are sorted):
 *       latency >= a[r1] + b[r2] + floor(r1,r2) + max(0, acc[r1]+acc[r2]+corr_lb)
 *     first without the floor term (a bound that only grows along the sorted
 *     order: the loop stops there), then with the chord and the floor's
 *     lower bound and r2's min-terms, then with b[r2] itself; only paths
 *     that pass get link(r1, r2) predicted.
 *  Nothing that could beat the best is skipped, so the result is the
 *  optimum (test_mesh_route checks it against brute force).
 *  3. With explore_cost > 0, one more pass over the direct and one-relay
 *     paths computes Weitzman's index of those with an unreported link
 *     (see mesh_route.h) and may choose one of them to try instead. An
 *     index stands for a latency of at least the path's floors, so relays
 *     whose bound from floor(s, d) (all of them at once) or from their
 *     floor lower bounds cannot beat the best index are skipped unscored.
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

double mesh_route_model_link_lb(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb)
{
	return mesh_model_link_lb((const struct mesh_model *)model, &a->m, &b->m, floor_lb);
}

void mesh_route_model_belief_bound(void *model, const struct mesh_rnode *a, const struct mesh_rnode *b, double floor_lb,
				   double *ok_lb, double *var_ub)
{
	mesh_model_belief_bound((const struct mesh_model *)model, &a->m, &b->m, floor_lb, ok_lb, var_ub);
}

void mesh_route_model_oracle(struct mesh_oracle *o, const struct mesh_model *m)
{
	o->link_ms = mesh_route_model_link;
	o->ctx = (void *)m;
	o->corr_lb = mesh_model_corr_lower_bound(m);
	o->link_belief = mesh_route_model_link_belief;
	o->link_lb = mesh_route_model_link_lb;
	o->belief_bound = mesh_route_model_belief_bound;
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

/* ---- the search ---- */

/* The score of a path at latency 0 (its min-terms and hop count), and what
 * a latency takes off it: score_of(t, l, links) = score_at0(t, links) -
 * lat_points(l) (the same formula as mesh_route_score, in two parts, for
 * the bounds; a path's own score always comes from mesh_route_score). */
static double score_at0(const struct terms *t, int links)
{
	double raw = MESH_W_BANDWIDTH * clamp01(t->bw / MESH_BANDWIDTH_SCALE_MBPS) +
		     MESH_W_REPUTATION * clamp01(t->rep / 100.0) + MESH_W_HOPS * clamp01((links - 1) / 2.0) +
		     MESH_W_AIC * (t->aic ? 1.0 : 0.0) + MESH_W_UPTIME * clamp01(t->up / 100.0);
	return 100.0 * (raw + 0.5);
}

static double lat_points(double ms)
{
	return -100.0 * MESH_W_LATENCY * clamp01(ms / MESH_LATENCY_SCALE_MS);
}

/* Where the search leans on the triangle inequality of the floors
 * (floor(a, c) <= floor(a, b) + floor(b, c)), it allows this much (ms):
 * positions are floats, a little off the unit sphere, which can bend the
 * inequality by up to ~0.03 ms per floor near antipodal points. */
#define TRI_SLACK_MS 0.1

/* A relay of the query. fa, fb: lower bounds on floor(s, r), floor(r, d)
 * (mesh_model_floor_lb_ms); la, lb: on link(s, r), link(r, d); ub, ux:
 * upper bounds on the score of s-r-d and on its exploration index; a, b:
 * link(s, r), link(r, d) once computed. */
struct cand {
	const struct mesh_rnode *r;
	double fa, fb, la, lb, ub, ux, a, b;
	bool has_a, has_b;
};

/* A sort entry: a key and the index of its candidate. */
struct kv {
	double key;
	uint32_t i;
};

static int kv_desc(const void *x, const void *y)
{
	double a = ((const struct kv *)x)->key, b = ((const struct kv *)y)->key;
	return a < b ? 1 : a > b ? -1 : 0;
}

static int kv_asc(const void *x, const void *y)
{
	return -kv_desc(x, y);
}

struct search {
	const struct mesh_route_query *q;
	struct terms sd; /* min-terms of the endpoints */
	struct cand *c;
	size_t n;           /* candidates: the relays minus s, d (and those without AIC when required) */
	struct kv *k1, *k2; /* n each */
	double minacc;      /* least access delay of the candidates */
	double fsd;         /* floor(s, d) */
	bool bounded;       /* the bounds of the candidates filled (fill_bounds) */
};

static double cand_a(struct search *S, struct cand *x)
{
	if (!x->has_a) {
		x->a = S->q->lat->link_ms(S->q->lat->ctx, S->q->src, x->r);
		x->has_a = true;
	}
	return x->a;
}

static double cand_b(struct search *S, struct cand *x)
{
	if (!x->has_b) {
		x->b = S->q->lat->link_ms(S->q->lat->ctx, x->r, S->q->dst);
		x->has_b = true;
	}
	return x->b;
}

/* The candidates: the relays but s, d (and those without AIC when it is
 * required), with their least access delay. 0, or -1 when out of memory. */
static int collect(struct search *S)
{
	const struct mesh_route_query *q = S->q;
	if (S->c || !q->nrelays)
		return 0;
	/* one block: the candidates and two sort arrays */
	S->c = malloc(q->nrelays * (sizeof(struct cand) + 2 * sizeof(struct kv)));
	if (!S->c)
		return -1;
	S->k1 = (struct kv *)(void *)(S->c + q->nrelays);
	S->k2 = S->k1 + q->nrelays;
	double minacc = HUGE_VAL;
	for (size_t i = 0; i < q->nrelays; i++) {
		const struct mesh_rnode *r = q->relays[i];
		if (r == q->src || r == q->dst || (q->require_aic && !r->aic))
			continue;
		S->c[S->n].r = r;
		S->c[S->n].has_a = S->c[S->n].has_b = false;
		S->n++;
		if (r->m.acc_ms < minacc)
			minacc = r->m.acc_ms;
	}
	if (!q->acc_min_known)
		S->minacc = minacc;
	return 0;
}

/* The bounds of every candidate: one pass, no link prediction, no asin. */
static void fill_bounds(struct search *S)
{
	const struct mesh_oracle *lat = S->q->lat;
	const struct mesh_rnode *s = S->q->src, *d = S->q->dst;
	double cl = lat->corr_lb, acs = s->m.acc_ms, acd = d->m.acc_ms;
	for (size_t i = 0; i < S->n; i++) {
		struct cand *x = &S->c[i];
		const struct mesh_rnode *r = x->r;
		x->fa = mesh_model_floor_lb_ms(&s->m, &r->m);
		x->fb = mesh_model_floor_lb_ms(&r->m, &d->m);
		/* link(a, b) >= floor(a, b) + max(0, acc[a] + acc[b] + corr_lb) */
		x->la = x->fa + pos0(acs + r->m.acc_ms + cl);
		x->lb = x->fb + pos0(r->m.acc_ms + acd + cl);
		if (lat->link_lb) {
			x->la = fmax(x->la, lat->link_lb(lat->ctx, s, r, x->fa));
			x->lb = fmax(x->lb, lat->link_lb(lat->ctx, r, d, x->fb));
		}
		struct terms t = S->sd;
		terms_add(&t, r);
		double s0 = score_at0(&t, 2);
		x->ub = s0 - lat_points(x->la + x->lb);
		/* an index stands for a latency of at least the floors */
		x->ux = s0 - lat_points(x->fa + x->fb);
	}
	S->bounded = true;
}

/* One-relay paths, best bound first, until no bound beats the best. */
static void one_relay(struct search *S, struct mesh_route_result *out, double *best)
{
	size_t k = 0;
	for (size_t i = 0; i < S->n; i++)
		if (S->c[i].ub > *best + EPS)
			S->k1[k++] = (struct kv){S->c[i].ub, (uint32_t)i};
	qsort(S->k1, k, sizeof(*S->k1), kv_desc);
	for (size_t j = 0; j < k && S->k1[j].key > *best + EPS; j++) {
		struct cand *x = &S->c[S->k1[j].i];
		struct terms t = S->sd;
		terms_add(&t, x->r);
		struct mesh_path_metrics pm;
		double sc = score_of(&t, cand_a(S, x) + cand_b(S, x), 2, &pm);
		out->evaluated++;
		if (sc > *best + EPS) {
			*best = sc;
			take(out, S->q, sc, &pm, x->r, NULL);
		}
	}
}

/* Two-relay paths s-r1-r2-d (see the header of this file). */
static void two_relays(struct search *S, struct mesh_route_result *out, double *best)
{
	const struct mesh_route_query *q = S->q;
	const struct mesh_oracle *lat = q->lat;
	double cl = lat->corr_lb, acd = q->dst->m.acc_ms, minacc = S->minacc;
	/* r1: latency >= link(s, r1) + floor(r1, d) + the least access terms */
	size_t k1 = 0;
	for (size_t i = 0; i < S->n; i++) {
		struct cand *x = &S->c[i];
		const struct mesh_rnode *r1 = x->r;
		struct terms t = S->sd;
		terms_add(&t, r1);
		double s0 = score_at0(&t, 3);
		double rest = x->fb - TRI_SLACK_MS + pos0(r1->m.acc_ms + minacc + cl) + pos0(minacc + acd + cl);
		if (s0 - lat_points((x->has_a ? x->a : x->la) + rest) <= *best + EPS)
			continue;
		double ub = s0 - lat_points(cand_a(S, x) + rest);
		if (ub <= *best + EPS)
			continue;
		S->k1[k1++] = (struct kv){ub, (uint32_t)i};
	}
	if (!k1)
		return;
	qsort(S->k1, k1, sizeof(*S->k1), kv_desc);
	/* r2: by a lower bound on link(r2, d), ascending; only those that fit
	 * in the latency budget of some r1 */
	double room = -HUGE_VAL;
	for (size_t j = 0; j < k1; j++) {
		const struct cand *x = &S->c[S->k1[j].i];
		struct terms t = S->sd;
		terms_add(&t, x->r);
		double v = latency_budget(&t, 3, *best) - x->a - pos0(x->r->m.acc_ms + minacc + cl);
		if (v > room)
			room = v;
	}
	size_t k2 = 0;
	for (size_t i = 0; i < S->n; i++) {
		const struct cand *x = &S->c[i];
		double b = x->has_b ? x->b : x->lb;
		if (b < room)
			S->k2[k2++] = (struct kv){b, (uint32_t)i};
	}
	qsort(S->k2, k2, sizeof(*S->k2), kv_asc);
	for (size_t j = 0; j < k1; j++) {
		if (S->k1[j].key <= *best + EPS)
			break;
		struct cand *x1 = &S->c[S->k1[j].i];
		const struct mesh_rnode *r1 = x1->r;
		struct terms t1 = S->sd;
		terms_add(&t1, r1);
		double a1 = x1->a;
		double base = a1 + pos0(r1->m.acc_ms + minacc + cl);
		double b1 = latency_budget(&t1, 3, *best); /* for any r2 */
		for (size_t jj = 0; jj < k2; jj++) {
			double blb = S->k2[jj].key;
			if (base + blb >= b1)
				break; /* ascending: no later r2 fits either */
			struct cand *x2 = &S->c[S->k2[jj].i];
			const struct mesh_rnode *r2 = x2->r;
			if (r2 == r1)
				continue;
			/* floor(r1, r2) must stay below rem: the chord first
			 * (no sqrt), then the floor's lower bound */
			double acc12 = pos0(r1->m.acc_ms + r2->m.acc_ms + cl);
			double rem = b1 - a1 - blb - acc12;
			if (rem <= 0 || !chord_below(&r1->m, &r2->m, rem))
				continue;
			double f12 = mesh_model_floor_lb_ms(&r1->m, &r2->m);
			if (f12 >= rem)
				continue;
			struct terms t2 = t1;
			terms_add(&t2, r2);
			double b2 = latency_budget(&t2, 3, *best);
			if (a1 + blb + f12 + acc12 >= b2 || a1 + cand_b(S, x2) + f12 + acc12 >= b2)
				continue;
			struct mesh_path_metrics pm;
			double l = a1 + lat->link_ms(lat->ctx, r1, r2) + x2->b;
			double sc = score_of(&t2, l, 3, &pm);
			out->evaluated++;
			if (sc > *best + EPS) {
				*best = sc;
				b1 = latency_budget(&t1, 3, *best);
				take(out, q, sc, &pm, r1, r2);
			}
		}
	}
}

/* An upper bound on the index of s-r-d (path_index) from the oracle's
 * belief_bound: the index stands for the latency ok + sqrt(var) u*(cost /
 * (w sd)) (at least the floors), which only falls as var grows (more room
 * to be better than believed) and as w grows (w <= 1), and u* grows with
 * its argument: ok's lower bound, var's upper bound and w = 1 give a
 * latency below it. */
static double index_ub(const struct search *S, const struct cand *x, const struct terms *t)
{
	const struct mesh_route_query *q = S->q;
	const struct mesh_oracle *lat = q->lat;
	double ok1, v1, ok2, v2;
	lat->belief_bound(lat->ctx, q->src, x->r, x->fa, &ok1, &v1);
	lat->belief_bound(lat->ctx, x->r, q->dst, x->fb, &ok2, &v2);
	double l = ok1 + ok2, var = v1 + v2;
	if (var > 0) {
		double per_ms = -100.0 * MESH_W_LATENCY / MESH_LATENCY_SCALE_MS;
		double u = u_star(q->explore_cost / (sqrt(var) * per_ms));
		if (u < 0)
			l += sqrt(var) * u;
	}
	if (l < x->fa + x->fb)
		l = x->fa + x->fb;
	return score_at0(t, 2) - lat_points(l);
}

/* The exploration pass (see mesh_route.h) over the direct path and the
 * one-relay paths, after the search put the best predicted path in out.
 * prune: skip the paths whose bounds cannot beat the best index (false:
 * every path's index, for mesh_route_brute_force). */
static int explore(struct search *S, struct mesh_route_result *out, bool relays, bool prune)
{
	const struct mesh_route_query *q = S->q;
	const struct mesh_oracle *lat = q->lat;
	const struct mesh_rnode *s = q->src, *d = q->dst;
	pthread_once(&utab_once, utab_fill);
	struct terms t = S->sd;
	for (int i = 1; i < out->n - 1; i++)
		terms_add(&t, out->path[i]);
	double best = path_index(lat, out->path, out->n, &t, out->score, q->explore_cost);
	const struct mesh_rnode *pick = NULL;
	bool pick_direct = false;
	if (out->n != 2) {
		const struct mesh_rnode *p[2] = {s, d};
		struct mesh_path_metrics pm;
		mesh_route_path_metrics(lat, p, 2, &pm);
		double z = path_index(lat, p, 2, &S->sd, mesh_route_score(&pm), q->explore_cost);
		if (z > best + EPS) {
			best = z;
			pick_direct = true;
		}
	}
	/* a one-relay path's index stands for a latency of at least
	 * floor(s, r) + floor(r, d) >= floor(s, d), with the endpoints'
	 * min-terms at best */
	if (relays && (!prune || score_at0(&S->sd, 2) - lat_points(S->fsd - TRI_SLACK_MS) > best + EPS)) {
		if (collect(S) < 0)
			return -1;
		if (prune && !S->bounded)
			fill_bounds(S);
		for (size_t i = 0; i < S->n; i++) {
			struct cand *x = &S->c[i];
			const struct mesh_rnode *r1 = x->r;
			if ((prune && x->ux <= best + EPS) || (out->n == 3 && out->path[1] == r1))
				continue;
			t = S->sd;
			terms_add(&t, r1);
			if (prune && lat->belief_bound && index_ub(S, x, &t) <= best + EPS)
				continue;
			/* even at its floor it cannot win */
			double f2 = mesh_model_floor_ms(&s->m, &r1->m) + mesh_model_floor_ms(&r1->m, &d->m);
			if (prune && score_of(&t, f2, 2, NULL) <= best + EPS)
				continue;
			const struct mesh_rnode *p[3] = {s, r1, d};
			double pred = score_of(&t, cand_a(S, x) + cand_b(S, x), 2, NULL);
			double z = path_index(lat, p, 3, &t, pred, q->explore_cost);
			if (z > best + EPS) {
				best = z;
				pick = r1;
				pick_direct = false;
			}
		}
	}
	if (!pick && !pick_direct)
		return 0;
	struct mesh_path_metrics pm;
	const struct mesh_rnode *path[3] = {s, pick ? pick : d, d};
	mesh_route_path_metrics(lat, path, pick ? 3 : 2, &pm);
	take(out, q, mesh_route_score(&pm), &pm, pick, NULL);
	out->explored = true;
	return 0;
}

int mesh_route_search(const struct mesh_route_query *q, struct mesh_route_result *out)
{
	const struct mesh_oracle *lat = q->lat;
	const struct mesh_rnode *s = q->src, *d = q->dst;
	struct search S = {.q = q, .minacc = q->acc_min_known ? q->acc_min : HUGE_VAL};
	memset(out, 0, sizeof(*out));
	if (q->require_aic && (!s->aic || !d->aic))
		return -1;

	terms_init(&S.sd, s);
	terms_add(&S.sd, d);
	struct mesh_path_metrics pm;
	double best = score_of(&S.sd, lat->link_ms(lat->ctx, s, d), 1, &pm);
	take(out, q, best, &pm, NULL, NULL);
	out->evaluated = 1;

	bool relays = q->max_relays >= 1 && q->nrelays;
	if (relays && !q->acc_min_known && collect(&S) < 0)
		return -1;
	if (relays) {
		/* Every relayed path has latency >= floor(s, d) plus the least
		 * access terms (the triangle inequality) and at most the
		 * endpoints' min-terms: when even that cannot beat the best,
		 * no relay is looked at. */
		double cl = lat->corr_lb;
		S.fsd = mesh_model_floor_ms(&s->m, &d->m);
		double lb = S.fsd - TRI_SLACK_MS + pos0(s->m.acc_ms + S.minacc + cl) +
			    pos0(S.minacc + d->m.acc_ms + cl);
		if (score_at0(&S.sd, 2) - lat_points(lb) > best + EPS) {
			if (collect(&S) < 0)
				return -1;
			fill_bounds(&S);
			one_relay(&S, out, &best);
			if (q->max_relays >= 2 && S.n >= 2)
				two_relays(&S, out, &best);
		}
	}
	if (q->explore_cost > 0 && lat->link_belief && explore(&S, out, relays, true) < 0) {
		free(S.c);
		return -1;
	}
	free(S.c);
	return 0;
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
	if (q->explore_cost > 0 && q->lat->link_belief) {
		struct search S = {.q = q};
		terms_init(&S.sd, s);
		terms_add(&S.sd, d);
		int rc = explore(&S, out, q->max_relays >= 1 && q->nrelays, false);
		free(S.c);
		return rc;
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
