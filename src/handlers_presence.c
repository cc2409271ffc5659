#include "handlers_presence.h"

#include <string.h>

#include "auth.h"
#include "fields.h"
#include "handlers_sync.h"
#include "http.h"
#include "presence.h"

#define CLIENT "/_matrix/client/r0|v3"

static void get_status(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *user_id = req->params[0];
	if (!user_id || user_id[0] != '@' || !strchr(user_id, ':') || strlen(user_id) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed user ID");
		return;
	}
	struct al_error err = {0};
	http_reply_result(req, 200, presence_get(&req->worker->db, req->user_id, user_id, http_now_ms(), &err), &err);
}

static void put_status(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	if (strcmp(req->params[0], req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "You can only set your own presence");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *state, *msg;
	if (fields_string(req, body, "presence", true, 16, 0, &state) < 0 ||
	    fields_string(req, body, "status_msg", false, PRESENCE_STATUS_MSG_MAX, 0, &msg) < 0)
		return;
	if (!presence_state_valid(state)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "presence must be online, unavailable or offline");
		return;
	}
	if (presence_set(&req->worker->db, req->user_id, state, msg, http_now_ms(), &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	sync_notify(req->app);
	http_reply_json(req, 200, json_object());
}

int presence_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/presence/{userId}/status", get_status);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/presence/{userId}/status", put_status);
	return rc ? -1 : 0;
}
