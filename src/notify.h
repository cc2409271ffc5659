/* notify.h - notification preferences of an AuraID and the pure decision of
 * which connected apps ring for an incoming call (notify_targets). No I/O:
 * the database side lives in apps.c, the HTTP side in handlers_apps.c.
 *
 * Days are 0 (Sunday) .. 6 (Saturday); times are minutes after midnight
 * (0 .. 1439) in the user's local time, -1 when unset. */
#ifndef AL_NOTIFY_H
#define AL_NOTIFY_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"

#define NOTIFY_APP_ID_MAX 128 /* bytes, as POST /apps allows */
#define NOTIFY_MAX_PREFERRED 32
#define NOTIFY_RING_TIMEOUT_MIN 5
#define NOTIFY_RING_TIMEOUT_MAX 120

struct notify_prefs {
	char preferred_apps[NOTIFY_MAX_PREFERRED][NOTIFY_APP_ID_MAX + 1];
	int npreferred;
	bool smart_routing_enabled;
	char work_app_id[NOTIFY_APP_ID_MAX + 1];     /* "" = none */
	char personal_app_id[NOTIFY_APP_ID_MAX + 1]; /* "" = none */
	int work_hours_start;                        /* minutes, -1 = unset */
	int work_hours_end;
	unsigned work_days; /* bit d = day d */
	bool dnd_enabled;
	int dnd_start;
	int dnd_end;
	unsigned dnd_days;
	bool ring_all_apps;
	int ring_timeout_seconds;
	bool call_screening_enabled;
};

struct notify_app {
	const char *app_id;
	bool is_active;
};

enum notify_call_kind { NOTIFY_CALL_PERSONAL, NOTIFY_CALL_WORK, NOTIFY_CALL_UNKNOWN };

/* The defaults of the notification_preferences table: work 09:00-17:00 on
 * Monday-Friday, no DND (days all week), ring all apps, 30 s timeout. */
void notify_prefs_defaults(struct notify_prefs *p);

/* Which apps ring for a call of `kind` at (weekday 0..6, minute_of_day
 * 0..1439). Writes indexes into `apps` to out (at most max, no index twice)
 * and returns how many. Rules, in order:
 *  1. Inactive (revoked) apps never ring.
 *  2. DND: when dnd_enabled and the moment lies in the window, nothing
 *     rings. A window with start > end crosses midnight and belongs to the
 *     day it starts on (22:00-07:00 with dnd_days {5} covers Friday 22:00
 *     to Saturday 07:00); start == end means the whole day.
 *  3. Smart routing (when enabled): personal calls go to personal_app_id;
 *     work and unknown calls go to work_app_id during work hours (a work day
 *     and inside the work window, same midnight rule) and to personal_app_id
 *     otherwise. Only that one app rings. When that app is unset or not an
 *     active connected app, rule 4 decides.
 *  4. ring_all_apps: every active app rings, preferred_apps first in their
 *     order, then the others in the order of `apps`. Otherwise only one app:
 *     the first active one of preferred_apps, else the first active app.
 * An empty result means nothing rings. */
int notify_targets(const struct notify_prefs *prefs, const struct notify_app *apps, int napps,
		   enum notify_call_kind kind, int weekday, int minute_of_day, int *out, int max);

/* Is (weekday, minute) inside the window [start, end) on `days` (the midnight
 * rule above)? False when start or end is unset. */
bool notify_in_window(int start, int end, unsigned days, int weekday, int minute_of_day);

/* "HH:MM" (00:00 .. 23:59, exactly five characters) -> minutes; -1 when
 * malformed. */
int notify_parse_time(const char *s);

/* Apply the fields of `update` (a PUT body) onto *p, validating each one:
 * unknown fields, wrong types, times not HH:MM, days not distinct integers
 * 0..6, ring_timeout_seconds outside 5..120, more than 32 preferred apps or
 * duplicates, and app IDs (preferred_apps, work_app_id, personal_app_id) that
 * are not in `active` (the caller's connected active apps) are refused with
 * 400 M_INVALID_PARAM and leave *p unchanged. dnd_enabled needs both
 * dnd_start and dnd_end. */
int notify_prefs_apply_json(struct notify_prefs *p, const json_t *update, const char *const *active, int nactive,
			    struct al_error *err);

/* The JSON form (the column names of notification_preferences; times as
 * "HH:MM" or null). New reference. */
json_t *notify_prefs_to_json(const struct notify_prefs *p);

#endif
