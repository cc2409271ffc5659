#include "handlers_room_directory.h"

#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "federation.h"
#include "fields.h"
#include "http.h"
#include "room.h"
#include "room_directory.h"

#define CLIENT "/_matrix/client/r0|v3"

/* ?server= naming another server, or NULL. */
static const char *remote_server(struct http_req *req)
{
	const char *server = http_req_query(req, "server");
	return server && *server && !federation_is_local(req->app, server) ? server : NULL;
}

static void remote_done(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct http_req *req = arg;
	if (status == 200 && json_is_object(body) && json_is_array(json_object_get(body, "chunk")))
		http_reply_json(req, 200, json_incref(body));
	else if (status == 0)
		http_reply_error(req, 502, "M_UNKNOWN", "The server is unreachable: %s", err->message);
	else
		http_reply_error(req, status >= 400 && status < 500 ? status : 502,
				 status == 404 ? "M_NOT_FOUND" : "M_UNKNOWN", "The server's directory answered %d",
				 status);
}

static void reply_list(struct http_req *req, int limit, const char *since, const char *search)
{
	const char *server = remote_server(req);
	if (server) {
		if (federation_public_rooms(req->app, server, limit, since, search, req->worker->base, remote_done,
					    req) < 0)
			http_reply_error(req, 400, "M_INVALID_PARAM", "cannot ask %s", server);
		return;
	}
	struct al_error err = {0};
	http_reply_result(req, 200, room_directory_list(&req->worker->db, limit, since, search, &err), &err);
}

static void get_public_rooms(struct http_req *req)
{
	int limit = 0;
	const char *l = http_req_query(req, "limit");
	if (l) {
		char *end;
		long v = strtol(l, &end, 10);
		if (!*l || *end || v < 0) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "limit must be a non-negative integer");
			return;
		}
		limit = v > ROOM_DIRECTORY_MAX_LIMIT ? ROOM_DIRECTORY_MAX_LIMIT : (int)v;
	}
	reply_list(req, limit, http_req_query(req, "since"), NULL);
}

static void post_public_rooms(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *lim = json_object_get(body, "limit");
	if (lim && !json_is_null(lim) && (!json_is_integer(lim) || json_integer_value(lim) < 0)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "limit must be a non-negative integer");
		return;
	}
	json_int_t limit = json_integer_value(lim);
	json_t *filter = json_object_get(body, "filter");
	if (filter && !json_is_null(filter) && !json_is_object(filter)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "filter must be an object");
		return;
	}
	const char *since, *search;
	if (fields_string(req, body, "since", false, 64, 0, &since) < 0 ||
	    fields_string(req, filter, "generic_search_term", false, ROOM_DIRECTORY_SEARCH_MAX, 0, &search) < 0)
		return;
	reply_list(req, limit > ROOM_DIRECTORY_MAX_LIMIT ? ROOM_DIRECTORY_MAX_LIMIT : (int)limit, since, search);
}

static bool valid_room(struct http_req *req)
{
	const char *id = req->params[0];
	if (!id || id[0] != '!' || !strchr(id, ':') || strlen(id) > ROOM_ID_MAX) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room ID");
		return false;
	}
	return true;
}

static void get_visibility(struct http_req *req)
{
	if (!valid_room(req))
		return;
	struct al_error err = {0};
	bool pub = false;
	if (room_directory_get_visibility(&req->worker->db, req->params[0], &pub, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:s}", "visibility", pub ? "public" : "private"));
}

static void put_visibility(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room(req))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *vis;
	if (fields_string(req, body, "visibility", false, 16, 0, &vis) < 0)
		return;
	if (vis && strcmp(vis, "public") != 0 && strcmp(vis, "private") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "visibility must be public or private");
		return;
	}
	/* The spec's default visibility is public. */
	bool pub = !vis || strcmp(vis, "public") == 0;
	if (room_directory_set_visibility(&req->worker->db, req->params[0], req->user_id, pub, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_object());
}

int room_directory_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/publicRooms", get_public_rooms);
	rc |= http_route(app, ROUTER_POST, CLIENT "/publicRooms", post_public_rooms);
	rc |= http_route(app, ROUTER_GET, CLIENT "/directory/list/room/{roomId}", get_visibility);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/directory/list/room/{roomId}", put_visibility);
	return rc ? -1 : 0;
}
