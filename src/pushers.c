#include "pushers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* body[key] must be a string of 1..max bytes (or absent when optional). */
static int check_str(json_t *body, const char *key, bool required, size_t max, struct al_error *err)
{
	json_t *v = json_object_get(body, key);
	if (!v || json_is_null(v))
		return required ? al_error_set(err, 400, "M_MISSING_PARAM", "Missing parameter: %s", key) : 0;
	if (!json_is_string(v))
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s must be a string", key);
	size_t n = json_string_length(v);
	if (n == 0 || n > max)
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s must be 1-%zu bytes", key, max);
	if (strlen(json_string_value(v)) != n)
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s contains a NUL character", key);
	return 0;
}

/* An http pusher's data.url: http(s)://host/_matrix/push/v1/notify. */
static int check_url(const char *url, struct al_error *err)
{
	const char *rest = NULL;
	if (strncmp(url, "https://", 8) == 0)
		rest = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		rest = url + 7;
	if (!rest)
		return al_error_set(err, 400, "M_INVALID_PARAM", "data.url must be an http or https URL");
	const char *path = strchr(rest, '/');
	if (!path || path == rest || strchr(url, '?') || strchr(url, '#') || strcmp(path, PUSHERS_HTTP_PATH) != 0)
		return al_error_set(err, 400, "M_INVALID_PARAM", "data.url must have a path of %s", PUSHERS_HTTP_PATH);
	return 0;
}

int pushers_validate(json_t *body, bool *deletes, struct al_error *err)
{
	if (!json_is_object(body))
		return al_error_set(err, 400, "M_BAD_JSON", "body must be an object");
	if (check_str(body, "pushkey", true, PUSHERS_PUSHKEY_MAX, err) < 0 ||
	    check_str(body, "app_id", true, PUSHERS_APP_ID_MAX, err) < 0)
		return -1;
	json_t *kind = json_object_get(body, "kind");
	if (!kind)
		return al_error_set(err, 400, "M_MISSING_PARAM", "Missing parameter: kind");
	*deletes = json_is_null(kind);
	if (*deletes)
		return 0;
	const char *k = json_string_value(kind);
	if (!k || (strcmp(k, "http") != 0 && strcmp(k, "email") != 0))
		return al_error_set(err, 400, "M_INVALID_PARAM", "kind must be http, email or null");
	if (check_str(body, "app_display_name", true, PUSHERS_NAME_MAX, err) < 0 ||
	    check_str(body, "device_display_name", true, PUSHERS_NAME_MAX, err) < 0 ||
	    check_str(body, "lang", true, PUSHERS_LANG_MAX, err) < 0 ||
	    check_str(body, "profile_tag", false, PUSHERS_NAME_MAX, err) < 0)
		return -1;
	json_t *append = json_object_get(body, "append");
	if (append && !json_is_boolean(append))
		return al_error_set(err, 400, "M_INVALID_PARAM", "append must be a boolean");
	json_t *data = json_object_get(body, "data");
	if (!data)
		return al_error_set(err, 400, "M_MISSING_PARAM", "Missing parameter: data");
	if (!json_is_object(data))
		return al_error_set(err, 400, "M_INVALID_PARAM", "data must be an object");
	char *text = json_dumps(data, JSON_COMPACT);
	size_t n = text ? strlen(text) : 0;
	free(text);
	if (!n || n > PUSHERS_DATA_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "data must be at most %d bytes", PUSHERS_DATA_MAX);
	json_t *format = json_object_get(data, "format");
	if (format && !json_is_string(format))
		return al_error_set(err, 400, "M_INVALID_PARAM", "data.format must be a string");
	if (strcmp(k, "http") == 0) {
		json_t *url = json_object_get(data, "url");
		if (!url)
			return al_error_set(err, 400, "M_MISSING_PARAM", "Missing parameter: data.url");
		if (!json_is_string(url) || json_string_length(url) > 2048 ||
		    strlen(json_string_value(url)) != json_string_length(url))
			return al_error_set(err, 400, "M_INVALID_PARAM",
					    "data.url must be a URL of at most 2048 bytes");
		if (check_url(json_string_value(url), err) < 0)
			return -1;
	}
	return 0;
}

static const char *str(json_t *body, const char *key)
{
	return json_string_value(json_object_get(body, key));
}

int pushers_set(struct db *db, const char *user_id, const char *device_id, json_t *body, struct al_error *err)
{
	bool deletes;
	if (pushers_validate(body, &deletes, err) < 0)
		return -1;
	if (deletes) {
		const char *p[] = {user_id, str(body, "app_id"), str(body, "pushkey")};
		PGresult *r = db_exec(db, err,
				      "DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3", 3, p);
		if (!r)
			return -1;
		PQclear(r);
		return 0;
	}
	char max[16];
	snprintf(max, sizeof(max), "%d", PUSHERS_PER_USER_MAX);
	char *data = json_dumps(json_object_get(body, "data"), JSON_COMPACT | JSON_SORT_KEYS);
	if (!data)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {user_id,
			   device_id,
			   str(body, "app_id"),
			   str(body, "pushkey"),
			   str(body, "kind"),
			   str(body, "app_display_name"),
			   str(body, "device_display_name"),
			   str(body, "profile_tag"),
			   str(body, "lang"),
			   data,
			   max,
			   json_is_true(json_object_get(body, "append")) ? "t" : "f"};
	int rc = -1;
	if (db_begin(db, err) < 0)
		goto out;
	/* Serialise one user's pushers so the count check holds. */
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(hashtext('pushers:' || $1))", 1, p);
	if (!r)
		goto rollback;
	PQclear(r);
	/* Without append, a pushkey of an app belongs to one user only. */
	const char *d[] = {user_id, p[11], p[2], p[3]};
	r = db_exec(db, err,
		    "DELETE FROM pushers WHERE NOT $2::boolean AND app_id = $3 AND pushkey = $4 AND user_id <> $1", 4,
		    d);
	if (!r)
		goto rollback;
	PQclear(r);
	r = db_exec(
		db, err,
		"INSERT INTO pushers (user_id, device_id, app_id, pushkey, kind, app_display_name, "
		"device_display_name, profile_tag, lang, data) "
		"SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE (SELECT count(*) FROM pushers WHERE user_id = $1 "
		"AND NOT (app_id = $3 AND pushkey = $4)) < $11::int "
		"ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET device_id = EXCLUDED.device_id, "
		"kind = EXCLUDED.kind, app_display_name = EXCLUDED.app_display_name, "
		"device_display_name = EXCLUDED.device_display_name, profile_tag = EXCLUDED.profile_tag, "
		"lang = EXCLUDED.lang, data = EXCLUDED.data",
		11, p);
	if (!r)
		goto rollback;
	bool stored = strcmp(PQcmdTuples(r), "1") == 0;
	PQclear(r);
	if (!stored) {
		al_error_set(err, 400, "M_INVALID_PARAM", "at most %d pushers per user", PUSHERS_PER_USER_MAX);
		goto rollback;
	}
	if (db_commit(db, err) < 0)
		goto out;
	rc = 0;
	goto out;
rollback:
	db_rollback(db);
out:
	free(data);
	return rc;
}

json_t *pushers_list(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[] = {user_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, data "
		"FROM pushers WHERE user_id = $1 ORDER BY created_at, app_id, pushkey",
		1, p);
	if (!r)
		return NULL;
	json_t *a = json_array();
	for (int i = 0; a && i < PQntuples(r); i++) {
		json_t *data = json_loads(PQgetvalue(r, i, 7), 0, NULL);
		json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:o}", "app_id", PQgetvalue(r, i, 0), "pushkey",
				      PQgetvalue(r, i, 1), "kind", PQgetvalue(r, i, 2), "app_display_name",
				      PQgetvalue(r, i, 3), "device_display_name", PQgetvalue(r, i, 4), "lang",
				      PQgetvalue(r, i, 6), "data", data ? data : json_object());
		if (e && !PQgetisnull(r, i, 5))
			json_object_set_new(e, "profile_tag", json_string(PQgetvalue(r, i, 5)));
		if (e)
			json_array_append_new(a, e);
	}
	PQclear(r);
	json_t *out = a ? json_pack("{s:o}", "pushers", a) : NULL;
	if (!out)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return out;
}
