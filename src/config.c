#include "config.h"

#include <libconfig.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#ifndef AL_SQL_DIR
#define AL_SQL_DIR "/usr/local/share/auralink/sql"
#endif

struct loader {
	config_t lc;
	char *errbuf;
	size_t errlen;
};

static int fail(struct loader *ld, const char *setting, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, const char *setting, const char *fmt, ...)
{
	int n = snprintf(ld->errbuf, ld->errlen, "config: %s: ", setting);
	if (n < 0 || (size_t)n >= ld->errlen)
		return -1;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->errbuf + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
	return -1;
}

static int get_string(struct loader *ld, const char *path, char *dst, size_t dstlen, const char *def)
{
	config_setting_t *s = config_lookup(&ld->lc, path);
	if (!s) {
		if (!def)
			return fail(ld, path, "is required");
		snprintf(dst, dstlen, "%s", def);
		return 0;
	}
	const char *v = config_setting_get_string(s);
	if (!v)
		return fail(ld, path, "must be a string");
	if (strlen(v) >= dstlen)
		return fail(ld, path, "is longer than %zu characters", dstlen - 1);
	snprintf(dst, dstlen, "%s", v);
	return 0;
}

static int get_int(struct loader *ld, const char *path, long long min, long long max, long long def, long long *out)
{
	config_setting_t *s = config_lookup(&ld->lc, path);
	if (!s) {
		*out = def;
		return 0;
	}
	int t = config_setting_type(s);
	if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64)
		return fail(ld, path, "must be an integer");
	long long v = config_setting_get_int64(s);
	if (v < min || v > max)
		return fail(ld, path, "must be between %lld and %lld (got %lld)", min, max, v);
	*out = v;
	return 0;
}

static int get_bool(struct loader *ld, const char *path, bool def, bool *out)
{
	config_setting_t *s = config_lookup(&ld->lc, path);
	if (!s) {
		*out = def;
		return 0;
	}
	if (config_setting_type(s) != CONFIG_TYPE_BOOL)
		return fail(ld, path, "must be true or false");
	*out = config_setting_get_bool(s) != 0;
	return 0;
}

static int get_float(struct loader *ld, const char *path, double min, double max, double def, double *out)
{
	config_setting_t *s = config_lookup(&ld->lc, path);
	if (!s) {
		*out = def;
		return 0;
	}
	int t = config_setting_type(s);
	double v;
	if (t == CONFIG_TYPE_FLOAT)
		v = config_setting_get_float(s);
	else if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
		v = (double)config_setting_get_int64(s);
	else
		return fail(ld, path, "must be a number");
	if (v < min || v > max)
		return fail(ld, path, "must be between %g and %g", min, max);
	*out = v;
	return 0;
}

static int get_list(struct loader *ld, const char *path, struct config_string_list *list)
{
	config_setting_t *s = config_lookup(&ld->lc, path);
	if (!s)
		return 0;
	if (!config_setting_is_array(s) && !config_setting_is_list(s))
		return fail(ld, path, "must be a list of strings, e.g. [\"a\", \"b\"]");
	int n = config_setting_length(s);
	if (n > CONFIG_MAX_LIST)
		return fail(ld, path, "has more than %d entries", CONFIG_MAX_LIST);
	for (int i = 0; i < n; i++) {
		const char *v = config_setting_get_string_elem(s, i);
		if (!v || !*v)
			return fail(ld, path, "entry %d must be a non-empty string", i + 1);
		list->items[list->count] = strdup(v);
		if (!list->items[list->count])
			return fail(ld, path, "out of memory");
		list->count++;
	}
	return 0;
}

static int load_listener(struct loader *ld, const char *name, int def_port, struct config_listener *l)
{
	char path[96];
	long long port;
	snprintf(path, sizeof(path), "listeners.%s.enabled", name);
	if (get_bool(ld, path, true, &l->enabled) < 0)
		return -1;
	snprintf(path, sizeof(path), "listeners.%s.bind", name);
	if (get_string(ld, path, l->bind, sizeof(l->bind), "0.0.0.0") < 0)
		return -1;
	snprintf(path, sizeof(path), "listeners.%s.port", name);
	if (get_int(ld, path, 1, 65535, def_port, &port) < 0)
		return -1;
	l->port = (int)port;
	return 0;
}

static int valid_server_name_chars(const char *name)
{
	for (size_t i = 0; name[i]; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
		      c == '-' || c == ':' || c == '[' || c == ']'))
			return 0;
	}
	return 1;
}

static int valid_server_name(const char *name)
{
	/* hostname or IP literal, optional :port; the spec's grammar, loosely */
	size_t n = strlen(name);
	return n > 0 && n <= 255 && valid_server_name_chars(name);
}

/* federation.whitelist/blacklist entries are server names, in one list at
 * most; federation.connect_to entries look like HOST:PORT:HOST:PORT
 * (curl's CURLOPT_CONNECT_TO syntax). */
static int check_peer_lists(struct loader *ld, struct al_config *cfg)
{
	const struct config_string_list *wl = &cfg->fed_whitelist, *bl = &cfg->fed_blacklist;
	for (int i = 0; i < wl->count; i++)
		if (!valid_server_name(wl->items[i]))
			return fail(ld, "federation.whitelist", "'%s' is not a server name", wl->items[i]);
	for (int i = 0; i < bl->count; i++) {
		if (!valid_server_name(bl->items[i]))
			return fail(ld, "federation.blacklist", "'%s' is not a server name", bl->items[i]);
		for (int j = 0; j < wl->count; j++)
			if (strcasecmp(bl->items[i], wl->items[j]) == 0)
				return fail(ld, "federation.blacklist", "'%s' is also in federation.whitelist",
					    bl->items[i]);
	}
	for (int i = 0; i < cfg->fed_connect_to.count; i++) {
		const char *e = cfg->fed_connect_to.items[i];
		int colons = 0;
		for (const char *c = e; *c; c++)
			colons += *c == ':';
		if (strlen(e) > 512 || colons < 3 || !valid_server_name_chars(e))
			return fail(ld, "federation.connect_to",
				    "entry '%.64s' must look like HOST:PORT:CONNECT_HOST:CONNECT_PORT", e);
	}
	return 0;
}

static int load_settings(struct loader *ld, struct al_config *cfg)
{
	long long v = 0;
	double d = 0;

	if (get_string(ld, "server_name", cfg->server_name, sizeof(cfg->server_name), NULL) < 0)
		return -1;
	if (!valid_server_name(cfg->server_name))
		return fail(ld, "server_name", "'%s' is not a valid server name (host[:port])", cfg->server_name);
	if (get_string(ld, "well_known_server", cfg->well_known_server, sizeof(cfg->well_known_server),
		       cfg->server_name) < 0)
		return -1;
	if (get_string(ld, "public_baseurl", cfg->public_baseurl, sizeof(cfg->public_baseurl), "") < 0)
		return -1;
	if (load_listener(ld, "client", 8008, &cfg->client) < 0 ||
	    load_listener(ld, "federation", 8448, &cfg->federation) < 0)
		return -1;
	if (!cfg->public_baseurl[0])
		snprintf(cfg->public_baseurl, sizeof(cfg->public_baseurl), "http://localhost:%d", cfg->client.port);

	const char *env_db = getenv("DATABASE_URL");
	if (env_db && *env_db) {
		if (strlen(env_db) >= sizeof(cfg->conninfo))
			return fail(ld, "DATABASE_URL", "is too long");
		snprintf(cfg->conninfo, sizeof(cfg->conninfo), "%s", env_db);
	} else if (get_string(ld, "database.conninfo", cfg->conninfo, sizeof(cfg->conninfo), NULL) < 0) {
		return -1;
	}
	if (get_string(ld, "database.migrations_dir", cfg->migrations_dir, sizeof(cfg->migrations_dir), AL_SQL_DIR) < 0)
		return -1;
	if (get_string(ld, "signing_key_path", cfg->signing_key_path, sizeof(cfg->signing_key_path), NULL) < 0)
		return -1;
	if (get_int(ld, "key_validity_hours", 1, 24 * 7, 24, &v) < 0)
		return -1;
	cfg->key_validity_hours = (int)v;
	if (get_int(ld, "worker_threads", 1, 64, 2, &v) < 0)
		return -1;
	cfg->worker_threads = (int)v;
	if (get_string(ld, "log_level", cfg->log_level, sizeof(cfg->log_level), "info") < 0)
		return -1;
	if (strcmp(cfg->log_level, "debug") && strcmp(cfg->log_level, "info") && strcmp(cfg->log_level, "warn") &&
	    strcmp(cfg->log_level, "error"))
		return fail(ld, "log_level", "must be one of debug, info, warn, error");

	if (get_bool(ld, "registration.enabled", false, &cfg->registration_enabled) < 0 ||
	    get_bool(ld, "registration.allow_guests", false, &cfg->allow_guests) < 0)
		return -1;
	if (get_int(ld, "passwords.argon2_ops_limit", 0, 16, 0, &v) < 0)
		return -1;
	cfg->password_ops_limit = (int)v;
	if (get_int(ld, "passwords.argon2_mem_limit_kib", 0, 4 * 1024 * 1024, 0, &v) < 0)
		return -1;
	cfg->password_mem_limit = (size_t)v * 1024;

	if (get_int(ld, "limits.max_body_bytes", 1024, 64 * 1024 * 1024, 65536, &v) < 0)
		return -1;
	cfg->max_body_bytes = (size_t)v;
	if (get_int(ld, "limits.max_json_depth", 2, 128, 32, &v) < 0)
		return -1;
	cfg->max_json_depth = (int)v;
	if (get_float(ld, "limits.rate_per_second", 0, 1e6, 1.0, &d) < 0)
		return -1;
	cfg->rate_per_second = d;
	if (get_int(ld, "limits.rate_burst", 1, 1000000, 10, &v) < 0)
		return -1;
	cfg->rate_burst = (int)v;

	if (get_bool(ld, "federation.verify_tls", true, &cfg->fed_verify_tls) < 0 ||
	    get_string(ld, "federation.ca_file", cfg->fed_ca_file, sizeof(cfg->fed_ca_file), "") < 0 ||
	    get_bool(ld, "federation.allow_loopback", false, &cfg->fed_allow_loopback) < 0 ||
	    get_bool(ld, "federation.whitelist_only", false, &cfg->fed_whitelist_only) < 0 ||
	    get_list(ld, "federation.whitelist", &cfg->fed_whitelist) < 0 ||
	    get_list(ld, "federation.blacklist", &cfg->fed_blacklist) < 0 ||
	    get_list(ld, "federation.connect_to", &cfg->fed_connect_to) < 0 ||
	    get_list(ld, "admins", &cfg->admins) < 0 ||
	    get_bool(ld, "verification.dev_verifier", false, &cfg->dev_verifier) < 0)
		return -1;
	if (check_peer_lists(ld, cfg) < 0)
		return -1;
	if (get_int(ld, "federation.clock_skew_ms", 0, 24LL * 3600 * 1000, 300000, &v) < 0)
		return -1;
	cfg->fed_clock_skew_ms = v;
	if (get_int(ld, "federation.key_refetch_interval_seconds", 0, 86400, 30, &v) < 0)
		return -1;
	cfg->fed_key_refetch_interval_s = (int)v;
	if (get_int(ld, "federation.health_interval_seconds", 1, 86400, 60, &v) < 0)
		return -1;
	cfg->fed_health_interval_s = (int)v;
	if (get_string(ld, "rooms.default_room_version", cfg->default_room_version, sizeof(cfg->default_room_version),
		       "11") < 0)
		return -1;
	{
		char *end = NULL;
		long rv = strtol(cfg->default_room_version, &end, 10);
		if (!cfg->default_room_version[0] || *end || rv < 1 || rv > 11 || cfg->default_room_version[0] == '0')
			return fail(ld, "rooms.default_room_version", "must be a room version from 1 to 11");
	}
	if (get_int(ld, "mesh.online_window_seconds", 1, 3600, 90, &v) < 0)
		return -1;
	cfg->mesh_online_window_s = (int)v;
	if (get_int(ld, "mesh.flush_interval_ms", 10, 60000, 1000, &v) < 0)
		return -1;
	cfg->mesh_flush_interval_ms = (int)v;
	if (get_int(ld, "mesh.heartbeat_min_interval_ms", 0, 600000, 1000, &v) < 0)
		return -1;
	cfg->mesh_heartbeat_min_interval_ms = (int)v;
	const char *need_tls = cfg->federation.enabled ? NULL : "";
	if (get_string(ld, "listeners.federation.tls_certificate", cfg->tls_certificate, sizeof(cfg->tls_certificate),
		       need_tls) < 0 ||
	    get_string(ld, "listeners.federation.tls_private_key", cfg->tls_private_key, sizeof(cfg->tls_private_key),
		       need_tls) < 0)
		return -1;
	return 0;
}

static int load(struct loader *ld, struct al_config *cfg, int ok)
{
	int rc;
	memset(cfg, 0, sizeof(*cfg));
	if (!ok) {
		snprintf(ld->errbuf, ld->errlen, "config: line %d: %s", config_error_line(&ld->lc),
			 config_error_text(&ld->lc));
		rc = -1;
	} else {
		rc = load_settings(ld, cfg);
	}
	config_destroy(&ld->lc);
	if (rc < 0)
		config_free(cfg);
	return rc;
}

int config_load_file(const char *path, struct al_config *cfg, char *errbuf, size_t errlen)
{
	struct loader ld = {.errbuf = errbuf, .errlen = errlen};
	config_init(&ld.lc);
	int ok = config_read_file(&ld.lc, path) == CONFIG_TRUE;
	if (!ok && config_error_type(&ld.lc) == CONFIG_ERR_FILE_IO) {
		config_destroy(&ld.lc);
		memset(cfg, 0, sizeof(*cfg));
		snprintf(errbuf, errlen, "config: %s: cannot be read", path);
		return -1;
	}
	return load(&ld, cfg, ok);
}

int config_load_string(const char *text, struct al_config *cfg, char *errbuf, size_t errlen)
{
	struct loader ld = {.errbuf = errbuf, .errlen = errlen};
	config_init(&ld.lc);
	int ok = config_read_string(&ld.lc, text) == CONFIG_TRUE;
	return load(&ld, cfg, ok);
}

static void list_free(struct config_string_list *list)
{
	for (int i = 0; i < list->count; i++)
		free(list->items[i]);
	list->count = 0;
}

void config_free(struct al_config *cfg)
{
	list_free(&cfg->fed_whitelist);
	list_free(&cfg->fed_blacklist);
	list_free(&cfg->fed_connect_to);
	list_free(&cfg->admins);
}

bool config_list_contains(const struct config_string_list *list, const char *value)
{
	for (int i = 0; i < list->count; i++)
		if (strcmp(list->items[i], value) == 0)
			return true;
	return false;
}
