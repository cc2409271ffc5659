/* audit.h - the append-only, hash-chained federation_audit_log. Each entry
 * carries the hash of the previous one: entry_hash = sha256(canonical JSON of
 * {category, action, actor, target, origin_server, details, created_at} ||
 * prev_hash). Write it in the same transaction as the action it records. */
#ifndef AL_AUDIT_H
#define AL_AUDIT_H

#include <jansson.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

/* category: identity|federation|keys|mesh|abuse|admin. actor, target,
 * origin_server may be NULL; details may be NULL (borrowed, not stolen).
 * Joins the caller's open transaction (takes an advisory lock that
 * serialises writers until it ends); without one it runs in its own. */
int audit_append(struct db *db, const char *category, const char *action, const char *actor, const char *target,
		 const char *origin_server, json_t *details, struct al_error *err);

/* audit_append in two steps, so that the caller's statements share their
 * round trips. audit_lock: the caller's statements (before[0..nbefore),
 * at most AUDIT_MAX_BEFORE; a BEGIN may be the first), then the audit lock
 * and the chain's tip, in one round trip; before[i].result are then the
 * caller's (PQclear). audit_commit: the entry on that tip and COMMIT in
 * one round trip. Both 0, or -1 with err: roll back (when COMMIT itself
 * failed the outcome is unknown). */
#define AUDIT_MAX_BEFORE 4
#define AUDIT_HASH_BYTES 32
struct audit_tip {
	unsigned char prev[AUDIT_HASH_BYTES];
};
int audit_lock(struct db *db, struct db_stmt *before, int nbefore, struct audit_tip *tip, struct al_error *err);
int audit_commit(struct db *db, const struct audit_tip *tip, const char *category, const char *action,
		 const char *actor, const char *target, const char *origin_server, json_t *details,
		 struct al_error *err);

/* Recompute the whole chain in one pass (batched reads). *entries gets
 * the number of entries, *first_bad_id the id of the first entry whose
 * prev_hash or entry_hash does not match (0 when the chain is intact).
 * Returns 0 (whether or not the chain is intact) or -1 on a database
 * error. */
int audit_verify(struct db *db, int64_t *entries, int64_t *first_bad_id, struct al_error *err);

/* ---- pure, for unit tests ---- */

/* entry_hash of an entry. details NULL means {}. Returns 0, or -1 with err
 * filled when the fields cannot be canonicalised. */
int audit_entry_hash(const char *category, const char *action, const char *actor, const char *target,
		     const char *origin_server, const json_t *details, int64_t created_ms,
		     const unsigned char prev_hash[AUDIT_HASH_BYTES], unsigned char out[AUDIT_HASH_BYTES],
		     struct al_error *err);

#endif
