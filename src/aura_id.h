/* aura_id.h - AuraIDs (@name.aura): claim, settings, verification, search
 * and resolution, with an in-memory cache of resolved records and batched
 * last_used_at writes. Domain module: no HTTP; records are JSON objects with
 * the column names of aura_id_registry, timestamps in milliseconds since the
 * epoch (null when unset).
 *
 * Errors (al_error): 400 M_INVALID_PARAM for malformed input, 400
 * ORG_AURALINK_AURA_ID_RESERVED, 409 ORG_AURALINK_AURA_ID_IN_USE (handle
 * taken, case-insensitively), 409 ORG_AURALINK_AURA_ID_EXISTS (the user
 * already has one), 404 ORG_AURALINK_NO_AURA_ID (the user has none), 404
 * M_NOT_FOUND (unknown or not visible), 501 ORG_AURALINK_VERIFIER_UNAVAILABLE,
 * 400 ORG_AURALINK_VERIFICATION_NOT_STARTED / _EXPIRED,
 * ORG_AURALINK_INVALID_CODE, 403 ORG_AURALINK_VERIFICATION_LOCKED. */
#ifndef AL_AURA_ID_H
#define AL_AURA_ID_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "app.h"
#include "db.h"
#include "error.h"

#define AURA_ID_USERNAME_MIN 3
#define AURA_ID_USERNAME_MAX 30
#define AURA_ID_MAX 40              /* "@" + 30 + ".aura" + NUL fits */
#define AURA_ID_SEARCH_MAX_LIMIT 50
#define AURA_ID_SEARCH_DEFAULT_LIMIT 10
#define AURA_ID_SEARCH_MAX_QUERY 64 /* characters */
#define AURA_ID_MAX_FEDERATED_DOMAINS 100
#define AURA_ID_METADATA_MAX_BYTES 4096 /* canonical JSON */
#define AURA_ID_METADATA_MAX_DEPTH 5
#define AURA_ID_VERIFY_MAX_ATTEMPTS 5
#define AURA_ID_VERIFY_TTL_SECONDS 900

/* Module state (cache, pending last_used_at touches, verifier) in
 * app->aura_id. aura_id_start needs app->main_base and app->maint_db: it
 * listens for changes made by other processes and flushes touches every
 * few seconds. aura_id_stop flushes once more and frees everything. */
int aura_id_start(struct app *app);
void aura_id_stop(struct app *app);

/* 3-30 of [A-Za-z0-9_-]. */
bool aura_id_username_valid(const char *username);
/* admin, root, support, ... (case-insensitive). */
bool aura_id_username_reserved(const char *username);
/* "@name.aura" (the '@' optional) -> "name"; false when malformed. */
bool aura_id_parse(const char *handle, char *username, size_t len);

/* Claim @username.aura for user_id. privacy_level NULL = public;
 * federation_enabled < 0 = default (true). *out: the new record. */
int aura_id_create(struct app *app, struct db *db, const char *user_id, const char *username,
		   const char *privacy_level, int federation_enabled, json_t **out,
		   struct al_error *err);

int aura_id_get_own(struct db *db, const char *user_id, json_t **out, struct al_error *err);

/* The user's handle into out (AURA_ID_MAX bytes); 404 ORG_AURALINK_NO_AURA_ID
 * when she has none. */
int aura_id_of_user(struct db *db, const char *user_id, char *out, struct al_error *err);

/* PATCH /aura_id/me: validates every field of `changes` (unknown fields are
 * refused), applies them in one transaction with an audit entry. */
int aura_id_update(struct app *app, struct db *db, const char *user_id, const json_t *changes,
		   json_t **out, struct al_error *err);

/* Valid and not reserved: is the handle free? Invalid names: 400. */
int aura_id_available(struct db *db, const char *username, bool *available, struct al_error *err);

/* Discoverable AuraIDs matching q (prefix or substring of the handle or the
 * display name), exact > prefix > substring, then by handle. *out: array of
 * {aura_id, user_id, display_name, avatar_url, is_verified}. */
int aura_id_search(struct db *db, const char *q, int limit, json_t **out, struct al_error *err);

/* Resolve a handle for `viewer`: the JSON answer (malloc'd, *len bytes) or
 * NULL with 404 M_NOT_FOUND when unknown, not active or not visible to her.
 * Served from the cache when possible; records the use for last_used_at. */
char *aura_id_resolve(struct app *app, struct db *db, const char *viewer, const char *handle,
		      size_t *len, struct al_error *err);

/* Who may see an AuraID of the given privacy level: public -> everyone;
 * private -> the owner; friends -> the owner and users sharing a joined
 * room with her (rooms do not exist yet: the owner only). The one place
 * this rule lives. */
bool aura_id_visible_to(struct db *db, const char *viewer, const char *owner,
			const char *privacy_level);

/* Verification: without a code, issue one through the configured verifier
 * (*out: {method, expires_in_ms}); with a code, check it and mark the AuraID
 * verified (*out: the record). method: phone|email|kyc. */
int aura_id_verify_request(struct app *app, struct db *db, const char *user_id, const char *method,
			   json_t **out, struct al_error *err);
int aura_id_verify_confirm(struct app *app, struct db *db, const char *user_id, const char *method,
			   const char *code, json_t **out, struct al_error *err);

/* Drop cached copies (this process) so the next resolve reads PostgreSQL.
 * Other processes learn of changes through NOTIFY auralink_aura_id. */
void aura_id_cache_forget(struct app *app, const char *aura_id);
void aura_id_cache_forget_all(struct app *app);

/* Flush pending last_used_at touches now through app->maint_db (main
 * thread only). Returns the number of handles written or -1. */
int aura_id_flush_touches(struct app *app);

#endif
