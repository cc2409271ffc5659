/* fed_auth.c - X-Matrix verification of inbound federation requests, with
 * the request parked (never a blocked worker) while the origin's keys are
 * fetched. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "fed_internal.h"
#include "log.h"
#include "xmatrix.h"

struct parked {
	struct http_req *req;
	fed_auth_cont cont;
	struct xmatrix_auth a;
};

static const char *method_str(unsigned m)
{
	switch (m) {
	case ROUTER_GET: return "GET";
	case ROUTER_POST: return "POST";
	case ROUTER_PUT: return "PUT";
	case ROUTER_DELETE: return "DELETE";
	case ROUTER_PATCH: return "PATCH";
	default: return "GET";
	}
}

static void refuse(struct http_req *req, const char *origin, int status, const char *errcode, const char *reason)
{
	struct al_error err = {0};
	const char *uri = evhttp_request_get_uri(req->ev);
	json_t *det = json_pack("{s:s, s:s, s:s}", "reason", reason, "method", method_str(req->method), "uri",
				uri ? uri : "");
	if (audit_append(&req->worker->db, "federation", status == 401 ? "auth_failed" : "request_refused", NULL,
			 req->app->cfg.server_name, origin, det, &err) < 0)
		log_warn("fed_auth", "cannot write the audit entry: %s", err.message);
	json_decref(det);
	log_info("fed_auth", "refused origin=%s status=%d reason=%s", origin ? origin : "-", status, reason);
	http_reply_error(req, status, errcode, "%s", reason);
}

/* 0 when verified; otherwise replied. */
static int verify_now(struct http_req *req, const struct xmatrix_auth *a, const unsigned char pk[32])
{
	json_t *content = NULL;
	size_t blen = 0;
	if (http_req_body_bytes(req, &blen) && blen > 0) {
		struct al_error e = {0};
		content = http_req_json_body(req, &e);
		if (!content) {
			http_reply_al_error(req, &e);
			return -1;
		}
	}
	struct al_error err = {0};
	const char *uri = evhttp_request_get_uri(req->ev);
	if (xmatrix_verify(a, method_str(req->method), uri ? uri : "/", req->app->cfg.server_name, content, pk, &err) <
	    0) {
		if (err.status == 400)
			http_reply_al_error(req, &err);
		else
			refuse(req, a->origin, 401, "M_UNAUTHORIZED", err.message);
		return -1;
	}
	free(req->user_id);
	req->user_id = strdup(a->origin);
	if (!req->user_id) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return -1;
	}
	fed_servers_seen(fed_of(req->app)->servers, a->origin);
	return 0;
}

static void after_fetch(void *arg, bool ok)
{
	struct parked *p = arg;
	struct http_req *req = p->req;
	unsigned char pk[32];
	/* A request is signed when it is sent: the key must be valid now. */
	enum fed_key_status st = fed_keys_lookup_signed(fed_of(req->app), p->a.origin, p->a.key_id, http_now_ms(), pk);
	if (st == FED_KEY_OK) {
		if (verify_now(req, &p->a, pk) == 0)
			p->cont(req);
	} else if (st == FED_KEY_EXPIRED) {
		char m[700];
		snprintf(m, sizeof(m), "Key %s of %s has expired (valid_until_ts passed)", p->a.key_id, p->a.origin);
		refuse(req, p->a.origin, 401, "M_UNAUTHORIZED", m);
	} else {
		char m[700];
		snprintf(m, sizeof(m), "Unknown key %s for server %s%s", p->a.key_id, p->a.origin,
			 ok ? "" : " (cannot fetch its keys)");
		refuse(req, p->a.origin, 401, "M_UNAUTHORIZED", m);
	}
	free(p);
}

void fed_auth_require(struct http_req *req, fed_auth_cont cont)
{
	struct federation *fed = fed_of(req->app);
	struct xmatrix_auth a;
	struct al_error err = {0};
	if (!fed) {
		http_reply_error(req, 403, "M_FORBIDDEN", "Federation is disabled");
		return;
	}
	const char *h = http_req_header(req, "Authorization");
	if (xmatrix_parse_header(h, &a, &err) < 0) {
		refuse(req, a.origin[0] ? a.origin : NULL, 401, "M_UNAUTHORIZED", err.message);
		return;
	}
	char host[256];
	int port;
	bool ip;
	if (fed_server_name_split(a.origin, host, sizeof(host), &port, &ip) < 0) {
		/* "localhost:http" and the like: not a server name (spec grammar) */
		refuse(req, NULL, 400, "M_INVALID_PARAM", "The origin is not a valid server name");
		return;
	}
	if (a.destination[0] && strcasecmp(a.destination, req->app->cfg.server_name) != 0) {
		char m[700];
		snprintf(m, sizeof(m), "Destination %s is not this server (%s)", a.destination,
			 req->app->cfg.server_name);
		refuse(req, a.origin, 401, "M_UNAUTHORIZED", m);
		return;
	}
	if (strcasecmp(a.origin, req->app->cfg.server_name) == 0) {
		refuse(req, a.origin, 401, "M_UNAUTHORIZED", "Origin is this server");
		return;
	}
	if (!fed_servers_allowed(fed->servers, a.origin)) {
		refuse(req, a.origin, 403, "M_FORBIDDEN", "Federation with this server is not allowed");
		return;
	}
	unsigned char pk[32];
	if (fed_keys_lookup_signed(fed, a.origin, a.key_id, http_now_ms(), pk) == FED_KEY_OK) {
		if (verify_now(req, &a, pk) == 0)
			cont(req);
		return;
	}
	struct parked *p = malloc(sizeof(*p));
	if (!p) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	p->req = req;
	p->cont = cont;
	p->a = a;
	if (fed_keys_fetch(fed, a.origin, req->worker->base, after_fetch, p) < 0) {
		free(p);
		http_reply_error(req, 503, "M_UNKNOWN", "Cannot fetch the origin's keys now");
	}
}
