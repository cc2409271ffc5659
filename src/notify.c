#include "notify.h"

#include <stdio.h>
#include <string.h>

#define ALL_DAYS 0x7fu
#define MINUTES_PER_DAY 1440

void notify_prefs_defaults(struct notify_prefs *p)
{
	memset(p, 0, sizeof(*p));
	p->work_hours_start = 9 * 60;
	p->work_hours_end = 17 * 60;
	p->work_days = 0x3eu; /* Monday .. Friday */
	p->dnd_start = -1;
	p->dnd_end = -1;
	p->dnd_days = ALL_DAYS;
	p->ring_all_apps = true;
	p->ring_timeout_seconds = 30;
}

int notify_parse_time(const char *s)
{
	if (!s || strlen(s) != 5 || s[2] != ':')
		return -1;
	for (int i = 0; i < 5; i++)
		if (i != 2 && (s[i] < '0' || s[i] > '9'))
			return -1;
	int h = (s[0] - '0') * 10 + (s[1] - '0');
	int m = (s[3] - '0') * 10 + (s[4] - '0');
	if (h > 23 || m > 59)
		return -1;
	return h * 60 + m;
}

bool notify_in_window(int start, int end, unsigned days, int weekday, int minute_of_day)
{
	if (start < 0 || end < 0 || weekday < 0 || weekday > 6 || minute_of_day < 0 || minute_of_day >= MINUTES_PER_DAY)
		return false;
	if (start == end)
		return (days >> weekday) & 1u;
	if (start < end)
		return ((days >> weekday) & 1u) && minute_of_day >= start && minute_of_day < end;
	/* Crosses midnight: the evening part belongs to today, the morning part
	 * to the day before. */
	if (minute_of_day >= start)
		return (days >> weekday) & 1u;
	if (minute_of_day < end)
		return (days >> ((weekday + 6) % 7)) & 1u;
	return false;
}

static int find_active(const struct notify_app *apps, int napps, const char *app_id)
{
	if (!app_id || !app_id[0])
		return -1;
	for (int i = 0; i < napps; i++)
		if (apps[i].is_active && apps[i].app_id && strcmp(apps[i].app_id, app_id) == 0)
			return i;
	return -1;
}

static int push_unique(int *out, int n, int max, int idx)
{
	if (n >= max)
		return n;
	for (int i = 0; i < n; i++)
		if (out[i] == idx)
			return n;
	out[n] = idx;
	return n + 1;
}

int notify_targets(const struct notify_prefs *prefs, const struct notify_app *apps, int napps,
		   enum notify_call_kind kind, int weekday, int minute_of_day, int *out, int max)
{
	if (!prefs || !apps || napps <= 0 || !out || max <= 0)
		return 0;
	if (prefs->dnd_enabled &&
	    notify_in_window(prefs->dnd_start, prefs->dnd_end, prefs->dnd_days, weekday, minute_of_day))
		return 0;
	if (prefs->smart_routing_enabled) {
		bool work_time = notify_in_window(prefs->work_hours_start, prefs->work_hours_end, prefs->work_days,
						  weekday, minute_of_day);
		const char *target = (kind != NOTIFY_CALL_PERSONAL && work_time) ? prefs->work_app_id
										 : prefs->personal_app_id;
		int idx = find_active(apps, napps, target);
		if (idx >= 0) {
			out[0] = idx;
			return 1;
		}
	}
	int n = 0;
	for (int i = 0; i < prefs->npreferred && n < max; i++) {
		int idx = find_active(apps, napps, prefs->preferred_apps[i]);
		if (idx < 0)
			continue;
		n = push_unique(out, n, max, idx);
		if (!prefs->ring_all_apps)
			return n;
	}
	for (int i = 0; i < napps && n < max; i++) {
		if (!apps[i].is_active || !apps[i].app_id)
			continue;
		n = push_unique(out, n, max, i);
		if (!prefs->ring_all_apps)
			return n;
	}
	return n;
}

/* ---- JSON ---- */

static bool in_list(const char *const *list, int n, const char *s)
{
	for (int i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* active NULL: no membership check (records loaded from the database). */
static int parse_app_id(const json_t *v, const char *field, const char *const *active, int nactive, char *out,
			struct al_error *err)
{
	const char *s = json_string_value(v);
	if (!s || !s[0] || strlen(s) > NOTIFY_APP_ID_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: an app_id of 1-%d bytes", field,
				    NOTIFY_APP_ID_MAX);
	if (active && !in_list(active, nactive, s))
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: '%.128s' is not a connected active app", field,
				    s);
	snprintf(out, NOTIFY_APP_ID_MAX + 1, "%s", s);
	return 0;
}

static int parse_days(const json_t *v, const char *field, unsigned *out, struct al_error *err)
{
	if (!json_is_array(v) || json_array_size(v) > 7)
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: an array of days 0-6", field);
	unsigned mask = 0;
	size_t i;
	json_t *d;
	json_array_foreach(v, i, d)
	{
		if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > 6)
			return al_error_set(err, 400, "M_INVALID_PARAM", "%s: days are integers 0-6", field);
		unsigned bit = 1u << json_integer_value(d);
		if (mask & bit)
			return al_error_set(err, 400, "M_INVALID_PARAM", "%s: day %d repeated", field,
					    (int)json_integer_value(d));
		mask |= bit;
	}
	*out = mask;
	return 0;
}

static int parse_time_field(const json_t *v, const char *field, bool nullable, int *out, struct al_error *err)
{
	if (json_is_null(v) && nullable) {
		*out = -1;
		return 0;
	}
	int m = notify_parse_time(json_string_value(v));
	if (m < 0)
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: a time HH:MM from 00:00 to 23:59%s", field,
				    nullable ? " or null" : "");
	*out = m;
	return 0;
}

static int parse_bool(const json_t *v, const char *field, bool *out, struct al_error *err)
{
	if (!json_is_boolean(v))
		return al_error_set(err, 400, "M_INVALID_PARAM", "%s: a boolean", field);
	*out = json_is_true(v);
	return 0;
}

int notify_prefs_apply_json(struct notify_prefs *p, const json_t *update, const char *const *active, int nactive,
			    struct al_error *err)
{
	if (!json_is_object(update))
		return al_error_set(err, 400, "M_BAD_JSON", "preferences must be an object");
	struct notify_prefs n = *p;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)update, key, v)
	{
		int rc = 0;
		if (strcmp(key, "preferred_apps") == 0) {
			if (!json_is_array(v) || json_array_size(v) > NOTIFY_MAX_PREFERRED)
				return al_error_set(err, 400, "M_INVALID_PARAM",
						    "preferred_apps: an array of at most %d app IDs",
						    NOTIFY_MAX_PREFERRED);
			n.npreferred = 0;
			size_t i;
			json_t *a;
			json_array_foreach(v, i, a)
			{
				if (parse_app_id(a, "preferred_apps", active, nactive, n.preferred_apps[n.npreferred],
						 err) < 0)
					return -1;
				for (int j = 0; j < n.npreferred; j++)
					if (strcmp(n.preferred_apps[j], n.preferred_apps[n.npreferred]) == 0)
						return al_error_set(err, 400, "M_INVALID_PARAM",
								    "preferred_apps: '%.128s' repeated",
								    n.preferred_apps[j]);
				n.npreferred++;
			}
		} else if (strcmp(key, "work_app_id") == 0 || strcmp(key, "personal_app_id") == 0) {
			char *dst = key[0] == 'w' ? n.work_app_id : n.personal_app_id;
			if (json_is_null(v))
				dst[0] = '\0';
			else
				rc = parse_app_id(v, key, active, nactive, dst, err);
		} else if (strcmp(key, "smart_routing_enabled") == 0) {
			rc = parse_bool(v, key, &n.smart_routing_enabled, err);
		} else if (strcmp(key, "dnd_enabled") == 0) {
			rc = parse_bool(v, key, &n.dnd_enabled, err);
		} else if (strcmp(key, "ring_all_apps") == 0) {
			rc = parse_bool(v, key, &n.ring_all_apps, err);
		} else if (strcmp(key, "call_screening_enabled") == 0) {
			rc = parse_bool(v, key, &n.call_screening_enabled, err);
		} else if (strcmp(key, "work_hours_start") == 0) {
			rc = parse_time_field(v, key, true, &n.work_hours_start, err);
		} else if (strcmp(key, "work_hours_end") == 0) {
			rc = parse_time_field(v, key, true, &n.work_hours_end, err);
		} else if (strcmp(key, "dnd_start") == 0) {
			rc = parse_time_field(v, key, true, &n.dnd_start, err);
		} else if (strcmp(key, "dnd_end") == 0) {
			rc = parse_time_field(v, key, true, &n.dnd_end, err);
		} else if (strcmp(key, "work_days") == 0) {
			rc = parse_days(v, key, &n.work_days, err);
		} else if (strcmp(key, "dnd_days") == 0) {
			rc = parse_days(v, key, &n.dnd_days, err);
		} else if (strcmp(key, "ring_timeout_seconds") == 0) {
			if (!json_is_integer(v) || json_integer_value(v) < NOTIFY_RING_TIMEOUT_MIN ||
			    json_integer_value(v) > NOTIFY_RING_TIMEOUT_MAX)
				return al_error_set(err, 400, "M_INVALID_PARAM",
						    "ring_timeout_seconds: an integer from %d to %d",
						    NOTIFY_RING_TIMEOUT_MIN, NOTIFY_RING_TIMEOUT_MAX);
			n.ring_timeout_seconds = (int)json_integer_value(v);
		} else if (strcmp(key, "aura_id") == 0 || strcmp(key, "updated_at") == 0) {
			/* read-only fields of the GET answer: ignored, so a client
			 * may PUT back what it read */
		} else {
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown field '%.64s'", key);
		}
		if (rc < 0)
			return -1;
	}
	if (n.dnd_enabled && (n.dnd_start < 0 || n.dnd_end < 0))
		return al_error_set(err, 400, "M_INVALID_PARAM", "dnd_enabled needs dnd_start and dnd_end");
	*p = n;
	return 0;
}

static json_t *time_json(int minutes)
{
	if (minutes < 0)
		return json_null();
	char buf[8];
	snprintf(buf, sizeof(buf), "%02d:%02d", (minutes / 60) % 24, minutes % 60);
	return json_string(buf);
}

static json_t *days_json(unsigned mask)
{
	json_t *a = json_array();
	for (int d = 0; a && d < 7; d++)
		if ((mask >> d) & 1u)
			json_array_append_new(a, json_integer(d));
	return a;
}

static json_t *app_json(const char *id)
{
	return id[0] ? json_string(id) : json_null();
}

json_t *notify_prefs_to_json(const struct notify_prefs *p)
{
	json_t *pref = json_array();
	for (int i = 0; pref && i < p->npreferred; i++)
		json_array_append_new(pref, json_string(p->preferred_apps[i]));
	return json_pack("{s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o, s:o, s:b, s:i, s:b}", "preferred_apps",
			 pref, "smart_routing_enabled", p->smart_routing_enabled, "work_app_id",
			 app_json(p->work_app_id), "personal_app_id", app_json(p->personal_app_id), "work_hours_start",
			 time_json(p->work_hours_start), "work_hours_end", time_json(p->work_hours_end), "work_days",
			 days_json(p->work_days), "dnd_enabled", p->dnd_enabled, "dnd_start", time_json(p->dnd_start),
			 "dnd_end", time_json(p->dnd_end), "dnd_days", days_json(p->dnd_days), "ring_all_apps",
			 p->ring_all_apps, "ring_timeout_seconds", p->ring_timeout_seconds, "call_screening_enabled",
			 p->call_screening_enabled);
}
