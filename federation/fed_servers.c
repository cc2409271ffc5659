/* fed_servers.c - the federation_servers registry: a row per peer seen or
 * configured, policy (black/white lists, blocked), health from real traffic
 * and a periodic /_matrix/federation/v1/version check, and the admin API.
 * Memory mirrors the table (policy decisions never wait for PostgreSQL);
 * traffic statistics are flushed in one statement per tick. */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "auth.h"
#include "fed_internal.h"
#include "log.h"

#define FS_MAX 4096
#define ADMIN "/_auralink/admin/v1/federation/servers"

struct fs_entry {
	char domain[256];
	char trust[12];
	bool wl, bl;
	bool seen_dirty;
	bool stats_dirty;
	long requests, successes;
	double total_ms;
	int consecutive_failures;
	bool online;
	char version[128];
	bool auralink;
	bool health_dirty;
};

struct fed_servers {
	struct federation *fed;
	pthread_mutex_t lock;
	struct fs_entry *e;
	int n;
	int64_t last_health_ms;
};

static bool domain_valid(const char *d)
{
	size_t n = strlen(d);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(isalnum((unsigned char)d[i]) || strchr(".:[]-", d[i])))
			return false;
	return true;
}

struct fed_servers *fed_servers_new(struct federation *fed)
{
	struct fed_servers *s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->e = calloc(FS_MAX, sizeof(*s->e));
	if (!s->e) {
		free(s);
		return NULL;
	}
	s->fed = fed;
	pthread_mutex_init(&s->lock, NULL);
	return s;
}

void fed_servers_free(struct fed_servers *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s->e);
	free(s);
}

static struct fs_entry *find_locked(struct fed_servers *s, const char *d)
{
	for (int i = 0; i < s->n; i++)
		if (strcasecmp(s->e[i].domain, d) == 0)
			return &s->e[i];
	return NULL;
}

static struct fs_entry *get_locked(struct fed_servers *s, const char *d)
{
	struct fs_entry *e = find_locked(s, d);
	if (e || s->n >= FS_MAX || !domain_valid(d))
		return e;
	e = &s->e[s->n++];
	memset(e, 0, sizeof(*e));
	snprintf(e->domain, sizeof(e->domain), "%s", d);
	snprintf(e->trust, sizeof(e->trust), "pending");
	e->seen_dirty = true;
	return e;
}

static void set_from_row(struct fed_servers *s, PGresult *r, int i)
{
	struct fs_entry *e = get_locked(s, PQgetvalue(r, i, 0));
	if (!e)
		return;
	snprintf(e->trust, sizeof(e->trust), "%s", PQgetvalue(r, i, 1));
	e->wl = PQgetvalue(r, i, 2)[0] == 't';
	e->bl = PQgetvalue(r, i, 3)[0] == 't';
	e->seen_dirty = false;
}

int fed_servers_load(struct fed_servers *s, struct db *db, struct al_error *err)
{
	PGresult *r = db_exec(db, err,
			      "SELECT domain, trust_level, is_whitelisted, is_blacklisted FROM federation_servers "
			      "ORDER BY last_seen_at DESC NULLS LAST LIMIT 4096",
			      0, NULL);
	if (!r)
		return -1;
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < PQntuples(r); i++)
		set_from_row(s, r, i);
	pthread_mutex_unlock(&s->lock);
	PQclear(r);
	return 0;
}

int fed_servers_configure(struct fed_servers *s, struct db *db, struct al_error *err)
{
	const struct al_config *cfg = &s->fed->app->cfg;
	if (cfg->fed_whitelist.count + cfg->fed_blacklist.count == 0)
		return 0;
	json_t *rows = json_array();
	for (int i = 0; i < cfg->fed_whitelist.count; i++)
		json_array_append_new(rows, json_pack("{s:s, s:b}", "d", cfg->fed_whitelist.items[i], "w", 1));
	for (int i = 0; i < cfg->fed_blacklist.count; i++)
		json_array_append_new(rows, json_pack("{s:s, s:b}", "d", cfg->fed_blacklist.items[i], "w", 0));
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	if (!text)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[1] = {text};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO federation_servers AS f (domain, is_whitelisted, is_blacklisted) "
			      "SELECT DISTINCT ON (lower(x.d)) x.d, x.w, NOT x.w "
			      "FROM jsonb_to_recordset($1::jsonb) AS x(d text, w boolean) "
			      "ON CONFLICT ((lower(domain))) DO UPDATE SET is_whitelisted = EXCLUDED.is_whitelisted, "
			      "is_blacklisted = EXCLUDED.is_blacklisted",
			      1, p);
	free(text);
	if (!r)
		return -1;
	log_info("fed_servers", "configured peers whitelisted=%d blacklisted=%d rows=%s", cfg->fed_whitelist.count,
		 cfg->fed_blacklist.count, PQcmdTuples(r));
	PQclear(r);
	return 0;
}

bool fed_servers_allowed(struct fed_servers *s, const char *server)
{
	const struct al_config *cfg = &s->fed->app->cfg;
	for (int i = 0; i < cfg->fed_blacklist.count; i++)
		if (strcasecmp(cfg->fed_blacklist.items[i], server) == 0)
			return false;
	bool cfg_wl = false;
	for (int i = 0; i < cfg->fed_whitelist.count; i++)
		if (strcasecmp(cfg->fed_whitelist.items[i], server) == 0)
			cfg_wl = true;
	pthread_mutex_lock(&s->lock);
	struct fs_entry *e = find_locked(s, server);
	bool ok = true;
	if (e && (e->bl || strcmp(e->trust, "blocked") == 0))
		ok = false;
	else if (cfg->fed_whitelist_only && !cfg_wl && !(e && e->wl))
		ok = false;
	pthread_mutex_unlock(&s->lock);
	return ok;
}

static int rank(const struct fs_entry *e)
{
	if (e->wl)
		return 0;
	if (strcmp(e->trust, "verified") == 0 || strcmp(e->trust, "trusted") == 0)
		return 1;
	return 2;
}

int fed_servers_pick(struct fed_servers *s, char (*out)[256], int max, bool trusted_only, int *ranks)
{
	int n = 0;
	pthread_mutex_lock(&s->lock);
	for (int r = 0; r <= (trusted_only ? 1 : 2) && n < max; r++)
		for (int i = 0; i < s->n && n < max; i++) {
			struct fs_entry *e = &s->e[i];
			if (rank(e) != r || e->bl || strcmp(e->trust, "blocked") == 0)
				continue;
			if (strcasecmp(e->domain, s->fed->app->cfg.server_name) == 0)
				continue;
			if (ranks)
				ranks[n] = r;
			snprintf(out[n++], 256, "%s", e->domain);
		}
	pthread_mutex_unlock(&s->lock);
	return n;
}

void fed_servers_seen(struct fed_servers *s, const char *server)
{
	pthread_mutex_lock(&s->lock);
	struct fs_entry *e = get_locked(s, server);
	if (e)
		e->seen_dirty = true;
	pthread_mutex_unlock(&s->lock);
}

void fed_servers_traffic(void *arg, const char *destination, int status, int64_t elapsed_ms)
{
	struct fed_servers *s = arg;
	pthread_mutex_lock(&s->lock);
	struct fs_entry *e = get_locked(s, destination);
	if (e) {
		e->requests++;
		if (status > 0 && status < 500) {
			e->successes++;
			e->total_ms += (double)elapsed_ms;
			e->consecutive_failures = 0;
			e->online = true;
		} else {
			e->consecutive_failures++;
			if (e->consecutive_failures >= 3)
				e->online = false;
		}
		e->stats_dirty = true;
	}
	pthread_mutex_unlock(&s->lock);
}

struct health_arg {
	struct fed_servers *s;
	char domain[256];
};

static void health_cb(const struct fed_response *resp, void *arg)
{
	struct health_arg *h = arg;
	struct fed_servers *s = h->s;
	json_t *server = json_object_get(resp->body, "server");
	const char *name = json_string_value(json_object_get(server, "name"));
	const char *ver = json_string_value(json_object_get(server, "version"));
	pthread_mutex_lock(&s->lock);
	struct fs_entry *e = find_locked(s, h->domain);
	if (e) {
		e->online = resp->status == 200;
		if (resp->status == 200) {
			snprintf(e->version, sizeof(e->version), "%s %s", name ? name : "?", ver ? ver : "?");
			e->auralink = name && strcmp(name, "auralink") == 0;
		}
		e->health_dirty = true;
	}
	pthread_mutex_unlock(&s->lock);
	free(h);
}

static void flush(struct fed_servers *s)
{
	json_t *rows = json_array();
	pthread_mutex_lock(&s->lock);
	for (int i = 0; i < s->n; i++) {
		struct fs_entry *e = &s->e[i];
		if (!e->seen_dirty && !e->stats_dirty && !e->health_dirty)
			continue;
		json_t *o = json_pack("{s:s, s:b, s:b, s:b, s:b, s:i}", "d", e->domain, "seen", e->seen_dirty, "stats",
				      e->stats_dirty, "health", e->health_dirty, "online", e->online, "cf",
				      e->consecutive_failures);
		if (e->stats_dirty && e->requests > 0) {
			json_object_set_new(o, "rate", json_real((double)e->successes / (double)e->requests));
			if (e->successes)
				json_object_set_new(o, "avg", json_real(e->total_ms / (double)e->successes));
		}
		if (e->health_dirty && e->version[0]) {
			json_object_set_new(o, "ver", json_string(e->version));
			json_object_set_new(o, "al", json_boolean(e->auralink));
		}
		json_array_append_new(rows, o);
		e->seen_dirty = e->stats_dirty = e->health_dirty = false;
	}
	pthread_mutex_unlock(&s->lock);
	if (json_array_size(rows) == 0) {
		json_decref(rows);
		return;
	}
	char *text = json_dumps(rows, JSON_COMPACT);
	json_decref(rows);
	if (!text)
		return;
	const char *p[1] = {text};
	struct al_error err = {0};
	PGresult *r = db_exec(
		fed_client_db(s->fed->fc), &err,
		"INSERT INTO federation_servers AS f (domain, last_seen_at, is_online, consecutive_failures, "
		"success_rate, avg_response_time_ms, server_version, last_health_check_at, supports_aura_id, "
		"supports_mesh, "
		"supports_calls) "
		"SELECT x.d, CASE WHEN x.seen THEN now() END, x.online, x.cf, x.rate, x.avg, x.ver, "
		"CASE WHEN x.health THEN now() END, coalesce(x.al, false), coalesce(x.al, false), coalesce(x.al, "
		"false) "
		"FROM jsonb_to_recordset($1::jsonb) AS x(d text, seen boolean, stats boolean, health boolean, "
		"online boolean, cf int, rate real, avg real, ver text, al boolean) "
		"ON CONFLICT ((lower(domain))) DO UPDATE SET "
		"last_seen_at = COALESCE(EXCLUDED.last_seen_at, f.last_seen_at), "
		"is_online = CASE WHEN EXCLUDED.last_health_check_at IS NULL AND EXCLUDED.success_rate IS NULL "
		"THEN f.is_online ELSE EXCLUDED.is_online END, "
		"consecutive_failures = CASE WHEN EXCLUDED.success_rate IS NULL THEN f.consecutive_failures "
		"ELSE EXCLUDED.consecutive_failures END, "
		"success_rate = COALESCE(EXCLUDED.success_rate, f.success_rate), "
		"avg_response_time_ms = COALESCE(EXCLUDED.avg_response_time_ms, f.avg_response_time_ms), "
		"server_version = COALESCE(EXCLUDED.server_version, f.server_version), "
		"last_health_check_at = COALESCE(EXCLUDED.last_health_check_at, f.last_health_check_at), "
		"supports_aura_id = CASE WHEN EXCLUDED.server_version IS NULL THEN f.supports_aura_id ELSE "
		"EXCLUDED.supports_aura_id END, "
		"supports_mesh = CASE WHEN EXCLUDED.server_version IS NULL THEN f.supports_mesh ELSE "
		"EXCLUDED.supports_mesh END, "
		"supports_calls = CASE WHEN EXCLUDED.server_version IS NULL THEN f.supports_calls ELSE "
		"EXCLUDED.supports_calls END",
		1, p);
	PQclear(r);
	free(text);
}

void fed_servers_tick(void *arg)
{
	struct fed_servers *s = arg;
	flush(s);
	int64_t now = http_now_ms();
	if (now - s->last_health_ms < (int64_t)s->fed->app->cfg.fed_health_interval_s * 1000)
		return;
	s->last_health_ms = now;
	char(*list)[256] = calloc(64, 256);
	if (!list)
		return;
	int n = fed_servers_pick(s, list, 64, false, NULL);
	for (int i = 0; i < n; i++) {
		struct health_arg *h = calloc(1, sizeof(*h));
		if (!h)
			break;
		h->s = s;
		snprintf(h->domain, sizeof(h->domain), "%s", list[i]);
		struct fed_request rq = {.method = "GET",
					 .destination = list[i],
					 .path = "/_matrix/federation/v1/version",
					 .timeout_ms = 10000};
		if (fed_client_submit(s->fed->fc, &rq, fed_client_base(s->fed->fc), health_cb, h) < 0)
			free(h);
	}
	free(list);
}

/* ---- admin API ---- */

#define ROW_SQL                                                                                                      \
	"SELECT json_build_object('domain', domain, 'verify_keys', verify_keys, 'trust_level', trust_level, "        \
	"'is_whitelisted', is_whitelisted, 'is_blacklisted', is_blacklisted, 'supports_aura_id', supports_aura_id, " \
	"'supports_mesh', supports_mesh, 'supports_calls', supports_calls, 'server_version', server_version, "       \
	"'last_health_check_at', (extract(epoch from last_health_check_at) * 1000)::bigint, "                        \
	"'avg_response_time_ms', avg_response_time_ms, 'success_rate', success_rate, 'is_online', is_online, "       \
	"'consecutive_failures', consecutive_failures, "                                                             \
	"'first_seen_at', (extract(epoch from first_seen_at) * 1000)::bigint, "                                      \
	"'last_seen_at', (extract(epoch from last_seen_at) * 1000)::bigint, 'notes', notes)::text "

static void reply_rows(struct http_req *req, PGresult *r, bool single, int status)
{
	if (single) {
		if (PQntuples(r) == 0) {
			http_reply_error(req, 404, "M_NOT_FOUND", "Unknown server");
			return;
		}
		http_reply_raw(req, status, PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
		return;
	}
	json_t *arr = json_array();
	for (int i = 0; i < PQntuples(r); i++)
		json_array_append_new(arr, json_loads(PQgetvalue(r, i, 0), 0, NULL));
	http_reply_json(req, 200, json_pack("{s:o, s:i}", "servers", arr, "count", PQntuples(r)));
}

static void memory_refresh(struct fed_servers *s, struct db *db, const char *domain)
{
	const char *p[1] = {domain};
	PGresult *r = db_exec(db, NULL,
			      "SELECT domain, trust_level, is_whitelisted, is_blacklisted FROM federation_servers "
			      "WHERE lower(domain) = lower($1)",
			      1, p);
	pthread_mutex_lock(&s->lock);
	if (r && PQntuples(r) == 1) {
		set_from_row(s, r, 0);
	} else {
		struct fs_entry *e = find_locked(s, domain);
		if (e)
			*e = s->e[--s->n];
	}
	pthread_mutex_unlock(&s->lock);
	PQclear(r);
}

static void admin_post(struct http_req *req);

static void admin_list(struct http_req *req)
{
	if (req->method == ROUTER_POST) {
		admin_post(req);
		return;
	}
	if (auth_require_admin(req) < 0)
		return;
	struct al_error err = {0};
	PGresult *r = db_exec(&req->worker->db, &err, ROW_SQL "FROM federation_servers ORDER BY domain LIMIT 1000", 0,
			      NULL);
	if (!r) {
		http_reply_al_error(req, &err);
		return;
	}
	reply_rows(req, r, false, 200);
	PQclear(r);
}

/* Validated changes of a POST/PATCH body as text parameters. */
struct changes {
	const char *trust, *wl, *bl, *notes;
};

static int parse_changes(json_t *body, struct changes *c, struct al_error *err)
{
	memset(c, 0, sizeof(*c));
	const char *k;
	json_t *v;
	json_object_foreach(body, k, v)
	{
		if (strcmp(k, "domain") == 0)
			continue;
		if (strcmp(k, "trust_level") == 0) {
			const char *t = json_string_value(v);
			if (!t || (strcmp(t, "pending") && strcmp(t, "trusted") && strcmp(t, "verified") &&
				   strcmp(t, "blocked")))
				return al_error_set(err, 400, "M_INVALID_PARAM",
						    "trust_level must be pending, trusted, verified or blocked");
			c->trust = t;
		} else if (strcmp(k, "is_whitelisted") == 0 || strcmp(k, "is_blacklisted") == 0) {
			if (!json_is_boolean(v))
				return al_error_set(err, 400, "M_INVALID_PARAM", "%s must be a boolean", k);
			const char *b = json_is_true(v) ? "true" : "false";
			if (k[3] == 'w')
				c->wl = b;
			else
				c->bl = b;
		} else if (strcmp(k, "notes") == 0) {
			if (!json_is_string(v) || strlen(json_string_value(v)) > 4000)
				return al_error_set(err, 400, "M_INVALID_PARAM", "notes must be a string (<= 4000)");
			c->notes = json_string_value(v);
		} else {
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown field %.64s", k);
		}
	}
	if (c->wl && c->bl && strcmp(c->wl, "true") == 0 && strcmp(c->bl, "true") == 0)
		return al_error_set(err, 400, "M_INVALID_PARAM", "a server cannot be whitelisted and blacklisted");
	return 0;
}

static void admin_upsert(struct http_req *req, const char *domain, bool create)
{
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	struct changes c;
	if (!body || parse_changes(body, &c, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!domain || !domain_valid(domain)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "domain must be a server name");
		return;
	}
	struct db *db = &req->worker->db;
	const char *p[5] = {domain, c.trust, c.wl, c.bl, c.notes};
	PGresult *r = NULL;
	if (db_begin(db, &err) < 0)
		goto fail;
	if (create)
		r = db_exec(db, &err,
			    "WITH x AS (INSERT INTO federation_servers AS f (domain, trust_level, is_whitelisted, "
			    "is_blacklisted, notes) "
			    "VALUES ($1, COALESCE($2, 'pending'), COALESCE($3::boolean, false), COALESCE($4::boolean, "
			    "false), $5) "
			    "ON CONFLICT ((lower(domain))) DO UPDATE SET trust_level = COALESCE($2, f.trust_level), "
			    "is_whitelisted = COALESCE($3::boolean, f.is_whitelisted), "
			    "is_blacklisted = COALESCE($4::boolean, f.is_blacklisted), notes = COALESCE($5, f.notes) "
			    "RETURNING *) " ROW_SQL "FROM x",
			    5, p);
	else
		r = db_exec(db, &err,
			    "WITH x AS (UPDATE federation_servers AS f SET trust_level = COALESCE($2, f.trust_level), "
			    "is_whitelisted = COALESCE($3::boolean, f.is_whitelisted), "
			    "is_blacklisted = COALESCE($4::boolean, f.is_blacklisted), notes = COALESCE($5, f.notes) "
			    "WHERE lower(domain) = lower($1) RETURNING *) " ROW_SQL "FROM x",
			    5, p);
	if (!r)
		goto rollback;
	if (PQntuples(r) == 0) {
		PQclear(r);
		db_rollback(db);
		http_reply_error(req, 404, "M_NOT_FOUND", "Unknown server");
		return;
	}
	if (audit_append(db, "federation", create ? "server.upsert" : "server.update", req->user_id, domain, NULL, body,
			 &err) < 0 ||
	    db_commit(db, &err) < 0)
		goto rollback;
	memory_refresh(fed_of(req->app)->servers, db, domain);
	reply_rows(req, r, true, create ? 201 : 200);
	PQclear(r);
	return;
rollback:
	PQclear(r);
	db_rollback(db);
fail:
	http_reply_al_error(req, &err);
}

static void admin_post(struct http_req *req)
{
	if (auth_require_admin(req) < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	admin_upsert(req, json_string_value(json_object_get(body, "domain")), true);
}

static void admin_one(struct http_req *req)
{
	if (auth_require_admin(req) < 0)
		return;
	const char *domain = req->params[0];
	struct al_error err = {0};
	if (req->method == ROUTER_PATCH) {
		admin_upsert(req, domain, false);
		return;
	}
	struct db *db = &req->worker->db;
	const char *p[1] = {domain};
	if (req->method == ROUTER_GET) {
		PGresult *r = db_exec(db, &err, ROW_SQL "FROM federation_servers WHERE lower(domain) = lower($1)", 1,
				      p);
		if (!r) {
			http_reply_al_error(req, &err);
			return;
		}
		reply_rows(req, r, true, 200);
		PQclear(r);
		return;
	}
	/* DELETE */
	PGresult *r = NULL;
	if (db_begin(db, &err) < 0)
		goto fail;
	r = db_exec(db, &err, "DELETE FROM federation_servers WHERE lower(domain) = lower($1)", 1, p);
	if (!r)
		goto rollback;
	if (atoi(PQcmdTuples(r)) == 0) {
		PQclear(r);
		db_rollback(db);
		http_reply_error(req, 404, "M_NOT_FOUND", "Unknown server");
		return;
	}
	PQclear(r);
	if (audit_append(db, "federation", "server.delete", req->user_id, domain, NULL, NULL, &err) < 0 ||
	    db_commit(db, &err) < 0)
		goto rollback;
	memory_refresh(fed_of(req->app)->servers, db, domain);
	http_reply_json(req, 200, json_object());
	return;
rollback:
	db_rollback(db);
fail:
	http_reply_al_error(req, &err);
}

int fed_servers_register_routes(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET | ROUTER_POST, ADMIN, admin_list);
	rc |= http_route(app, ROUTER_GET | ROUTER_PATCH | ROUTER_DELETE, ADMIN "/{domain}", admin_one);
	return rc ? -1 : 0;
}
