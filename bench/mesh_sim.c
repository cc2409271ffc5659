/* mesh_sim.c - route selection and latency learning on a simulated world
 * with known ground truth. Drives the real registry, search and model
 * (no HTTP, no database). Prints figures; never passes or fails.
 *
 *   bench/mesh_sim [-n NODES] [-r RELAYS] [-q QUERIES] [-k ROUNDS] [-s SEED] [-H]
 *
 * World: nodes around ~60 real cities (jittered), peers with access delays
 * of 2..60 ms (residential), relays of 0.5..5 ms (data centres). The true
 * one-way latency of a link is floor(a,b) * inflation(a,b) + acc[a] +
 * acc[b], where inflation is a hidden per-link factor (1.05..1.6, and 2..4
 * for one link in eight: detours) that the model never sees. Every node
 * heartbeats (through mesh_registry_heartbeat, before the first query and
 * after each round) with avg_latency_ms = its measured one-way latency to
 * the mesh: the mean true latency to its 3 nearest eligible relays (what
 * an ICE agent's connectivity checks with the relays give it), +-5 %
 * noise; -H sends none. Reports:
 *  - accuracy: share of queries whose chosen path, re-scored with the true
 *    latency, is within 2 points of the truly best eligible path's score
 *  - regret: true latency of the chosen path minus the lowest true latency
 *    among eligible paths (mean, and mean ratio)
 *  - MAPE of the chosen path's predicted latency against its true latency
 * before feedback and after each of K rounds in which every query's chosen
 * path reports its true latency (+-2 % noise); "fresh" repeats the
 * evaluation on pairs never reported on (generalisation through the
 * learned access delays). Timing: mesh_registry_find per query. Each
 * evaluation is followed by a breakdown of its misses (chosen and truly
 * best path direct or relayed; whether they had been reported on). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "mesh_registry.h"
#include "mesh_route.h"

static const struct {
	const char *name;
	double lat, lon;
} cities[] = {
	{"London", 51.51, -0.13},
	{"Paris", 48.86, 2.35},
	{"Frankfurt", 50.11, 8.68},
	{"Amsterdam", 52.37, 4.90},
	{"Madrid", 40.42, -3.70},
	{"Milan", 45.46, 9.19},
	{"Stockholm", 59.33, 18.07},
	{"Warsaw", 52.23, 21.01},
	{"Istanbul", 41.01, 28.98},
	{"Moscow", 55.76, 37.62},
	{"Dubai", 25.20, 55.27},
	{"Mumbai", 19.08, 72.88},
	{"Delhi", 28.70, 77.10},
	{"Bangalore", 12.97, 77.59},
	{"Singapore", 1.35, 103.82},
	{"Jakarta", -6.21, 106.85},
	{"Bangkok", 13.76, 100.50},
	{"Hong Kong", 22.32, 114.17},
	{"Shanghai", 31.23, 121.47},
	{"Beijing", 39.90, 116.41},
	{"Seoul", 37.57, 126.98},
	{"Tokyo", 35.68, 139.69},
	{"Osaka", 34.69, 135.50},
	{"Manila", 14.60, 120.98},
	{"Sydney", -33.87, 151.21},
	{"Melbourne", -37.81, 144.96},
	{"Auckland", -36.85, 174.76},
	{"Los Angeles", 34.05, -118.24},
	{"San Francisco", 37.77, -122.42},
	{"Seattle", 47.61, -122.33},
	{"Vancouver", 49.28, -123.12},
	{"Denver", 39.74, -104.99},
	{"Dallas", 32.78, -96.80},
	{"Chicago", 41.88, -87.63},
	{"Toronto", 43.65, -79.38},
	{"New York", 40.71, -74.01},
	{"Washington", 38.91, -77.04},
	{"Atlanta", 33.75, -84.39},
	{"Miami", 25.76, -80.19},
	{"Mexico City", 19.43, -99.13},
	{"Bogota", 4.71, -74.07},
	{"Lima", -12.05, -77.04},
	{"Santiago", -33.45, -70.67},
	{"Buenos Aires", -34.60, -58.38},
	{"Sao Paulo", -23.55, -46.63},
	{"Rio de Janeiro", -22.91, -43.17},
	{"Lagos", 6.52, 3.38},
	{"Nairobi", -1.29, 36.82},
	{"Johannesburg", -26.20, 28.05},
	{"Cape Town", -33.92, 18.42},
	{"Cairo", 30.04, 31.24},
	{"Casablanca", 33.57, -7.59},
	{"Tel Aviv", 32.09, 34.78},
	{"Riyadh", 24.71, 46.68},
	{"Karachi", 24.86, 67.01},
	{"Dhaka", 23.81, 90.41},
	{"Ho Chi Minh", 10.82, 106.63},
	{"Taipei", 25.03, 121.57},
	{"Perth", -31.95, 115.86},
	{"Honolulu", 21.31, -157.86},
};
#define NCITIES (sizeof(cities) / sizeof(cities[0]))

static uint64_t rng_state = 88172645463325252ull;
static double urand(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (double)(rng_state >> 11) / 9007199254740992.0;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

static uint64_t world_seed;

/* hidden per-link inflation */
static double inflation(int a, int b)
{
	uint64_t k = mix(world_seed ^ ((uint64_t)(a < b ? a : b) << 32 | (uint64_t)(a < b ? b : a)));
	double u = (double)(k >> 11) / 9007199254740992.0;
	double v = (double)(mix(k) >> 11) / 9007199254740992.0;
	if (v < 0.125)
		return 2.0 + 2.0 * u; /* detour */
	return 1.05 + 0.55 * u;
}

struct world {
	int n, nrelays;
	struct mesh_rnode *truth; /* true access delays; same min-terms as the registry */
	bool *eligible;           /* relay eligible */
	bool *is_relay;
	int *peers;
	int npeers;
	const struct mesh_rnode **relays; /* eligible relays, truth view */
	size_t nelig;
	double *hb; /* what a node measures to its nearest relays (heartbeats) */
};

static struct world W;

/* Links the simulator reported on (its own bookkeeping for the breakdown
 * of misses; the server never sees it). Open addressing, grown at half. */
static uint64_t *rep_tab;
static size_t rep_cap, rep_count;

static uint64_t pair_key(int a, int b)
{
	return ((uint64_t)(a < b ? a : b) << 32 | (uint64_t)(a < b ? b : a)) + 1;
}

static bool reported(int a, int b)
{
	uint64_t k = pair_key(a, b);
	for (size_t i = mix(k) & (rep_cap - 1); rep_cap && rep_tab[i]; i = (i + 1) & (rep_cap - 1))
		if (rep_tab[i] == k)
			return true;
	return false;
}

static void mark_reported(int a, int b)
{
	if (reported(a, b))
		return;
	if ((rep_count + 1) * 2 > rep_cap) {
		size_t ncap = rep_cap ? rep_cap * 2 : 4096;
		uint64_t *t = calloc(ncap, sizeof(*t));
		for (size_t i = 0; i < rep_cap; i++) {
			if (!rep_tab[i])
				continue;
			size_t j = mix(rep_tab[i]) & (ncap - 1);
			while (t[j])
				j = (j + 1) & (ncap - 1);
			t[j] = rep_tab[i];
		}
		free(rep_tab);
		rep_tab = t;
		rep_cap = ncap;
	}
	uint64_t k = pair_key(a, b);
	size_t i = mix(k) & (rep_cap - 1);
	while (rep_tab[i])
		i = (i + 1) & (rep_cap - 1);
	rep_tab[i] = k;
	rep_count++;
}

/* Every link of the path reported on at least once? */
static bool path_reported(const int *idx, int n)
{
	for (int i = 1; i < n; i++)
		if (!reported(idx[i - 1], idx[i]))
			return false;
	return true;
}

static double truth_link(void *ctx, const struct mesh_rnode *a, const struct mesh_rnode *b)
{
	(void)ctx;
	int i = (int)(a - W.truth), j = (int)(b - W.truth);
	return mesh_model_floor_ms(&a->m, &b->m) * inflation(i, j) + a->m.acc_ms + b->m.acc_ms;
}

static void node_id(int i, char out[37])
{
	snprintf(out, 37, "00000000-0000-4000-8000-%012d", i);
}

static int node_index(const char *id)
{
	return atoi(id + 24);
}

/* CPU time of this thread: what find costs, without the time other
 * processes on a shared machine take from it */
static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static long rss_kib(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	long pages = 0, res = 0;
	if (!f)
		return 0;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = 0;
	fclose(f);
	return res * (sysconf(_SC_PAGESIZE) / 1024);
}

static struct mesh_registry *build(int n, int nrelays)
{
	struct mesh_registry *reg = mesh_registry_new(90000, 0);
	struct mesh_node_info in;
	W.n = n;
	W.nrelays = nrelays;
	W.truth = calloc((size_t)n, sizeof(*W.truth));
	W.eligible = calloc((size_t)n, sizeof(bool));
	W.is_relay = calloc((size_t)n, sizeof(bool));
	W.peers = calloc((size_t)n, sizeof(int));
	W.relays = calloc((size_t)n, sizeof(*W.relays));
	for (int i = 0; i < n; i++) {
		bool relay = i < nrelays;
		int c = (int)(urand() * NCITIES);
		double lat = cities[c].lat + (urand() - 0.5) * 3, lon = cities[c].lon + (urand() - 0.5) * 3;
		if (lat > 89)
			lat = 89;
		if (lon > 180)
			lon -= 360;
		if (lon < -180)
			lon += 360;
		memset(&in, 0, sizeof(in));
		node_id(i, in.node_id);
		snprintf(in.aura_id, sizeof(in.aura_id), "@n%d.aura", i);
		snprintf(in.user_id, sizeof(in.user_id), "@n%d:sim", i);
		snprintf(in.region, sizeof(in.region), "%s", cities[c].name);
		in.type = relay ? MESH_RELAY : MESH_PEER;
		in.max_connections = relay ? 500 : 20;
		in.current_connections = relay ? (int)(urand() * 500) : 0; /* some relays are full */
		in.bandwidth_capacity_mbps = relay ? 200 + urand() * 800 : 5 + urand() * 95;
		in.has_position = true;
		in.latitude = lat;
		in.longitude = lon;
		in.supports_audio = in.supports_video = true;
		in.supports_aic = urand() < 0.5;
		in.accepting_connections = in.is_online = true;
		in.last_heartbeat_ms = in.created_ms = 1000;
		in.reputation_score = relay ? 60 + urand() * 40 : 30 + urand() * 70;
		in.uptime_percentage = 90 + urand() * 10;
		mesh_registry_add(reg, &in, 1000);

		struct mesh_rnode *t = &W.truth[i];
		t->m.key = (uint32_t)i + 1;
		mesh_mnode_set_position(&t->m, lat, lon);
		/* true access delay: residential 2..60 ms (skewed), data centre 0.5..5 */
		t->m.acc_ms = (float)(relay ? 0.5 + 4.5 * urand() : 2 + 58 * pow(urand(), 2.5));
		double avail = in.bandwidth_capacity_mbps - in.bandwidth_used_mbps;
		t->bw_avail_mbps = (float)(avail > 0 ? avail : 0);
		t->reputation = (float)in.reputation_score;
		t->uptime = (float)in.uptime_percentage;
		t->aic = in.supports_aic;
		W.is_relay[i] = relay;
		W.eligible[i] = relay && in.reputation_score >= 70 &&
				in.current_connections < MESH_RELAY_MAX_LOAD * in.max_connections;
		if (W.eligible[i])
			W.relays[W.nelig++] = t;
		if (!relay)
			W.peers[W.npeers++] = i;
	}
	return reg;
}

/* Heartbeats. A node's agent measures its latency to the mesh as ICE does
 * for free (connectivity checks with the relays it may use): here the mean
 * true one-way latency to its HB_RELAYS nearest eligible relays. Each beat
 * reports it with +-5 % noise as avg_latency_ms, through the registry's
 * heartbeat like a real one. */
#define HB_RELAYS 3
static void measure_heartbeats(void)
{
	W.hb = calloc((size_t)W.n, sizeof(double));
	for (int i = 0; i < W.n; i++) {
		double bd[HB_RELAYS];
		int bi[HB_RELAYS], k = 0;
		for (size_t r = 0; r < W.nelig; r++) {
			int j = (int)(W.relays[r] - W.truth);
			if (j == i)
				continue;
			double dkm = mesh_model_distance_km(&W.truth[i].m, &W.truth[j].m);
			int pos = k < HB_RELAYS ? k++ : HB_RELAYS;
			if (pos == HB_RELAYS) {
				if (dkm >= bd[HB_RELAYS - 1])
					continue;
				pos = HB_RELAYS - 1;
			}
			while (pos > 0 && bd[pos - 1] > dkm) {
				bd[pos] = bd[pos - 1];
				bi[pos] = bi[pos - 1];
				pos--;
			}
			bd[pos] = dkm;
			bi[pos] = j;
		}
		double sum = 0;
		for (int x = 0; x < k; x++)
			sum += truth_link(NULL, &W.truth[i], &W.truth[bi[x]]);
		W.hb[i] = k ? sum / k : -1;
	}
}

static void send_heartbeats(struct mesh_registry *reg, int64_t now_ms)
{
	for (int i = 0; i < W.n; i++) {
		char id[37], user[32];
		node_id(i, id);
		snprintf(user, sizeof(user), "@n%d:sim", i);
		struct mesh_heartbeat hb = {-1, -1, W.hb[i] >= 0 ? W.hb[i] * (0.95 + 0.1 * urand()) : -1, -1, -1};
		struct al_error err = {0};
		mesh_registry_heartbeat(reg, id, user, &hb, now_ms, NULL, &err);
	}
}

/* lowest true latency among eligible paths s..d (pruned, exact) */
struct cand {
	int i;
	double a, b;
};
static int by_b(const void *x, const void *y)
{
	double a = ((const struct cand *)x)->b, b = ((const struct cand *)y)->b;
	return a < b ? -1 : a > b;
}

static double min_true_latency(int s, int d, struct cand *c)
{
	const struct mesh_rnode *S = &W.truth[s], *D = &W.truth[d];
	double best = truth_link(NULL, S, D), minacc = 1e9;
	size_t n = 0;
	for (size_t k = 0; k < W.nelig; k++) {
		const struct mesh_rnode *r = W.relays[k];
		c[n].i = (int)(r - W.truth);
		c[n].a = truth_link(NULL, S, r);
		c[n].b = truth_link(NULL, r, D);
		if (c[n].a + c[n].b < best)
			best = c[n].a + c[n].b;
		if (r->m.acc_ms < minacc)
			minacc = r->m.acc_ms;
		n++;
	}
	qsort(c, n, sizeof(*c), by_b);
	for (size_t x = 0; x < n; x++) {
		const struct mesh_rnode *r1 = &W.truth[c[x].i];
		if (c[x].a + mesh_model_floor_ms(&r1->m, &D->m) + r1->m.acc_ms + 2 * minacc + D->m.acc_ms >= best)
			continue;
		for (size_t y = 0; y < n; y++) {
			if (c[x].a + c[y].b + r1->m.acc_ms + minacc >= best)
				break;
			if (y == x)
				continue;
			double l = c[x].a + truth_link(NULL, r1, &W.truth[c[y].i]) + c[y].b;
			if (l < best)
				best = l;
		}
	}
	return best;
}

struct eval {
	double acc, regret_ms, regret_ratio, mape, p50_us, p99_us, mean_us, relayed, mean_eval;
	size_t max_eval;
	/* misses by chosen x best path (direct / relayed), and whether the
	 * chosen and the truly best path had every link reported before */
	int miss, miss_dd, miss_dr, miss_rd, miss_rr, miss_best_unrep, miss_chosen_unrep;
	double mape_relayed; /* MAPE over relayed chosen paths only */
};

static int cmpd(const void *x, const void *y)
{
	double a = *(const double *)x, b = *(const double *)y;
	return a < b ? -1 : a > b;
}

/* Evaluate (and, with learn, report the true latency of) every query. */
static struct eval run(struct mesh_registry *reg, const int (*q)[2], int nq, bool learn, bool measure)
{
	struct eval e = {0};
	double *times = calloc((size_t)nq, sizeof(double));
	struct cand *c = calloc(W.nelig + 1, sizeof(*c));
	struct mesh_oracle truth = {truth_link, NULL, 0, NULL, NULL, NULL};
	int good = 0, counted = 0;
	for (int k = 0; k < nq; k++) {
		char src[32], dst[32];
		snprintf(src, sizeof(src), "@n%d.aura", q[k][0]);
		snprintf(dst, sizeof(dst), "@n%d.aura", q[k][1]);
		struct mesh_cached_route rt;
		struct mesh_find_stats st;
		struct al_error err = {0};
		double t0 = now_us();
		int rc = mesh_registry_find(reg, src, dst, MESH_MEDIA_AUDIO, false, 1000, &rt, &st, &err);
		times[k] = now_us() - t0;
		if (rc < 0)
			continue;
		if (st.paths_evaluated > e.max_eval)
			e.max_eval = st.paths_evaluated;
		e.mean_eval += (double)st.paths_evaluated / nq;
		const struct mesh_rnode *path[4];
		int pidx[4];
		for (int i = 0; i < rt.n; i++) {
			pidx[i] = node_index(rt.node_ids[i]);
			path[i] = &W.truth[pidx[i]];
		}
		bool chosen_rep = path_reported(pidx, rt.n);
		struct mesh_path_metrics tm;
		mesh_route_path_metrics(&truth, path, rt.n, &tm);
		double true_lat = tm.latency_ms;
		if (learn) {
			double noisy = true_lat * (0.98 + 0.04 * urand());
			mesh_registry_learn(reg, (const char(*)[37])rt.node_ids, rt.n, noisy);
			for (int i = 1; i < rt.n; i++)
				mark_reported(pidx[i - 1], pidx[i]);
		}
		if (!measure)
			continue;
		counted++;
		e.relayed += rt.n > 2;
		e.mape += fabs(rt.pm.latency_ms - true_lat) / true_lat;
		if (rt.n > 2)
			e.mape_relayed += fabs(rt.pm.latency_ms - true_lat) / true_lat;
		struct mesh_route_query tq = {
			&W.truth[q[k][0]], &W.truth[q[k][1]], W.relays, W.nelig, false, 2, &truth, 0, false, 0};
		struct mesh_route_result best;
		mesh_route_search(&tq, &best);
		if (mesh_route_score(&tm) >= best.score - 2.0) {
			good++;
		} else {
			int bidx[4];
			for (int i = 0; i < best.n; i++)
				bidx[i] = (int)(best.path[i] - W.truth);
			e.miss++;
			if (rt.n == 2)
				best.n == 2 ? e.miss_dd++ : e.miss_dr++;
			else
				best.n == 2 ? e.miss_rd++ : e.miss_rr++;
			e.miss_best_unrep += !path_reported(bidx, best.n);
			e.miss_chosen_unrep += !chosen_rep;
		}
		if (mesh_route_score(&tm) < best.score - 2.0 && getenv("MESH_SIM_DEBUG")) {
			/* what the model thinks of the truly best path */
			char ids[4][37];
			int bidx[4];
			for (int i = 0; i < best.n; i++) {
				bidx[i] = (int)(best.path[i] - W.truth);
				node_id(bidx[i], ids[i]);
			}
			struct mesh_path_metrics bpm;
			mesh_registry_predict(reg, (const char(*)[37])ids, best.n, &bpm);
			printf("miss: chosen n=%d%s pred %.1f true %.1f score(true) %.1f pred-score %.1f | best n=%d%s"
			       " true %.1f score %.1f pred %.1f pred-score %.1f\n",
			       rt.n, chosen_rep ? "" : "*", rt.pm.latency_ms, true_lat, mesh_route_score(&tm), rt.score,
			       best.n, path_reported(bidx, best.n) ? "" : "*", best.pm.latency_ms, best.score,
			       bpm.latency_ms, mesh_route_score(&bpm));
			if (getenv("MESH_SIM_DEBUG")[0] == '2') {
				for (int i = 0; i < best.n; i++) {
					json_t *j = mesh_registry_node_json(reg, ids[i], 1000);
					printf("   node %d acc true %.1f model %.1f", bidx[i],
					       W.truth[bidx[i]].m.acc_ms,
					       json_real_value(json_object_get(j, "access_delay_ms")));
					json_decref(j);
					if (i)
						printf(" link floor %.1f infl %.2f rep %d",
						       mesh_model_floor_ms(&W.truth[bidx[i - 1]].m,
									   &W.truth[bidx[i]].m),
						       inflation(bidx[i - 1], bidx[i]), reported(bidx[i - 1], bidx[i]));
					printf("\n");
				}
				if (rt.n == 2)
					printf("   direct floor %.1f infl %.2f\n",
					       mesh_model_floor_ms(&path[0]->m, &path[1]->m),
					       inflation(pidx[0], pidx[1]));
			}
		}
		double lmin = min_true_latency(q[k][0], q[k][1], c);
		e.regret_ms += true_lat - lmin;
		e.regret_ratio += true_lat / lmin - 1;
	}
	if (counted) {
		e.acc = 100.0 * good / counted;
		e.mape = 100.0 * e.mape / counted;
		e.regret_ms /= counted;
		e.regret_ratio = 100.0 * e.regret_ratio / counted;
		e.mape_relayed = e.relayed ? 100.0 * e.mape_relayed / e.relayed : 0;
		e.relayed = 100.0 * e.relayed / counted;
	}
	double sum = 0;
	for (int k = 0; k < nq; k++)
		sum += times[k];
	qsort(times, (size_t)nq, sizeof(double), cmpd);
	e.p50_us = times[nq / 2];
	e.p99_us = times[(int)(nq * 0.99)];
	e.mean_us = sum / nq;
	free(times);
	free(c);
	return e;
}

static void print_eval(const char *label, struct eval e)
{
	printf("%-22s accuracy %5.1f %%  regret %6.2f ms (%5.2f %%)  MAPE %5.1f %%  relayed %4.1f %%"
	       "  find cpu p50 %5.0f us p99 %5.0f us  paths scored mean %.0f max %zu\n",
	       label, e.acc, e.regret_ms, e.regret_ratio, e.mape, e.relayed, e.p50_us, e.p99_us, e.mean_eval,
	       e.max_eval);
	printf("%-22s   misses %d: chosen/best direct/direct %d, direct/relayed %d, relayed/direct %d,"
	       " relayed/relayed %d; best path never reported %d, chosen path never reported %d;"
	       " MAPE relayed %.1f %%\n",
	       "", e.miss, e.miss_dd, e.miss_dr, e.miss_rd, e.miss_rr, e.miss_best_unrep, e.miss_chosen_unrep,
	       e.mape_relayed);
}

int main(int argc, char **argv)
{
	int n = 10000, nrelays = 2000, nq = 2000, rounds = 5;
	unsigned seed = 1;
	int opt;
	bool beats = true;
	while ((opt = getopt(argc, argv, "n:r:q:k:s:H")) != -1) {
		switch (opt) {
		case 'n': n = atoi(optarg); break;
		case 'r': nrelays = atoi(optarg); break;
		case 'q': nq = atoi(optarg); break;
		case 'k': rounds = atoi(optarg); break;
		case 's': seed = (unsigned)atoi(optarg); break;
		case 'H': beats = false; break;
		default:
			fprintf(stderr,
				"usage: mesh_sim [-n NODES] [-r RELAYS] [-q QUERIES] [-k ROUNDS] [-s SEED] [-H]\n");
			return 2;
		}
	}
	if (nrelays >= n || nq < 1 || n < 4) {
		fprintf(stderr, "mesh_sim: need RELAYS < NODES, QUERIES >= 1\n");
		return 2;
	}
	rng_state ^= mix(seed);
	world_seed = mix(seed * 7919u);
	struct utsname u;
	uname(&u);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	printf("mesh_sim: %s %s %s, %ld CPUs; nodes %d (relays %d), queries %d, rounds %d, seed %u, heartbeats %s\n",
	       u.sysname, u.release, u.machine, cpus, n, nrelays, nq, rounds, seed, beats ? "on" : "off");

	long rss0 = rss_kib();
	struct mesh_registry *reg = build(n, nrelays);
	long rss1 = rss_kib();
	size_t mem = mesh_registry_memory_bytes(reg);
	printf("registry: %zu bytes counted = %.0f bytes/node (RSS growth incl. simulator truth: %.0f bytes/node);"
	       " eligible relays %zu\n",
	       mem, (double)mem / n, (rss1 - rss0) * 1024.0 / n, W.nelig);

	int(*q)[2] = calloc((size_t)nq, sizeof(*q));
	int(*fresh)[2] = calloc((size_t)nq, sizeof(*fresh));
	for (int k = 0; k < nq; k++) {
		int a = W.peers[(int)(urand() * W.npeers)], b;
		do
			b = W.peers[(int)(urand() * W.npeers)];
		while (b == a);
		q[k][0] = a;
		q[k][1] = b;
		a = W.peers[(int)(urand() * W.npeers)];
		do
			b = W.peers[(int)(urand() * W.npeers)];
		while (b == a);
		fresh[k][0] = a;
		fresh[k][1] = b;
	}
	if (beats) {
		measure_heartbeats();
		send_heartbeats(reg, 1000);
	}
	print_eval("before feedback", run(reg, (const int(*)[2])q, nq, false, true));
	for (int r = 1; r <= rounds; r++) {
		run(reg, (const int(*)[2])q, nq, true, false);
		if (beats)
			send_heartbeats(reg, 1000);
		char label[48];
		snprintf(label, sizeof(label), "after %d round%s", r, r > 1 ? "s" : "");
		print_eval(label, run(reg, (const int(*)[2])q, nq, false, true));
	}
	print_eval("fresh pairs", run(reg, (const int(*)[2])fresh, nq, false, true));
	const struct mesh_model *mm = mesh_registry_model(reg);
	double drate, dshare, sd0, sd1;
	mesh_model_detours(mm, &drate, &dshare, &sd0, &sd1);
	printf("model: %zu learned links, %zu bytes, global inflation %.3f (sd %.2f), detours %.1f %% (+%.2f x floor,"
	       " sd %.2f),"
	       " mean access delay devices %.1f ms, infrastructure %.1f ms\n",
	       mesh_model_links(mm), mesh_model_memory_bytes(mm), mesh_model_inflation(mm), sd0, 100 * drate, dshare,
	       sd1, mesh_model_class_mean(mm, MESH_CLASS_DEVICE), mesh_model_class_mean(mm, MESH_CLASS_INFRA));
	double hsd, hoff = mesh_model_heartbeat_offset(mm, &hsd);
	printf("heartbeats: %s; learned offset %.1f ms (sd %.1f)\n", beats ? "on" : "off (-H)", hoff, hsd);
	mesh_registry_free(reg);
	free(q);
	free(fresh);
	free(W.truth);
	free(W.eligible);
	free(W.is_relay);
	free(W.peers);
	free(W.relays);
	free(rep_tab);
	free(W.hb);
	return 0;
}
