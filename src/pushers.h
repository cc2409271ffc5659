/* pushers.h - a user's push gateways (domain logic, no HTTP): POST
 * /pushers/set bodies validated, stored per (user, app_id, pushkey) with the
 * device that created them (they go with that device), listed, deleted
 * (kind null). Nothing is pushed yet. */
#ifndef AL_PUSHERS_H
#define AL_PUSHERS_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

#define PUSHERS_APP_ID_MAX 64   /* bytes, as the spec's maximum of 64 characters */
#define PUSHERS_PUSHKEY_MAX 512 /* bytes */
#define PUSHERS_NAME_MAX 255    /* app/device display names, profile_tag */
#define PUSHERS_LANG_MAX 64
#define PUSHERS_DATA_MAX 8192 /* bytes of data as JSON */
#define PUSHERS_PER_USER_MAX 100
#define PUSHERS_HTTP_PATH "/_matrix/push/v1/notify"

/* A POST /pushers/set body checked (no database): 0, or -1 with err 400
 * M_MISSING_PARAM / M_INVALID_PARAM / M_BAD_JSON. *deletes: kind is null. */
int pushers_validate(json_t *body, bool *deletes, struct al_error *err);

/* Apply a validated body for (user_id, device_id): store or replace the
 * pusher (app_id, pushkey), or delete it when kind is null. Unless append
 * is true, the same (app_id, pushkey) of other users is removed. A new
 * pusher past PUSHERS_PER_USER_MAX is refused (400 M_INVALID_PARAM). */
int pushers_set(struct db *db, const char *user_id, const char *device_id, json_t *body, struct al_error *err);

/* GET /pushers: {"pushers": [...]}. New reference. */
json_t *pushers_list(struct db *db, const char *user_id, struct al_error *err);

#endif
