#include "handlers_aura_id.h"

#include <stdlib.h>
#include <string.h>

#include "aura_id.h"
#include "auth.h"
#include "federation.h"
#include "http.h"
#include "ratelimit.h"

#define PREFIX "/_auralink/client/v1/aura_id"

/* auth_require + ratelimit_check; -1 when a reply was already sent. */
static int guard(struct http_req *req, const char *action)
{
	if (auth_require(req) < 0)
		return -1;
	return ratelimit_check(req, action);
}

/* Optional string field: NULL when absent; -1 (reply sent) when not a string. */
static int opt_string(struct http_req *req, json_t *body, const char *name, const char **out)
{
	json_t *v = json_object_get(body, name);
	*out = NULL;
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "%s: a string", name);
		return -1;
	}
	*out = json_string_value(v);
	return 0;
}

static void post_aura_id(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "aura_id.create") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *username, *privacy;
	if (opt_string(req, body, "username", &username) < 0 ||
	    opt_string(req, body, "privacy_level", &privacy) < 0)
		return;
	if (!username) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "username is required");
		return;
	}
	json_t *fed = json_object_get(body, "federation_enabled");
	if (fed && !json_is_boolean(fed)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "federation_enabled: a boolean");
		return;
	}
	const char *allowed[] = {"username", "privacy_level", "federation_enabled"};
	const char *key;
	json_t *v;
	json_object_foreach(body, key, v)
	{
		bool ok = false;
		for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
			ok = ok || strcmp(key, allowed[i]) == 0;
		if (!ok) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "unknown field '%.64s'", key);
			return;
		}
	}
	if (aura_id_create(req->app, &req->worker->db, req->user_id, username, privacy,
			   fed ? json_is_true(fed) : -1, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 201, out);
}

static void get_me(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "aura_id.read") < 0)
		return;
	if (aura_id_get_own(&req->worker->db, req->user_id, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void patch_me(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "aura_id.update") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body || aura_id_update(req->app, &req->worker->db, req->user_id, body, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void post_verify(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "aura_id.verify") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *method, *code;
	if (opt_string(req, body, "method", &method) < 0 || opt_string(req, body, "code", &code) < 0)
		return;
	if (!method) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "method is required (phone, email or kyc)");
		return;
	}
	int rc = code ? aura_id_verify_confirm(req->app, &req->worker->db, req->user_id, method, code,
					       &out, &err)
		      : aura_id_verify_request(req->app, &req->worker->db, req->user_id, method, &out,
					       &err);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void get_available(struct http_req *req)
{
	struct al_error err = {0};
	if (guard(req, "aura_id.available") < 0)
		return;
	const char *username = http_req_query(req, "username");
	if (!username) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "username is required");
		return;
	}
	bool available = false;
	if (aura_id_available(&req->worker->db, username, &available, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:b}", "available", available));
}

static int parse_limit(const char *s, int def)
{
	if (!s)
		return def;
	if (!s[0] || strlen(s) > 4)
		return -1;
	int v = 0;
	for (const char *p = s; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		v = v * 10 + (*p - '0');
	}
	return v;
}

static void get_search(struct http_req *req)
{
	struct al_error err = {0};
	json_t *results = NULL;
	if (guard(req, "aura_id.search") < 0)
		return;
	const char *q = http_req_query(req, "q");
	if (!q) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "q is required");
		return;
	}
	int limit = parse_limit(http_req_query(req, "limit"), AURA_ID_SEARCH_DEFAULT_LIMIT);
	if (aura_id_search(req->app, &req->worker->db, q, limit, &results, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	size_t n = json_array_size(results);
	http_reply_json(req, 200, json_pack("{s:o, s:I}", "results", results, "count", (json_int_t)n));
}

/* The answer of federation for a handle hosted elsewhere, on the worker's
 * loop: the verified record (with the answering `server`), or 404 when the
 * owner's server does not know it or refuses to share it with us (the same
 * answer as a hidden local AuraID), 502 when nobody could be asked. */
static void remote_resolved(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct http_req *req = arg;
	if (status == 200 && json_is_object(body)) {
		json_t *out = json_pack("{s:O*, s:O*, s:O*, s:O*, s:b, s:b, s:s, s:O*, s:O*}", "aura_id",
					json_object_get(body, "aura_id"), "user_id",
					json_object_get(body, "user_id"), "display_name",
					json_object_get(body, "display_name"), "avatar_url",
					json_object_get(body, "avatar_url"), "is_verified",
					json_is_true(json_object_get(body, "is_verified")), "is_online",
					json_is_true(json_object_get(body, "is_online")), "privacy_level",
					"public", "server", json_object_get(body, "server"), "attestation",
					json_object_get(body, "attestation"));
		if (out)
			http_reply_json(req, 200, out);
		else
			http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
	} else if (status == 404 || status == 403) {
		http_reply_error(req, 404, "M_NOT_FOUND", "no such AuraID");
	} else {
		http_reply_error(req, 502, "M_UNKNOWN", "no server could resolve this AuraID: %s",
				 err && err->message[0] ? err->message : "error");
	}
}

static void get_resolve(struct http_req *req)
{
	struct al_error err = {0};
	if (guard(req, "aura_id.resolve") < 0)
		return;
	size_t len = 0;
	bool unknown = false;
	char *json = aura_id_resolve(req->app, &req->worker->db, req->user_id, req->params[0], &len,
				     &unknown, &err);
	if (json) {
		http_reply_raw(req, 200, json, len);
		free(json);
		return;
	}
	/* Not hosted here at all: its owner's server answers (later, on this
	 * worker's loop). Hidden, private or suspended AuraIDs of this server
	 * are never asked about elsewhere. */
	if (unknown && federation_resolve_aura_id(req->app, req->params[0], req->worker->base,
						  remote_resolved, req) == 0)
		return;
	http_reply_al_error(req, &err);
}

int aura_id_handlers_start(struct app *app)
{
	if (aura_id_start(app) < 0)
		return -1;
	int rc = 0;
	rc |= http_route(app, ROUTER_POST, PREFIX, post_aura_id);
	rc |= http_route(app, ROUTER_GET, PREFIX "/me", get_me);
	rc |= http_route(app, ROUTER_PATCH, PREFIX "/me", patch_me);
	rc |= http_route(app, ROUTER_POST, PREFIX "/me/verify", post_verify);
	rc |= http_route(app, ROUTER_GET, PREFIX "/available", get_available);
	rc |= http_route(app, ROUTER_GET, PREFIX "/search", get_search);
	rc |= http_route(app, ROUTER_GET, PREFIX "/resolve/{aura_id}", get_resolve);
	return rc ? -1 : 0;
}
