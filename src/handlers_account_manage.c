/* handlers_account_manage.c - what needs the password again (user-interactive
 * auth with m.login.password): deleting devices, changing the password,
 * deactivating; plus /capabilities and /account/3pid. */
#include "handlers_account_manage.h"

#include <event2/http.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "aura_id.h"
#include "auth.h"
#include "fields.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"
#include "room.h"
#include "uia.h"
#include "workpool.h"

#define CLIENT "/_matrix/client/r0|v3"

/* What runs once the password checked out; consumes ctx. */
typedef void (*uia_action)(struct http_req *req, void *ctx, const char *new_hash);

struct uia_job {
	struct http_req *req;
	char *password;
	char *new_password; /* hashed in the same pool job, for /account/password */
	struct accounts_login_info info;
	char new_hash[ACCOUNTS_HASH_STR_MAX];
	int new_hash_rc;
	bool ok;
	uia_action action;
	void *ctx;
	char session[UIA_SESSION_ID_LEN + 1]; /* "" when the request named no known session */
};

static void uia_job_free(struct uia_job *j)
{
	accounts_secret_free(j->password);
	accounts_secret_free(j->new_password);
	sodium_memzero(j, sizeof(*j));
	free(j);
}

/* The operation a UI-auth session is for: method and path, and the user.
 * A session stays bound to it (spec: the client may not switch operations
 * part-way through a session). New reference. */
static json_t *uia_operation(struct http_req *req)
{
	const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req->ev));
	return json_pack("{s:I, s:s, s:s}", "method", (json_int_t)req->method, "path", path ? path : "", "user_id",
			 req->user_id);
}

/* 401 with the flows, in session when given (a known one), else a new
 * session bound to this operation. */
static void reply_flows(struct http_req *req, const char *errcode, const char *error, const char *known_session)
{
	char session[UIA_SESSION_ID_LEN + 1] = "";
	if (known_session) {
		snprintf(session, sizeof(session), "%s", known_session);
	} else {
		json_t *op = uia_operation(req);
		if (!op || uia_session_create(req->app->uia, op, NULL, http_now_ms(), session) < 0) {
			json_decref(op);
			http_reply_error(req, 500, "M_UNKNOWN", "cannot start an authentication session");
			return;
		}
		json_decref(op);
	}
	json_t *o = json_pack("{s:[{s:[s]}], s:{}, s:[], s:s}", "flows", "stages", "m.login.password", "params",
			      "completed", "session", session);
	if (o && errcode) {
		json_object_set_new(o, "errcode", json_string(errcode));
		json_object_set_new(o, "error", json_string(error));
	}
	http_reply_json(req, 401, o);
}

static void uia_work(void *arg)
{
	struct uia_job *j = arg;
	j->ok = accounts_password_verify(j->info.has_password ? j->info.password_hash : NULL, j->password);
	if (j->ok && j->new_password)
		j->new_hash_rc = accounts_password_hash(&j->req->app->cfg, j->new_password, j->new_hash);
}

static void uia_done(void *arg)
{
	struct uia_job *j = arg;
	if (!j->ok) {
		json_decref(j->ctx);
		reply_flows(j->req, "M_FORBIDDEN", "Invalid password", j->session[0] ? j->session : NULL);
	} else if (j->new_password && j->new_hash_rc < 0) {
		json_decref(j->ctx);
		http_reply_error(j->req, 500, "M_UNKNOWN", "cannot hash the password");
	} else {
		j->action(j->req, j->ctx, j->new_password ? j->new_hash : NULL);
	}
	uia_job_free(j);
}

/* The user the auth dict names, as a full user ID (the requester when it
 * names none), or -1 when replied. */
static int uia_user(struct http_req *req, json_t *auth, char *out, size_t outlen)
{
	const char *user = NULL;
	if (fields_user_identifier(req, auth, false, &user) < 0)
		return -1;
	if (!user) {
		snprintf(out, outlen, "%s", req->user_id);
		return 0;
	}
	if (accounts_login_user_id(user, req->app->cfg.server_name, out, outlen) < 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "identifier does not name this account");
		return -1;
	}
	return 0;
}

/* Check the password in body.auth, then run action(req, ctx) on this
 * worker. ctx is a json_t the action owns (decref'd here on failure).
 * new_password, when given, is hashed in the same pool job. */
static void uia_password(struct http_req *req, json_t *body, const char *new_password, uia_action action, json_t *ctx)
{
	json_t *auth = body ? json_object_get(body, "auth") : NULL;
	const char *type = NULL, *password = NULL;
	char user_id[ACCOUNTS_USER_ID_MAX + 1];
	struct al_error err = {0};
	struct uia_job *j = NULL;
	const char *session = NULL;
	bool known = false;
	if (json_is_object(auth) && fields_string(req, auth, "session", false, 64, 0, &session) < 0)
		goto fail;
	if (session) {
		/* A session of ours must be continued with the operation it began. */
		struct uia_session_view v;
		if (uia_session_get(req->app->uia, session, http_now_ms(), &v) == 0) {
			json_t *op = uia_operation(req);
			bool same = op && json_equal(op, v.params);
			json_decref(op);
			json_decref(v.params);
			accounts_secret_free(v.password);
			if (!same) {
				http_reply_error(
					req, 403, "M_FORBIDDEN",
					"Requested operation has changed during the UI authentication session");
				goto fail;
			}
			known = true;
		}
	}
	if (!json_is_object(auth) || !json_object_get(auth, "type")) {
		reply_flows(req, NULL, NULL, known ? session : NULL);
		goto fail;
	}
	if (fields_string(req, auth, "type", true, 64, 0, &type) < 0)
		goto fail;
	if (strcmp(type, "m.login.password") != 0) {
		reply_flows(req, "M_UNRECOGNIZED", "Only m.login.password is offered", known ? session : NULL);
		goto fail;
	}
	if (uia_user(req, auth, user_id, sizeof(user_id)) < 0 ||
	    fields_string(req, auth, "password", true, ACCOUNTS_PASSWORD_MAX, 0, &password) < 0)
		goto fail;
	if (strcmp(user_id, req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "auth must be for the account making the request");
		goto fail;
	}
	j = calloc(1, sizeof(*j));
	if (!j || !(j->password = strdup(password)) || (new_password && !(j->new_password = strdup(new_password)))) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	j->req = req;
	j->action = action;
	j->ctx = ctx;
	if (known)
		snprintf(j->session, sizeof(j->session), "%s", session);
	if (accounts_login_lookup(&req->worker->db, user_id, &j->info, &err) < 0) {
		http_reply_al_error(req, &err);
		goto fail;
	}
	if (workpool_submit(req->app->workpool, req->worker->base, uia_work, uia_done, j) < 0) {
		http_reply_error(req, 503, "M_UNKNOWN", "Server busy, try again");
		goto fail;
	}
	return;
fail:
	if (j)
		uia_job_free(j);
	json_decref(ctx);
}

/* The body, which may be absent (then NULL with nothing replied), or -1
 * when it is present but unusable (replied). */
static int optional_body(struct http_req *req, json_t **out)
{
	size_t len = 0;
	*out = NULL;
	if (!http_req_body_bytes(req, &len))
		return 0;
	struct al_error err = {0};
	*out = http_req_json_body(req, &err);
	if (!*out) {
		http_reply_al_error(req, &err);
		return -1;
	}
	return 0;
}

/* ---- devices ---- */

static void delete_devices_action(struct http_req *req, void *ctx, const char *unused)
{
	json_t *ids = ctx;
	struct al_error err = {0};
	if (accounts_devices_delete(&req->worker->db, req->user_id, ids, &err) < 0) {
		http_reply_al_error(req, &err);
	} else {
		size_t i;
		json_t *id;
		json_array_foreach(ids, i, id) auth_forget_user(req->app, req->user_id, json_string_value(id));
		log_info("accounts", "deleted devices user_id=%s count=%zu", req->user_id, json_array_size(ids));
		http_reply_raw(req, 200, "{}", 2);
	}
	json_decref(ids);
}

static void delete_device(struct http_req *req)
{
	json_t *body;
	if (auth_require(req) < 0 || ratelimit_check(req, "devices") < 0 || optional_body(req, &body) < 0)
		return;
	if (!accounts_device_id_valid(req->params[0])) {
		http_reply_error(req, 404, "M_NOT_FOUND", "Unknown device");
		return;
	}
	uia_password(req, body, NULL, delete_devices_action, json_pack("[s]", req->params[0]));
}

#define MAX_DEVICES_PER_DELETE 1000

static void post_delete_devices(struct http_req *req)
{
	json_t *body;
	if (auth_require(req) < 0 || ratelimit_check(req, "devices") < 0 || optional_body(req, &body) < 0)
		return;
	json_t *ids = body ? json_object_get(body, "devices") : NULL;
	if (!json_is_array(ids)) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "devices must be an array of device IDs");
		return;
	}
	if (json_array_size(ids) > MAX_DEVICES_PER_DELETE) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "at most %d devices at once", MAX_DEVICES_PER_DELETE);
		return;
	}
	size_t i;
	json_t *id;
	json_array_foreach(ids, i, id)
	{
		if (!json_is_string(id) || !accounts_device_id_valid(json_string_value(id))) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "devices[%zu] is not a device ID", i);
			return;
		}
	}
	uia_password(req, body, NULL, delete_devices_action, json_incref(ids));
}

/* ---- password and deactivation ---- */

static void password_action(struct http_req *req, void *ctx, const char *new_hash)
{
	bool logout_others = json_is_true((json_t *)ctx);
	json_decref(ctx);
	struct al_error err = {0};
	if (accounts_set_password(&req->worker->db, req->user_id, new_hash, req->device_id, logout_others, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (logout_others)
		auth_forget_user(req->app, req->user_id, NULL);
	log_info("accounts", "password changed user_id=%s logout_others=%d", req->user_id, logout_others);
	http_reply_raw(req, 200, "{}", 2);
}

static void post_password(struct http_req *req)
{
	json_t *body;
	if (auth_require(req) < 0 || ratelimit_check(req, "password") < 0 || optional_body(req, &body) < 0)
		return;
	const char *new_password = NULL;
	bool logout_devices = true;
	if (body && (fields_string(req, body, "new_password", false, ACCOUNTS_PASSWORD_MAX, 0, &new_password) < 0 ||
		     fields_bool(req, body, "logout_devices", &logout_devices) < 0))
		return;
	if (!new_password && body && json_object_get(body, "auth")) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "Missing parameter: new_password");
		return;
	}
	if (new_password && !*new_password) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "new_password must not be empty");
		return;
	}
	uia_password(req, body, new_password ? new_password : "", password_action, json_boolean(logout_devices));
}

static void deactivate_action(struct http_req *req, void *ctx, const char *unused)
{
	bool erase = json_is_true((json_t *)ctx);
	json_decref(ctx);
	struct al_error err = {0};
	if (accounts_deactivate(&req->worker->db, req->user_id, &err) < 0 ||
	    (erase && accounts_erase(&req->worker->db, req->user_id, &err) < 0)) {
		http_reply_al_error(req, &err);
		return;
	}
	auth_forget_user(req->app, req->user_id, NULL);
	aura_id_user_changed(req->app, &req->worker->db, req->user_id);
	log_info("accounts", "deactivated user_id=%s", req->user_id);
	http_reply_json(req, 200, json_pack("{s:s}", "id_server_unbind_result", "no-support"));
}

static void post_deactivate(struct http_req *req)
{
	json_t *body;
	if (auth_require(req) < 0 || ratelimit_check(req, "deactivate") < 0 || optional_body(req, &body) < 0)
		return;
	json_t *erase = json_object_get(body, "erase");
	if (erase && !json_is_boolean(erase)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "erase must be a boolean");
		return;
	}
	uia_password(req, body, NULL, deactivate_action, json_boolean(json_is_true(erase)));
}

/* ---- capabilities ---- */

static void get_capabilities(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	http_reply_json(req, 200,
			json_pack("{s:{s:{s:b}, s:{s:b}, s:{s:b}, s:{s:b}, s:{s:s, s:{s:s, s:s}}}}", "capabilities",
				  "m.change_password", "enabled", 1, "m.set_displayname", "enabled", 1,
				  "m.set_avatar_url", "enabled", 1, "m.3pid_changes", "enabled", 0, "m.room_versions",
				  "default", room_default_version(), "available", "10", "stable", "11", "stable"));
}

static void get_threepids(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	http_reply_raw(req, 200, "{\"threepids\":[]}", 16);
}

int account_manage_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_DELETE, CLIENT "/devices/{deviceId}", delete_device);
	rc |= http_route(app, ROUTER_POST, CLIENT "/delete_devices", post_delete_devices);
	rc |= http_route(app, ROUTER_POST, CLIENT "/account/password", post_password);
	rc |= http_route(app, ROUTER_POST, CLIENT "/account/deactivate", post_deactivate);
	rc |= http_route(app, ROUTER_GET, CLIENT "/capabilities", get_capabilities);
	rc |= http_route(app, ROUTER_GET, CLIENT "/account/3pid", get_threepids);
	return rc ? -1 : 0;
}
