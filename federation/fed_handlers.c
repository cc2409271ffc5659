/* fed_handlers.c - inbound server-server endpoints: the notary
 * (/_matrix/key/v2/query) and /_matrix/federation/v1/query/{type}
 * (profile, org.auralink.aura_id, org.auralink.mesh_nodes; directory is fed_rooms.c's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "aura_id.h"
#include "auth.h"
#include "cjson.h"
#include "fed_internal.h"
#include "fed_sender.h"
#include "keys.h"
#include "log.h"
#include "mesh.h"
#include "sign.h"

#define NOTARY_MAX_SERVERS 16
#define ATTESTATION_VALIDITY_MS (60 * 60 * 1000)

/* ---- notary ---- */

struct notary_req {
	struct http_req *req;
	int npending;
	int n;
	char names[NOTARY_MAX_SERVERS][256];
	int64_t min_valid[NOTARY_MAX_SERVERS];
};

/* The stored document of server, counter-signed by us, or NULL. One
 * valid until before the asked minimum_valid_until_ts is still the best we have: it is returned
 * (spec: a notary returns the most recent key it has, even expired). */
static json_t *signed_doc(struct app *app, const char *server)
{
	json_t *doc = NULL;
	if (federation_is_local(app, server))
		return keys_server_document(app->keys, http_now_ms());
	int64_t vu = 0;
	char *text = fed_keys_document(fed_of(app)->keys, server, &vu);
	if (!text)
		return NULL;
	doc = cjson_parse_object(text, strlen(text), NULL, NULL);
	free(text);
	if (doc && sign_json(doc, app->cfg.server_name, keys_current(app->keys), NULL) < 0) {
		json_decref(doc);
		doc = NULL;
	}
	return doc;
}

static void notary_reply(struct notary_req *nr)
{
	json_t *list = json_array();
	for (int i = 0; i < nr->n; i++) {
		json_t *d = signed_doc(nr->req->app, nr->names[i]);
		if (d)
			json_array_append_new(list, d);
	}
	http_reply_json(nr->req, 200, json_pack("{s:o}", "server_keys", list));
	free(nr);
}

static void notary_fetched(void *arg, bool ok)
{
	(void)ok;
	struct notary_req *nr = arg;
	if (--nr->npending == 0)
		notary_reply(nr);
}

static void notary_start(struct notary_req *nr)
{
	struct app *app = nr->req->app;
	int64_t now = http_now_ms();
	nr->npending = 1; /* held until every fetch is started */
	for (int i = 0; i < nr->n; i++) {
		if (federation_is_local(app, nr->names[i]))
			continue;
		int64_t vu = 0;
		char *text = fed_keys_document(fed_of(app)->keys, nr->names[i], &vu);
		free(text);
		int64_t need = nr->min_valid[i] > now ? nr->min_valid[i] : now;
		if (text && vu >= need)
			continue;
		nr->npending++;
		if (fed_keys_fetch(fed_of(app), nr->names[i], nr->req->worker->base, notary_fetched, nr) < 0)
			nr->npending--;
	}
	if (--nr->npending == 0)
		notary_reply(nr);
}

static bool name_ok(const char *s)
{
	char host[256];
	int port;
	bool ip;
	return s && fed_server_name_split(s, host, sizeof(host), &port, &ip) == 0;
}

static void get_key_query(struct http_req *req)
{
	const char *server = req->params[0];
	if (!name_ok(server)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "serverName is not a server name");
		return;
	}
	struct notary_req *nr = calloc(1, sizeof(*nr));
	if (!nr) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	nr->req = req;
	nr->n = 1;
	snprintf(nr->names[0], 256, "%s", server);
	const char *mv = http_req_query(req, "minimum_valid_until_ts");
	nr->min_valid[0] = mv ? strtoll(mv, NULL, 10) : 0;
	notary_start(nr);
}

static void post_key_query(struct http_req *req)
{
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *sk = json_object_get(body, "server_keys");
	if (!json_is_object(sk)) {
		http_reply_error(req, 400, "M_BAD_JSON", "server_keys must be an object");
		return;
	}
	if (json_object_size(sk) > NOTARY_MAX_SERVERS) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "at most %d servers per query", NOTARY_MAX_SERVERS);
		return;
	}
	struct notary_req *nr = calloc(1, sizeof(*nr));
	if (!nr) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	nr->req = req;
	const char *name;
	json_t *criteria;
	json_object_foreach(sk, name, criteria)
	{
		if (!name_ok(name) || !json_is_object(criteria)) {
			free(nr);
			http_reply_error(req, 400, "M_INVALID_PARAM", "bad server_keys entry");
			return;
		}
		int64_t mv = 0;
		const char *kid;
		json_t *c;
		json_object_foreach(criteria, kid, c)
		{
			json_t *m = json_object_get(c, "minimum_valid_until_ts");
			if (json_is_integer(m) && json_integer_value(m) > mv)
				mv = json_integer_value(m);
		}
		snprintf(nr->names[nr->n], 256, "%s", name);
		nr->min_valid[nr->n++] = mv;
	}
	notary_start(nr);
}

/* ---- queries ---- */

bool fed_user_is_local(struct app *app, const char *user_id)
{
	const char *colon = user_id ? strchr(user_id, ':') : NULL;
	return user_id && user_id[0] == '@' && strlen(user_id) <= 255 && colon && federation_is_local(app, colon + 1);
}

bool fed_require_local_user(struct http_req *req, const char *user_id)
{
	if (fed_user_is_local(req->app, user_id))
		return true;
	http_reply_error(req, 403, "M_FORBIDDEN", "User is not on this server");
	return false;
}

PGresult *fed_local_user_rows(struct http_req *req, const char *user_id, const char *sql, const char *not_found)
{
	if (!fed_require_local_user(req, user_id))
		return NULL;
	struct al_error err = {0};
	const char *p[] = {user_id};
	PGresult *r = db_exec(&req->worker->db, &err, sql, 1, p);
	if (!r) {
		http_reply_al_error(req, &err);
		return NULL;
	}
	if (PQntuples(r) == 0) {
		PQclear(r);
		http_reply_error(req, 404, "M_NOT_FOUND", "%s", not_found);
		return NULL;
	}
	return r;
}

static void query_profile(struct http_req *req)
{
	const char *user_id = http_req_query(req, "user_id");
	const char *field = http_req_query(req, "field");
	if (!user_id || strlen(user_id) > 255) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "user_id is required");
		return;
	}
	if (field && strcmp(field, "displayname") != 0 && strcmp(field, "avatar_url") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "field must be displayname or avatar_url");
		return;
	}
	PGresult *r = fed_local_user_rows(
		req, user_id, "SELECT displayname, avatar_url FROM users WHERE user_id = $1 AND deactivated_at IS NULL",
		"Profile not found");
	if (!r)
		return;
	json_t *o = json_object();
	if ((!field || field[0] == 'd') && !PQgetisnull(r, 0, 0))
		json_object_set_new(o, "displayname", json_string(PQgetvalue(r, 0, 0)));
	if ((!field || field[0] == 'a') && !PQgetisnull(r, 0, 1))
		json_object_set_new(o, "avatar_url", json_string(PQgetvalue(r, 0, 1)));
	PQclear(r);
	http_reply_json(req, 200, o);
}

static void query_aura_id(struct http_req *req)
{
	const char *handle = http_req_query(req, "aura_id");
	const char *origin = req->user_id;
	if (!handle || strlen(handle) > 40) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "aura_id is required");
		return;
	}
	struct al_error err = {0};
	const char *p[1] = {handle};
	PGresult *r = db_exec(&req->worker->db, &err,
			      "SELECT a.aura_id, a.user_id, coalesce(a.display_name, u.displayname), "
			      "coalesce(a.avatar_url, u.avatar_url), a.is_verified, a.privacy_level, "
			      "a.federation_enabled, a.federated_domains::text[], "
			      "EXISTS (SELECT 1 FROM mesh_nodes n WHERE n.aura_id = a.aura_id AND n.is_online) "
			      "FROM aura_id_registry a JOIN users u USING (user_id) "
			      "WHERE lower(a.aura_id) = lower($1) AND a.status = 'active' AND u.suspended_at IS NULL "
			      "AND u.deactivated_at IS NULL",
			      1, p);
	if (!r) {
		http_reply_al_error(req, &err);
		return;
	}
	/* A remote server asks for nobody in particular: the privacy rule with
	 * an anonymous viewer (public AuraIDs only). */
	int visible = PQntuples(r) == 1 ? aura_id_visible_to(&req->worker->db, NULL, PQgetvalue(r, 0, 1),
							     PQgetvalue(r, 0, 5), &err)
					: 0;
	if (visible <= 0) {
		PQclear(r);
		if (visible < 0)
			http_reply_al_error(req, &err);
		else
			http_reply_error(req, 404, "M_NOT_FOUND", "Unknown AuraID");
		return;
	}
	if (PQgetvalue(r, 0, 6)[0] != 't') {
		PQclear(r);
		http_reply_error(req, 403, "M_FORBIDDEN", "The owner does not federate this AuraID");
		return;
	}
	/* federated_domains: a PostgreSQL text[] literal; check membership. */
	const char *doms = PQgetvalue(r, 0, 7);
	if (strcmp(doms, "{}") != 0) {
		const char *q[2] = {PQgetvalue(r, 0, 0), origin};
		PGresult *m = db_exec(&req->worker->db, &err,
				      "SELECT 1 FROM aura_id_registry WHERE aura_id = $1 AND "
				      "lower($2) = ANY (SELECT lower(d) FROM unnest(federated_domains) d)",
				      2, q);
		bool member = m && PQntuples(m) > 0;
		PQclear(m);
		if (!member) {
			PQclear(r);
			http_reply_error(req, 403, "M_FORBIDDEN", "The owner does not share this AuraID with %s",
					 origin);
			return;
		}
	}
	int64_t now = http_now_ms();
	const char *server = req->app->cfg.server_name;
	json_t *att = json_pack("{s:s, s:s, s:s, s:I, s:I}", "aura_id", PQgetvalue(r, 0, 0), "user_id",
				PQgetvalue(r, 0, 1), "server", server, "issued_ts", (json_int_t)now, "valid_until_ts",
				(json_int_t)(now + ATTESTATION_VALIDITY_MS));
	if (!att || sign_json(att, server, keys_current(req->app->keys), &err) < 0) {
		json_decref(att);
		PQclear(r);
		http_reply_error(req, 500, "M_UNKNOWN", "cannot sign the attestation");
		return;
	}
	json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:b, s:s, s:o}", "aura_id", PQgetvalue(r, 0, 0),
			      "user_id", PQgetvalue(r, 0, 1), "server", server, "display_name",
			      PQgetisnull(r, 0, 2) ? json_null() : json_string(PQgetvalue(r, 0, 2)), "avatar_url",
			      PQgetisnull(r, 0, 3) ? json_null() : json_string(PQgetvalue(r, 0, 3)), "is_verified",
			      PQgetvalue(r, 0, 4)[0] == 't', "is_online", PQgetvalue(r, 0, 8)[0] == 't',
			      "privacy_level", PQgetvalue(r, 0, 5), "attestation", att);
	PQclear(r);
	http_reply_json(req, 200, o);
}

/* The online mesh nodes of a local user's AuraID, for the asking server's
 * route search; privacy as for org.auralink.aura_id (mesh.h). */
static void query_mesh_nodes(struct http_req *req)
{
	const char *user_id = http_req_query(req, "user_id");
	if (!user_id || !*user_id || strlen(user_id) > 255) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "user_id is required");
		return;
	}
	if (!fed_require_local_user(req, user_id))
		return;
	if (!req->app->mesh) {
		http_reply_error(req, 404, "M_UNRECOGNIZED", "The mesh is not enabled here");
		return;
	}
	struct al_error err = {0};
	json_t *out = NULL;
	if (mesh_nodes_public_json(req->app, &req->worker->db, req->user_id, user_id, &out, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, out);
}

static void query_authed(struct http_req *req)
{
	const char *type = req->params[0];
	if (strcmp(type, "profile") == 0)
		query_profile(req);
	else if (strcmp(type, "org.auralink.aura_id") == 0)
		query_aura_id(req);
	else if (strcmp(type, "directory") == 0)
		fed_rooms_query_directory(req);
	else if (strcmp(type, "org.auralink.mesh_nodes") == 0)
		query_mesh_nodes(req);
	else
		http_reply_error(req, 404, "M_UNRECOGNIZED", "Unknown query type");
}

static void get_query(struct http_req *req)
{
	fed_auth_require(req, query_authed);
}

/* ---- admin: resolve through federation, counters ---- */

static void admin_resolved(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct http_req *req = arg;
	if (status == 200 && body)
		http_reply_json(req, 200, json_incref(body));
	else
		http_reply_al_error(req, err);
}

static void admin_resolve(struct http_req *req)
{
	if (auth_require_admin(req) < 0)
		return;
	if (federation_resolve_aura_id(req->app, req->params[0], req->worker->base, admin_resolved, req) < 0)
		http_reply_error(req, 400, "M_INVALID_PARAM", "cannot resolve this AuraID");
}

static void admin_stats(struct http_req *req)
{
	if (auth_require_admin(req) < 0)
		return;
	struct fed_keys *ks = fed_of(req->app)->keys;
	http_reply_json(req, 200,
			json_pack("{s:I, s:I, s:I, s:I}", "key_fetches", (json_int_t)fed_keys_fetch_count(ks),
				  "key_fetches_coalesced", (json_int_t)fed_keys_coalesced_count(ks),
				  "key_refetches_suppressed", (json_int_t)fed_keys_suppressed_count(ks),
				  "edus_dispatched", (json_int_t)fed_inbound_edus_dispatched()));
}

int fed_handlers_register(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, "/_auralink/admin/v1/federation/resolve/{aura_id}", admin_resolve);
	rc |= http_route(app, ROUTER_GET, "/_auralink/admin/v1/federation/stats", admin_stats);
	rc |= http_route(app, ROUTER_GET, "/_matrix/key/v2/query/{serverName}", get_key_query);
	rc |= http_route(app, ROUTER_GET, "/_matrix/key/v2/query/{serverName}/{keyId}", get_key_query);
	rc |= http_route(app, ROUTER_POST, "/_matrix/key/v2/query", post_key_query);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/query/{queryType}", get_query);
	return rc ? -1 : 0;
}
