/* fed_devices.c - the end-to-end device endpoints other servers call (spec
 * "End-to-End Encryption" over federation), answered validly without
 * device keys, which this server does not store: GET /user/devices/{userId}
 * lists a local user's devices (IDs and display names, no keys), POST
 * /user/keys/query answers every asked local user with no device keys,
 * POST /user/keys/claim with no one-time keys. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fed_internal.h"

#define KEYS_MAX_USERS 1000

static void devices_authed(struct http_req *req)
{
	const char *user_id = req->params[0];
	PGresult *r = fed_local_user_rows(
		req, user_id,
		"SELECT d.device_id, d.display_name FROM users u LEFT JOIN devices d USING (user_id) "
		"WHERE u.user_id = $1 AND u.deactivated_at IS NULL ORDER BY d.device_id",
		"Unknown user");
	if (!r)
		return;
	json_t *list = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, 0))
			continue;
		json_t *d = json_pack("{s:s}", "device_id", PQgetvalue(r, i, 0));
		if (!PQgetisnull(r, i, 1))
			json_object_set_new(d, "device_display_name", json_string(PQgetvalue(r, i, 1)));
		json_array_append_new(list, d);
	}
	PQclear(r);
	http_reply_json(req, 200, json_pack("{s:s, s:i, s:o}", "user_id", user_id, "stream_id", 0, "devices", list));
}

static void keys_query_authed(struct http_req *req)
{
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *dk = json_object_get(body, "device_keys");
	if (!json_is_object(dk) || json_object_size(dk) > KEYS_MAX_USERS) {
		http_reply_error(req, 400, "M_BAD_JSON", "device_keys must be an object of at most %d users",
				 KEYS_MAX_USERS);
		return;
	}
	json_t *out = json_object();
	const char *user_id;
	json_t *v;
	json_object_foreach(dk, user_id, v)
	{
		if (fed_user_is_local(req->app, user_id))
			json_object_set_new(out, user_id, json_object());
	}
	http_reply_json(req, 200, json_pack("{s:o}", "device_keys", out));
}

static void keys_claim_authed(struct http_req *req)
{
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!json_is_object(json_object_get(body, "one_time_keys"))) {
		http_reply_error(req, 400, "M_BAD_JSON", "one_time_keys must be an object");
		return;
	}
	http_reply_json(req, 200, json_pack("{s:{}}", "one_time_keys"));
}

static void get_devices(struct http_req *req)
{
	fed_auth_require(req, devices_authed);
}

static void post_keys_query(struct http_req *req)
{
	fed_auth_require(req, keys_query_authed);
}

static void post_keys_claim(struct http_req *req)
{
	fed_auth_require(req, keys_claim_authed);
}

int fed_devices_register(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/user/devices/{userId}", get_devices);
	rc |= http_route(app, ROUTER_POST, "/_matrix/federation/v1/user/keys/query", post_keys_query);
	rc |= http_route(app, ROUTER_POST, "/_matrix/federation/v1/user/keys/claim", post_keys_claim);
	return rc ? -1 : 0;
}
