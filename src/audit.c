#include "audit.h"

#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cjson.h"
#include "log.h"

/* pg_advisory_xact_lock key that serialises audit writers. */
#define AUDIT_LOCK_ID "7246914"
#define AUDIT_VERIFY_BATCH "1000"

static json_t *str_or_null(const char *s)
{
	return s ? json_string(s) : json_null();
}

int audit_entry_hash(const char *category, const char *action, const char *actor, const char *target,
		     const char *origin_server, const json_t *details, int64_t created_ms,
		     const unsigned char prev_hash[AUDIT_HASH_BYTES], unsigned char out[AUDIT_HASH_BYTES],
		     struct al_error *err)
{
	if (details && !json_is_object(details))
		return al_error_set(err, 500, "M_UNKNOWN", "audit details must be an object");
	json_t *d = details ? json_incref((json_t *)details) : json_object();
	json_t *o = json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:I}", "category", str_or_null(category), "action",
			      str_or_null(action), "actor", str_or_null(actor), "target", str_or_null(target),
			      "origin_server", str_or_null(origin_server), "details", d, "created_at",
			      (json_int_t)created_ms);
	if (!o)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	size_t len = 0;
	char *text = cjson_encode(o, &len, err);
	json_decref(o);
	if (!text)
		return -1;
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)text, len);
	crypto_hash_sha256_update(&st, prev_hash, AUDIT_HASH_BYTES);
	crypto_hash_sha256_final(&st, out);
	free(text);
	return 0;
}

static int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int hex_to_hash(const char *hex, unsigned char out[AUDIT_HASH_BYTES])
{
	size_t n = 0;
	if (sodium_hex2bin(out, AUDIT_HASH_BYTES, hex, strlen(hex), NULL, &n, NULL) != 0 || n != AUDIT_HASH_BYTES)
		return -1;
	return 0;
}

int audit_lock(struct db *db, struct db_stmt *before, int nbefore, struct audit_tip *tip, struct al_error *err)
{
	if (nbefore < 0 || nbefore > AUDIT_MAX_BEFORE)
		return al_error_set(err, 500, "M_UNKNOWN", "too many statements before the audit lock");
	struct db_stmt st[AUDIT_MAX_BEFORE + 2];
	for (int i = 0; i < nbefore; i++)
		st[i] = before[i];
	st[nbefore] = (struct db_stmt){.sql = "SELECT pg_advisory_xact_lock(" AUDIT_LOCK_ID ")"};
	st[nbefore + 1] = (struct db_stmt){
		.sql = "SELECT encode(entry_hash, 'hex') FROM federation_audit_log ORDER BY id DESC LIMIT 1"};
	if (db_pipeline(db, st, nbefore + 2, NULL, err) < 0)
		return -1;
	for (int i = 0; i < nbefore; i++)
		before[i].result = st[i].result;
	PQclear(st[nbefore].result);
	PGresult *r = st[nbefore + 1].result;
	memset(tip->prev, 0, sizeof(tip->prev));
	int bad = PQntuples(r) == 1 && hex_to_hash(PQgetvalue(r, 0, 0), tip->prev) < 0;
	PQclear(r);
	if (bad)
		return al_error_set(err, 500, "M_UNKNOWN", "audit log tip is malformed");
	return 0;
}

/* The entry after tip; commit: COMMIT in the same round trip. */
static int entry_write(struct db *db, const struct audit_tip *tip, const char *category, const char *action,
		       const char *actor, const char *target, const char *origin_server, json_t *details, bool commit,
		       struct al_error *err)
{
	int64_t ms = wall_ms();
	unsigned char hash[AUDIT_HASH_BYTES];
	if (audit_entry_hash(category, action, actor, target, origin_server, details, ms, tip->prev, hash, err) < 0)
		return -1;
	char *details_text = details ? cjson_encode(details, NULL, err) : strdup("{}");
	if (!details_text)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	char ms_s[24], prev_hex[AUDIT_HASH_BYTES * 2 + 1], hash_hex[AUDIT_HASH_BYTES * 2 + 1];
	snprintf(ms_s, sizeof(ms_s), "%lld", (long long)ms);
	sodium_bin2hex(prev_hex, sizeof(prev_hex), tip->prev, sizeof(tip->prev));
	sodium_bin2hex(hash_hex, sizeof(hash_hex), hash, sizeof(hash));
	const char *p[9] = {category, action, actor, target, origin_server, details_text, ms_s, prev_hex, hash_hex};
	struct db_stmt ins[2] = {
		{.sql = "INSERT INTO federation_audit_log (category, action, actor, target, origin_server,"
			" details, created_at, created_ms, prev_hash, entry_hash)"
			" VALUES ($1, $2, $3, $4, $5, $6::jsonb, to_timestamp($7::bigint / 1000.0), $7::bigint,"
			" decode($8, 'hex'), decode($9, 'hex'))",
		 .nparams = 9,
		 .params = p},
		{.sql = "COMMIT"},
	};
	int rc = db_pipeline(db, ins, commit ? 2 : 1, NULL, err);
	free(details_text);
	if (rc < 0)
		return -1;
	PQclear(ins[0].result);
	if (commit)
		PQclear(ins[1].result);
	return 0;
}

int audit_commit(struct db *db, const struct audit_tip *tip, const char *category, const char *action,
		 const char *actor, const char *target, const char *origin_server, json_t *details,
		 struct al_error *err)
{
	return entry_write(db, tip, category, action, actor, target, origin_server, details, true, err);
}

struct audit_entry {
	const char *category, *action, *actor, *target, *origin_server;
	json_t *details;
};

static int append(struct db *db, const void *arg, struct al_error *err)
{
	const struct audit_entry *e = arg;
	struct audit_tip tip;
	if (audit_lock(db, NULL, 0, &tip, err) < 0)
		return -1;
	return entry_write(db, &tip, e->category, e->action, e->actor, e->target, e->origin_server, e->details, false,
			   err);
}

int audit_append(struct db *db, const char *category, const char *action, const char *actor, const char *target,
		 const char *origin_server, json_t *details, struct al_error *err)
{
	struct audit_entry e = {category, action, actor, target, origin_server, details};
	return db_transaction(db, err, append, &e);
}

static const char *nullable(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* true if row `row` of a verify batch is consistent with expected prev. */
static bool entry_ok(PGresult *r, int row, const unsigned char prev[AUDIT_HASH_BYTES],
		     unsigned char stored_hash[AUDIT_HASH_BYTES])
{
	unsigned char stored_prev[AUDIT_HASH_BYTES], computed[AUDIT_HASH_BYTES];
	bool hashes_ok = hex_to_hash(PQgetvalue(r, row, 8), stored_prev) == 0 &&
			 hex_to_hash(PQgetvalue(r, row, 9), stored_hash) == 0;
	if (!hashes_ok) {
		memset(stored_hash, 0xff, AUDIT_HASH_BYTES);
		return false;
	}
	if (PQgetisnull(r, row, 7) || memcmp(stored_prev, prev, AUDIT_HASH_BYTES) != 0)
		return false;
	struct al_error err = {0};
	const char *dtext = PQgetvalue(r, row, 6);
	json_t *details = cjson_parse(dtext, strlen(dtext), NULL, &err);
	if (!details)
		return false;
	int rc = audit_entry_hash(nullable(r, row, 1), nullable(r, row, 2), nullable(r, row, 3), nullable(r, row, 4),
				  nullable(r, row, 5), details, strtoll(PQgetvalue(r, row, 7), NULL, 10), prev,
				  computed, &err);
	json_decref(details);
	return rc == 0 && memcmp(computed, stored_hash, AUDIT_HASH_BYTES) == 0;
}

int audit_verify(struct db *db, int64_t *entries, int64_t *first_bad_id, struct al_error *err)
{
	*entries = 0;
	*first_bad_id = 0;
	unsigned char prev[AUDIT_HASH_BYTES] = {0};
	char after[24] = "0";
	for (;;) {
		const char *p[1] = {after};
		PGresult *r = db_exec(db, err,
				      "SELECT id, category, action, actor, target, origin_server,"
				      " details::text, created_ms, encode(prev_hash, 'hex'),"
				      " encode(entry_hash, 'hex')"
				      " FROM federation_audit_log WHERE id > $1::bigint ORDER BY id"
				      " LIMIT " AUDIT_VERIFY_BATCH,
				      1, p);
		if (!r)
			return -1;
		int n = PQntuples(r);
		for (int i = 0; i < n; i++) {
			unsigned char stored[AUDIT_HASH_BYTES];
			if (!entry_ok(r, i, prev, stored) && *first_bad_id == 0)
				*first_bad_id = strtoll(PQgetvalue(r, i, 0), NULL, 10);
			/* Chain on from what is stored, so that one altered entry
			 * is reported as itself and not as everything after it. */
			memcpy(prev, stored, sizeof(prev));
			(*entries)++;
		}
		if (n > 0)
			snprintf(after, sizeof(after), "%s", PQgetvalue(r, n - 1, 0));
		PQclear(r);
		if (n == 0)
			break;
	}
	if (*first_bad_id)
		log_warn("audit", "chain verification failed first_bad_entry=%lld entries=%lld",
			 (long long)*first_bad_id, (long long)*entries);
	return 0;
}
