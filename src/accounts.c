#include "accounts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit.h"
#include "b64.h"
#include "log.h"

/* Written once by accounts_init before any thread reads it. */
static char dummy_hash[ACCOUNTS_HASH_STR_MAX];

static void limits_of(const struct al_config *cfg, unsigned long long *ops, size_t *mem)
{
	*ops = cfg->password_ops_limit > 0 ? (unsigned long long)cfg->password_ops_limit
					   : crypto_pwhash_OPSLIMIT_INTERACTIVE;
	*mem = cfg->password_mem_limit > 0 ? cfg->password_mem_limit : crypto_pwhash_MEMLIMIT_INTERACTIVE;
}

int accounts_init(const struct al_config *cfg)
{
	unsigned char rnd[32];
	char pw[sizeof(rnd) * 2 + 1];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(pw, sizeof(pw), rnd, sizeof(rnd));
	int rc = accounts_password_hash(cfg, pw, dummy_hash);
	sodium_memzero(pw, sizeof(pw));
	if (rc < 0) {
		log_error("accounts", "cannot compute the dummy password hash (argon2 limits too high?)");
		return -1;
	}
	return 0;
}

/* ---- pure helpers ---- */

static bool localpart_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '=' || c == '-' ||
	       c == '/' || c == '+';
}

bool accounts_localpart_valid(const char *lp)
{
	if (!lp || !*lp)
		return false;
	for (const char *p = lp; *p; p++)
		if (!localpart_char(*p))
			return false;
	return true;
}

int accounts_localpart_lower(const char *in, char *out, size_t outlen)
{
	size_t n = strlen(in);
	if (n >= outlen)
		return -1;
	for (size_t i = 0; i < n; i++)
		out[i] = (in[i] >= 'A' && in[i] <= 'Z') ? (char)(in[i] - 'A' + 'a') : in[i];
	out[n] = '\0';
	return 0;
}

int accounts_user_id(const char *lp, const char *server_name, char *out, size_t outlen, struct al_error *err)
{
	if (!accounts_localpart_valid(lp))
		return al_error_set(err, 400, "M_INVALID_USERNAME",
				    "User ID may only contain a-z, 0-9, and . _ = - / +");
	int n = snprintf(out, outlen, "@%s:%s", lp, server_name);
	if (n < 0 || (size_t)n >= outlen || n > ACCOUNTS_USER_ID_MAX)
		return al_error_set(err, 400, "M_INVALID_USERNAME", "User ID is longer than %d bytes",
				    ACCOUNTS_USER_ID_MAX);
	return 0;
}

int accounts_login_user_id(const char *given, const char *server_name, char *out, size_t outlen)
{
	char lp[ACCOUNTS_USER_ID_MAX + 1];
	if (given[0] == '@') {
		const char *colon = strchr(given, ':');
		if (!colon || strcmp(colon + 1, server_name) != 0)
			return -1;
		size_t n = (size_t)(colon - given - 1);
		if (n == 0 || n >= sizeof(lp))
			return -1;
		memcpy(lp, given + 1, n);
		lp[n] = '\0';
	} else {
		if (strlen(given) >= sizeof(lp))
			return -1;
		snprintf(lp, sizeof(lp), "%s", given);
	}
	if (accounts_localpart_lower(lp, lp, sizeof(lp)) < 0 || !accounts_localpart_valid(lp))
		return -1;
	return accounts_user_id(lp, server_name, out, outlen, NULL);
}

void accounts_generate_localpart(char out[18])
{
	unsigned char rnd[8];
	randombytes_buf(rnd, sizeof(rnd));
	out[0] = 'u';
	sodium_bin2hex(out + 1, 17, rnd, sizeof(rnd));
}

void accounts_generate_device_id(char out[11])
{
	for (int i = 0; i < 10; i++)
		out[i] = (char)('A' + randombytes_uniform(26));
	out[10] = '\0';
}

bool accounts_device_id_valid(const char *id)
{
	size_t n = strlen(id);
	if (n < 1 || n > ACCOUNTS_DEVICE_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)id[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

size_t accounts_utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	return n;
}

/* ---- passwords ---- */

void accounts_secret_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

int accounts_password_hash(const struct al_config *cfg, const char *password, char out[ACCOUNTS_HASH_STR_MAX])
{
	unsigned long long ops;
	size_t mem;
	limits_of(cfg, &ops, &mem);
	if (crypto_pwhash_str_alg(out, password, strlen(password), ops, mem, crypto_pwhash_ALG_ARGON2ID13) != 0) {
		log_error("accounts", "argon2id hashing failed (out of memory?) ops=%llu mem_kib=%zu", ops, mem / 1024);
		return -1;
	}
	return 0;
}

bool accounts_password_verify(const char *hash, const char *password)
{
	bool known = hash != NULL;
	const char *h = known ? hash : dummy_hash;
	int rc = crypto_pwhash_str_verify(h, password, strlen(password));
	return known && rc == 0;
}

/* ---- tokens ---- */

int accounts_token_new(char **token, unsigned char hash[ACCOUNTS_TOKEN_HASH_BYTES])
{
	unsigned char raw[32];
	randombytes_buf(raw, sizeof(raw));
	*token = b64url_encode(raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	if (!*token)
		return -1;
	accounts_token_hash(*token, strlen(*token), hash);
	return 0;
}

void accounts_token_free(char *token)
{
	if (!token)
		return;
	sodium_memzero(token, strlen(token));
	free(token);
}

void accounts_token_hash(const char *token, size_t len, unsigned char hash[ACCOUNTS_TOKEN_HASH_BYTES])
{
	crypto_hash_sha256(hash, (const unsigned char *)token, len);
}

/* ---- database ---- */

void accounts_session_clear(struct accounts_session *s)
{
	accounts_token_free(s->access_token);
	memset(s, 0, sizeof(*s));
}

static int exec_ok(struct db *db, struct al_error *err, const char *sql, int n, const char *const *p)
{
	PGresult *r = db_exec(db, err, sql, n, p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

/* Device + token for user_id inside the open transaction. */
static int new_session(struct db *db, const char *user_id, const char *device_id, const char *display_name,
		       struct accounts_session *out, struct al_error *err)
{
	char gen[11];
	if (!device_id) {
		accounts_generate_device_id(gen);
		device_id = gen;
	}
	snprintf(out->user_id, sizeof(out->user_id), "%s", user_id);
	snprintf(out->device_id, sizeof(out->device_id), "%s", device_id);
	const char *p[3] = {user_id, device_id, display_name};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO devices (user_id, device_id, display_name) VALUES ($1, $2, $3)"
			      " ON CONFLICT (user_id, device_id) DO NOTHING RETURNING 1",
			      3, p);
	if (!r)
		return -1;
	out->device_reused = PQntuples(r) == 0;
	PQclear(r);
	if (out->device_reused &&
	    exec_ok(db, err, "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2", 2, p) < 0)
		return -1;
	if (accounts_token_new(&out->access_token, out->token_hash) < 0)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	char hex[ACCOUNTS_TOKEN_HASH_BYTES * 2 + 1];
	sodium_bin2hex(hex, sizeof(hex), out->token_hash, sizeof(out->token_hash));
	const char *tp[3] = {hex, user_id, device_id};
	return exec_ok(db, err,
		       "INSERT INTO access_tokens (token_hash, user_id, device_id)"
		       " VALUES (decode($1, 'hex'), $2, $3)",
		       3, tp);
}

int accounts_register(struct db *db, const struct accounts_new_user *u, struct accounts_session *out,
		      struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	if (db_begin(db, err) < 0)
		return -1;
	int conflict = 0;
	const char *p[4] = {u->user_id, u->localpart, u->password_hash, u->is_guest ? "t" : "f"};
	PGresult *r = db_exec_unique(db, err, &conflict,
				     "INSERT INTO users (user_id, localpart, password_hash, is_guest)"
				     " VALUES ($1, $2, $3, $4)",
				     4, p);
	if (!r) {
		if (conflict)
			al_error_set(err, 400, "M_USER_IN_USE", "User ID already taken.");
		goto fail;
	}
	PQclear(r);
	snprintf(out->user_id, sizeof(out->user_id), "%s", u->user_id);
	if (u->login && new_session(db, u->user_id, u->device_id, u->device_display_name, out, err) < 0)
		goto fail;
	if (db_commit(db, err) < 0)
		goto fail;
	return 0;
fail:
	db_rollback(db);
	accounts_session_clear(out);
	return -1;
}

int accounts_login(struct db *db, const char *user_id, const char *device_id, const char *display_name,
		   struct accounts_session *out, struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	if (db_begin(db, err) < 0)
		return -1;
	if (new_session(db, user_id, device_id, display_name, out, err) < 0 || db_commit(db, err) < 0) {
		db_rollback(db);
		accounts_session_clear(out);
		return -1;
	}
	return 0;
}

int accounts_login_lookup(struct db *db, const char *user_id, struct accounts_login_info *out, struct al_error *err)
{
	memset(out, 0, sizeof(*out));
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT password_hash, suspended_at IS NOT NULL, deactivated_at IS NOT NULL"
			      " FROM users WHERE user_id = $1",
			      1, p);
	if (!r)
		return -1;
	if (PQntuples(r) == 1) {
		out->found = true;
		out->has_password = !PQgetisnull(r, 0, 0) && strlen(PQgetvalue(r, 0, 0)) < sizeof(out->password_hash);
		if (out->has_password)
			snprintf(out->password_hash, sizeof(out->password_hash), "%s", PQgetvalue(r, 0, 0));
		out->suspended = PQgetvalue(r, 0, 1)[0] == 't';
		out->deactivated = PQgetvalue(r, 0, 2)[0] == 't';
	}
	PQclear(r);
	return 0;
}

int accounts_user_exists(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT 1 FROM users WHERE user_id = $1", 1, p);
	if (!r)
		return -1;
	int found = PQntuples(r) > 0;
	PQclear(r);
	return found;
}

int accounts_logout_device(struct db *db, const char *user_id, const char *device_id, struct al_error *err)
{
	const char *p[2] = {user_id, device_id};
	return exec_ok(db, err, "DELETE FROM devices WHERE user_id = $1 AND device_id = $2", 2, p);
}

int accounts_logout_all(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	return exec_ok(db, err, "DELETE FROM devices WHERE user_id = $1", 1, p);
}

int accounts_devices_delete(struct db *db, const char *user_id, const json_t *device_ids, struct al_error *err)
{
	char *ids = json_dumps(device_ids, JSON_COMPACT);
	if (!ids)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[2] = {user_id, ids};
	int rc = exec_ok(db, err,
			 "DELETE FROM devices WHERE user_id = $1"
			 " AND device_id IN (SELECT json_array_elements_text($2::json))",
			 2, p);
	free(ids);
	return rc;
}

struct password_change {
	const char *user_id, *hash, *keep_device;
	bool logout_others;
};

static int change_password(struct db *db, const void *arg, struct al_error *err)
{
	const struct password_change *c = arg;
	const char *p[2] = {c->user_id, c->hash};
	if (exec_ok(db, err, "UPDATE users SET password_hash = $2 WHERE user_id = $1", 2, p) < 0)
		return -1;
	if (!c->logout_others)
		return 0;
	const char *q[2] = {c->user_id, c->keep_device ? c->keep_device : ""};
	return exec_ok(db, err, "DELETE FROM devices WHERE user_id = $1 AND device_id <> $2", 2, q);
}

int accounts_set_password(struct db *db, const char *user_id, const char *password_hash, const char *logout_except,
			  bool logout_others, struct al_error *err)
{
	struct password_change c = {user_id, password_hash, logout_except, logout_others};
	return db_transaction(db, err, change_password, &c);
}

static int deactivate(struct db *db, const void *arg, struct al_error *err)
{
	const char *user_id = arg;
	const char *p[1] = {user_id};
	if (exec_ok(db, err, "UPDATE users SET deactivated_at = now(), password_hash = NULL WHERE user_id = $1", 1, p) <
		    0 ||
	    exec_ok(db, err, "DELETE FROM devices WHERE user_id = $1", 1, p) < 0 ||
	    exec_ok(db, err, "UPDATE aura_id_registry SET status = 'inactive' WHERE user_id = $1", 1, p) < 0)
		return -1;
	return audit_append(db, "identity", "account.deactivate", user_id, user_id, NULL, NULL, err);
}

int accounts_deactivate(struct db *db, const char *user_id, struct al_error *err)
{
	return db_transaction(db, err, deactivate, user_id);
}

int accounts_erase(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	return exec_ok(db, err, "UPDATE users SET erased = true WHERE user_id = $1", 1, p);
}

static json_t *device_json(PGresult *r, int row)
{
	json_t *d = json_pack("{s:s}", "device_id", PQgetvalue(r, row, 0));
	if (!d)
		return NULL;
	if (!PQgetisnull(r, row, 1))
		json_object_set_new(d, "display_name", json_string(PQgetvalue(r, row, 1)));
	if (!PQgetisnull(r, row, 2))
		json_object_set_new(d, "last_seen_ip", json_string(PQgetvalue(r, row, 2)));
	if (!PQgetisnull(r, row, 3))
		json_object_set_new(d, "last_seen_ts", json_integer(strtoll(PQgetvalue(r, row, 3), NULL, 10)));
	return d;
}

#define DEVICE_COLUMNS "device_id, display_name, last_seen_ip, (extract(epoch FROM last_seen_at) * 1000)::bigint"

json_t *accounts_devices_list(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT " DEVICE_COLUMNS " FROM devices WHERE user_id = $1 ORDER BY device_id"
			      " LIMIT 10000",
			      1, p);
	if (!r)
		return NULL;
	json_t *list = json_array();
	for (int i = 0; list && i < PQntuples(r); i++)
		json_array_append_new(list, device_json(r, i));
	PQclear(r);
	json_t *out = list ? json_pack("{s:o}", "devices", list) : NULL;
	if (!out)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return out;
}

json_t *accounts_device_get(struct db *db, const char *user_id, const char *device_id, struct al_error *err)
{
	const char *p[2] = {user_id, device_id};
	PGresult *r = db_exec(db, err, "SELECT " DEVICE_COLUMNS " FROM devices WHERE user_id = $1 AND device_id = $2",
			      2, p);
	if (!r)
		return NULL;
	json_t *d = NULL;
	if (PQntuples(r) == 0)
		al_error_set(err, 404, "M_NOT_FOUND", "Unknown device");
	else if (!(d = device_json(r, 0)))
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	PQclear(r);
	return d;
}

int accounts_device_set_name(struct db *db, const char *user_id, const char *device_id, const char *display_name,
			     struct al_error *err)
{
	const char *p[3] = {user_id, device_id, display_name};
	PGresult *r = db_exec(db, err, "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2", 3,
			      p);
	if (!r)
		return -1;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	return n ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Unknown device");
}

json_t *accounts_profile_get(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT displayname, avatar_url FROM users"
			      " WHERE user_id = $1 AND deactivated_at IS NULL",
			      1, p);
	if (!r)
		return NULL;
	json_t *o = NULL;
	if (PQntuples(r) == 0) {
		al_error_set(err, 404, "M_NOT_FOUND", "Profile not found");
	} else if ((o = json_object())) {
		if (!PQgetisnull(r, 0, 0))
			json_object_set_new(o, "displayname", json_string(PQgetvalue(r, 0, 0)));
		if (!PQgetisnull(r, 0, 1))
			json_object_set_new(o, "avatar_url", json_string(PQgetvalue(r, 0, 1)));
	} else {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	PQclear(r);
	return o;
}

int accounts_profile_set(struct db *db, const char *user_id, const char *field, const char *value, struct al_error *err)
{
	const char *sql;
	if (strcmp(field, "displayname") == 0)
		sql = "UPDATE users SET displayname = $2 WHERE user_id = $1";
	else if (strcmp(field, "avatar_url") == 0)
		sql = "UPDATE users SET avatar_url = $2 WHERE user_id = $1";
	else
		return al_error_set(err, 500, "M_UNKNOWN", "unknown profile field");
	const char *p[2] = {user_id, value};
	PGresult *r = db_exec(db, err, sql, 2, p);
	if (!r)
		return -1;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	return n ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Profile not found");
}

struct suspension {
	const char *user_id;
	bool suspended;
};

static int suspend(struct db *db, const void *arg, struct al_error *err)
{
	const struct suspension *x = arg;
	const char *p[2] = {x->user_id, x->suspended ? "t" : "f"};
	PGresult *r = db_exec(db, err,
			      "UPDATE users SET suspended_at = CASE WHEN $2::boolean"
			      " THEN coalesce(suspended_at, now()) ELSE NULL END WHERE user_id = $1",
			      2, p);
	if (!r)
		return -1;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	if (!n)
		return al_error_set(err, 404, "M_NOT_FOUND", "Unknown user");
	return exec_ok(db, err,
		       "UPDATE aura_id_registry SET status = CASE WHEN $2::boolean THEN 'suspended'"
		       " ELSE 'active' END WHERE user_id = $1",
		       2, p);
}

int accounts_suspend(struct db *db, const char *user_id, bool suspended, struct al_error *err)
{
	struct suspension x = {user_id, suspended};
	return db_transaction(db, err, suspend, &x);
}

int accounts_grant_admin(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err, "UPDATE users SET is_admin = true WHERE user_id = $1", 1, p);
	if (!r)
		return -1;
	int n = atoi(PQcmdTuples(r));
	PQclear(r);
	return n ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "no such user %s", user_id);
}

int accounts_is_admin(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[1] = {user_id};
	PGresult *r = db_exec(db, err, "SELECT is_admin FROM users WHERE user_id = $1", 1, p);
	if (!r)
		return -1;
	int admin = PQntuples(r) == 1 && PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return admin;
}
