/* mesh.c - the mesh service: registry <-> PostgreSQL, routes, analytics. */
#include "mesh.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "aura_id.h"
#include "federation.h"
#include "handlers_mesh.h"
#include "http.h"
#include "log.h"
#include "mesh_pgarr.h"

#define NODE_COLUMNS                                                                               \
	"node_id::text, aura_id, user_id, node_type, coalesce(address, ''), coalesce(port, 0),"    \
	" max_connections, current_connections, bandwidth_capacity_mbps, bandwidth_used_mbps,"    \
	" avg_latency_ms, packet_loss_rate, coalesce(region, ''), coalesce(country_code, ''),"     \
	" latitude IS NOT NULL AND longitude IS NOT NULL, coalesce(latitude, 0),"                  \
	" coalesce(longitude, 0), supports_video, supports_audio, supports_screen_share,"          \
	" supports_aic, accepting_connections, is_online,"                                         \
	" (extract(epoch from coalesce(last_heartbeat_at, 'epoch')) * 1000)::bigint,"              \
	" (extract(epoch from created_at) * 1000)::bigint, reputation_score, uptime_percentage,"    \
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

static void on_flush(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	struct al_error err = {0};
	(void)fd;
	(void)what;
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
	st->flush_ev = event_new(app->main_base, -1, EV_PERSIST, on_flush, app);
	st->sweep_ev = event_new(app->main_base, -1, EV_PERSIST, on_sweep, app);
	if (!st->flush_ev || !st->sweep_ev || event_add(st->flush_ev, &ftv) < 0 ||
	    event_add(st->sweep_ev, &stv) < 0)
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
	if (st->reg && app->maint_db && app->maint_db->conn)
		mesh_flush(st->reg, app->maint_db, &err);
	mesh_registry_free(st->reg);
	free(st);
	app->mesh = NULL;
}

/* ---- nodes ---- */

int mesh_node_register(struct app *app, struct db *db, const char *user_id, struct mesh_node_info *in,
		       json_t **out, struct al_error *err)
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

int mesh_node_delete(struct app *app, struct db *db, const char *user_id, const char *node_id,
		     struct al_error *err)
{
	char owner[256];
	if (mesh_registry_owner(app->mesh->reg, node_id, owner, sizeof(owner), NULL, 0, err) < 0)
		return -1;
	if (strcmp(owner, user_id))
		return al_error_set(err, 403, "M_FORBIDDEN", "the node belongs to another user");
	const char *p[2] = {node_id, user_id};
	PGresult *res = db_exec(db, err, "DELETE FROM mesh_nodes WHERE node_id = $1::uuid AND user_id = $2",
				2, p);
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

int mesh_nodes_of_aura(struct app *app, struct db *db, const char *viewer, const char *aura_id,
		       json_t **out, struct al_error *err)
{
	if (aura_id_check_visible(app, db, viewer, aura_id, err) < 0)
		return -1;
	json_t *a = mesh_registry_aura_json(app->mesh->reg, aura_id, http_now_ms());
	if (!a)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	*out = json_pack("{s:s, s:o, s:I}", "aura_id", aura_id, "nodes", a, "count",
			 (json_int_t)json_array_size(a));
	return 0;
}

int mesh_nodes_public_json(struct app *app, struct db *db, const char *origin, const char *user_id,
			   json_t **out, struct al_error *err)
{
	/* The rule of the org.auralink.aura_id query (fed_handlers.c): only a
	 * public, active AuraID of an active user (else 404), federation
	 * enabled and, when federated_domains is not empty, the asking server
	 * in it (else 403). One query. */
	const char *p[2] = {user_id, origin};
	PGresult *res = db_exec(
		db, err,
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
		rc = al_error_set(err, 403, "M_FORBIDDEN", "The owner does not share this AuraID with %.255s",
				  origin);
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
		if (json_is_true(json_object_get(v, "is_online")) &&
		    !json_is_true(json_object_get(v, "is_remote")) &&
		    json_array_size(online) < MESH_MAX_NODES_PER_AURA)
			json_array_append(online, v);
	}
	json_decref(all);
	*out = json_pack("{s:s, s:s, s:o}", "user_id", user_id, "aura_id", aura, "nodes", online);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

/* ---- routes ---- */

static json_t *route_json(const struct mesh_cached_route *r, const char *src, const char *dst, int media,
			  bool cached)
{
	double f[6];
	char exp[80];
	mesh_route_factors(&r->pm, f);
	time_t t = (time_t)(r->expires_ms / 1000);
	struct tm tm;
	gmtime_r(&t, &tm);
	snprintf(exp, sizeof(exp), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(r->expires_ms % 1000));
	json_t *path = json_array();
	for (int i = 0; i < r->n; i++)
		json_array_append_new(path, json_string(r->node_ids[i]));
	return json_pack(
		"{s:s, s:s, s:s, s:o, s:i, s:s, s:s, s:f, s:f, s:f, s:{s:f, s:f, s:f, s:f, s:f, s:f, s:f,"
		" s:f, s:i, s:b}, s:s, s:b}",
		"route_id", r->route_id, "source_aura_id", src, "destination_aura_id", dst, "path_nodes",
		path, "path_length", r->n, "route_type", r->n == 2 ? "direct_p2p" : "relay", "media_type",
		mesh_media_name(media), "predicted_latency_ms", r->pm.latency_ms,
		"predicted_bandwidth_mbps", r->pm.bandwidth_mbps, "ai_score", r->score,
		"optimization_factors", "latency", f[0], "bandwidth", f[1], "reputation", f[2],
		"hop_count", f[3], "aic_support", f[4], "uptime", f[5], "min_reputation",
		r->pm.reputation, "min_uptime", r->pm.uptime, "hops", r->pm.links, "aic", r->pm.aic,
		"expires_at", exp, "cached", cached);
}

/* Search the registry (local nodes, and remote ones already fetched),
 * store a new route in mesh_routes and cache it; *out the reply. */
static int route_find_store(struct app *app, struct db *db, const char *user_id, const char *src_aura,
			    const char *dst_aura, int media, bool require_aic, json_t **out,
			    struct al_error *err)
{
	struct mesh_registry *reg = app->mesh->reg;
	struct mesh_cached_route r;
	struct mesh_find_stats st;
	if (mesh_registry_find(reg, src_aura, dst_aura, media, require_aic, http_now_ms(), &r, &st, err) < 0)
		return -1;
	if (!st.cached) {
		char lat[32], bw[32], score[32], len[8], exp[32];
		json_t *tmp = route_json(&r, src_aura, dst_aura, media, false);
		json_t *factors = json_object_get(tmp, "optimization_factors");
		/* kept for re-scoring the route after feedback (is_optimal) */
		json_object_set_new(factors, "require_aic", json_boolean(require_aic));
		char *fjson = json_dumps(factors, JSON_COMPACT);
		json_decref(tmp);
		struct mesh_pgarr path;
		if (!fjson || mesh_pgarr_init(&path) < 0) {
			free(fjson);
			return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		}
		for (int i = 0; i < r.n; i++)
			mesh_pgarr_text(&path, r.node_ids[i]);
		snprintf(lat, sizeof(lat), "%.6f", r.pm.latency_ms);
		snprintf(bw, sizeof(bw), "%.6f", r.pm.bandwidth_mbps);
		snprintf(score, sizeof(score), "%.6f", r.score);
		snprintf(len, sizeof(len), "%d", r.n);
		snprintf(exp, sizeof(exp), "%lld", (long long)r.expires_ms);
		const char *p[13] = {src_aura,
				     dst_aura,
				     r.node_ids[0],
				     r.node_ids[r.n - 1],
				     mesh_pgarr_finish(&path),
				     len,
				     r.n == 2 ? "direct_p2p" : "relay",
				     mesh_media_name(media),
				     lat,
				     bw,
				     score,
				     fjson,
				     user_id};
		PGresult *res = db_exec(
			db, err,
			"INSERT INTO mesh_routes (source_aura_id, destination_aura_id, source_node_id,"
			" destination_node_id, path_nodes, path_length, route_type, media_type,"
			" predicted_latency_ms, predicted_bandwidth_mbps, ai_score, optimization_factors,"
			" is_optimal, requested_by, expires_at)"
			" VALUES ($1, $2, $3::uuid, $4::uuid, $5::uuid[], $6::int, $7, $8, $9::real,"
			"  $10::real, $11::real, $12::jsonb, false, $13, now() + interval '5 minutes')"
			" RETURNING route_id::text, (extract(epoch from expires_at) * 1000)::bigint",
			13, p);
		mesh_pgarr_free(&path);
		free(fjson);
		if (!res)
			return -1;
		snprintf(r.route_id, sizeof(r.route_id), "%s", PQgetvalue(res, 0, 0));
		r.expires_ms = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		PQclear(res);
		mesh_registry_cache_put(reg, src_aura, dst_aura, media, require_aic, &r);
	}
	*out = route_json(&r, src_aura, dst_aura, media, st.cached);
	if (*out) {
		json_object_set_new(*out, "relays_considered", json_integer((json_int_t)st.relays_considered));
		json_object_set_new(*out, "paths_evaluated", json_integer((json_int_t)st.paths_evaluated));
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

void mesh_route_find(struct app *app, struct db *db, const char *user_id, const char *src_aura,
		     const char *dst_aura, int media, bool require_aic, struct event_base *base, mesh_find_cb cb,
		     void *arg)
{
	struct al_error err = {0};
	json_t *out = NULL;
	/* one query: the caller's AuraID, and whether the destination's is ours */
	const char *p[2] = {user_id, dst_aura};
	PGresult *res = db_exec(db, &err,
				"SELECT (SELECT aura_id FROM aura_id_registry WHERE user_id = $1 AND status = 'active'),"
				" EXISTS (SELECT 1 FROM aura_id_registry WHERE lower(aura_id) = lower($2)"
				"  AND status = 'active')",
				2, p);
	if (!res) {
		cb(arg, NULL, &err);
		return;
	}
	bool mine = !PQgetisnull(res, 0, 0) && !strcmp(PQgetvalue(res, 0, 0), src_aura);
	bool local = tf(PQgetvalue(res, 0, 1));
	PQclear(res);
	if (!mine) {
		al_error_set(&err, 403, "M_FORBIDDEN", "source_aura_id: not your AuraID");
		cb(arg, NULL, &err);
		return;
	}
	if (local) {
		int rc = route_find_store(app, db, user_id, src_aura, dst_aura, media, require_aic, &out, &err);
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
	*out = json_pack("{s:s, s:i, s:i, s:f, s:b}", "route_id", route_id, "usage_count",
			 atoi(PQgetvalue(res, 0, 1)), "success_count", atoi(PQgetvalue(res, 0, 2)),
			 "success_rate", atof(PQgetvalue(res, 0, 3)), "success", ok);
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

int mesh_route_analytics(struct db *db, const char *user_id, int hours, json_t **out,
			 struct al_error *err)
{
	char h[16];
	snprintf(h, sizeof(h), "%d", hours);
	const char *p[2] = {user_id, h};
	PGresult *res = db_exec(
		db, err,
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
			 atoi(PQgetvalue(res, 0, 0)), "optimal_routes", atoi(PQgetvalue(res, 0, 1)),
			 "optimal_share", atof(PQgetvalue(res, 0, 10)),
			 "avg_ai_score", atof(PQgetvalue(res, 0, 2)), "avg_predicted_latency_ms",
			 atof(PQgetvalue(res, 0, 3)), "avg_actual_latency_ms", atof(PQgetvalue(res, 0, 4)),
			 "mean_abs_error_ms", atof(PQgetvalue(res, 0, 5)), "mape",
			 atof(PQgetvalue(res, 0, 6)), "avg_success_rate", atof(PQgetvalue(res, 0, 7)),
			 "routes_with_reports", atoi(PQgetvalue(res, 0, 8)), "reports",
			 atoi(PQgetvalue(res, 0, 9)), "hours", hours);
	PQclear(res);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int mesh_node_abuse_confirmed(struct app *app, const char *node_id, const char *severity,
			      const char *report_id, struct al_error *err)
{
	char desc[128];
	snprintf(desc, sizeof(desc), "abuse report %.40s confirmed (%.16s)", report_id ? report_id : "?",
		 severity ? severity : "medium");
	if (!app->mesh)
		return al_error_set(err, 500, "M_UNKNOWN", "mesh not started");
	return mesh_registry_reputation(app->mesh->reg, node_id, mesh_reputation_abuse_delta(severity),
					MESH_REP_ABUSE_CONFIRMED, desc, NULL, NULL, NULL, err);
}

int mesh_admin_reputation(struct app *app, struct db *db, const char *admin, const char *node_id,
			  double change, int event_type, const char *description, json_t **out,
			  struct al_error *err)
{
	double prev = 0, now = 0;
	if (mesh_registry_reputation(app->mesh->reg, node_id, change, (enum mesh_rep_event)event_type,
				     description, NULL, &prev, &now, err) < 0)
		return -1;
	/* canonical JSON (the audit hash) has no floats: scores as text */
	char ps[32], ns[32], cs[32];
	snprintf(ps, sizeof(ps), "%.2f", prev);
	snprintf(ns, sizeof(ns), "%.2f", now);
	snprintf(cs, sizeof(cs), "%.2f", change);
	json_t *details = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "previous_score", ps, "new_score", ns,
				    "change", cs, "event_type",
				    mesh_rep_event_name((enum mesh_rep_event)event_type), "description",
				    description);
	int rc = audit_append(db, "mesh", "node_reputation", admin, node_id, NULL, details, err);
	json_decref(details);
	if (rc < 0)
		return -1;
	*out = mesh_registry_node_json(app->mesh->reg, node_id, http_now_ms());
	return *out ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "no such node");
}
