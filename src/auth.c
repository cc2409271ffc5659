#include "auth.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "accounts.h"
#include "log.h"
#include "tokencache.h"

#define AUTH_CACHE_SETS 2048              /* x TOKENCACHE_WAYS entries */
#define AUTH_CACHE_TTL_MS (5 * 60 * 1000) /* bounds staleness across processes */

int auth_start(struct app *app)
{
	app->tokens = tokencache_new(AUTH_CACHE_SETS, AUTH_CACHE_TTL_MS);
	if (!app->tokens) {
		log_error("auth", "out of memory");
		return -1;
	}
	return 0;
}

void auth_stop(struct app *app)
{
	tokencache_free(app->tokens);
	app->tokens = NULL;
}

void auth_forget_user(struct app *app, const char *user_id, const char *device_id)
{
	if (app->tokens)
		tokencache_forget_user(app->tokens, user_id, device_id);
}

/* The token text, or NULL. */
static const char *request_token(struct http_req *req, size_t *len)
{
	const char *h = http_req_header(req, "Authorization");
	const char *tok = NULL;
	if (h && strncasecmp(h, "Bearer ", 7) == 0) {
		tok = h + 7;
		while (*tok == ' ')
			tok++;
	} else {
		tok = http_req_query(req, "access_token");
	}
	if (!tok || !*tok)
		return NULL;
	*len = strnlen(tok, ACCOUNTS_TOKEN_MAX + 1);
	return tok;
}

static int set_identity(struct http_req *req, const char *user_id, const char *device_id)
{
	free(req->user_id);
	free(req->device_id);
	req->user_id = strdup(user_id);
	req->device_id = strdup(device_id);
	if (!req->user_id || !req->device_id) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return -1;
	}
	return 0;
}

int auth_require_ex(struct http_req *req, bool *is_guest)
{
	size_t len = 0;
	const char *tok = request_token(req, &len);
	if (!tok) {
		http_reply_error(req, 401, "M_MISSING_TOKEN", "Missing access token");
		return -1;
	}
	if (len > ACCOUNTS_TOKEN_MAX)
		goto unknown;
	unsigned char hash[ACCOUNTS_TOKEN_HASH_BYTES];
	accounts_token_hash(tok, len, hash);
	struct tokencache_entry e;
	int64_t now = http_now_ms();
	struct tokencache *cache = req->app->tokens;
	if (cache && tokencache_get(cache, hash, now, &e)) {
		if (is_guest)
			*is_guest = e.is_guest;
		return set_identity(req, e.user_id, e.device_id);
	}
	uint64_t gen = cache ? tokencache_generation(cache) : 0;
	char hex[ACCOUNTS_TOKEN_HASH_BYTES * 2 + 1];
	sodium_bin2hex(hex, sizeof(hex), hash, sizeof(hash));
	const char *p[1] = {hex};
	struct al_error err = {0};
	PGresult *r = db_exec(&req->worker->db, &err,
			      "SELECT t.user_id, t.device_id, u.is_guest, u.suspended_at IS NOT NULL,"
			      " u.deactivated_at IS NOT NULL"
			      " FROM access_tokens t JOIN users u ON u.user_id = t.user_id"
			      " WHERE t.token_hash = decode($1, 'hex')",
			      1, p);
	if (!r) {
		http_reply_al_error(req, &err);
		return -1;
	}
	if (PQntuples(r) != 1 || PQgetvalue(r, 0, 4)[0] == 't') {
		PQclear(r);
		goto unknown;
	}
	if (PQgetvalue(r, 0, 3)[0] == 't') {
		PQclear(r);
		http_reply_error(req, 403, "M_USER_SUSPENDED", "This account has been suspended");
		return -1;
	}
	memset(&e, 0, sizeof(e));
	snprintf(e.user_id, sizeof(e.user_id), "%s", PQgetvalue(r, 0, 0));
	snprintf(e.device_id, sizeof(e.device_id), "%s", PQgetvalue(r, 0, 1));
	e.is_guest = PQgetvalue(r, 0, 2)[0] == 't';
	PQclear(r);
	if (cache)
		tokencache_put(cache, hash, &e, gen, now);
	if (is_guest)
		*is_guest = e.is_guest;
	return set_identity(req, e.user_id, e.device_id);
unknown:
	http_reply_json(req, 401,
			json_pack("{s:s, s:s, s:b}", "errcode", "M_UNKNOWN_TOKEN", "error", "Unrecognised access token",
				  "soft_logout", 0));
	return -1;
}

int auth_require(struct http_req *req)
{
	return auth_require_ex(req, NULL);
}

int auth_require_admin(struct http_req *req)
{
	if (auth_require_ex(req, NULL) < 0)
		return -1;
	if (config_list_contains(&req->app->cfg.admins, req->user_id))
		return 0;
	struct al_error err = {0};
	int admin = accounts_is_admin(&req->worker->db, req->user_id, &err);
	if (admin < 0) {
		http_reply_al_error(req, &err);
		return -1;
	}
	if (!admin) {
		http_reply_error(req, 403, "M_FORBIDDEN", "You are not a server admin");
		return -1;
	}
	return 0;
}
