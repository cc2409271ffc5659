#include "handlers_tags.h"

#include <string.h>

#include "auth.h"
#include "handlers_sync.h"
#include "http.h"
#include "room.h"
#include "tags.h"

#define CLIENT "/_matrix/client/r0|v3"

/* Own tags only, of a well-formed room ID. */
static bool allowed(struct http_req *req)
{
	if (auth_require(req) < 0)
		return false;
	if (strcmp(req->params[0], req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "You may only use your own tags");
		return false;
	}
	const char *room = req->params[1];
	if (!room || room[0] != '!' || !strchr(room, ':') || strlen(room) > ROOM_ID_MAX) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room ID");
		return false;
	}
	return true;
}

static void get_tags(struct http_req *req)
{
	if (!allowed(req))
		return;
	struct al_error err = {0};
	json_t *tags = tags_get(&req->worker->db, req->user_id, req->params[1], &err);
	if (!tags) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o}", "tags", tags));
}

static void change_tag(struct http_req *req, json_t *content)
{
	struct al_error err = {0};
	if (tags_put(&req->worker->db, req->user_id, req->params[1], req->params[2], content, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	sync_notify_user(req->app, req->user_id);
	http_reply_json(req, 200, json_object());
}

static void put_tag(struct http_req *req)
{
	if (!allowed(req))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	change_tag(req, body);
}

static void delete_tag(struct http_req *req)
{
	if (allowed(req))
		change_tag(req, NULL);
}

int tags_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/user/{userId}/rooms/{roomId}/tags", get_tags);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/user/{userId}/rooms/{roomId}/tags/{tag}", put_tag);
	rc |= http_route(app, ROUTER_DELETE, CLIENT "/user/{userId}/rooms/{roomId}/tags/{tag}", delete_tag);
	return rc ? -1 : 0;
}
