#include "handlers_abuse.h"

#include <stdlib.h>
#include <string.h>

#include "abuse.h"
#include "auth.h"
#include "http.h"
#include "ratelimit.h"

static void post_report(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	int64_t retry = 0;
	if (auth_require(req) < 0 || ratelimit_check(req, "abuse_report") < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (abuse_report_create(&req->worker->db, req->user_id, body, &out, &retry, &err) < 0) {
		if (err.status == 429)
			http_reply_json(req, 429,
					json_pack("{s:s, s:s, s:I}", "errcode", err.errcode, "error", err.message,
						  "retry_after_ms", (json_int_t)retry));
		else
			http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 201, out);
}

static void admin_list(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (auth_require_admin(req) < 0)
		return;
	const char *status = http_req_query(req, "status");
	const char *lim = http_req_query(req, "limit");
	int limit = 50;
	if (lim) {
		char *end = NULL;
		long v = strtol(lim, &end, 10);
		limit = (end && *end == '\0' && lim[0] && v >= 1 && v <= 500) ? (int)v : -1;
	}
	if (abuse_report_list(&req->worker->db, status && status[0] ? status : NULL, limit, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void admin_patch(struct http_req *req)
{
	struct al_error err = {0};
	json_t *out = NULL;
	if (auth_require_admin(req) < 0)
		return;
	json_t *body = http_req_json_body(req, &err);
	if (!body ||
	    abuse_report_update(req->app, &req->worker->db, req->user_id, req->params[0], body, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

int abuse_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_POST, "/_auralink/client/v1/abuse_reports", post_report);
	rc |= http_route(app, ROUTER_GET, "/_auralink/admin/v1/abuse_reports", admin_list);
	rc |= http_route(app, ROUTER_PATCH, "/_auralink/admin/v1/abuse_reports/{id}", admin_patch);
	return rc ? -1 : 0;
}
