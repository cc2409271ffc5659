#include "handlers_account.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "aura_id.h"
#include "auth.h"
#include "federation.h"
#include "fields.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"
#include "uia.h"
#include "workpool.h"

#define CLIENT "/_matrix/client/r0|v3"

static char *dup_or_null(const char *s)
{
	return s ? strdup(s) : NULL;
}

static void reply_busy(struct http_req *req)
{
	http_reply_error(req, 503, "M_UNKNOWN", "Server busy, try again");
}

static json_t *session_json(const struct al_config *cfg, const struct accounts_session *s)
{
	json_t *o = json_pack("{s:s, s:s}", "user_id", s->user_id, "home_server", cfg->server_name);
	if (o && s->access_token) {
		json_object_set_new(o, "access_token", json_string(s->access_token));
		json_object_set_new(o, "device_id", json_string(s->device_id));
	}
	return o;
}

/* ---- register ---- */

static const char register_flows[] = "{\"flows\":[{\"stages\":[\"m.login.dummy\"]}],\"params\":{}}";

struct reg_job {
	struct http_req *req;
	char user_id[ACCOUNTS_USER_ID_MAX + 1];
	char localpart[ACCOUNTS_USER_ID_MAX + 1];
	char device_id[ACCOUNTS_DEVICE_ID_MAX + 1];
	char *password;
	char *display_name;
	bool is_guest;
	bool login;
	int hash_rc;
	char hash[ACCOUNTS_HASH_STR_MAX];
	char session[UIA_SESSION_ID_LEN + 1];
};

static void reg_job_free(struct reg_job *j)
{
	accounts_secret_free(j->password);
	free(j->display_name);
	sodium_memzero(j->hash, sizeof(j->hash));
	free(j);
}

static void reg_work(void *arg)
{
	struct reg_job *j = arg;
	if (j->password)
		j->hash_rc = accounts_password_hash(&j->req->app->cfg, j->password, j->hash);
}

static void reg_done(void *arg)
{
	struct reg_job *j = arg;
	struct http_req *req = j->req;
	struct al_error err = {0};
	struct accounts_session s;
	if (j->hash_rc < 0) {
		http_reply_error(req, 500, "M_UNKNOWN", "cannot hash the password");
		goto out;
	}
	struct accounts_new_user u = {
		.user_id = j->user_id,
		.localpart = j->localpart,
		.password_hash = j->password ? j->hash : NULL,
		.is_guest = j->is_guest,
		.login = j->login,
		.device_id = j->device_id[0] ? j->device_id : NULL,
		.device_display_name = j->display_name,
	};
	if (accounts_register(&req->worker->db, &u, &s, &err) < 0) {
		http_reply_al_error(req, &err);
		goto out;
	}
	if (j->session[0])
		uia_session_complete(req->app->uia, j->session, s.user_id);
	log_info("accounts", "registered user_id=%s guest=%d", s.user_id, j->is_guest);
	http_reply_json(req, 200, session_json(&req->app->cfg, &s));
	accounts_session_clear(&s);
out:
	reg_job_free(j);
}

/* 401 with the flows; session is the UIA session to continue. */
static void reply_uia(struct http_req *req, const char *session, const char *errcode, const char *error)
{
	json_t *o = json_loads(register_flows, 0, NULL);
	if (o) {
		json_object_set_new(o, "session", json_string(session));
		if (errcode) {
			json_object_set_new(o, "errcode", json_string(errcode));
			json_object_set_new(o, "error", json_string(error));
		}
	}
	http_reply_json(req, 401, o);
}

/* What /register remembers of the request that opened a UIA session. */
static const char *const session_params[] = {"username", "device_id", "initial_device_display_name", "inhibit_login"};

/* First request without auth: open a session remembering its parameters
 * (the password only in memory) and answer 401 with the flows. */
static void start_session(struct http_req *req, json_t *body, const char *password)
{
	json_t *params = json_object();
	for (size_t i = 0; params && i < sizeof(session_params) / sizeof(session_params[0]); i++) {
		json_t *v = json_object_get(body, session_params[i]);
		if (v)
			json_object_set(params, session_params[i], v);
	}
	char id[UIA_SESSION_ID_LEN + 1];
	if (!params || uia_session_create(req->app->uia, params, password, http_now_ms(), id) < 0) {
		json_decref(params);
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	json_decref(params);
	reply_uia(req, id, NULL, NULL);
}

/* A request continuing a session: what it lacks comes from the session.
 * completed gets the user a finished session created ("" otherwise). An
 * unknown or expired session is treated as none. -1 when replied. */
static int resume_session(struct http_req *req, json_t *body, const char *session, char *completed, size_t len)
{
	struct uia_session_view v;
	if (uia_session_get(req->app->uia, session, http_now_ms(), &v) < 0)
		return 0;
	const char *key;
	json_t *value;
	json_object_foreach(v.params, key, value)
	{
		if (!json_object_get(body, key))
			json_object_set(body, key, value);
	}
	int rc = 0;
	if (v.password && !json_object_get(body, "password") &&
	    json_object_set_new(body, "password", json_string(v.password)) < 0)
		rc = -1;
	snprintf(completed, len, "%s", v.completed_user_id);
	json_decref(v.params);
	accounts_secret_free(v.password);
	if (rc < 0)
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
	return rc;
}

/* A completed session asked again: the same user, logged in anew. */
static void login_again(struct http_req *req, const char *user_id, const char *device_id, const char *dname,
			bool inhibit)
{
	struct al_error err = {0};
	struct accounts_session s = {0};
	if (inhibit) {
		snprintf(s.user_id, sizeof(s.user_id), "%s", user_id);
	} else if (accounts_login(&req->worker->db, user_id, device_id, dname, &s, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, session_json(&req->app->cfg, &s));
	accounts_session_clear(&s);
}

static void get_register(struct http_req *req)
{
	http_reply_raw(req, 200, register_flows, sizeof(register_flows) - 1);
}

/* 0 free, -1 replied (taken or error). */
static int check_available(struct http_req *req, const char *user_id)
{
	struct al_error err = {0};
	int exists = accounts_user_exists(&req->worker->db, user_id, &err);
	if (exists < 0) {
		http_reply_al_error(req, &err);
		return -1;
	}
	if (exists) {
		http_reply_error(req, 400, "M_USER_IN_USE", "User ID already taken.");
		return -1;
	}
	return 0;
}

static void post_register(struct http_req *req)
{
	const struct al_config *cfg = &req->app->cfg;
	if (ratelimit_check(req, "register") < 0)
		return;
	const char *kind = http_req_query(req, "kind");
	bool guest = false;
	if (kind && strcmp(kind, "guest") == 0)
		guest = true;
	else if (kind && strcmp(kind, "user") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "kind must be user or guest");
		return;
	}
	if (guest && !cfg->allow_guests) {
		http_reply_error(req, 403, "M_GUEST_ACCESS_FORBIDDEN", "Guest access is disabled");
		return;
	}
	if (!guest && !cfg->registration_enabled) {
		http_reply_error(req, 403, "M_FORBIDDEN", "Registration has been disabled");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *username, *password, *device_id, *dname, *session = NULL;
	bool inhibit = false;
	json_t *auth = json_object_get(body, "auth");
	if (auth && !json_is_null(auth) && !json_is_object(auth)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "auth must be an object");
		return;
	}
	if (auth && json_is_object(auth) && fields_string(req, auth, "session", false, 255, 0, &session) < 0)
		return;
	char completed[ACCOUNTS_USER_ID_MAX + 1] = "";
	if (session && resume_session(req, body, session, completed, sizeof(completed)) < 0)
		return;
	if (fields_string(req, body, "username", false, 1024, 0, &username) < 0 ||
	    fields_string(req, body, "password", false, ACCOUNTS_PASSWORD_MAX, 0, &password) < 0 ||
	    fields_string(req, body, "device_id", false, ACCOUNTS_DEVICE_ID_MAX, 0, &device_id) < 0 ||
	    fields_string(req, body, "initial_device_display_name", false, ACCOUNTS_NAME_MAX_BYTES,
			  ACCOUNTS_NAME_MAX_CHARS, &dname) < 0 ||
	    fields_bool(req, body, "inhibit_login", &inhibit) < 0)
		return;
	if (device_id && !accounts_device_id_valid(device_id)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "device_id is not a valid device ID");
		return;
	}
	if (completed[0]) {
		login_again(req, completed, device_id, dname, inhibit);
		return;
	}

	struct reg_job *j = calloc(1, sizeof(*j));
	if (!j) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	j->req = req;
	j->is_guest = guest;
	j->login = !inhibit;
	if (username && !guest) {
		if (accounts_localpart_lower(username, j->localpart, sizeof(j->localpart)) < 0) {
			http_reply_error(req, 400, "M_INVALID_USERNAME", "User ID is too long");
			goto fail;
		}
	} else {
		accounts_generate_localpart(j->localpart);
	}
	if (accounts_user_id(j->localpart, cfg->server_name, j->user_id, sizeof(j->user_id), &err) < 0) {
		http_reply_al_error(req, &err);
		goto fail;
	}
	if (username && !guest && check_available(req, j->user_id) < 0)
		goto fail;
	if (!guest) {
		const char *type = NULL;
		json_t *t = auth && json_is_object(auth) ? json_object_get(auth, "type") : NULL;
		if (!auth || json_is_null(auth)) {
			start_session(req, body, password);
			goto fail;
		}
		type = json_is_string(t) ? json_string_value(t) : NULL;
		if (!type || strcmp(type, "m.login.dummy") != 0) {
			reply_uia(req, session ? session : "", "M_FORBIDDEN",
				  "Unsupported authentication type; use m.login.dummy");
			goto fail;
		}
	}
	if (device_id)
		snprintf(j->device_id, sizeof(j->device_id), "%s", device_id);
	if ((!guest && password && !(j->password = strdup(password))) ||
	    (dname && !(j->display_name = dup_or_null(dname)))) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	if (session)
		snprintf(j->session, sizeof(j->session), "%s", session);
	if (workpool_submit(req->app->workpool, req->worker->base, reg_work, reg_done, j) < 0) {
		reply_busy(req);
		goto fail;
	}
	return;
fail:
	reg_job_free(j);
}

static void get_register_available(struct http_req *req)
{
	if (ratelimit_check(req, "register") < 0)
		return;
	const char *username = http_req_query(req, "username");
	if (!username || !*username) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "Missing parameter: username");
		return;
	}
	char user_id[ACCOUNTS_USER_ID_MAX + 1];
	struct al_error err = {0};
	if (strlen(username) > ACCOUNTS_USER_ID_MAX ||
	    accounts_user_id(username, req->app->cfg.server_name, user_id, sizeof(user_id), &err) < 0) {
		http_reply_error(req, 400, "M_INVALID_USERNAME",
				 "User ID may only contain a-z, 0-9, and . _ = - / + and be at most 255 bytes");
		return;
	}
	if (check_available(req, user_id) < 0)
		return;
	http_reply_json(req, 200, json_pack("{s:b}", "available", 1));
}

/* ---- login ---- */

static const char login_flows[] = "{\"flows\":[{\"type\":\"m.login.password\"}]}";

struct login_job {
	struct http_req *req;
	char user_id[ACCOUNTS_USER_ID_MAX + 1]; /* empty: no such user */
	char device_id[ACCOUNTS_DEVICE_ID_MAX + 1];
	char *display_name;
	char *password;
	struct accounts_login_info info;
	bool ok;
};

static void login_job_free(struct login_job *j)
{
	accounts_secret_free(j->password);
	free(j->display_name);
	sodium_memzero(&j->info, sizeof(j->info));
	free(j);
}

static void login_work(void *arg)
{
	struct login_job *j = arg;
	/* Unknown users and users without a password are verified against
	 * the dummy hash: the same work, and always false. */
	j->ok = accounts_password_verify(j->info.has_password ? j->info.password_hash : NULL, j->password);
}

static void login_done(void *arg)
{
	struct login_job *j = arg;
	struct http_req *req = j->req;
	struct al_error err = {0};
	struct accounts_session s;
	if (!j->ok) {
		http_reply_error(req, 403, "M_FORBIDDEN", "Invalid username or password");
		goto out;
	}
	if (j->info.deactivated) {
		http_reply_error(req, 403, "M_USER_DEACTIVATED", "This account has been deactivated");
		goto out;
	}
	if (j->info.suspended) {
		http_reply_error(req, 403, "M_USER_SUSPENDED", "This account has been suspended");
		goto out;
	}
	if (accounts_login(&req->worker->db, j->user_id, j->device_id[0] ? j->device_id : NULL, j->display_name, &s,
			   &err) < 0) {
		http_reply_al_error(req, &err);
		goto out;
	}
	if (s.device_reused)
		auth_forget_user(req->app, s.user_id, s.device_id);
	json_t *o = session_json(&req->app->cfg, &s);
	if (o && req->app->cfg.public_baseurl[0])
		json_object_set_new(o, "well_known",
				    json_pack("{s:{s:s}}", "m.homeserver", "base_url", req->app->cfg.public_baseurl));
	log_info("accounts", "login user_id=%s device_id=%s", s.user_id, s.device_id);
	http_reply_json(req, 200, o);
	accounts_session_clear(&s);
out:
	login_job_free(j);
}

static void get_login(struct http_req *req)
{
	http_reply_raw(req, 200, login_flows, sizeof(login_flows) - 1);
}

static void post_login(struct http_req *req)
{
	if (ratelimit_check(req, "login") < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *type, *user, *password, *device_id, *dname;
	if (fields_string(req, body, "type", true, 64, 0, &type) < 0)
		return;
	if (strcmp(type, "m.login.password") != 0) {
		http_reply_error(req, 400, "M_UNKNOWN", "Unknown login type");
		return;
	}
	if (fields_user_identifier(req, body, true, &user) < 0 ||
	    fields_string(req, body, "password", true, ACCOUNTS_PASSWORD_MAX, 0, &password) < 0 ||
	    fields_string(req, body, "device_id", false, ACCOUNTS_DEVICE_ID_MAX, 0, &device_id) < 0 ||
	    fields_string(req, body, "initial_device_display_name", false, ACCOUNTS_NAME_MAX_BYTES,
			  ACCOUNTS_NAME_MAX_CHARS, &dname) < 0)
		return;
	if (device_id && !accounts_device_id_valid(device_id)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "device_id is not a valid device ID");
		return;
	}
	struct login_job *j = calloc(1, sizeof(*j));
	if (!j) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	j->req = req;
	if (accounts_login_user_id(user, req->app->cfg.server_name, j->user_id, sizeof(j->user_id)) < 0)
		j->user_id[0] = '\0';
	if (j->user_id[0] && accounts_login_lookup(&req->worker->db, j->user_id, &j->info, &err) < 0) {
		http_reply_al_error(req, &err);
		goto fail;
	}
	if (device_id)
		snprintf(j->device_id, sizeof(j->device_id), "%s", device_id);
	if (!(j->password = strdup(password)) || (dname && !(j->display_name = strdup(dname)))) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	if (workpool_submit(req->app->workpool, req->worker->base, login_work, login_done, j) < 0) {
		reply_busy(req);
		goto fail;
	}
	return;
fail:
	login_job_free(j);
}

/* ---- sessions ---- */

static void post_logout(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "logout") < 0)
		return;
	struct al_error err = {0};
	if (accounts_logout_device(&req->worker->db, req->user_id, req->device_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	auth_forget_user(req->app, req->user_id, req->device_id);
	http_reply_raw(req, 200, "{}", 2);
}

static void post_logout_all(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "logout") < 0)
		return;
	struct al_error err = {0};
	if (accounts_logout_all(&req->worker->db, req->user_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	auth_forget_user(req->app, req->user_id, NULL);
	http_reply_raw(req, 200, "{}", 2);
}

static void get_whoami(struct http_req *req)
{
	bool guest = false;
	if (auth_require_ex(req, &guest) < 0 || ratelimit_check(req, "whoami") < 0)
		return;
	http_reply_json(
		req, 200,
		json_pack("{s:s, s:s, s:b}", "user_id", req->user_id, "device_id", req->device_id, "is_guest", guest));
}

/* ---- devices ---- */

static void get_devices(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "devices") < 0)
		return;
	struct al_error err = {0};
	http_reply_result(req, 200, accounts_devices_list(&req->worker->db, req->user_id, &err), &err);
}

static void get_device(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "devices") < 0)
		return;
	struct al_error err = {0};
	http_reply_result(req, 200, accounts_device_get(&req->worker->db, req->user_id, req->params[0], &err), &err);
}

static void put_device(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "devices") < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *name;
	if (fields_string(req, body, "display_name", false, ACCOUNTS_NAME_MAX_BYTES, ACCOUNTS_NAME_MAX_CHARS, &name) <
	    0)
		return;
	int rc;
	if (json_object_get(body, "display_name")) {
		rc = accounts_device_set_name(&req->worker->db, req->user_id, req->params[0], name, &err);
	} else {
		json_t *d = accounts_device_get(&req->worker->db, req->user_id, req->params[0], &err);
		rc = d ? 0 : -1;
		json_decref(d);
	}
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_raw(req, 200, "{}", 2);
}

/* ---- profile ---- */

/* A user of another server: her server answers over federation. */
struct remote_profile {
	struct http_req *req;
	const char *field; /* static string or NULL */
};

static void remote_profile_done(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct remote_profile *rp = arg;
	struct http_req *req = rp->req;
	const char *field = rp->field;
	free(rp);
	if (status == 200 && json_is_object(body)) {
		json_t *out = json_object();
		const char *k;
		json_t *v;
		json_object_foreach(body, k, v) if ((strcmp(k, "displayname") == 0 || strcmp(k, "avatar_url") == 0) &&
						    json_is_string(v) && (!field || strcmp(k, field) == 0))
			json_object_set(out, k, v);
		http_reply_json(req, 200, out);
	} else if (status == 404 || status == 403) {
		http_reply_error(req, 404, "M_NOT_FOUND", "Profile not found");
	} else {
		http_reply_error(req, 502, "M_UNKNOWN", "The user's server did not answer: %s",
				 err && err->message[0] ? err->message : "error");
	}
}

/* true when the request was handed to federation (it answers later). */
static bool profile_remote(struct http_req *req, const char *field)
{
	const char *colon = strchr(req->params[0], ':');
	if (!colon || federation_is_local(req->app, colon + 1))
		return false;
	struct remote_profile *rp = malloc(sizeof(*rp));
	if (rp) {
		rp->req = req;
		rp->field = field;
	}
	if (!rp ||
	    federation_query_profile(req->app, req->params[0], field, req->worker->base, remote_profile_done, rp) < 0) {
		free(rp);
		http_reply_error(req, 404, "M_NOT_FOUND", "Profile not found");
	}
	return true;
}

static void get_profile(struct http_req *req)
{
	if (ratelimit_check(req, "profile") < 0)
		return;
	if (profile_remote(req, NULL))
		return;
	struct al_error err = {0};
	http_reply_result(req, 200, accounts_profile_get(&req->worker->db, req->params[0], &err), &err);
}

static void get_profile_field(struct http_req *req, const char *field)
{
	if (ratelimit_check(req, "profile") < 0)
		return;
	if (profile_remote(req, field))
		return;
	struct al_error err = {0};
	json_t *o = accounts_profile_get(&req->worker->db, req->params[0], &err);
	if (!o) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *v = json_object_get(o, field);
	json_t *out = json_object();
	if (out && v)
		json_object_set(out, field, v);
	json_decref(o);
	http_reply_json(req, 200, out);
}

static void put_profile_field(struct http_req *req, const char *field, size_t max_bytes, size_t max_chars)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "profile_set") < 0)
		return;
	if (strcmp(req->params[0], req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "You can only change your own profile");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!json_object_get(body, field)) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "Missing parameter: %s", field);
		return;
	}
	const char *value;
	if (fields_string(req, body, field, false, max_bytes, max_chars, &value) < 0)
		return;
	if (accounts_profile_set(&req->worker->db, req->user_id, field, value, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	aura_id_user_changed(req->app, &req->worker->db, req->user_id);
	http_reply_raw(req, 200, "{}", 2);
}

static void get_displayname(struct http_req *req)
{
	get_profile_field(req, "displayname");
}

static void get_avatar_url(struct http_req *req)
{
	get_profile_field(req, "avatar_url");
}

static void put_displayname(struct http_req *req)
{
	put_profile_field(req, "displayname", ACCOUNTS_NAME_MAX_BYTES, ACCOUNTS_NAME_MAX_CHARS);
}

static void put_avatar_url(struct http_req *req)
{
	put_profile_field(req, "avatar_url", ACCOUNTS_AVATAR_URL_MAX, 0);
}

int account_register_routes(struct app *app)
{
	if (accounts_init(&app->cfg) < 0)
		return -1;
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/register", get_register);
	rc |= http_route(app, ROUTER_POST, CLIENT "/register", post_register);
	rc |= http_route(app, ROUTER_GET, CLIENT "/register/available", get_register_available);
	rc |= http_route(app, ROUTER_GET, CLIENT "/login", get_login);
	rc |= http_route(app, ROUTER_POST, CLIENT "/login", post_login);
	rc |= http_route(app, ROUTER_POST, CLIENT "/logout", post_logout);
	rc |= http_route(app, ROUTER_POST, CLIENT "/logout/all", post_logout_all);
	rc |= http_route(app, ROUTER_GET, CLIENT "/account/whoami", get_whoami);
	rc |= http_route(app, ROUTER_GET, CLIENT "/devices", get_devices);
	rc |= http_route(app, ROUTER_GET, CLIENT "/devices/{deviceId}", get_device);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/devices/{deviceId}", put_device);
	rc |= http_route(app, ROUTER_GET, CLIENT "/profile/{userId}", get_profile);
	rc |= http_route(app, ROUTER_GET, CLIENT "/profile/{userId}/displayname", get_displayname);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/profile/{userId}/displayname", put_displayname);
	rc |= http_route(app, ROUTER_GET, CLIENT "/profile/{userId}/avatar_url", get_avatar_url);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/profile/{userId}/avatar_url", put_avatar_url);
	return rc ? -1 : 0;
}
