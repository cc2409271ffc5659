#include "apps.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
#define APP_JSON                                                                                 \
	"json_build_object('id', c.id, 'aura_id', c.aura_id, 'app_id', c.app_id,"                \
	" 'app_name', c.app_name, 'app_domain', c.app_domain, 'platform', c.platform,"           \
	" 'sdk_version', c.sdk_version, 'permissions', c.permissions, 'is_active', c.is_active," \
	" 'connected_at', " MS("c.connected_at") ", 'last_used_at', " MS(                        \
		"c.last_used_at") ","                                                            \
				  " 'revoked_at', " MS("c.revoked_at") ")::text"
#define PREFS_JSON                                                                           \
	"json_build_object('preferred_apps', p.preferred_apps,"                              \
	" 'smart_routing_enabled', p.smart_routing_enabled, 'work_app_id', p.work_app_id,"   \
	" 'personal_app_id', p.personal_app_id,"                                             \
	" 'work_hours_start', substr(p.work_hours_start::text, 1, 5),"                       \
	" 'work_hours_end', substr(p.work_hours_end::text, 1, 5), 'work_days', p.work_days," \
	" 'dnd_enabled', p.dnd_enabled, 'dnd_start', substr(p.dnd_start::text, 1, 5),"       \
	" 'dnd_end', substr(p.dnd_end::text, 1, 5), 'dnd_days', p.dnd_days,"                 \
	" 'ring_all_apps', p.ring_all_apps, 'ring_timeout_seconds', p.ring_timeout_seconds," \
	" 'call_screening_enabled', p.call_screening_enabled)::text"

static const char *const allowed_fields[] = {"app_id",   "app_name",    "app_domain",
					     "platform", "sdk_version", "permissions"};

bool apps_id_valid(const char *s)
{
	if (!s)
		return false;
	size_t n = strlen(s);
	if (n < 1 || n > NOTIFY_APP_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(isascii(c) && (isalnum(c) || c == '.' || c == '_' || c == '-')))
			return false;
	}
	return true;
}

/* jansson strings are valid UTF-8: count code points, refuse controls. */
static bool text_ok(const char *s, size_t min, size_t max)
{
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
		if ((*p & 0xc0) != 0x80)
			n++;
	}
	return n >= min && n <= max;
}

/* A DNS name: labels of [A-Za-z0-9-] (not starting or ending with '-'),
 * 1-63 bytes each, at most 253 bytes. */
static bool domain_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	const char *label = s;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			size_t ll = (size_t)(p - label);
			if (ll == 0 || ll > 63 || label[0] == '-' || p[-1] == '-')
				return false;
			if (*p == '\0')
				return true;
			label = p + 1;
		} else if (!(isascii((unsigned char)*p) && (isalnum((unsigned char)*p) || *p == '-'))) {
			return false;
		}
	}
}

static json_t *load_json(PGresult *r, int row, int col, struct al_error *err)
{
	json_t *v = json_loads(PQgetvalue(r, row, col), 0, NULL);
	if (!v)
		al_error_set(err, 500, "M_UNKNOWN", "cannot read the record");
	return v;
}

static int no_aura_id(struct al_error *err)
{
	return al_error_set(err, 404, "ORG_AURALINK_NO_AURA_ID", "you have no AuraID: create one first");
}

int apps_connect(struct db *db, const char *user_id, const json_t *body, json_t **out, bool *created,
		 struct al_error *err)
{
	*out = NULL;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)body, key, v)
	{
		bool ok = false;
		for (size_t i = 0; i < sizeof(allowed_fields) / sizeof(allowed_fields[0]); i++)
			ok = ok || strcmp(key, allowed_fields[i]) == 0;
		if (!ok)
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown field '%.64s'", key);
	}
	bool bad = false;
	const char *app_id = cjson_opt_string(body, "app_id", &bad);
	const char *name = cjson_opt_string(body, "app_name", &bad);
	const char *domain = cjson_opt_string(body, "app_domain", &bad);
	const char *platform = cjson_opt_string(body, "platform", &bad);
	const char *sdk = cjson_opt_string(body, "sdk_version", &bad);
	if (bad)
		return al_error_set(err, 400, "M_INVALID_PARAM",
				    "app_id, app_name, app_domain, platform and sdk_version are strings");
	if (!app_id || !name || !domain)
		return al_error_set(err, 400, "M_MISSING_PARAM", "app_id, app_name and app_domain are required");
	if (!apps_id_valid(app_id))
		return al_error_set(err, 400, "M_INVALID_PARAM", "app_id: 1-%d of A-Z a-z 0-9 . _ -",
				    NOTIFY_APP_ID_MAX);
	if (!text_ok(name, 1, APPS_NAME_MAX))
		return al_error_set(err, 400, "M_INVALID_PARAM", "app_name: 1-%d characters", APPS_NAME_MAX);
	if (!domain_ok(domain))
		return al_error_set(err, 400, "M_INVALID_PARAM", "app_domain: a DNS name");
	if (platform && strcmp(platform, "ios") != 0 && strcmp(platform, "android") != 0 &&
	    strcmp(platform, "web") != 0 && strcmp(platform, "desktop") != 0 && strcmp(platform, "other") != 0)
		return al_error_set(err, 400, "M_INVALID_PARAM", "platform: one of ios, android, web, desktop, other");
	if (sdk && (strlen(sdk) > APPS_SDK_VERSION_MAX || !text_ok(sdk, 1, APPS_SDK_VERSION_MAX)))
		return al_error_set(err, 400, "M_INVALID_PARAM", "sdk_version: 1-%d bytes", APPS_SDK_VERSION_MAX);
	json_t *perms = json_object_get(body, "permissions");
	if (perms) {
		if (!json_is_object(perms) || json_object_size(perms) > APPS_MAX_PERMISSIONS)
			return al_error_set(err, 400, "M_INVALID_PARAM",
					    "permissions: an object of at most %d booleans", APPS_MAX_PERMISSIONS);
		json_object_foreach(perms, key, v)
		{
			if (!json_is_boolean(v) || strlen(key) < 1 || strlen(key) > 64)
				return al_error_set(err, 400, "M_INVALID_PARAM",
						    "permissions: keys of 1-64 bytes with boolean values");
		}
	}
	char *perm_text = perms ? json_dumps(perms, JSON_COMPACT | JSON_SORT_KEYS) : strdup("{}");
	if (!perm_text)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	char max_active[16];
	snprintf(max_active, sizeof(max_active), "%d", APPS_MAX_ACTIVE);
	const char *params[] = {user_id, app_id, name, domain, platform, sdk, perm_text, max_active};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO cross_app_connections AS c (aura_id, app_id, app_name, app_domain, platform,"
			      " sdk_version, permissions)"
			      " SELECT r.aura_id, $2, $3, $4, $5, $6, $7::jsonb FROM aura_id_registry r"
			      " WHERE r.user_id = $1 AND (SELECT count(*) FROM cross_app_connections o"
			      "  WHERE o.aura_id = r.aura_id AND o.is_active AND o.app_id <> $2) < $8::integer"
			      " ON CONFLICT (aura_id, app_id) DO UPDATE SET app_name = EXCLUDED.app_name,"
			      " app_domain = EXCLUDED.app_domain, platform = EXCLUDED.platform,"
			      " sdk_version = EXCLUDED.sdk_version, permissions = EXCLUDED.permissions,"
			      " connected_at = CASE WHEN c.is_active THEN c.connected_at ELSE now() END,"
			      " is_active = true, revoked_at = NULL"
			      " RETURNING " APP_JSON ", (xmax = 0)",
			      8, params);
	free(perm_text);
	if (!r)
		return -1;
	int rc = 0;
	if (PQntuples(r) == 0) {
		PQclear(r);
		const char *p1[] = {user_id};
		r = db_exec(db, err, "SELECT 1 FROM aura_id_registry WHERE user_id = $1", 1, p1);
		if (!r)
			return -1;
		rc = PQntuples(r) == 0 ? no_aura_id(err)
				       : al_error_set(err, 400, "ORG_AURALINK_TOO_MANY_APPS",
						      "at most %d connected apps", APPS_MAX_ACTIVE);
	} else {
		*created = PQgetvalue(r, 0, 1)[0] == 't';
		if (!(*out = load_json(r, 0, 0, err)))
			rc = -1;
	}
	PQclear(r);
	return rc;
}

int apps_list(struct db *db, const char *user_id, json_t **out, struct al_error *err)
{
	const char *params[] = {user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT CASE WHEN c.id IS NULL THEN NULL ELSE " APP_JSON " END"
			      " FROM aura_id_registry r LEFT JOIN cross_app_connections c"
			      " ON c.aura_id = r.aura_id AND c.is_active"
			      " WHERE r.user_id = $1 ORDER BY c.connected_at, c.app_id",
			      1, params);
	if (!r)
		return -1;
	if (PQntuples(r) == 0) {
		PQclear(r);
		return no_aura_id(err);
	}
	json_t *apps = json_array();
	for (int i = 0; apps && i < PQntuples(r); i++) {
		if (PQgetisnull(r, i, 0))
			continue;
		json_t *a = load_json(r, i, 0, err);
		if (!a) {
			json_decref(apps);
			PQclear(r);
			return -1;
		}
		json_array_append_new(apps, a);
	}
	PQclear(r);
	*out = apps ? json_pack("{s:o}", "apps", apps) : NULL;
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int apps_revoke(struct db *db, const char *user_id, const char *app_id, json_t **out, struct al_error *err)
{
	if (!apps_id_valid(app_id))
		return al_error_set(err, 404, "M_NOT_FOUND", "no such connected app");
	const char *params[] = {user_id, app_id};
	PGresult *r = db_exec(db, err,
			      "UPDATE cross_app_connections c SET is_active = false, revoked_at = now()"
			      " FROM aura_id_registry r WHERE r.user_id = $1 AND c.aura_id = r.aura_id"
			      " AND c.app_id = $2 AND c.is_active RETURNING " APP_JSON,
			      2, params);
	if (!r)
		return -1;
	int rc = 0;
	if (PQntuples(r) == 0)
		rc = al_error_set(err, 404, "M_NOT_FOUND", "no such connected app");
	else if (!(*out = load_json(r, 0, 0, err)))
		rc = -1;
	PQclear(r);
	return rc;
}

/* ---- notification preferences ---- */

/* Row: aura_id, stored prefs JSON or NULL, updated_at ms or NULL. */
static int prefs_from_row(PGresult *r, struct notify_prefs *p, struct al_error *err)
{
	notify_prefs_defaults(p);
	if (PQgetisnull(r, 0, 1))
		return 0;
	json_t *stored = load_json(r, 0, 1, err);
	if (!stored)
		return -1;
	int rc = notify_prefs_apply_json(p, stored, NULL, 0, err);
	json_decref(stored);
	if (rc < 0)
		al_error_set(err, 500, "M_UNKNOWN", "stored notification preferences are unreadable");
	return rc;
}

static json_t *prefs_answer(const struct notify_prefs *p, const char *aura_id, PGresult *r, int col)
{
	json_t *j = notify_prefs_to_json(p);
	if (!j)
		return NULL;
	json_object_set_new(j, "aura_id", json_string(aura_id));
	json_object_set_new(j, "updated_at",
			    PQgetisnull(r, 0, col) ? json_null()
						   : json_integer(strtoll(PQgetvalue(r, 0, col), NULL, 10)));
	return j;
}

#define PREFS_SELECT                                                                       \
	"SELECT r.aura_id, CASE WHEN p.aura_id IS NULL THEN NULL ELSE " PREFS_JSON " END," \
	" " MS("p.updated_at") " FROM aura_id_registry r"                                  \
			       " LEFT JOIN notification_preferences p ON p.aura_id = r.aura_id"

int apps_prefs_get(struct db *db, const char *user_id, json_t **out, struct al_error *err)
{
	const char *params[] = {user_id};
	PGresult *r = db_exec(db, err, PREFS_SELECT " WHERE r.user_id = $1", 1, params);
	if (!r)
		return -1;
	int rc = 0;
	struct notify_prefs p;
	if (PQntuples(r) == 0)
		rc = no_aura_id(err);
	else if (prefs_from_row(r, &p, err) < 0)
		rc = -1;
	else if (!(*out = prefs_answer(&p, PQgetvalue(r, 0, 0), r, 2)))
		rc = al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	PQclear(r);
	return rc;
}

int apps_prefs_load(struct db *db, const char *aura_id, struct notify_prefs *prefs, struct al_error *err)
{
	const char *params[] = {aura_id};
	PGresult *r = db_exec(db, err, PREFS_SELECT " WHERE r.aura_id = $1", 1, params);
	if (!r)
		return -1;
	int rc = PQntuples(r) == 0 ? al_error_set(err, 404, "M_NOT_FOUND", "no such AuraID")
				   : prefs_from_row(r, prefs, err);
	PQclear(r);
	return rc;
}

int apps_active_ids(struct db *db, const char *aura_id, char (*ids)[NOTIFY_APP_ID_MAX + 1], int max,
		    struct al_error *err)
{
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", max);
	const char *params[] = {aura_id, lim};
	PGresult *r = db_exec(db, err,
			      "SELECT app_id FROM cross_app_connections WHERE aura_id = $1 AND is_active"
			      " ORDER BY connected_at, app_id LIMIT $2::int",
			      2, params);
	if (!r)
		return -1;
	int n = PQntuples(r);
	for (int i = 0; i < n; i++)
		snprintf(ids[i], NOTIFY_APP_ID_MAX + 1, "%s", PQgetvalue(r, i, 0));
	PQclear(r);
	return n;
}

/* {"a","b"} from strings that hold no quote or backslash (app IDs). */
static int text_array(char *buf, size_t cap, char ids[][NOTIFY_APP_ID_MAX + 1], int n)
{
	size_t off = 0;
	int w = snprintf(buf, cap, "{");
	off += (size_t)w;
	for (int i = 0; i < n; i++) {
		w = snprintf(buf + off, cap - off, "%s\"%s\"", i ? "," : "", ids[i]);
		if (w < 0 || (size_t)w >= cap - off)
			return -1;
		off += (size_t)w;
	}
	w = snprintf(buf + off, cap - off, "}");
	return (w < 0 || (size_t)w >= cap - off) ? -1 : 0;
}

static void days_array(char *buf, size_t cap, unsigned mask)
{
	size_t off = (size_t)snprintf(buf, cap, "{");
	for (int d = 0; d < 7; d++)
		if ((mask >> d) & 1u)
			off += (size_t)snprintf(buf + off, cap - off, "%s%d", off > 1 ? "," : "", d);
	snprintf(buf + off, cap - off, "}");
}

static const char *time_param(char *buf, size_t cap, int minutes)
{
	if (minutes < 0)
		return NULL;
	snprintf(buf, cap, "%02d:%02d", minutes / 60, minutes % 60);
	return buf;
}

int apps_prefs_put(struct db *db, const char *user_id, const json_t *body, json_t **out, struct al_error *err)
{
	PGresult *r = NULL, *a = NULL, *w = NULL;
	const char **active = NULL;
	*out = NULL;
	if (db_begin(db, err) < 0)
		return -1;
	const char *params[] = {user_id};
	r = db_exec(db, err, PREFS_SELECT " WHERE r.user_id = $1 FOR UPDATE OF r", 1, params);
	if (!r)
		goto fail;
	if (PQntuples(r) == 0) {
		no_aura_id(err);
		goto fail;
	}
	struct notify_prefs p;
	if (prefs_from_row(r, &p, err) < 0)
		goto fail;
	const char *aura_id = PQgetvalue(r, 0, 0);
	const char *ap[] = {aura_id};
	a = db_exec(db, err, "SELECT app_id FROM cross_app_connections WHERE aura_id = $1 AND is_active", 1, ap);
	if (!a)
		goto fail;
	int nactive = PQntuples(a);
	active = calloc((size_t)nactive + 1, sizeof(*active));
	if (!active) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	for (int i = 0; i < nactive; i++)
		active[i] = PQgetvalue(a, i, 0);
	if (notify_prefs_apply_json(&p, body, active, nactive, err) < 0)
		goto fail;
	char preferred[NOTIFY_MAX_PREFERRED * (NOTIFY_APP_ID_MAX + 3) + 3];
	char work_days[32], dnd_days[32], ws[32], we[32], ds[32], de[32], timeout[16];
	if (text_array(preferred, sizeof(preferred), p.preferred_apps, p.npreferred) < 0) {
		al_error_set(err, 500, "M_UNKNOWN", "internal error");
		goto fail;
	}
	days_array(work_days, sizeof(work_days), p.work_days);
	days_array(dnd_days, sizeof(dnd_days), p.dnd_days);
	snprintf(timeout, sizeof(timeout), "%d", p.ring_timeout_seconds);
	const char *wp[] = {
		aura_id,
		preferred,
		p.smart_routing_enabled ? "true" : "false",
		p.work_app_id[0] ? p.work_app_id : NULL,
		p.personal_app_id[0] ? p.personal_app_id : NULL,
		time_param(ws, sizeof(ws), p.work_hours_start),
		time_param(we, sizeof(we), p.work_hours_end),
		work_days,
		p.dnd_enabled ? "true" : "false",
		time_param(ds, sizeof(ds), p.dnd_start),
		time_param(de, sizeof(de), p.dnd_end),
		dnd_days,
		p.ring_all_apps ? "true" : "false",
		timeout,
		p.call_screening_enabled ? "true" : "false",
	};
	w = db_exec(db, err,
		    "INSERT INTO notification_preferences AS p (aura_id, preferred_apps,"
		    " smart_routing_enabled, work_app_id, personal_app_id, work_hours_start, work_hours_end,"
		    " work_days, dnd_enabled, dnd_start, dnd_end, dnd_days, ring_all_apps,"
		    " ring_timeout_seconds, call_screening_enabled)"
		    " VALUES ($1, $2::text[], $3::boolean, $4, $5, $6::time, $7::time, $8::integer[],"
		    " $9::boolean, $10::time, $11::time, $12::integer[], $13::boolean, $14::integer,"
		    " $15::boolean)"
		    " ON CONFLICT (aura_id) DO UPDATE SET preferred_apps = EXCLUDED.preferred_apps,"
		    " smart_routing_enabled = EXCLUDED.smart_routing_enabled,"
		    " work_app_id = EXCLUDED.work_app_id, personal_app_id = EXCLUDED.personal_app_id,"
		    " work_hours_start = EXCLUDED.work_hours_start, work_hours_end = EXCLUDED.work_hours_end,"
		    " work_days = EXCLUDED.work_days, dnd_enabled = EXCLUDED.dnd_enabled,"
		    " dnd_start = EXCLUDED.dnd_start, dnd_end = EXCLUDED.dnd_end,"
		    " dnd_days = EXCLUDED.dnd_days, ring_all_apps = EXCLUDED.ring_all_apps,"
		    " ring_timeout_seconds = EXCLUDED.ring_timeout_seconds,"
		    " call_screening_enabled = EXCLUDED.call_screening_enabled"
		    " RETURNING " MS("p.updated_at"),
		    15, wp);
	if (!w)
		goto fail;
	if (db_commit(db, err) < 0)
		goto fail;
	*out = prefs_answer(&p, aura_id, w, 0);
	free(active);
	PQclear(r);
	PQclear(a);
	PQclear(w);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
fail:
	db_rollback(db);
	free(active);
	PQclear(r);
	PQclear(a);
	PQclear(w);
	return -1;
}
