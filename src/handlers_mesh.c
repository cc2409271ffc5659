/* handlers_mesh.c - /_auralink/client/v1/mesh/... and the admin reputation
 * endpoint: authenticate, rate-limit, validate, call mesh.c, reply. */
#include "handlers_mesh.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "fields.h"
#include "http.h"
#include "mesh.h"
#include "ratelimit.h"

#define PREFIX "/_auralink/client/v1/mesh"
#define ADMIN_PREFIX "/_auralink/admin/v1/mesh"

static int guard(struct http_req *req, const char *action)
{
	if (auth_require(req) < 0)
		return -1;
	return ratelimit_check(req, action);
}

static void reply(struct http_req *req, int rc, int status, json_t *out, struct al_error *err)
{
	if (rc < 0)
		http_reply_al_error(req, err);
	else
		http_reply_json(req, status, out);
}

static bool uuid_valid(const char *s)
{
	if (!s || strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char c = s[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (c != '-')
				return false;
		} else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
			return false;
		}
	}
	return true;
}

/* body[key] as a number within [min, max]; absent/null leaves *out. */
static int field_num(struct http_req *req, json_t *body, const char *key, double min, double max, bool integer,
		     double *out)
{
	json_t *v = json_object_get(body, key);
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_number(v) || (integer && !json_is_integer(v))) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be a%s number", key, integer ? "n integer" : "");
		return -1;
	}
	double d = json_number_value(v);
	if (!isfinite(d) || d < min || d > max) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be between %g and %g", key, min, max);
		return -1;
	}
	*out = d;
	return 0;
}

static void post_register(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	const char *aura = NULL, *type = NULL, *address = NULL, *region = NULL, *cc = NULL;
	double port = 0, maxc = 50, bw = 0, lat = NAN, lon = NAN;
	if (guard(req, "mesh.register") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	struct mesh_node_info *in = calloc(1, sizeof(*in));
	if (!in) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	in->supports_video = in->supports_audio = in->accepting_connections = true;
	if (fields_string(req, body, "aura_id", true, 255, 0, &aura) < 0 ||
	    fields_string(req, body, "node_type", false, 32, 0, &type) < 0 ||
	    fields_string(req, body, "address", false, 255, 0, &address) < 0 ||
	    fields_string(req, body, "region", false, 64, 0, &region) < 0 ||
	    fields_string(req, body, "country_code", false, 2, 0, &cc) < 0 ||
	    field_num(req, body, "port", 1, 65535, true, &port) < 0 ||
	    field_num(req, body, "max_connections", 1, 1000000, true, &maxc) < 0 ||
	    field_num(req, body, "bandwidth_capacity_mbps", 0, 1e6, false, &bw) < 0 ||
	    field_num(req, body, "latitude", -90, 90, false, &lat) < 0 ||
	    field_num(req, body, "longitude", -180, 180, false, &lon) < 0 ||
	    fields_bool(req, body, "supports_video", &in->supports_video) < 0 ||
	    fields_bool(req, body, "supports_audio", &in->supports_audio) < 0 ||
	    fields_bool(req, body, "supports_screen_share", &in->supports_screen_share) < 0 ||
	    fields_bool(req, body, "supports_aic", &in->supports_aic) < 0 ||
	    fields_bool(req, body, "accepting_connections", &in->accepting_connections) < 0)
		goto done;
	in->type = type ? mesh_node_type_parse(type) : MESH_PEER;
	if (in->type < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "node_type must be peer, relay, edge or super_node");
		goto done;
	}
	if (cc && (strlen(cc) != 2 || cc[0] < 'A' || cc[0] > 'Z' || cc[1] < 'A' || cc[1] > 'Z')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "country_code must be two capital letters");
		goto done;
	}
	if (isnan(lat) != isnan(lon)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be given with %s",
				 isnan(lat) ? "latitude" : "longitude", isnan(lat) ? "longitude" : "latitude");
		goto done;
	}
	if ((address && !*address) || (region && !*region)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s must not be empty",
				 address && !*address ? "address" : "region");
		goto done;
	}
	snprintf(in->aura_id, sizeof(in->aura_id), "%s", aura);
	snprintf(in->address, sizeof(in->address), "%s", address ? address : "");
	snprintf(in->region, sizeof(in->region), "%s", region ? region : "");
	snprintf(in->country_code, sizeof(in->country_code), "%s", cc ? cc : "");
	in->port = (int)port;
	in->max_connections = (int)maxc;
	in->bandwidth_capacity_mbps = bw;
	in->has_position = !isnan(lat);
	in->latitude = in->has_position ? lat : 0;
	in->longitude = in->has_position ? lon : 0;
	int rc = mesh_node_register(req->app, &req->worker->db, req->user_id, in, &out, &err);
	reply(req, rc, 201, out, &err);
done:
	free(in);
}

static void post_heartbeat(struct http_req *req)
{
	struct al_error err = {0};
	const char *node_id = NULL;
	double cc = -1, bw = -1, lat = -1, loss = -1;
	bool accepting = true;
	if (guard(req, "mesh.heartbeat") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (fields_string(req, body, "node_id", true, 64, 0, &node_id) < 0)
		return;
	if (!uuid_valid(node_id)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "node_id must be a UUID");
		return;
	}
	json_t *acc = json_object_get(body, "accepting_connections");
	if (field_num(req, body, "current_connections", 0, 1000000, true, &cc) < 0 ||
	    field_num(req, body, "bandwidth_used_mbps", 0, 1e6, false, &bw) < 0 ||
	    field_num(req, body, "avg_latency_ms", 0, 1e5, false, &lat) < 0 ||
	    field_num(req, body, "packet_loss_rate", 0, 1, false, &loss) < 0 ||
	    fields_bool(req, body, "accepting_connections", &accepting) < 0)
		return;
	struct mesh_heartbeat hb = {(int)cc, bw, lat, loss, acc && !json_is_null(acc) ? accepting : -1};
	int64_t retry = 0;
	if (mesh_registry_heartbeat(req->app->mesh->reg, node_id, req->user_id, &hb, http_now_ms(), &retry, &err) < 0) {
		if (err.status == 429) {
			http_reply_json(req, 429,
					json_pack("{s:s, s:s, s:I}", "errcode", err.errcode, "error", err.message,
						  "retry_after_ms", (json_int_t)retry));
			return;
		}
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:s, s:b}", "node_id", node_id, "is_online", 1));
}

static void get_node(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "mesh.read") < 0)
		return;
	if (!uuid_valid(req->params[0])) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "node_id must be a UUID");
		return;
	}
	int rc = mesh_node_get(req->app, &req->worker->db, req->user_id, req->params[0], &out, &err);
	reply(req, rc, 200, out, &err);
}

static void delete_node(struct http_req *req)
{
	struct al_error err = {0};
	if (guard(req, "mesh.deregister") < 0)
		return;
	if (!uuid_valid(req->params[0])) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "node_id must be a UUID");
		return;
	}
	if (mesh_node_delete(req->app, &req->worker->db, req->user_id, req->params[0], &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:s, s:b}", "node_id", req->params[0], "deleted", 1));
}

static void get_aura_nodes(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "mesh.read") < 0)
		return;
	if (strlen(req->params[0]) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "aura_id is too long");
		return;
	}
	int rc = mesh_nodes_of_aura(req->app, &req->worker->db, req->user_id, req->params[0], &out, &err);
	reply(req, rc, 200, out, &err);
}

static void get_status(struct http_req *req)
{
	if (guard(req, "mesh.read") < 0)
		return;
	json_t *out = mesh_registry_status_json(req->app->mesh->reg, http_now_ms());
	if (!out) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	http_reply_json(req, 200, out);
}

static void found(void *arg, json_t *route, const struct al_error *err)
{
	struct http_req *req = arg;
	if (route)
		http_reply_json(req, 200, route);
	else
		http_reply_al_error(req, err);
}

static void post_find(struct http_req *req)
{
	struct al_error err = {0};
	const char *src = NULL, *dst = NULL, *media = NULL;
	bool aic = false;
	if (guard(req, "mesh.find_route") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (fields_string(req, body, "source_aura_id", true, 255, 0, &src) < 0 ||
	    fields_string(req, body, "destination_aura_id", true, 255, 0, &dst) < 0 ||
	    fields_string(req, body, "media_type", false, 32, 0, &media) < 0 ||
	    fields_bool(req, body, "require_aic", &aic) < 0)
		return;
	int m = media ? mesh_media_parse(media) : MESH_MEDIA_AUDIO;
	if (m < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "media_type must be audio, video, screen_share or data");
		return;
	}
	if (!strcmp(src, dst)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "destination_aura_id equals source_aura_id");
		return;
	}
	/* a remote destination parks the request until federation answered */
	mesh_route_find(req->app, &req->worker->db, req->user_id, src, dst, m, aic, req->worker->base, found, req);
}

static void put_performance(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	struct mesh_performance p = {-1, -1, -1, -1};
	if (guard(req, "mesh.performance") < 0)
		return;
	if (!uuid_valid(req->params[0])) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "route_id must be a UUID");
		return;
	}
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (field_num(req, body, "actual_latency_ms", 0, 1e5, false, &p.actual_latency_ms) < 0 ||
	    field_num(req, body, "actual_bandwidth_mbps", 0, 1e6, false, &p.actual_bandwidth_mbps) < 0 ||
	    field_num(req, body, "packet_loss_rate", 0, 1, false, &p.packet_loss_rate) < 0 ||
	    field_num(req, body, "jitter_ms", 0, 1e5, false, &p.jitter_ms) < 0)
		return;
	if (p.actual_latency_ms < 0 && p.actual_bandwidth_mbps < 0 && p.packet_loss_rate < 0 && p.jitter_ms < 0) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "actual_latency_ms (or another measure) is required");
		return;
	}
	int rc = mesh_route_performance(req->app, &req->worker->db, req->user_id, req->params[0], &p, &out, &err);
	reply(req, rc, 200, out, &err);
}

static void get_analytics(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "mesh.read") < 0)
		return;
	const char *h = http_req_query(req, "hours");
	long hours = 24;
	if (h) {
		char *end = NULL;
		hours = strtol(h, &end, 10);
		if (!*h || *end || hours < 1 || hours > 24 * 366) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "hours must be an integer from 1 to 8784");
			return;
		}
	}
	int rc = mesh_route_analytics(req->app, &req->worker->db, req->user_id, (int)hours, &out, &err);
	reply(req, rc, 200, out, &err);
}

static void post_admin_reputation(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	const char *type = NULL, *desc = NULL;
	double change = 0;
	if (auth_require_admin(req) < 0 || ratelimit_check(req, "mesh.admin") < 0)
		return;
	if (!uuid_valid(req->params[0])) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "node_id must be a UUID");
		return;
	}
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!json_object_get(body, "change")) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "change is required");
		return;
	}
	if (field_num(req, body, "change", -100, 100, false, &change) < 0 ||
	    fields_string(req, body, "event_type", false, 32, 0, &type) < 0 ||
	    fields_string(req, body, "description", false, 4000, 1000, &desc) < 0)
		return;
	int e = type ? mesh_rep_event_parse(type) : MESH_REP_ADMIN_ADJUSTMENT;
	if (e < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM",
				 "event_type must be one of route_success, route_failure, missed_heartbeat,"
				 " abuse_confirmed, admin_adjustment, uptime_bonus");
		return;
	}
	int rc = mesh_admin_reputation(req->app, &req->worker->db, req->user_id, req->params[0], change, e, desc, &out,
				       &err);
	reply(req, rc, 200, out, &err);
}

int mesh_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_POST, PREFIX "/nodes/register", post_register);
	rc |= http_route(app, ROUTER_POST, PREFIX "/nodes/heartbeat", post_heartbeat);
	rc |= http_route(app, ROUTER_GET, PREFIX "/nodes/aura/{aura_id}", get_aura_nodes);
	rc |= http_route(app, ROUTER_GET, PREFIX "/nodes/{node_id}", get_node);
	rc |= http_route(app, ROUTER_DELETE, PREFIX "/nodes/{node_id}", delete_node);
	rc |= http_route(app, ROUTER_GET, PREFIX "/network/status", get_status);
	rc |= http_route(app, ROUTER_POST, PREFIX "/routes/find-optimal", post_find);
	rc |= http_route(app, ROUTER_GET, PREFIX "/routes/analytics", get_analytics);
	rc |= http_route(app, ROUTER_PUT, PREFIX "/routes/{route_id}/performance", put_performance);
	rc |= http_route(app, ROUTER_POST, ADMIN_PREFIX "/nodes/{node_id}/reputation", post_admin_reputation);
	return rc ? -1 : 0;
}
