/* presence.h - users' presence: online, unavailable or offline, a status
 * message and the time of last activity (domain logic, no HTTP). PostgreSQL
 * (the presence table) is the truth; a change of state or message takes a
 * stream position so /sync reports it as an m.presence event. A user with
 * no row is offline. A user sees her own presence and that of the users
 * she shares a joined room with. */
#ifndef AL_PRESENCE_H
#define AL_PRESENCE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

#define PRESENCE_STATUS_MSG_MAX 1024 /* bytes */
#define PRESENCE_ACTIVE_MS 60000     /* currently_active window, last_active refresh step */
#define PRESENCE_IDLE_MS (5 * 60000) /* online but inactive this long reads as unavailable */

/* "online", "unavailable" or "offline"? */
bool presence_state_valid(const char *s);

/* PUT /presence/{userId}/status by the user herself: state (valid) and
 * status_msg (NULL clears it; at most PRESENCE_STATUS_MSG_MAX bytes). */
int presence_set(struct db *db, const char *user_id, const char *state, const char *status_msg, int64_t now_ms,
		 struct al_error *err);

/* A /sync with set_presence=state: the state becomes state (status message
 * kept) when it differs, else last activity is refreshed at most every
 * PRESENCE_ACTIVE_MS. One primary-key read when nothing changes.
 * *changed: a new stream position was written (wake parked syncs). */
int presence_touch(struct db *db, const char *user_id, const char *state, int64_t now_ms, bool *changed,
		   struct al_error *err);

/* GET /presence/{userId}/status as viewer: {presence, last_active_ago,
 * currently_active, status_msg}. 403 M_FORBIDDEN when viewer may not see
 * user_id's presence. New reference. */
json_t *presence_get(struct db *db, const char *viewer, const char *user_id, int64_t now_ms, struct al_error *err);

/* m.presence events for user_id's /sync: the users she may see whose
 * presence changed in (since, upto] (since 0: all of them), and in an
 * incremental sync those she newly shares a joined room with. New array. */
json_t *presence_sync_events(struct db *db, const char *user_id, int64_t since, int64_t upto, int64_t now_ms,
			     struct al_error *err);

#endif
