/* aura_id.h - AuraIDs (@name.aura): claim, settings, verification, search
 * and resolution, with an in-memory cache of resolved records, an
 * in-memory search index and batched last_used_at writes. Domain module: no HTTP; records are JSON objects with
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
 * {aura_id, user_id, display_name, avatar_url, is_verified}. Served from
 * the in-memory index (aura_search.h) when it is current; from one SQL
 * statement on db otherwise (before the first load, after notifications
 * were lost, and for terms with non-ASCII bytes when the database's
 * lower() folds beyond ASCII). */
int aura_id_search(struct app *app, struct db *db, const char *q, int limit, json_t **out,
		   struct al_error *err);

/* After this process changed a user's row in `users` (display name,
 * avatar, suspension, deactivation: copied into her AuraID by a trigger),
 * once committed: re-read her AuraID for the search index and drop its
 * resolved copy, so the change shows here at once (other processes learn
 * of it through NOTIFY auralink_aura_id). One query; -1 when it failed
 * (the notification still brings the change, a moment later). */
int aura_id_user_changed(struct app *app, struct db *db, const char *user_id);

/* Resolve a handle for `viewer`: the JSON answer (malloc'd, *len bytes) or
 * NULL with 404 M_NOT_FOUND when unknown, not active or not visible to her.
 * *unknown (may be NULL) is set when the handle is well formed and no AuraID
 * by that name is hosted here at all, so the caller may ask federation; it
 * stays false for a handle that exists here but is hidden, private,
 * suspended or inactive (those are never looked up elsewhere). Served from
 * the cache when possible; records the use for last_used_at. */
char *aura_id_resolve(struct app *app, struct db *db, const char *viewer, const char *handle,
		      size_t *len, bool *unknown, struct al_error *err);

/* The privacy rule without the database: who may see an AuraID of the
 * given privacy level. The owner always; public -> everyone; private ->
 * nobody else; friends -> AURA_ID_IF_FRIENDS (viewer NULL, an anonymous or
 * remote asker: hidden). */
enum aura_id_visibility { AURA_ID_HIDDEN, AURA_ID_VISIBLE, AURA_ID_IF_FRIENDS };
enum aura_id_visibility aura_id_visibility(const char *viewer, const char *owner,
					   const char *privacy_level);

/* The one function that decides whether viewer may see owner's AuraID:
 * aura_id_visibility(), and for AURA_ID_IF_FRIENDS one indexed query: are
 * viewer and owner both currently joined to at least one common room?
 * 1 visible, 0 not, -1 database error (err filled). Call it without any
 * lock held. */
int aura_id_visible_to(struct db *db, const char *viewer, const char *owner, const char *privacy_level,
		       struct al_error *err);

/* 0 when handle is an active AuraID hosted here and visible to viewer
 * (NULL: anonymous); 404 M_NOT_FOUND otherwise, 500 on database errors.
 * Through the resolve cache; does not count as a use. */
int aura_id_check_visible(struct app *app, struct db *db, const char *viewer, const char *handle,
			  struct al_error *err);

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
