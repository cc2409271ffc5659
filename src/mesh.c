/* mesh.c - the mesh service: registry <-> PostgreSQL, routes, analytics. */
#include "mesh.h"

#include <ctype.h>
#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "audit.h"
#include "aura_id.h"
#include "federation.h"
#include "handlers_mesh.h"
#include "http.h"
#include "log.h"
#include "mesh_pgarr.h"

#define NODE_COLUMNS                                                                             \
	"node_id::text, aura_id, user_id, node_type, coalesce(address, ''), coalesce(port, 0),"  \
	" max_connections, current_connections, bandwidth_capacity_mbps, bandwidth_used_mbps,"   \
	" avg_latency_ms, packet_loss_rate, coalesce(region, ''), coalesce(country_code, ''),"   \
	" latitude IS NOT NULL AND longitude IS NOT NULL, coalesce(latitude, 0),"                \
	" coalesce(longitude, 0), supports_video, supports_audio, supports_screen_share,"        \
	" supports_aic, accepting_connections, is_online,"                                       \
	" (extract(epoch from coalesce(last_heartbeat_at, 'epoch')) * 1000)::bigint,"            \
	" (extract(epoch from created_at) * 1000)::bigint, reputation_score, uptime_percentage," \
	" access_delay_ms, total_routes, successful_routes"

static bool tf(const char *v)
{
	return v && v[0] == 't';
}

static void row_to_info(PGresult *res, int i, struct mesh_node_info *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->node_id, sizeof(o->node_id), "%s", PQgetvalue(res, i, 0));
	snprintf(o->aura_id, sizeof(o->aura_id), "%s", PQgetvalue(res, i, 1));
	snprintf(o->user_id, sizeof(o->user_id), "%s", PQgetvalue(res, i, 2));
	o->type = mesh_node_type_parse(PQgetvalue(res, i, 3));
	if (o->type < 0)
		o->type = MESH_PEER;
	snprintf(o->address, sizeof(o->address), "%s", PQgetvalue(res, i, 4));
	o->port = atoi(PQgetvalue(res, i, 5));
	o->max_connections = atoi(PQgetvalue(res, i, 6));
	o->current_connections = atoi(PQgetvalue(res, i, 7));
	o->bandwidth_capacity_mbps = atof(PQgetvalue(res, i, 8));
	o->bandwidth_used_mbps = atof(PQgetvalue(res, i, 9));
	o->avg_latency_ms = atof(PQgetvalue(res, i, 10));
	o->packet_loss_rate = atof(PQgetvalue(res, i, 11));
	snprintf(o->region, sizeof(o->region), "%s", PQgetvalue(res, i, 12));
	snprintf(o->country_code, sizeof(o->country_code), "%s", PQgetvalue(res, i, 13));
	o->has_position = tf(PQgetvalue(res, i, 14));
	o->latitude = atof(PQgetvalue(res, i, 15));
	o->longitude = atof(PQgetvalue(res, i, 16));
	o->supports_video = tf(PQgetvalue(res, i, 17));
	o->supports_audio = tf(PQgetvalue(res, i, 18));
	o->supports_screen_share = tf(PQgetvalue(res, i, 19));
	o->supports_aic = tf(PQgetvalue(res, i, 20));
	o->accepting_connections = tf(PQgetvalue(res, i, 21));
	o->is_online = tf(PQgetvalue(res, i, 22));
	o->last_heartbeat_ms = strtoll(PQgetvalue(res, i, 23), NULL, 10);
	o->created_ms = strtoll(PQgetvalue(res, i, 24), NULL, 10);
	o->reputation_score = atof(PQgetvalue(res, i, 25));
	o->uptime_percentage = atof(PQgetvalue(res, i, 26));
	o->access_delay_ms = atof(PQgetvalue(res, i, 27));
	o->total_routes = atoi(PQgetvalue(res, i, 28));
	o->successful_routes = atoi(PQgetvalue(res, i, 29));
}

int mesh_load(struct mesh_registry *reg, struct db *db, int64_t now_ms, struct al_error *err)
{
	PGresult *res = db_exec(db, err, "SELECT " NODE_COLUMNS " FROM mesh_nodes", 0, NULL);
	if (!res)
		return -1;
	struct mesh_node_info *info = malloc(sizeof(*info));
	int n = PQntuples(res), rc = 0;
	for (int i = 0; info && i < n; i++) {
		row_to_info(res, i, info);
		if (mesh_registry_add(reg, info, now_ms) < 0)
			rc = -1;
	}
	free(info);
	PQclear(res);
	if (rc < 0 || !info)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot load the mesh registry");
	size_t online = 0;
	mesh_registry_count(reg, &online);
	log_info("mesh", "registry loaded nodes=%d online=%zu", n, online);
	return 0;
}

int mesh_flush(struct mesh_registry *reg, struct db *db, struct al_error *err)
{
	struct mesh_node_info *v = NULL;
	size_t n = mesh_registry_take_dirty(reg, &v);
	int rc = 0;
	if (n) {
		struct mesh_pgarr a[13] = {{0}};
		const char *p[13];
		rc = -1;
		for (int i = 0; i < 13; i++)
			if (mesh_pgarr_init(&a[i]) < 0)
				goto done;
		for (size_t i = 0; i < n; i++) {
			mesh_pgarr_text(&a[0], v[i].node_id);
			mesh_pgarr_long(&a[1], v[i].current_connections);
			mesh_pgarr_double(&a[2], v[i].bandwidth_used_mbps);
			mesh_pgarr_double(&a[3], v[i].avg_latency_ms);
			mesh_pgarr_double(&a[4], v[i].packet_loss_rate);
			mesh_pgarr_bool(&a[5], v[i].accepting_connections);
			mesh_pgarr_bool(&a[6], v[i].is_online);
			mesh_pgarr_long(&a[7], (long long)v[i].last_heartbeat_ms);
			mesh_pgarr_double(&a[8], v[i].reputation_score);
			mesh_pgarr_double(&a[9], v[i].uptime_percentage);
			mesh_pgarr_double(&a[10], v[i].access_delay_ms);
			mesh_pgarr_long(&a[11], v[i].total_routes);
			mesh_pgarr_long(&a[12], v[i].successful_routes);
		}
		for (int i = 0; i < 13; i++)
			if (!(p[i] = mesh_pgarr_finish(&a[i])))
				goto done;
		PGresult *res = db_exec(
			db, err,
			"UPDATE mesh_nodes m SET current_connections = u.cc, bandwidth_used_mbps = u.bw,"
			" avg_latency_ms = u.lat, packet_loss_rate = u.loss, accepting_connections = u.acc,"
			" is_online = u.online, last_heartbeat_at = to_timestamp(u.hb / 1000.0),"
			" reputation_score = u.rep, trust_level = CASE WHEN u.rep >= 90 THEN 'verified'"
			"  WHEN u.rep >= 70 THEN 'trusted' WHEN u.rep >= 30 THEN 'new'"
			"  WHEN u.rep >= 10 THEN 'suspicious' ELSE 'banned' END,"
			" uptime_percentage = u.up, access_delay_ms = u.ad, total_routes = u.tr,"
			" successful_routes = u.sr"
			" FROM unnest($1::uuid[], $2::int[], $3::real[], $4::real[], $5::real[], $6::bool[],"
			"  $7::bool[], $8::bigint[], $9::real[], $10::real[], $11::real[], $12::int[],"
			"  $13::int[]) AS u(node_id, cc, bw, lat, loss, acc, online, hb, rep, up, ad, tr, sr)"
			" WHERE m.node_id = u.node_id",
			13, p);
		if (res) {
			PQclear(res);
			rc = 0;
		}
	done:
		for (int i = 0; i < 13; i++)
			mesh_pgarr_free(&a[i]);
		free(v);
		if (rc < 0)
			log_warn("mesh", "node flush failed count=%zu", n);
	}
	if (mesh_rep_queue_flush(mesh_registry_events(reg), db, err) < 0)
		rc = -1;
	return rc;
}

/* ---- routes: replies and rows ---- */

static void iso_ms(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		 tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}

/* optimization_factors of a route (the reply's and the row's). */
static json_t *factors_json(const struct mesh_cached_route *r)
{
	double f[6];
	mesh_route_factors(&r->pm, f);
	return json_pack("{s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:b}", "latency", f[0], "bandwidth", f[1],
			 "reputation", f[2], "hop_count", f[3], "aic_support", f[4], "uptime", f[5], "min_reputation",
			 r->pm.reputation, "min_uptime", r->pm.uptime, "hops", r->pm.links, "aic", r->pm.aic);
}

static json_t *route_json(const struct mesh_cached_route *r, const char *src, const char *dst, int media, bool cached)
{
	char exp[80];
	iso_ms(r->expires_ms, exp, sizeof(exp));
	json_t *path = json_array();
	for (int i = 0; path && i < r->n; i++)
		json_array_append_new(path, json_string(r->node_ids[i]));
	return json_pack("{s:s, s:s, s:s, s:o, s:i, s:s, s:s, s:f, s:f, s:f, s:o, s:s, s:b}", "route_id", r->route_id,
			 "source_aura_id", src, "destination_aura_id", dst, "path_nodes", path, "path_length", r->n,
			 "route_type", r->n == 2 ? "direct_p2p" : "relay", "media_type", mesh_media_name(media),
			 "predicted_latency_ms", r->pm.latency_ms, "predicted_bandwidth_mbps", r->pm.bandwidth_mbps,
			 "ai_score", r->score, "optimization_factors", factors_json(r), "expires_at", exp, "cached",
			 cached);
}

/* ---- mesh_routes rows, written in batches ----
 *
 * A new route is answered at once: its route_id is generated here (a
 * random UUID), the row waits in memory and one INSERT writes every
 * waiting row, every MESH_ROUTE_FLUSH_MS on the main loop. Whoever needs
 * the row in PostgreSQL before that (a performance report for it, the
 * analytics) writes the waiting rows first on its own connection
 * (routes_flush); flush_mu makes that wait for a batch another
 * thread is writing. A request that finds MESH_ROUTE_QUEUE_MAX rows
 * waiting writes them itself; when that fails too the route is refused
 * (503). A batch that fails stays queued; rows that could not be written
 * for MESH_ROUTE_MAX_AGE_MS are dropped with a warning. */
#define MESH_ROUTE_FLUSH_MS 50
#define MESH_ROUTE_QUEUE_MAX 20000
#define MESH_ROUTE_MAX_AGE_MS 60000

struct route_row {
	struct mesh_cached_route r;
	char src[256], dst[256], user_id[256];
	int media;
	bool require_aic;
	int64_t created_ms;
};

struct mesh_route_queue {
	pthread_mutex_t mu; /* v, n, cap, inflight */
	struct route_row *v;
	size_t n, cap;
	const struct route_row *inflight; /* the batch being written */
	size_t ninflight;
	bool failing;             /* the last batch failed */
	pthread_mutex_t flush_mu; /* one writer at a time */
};

static struct mesh_route_queue *route_queue_new(void)
{
	struct mesh_route_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	pthread_mutex_init(&q->mu, NULL);
	pthread_mutex_init(&q->flush_mu, NULL);
	return q;
}

static void route_queue_free(struct mesh_route_queue *q)
{
	if (!q)
		return;
	if (q->n)
		log_warn("mesh", "routes not written count=%zu", q->n);
	free(q->v);
	pthread_mutex_destroy(&q->mu);
	pthread_mutex_destroy(&q->flush_mu);
	free(q);
}

/* Append rows under q->mu; -1 when out of memory. */
static int queue_append(struct mesh_route_queue *q, const struct route_row *rows, size_t n)
{
	if (q->n + n > q->cap) {
		size_t ncap = q->cap ? q->cap : 256;
		while (ncap < q->n + n)
			ncap *= 2;
		struct route_row *v = realloc(q->v, ncap * sizeof(*v));
		if (!v)
			return -1;
		q->v = v;
		q->cap = ncap;
	}
	memcpy(q->v + q->n, rows, n * sizeof(*rows));
	q->n += n;
	return 0;
}

static int routes_insert(struct db *db, const struct route_row *v, size_t n, struct al_error *err)
{
	struct mesh_pgarr a[12];
	const char *p[12];
	int rc = -1, inited = 0;
	for (; inited < 12; inited++)
		if (mesh_pgarr_init(&a[inited]) < 0)
			goto done;
	for (size_t i = 0; i < n; i++) {
		const struct route_row *w = &v[i];
		char path[4 * 37 + 3];
		size_t off = 0;
		path[off++] = '{';
		for (int k = 0; k < w->r.n; k++) {
			memcpy(path + off, w->r.node_ids[k], 36);
			off += 36;
			path[off++] = k + 1 < w->r.n ? ',' : '}';
		}
		path[off] = 0;
		json_t *f = factors_json(&w->r);
		/* kept for re-scoring the route after feedback (is_optimal) */
		if (f)
			json_object_set_new(f, "require_aic", json_boolean(w->require_aic));
		char *fj = f ? json_dumps(f, JSON_COMPACT) : NULL;
		json_decref(f);
		if (!fj)
			goto done;
		mesh_pgarr_text(&a[0], w->r.route_id);
		mesh_pgarr_text(&a[1], w->src);
		mesh_pgarr_text(&a[2], w->dst);
		mesh_pgarr_text(&a[3], path);
		mesh_pgarr_text(&a[4], mesh_media_name(w->media));
		mesh_pgarr_double(&a[5], w->r.pm.latency_ms);
		mesh_pgarr_double(&a[6], w->r.pm.bandwidth_mbps);
		mesh_pgarr_double(&a[7], w->r.score);
		mesh_pgarr_text(&a[8], fj);
		mesh_pgarr_text(&a[9], w->user_id);
		mesh_pgarr_long(&a[10], (long long)w->created_ms);
		mesh_pgarr_long(&a[11], (long long)w->r.expires_ms);
		free(fj);
	}
	for (int i = 0; i < 12; i++)
		if (!(p[i] = mesh_pgarr_finish(&a[i])))
			goto done;
	/* ON CONFLICT: a batch that was committed although its answer was
	 * lost is written again harmlessly */
	PGresult *res = db_exec(
		db, err,
		"INSERT INTO mesh_routes (route_id, source_aura_id, destination_aura_id, source_node_id,"
		" destination_node_id, path_nodes, path_length, route_type, media_type, predicted_latency_ms,"
		" predicted_bandwidth_mbps, ai_score, optimization_factors, is_optimal, requested_by,"
		" created_at, expires_at)"
		" SELECT u.id, u.src, u.dst, u.path[1], u.path[cardinality(u.path)], u.path,"
		"  cardinality(u.path), CASE WHEN cardinality(u.path) = 2 THEN 'direct_p2p' ELSE 'relay' END,"
		"  u.media, u.lat, u.bw, u.score, u.f::jsonb, false, u.who, to_timestamp(u.c / 1000.0),"
		"  to_timestamp(u.e / 1000.0)"
		" FROM (SELECT x.*, x.p::uuid[] AS path FROM unnest($1::uuid[], $2::text[], $3::text[],"
		"  $4::text[], $5::text[], $6::real[], $7::real[], $8::real[], $9::text[], $10::text[],"
		"  $11::bigint[], $12::bigint[]) AS x(id, src, dst, p, media, lat, bw, score, f, who, c, e)) u"
		" ON CONFLICT (route_id) DO NOTHING",
		12, p);
	if (res) {
		PQclear(res);
		rc = 0;
	}
done:
	for (int i = 0; i < inited; i++)
		mesh_pgarr_free(&a[i]);
	if (rc < 0 && !err->status)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return rc;
}

/* Write every waiting row (and wait for a batch being written). */
static int routes_flush(struct mesh_route_queue *q, struct db *db, struct al_error *err)
{
	int rc = 0;
	pthread_mutex_lock(&q->flush_mu);
	pthread_mutex_lock(&q->mu);
	struct route_row *v = q->v;
	size_t n = q->n;
	q->v = NULL;
	q->n = q->cap = 0;
	q->inflight = v;
	q->ninflight = n;
	pthread_mutex_unlock(&q->mu);
	if (n)
		rc = routes_insert(db, v, n, err);
	pthread_mutex_lock(&q->mu);
	q->inflight = NULL;
	q->ninflight = 0;
	if (rc < 0) {
		/* keep the batch (newer rows were queued meanwhile) but for the
		 * rows that waited too long */
		int64_t now = http_now_ms();
		size_t keep = 0, dropped = 0;
		for (size_t i = 0; i < n; i++) {
			if (now - v[i].created_ms > MESH_ROUTE_MAX_AGE_MS)
				dropped++;
			else
				v[keep++] = v[i];
		}
		if (queue_append(q, v, keep) < 0)
			dropped += keep;
		if (dropped)
			log_warn("mesh", "routes dropped count=%zu: %s", dropped, err->message);
	}
	/* one line when writing starts failing and one when it works again */
	bool was_failing = q->failing;
	if (n)
		q->failing = rc < 0;
	size_t waiting = q->n;
	pthread_mutex_unlock(&q->mu);
	free(v);
	pthread_mutex_unlock(&q->flush_mu);
	if (rc < 0 && !was_failing)
		log_warn("mesh", "route flush failed count=%zu: %s", n, err->message);
	else if (n && rc == 0 && was_failing)
		log_info("mesh", "route flush works again count=%zu waiting=%zu", n, waiting);
	return rc;
}

/* Is route_id waiting (or being written)? */
static bool route_pending(struct mesh_route_queue *q, const char *route_id)
{
	bool found = false;
	pthread_mutex_lock(&q->mu);
	for (size_t i = 0; i < q->n && !found; i++)
		found = !strcasecmp(q->v[i].r.route_id, route_id);
	for (size_t i = 0; i < q->ninflight && !found; i++)
		found = !strcasecmp(q->inflight[i].r.route_id, route_id);
	pthread_mutex_unlock(&q->mu);
	return found;
}

/* Queue a new route's row; a full queue is written here first. */
static int route_enqueue(struct mesh_route_queue *q, struct db *db, const struct route_row *row, struct al_error *err)
{
	pthread_mutex_lock(&q->mu);
	bool full = q->n >= MESH_ROUTE_QUEUE_MAX;
	pthread_mutex_unlock(&q->mu);
	if (full) {
		struct al_error ferr = {0};
		routes_flush(q, db, &ferr);
	}
	pthread_mutex_lock(&q->mu);
	int rc = q->n >= MESH_ROUTE_QUEUE_MAX ? -2 : queue_append(q, row, 1);
	pthread_mutex_unlock(&q->mu);
	if (rc == -2)
		return al_error_set(err, 503, "M_UNKNOWN", "routes cannot be stored right now");
	if (rc < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return 0;
}

static void on_route_flush(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	struct mesh_route_queue *q = app->mesh->routes;
	struct al_error err = {0};
	(void)fd;
	(void)what;
	pthread_mutex_lock(&q->mu);
	size_t n = q->n;
	pthread_mutex_unlock(&q->mu);
	if (n)
		routes_flush(q, app->maint_db, &err);
}

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	struct al_error err = {0};
	(void)fd;
	(void)what;
	/* routes first: reputation events may name them */
	routes_flush(app->mesh->routes, app->maint_db, &err);
	mesh_flush(app->mesh->reg, app->maint_db, &err);
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	(void)fd;
	(void)what;
	int n = mesh_registry_sweep(app->mesh->reg, http_now_ms());
	if (n)
		log_info("mesh", "nodes offline count=%d", n);
}

int mesh_start(struct app *app)
{
	struct al_error err = {0};
	struct mesh_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	app->mesh = st;
	st->app = app;
	st->reg = mesh_registry_new((int64_t)app->cfg.mesh_online_window_s * 1000,
				    app->cfg.mesh_heartbeat_min_interval_ms);
	if (!st->reg)
		return -1;
	if (mesh_load(st->reg, app->maint_db, http_now_ms(), &err) < 0) {
		log_error("mesh", "%s", err.message);
		return -1;
	}
	int fl = app->cfg.mesh_flush_interval_ms;
	struct timeval ftv = {fl / 1000, (fl % 1000) * 1000};
	/* sweep 4 times per window, at most every 250 ms */
	int sw = app->cfg.mesh_online_window_s * 250;
	struct timeval stv = {sw / 1000, (sw % 1000) * 1000};
	struct timeval rtv = {0, MESH_ROUTE_FLUSH_MS * 1000};
	st->routes = route_queue_new();
	st->flush_ev = event_new(app->main_base, -1, EV_PERSIST, on_flush, app);
	st->sweep_ev = event_new(app->main_base, -1, EV_PERSIST, on_sweep, app);
	st->route_flush_ev = event_new(app->main_base, -1, EV_PERSIST, on_route_flush, app);
	if (!st->routes || !st->flush_ev || !st->sweep_ev || !st->route_flush_ev || event_add(st->flush_ev, &ftv) < 0 ||
	    event_add(st->sweep_ev, &stv) < 0 || event_add(st->route_flush_ev, &rtv) < 0)
		return -1;
	return mesh_register_routes(app);
}

void mesh_stop(struct app *app)
{
	struct mesh_state *st = app->mesh;
	struct al_error err = {0};
	if (!st)
		return;
	if (st->flush_ev)
		event_free(st->flush_ev);
	if (st->sweep_ev)
		event_free(st->sweep_ev);
	if (st->route_flush_ev)
		event_free(st->route_flush_ev);
	if (st->routes && app->maint_db && app->maint_db->conn)
		routes_flush(st->routes, app->maint_db, &err);
	route_queue_free(st->routes);
	if (st->reg && app->maint_db && app->maint_db->conn)
		mesh_flush(st->reg, app->maint_db, &err);
	mesh_registry_free(st->reg);
	free(st);
	app->mesh = NULL;
}

/* ---- nodes ---- */

int mesh_node_register(struct app *app, struct db *db, const char *user_id, struct mesh_node_info *in, json_t **out,
		       struct al_error *err)
{
	struct mesh_registry *reg = app->mesh->reg;
	char lat[32], lon[32], maxc[16], bwc[32], port[16];
	if (mesh_registry_may_register(reg, in->aura_id, err) < 0)
		return -1;
	snprintf(lat, sizeof(lat), "%.9g", in->latitude);
	snprintf(lon, sizeof(lon), "%.9g", in->longitude);
	snprintf(maxc, sizeof(maxc), "%d", in->max_connections);
	snprintf(bwc, sizeof(bwc), "%.9g", in->bandwidth_capacity_mbps);
	snprintf(port, sizeof(port), "%d", in->port);
	const char *p[16] = {
		in->aura_id,
		user_id,
		mesh_node_type_name(in->type),
		in->address[0] ? in->address : NULL,
		in->port ? port : NULL,
		maxc,
		bwc,
		in->region[0] ? in->region : NULL,
		in->country_code[0] ? in->country_code : NULL,
		in->has_position ? lat : NULL,
		in->has_position ? lon : NULL,
		in->supports_video ? "t" : "f",
		in->supports_audio ? "t" : "f",
		in->supports_screen_share ? "t" : "f",
		in->supports_aic ? "t" : "f",
		in->accepting_connections ? "t" : "f",
	};
	/* The AuraID must be the caller's and active: the INSERT selects it. */
	PGresult *res = db_exec(
		db, err,
		"INSERT INTO mesh_nodes (aura_id, user_id, node_type, address, port, max_connections,"
		" bandwidth_capacity_mbps, region, country_code, latitude, longitude, supports_video,"
		" supports_audio, supports_screen_share, supports_aic, accepting_connections)"
		" SELECT a.aura_id, a.user_id, $3, $4, $5::int, $6::int, $7::real, $8, $9,"
		"  $10::float8, $11::float8, $12::bool, $13::bool, $14::bool, $15::bool, $16::bool"
		" FROM aura_id_registry a WHERE a.aura_id = $1 AND a.user_id = $2 AND a.status = 'active'"
		" RETURNING " NODE_COLUMNS,
		16, p);
	if (!res)
		return -1;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return al_error_set(err, 403, "M_FORBIDDEN", "aura_id: not an active AuraID of yours");
	}
	row_to_info(res, 0, in);
	PQclear(res);
	if (mesh_registry_add(reg, in, http_now_ms()) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot add the node");
	*out = mesh_registry_node_json(reg, in->node_id, http_now_ms());
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int mesh_node_delete(struct app *app, struct db *db, const char *user_id, const char *node_id, struct al_error *err)
{
	char owner[256];
	if (mesh_registry_owner(app->mesh->reg, node_id, owner, sizeof(owner), NULL, 0, err) < 0)
		return -1;
	if (strcmp(owner, user_id))
		return al_error_set(err, 403, "M_FORBIDDEN", "the node belongs to another user");
	const char *p[2] = {node_id, user_id};
	PGresult *res = db_exec(db, err, "DELETE FROM mesh_nodes WHERE node_id = $1::uuid AND user_id = $2", 2, p);
	if (!res)
		return -1;
	PQclear(res);
	mesh_registry_remove(app->mesh->reg, node_id);
	return 0;
}

int mesh_node_get(struct app *app, struct db *db, const char *viewer, const char *node_id, json_t **out,
		  struct al_error *err)
{
	char owner[256], aura[256];
	if (mesh_registry_owner(app->mesh->reg, node_id, owner, sizeof(owner), aura, sizeof(aura), err) < 0)
		return -1;
	if (strcmp(owner, viewer) && aura_id_check_visible(app, db, viewer, aura, err) < 0)
		return al_error_set(err, 404, "M_NOT_FOUND", "no such node");
	*out = mesh_registry_node_json(app->mesh->reg, node_id, http_now_ms());
	return *out ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "no such node");
}

int mesh_nodes_of_aura(struct app *app, struct db *db, const char *viewer, const char *aura_id, json_t **out,
		       struct al_error *err)
{
	if (aura_id_check_visible(app, db, viewer, aura_id, err) < 0)
		return -1;
	json_t *a = mesh_registry_aura_json(app->mesh->reg, aura_id, http_now_ms());
	if (!a)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	*out = json_pack("{s:s, s:o, s:I}", "aura_id", aura_id, "nodes", a, "count", (json_int_t)json_array_size(a));
	return 0;
}

int mesh_nodes_public_json(struct app *app, struct db *db, const char *origin, const char *user_id, json_t **out,
			   struct al_error *err)
{
	/* The rule of the org.auralink.aura_id query (fed_handlers.c): only a
	 * public, active AuraID of an active user (else 404), federation
	 * enabled and, when federated_domains is not empty, the asking server
	 * in it (else 403). One query. */
	const char *p[2] = {user_id, origin};
	PGresult *res = db_exec(db, err,
				"SELECT a.aura_id, a.privacy_level = 'public', a.federation_enabled,"
				" cardinality(a.federated_domains) = 0"
				"  OR lower($2) = ANY (SELECT lower(d) FROM unnest(a.federated_domains) d)"
				" FROM aura_id_registry a JOIN users u USING (user_id)"
				" WHERE a.user_id = $1 AND a.status = 'active' AND u.suspended_at IS NULL"
				" AND u.deactivated_at IS NULL",
				2, p);
	if (!res)
		return -1;
	int rc = 0;
	char aura[256];
	if (PQntuples(res) != 1 || !tf(PQgetvalue(res, 0, 1)))
		rc = al_error_set(err, 404, "M_NOT_FOUND", "Unknown user or no public AuraID");
	else if (!tf(PQgetvalue(res, 0, 2)))
		rc = al_error_set(err, 403, "M_FORBIDDEN", "The owner does not federate this AuraID");
	else if (!tf(PQgetvalue(res, 0, 3)))
		rc = al_error_set(err, 403, "M_FORBIDDEN", "The owner does not share this AuraID with %.255s", origin);
	else
		snprintf(aura, sizeof(aura), "%s", PQgetvalue(res, 0, 0));
	PQclear(res);
	if (rc < 0)
		return -1;
	json_t *all = mesh_registry_aura_json(app->mesh->reg, aura, http_now_ms()), *online = json_array();
	if (!all || !online) {
		json_decref(all);
		json_decref(online);
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	size_t i;
	json_t *v;
	json_array_foreach(all, i, v)
	{
		/* online (within the window) and local: never re-export what
		 * another server told us */
		if (json_is_true(json_object_get(v, "is_online")) && !json_is_true(json_object_get(v, "is_remote")) &&
		    json_array_size(online) < MESH_MAX_NODES_PER_AURA)
			json_array_append(online, v);
	}
	json_decref(all);
	*out = json_pack("{s:s, s:s, s:o}", "user_id", user_id, "aura_id", aura, "nodes", online);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

/* ---- routes ---- */

/* A random (version 4) UUID, lower case. */
static void route_uuid(char out[37])
{
	unsigned char b[16];
	randombytes_buf(b, sizeof(b));
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = 0;
}

static int64_t clock_us(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Search the registry (local nodes, and remote ones already fetched); a
 * new route gets its id here, is cached and queued for mesh_routes; *out
 * the reply. No PostgreSQL unless the queue of rows is full. */
static int route_find_store(struct app *app, struct db *db, const char *user_id, const char *src_aura,
			    const char *dst_aura, int media, bool require_aic, json_t **out, struct al_error *err)
{
	struct mesh_registry *reg = app->mesh->reg;
	struct route_row row;
	struct mesh_cached_route *r = &row.r;
	struct mesh_find_stats st;
	/* the search's time: wall clock (with lock waits and preemption) and
	 * this thread's CPU time (the computation alone) */
	int64_t now = http_now_ms(), t0 = clock_us(CLOCK_MONOTONIC), c0 = clock_us(CLOCK_THREAD_CPUTIME_ID);
	if (mesh_registry_find(reg, src_aura, dst_aura, media, require_aic, now, r, &st, err) < 0)
		return -1;
	int64_t search_us = clock_us(CLOCK_MONOTONIC) - t0, search_cpu_us = clock_us(CLOCK_THREAD_CPUTIME_ID) - c0;
	if (!st.cached) {
		route_uuid(r->route_id);
		snprintf(row.src, sizeof(row.src), "%s", src_aura);
		snprintf(row.dst, sizeof(row.dst), "%s", dst_aura);
		snprintf(row.user_id, sizeof(row.user_id), "%s", user_id);
		row.media = media;
		row.require_aic = require_aic;
		row.created_ms = now;
		if (route_enqueue(app->mesh->routes, db, &row, err) < 0)
			return -1;
		mesh_registry_cache_put(reg, src_aura, dst_aura, media, require_aic, r);
	}
	*out = route_json(r, src_aura, dst_aura, media, st.cached);
	if (*out) {
		json_object_set_new(*out, "relays_considered", json_integer((json_int_t)st.relays_considered));
		json_object_set_new(*out, "paths_evaluated", json_integer((json_int_t)st.paths_evaluated));
		json_object_set_new(*out, "search_us", json_integer((json_int_t)search_us));
		json_object_set_new(*out, "search_cpu_us", json_integer((json_int_t)search_cpu_us));
	}
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

/* ---- find-optimal for any destination ---- */

struct find_ctx {
	struct app *app;
	struct db *db;
	char user_id[256], src[256], dst[256]; /* dst lower-cased: the key of its remote nodes */
	char remote_user[256];
	int media;
	bool require_aic;
	struct event_base *base;
	mesh_find_cb cb;
	void *arg;
};

static void find_finish(struct find_ctx *c, int rc, json_t *out, struct al_error *err)
{
	c->cb(c->arg, rc < 0 ? NULL : out, err);
	free(c);
}

static void find_fail(struct find_ctx *c, int status, const char *errcode, const char *msg)
{
	struct al_error err = {0};
	al_error_set(&err, status, errcode, "%s", msg);
	find_finish(c, -1, NULL, &err);
}

static void find_remote_route(struct find_ctx *c)
{
	struct al_error err = {0};
	json_t *out = NULL;
	int rc = route_find_store(c->app, c->db, c->user_id, c->src, c->dst, c->media, c->require_aic, &out, &err);
	if (rc == 0 && c->remote_user[0]) {
		const char *colon = strchr(c->remote_user, ':');
		json_object_set_new(out, "destination_server", json_string(colon ? colon + 1 : ""));
	}
	find_finish(c, rc, out, &err);
}

static void on_remote_nodes(void *arg, int status, json_t *body, const struct al_error *ferr)
{
	struct find_ctx *c = arg;
	struct al_error err = {0};
	if (status == 403 || status == 404) {
		find_fail(c, 404, "M_NOT_FOUND",
			  "destination_aura_id: its owner's server does not share her mesh nodes with us");
		return;
	}
	if (status != 200 || !json_is_object(body)) {
		log_warn("mesh", "remote nodes unavailable user=%s status=%d error=%s", c->remote_user, status,
			 ferr && ferr->message[0] ? ferr->message : "-");
		find_fail(c, 502, "M_UNKNOWN", "destination_aura_id: its owner's server did not answer");
		return;
	}
	/* the answer must be about whom we asked */
	json_t *uid = json_object_get(body, "user_id"), *aid = json_object_get(body, "aura_id");
	if ((uid && (!json_is_string(uid) || strcmp(json_string_value(uid), c->remote_user))) ||
	    (aid && (!json_is_string(aid) || strcasecmp(json_string_value(aid), c->dst)))) {
		find_fail(c, 502, "M_UNKNOWN", "destination_aura_id: its owner's server answered for someone else");
		return;
	}
	if (mesh_registry_add_remote(c->app->mesh->reg, c->dst, c->remote_user, json_object_get(body, "nodes"),
				     http_now_ms(), &err) < 0) {
		log_warn("mesh", "remote nodes refused user=%s: %s", c->remote_user, err.message);
		find_finish(c, -1, NULL, &err);
		return;
	}
	find_remote_route(c);
}

static void on_resolved(void *arg, int status, json_t *body, const struct al_error *ferr)
{
	struct find_ctx *c = arg;
	(void)ferr;
	const char *uid = json_string_value(json_object_get(body, "user_id"));
	const char *colon = uid ? strchr(uid, ':') : NULL;
	if (status != 200 || !colon || strlen(uid) >= sizeof(c->remote_user)) {
		find_fail(c, 404, "M_NOT_FOUND",
			  status == 403 ? "destination_aura_id: its owner does not share it with this server"
					: "destination_aura_id: unknown here and on the servers we know");
		return;
	}
	snprintf(c->remote_user, sizeof(c->remote_user), "%s", uid);
	/* a resolve answered by another request meanwhile may have filled them */
	if (mesh_registry_remote_fresh(c->app->mesh->reg, c->dst, http_now_ms())) {
		find_remote_route(c);
		return;
	}
	if (federation_query_mesh_nodes(c->app, uid, c->base, on_remote_nodes, c) < 0)
		find_fail(c, 404, "M_NOT_FOUND", "destination_aura_id: its owner's server cannot be asked");
}

void mesh_route_find(struct app *app, struct db *db, const char *user_id, const char *src_aura, const char *dst_aura,
		     int media, bool require_aic, struct event_base *base, mesh_find_cb cb, void *arg)
{
	struct al_error err = {0};
	json_t *out = NULL;
	/* the caller's AuraID and whether the destination's is ours, from the
	 * AuraID cache (PostgreSQL only on a miss) */
	char src_stored[AURA_ID_MAX], src_owner[256], dst_stored[AURA_ID_MAX], dst_owner[256];
	int mine = aura_id_lookup_active(app, db, src_aura, src_stored, src_owner, &err);
	int local = mine > 0 ? aura_id_lookup_active(app, db, dst_aura, dst_stored, dst_owner, &err) : 0;
	if (mine < 0 || local < 0) {
		cb(arg, NULL, &err);
		return;
	}
	if (!mine || strcmp(src_owner, user_id) || strcmp(src_stored, src_aura)) {
		al_error_set(&err, 403, "M_FORBIDDEN", "source_aura_id: not your AuraID");
		cb(arg, NULL, &err);
		return;
	}
	if (local) {
		/* the stored spelling: the registry's key for her nodes */
		int rc = route_find_store(app, db, user_id, src_aura, dst_stored, media, require_aic, &out, &err);
		cb(arg, rc < 0 ? NULL : out, &err);
		return;
	}
	struct find_ctx *c = calloc(1, sizeof(*c));
	if (!c) {
		al_error_set(&err, 500, "M_UNKNOWN", "out of memory");
		cb(arg, NULL, &err);
		return;
	}
	c->app = app;
	c->db = db;
	c->base = base;
	snprintf(c->user_id, sizeof(c->user_id), "%s", user_id);
	snprintf(c->src, sizeof(c->src), "%s", src_aura);
	for (size_t i = 0; dst_aura[i] && i + 1 < sizeof(c->dst); i++)
		c->dst[i] = (char)tolower((unsigned char)dst_aura[i]);
	c->media = media;
	c->require_aic = require_aic;
	c->cb = cb;
	c->arg = arg;
	/* the remote nodes of the last 60 s: no federation traffic */
	if (mesh_registry_remote_fresh(app->mesh->reg, c->dst, http_now_ms())) {
		find_remote_route(c);
		return;
	}
	if (federation_resolve_aura_id(app, c->dst, base, on_resolved, c) < 0)
		find_fail(c, 404, "M_NOT_FOUND", "destination_aura_id: unknown here (no federation)");
}

bool mesh_performance_success(const struct mesh_performance *p)
{
	if (p->packet_loss_rate >= 0.05)
		return false;
	if (p->actual_latency_ms >= 400)
		return false;
	return true;
}

static const char *num_or_null(char *buf, size_t len, double v)
{
	if (v < 0)
		return NULL;
	snprintf(buf, len, "%.6f", v);
	return buf;
}

int mesh_route_performance(struct app *app, struct db *db, const char *user_id, const char *route_id,
			   const struct mesh_performance *pf, json_t **out, struct al_error *err)
{
	char b[4][32];
	bool ok = mesh_performance_success(pf);
	const char *p[7] = {route_id,
			    user_id,
			    num_or_null(b[0], sizeof(b[0]), pf->actual_latency_ms),
			    num_or_null(b[1], sizeof(b[1]), pf->actual_bandwidth_mbps),
			    num_or_null(b[2], sizeof(b[2]), pf->packet_loss_rate),
			    num_or_null(b[3], sizeof(b[3]), pf->jitter_ms),
			    ok ? "1" : "0"};
	/* a route answered moments ago may still wait for its row */
	if (route_pending(app->mesh->routes, route_id) && routes_flush(app->mesh->routes, db, err) < 0)
		return -1;
	/* Running means of the actuals over the reports that carried them;
	 * usage_count counts reports, success_rate = successes / reports. */
	PGresult *res = db_exec(
		db, err,
		"UPDATE mesh_routes SET"
		" actual_latency_ms = CASE WHEN $3::real IS NULL THEN actual_latency_ms"
		"  ELSE (coalesce(actual_latency_ms, 0) * usage_count + $3::real) / (usage_count + 1) END,"
		" actual_bandwidth_mbps = CASE WHEN $4::real IS NULL THEN actual_bandwidth_mbps"
		"  ELSE (coalesce(actual_bandwidth_mbps, 0) * usage_count + $4::real) / (usage_count + 1) END,"
		" packet_loss_rate = CASE WHEN $5::real IS NULL THEN packet_loss_rate"
		"  ELSE (coalesce(packet_loss_rate, 0) * usage_count + $5::real) / (usage_count + 1) END,"
		" jitter_ms = CASE WHEN $6::real IS NULL THEN jitter_ms"
		"  ELSE (coalesce(jitter_ms, 0) * usage_count + $6::real) / (usage_count + 1) END,"
		" usage_count = usage_count + 1, success_count = success_count + $7::int,"
		" success_rate = (success_count + $7::int)::real / (usage_count + 1),"
		" performance_reported_at = now()"
		" WHERE route_id = $1::uuid AND requested_by = $2"
		" RETURNING path_nodes::text[], usage_count, success_count, success_rate,"
		"  actual_latency_ms, predicted_latency_ms, media_type,"
		"  coalesce((optimization_factors->>'require_aic')::bool, false)",
		7, p);
	if (!res)
		return -1;
	if (PQntuples(res) != 1) {
		PQclear(res);
		return al_error_set(err, 404, "M_NOT_FOUND", "no such route of yours");
	}
	/* path_nodes text: {a,b,c} */
	char ids[4][37];
	int n = 0;
	const char *s = PQgetvalue(res, 0, 0);
	if (*s == '{')
		s++;
	while (*s && *s != '}' && n < 4) {
		size_t len = strcspn(s, ",}");
		if (len == 36) {
			memcpy(ids[n], s, 36);
			ids[n][36] = 0;
			n++;
		}
		s += len;
		if (*s == ',')
			s++;
	}
	*out = json_pack("{s:s, s:i, s:i, s:f, s:b}", "route_id", route_id, "usage_count", atoi(PQgetvalue(res, 0, 1)),
			 "success_count", atoi(PQgetvalue(res, 0, 2)), "success_rate", atof(PQgetvalue(res, 0, 3)),
			 "success", ok);
	if (*out && !PQgetisnull(res, 0, 4))
		json_object_set_new(*out, "actual_latency_ms", json_real(atof(PQgetvalue(res, 0, 4))));
	if (*out && !PQgetisnull(res, 0, 5))
		json_object_set_new(*out, "predicted_latency_ms", json_real(atof(PQgetvalue(res, 0, 5))));
	bool has_actual = !PQgetisnull(res, 0, 4);
	double mean_actual = has_actual ? atof(PQgetvalue(res, 0, 4)) : -1;
	int media = mesh_media_parse(PQgetvalue(res, 0, 6));
	bool aic = tf(PQgetvalue(res, 0, 7));
	PQclear(res);
	char rid[37];
	snprintf(rid, sizeof(rid), "%s", route_id);
	mesh_registry_feedback(app->mesh->reg, rid, (const char(*)[37])ids, n, pf->actual_latency_ms, ok);
	if (!*out)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	/* is_optimal (mesh_route.h): the route re-scored with its mean
	 * measured latency against the best path between its ends now that
	 * the model learned from the report. Unknown (kept) when a node of it
	 * is gone. */
	double actual_score, best_score;
	bool same;
	if (has_actual && media >= 0 &&
	    mesh_registry_rescore(app->mesh->reg, (const char(*)[37])ids, n, mean_actual, media, aic, http_now_ms(),
				  &actual_score, &best_score, &same) == 0) {
		bool optimal = same || actual_score >= best_score - MESH_OPTIMAL_TOLERANCE_POINTS;
		const char *q[2] = {route_id, optimal ? "t" : "f"};
		PGresult *u = db_exec(db, err, "UPDATE mesh_routes SET is_optimal = $2::bool WHERE route_id = $1::uuid",
				      2, q);
		if (!u) {
			json_decref(*out);
			*out = NULL;
			return -1;
		}
		PQclear(u);
		json_object_set_new(*out, "is_optimal", json_boolean(optimal));
		json_object_set_new(*out, "actual_score", json_real(actual_score));
		json_object_set_new(*out, "best_alternative_score", json_real(best_score));
	}
	return 0;
}

int mesh_route_analytics(struct app *app, struct db *db, const char *user_id, int hours, json_t **out,
			 struct al_error *err)
{
	if (routes_flush(app->mesh->routes, db, err) < 0)
		return -1;
	char h[16];
	snprintf(h, sizeof(h), "%d", hours);
	const char *p[2] = {user_id, h};
	PGresult *res = db_exec(db, err,
				"SELECT count(*), count(*) FILTER (WHERE is_optimal), coalesce(avg(ai_score), 0),"
				" coalesce(avg(predicted_latency_ms) FILTER (WHERE actual_latency_ms IS NOT NULL), 0),"
				" coalesce(avg(actual_latency_ms), 0),"
				" coalesce(avg(abs(predicted_latency_ms - actual_latency_ms)), 0),"
				" coalesce(100 * avg(abs(predicted_latency_ms - actual_latency_ms) / actual_latency_ms)"
				"  FILTER (WHERE actual_latency_ms > 0), 0),"
				" coalesce(sum(success_count)::float8 / nullif(sum(usage_count), 0), 0),"
				" count(*) FILTER (WHERE usage_count > 0), coalesce(sum(usage_count), 0),"
				" coalesce(count(*) FILTER (WHERE is_optimal)::float8"
				"  / nullif(count(*) FILTER (WHERE actual_latency_ms IS NOT NULL), 0), 0)"
				" FROM mesh_routes WHERE requested_by = $1"
				" AND created_at > now() - make_interval(hours => $2::int)",
				2, p);
	if (!res)
		return -1;
	/* optimal_routes: routes judged optimal after a latency report (see
	 * MESH_OPTIMAL_TOLERANCE_POINTS); optimal_share: of the routes with a
	 * latency report (routes never reported on are not judged) */
	*out = json_pack("{s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:i, s:i, s:i}", "total_routes",
			 atoi(PQgetvalue(res, 0, 0)), "optimal_routes", atoi(PQgetvalue(res, 0, 1)), "optimal_share",
			 atof(PQgetvalue(res, 0, 10)), "avg_ai_score", atof(PQgetvalue(res, 0, 2)),
			 "avg_predicted_latency_ms", atof(PQgetvalue(res, 0, 3)), "avg_actual_latency_ms",
			 atof(PQgetvalue(res, 0, 4)), "mean_abs_error_ms", atof(PQgetvalue(res, 0, 5)), "mape",
			 atof(PQgetvalue(res, 0, 6)), "avg_success_rate", atof(PQgetvalue(res, 0, 7)),
			 "routes_with_reports", atoi(PQgetvalue(res, 0, 8)), "reports", atoi(PQgetvalue(res, 0, 9)),
			 "hours", hours);
	PQclear(res);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int mesh_node_abuse_confirmed(struct app *app, const char *node_id, const char *severity, const char *report_id,
			      struct al_error *err)
{
	char desc[128];
	snprintf(desc, sizeof(desc), "abuse report %.40s confirmed (%.16s)", report_id ? report_id : "?",
		 severity ? severity : "medium");
	if (!app->mesh)
		return al_error_set(err, 500, "M_UNKNOWN", "mesh not started");
	return mesh_registry_reputation(app->mesh->reg, node_id, mesh_reputation_abuse_delta(severity),
					MESH_REP_ABUSE_CONFIRMED, desc, NULL, NULL, NULL, err);
}

int mesh_admin_reputation(struct app *app, struct db *db, const char *admin, const char *node_id, double change,
			  int event_type, const char *description, json_t **out, struct al_error *err)
{
	double prev = 0, now = 0;
	if (mesh_registry_reputation(app->mesh->reg, node_id, change, (enum mesh_rep_event)event_type, description,
				     NULL, &prev, &now, err) < 0)
		return -1;
	/* canonical JSON (the audit hash) has no floats: scores as text */
	char ps[32], ns[32], cs[32];
	snprintf(ps, sizeof(ps), "%.2f", prev);
	snprintf(ns, sizeof(ns), "%.2f", now);
	snprintf(cs, sizeof(cs), "%.2f", change);
	json_t *details = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "previous_score", ps, "new_score", ns, "change", cs,
				    "event_type", mesh_rep_event_name((enum mesh_rep_event)event_type), "description",
				    description);
	int rc = audit_append(db, "mesh", "node_reputation", admin, node_id, NULL, details, err);
	json_decref(details);
	if (rc < 0)
		return -1;
	*out = mesh_registry_node_json(app->mesh->reg, node_id, http_now_ms());
	return *out ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "no such node");
}
