/* apps.h - cross-app connections (the apps where an AuraID's calls ring)
 * and notification preferences, stored in cross_app_connections and
 * notification_preferences. Domain module: JSON in, JSON out, no HTTP.
 * Every function needs the caller to have an AuraID (404
 * ORG_AURALINK_NO_AURA_ID otherwise). Timestamps are ms since the epoch. */
#ifndef AL_APPS_H
#define AL_APPS_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"
#include "notify.h"

#define APPS_MAX_ACTIVE 64         /* active connections per AuraID */
#define APPS_MAX_PERMISSIONS 32
#define APPS_NAME_MAX 128          /* characters */
#define APPS_SDK_VERSION_MAX 32    /* bytes */

/* app_id 1-128 of [A-Za-z0-9._-]. */
bool apps_id_valid(const char *app_id);

/* POST /apps: validate the body and connect (or reconnect: same app_id
 * updates the record and reactivates it). *created tells which. */
int apps_connect(struct db *db, const char *user_id, const json_t *body, json_t **out,
		 bool *created, struct al_error *err);
/* Active connections, oldest first: {apps: [...]}. */
int apps_list(struct db *db, const char *user_id, json_t **out, struct al_error *err);
/* Revoke (is_active = false, revoked_at = now); 404 M_NOT_FOUND when no
 * such active connection. */
int apps_revoke(struct db *db, const char *user_id, const char *app_id, json_t **out,
		struct al_error *err);

/* Stored preferences or the defaults: notify_prefs_to_json + aura_id,
 * updated_at (null when never stored). */
int apps_prefs_get(struct db *db, const char *user_id, json_t **out, struct al_error *err);
/* PUT: fields given replace the stored (or default) ones; validated by
 * notify_prefs_apply_json against the user's active connections. */
int apps_prefs_put(struct db *db, const char *user_id, const json_t *body, json_t **out,
		   struct al_error *err);

/* For the calls layer: the preferences of an AuraID (defaults when none). */
int apps_prefs_load(struct db *db, const char *aura_id, struct notify_prefs *prefs,
		    struct al_error *err);
/* For the calls layer: the IDs of the AuraID's active connections, oldest
 * first (the order notify_targets rings them in), at most max. Returns how
 * many or -1. */
int apps_active_ids(struct db *db, const char *aura_id, char (*ids)[NOTIFY_APP_ID_MAX + 1], int max,
		    struct al_error *err);

#endif
