/* test_mesh_route.c - score, exact search versus brute force, cache,
 * model convergence, reputation tiers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "mesh_model.h"
#include "mesh_reputation.h"
#include "mesh_route.h"
#include "unit.h"

START_TEST(score_bounds_and_weights)
{
	struct mesh_path_metrics best = {0, 1000, 100, 100, 1, true};
	struct mesh_path_metrics worst = {1000, 0, 0, 0, 3, false};
	ck_assert_double_eq_tol(mesh_route_score(&best), 100.0, 1e-9);
	ck_assert_double_eq_tol(mesh_route_score(&worst), 0.0, 1e-9);
	struct mesh_path_metrics p = {150, 50, 80, 90, 2, false};
	/* -0.4*0.5 + 0.25*0.5 + 0.15*0.8 - 0.1*0.5 + 0 + 0.05*0.9 = 0.04 */
	ck_assert_double_eq_tol(mesh_route_score(&p), 54.0, 1e-9);
	struct mesh_path_metrics q = p;
	q.latency_ms = 160;
	ck_assert(mesh_route_score(&q) < mesh_route_score(&p));
	q = p;
	q.links = 3;
	ck_assert_double_eq_tol(mesh_route_score(&p) - mesh_route_score(&q), 5.0, 1e-9);
	q = p;
	q.aic = true;
	ck_assert_double_eq_tol(mesh_route_score(&q) - mesh_route_score(&p), 5.0, 1e-9);
}
END_TEST

START_TEST(tiers)
{
	ck_assert_int_eq(mesh_reputation_tier(100), MESH_TRUST_VERIFIED);
	ck_assert_int_eq(mesh_reputation_tier(90), MESH_TRUST_VERIFIED);
	ck_assert_int_eq(mesh_reputation_tier(89.99), MESH_TRUST_TRUSTED);
	ck_assert_int_eq(mesh_reputation_tier(70), MESH_TRUST_TRUSTED);
	ck_assert_int_eq(mesh_reputation_tier(69.9), MESH_TRUST_NEW);
	ck_assert_int_eq(mesh_reputation_tier(30), MESH_TRUST_NEW);
	ck_assert_int_eq(mesh_reputation_tier(29.9), MESH_TRUST_SUSPICIOUS);
	ck_assert_int_eq(mesh_reputation_tier(10), MESH_TRUST_SUSPICIOUS);
	ck_assert_int_eq(mesh_reputation_tier(9.99), MESH_TRUST_BANNED);
	ck_assert_int_eq(mesh_reputation_tier(0), MESH_TRUST_BANNED);
	ck_assert_str_eq(mesh_trust_name(MESH_TRUST_TRUSTED), "trusted");
	ck_assert_double_eq(mesh_reputation_apply(95, 10), 100);
	ck_assert_double_eq(mesh_reputation_apply(5, -10), 0);
	ck_assert_int_eq(mesh_rep_event_parse("admin_adjustment"), MESH_REP_ADMIN_ADJUSTMENT);
	ck_assert_int_eq(mesh_rep_event_parse("nope"), -1);
}
END_TEST

/* The exact search agrees with the brute force on q and reports the
 * metrics of its own path (failures name the query "what n"); returns the
 * search's code, its result in *a. */
static int search_as_brute_force(const struct mesh_route_query *q, const char *what, int n, struct mesh_route_result *a)
{
	struct mesh_route_result b;
	int ra = mesh_route_search(q, a), rb = mesh_route_brute_force(q, &b);
	ck_assert_int_eq(ra, rb);
	if (ra == 0) {
		ck_assert_msg(fabs(a->score - b.score) < 1e-6, "%s %d: search %f brute %f", what, n, a->score, b.score);
		struct mesh_path_metrics pm;
		mesh_route_path_metrics(q->lat, a->path, a->n, &pm);
		ck_assert_double_eq_tol(mesh_route_score(&pm), a->score, 1e-6);
	}
	return ra;
}

/* A hidden-truth oracle: floor * inflation + access delays. */
struct truth {
	int n;
	float *infl; /* n*n */
	const struct mesh_rnode *base;
};

static double truth_link(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b)
{
	struct truth *t = ctx;
	int i = (int)(a - t->base), j = (int)(b - t->base);
	return mesh_model_floor_ms(&a->m, &b->m) * t->infl[i * t->n + j] + a->m.acc_ms + b->m.acc_ms;
}

static void random_world(unsigned seed, int n, struct mesh_rnode *nodes, struct truth *t)
{
	srand(seed);
	t->n = n;
	t->base = nodes;
	t->infl = malloc(sizeof(float) * n * n);
	for (int i = 0; i < n; i++) {
		struct mesh_rnode *r = &nodes[i];
		memset(r, 0, sizeof(*r));
		r->m.key = (uint32_t)i + 1;
		mesh_mnode_set_position(&r->m, rand() % 140 - 70, rand() % 360 - 180);
		r->m.acc_ms = (float)(rand() % 40);
		r->bw_avail_mbps = (float)(rand() % 150);
		r->reputation = (float)(60 + rand() % 41);
		r->uptime = (float)(80 + rand() % 21);
		r->aic = rand() % 3 != 0;
	}
	for (int i = 0; i < n; i++)
		for (int j = 0; j <= i; j++) {
			float f = 1.0f + (float)(rand() % 100) / 100.0f;
			if (rand() % 5 == 0)
				f += 3.0f; /* a bad link: detour */
			t->infl[i * n + j] = t->infl[j * n + i] = i == j ? 1.0f : f;
		}
}

START_TEST(search_matches_brute_force)
{
	enum { N = 14 };
	int relay_wins = 0, two_relay_wins = 0;
	for (unsigned seed = 1; seed <= 400; seed++) {
		struct mesh_rnode nodes[N];
		struct truth t;
		random_world(seed, N, nodes, &t);
		const struct mesh_rnode *relays[N];
		for (int i = 0; i < N - 2; i++)
			relays[i] = &nodes[i + 2];
		struct mesh_oracle o = {truth_link, &t, 0, NULL, NULL, NULL};
		struct mesh_route_query q = {&nodes[0], &nodes[1], relays, N - 2, seed % 4 == 0, 2, &o, 0, false, 0};
		struct mesh_route_result a;
		if (search_as_brute_force(&q, "seed", (int)seed, &a) == 0) {
			relay_wins += a.n > 2;
			two_relay_wins += a.n == 4;
		}
		free(t.infl);
	}
	/* the worlds exercise relayed paths (two-relay wins: see two_relays_win) */
	ck_assert_int_gt(relay_wins, 10);
	(void)two_relay_wins;
}
END_TEST

START_TEST(search_with_model_oracle_matches_brute_force)
{
	enum { N = 12 };
	for (unsigned seed = 1; seed <= 100; seed++) {
		struct mesh_rnode nodes[N];
		struct truth t;
		random_world(seed, N, nodes, &t);
		struct mesh_model *m = mesh_model_new();
		/* teach it some links, with negative corrections too */
		for (int k = 0; k < 40; k++) {
			int i = rand() % N, j = rand() % N;
			if (i == j)
				continue;
			struct mesh_mnode *p[2] = {&nodes[i].m, &nodes[j].m};
			mesh_model_learn(m, p, 2, truth_link(&t, &nodes[i], &nodes[j]) * (rand() % 2 ? 0.5 : 1.5));
		}
		const struct mesh_rnode *relays[N];
		for (int i = 0; i < N - 2; i++)
			relays[i] = &nodes[i + 2];
		struct mesh_oracle o;
		mesh_route_model_oracle(&o, m);
		struct mesh_route_query q = {&nodes[0], &nodes[1], relays, N - 2, false, 2, &o, 0, false, 0};
		struct mesh_route_result a, b;
		ck_assert_int_eq(mesh_route_search(&q, &a), 0);
		ck_assert_int_eq(mesh_route_brute_force(&q, &b), 0);
		ck_assert_msg(fabs(a.score - b.score) < 1e-6, "seed %u", seed);
		mesh_model_free(m);
		free(t.infl);
	}
}
END_TEST

/* The floor's lower bound without asin: never above the floor, at most
 * 0.06 ms below, from identical to antipodal points. */
START_TEST(floor_lower_bound)
{
	srand(11);
	double worst = 0;
	for (int k = 0; k < 200000; k++) {
		struct mesh_mnode a = {0}, b = {0};
		double la = (double)rand() / RAND_MAX * 180 - 90, lo = (double)rand() / RAND_MAX * 360 - 180;
		mesh_mnode_set_position(&a, la, lo);
		switch (k % 4) {
		case 0:
			/* anywhere */
			mesh_mnode_set_position(&b, (double)rand() / RAND_MAX * 180 - 90,
						(double)rand() / RAND_MAX * 360 - 180);
			break;
		case 1:
			/* near */
			mesh_mnode_set_position(&b, la + (double)rand() / RAND_MAX * 0.1, lo);
			break;
		case 2:
			/* near the antipode */
			mesh_mnode_set_position(&b, -la + (double)rand() / RAND_MAX * 0.1,
						lo < 0 ? lo + 180 : lo - 180);
			break;
		default:
			/* the same place, or around 90 degrees (the switch of branches) */
			if (k % 8 == 3)
				b = a;
			else
				mesh_mnode_set_position(&b, 0, lo + 89.5 + (double)rand() / RAND_MAX);
			mesh_mnode_set_position(&a, 0, lo);
		}
		double fl = mesh_model_floor_ms(&a, &b), lb = mesh_model_floor_lb_ms(&a, &b);
		ck_assert_msg(lb <= fl, "lb %.12f > floor %.12f", lb, fl);
		if (fl - lb > worst)
			worst = fl - lb;
	}
	ck_assert_msg(worst < 0.06, "worst %f ms", worst);
}
END_TEST

/* Bigger worlds: 160 nodes, every one a relay. With a truth oracle with
 * detours (relayed paths win often; on every third query every link of s
 * but one and of d but one is a detour, so two relays win), the pruned
 * search finds what trying every path finds and prices only a small part
 * of the paths. */
START_TEST(search_prunes_big_graph)
{
	enum { N = 160 };
	static struct mesh_rnode nodes[N];
	static const struct mesh_rnode *relays[N];
	static float saved[N * N];
	struct truth t;
	random_world(77, N, nodes, &t);
	for (int i = 0; i < N; i++)
		relays[i] = &nodes[i]; /* s and d among them: the search skips them */
	size_t paths = 0, priced = 0;
	int relayed = 0, two = 0;
	for (int k = 0; k < 45; k++) {
		int si = rand() % N, di = rand() % N;
		if (si == di)
			continue;
		int r1 = rand() % N, r2 = rand() % N;
		bool detour = k % 3 == 0 && r1 != si && r1 != di && r2 != si && r2 != di && r1 != r2;
		if (detour) {
			memcpy(saved, t.infl, sizeof(saved));
			for (int j = 0; j < N; j++) {
				if (j != r1 && j != si)
					t.infl[si * N + j] = t.infl[j * N + si] = saved[si * N + j] + 4;
				if (j != r2 && j != di)
					t.infl[di * N + j] = t.infl[j * N + di] = saved[di * N + j] + 4;
			}
		}
		struct mesh_oracle o = {truth_link, &t, 0, NULL, NULL, NULL};
		/* every second query with the relays' least access delay given */
		double acc_min = HUGE_VAL;
		for (int i = 0; i < N; i++)
			if (nodes[i].m.acc_ms < acc_min)
				acc_min = nodes[i].m.acc_ms;
		struct mesh_route_query q = {.src = &nodes[si],
					     .dst = &nodes[di],
					     .relays = relays,
					     .nrelays = N,
					     .require_aic = k % 5 == 1,
					     .max_relays = 2,
					     .lat = &o,
					     .acc_min_known = k % 2,
					     .acc_min = acc_min};
		struct mesh_route_result a;
		if (search_as_brute_force(&q, "query", k, &a) == 0) {
			relayed += a.n > 2;
			two += a.n == 4;
			paths += 1 + (N - 2) + (size_t)(N - 2) * (N - 3);
			priced += a.evaluated;
		}
		if (detour)
			memcpy(t.infl, saved, sizeof(saved));
	}
	ck_assert_int_gt(relayed, 5);
	ck_assert_int_gt(two, 1);
	ck_assert_msg(priced * 50 < paths, "priced %zu of %zu paths", priced, paths);
	free(t.infl);
}
END_TEST

/* The same with the learned model as the oracle: links taught from the
 * truth (one report in ten far too fast: negative corrections, so
 * corr_lb < 0), unreported links everywhere else, and exploration on
 * every second query: the same route as every path's score and index. */
START_TEST(search_prunes_big_graph_model)
{
	enum { N = 160 };
	static struct mesh_rnode nodes[N];
	static const struct mesh_rnode *relays[N];
	struct truth t;
	random_world(78, N, nodes, &t);
	for (int i = 0; i < N; i++)
		relays[i] = &nodes[i];
	struct mesh_model *m = mesh_model_new();
	for (int k = 0; k < 1500; k++) {
		int i = rand() % N, j = rand() % N, r = rand() % N;
		if (i == j || r == i || r == j)
			continue;
		double f = rand() % 10 == 0 ? 0.5 : 1.0;
		if (k % 3) {
			struct mesh_mnode *p[2] = {&nodes[i].m, &nodes[j].m};
			mesh_model_learn(m, p, 2, truth_link(&t, &nodes[i], &nodes[j]) * f);
		} else {
			struct mesh_mnode *p[3] = {&nodes[i].m, &nodes[r].m, &nodes[j].m};
			mesh_model_learn(m, p, 3,
					 (truth_link(&t, &nodes[i], &nodes[r]) + truth_link(&t, &nodes[r], &nodes[j])) *
						 f);
		}
	}
	ck_assert(mesh_model_corr_lower_bound(m) < 0);
	struct mesh_oracle o;
	mesh_route_model_oracle(&o, m);
	int explored = 0, relayed = 0;
	size_t priced = 0, queries = 0;
	for (int k = 0; k < 90; k++) {
		int si = rand() % N, di = rand() % N;
		if (si == di)
			continue;
		struct mesh_route_query q = {.src = &nodes[si],
					     .dst = &nodes[di],
					     .relays = relays,
					     .nrelays = N,
					     .require_aic = k % 7 == 3,
					     .max_relays = 2,
					     .lat = &o,
					     .explore_cost = k % 2 ? MESH_EXPLORE_COST_POINTS : 0};
		struct mesh_route_result a, b;
		int ra = mesh_route_search(&q, &a), rb = mesh_route_brute_force(&q, &b);
		ck_assert_int_eq(ra, rb);
		if (ra < 0)
			continue;
		ck_assert_msg(fabs(a.score - b.score) < 1e-6, "query %d: search %f brute %f", k, a.score, b.score);
		ck_assert_int_eq(a.explored, b.explored);
		ck_assert_int_eq(a.n, b.n);
		for (int i = 0; i < a.n; i++)
			ck_assert_ptr_eq(a.path[i], b.path[i]);
		explored += a.explored;
		relayed += a.n > 2;
		priced += a.evaluated;
		queries++;
	}
	ck_assert_int_gt(explored, 0);
	ck_assert_int_gt(relayed, 0);
	ck_assert_msg(priced < queries * N, "priced %zu in %zu queries", priced, queries);
	mesh_model_free(m);
	free(t.infl);
}
END_TEST

/* A hand-made graph where only a two-relay path avoids the bad links. */
static double mat[4][4];
static struct mesh_rnode hm[4];
static double mat_link(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b)
{
	(void)ctx;
	return mat[a - hm][b - hm];
}

START_TEST(two_relays_win)
{
	/* 0 = s, 1 = d, 2 = r1, 3 = r2: all at one place (floor 0) */
	for (int i = 0; i < 4; i++) {
		memset(&hm[i], 0, sizeof(hm[i]));
		hm[i].m.key = (uint32_t)i + 1;
		mesh_mnode_set_position(&hm[i].m, 10, 10);
		hm[i].bw_avail_mbps = 100;
		hm[i].reputation = 90;
		hm[i].uptime = 100;
		for (int j = 0; j < 4; j++)
			mat[i][j] = 250;
	}
	mat[0][2] = mat[2][0] = 10;
	mat[2][3] = mat[3][2] = 10;
	mat[3][1] = mat[1][3] = 10;
	const struct mesh_rnode *relays[2] = {&hm[2], &hm[3]};
	struct mesh_oracle o = {mat_link, NULL, 0, NULL, NULL, NULL};
	struct mesh_route_query q = {&hm[0], &hm[1], relays, 2, false, 2, &o, 0, false, 0};
	struct mesh_route_result a, b;
	ck_assert_int_eq(mesh_route_search(&q, &a), 0);
	ck_assert_int_eq(mesh_route_brute_force(&q, &b), 0);
	ck_assert_int_eq(a.n, 4);
	ck_assert_ptr_eq(a.path[1], &hm[2]);
	ck_assert_ptr_eq(a.path[2], &hm[3]);
	ck_assert_double_eq_tol(a.pm.latency_ms, 30, 1e-9);
	ck_assert_double_eq_tol(a.score, b.score, 1e-9);
	/* with one relay allowed, the best is direct or one relay */
	q.max_relays = 1;
	ck_assert_int_eq(mesh_route_search(&q, &a), 0);
	ck_assert_int_lt(a.n, 4);
	/* a relay with too little reputation... is the caller's filter; a
	 * slower middle link makes the direct path win again */
	q.max_relays = 2;
	mat[2][3] = mat[3][2] = 400;
	ck_assert_int_eq(mesh_route_search(&q, &a), 0);
	ck_assert_int_eq(a.n, 2);
}
END_TEST

START_TEST(require_aic)
{
	struct mesh_rnode nodes[3];
	struct truth t;
	random_world(7, 3, nodes, &t);
	nodes[0].aic = nodes[1].aic = true;
	nodes[2].aic = false;
	const struct mesh_rnode *relays[1] = {&nodes[2]};
	struct mesh_oracle o = {truth_link, &t, 0, NULL, NULL, NULL};
	struct mesh_route_query q = {&nodes[0], &nodes[1], relays, 1, true, 2, &o, 0, false, 0};
	struct mesh_route_result r;
	ck_assert_int_eq(mesh_route_search(&q, &r), 0);
	ck_assert_int_eq(r.n, 2);
	nodes[1].aic = false;
	ck_assert_int_eq(mesh_route_search(&q, &r), -1);
	free(t.infl);
}
END_TEST

START_TEST(model_floor_and_convergence)
{
	struct mesh_mnode a = {.key = 1, .acc_ms = MESH_ACCESS_PRIOR_MS};
	struct mesh_mnode b = {.key = 2, .acc_ms = MESH_ACCESS_PRIOR_MS};
	struct mesh_mnode c = {.key = 3, .acc_ms = MESH_ACCESS_PRIOR_MS};
	mesh_mnode_set_position(&a, 51.5, -0.13);  /* London */
	mesh_mnode_set_position(&b, 40.71, -74.0); /* New York */
	mesh_mnode_set_position(&c, 48.86, 2.35);  /* Paris */
	double km = mesh_model_distance_km(&a, &b);
	ck_assert_msg(km > 5500 && km < 5620, "%f", km);
	ck_assert_double_eq_tol(mesh_model_floor_ms(&a, &b), km / MESH_FIBRE_KM_PER_MS, 1e-9);
	struct mesh_model *m = mesh_model_new();
	double truth_ab = 45.0, truth_bc = 52.0, truth_ac = 9.0;
	double e0 = fabs(mesh_model_link_ms(m, &a, &b) - truth_ab);
	for (int k = 0; k < 30; k++) {
		struct mesh_mnode *p1[2] = {&a, &b}, *p2[2] = {&b, &c}, *p3[2] = {&a, &c};
		mesh_model_learn(m, p1, 2, truth_ab);
		mesh_model_learn(m, p2, 2, truth_bc);
		mesh_model_learn(m, p3, 2, truth_ac);
	}
	double e1 = fabs(mesh_model_link_ms(m, &a, &b) - truth_ab);
	ck_assert_msg(e1 < 0.5 && e1 < e0, "before %f after %f", e0, e1);
	ck_assert(fabs(mesh_model_link_ms(m, &b, &c) - truth_bc) < 0.5);
	ck_assert(fabs(mesh_model_link_ms(m, &a, &c) - truth_ac) < 0.5);
	/* a relayed path converges as well */
	for (int k = 0; k < 30; k++) {
		struct mesh_mnode *p[3] = {&a, &c, &b};
		mesh_model_learn(m, p, 3, 70.0);
	}
	double pred = mesh_model_link_ms(m, &a, &c) + mesh_model_link_ms(m, &c, &b);
	ck_assert_msg(fabs(pred - 70.0) < 1.0, "%f", pred);
	ck_assert(mesh_model_corr_lower_bound(m) <= 0);
	ck_assert_uint_eq(mesh_model_links(m), 3);
	mesh_model_forget_node(m, 3);
	ck_assert_uint_eq(mesh_model_links(m), 1);
	mesh_model_free(m);
}
END_TEST

/* A full link table evicts the least used links, not the one in use, and
 * a new link still gets its correction (it used to be dropped). */
START_TEST(model_evicts_least_used_links)
{
	struct mesh_model *m = mesh_model_new();
	mesh_model_set_max_links(m, 32);
	struct mesh_mnode a = {.key = 1, .acc_ms = MESH_ACCESS_PRIOR_MS};
	struct mesh_mnode b = {.key = 2, .acc_ms = MESH_ACCESS_PRIOR_MS};
	mesh_mnode_set_position(&a, 51.5, -0.13);  /* London */
	mesh_mnode_set_position(&b, 40.71, -74.0); /* New York */
	struct mesh_mnode *ab[2] = {&a, &b};
	for (int k = 0; k < 20; k++)
		mesh_model_learn(m, ab, 2, 45.0);
	double pa = mesh_model_link_ms(m, &a, &b);
	ck_assert_msg(fabs(pa - 45.0) < 0.5, "%f", pa);
	/* 600 links reported once, each exactly as predicted (so nothing but
	 * the table changes), while a-b keeps being reported */
	srand(7);
	for (int i = 0; i < 600; i++) {
		struct mesh_mnode x = {.key = 1000 + 2 * (uint32_t)i, .acc_ms = MESH_ACCESS_PRIOR_MS};
		struct mesh_mnode y = {.key = 1001 + 2 * (uint32_t)i, .acc_ms = MESH_ACCESS_PRIOR_MS};
		mesh_mnode_set_position(&x, rand() % 140 - 70, rand() % 360 - 180);
		mesh_mnode_set_position(&y, rand() % 140 - 70, rand() % 360 - 180);
		struct mesh_mnode *xy[2] = {&x, &y};
		mesh_model_learn(m, xy, 2, mesh_model_link_ms(m, &x, &y));
		if (i % 8 == 0)
			mesh_model_learn(m, ab, 2, 45.0);
		ck_assert_uint_le(mesh_model_links(m), 32);
	}
	ck_assert_uint_ge(mesh_model_evictions(m), 600 + 1 - 32);
	/* a-b kept its learned correction */
	ck_assert_msg(fabs(mesh_model_link_ms(m, &a, &b) - 45.0) < 0.5, "%f", mesh_model_link_ms(m, &a, &b));
	/* the newest link has an entry: its first report moves it */
	struct mesh_mnode x = {.key = 5000, .acc_ms = MESH_ACCESS_PRIOR_MS, .acc_var = 1e-3f};
	struct mesh_mnode y = {.key = 5001, .acc_ms = MESH_ACCESS_PRIOR_MS, .acc_var = 1e-3f};
	mesh_mnode_set_position(&x, 10, 10);
	mesh_mnode_set_position(&y, 20, 20);
	struct mesh_mnode *xy[2] = {&x, &y};
	double before = mesh_model_link_ms(m, &x, &y);
	mesh_model_learn(m, xy, 2, before + 40);
	ck_assert_msg(mesh_model_link_ms(m, &x, &y) > before + 20, "%f -> %f", before, mesh_model_link_ms(m, &x, &y));
	ck_assert_uint_le(mesh_model_links(m), 32);
	mesh_model_free(m);
}
END_TEST

/* ---- the learning rules ---- */

static void place(struct mesh_mnode *n, uint32_t key, int cls, double lat, double lon)
{
	memset(n, 0, sizeof(*n));
	n->key = key;
	n->cls = (uint8_t)cls;
	mesh_mnode_set_position(n, lat, lon);
}

/* True latency in these tests: floor * infl + the true access delays. */
static double true_link(const struct mesh_mnode *a, double acc_a, const struct mesh_mnode *b, double acc_b, double infl)
{
	return mesh_model_floor_ms(a, b) * infl + acc_a + acc_b;
}

/* The class means follow the first reports of unmeasured nodes: devices
 * slower than the start, infrastructure faster; a new node gets them. */
START_TEST(model_class_means_learn)
{
	enum { D = 40, R = 20 };
	struct mesh_model *m = mesh_model_new();
	struct mesh_mnode dev[D], rel[R];
	srand(11);
	for (int i = 0; i < D; i++) {
		place(&dev[i], 1 + (uint32_t)i, MESH_CLASS_DEVICE, 45 + rand() % 10, rand() % 20 - 10);
		mesh_model_apply_prior(m, &dev[i]);
	}
	for (int i = 0; i < R; i++) {
		place(&rel[i], 100 + (uint32_t)i, MESH_CLASS_INFRA, 45 + rand() % 10, rand() % 20 - 10);
		mesh_model_apply_prior(m, &rel[i]);
	}
	ck_assert_double_eq_tol(dev[0].acc_ms, MESH_ACCESS_PRIOR_MS, 1e-6);
	uint32_t v0 = mesh_model_prior_version(m);
	for (int i = 0; i < D; i += 2) {
		/* direct calls between devices, then calls through relays */
		struct mesh_mnode *p[2] = {&dev[i], &dev[i + 1]};
		mesh_model_learn(m, p, 2, true_link(&dev[i], 25, &dev[i + 1], 25, 1.3));
	}
	for (int i = 0; i < D; i++) {
		/* device i - relay - device i+1: devices 25 ms, relays 1 ms */
		struct mesh_mnode *a = &dev[i], *r = &rel[i % R], *b = &dev[(i + 1) % D];
		struct mesh_mnode *p[3] = {a, r, b};
		double l = true_link(a, 25, r, 1, 1.3) + true_link(r, 1, b, 25, 1.3);
		mesh_model_learn(m, p, 3, l);
	}
	double md = mesh_model_class_mean(m, MESH_CLASS_DEVICE), mi = mesh_model_class_mean(m, MESH_CLASS_INFRA);
	ck_assert_msg(md > 16 && md < 40, "devices %f", md);
	ck_assert_msg(mi < MESH_ACCESS_PRIOR_MS - 3, "infrastructure %f", mi);
	ck_assert_uint_ne(mesh_model_prior_version(m), v0);
	struct mesh_mnode fresh;
	place(&fresh, 500, MESH_CLASS_DEVICE, 0, 0);
	mesh_model_apply_prior(m, &fresh);
	ck_assert_double_eq_tol(fresh.acc_ms, md, 0.3);
	/* a measured node keeps its own estimate */
	float before = dev[3].acc_ms;
	mesh_model_apply_prior(m, &dev[3]);
	ck_assert(dev[3].acc_var > 0 && dev[3].acc_ms == before);
	mesh_model_free(m);
}
END_TEST

/* Ends whose access delays many normal links determined; then a link
 * between them measures far above its floor: a detour of the link, not
 * slow ends. The link takes it; the ends barely move; the detour rate
 * learned from first reports goes up when detours are common. */
START_TEST(model_detour_goes_to_the_link)
{
	struct mesh_model *m = mesh_model_new();
	struct mesh_mnode a, b, x[12];
	place(&a, 1, MESH_CLASS_DEVICE, 51.5, -0.13);  /* London */
	place(&b, 2, MESH_CLASS_DEVICE, 40.71, -74.0); /* New York */
	double rate0, share0, sd0, sd1;
	mesh_model_detours(m, &rate0, &share0, &sd0, &sd1);
	for (int i = 0; i < 12; i++) {
		place(&x[i], 10 + (uint32_t)i, MESH_CLASS_INFRA, 30 + 3 * i, -100 + 15 * i);
		for (int k = 0; k < 3; k++) {
			struct mesh_mnode *pa[2] = {&a, &x[i]}, *pb[2] = {&b, &x[i]};
			mesh_model_learn(m, pa, 2, true_link(&a, 8, &x[i], 2, 1.3));
			mesh_model_learn(m, pb, 2, true_link(&b, 12, &x[i], 2, 1.3));
		}
	}
	double acc_a = a.acc_ms, acc_b = b.acc_ms;
	double measured = true_link(&a, 8, &b, 12, 3.0); /* about 47 ms more than normal */
	struct mesh_mnode *ab[2] = {&a, &b};
	mesh_model_learn(m, ab, 2, measured);
	ck_assert_msg(fabs(a.acc_ms - acc_a) < 2 && fabs(b.acc_ms - acc_b) < 2, "a %f -> %f, b %f -> %f", acc_a,
		      a.acc_ms, acc_b, b.acc_ms);
	ck_assert_msg(fabs(mesh_model_link_ms(m, &a, &b) - measured) < 3, "%f vs %f", mesh_model_link_ms(m, &a, &b),
		      measured);
	/* many first reports, one in three a detour: the rate follows */
	for (int i = 0; i < 300; i++) {
		struct mesh_mnode p, q;
		place(&p, 1000 + 2 * (uint32_t)i, MESH_CLASS_INFRA, (i * 7) % 120 - 60, (i * 37) % 360 - 180);
		place(&q, 1001 + 2 * (uint32_t)i, MESH_CLASS_INFRA, (i * 11) % 120 - 60, (i * 53) % 360 - 180);
		p.acc_ms = q.acc_ms = 1;
		p.acc_var = q.acc_var = 1;
		struct mesh_mnode *pq[2] = {&p, &q};
		mesh_model_learn(m, pq, 2, true_link(&p, 1, &q, 1, i % 3 ? 1.3 : 3.0));
	}
	double rate, share;
	mesh_model_detours(m, &rate, &share, &sd0, &sd1);
	ck_assert_msg(rate > 0.25 && rate < 0.45, "detour rate %f (from %f)", rate, rate0);
	ck_assert_msg(share > 1.2 && share < 2.2, "detour share %f", share);
	ck_assert_msg(fabs(mesh_model_inflation(m) - 0.3) < 0.1, "inflation %f", mesh_model_inflation(m));
	mesh_model_free(m);
}
END_TEST

/* Two devices only ever seen together: their direct link reads slow
 * (really a detour; the filter puts part of it on their access delays),
 * then a path through a relay reads fast. Re-estimating their access
 * delays from both links undoes the first split, while the prediction of
 * each reported path stays what was measured. */
START_TEST(model_recenter_access_from_all_links)
{
	struct mesh_model *m = mesh_model_new();
	struct mesh_mnode s, d, r;
	place(&s, 1, MESH_CLASS_DEVICE, 35.68, 139.69); /* Tokyo */
	place(&d, 2, MESH_CLASS_DEVICE, 1.35, 103.82);  /* Singapore */
	place(&r, 3, MESH_CLASS_INFRA, 22.32, 114.17);  /* Hong Kong */
	r.acc_ms = 1;
	r.acc_var = 0.5f; /* a well known relay */
	mesh_model_apply_prior(m, &s);
	mesh_model_apply_prior(m, &d);
	double direct = true_link(&s, 3, &d, 4, 2.6),
	       relayed = true_link(&s, 3, &r, 1, 1.1) + true_link(&r, 1, &d, 4, 1.1);
	struct mesh_mnode *sd[2] = {&s, &d}, *srd[3] = {&s, &r, &d};
	for (int k = 0; k < 3; k++)
		mesh_model_learn(m, sd, 2, direct);
	double after_direct = s.acc_ms + d.acc_ms;
	for (int k = 0; k < 3; k++)
		mesh_model_learn(m, srd, 3, relayed);
	double sum = s.acc_ms + d.acc_ms;
	ck_assert_msg(sum - 7 < (after_direct - 7) / 2, "ends %f after the direct path, %f after both (true 7)",
		      after_direct, sum);
	/* (up to what the shared inflation g learned meanwhile) */
	ck_assert_msg(fabs(mesh_model_link_ms(m, &s, &d) - direct) < 4, "direct %f measured %f",
		      mesh_model_link_ms(m, &s, &d), direct);
	double pr = mesh_model_link_ms(m, &s, &r) + mesh_model_link_ms(m, &r, &d);
	ck_assert_msg(fabs(pr - relayed) < 2, "relayed %f measured %f", pr, relayed);
	mesh_model_free(m);
}
END_TEST

/* A heartbeat's latency to the mesh: an unmeasured node starts at it
 * minus the learned offset, and the offset follows well measured nodes. */
START_TEST(model_heartbeat_prior_and_offset)
{
	struct mesh_model *m = mesh_model_new();
	struct mesh_mnode n;
	place(&n, 1, MESH_CLASS_DEVICE, 48.86, 2.35);
	mesh_model_apply_prior(m, &n);
	double off = mesh_model_heartbeat_offset(m, NULL);
	mesh_model_heartbeat(m, &n, 30);
	ck_assert_double_eq_tol(n.acc_ms, 30 - off, 1e-4);
	ck_assert(n.acc_var > 0);
	mesh_model_heartbeat(m, &n, 2); /* never below 0, never above the beat */
	ck_assert(n.acc_ms >= 0 && n.acc_ms <= 2);
	/* relays that measure 2 ms above their true access delay, taught by
	 * many links: the offset moves from its start towards 2 */
	struct mesh_mnode rel[8], peer[8];
	for (int i = 0; i < 8; i++) {
		place(&rel[i], 10 + (uint32_t)i, MESH_CLASS_INFRA, 40 + i, -5 + 3 * i);
		place(&peer[i], 30 + (uint32_t)i, MESH_CLASS_DEVICE, 45 - i, 10 - 2 * i);
		mesh_model_heartbeat(m, &peer[i], 15 + off);
	}
	for (int round = 0; round < 6; round++)
		for (int i = 0; i < 8; i++) {
			mesh_model_heartbeat(m, &rel[i], 1.5 + 2);
			for (int j = 0; j < 8; j++) {
				struct mesh_mnode *p[2] = {&rel[i], &peer[j]};
				mesh_model_learn(m, p, 2, true_link(&rel[i], 1.5, &peer[j], 15, 1.3));
			}
		}
	double sd, now = mesh_model_heartbeat_offset(m, &sd);
	ck_assert_msg(now < off - 1 && now > 0.5, "offset %f -> %f", off, now);
	ck_assert(sd > 0);
	mesh_model_free(m);
}
END_TEST

/* Exploration (Weitzman's index): a known slow direct path and a relay
 * nobody tried. Without exploration the search keeps the direct path;
 * with it, it tries the relay once; the relay turns out slow and is
 * learned, and the search goes back to the direct path for good. */
START_TEST(search_explores_then_settles)
{
	struct mesh_model *m = mesh_model_new();
	struct mesh_rnode nodes[3];
	memset(nodes, 0, sizeof(nodes));
	place(&nodes[0].m, 1, MESH_CLASS_DEVICE, 52.52, 13.40); /* Berlin */
	place(&nodes[1].m, 2, MESH_CLASS_DEVICE, 19.08, 72.88); /* Mumbai */
	place(&nodes[2].m, 3, MESH_CLASS_INFRA, 25.20, 55.27);  /* Dubai */
	for (int i = 0; i < 3; i++) {
		nodes[i].m.acc_ms = 5;
		nodes[i].m.acc_var = 1;
		nodes[i].bw_avail_mbps = 100;
		nodes[i].reputation = nodes[i].uptime = 100;
	}
	nodes[2].m.acc_var = 0; /* a relay nobody measured */
	mesh_model_apply_prior(m, &nodes[2].m);
	/* the direct path measures one point better than the relay's
	 * prediction (which pays 5 points for the hop): the best predicted
	 * path, but the relay might be much faster */
	struct mesh_mnode *sd[2] = {&nodes[0].m, &nodes[1].m};
	const struct mesh_rnode *relays[1] = {&nodes[2]};
	const struct mesh_rnode *rp[3] = {&nodes[0], &nodes[2], &nodes[1]};
	struct mesh_oracle o;
	double per_point = MESH_LATENCY_SCALE_MS / (-100.0 * MESH_W_LATENCY);
	for (int it = 0; it < 4; it++) {
		struct mesh_path_metrics rm;
		mesh_route_model_oracle(&o, m);
		mesh_route_path_metrics(&o, rp, 3, &rm);
		double direct = rm.latency_ms + (-100.0 * MESH_W_HOPS / 2 - 1) * per_point;
		for (int k = 0; k < 4; k++)
			mesh_model_learn(m, sd, 2, direct);
	}
	mesh_route_model_oracle(&o, m);
	struct mesh_route_query q = {&nodes[0], &nodes[1], relays, 1, false, 2, &o, 0, false, 0};
	struct mesh_route_result res;
	ck_assert_int_eq(mesh_route_search(&q, &res), 0);
	ck_assert_int_eq(res.n, 2);
	ck_assert(!res.explored);
	q.explore_cost = MESH_EXPLORE_COST_POINTS;
	ck_assert_int_eq(mesh_route_search(&q, &res), 0);
	ck_assert_msg(res.n == 3 && res.explored, "n %d", res.n);
	/* the route reports its predicted metrics, not the index */
	struct mesh_path_metrics pm;
	mesh_route_path_metrics(&o, res.path, res.n, &pm);
	ck_assert_double_eq_tol(res.pm.latency_ms, pm.latency_ms, 1e-9);
	/* tried: slow */
	struct mesh_mnode *srd[3] = {&nodes[0].m, &nodes[2].m, &nodes[1].m};
	double relayed = true_link(&nodes[0].m, 5, &nodes[2].m, 5, 2.5) +
			 true_link(&nodes[2].m, 5, &nodes[1].m, 5, 2.5);
	mesh_model_learn(m, srd, 3, relayed);
	mesh_route_model_oracle(&o, m);
	for (int k = 0; k < 3; k++) {
		ck_assert_int_eq(mesh_route_search(&q, &res), 0);
		ck_assert_msg(res.n == 2 && !res.explored, "n %d", res.n);
	}
	mesh_model_free(m);
}
END_TEST

static uint32_t cur_epoch[8];
static bool valid_cb(void *ctx, uint32_t key, uint32_t epoch)
{
	(void)ctx;
	return key < 8 && cur_epoch[key] == epoch;
}

START_TEST(cache_invalidation)
{
	struct mesh_route_cache *c = mesh_route_cache_new(16);
	struct mesh_cached_route r = {0}, out;
	snprintf(r.route_id, sizeof(r.route_id), "route-1");
	r.expires_ms = 1000 + MESH_ROUTE_TTL_MS;
	r.n = 3;
	for (int i = 0; i < 3; i++) {
		r.keys[i] = (uint32_t)i + 1;
		r.epochs[i] = cur_epoch[i + 1] = 5;
	}
	mesh_route_cache_put(c, "@a.aura|@b.aura|audio|0", &r);
	ck_assert_int_eq(mesh_route_cache_get(c, "@a.aura|@b.aura|audio|0", 2000, valid_cb, NULL, &out), 0);
	ck_assert_str_eq(out.route_id, "route-1");
	ck_assert_int_eq(mesh_route_cache_get(c, "@a.aura|@b.aura|video|0", 2000, valid_cb, NULL, &out), -1);
	/* expiry */
	ck_assert_int_eq(
		mesh_route_cache_get(c, "@a.aura|@b.aura|audio|0", 1000 + MESH_ROUTE_TTL_MS, valid_cb, NULL, &out), -1);
	/* a relay going offline drops it */
	mesh_route_cache_put(c, "@a.aura|@b.aura|audio|0", &r);
	cur_epoch[2]++;
	ck_assert_int_eq(mesh_route_cache_get(c, "@a.aura|@b.aura|audio|0", 2000, valid_cb, NULL, &out), -1);
	cur_epoch[2]--; /* dropped for good even if the epoch matched again */
	ck_assert_int_eq(mesh_route_cache_get(c, "@a.aura|@b.aura|audio|0", 2000, valid_cb, NULL, &out), -1);
	mesh_route_cache_put(c, "k", &r);
	mesh_route_cache_drop_route(c, "route-1");
	ck_assert_int_eq(mesh_route_cache_get(c, "k", 2000, valid_cb, NULL, &out), -1);
	mesh_route_cache_free(c);
}
END_TEST

UNIT_MAIN("mesh_route", score_bounds_and_weights, tiers, search_matches_brute_force,
	  search_with_model_oracle_matches_brute_force, floor_lower_bound, search_prunes_big_graph,
	  search_prunes_big_graph_model, two_relays_win, require_aic, model_floor_and_convergence,
	  model_evicts_least_used_links, model_class_means_learn, model_detour_goes_to_the_link,
	  model_recenter_access_from_all_links, model_heartbeat_prior_and_offset, search_explores_then_settles,
	  cache_invalidation)
