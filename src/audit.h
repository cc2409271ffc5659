/* audit.h - the append-only, hash-chained federation_audit_log. Each entry
 * carries the hash of the previous one: entry_hash = sha256(canonical JSON of
 * {category, action, actor, target, origin_server, details, created_at} ||
 * prev_hash). Write it in the same transaction as the action it records. */
#ifndef AL_AUDIT_H
#define AL_AUDIT_H

#include <jansson.h>

#include "db.h"
#include "error.h"

/* category: identity|federation|keys|mesh|abuse|admin. actor, target,
 * origin_server may be NULL; details may be NULL (borrowed, not stolen). */
int audit_append(struct db *db, const char *category, const char *action, const char *actor,
		 const char *target, const char *origin_server, json_t *details, struct al_error *err);

#endif
