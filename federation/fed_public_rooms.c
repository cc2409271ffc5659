/* fed_public_rooms.c - the public room directory over federation (spec
 * "Public Room Directory"): GET and POST /_matrix/federation/v1/publicRooms
 * answered from room_directory (the same list and paging as the client
 * API), and the outbound request a client's /publicRooms?server= makes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fed_internal.h"
#include "room_directory.h"

static int limit_of(const char *s)
{
	char *end;
	long v = s ? strtol(s, &end, 10) : 0;
	if (!s || !*s || *end || v < 0)
		return s ? -1 : 0;
	return v > ROOM_DIRECTORY_MAX_LIMIT ? ROOM_DIRECTORY_MAX_LIMIT : (int)v;
}

static void reply_list(struct http_req *req, int limit, const char *since, const char *search)
{
	struct al_error err = {0};
	json_t *out = room_directory_list(&req->worker->db, limit, since, search, &err);
	if (!out)
		http_reply_al_error(req, &err);
	else
		http_reply_json(req, 200, out);
}

static void get_authed(struct http_req *req)
{
	int limit = limit_of(http_req_query(req, "limit"));
	const char *since = http_req_query(req, "since");
	if (limit < 0 || (since && strlen(since) > 64)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad limit or since");
		return;
	}
	reply_list(req, limit, since, NULL);
}

static void post_authed(struct http_req *req)
{
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *lim = json_object_get(body, "limit"), *since = json_object_get(body, "since");
	json_t *filter = json_object_get(body, "filter");
	json_t *term = json_object_get(filter, "generic_search_term");
	if ((lim && !json_is_null(lim) && (!json_is_integer(lim) || json_integer_value(lim) < 0)) ||
	    (since && !json_is_null(since) && (!json_is_string(since) || strlen(json_string_value(since)) > 64)) ||
	    (filter && !json_is_null(filter) && !json_is_object(filter)) ||
	    (term && !json_is_null(term) &&
	     (!json_is_string(term) || strlen(json_string_value(term)) > ROOM_DIRECTORY_SEARCH_MAX))) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad limit, since or filter");
		return;
	}
	json_int_t l = json_integer_value(lim);
	reply_list(req, l > ROOM_DIRECTORY_MAX_LIMIT ? ROOM_DIRECTORY_MAX_LIMIT : (int)l, json_string_value(since),
		   json_string_value(term));
}

static void get_public_rooms(struct http_req *req)
{
	fed_auth_require(req, get_authed);
}

static void post_public_rooms(struct http_req *req)
{
	fed_auth_require(req, post_authed);
}

int fed_public_rooms_register(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/publicRooms", get_public_rooms);
	rc |= http_route(app, ROUTER_POST, "/_matrix/federation/v1/publicRooms", post_public_rooms);
	return rc ? -1 : 0;
}

/* ---- outbound ---- */

struct public_q {
	federation_json_cb cb;
	void *arg;
};

static void public_done(const struct fed_response *resp, void *arg)
{
	struct public_q *q = arg;
	q->cb(q->arg, resp->status, resp->body, &resp->err);
	free(q);
}

int federation_public_rooms(struct app *app, const char *server, int limit, const char *since, const char *search,
			    struct event_base *base, federation_json_cb cb, void *arg)
{
	struct federation *fed = fed_of(app);
	if (!fed || !server || strlen(server) > 255)
		return -1;
	json_t *body = json_object();
	if (limit > 0)
		json_object_set_new(body, "limit", json_integer(limit));
	if (since)
		json_object_set_new(body, "since", json_string(since));
	if (search)
		json_object_set_new(body, "filter", json_pack("{s:s}", "generic_search_term", search));
	struct public_q *q = malloc(sizeof(*q));
	if (!q) {
		json_decref(body);
		return -1;
	}
	q->cb = cb;
	q->arg = arg;
	struct fed_request rq = {.method = "POST",
				 .destination = server,
				 .path = "/_matrix/federation/v1/publicRooms",
				 .body = body,
				 .sign = true,
				 .timeout_ms = 10000};
	int rc = fed_client_submit(fed->fc, &rq, base, public_done, q);
	json_decref(body);
	if (rc < 0)
		free(q);
	return rc < 0 ? -1 : 0;
}
