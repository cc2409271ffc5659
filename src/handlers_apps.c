#include "handlers_apps.h"

#include "apps.h"
#include "auth.h"
#include "http.h"
#include "ratelimit.h"

#define PREFIX "/_auralink/client/v1"

static int guard(struct http_req *req, const char *action)
{
	if (auth_require(req) < 0)
		return -1;
	return ratelimit_check(req, action);
}

static void post_apps(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	bool created = false;
	if (guard(req, "apps.connect") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body || apps_connect(&req->worker->db, req->user_id, body, &out, &created, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, created ? 201 : 200, out);
}

static void get_apps(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "apps.read") < 0)
		return;
	if (apps_list(&req->worker->db, req->user_id, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void delete_app(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "apps.revoke") < 0)
		return;
	if (apps_revoke(&req->worker->db, req->user_id, req->params[0], &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void get_prefs(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "notification_preferences.read") < 0)
		return;
	if (apps_prefs_get(&req->worker->db, req->user_id, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void put_prefs(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (guard(req, "notification_preferences.update") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body || apps_prefs_put(&req->worker->db, req->user_id, body, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

int apps_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_POST, PREFIX "/apps", post_apps);
	rc |= http_route(app, ROUTER_GET, PREFIX "/apps", get_apps);
	rc |= http_route(app, ROUTER_DELETE, PREFIX "/apps/{app_id}", delete_app);
	rc |= http_route(app, ROUTER_GET, PREFIX "/notification_preferences", get_prefs);
	rc |= http_route(app, ROUTER_PUT, PREFIX "/notification_preferences", put_prefs);
	return rc ? -1 : 0;
}
