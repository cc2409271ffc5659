#include "unit.h"
#include <stdio.h>
#include <string.h>

#include "notify.h"

enum { SUN, MON, TUE, WED, THU, FRI, SAT };
#define HM(h, m) ((h)*60 + (m))
#define SET(dst, s) snprintf(dst, sizeof(dst), "%s", s)

static struct notify_app apps3[] = {
	{"work.app", true},
	{"home.app", true},
	{"old.app", false},
};

static int targets(const struct notify_prefs *p, const struct notify_app *apps, int n, enum notify_call_kind k, int day,
		   int minute, int *out)
{
	return notify_targets(p, apps, n, k, day, minute, out, 8);
}

START_TEST(defaults_ring_all_active_apps)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	int out[8];
	int n = targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, HM(10, 0), out);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(out[0], 0);
	ck_assert_int_eq(out[1], 1);
}
END_TEST

START_TEST(revoked_apps_never_ring)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	SET(p.preferred_apps[0], "old.app");
	p.npreferred = 1;
	p.smart_routing_enabled = true;
	SET(p.personal_app_id, "old.app");
	SET(p.work_app_id, "old.app");
	int out[8];
	int n = targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(12, 0), out);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++)
		ck_assert_int_ne(out[i], 2);
	struct notify_app only_revoked[] = {{"old.app", false}};
	ck_assert_int_eq(targets(&p, only_revoked, 1, NOTIFY_CALL_WORK, MON, HM(10, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 0, NOTIFY_CALL_WORK, MON, HM(10, 0), out), 0);
}
END_TEST

START_TEST(preferred_order_first)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	SET(p.preferred_apps[0], "home.app");
	p.npreferred = 1;
	int out[8];
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, HM(10, 0), out), 2);
	ck_assert_int_eq(out[0], 1);
	ck_assert_int_eq(out[1], 0);
	/* only one app rings without ring_all_apps */
	p.ring_all_apps = false;
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, HM(10, 0), out), 1);
	ck_assert_int_eq(out[0], 1);
	/* no preferred app active: the first active app */
	SET(p.preferred_apps[0], "old.app");
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, HM(10, 0), out), 1);
	ck_assert_int_eq(out[0], 0);
}
END_TEST

START_TEST(max_bounds_output)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	int out[1];
	ck_assert_int_eq(notify_targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, 0, out, 1), 1);
	ck_assert_int_eq(notify_targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, 0, out, 0), 0);
	ck_assert_int_eq(notify_targets(NULL, apps3, 3, NOTIFY_CALL_UNKNOWN, MON, 0, out, 1), 0);
}
END_TEST

START_TEST(dnd_same_day_window)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	p.dnd_enabled = true;
	p.dnd_start = HM(12, 0);
	p.dnd_end = HM(13, 0);
	int out[8];
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, TUE, HM(11, 59), out), 2);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, TUE, HM(12, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, TUE, HM(12, 59), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, TUE, HM(13, 0), out), 2);
	/* DND disabled: the window does not matter */
	p.dnd_enabled = false;
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, TUE, HM(12, 30), out), 2);
}
END_TEST

START_TEST(dnd_across_midnight_belongs_to_start_day)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	p.dnd_enabled = true;
	p.dnd_start = HM(22, 0);
	p.dnd_end = HM(7, 0);
	p.dnd_days = 1u << FRI;
	int out[8];
	/* Friday 22:00 .. Saturday 07:00 */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, FRI, HM(21, 59), out), 2);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, FRI, HM(22, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, FRI, HM(23, 59), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(0, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(6, 59), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(7, 0), out), 2);
	/* Friday morning belongs to Thursday night, not a DND day */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, FRI, HM(3, 0), out), 2);
	/* Saturday night is not a DND day */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(23, 0), out), 2);
	/* Saturday -> Sunday wraps the week: Sunday 01:00 belongs to Saturday */
	p.dnd_days = 1u << SAT;
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SUN, HM(1, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, SAT, HM(1, 0), out), 2);
}
END_TEST

START_TEST(dnd_whole_day_and_no_days)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p);
	p.dnd_enabled = true;
	p.dnd_start = p.dnd_end = HM(0, 0);
	p.dnd_days = 1u << SUN;
	int out[8];
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, SUN, HM(0, 0), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, SUN, HM(23, 59), out), 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, MON, HM(0, 0), out), 2);
	p.dnd_days = 0;
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, SUN, HM(12, 0), out), 2);
	/* DND beats smart routing */
	p.dnd_days = 0x7f;
	p.smart_routing_enabled = true;
	SET(p.work_app_id, "work.app");
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, MON, HM(10, 0), out), 0);
}
END_TEST

START_TEST(smart_routing)
{
	struct notify_prefs p;
	notify_prefs_defaults(&p); /* work 09:00-17:00 Mon-Fri */
	p.smart_routing_enabled = true;
	SET(p.work_app_id, "work.app");
	SET(p.personal_app_id, "home.app");
	int out[8];
	/* work call in work hours -> work app only */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, WED, HM(9, 0), out), 1);
	ck_assert_int_eq(out[0], 0);
	/* unknown caller in work hours -> work app */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_UNKNOWN, WED, HM(16, 59), out), 1);
	ck_assert_int_eq(out[0], 0);
	/* personal call in work hours -> personal app */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, WED, HM(10, 0), out), 1);
	ck_assert_int_eq(out[0], 1);
	/* work call after hours, on a weekend -> personal app */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, WED, HM(17, 0), out), 1);
	ck_assert_int_eq(out[0], 1);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, SAT, HM(10, 0), out), 1);
	ck_assert_int_eq(out[0], 1);
	/* routed app revoked -> general rule (ring all active) */
	struct notify_app revoked_work[] = {{"work.app", false}, {"home.app", true}, {"x.app", true}};
	ck_assert_int_eq(targets(&p, revoked_work, 3, NOTIFY_CALL_WORK, WED, HM(10, 0), out), 2);
	ck_assert_int_eq(out[0], 1);
	ck_assert_int_eq(out[1], 2);
	/* personal app unset -> general rule */
	p.personal_app_id[0] = '\0';
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_PERSONAL, WED, HM(10, 0), out), 2);
	/* night shift crossing midnight: 22:00-06:00 starting Mon-Fri */
	SET(p.personal_app_id, "home.app");
	p.work_hours_start = HM(22, 0);
	p.work_hours_end = HM(6, 0);
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, SAT, HM(5, 0), out), 1);
	ck_assert_int_eq(out[0], 0); /* Friday's shift */
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, MON, HM(5, 0), out), 1);
	ck_assert_int_eq(out[0], 1); /* Sunday night is no shift */
	/* unset work hours -> never work time */
	p.work_hours_start = -1;
	ck_assert_int_eq(targets(&p, apps3, 3, NOTIFY_CALL_WORK, WED, HM(23, 0), out), 1);
	ck_assert_int_eq(out[0], 1);
}
END_TEST

START_TEST(parse_time_edges)
{
	ck_assert_int_eq(notify_parse_time("00:00"), 0);
	ck_assert_int_eq(notify_parse_time("23:59"), 1439);
	ck_assert_int_eq(notify_parse_time("24:00"), -1);
	ck_assert_int_eq(notify_parse_time("12:60"), -1);
	ck_assert_int_eq(notify_parse_time("9:00"), -1);
	ck_assert_int_eq(notify_parse_time("09:00:00"), -1);
	ck_assert_int_eq(notify_parse_time("ab:cd"), -1);
	ck_assert_int_eq(notify_parse_time(NULL), -1);
}
END_TEST

static int apply(struct notify_prefs *p, const char *json, struct al_error *err)
{
	static const char *const active[] = {"work.app", "home.app"};
	json_t *v = json_loads(json, 0, NULL);
	ck_assert_ptr_nonnull(v);
	int rc = notify_prefs_apply_json(p, v, active, 2, err);
	json_decref(v);
	return rc;
}

START_TEST(apply_json_validation)
{
	struct notify_prefs p;
	struct al_error err;
	notify_prefs_defaults(&p);
	ck_assert_int_eq(apply(&p,
			       "{\"preferred_apps\":[\"home.app\",\"work.app\"],\"dnd_enabled\":true,"
			       "\"dnd_start\":\"22:30\",\"dnd_end\":\"06:00\",\"dnd_days\":[0,6],"
			       "\"ring_timeout_seconds\":5,\"work_app_id\":\"work.app\"}",
			       &err),
			 0);
	ck_assert_int_eq(p.npreferred, 2);
	ck_assert_str_eq(p.preferred_apps[0], "home.app");
	ck_assert_int_eq(p.dnd_start, HM(22, 30));
	ck_assert_uint_eq(p.dnd_days, 0x41u);
	ck_assert_int_eq(p.ring_timeout_seconds, 5);
	struct notify_prefs before = p;
	static const char *const bad[] = {
		"{\"ring_timeout_seconds\":4}",
		"{\"ring_timeout_seconds\":121}",
		"{\"ring_timeout_seconds\":\"30\"}",
		"{\"work_days\":[1,1]}",
		"{\"work_days\":[7]}",
		"{\"work_days\":[-1]}",
		"{\"work_days\":[1.5]}",
		"{\"dnd_days\":\"0,1\"}",
		"{\"dnd_start\":\"24:00\"}",
		"{\"work_hours_end\":\"9:00\"}",
		"{\"dnd_enabled\":1}",
		"{\"ring_all_apps\":\"true\"}",
		"{\"preferred_apps\":[\"gone.app\"]}",
		"{\"preferred_apps\":[\"home.app\",\"home.app\"]}",
		"{\"preferred_apps\":\"home.app\"}",
		"{\"work_app_id\":\"gone.app\"}",
		"{\"personal_app_id\":\"\"}",
		"{\"nonsense\":true}",
		"{\"dnd_start\":null}" /* dnd_enabled stays true */,
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&err, 0, sizeof(err));
		ck_assert_msg(apply(&p, bad[i], &err) < 0, "accepted %s", bad[i]);
		ck_assert_int_eq(err.status, 400);
		ck_assert_str_eq(err.errcode, "M_INVALID_PARAM");
		ck_assert_msg(memcmp(&p, &before, sizeof(p)) == 0, "changed by %s", bad[i]);
	}
	/* null clears optional fields; read-only fields are ignored */
	ck_assert_int_eq(apply(&p,
			       "{\"work_app_id\":null,\"dnd_enabled\":false,\"dnd_start\":null,"
			       "\"aura_id\":\"@x.aura\"}",
			       &err),
			 0);
	ck_assert_str_eq(p.work_app_id, "");
	ck_assert_int_eq(p.dnd_start, -1);
}
END_TEST

START_TEST(json_round_trip)
{
	struct notify_prefs p, q;
	struct al_error err;
	notify_prefs_defaults(&p);
	json_t *j = notify_prefs_to_json(&p);
	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_string_value(json_object_get(j, "work_hours_start")), "09:00");
	ck_assert(json_is_null(json_object_get(j, "dnd_start")));
	ck_assert_int_eq(json_array_size(json_object_get(j, "work_days")), 5);
	ck_assert_int_eq(json_integer_value(json_object_get(j, "ring_timeout_seconds")), 30);
	memset(&q, 0x55, sizeof(q));
	notify_prefs_defaults(&q);
	q.ring_timeout_seconds = 99;
	ck_assert_int_eq(notify_prefs_apply_json(&q, j, NULL, 0, &err), 0);
	ck_assert_int_eq(q.ring_timeout_seconds, 30);
	ck_assert_int_eq(q.work_hours_end, HM(17, 0));
	json_decref(j);
}
END_TEST

UNIT_MAIN("notify", defaults_ring_all_active_apps, revoked_apps_never_ring, preferred_order_first, max_bounds_output,
	  dnd_same_day_window, dnd_across_midnight_belongs_to_start_day, dnd_whole_day_and_no_days, smart_routing,
	  parse_time_edges, apply_json_validation, json_round_trip)
