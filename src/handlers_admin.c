#include "handlers_admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "accounts.h"
#include "audit.h"
#include "aura_id.h"
#include "auth.h"
#include "http.h"
#include "log.h"
#include "ratelimit.h"

#define ADMIN "/_auralink/admin/v1"
#define AUDIT_LIST_DEFAULT 100
#define AUDIT_LIST_MAX 1000

static void set_suspended(struct http_req *req, bool suspended)
{
	if (auth_require_admin(req) < 0 || ratelimit_check(req, "admin") < 0)
		return;
	const char *target = req->params[0];
	if (suspended && strcmp(target, req->user_id) == 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "You cannot suspend yourself");
		return;
	}
	struct db *db = &req->worker->db;
	struct al_error err = {0};
	if (db_begin(db, &err) < 0)
		goto fail;
	if (accounts_suspend(db, target, suspended, &err) < 0 ||
	    audit_append(db, "admin", suspended ? "suspend_user" : "unsuspend_user", req->user_id, target,
			 NULL, NULL, &err) < 0 ||
	    db_commit(db, &err) < 0) {
		db_rollback(db);
		goto fail;
	}
	/* After the commit: a lookup racing with us now reads the new state. */
	auth_forget_user(req->app, target, NULL);
	aura_id_user_changed(req->app, db, target);
	log_info("admin", "%s user_id=%s by=%s", suspended ? "suspended" : "unsuspended", target,
		 req->user_id);
	http_reply_json(req, 200, json_pack("{s:s, s:b}", "user_id", target, "suspended", suspended));
	return;
fail:
	http_reply_al_error(req, &err);
}

static void post_suspend(struct http_req *req)
{
	set_suspended(req, true);
}

static void post_unsuspend(struct http_req *req)
{
	set_suspended(req, false);
}

static bool parse_int(const char *s, long long min, long long max, long long *out)
{
	if (!s || !*s)
		return false;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return false;
	*out = v;
	return true;
}

static const char *const categories[] = {"identity", "federation", "keys", "mesh", "abuse", "admin"};

static void get_audit(struct http_req *req)
{
	if (auth_require_admin(req) < 0 || ratelimit_check(req, "admin") < 0)
		return;
	const char *category = http_req_query(req, "category");
	const char *since_s = http_req_query(req, "since");
	const char *limit_s = http_req_query(req, "limit");
	if (category) {
		bool known = false;
		for (size_t i = 0; i < sizeof(categories) / sizeof(categories[0]); i++)
			known |= strcmp(category, categories[i]) == 0;
		if (!known) {
			http_reply_error(req, 400, "M_INVALID_PARAM",
					 "category must be identity, federation, keys, mesh, abuse or admin");
			return;
		}
	}
	long long since = 0, limit = AUDIT_LIST_DEFAULT;
	if (since_s && !parse_int(since_s, 0, 9007199254740991LL, &since)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "since must be a timestamp in milliseconds");
		return;
	}
	if (limit_s && !parse_int(limit_s, 1, AUDIT_LIST_MAX, &limit)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "limit must be between 1 and %d",
				 AUDIT_LIST_MAX);
		return;
	}
	char since_b[24], limit_b[24];
	snprintf(since_b, sizeof(since_b), "%lld", since);
	snprintf(limit_b, sizeof(limit_b), "%lld", limit);
	const char *p[3] = {category, since_b, limit_b};
	struct al_error err = {0};
	PGresult *r = db_exec(&req->worker->db, &err,
			      "SELECT id, category, action, actor, target, origin_server, details::text,"
			      " created_ms, encode(prev_hash, 'hex'), encode(entry_hash, 'hex')"
			      " FROM federation_audit_log"
			      " WHERE ($1::text IS NULL OR category = $1) AND coalesce(created_ms, 0) >= $2::bigint"
			      " ORDER BY id LIMIT $3::integer",
			      3, p);
	if (!r) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *list = json_array();
	for (int i = 0; list && i < PQntuples(r); i++) {
		json_t *e = json_pack("{s:I, s:s, s:s, s:s, s:s}", "id",
				      (json_int_t)strtoll(PQgetvalue(r, i, 0), NULL, 10), "category",
				      PQgetvalue(r, i, 1), "action", PQgetvalue(r, i, 2), "prev_hash",
				      PQgetvalue(r, i, 8), "entry_hash", PQgetvalue(r, i, 9));
		if (!e)
			continue;
		static const char *const opt[] = {NULL, NULL, NULL, "actor", "target", "origin_server"};
		for (int c = 3; c <= 5; c++)
			json_object_set_new(e, opt[c],
					    PQgetisnull(r, i, c) ? json_null() : json_string(PQgetvalue(r, i, c)));
		json_t *details = json_loads(PQgetvalue(r, i, 6), 0, NULL);
		json_object_set_new(e, "details", details ? details : json_object());
		json_object_set_new(e, "created_at",
				    PQgetisnull(r, i, 7) ? json_null()
							 : json_integer(strtoll(PQgetvalue(r, i, 7), NULL, 10)));
		json_array_append_new(list, e);
	}
	PQclear(r);
	http_reply_json(req, 200,
			list ? json_pack("{s:o, s:I}", "entries", list, "count", (json_int_t)json_array_size(list))
			     : NULL);
}

static void get_audit_verify(struct http_req *req)
{
	if (auth_require_admin(req) < 0 || ratelimit_check(req, "admin") < 0)
		return;
	int64_t entries = 0, bad = 0;
	struct al_error err = {0};
	if (audit_verify(&req->worker->db, &entries, &bad, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *o = json_pack("{s:b, s:I}", "ok", bad == 0, "entries", (json_int_t)entries);
	if (o && bad)
		json_object_set_new(o, "first_bad_entry", json_integer(bad));
	http_reply_json(req, 200, o);
}

int admin_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_POST, ADMIN "/users/{userId}/suspend", post_suspend);
	rc |= http_route(app, ROUTER_POST, ADMIN "/users/{userId}/unsuspend", post_unsuspend);
	rc |= http_route(app, ROUTER_GET, ADMIN "/audit", get_audit);
	rc |= http_route(app, ROUTER_GET, ADMIN "/audit/verify", get_audit_verify);
	return rc ? -1 : 0;
}
