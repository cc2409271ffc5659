#include "handlers_pushers.h"

#include "auth.h"
#include "http.h"
#include "pushers.h"

#define CLIENT "/_matrix/client/r0|v3"

static void get_pushers(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct al_error err = {0};
	http_reply_result(req, 200, pushers_list(&req->worker->db, req->user_id, &err), &err);
}

static void post_pushers_set(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body || pushers_set(&req->worker->db, req->user_id, req->device_id, body, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_object());
}

int pushers_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/pushers", get_pushers);
	rc |= http_route(app, ROUTER_POST, CLIENT "/pushers/set", post_pushers_set);
	return rc ? -1 : 0;
}
