/* State resolution v2 on small hand-made DAGs (room version 11). */
#include <string.h>

#include "state_res.h"
#include "unit.h"

#define A "@alice:a"
#define B "@bob:b"
#define C "@carol:c"

static json_t *events;   /* event ID -> PDU */
static json_t *rejected; /* event ID -> true */

static const json_t *src_event(void *arg, const char *id)
{
	(void)arg;
	return json_object_get(events, id);
}

static bool src_rejected(void *arg, const char *id)
{
	(void)arg;
	return json_object_get(rejected, id) != NULL;
}

static const struct state_res_source SRC = {src_event, src_rejected, NULL};

static void setup(void)
{
	events = json_object();
	rejected = json_object();
}

static void teardown(void)
{
	json_decref(events);
	json_decref(rejected);
}

/* Add an event: auth and prev are space-separated IDs ("" for none). */
static const char *ev(const char *id, const char *type, const char *sk, const char *sender, int64_t ts,
		      const char *auth, const char *prev, json_t *content)
{
	json_t *e = json_pack("{s:s, s:s, s:s, s:s, s:I, s:o, s:[], s:[]}", "event_id", id, "room_id", "!r:a", "type",
			      type, "sender", sender, "origin_server_ts", (json_int_t)ts, "content", content,
			      "auth_events", "prev_events");
	if (sk)
		json_object_set_new(e, "state_key", json_string(sk));
	const char *lists[2] = {auth, prev};
	const char *names[2] = {"auth_events", "prev_events"};
	for (int l = 0; l < 2; l++) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", lists[l]);
		for (char *t = strtok(buf, " "); t; t = strtok(NULL, " "))
			json_array_append_new(json_object_get(e, names[l]), json_string(t));
	}
	json_object_set_new(events, id, e);
	return id;
}

static json_t *state_of(const char *ids)
{
	json_t *st = json_object();
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", ids);
	for (char *t = strtok(buf, " "); t; t = strtok(NULL, " ")) {
		json_t *e = json_object_get(events, t);
		ck_assert_ptr_nonnull(e);
		char k[ROOM_AUTH_KEY_MAX + 1];
		room_auth_key(json_string_value(json_object_get(e, "type")),
			      json_string_value(json_object_get(e, "state_key")), k, sizeof(k));
		json_object_set_new(st, k, json_string(t));
	}
	return st;
}

static const char *get(json_t *st, const char *type, const char *sk)
{
	char k[ROOM_AUTH_KEY_MAX + 1];
	room_auth_key(type, sk, k, sizeof(k));
	return json_string_value(json_object_get(st, k));
}

static json_t *resolve2(json_t *s1, json_t *s2)
{
	struct event_rules r;
	struct al_error err = {0};
	event_rules_for("11", &r);
	json_t *sets[2] = {s1, s2};
	json_t *out = state_res_v2(&r, sets, 2, &SRC, &err);
	ck_assert_msg(out != NULL, "%s", err.message);
	json_decref(s1);
	json_decref(s2);
	return out;
}

/* create, alice joins, power levels (alice 100, bob 50), public, bob joins */
static void base_room(void)
{
	ev("$create", "m.room.create", "", A, 1, "", "", json_pack("{s:s}", "room_version", "11"));
	ev("$ja", "m.room.member", A, A, 2, "$create", "$create", json_pack("{s:s}", "membership", "join"));
	ev("$pl", "m.room.power_levels", "", A, 3, "$create $ja", "$ja",
	   json_pack("{s:{s:i, s:i}, s:i, s:i, s:i, s:i}", "users", A, 100, B, 50, "users_default", 0, "state_default",
		     50, "events_default", 0, "ban", 50));
	ev("$jr", "m.room.join_rules", "", A, 4, "$create $ja $pl", "$pl", json_pack("{s:s}", "join_rule", "public"));
	ev("$jb", "m.room.member", B, B, 5, "$create $pl $jr", "$jr", json_pack("{s:s}", "membership", "join"));
}

#define BASE "$create $ja $pl $jr $jb"

START_TEST(no_conflict_is_the_union)
{
	base_room();
	ev("$t", "m.room.topic", "", A, 6, "$create $ja $pl", "$jb", json_pack("{s:s}", "topic", "x"));
	json_t *out = resolve2(state_of(BASE " $t"), state_of(BASE " $t"));
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$t");
	ck_assert_int_eq(json_object_size(out), 6);
	json_decref(out);
}
END_TEST

START_TEST(concurrent_topics_later_wins)
{
	base_room();
	ev("$ta", "m.room.topic", "", A, 10, "$create $ja $pl", "$jb", json_pack("{s:s}", "topic", "from a"));
	ev("$tb", "m.room.topic", "", B, 20, "$create $jb $pl", "$jb", json_pack("{s:s}", "topic", "from b"));
	json_t *out = resolve2(state_of(BASE " $ta"), state_of(BASE " $tb"));
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$tb");
	json_decref(out);
	/* the order of the states does not matter */
	out = resolve2(state_of(BASE " $tb"), state_of(BASE " $ta"));
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$tb");
	json_decref(out);
}
END_TEST

START_TEST(same_timestamp_event_id_decides)
{
	base_room();
	ev("$t2", "m.room.topic", "", A, 10, "$create $ja $pl", "$jb", json_pack("{s:s}", "topic", "2"));
	ev("$t1", "m.room.topic", "", B, 10, "$create $jb $pl", "$jb", json_pack("{s:s}", "topic", "1"));
	json_t *out = resolve2(state_of(BASE " $t1"), state_of(BASE " $t2"));
	/* applied in order $t1, $t2: the larger ID is applied last */
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$t2");
	json_decref(out);
}
END_TEST

START_TEST(ban_beats_topic_of_the_banned)
{
	/* spec example: B is banned on one branch, sets the topic on the
	 * other; the ban is a power event and is applied first, so the topic
	 * fails the iterative auth checks */
	base_room();
	ev("$ban", "m.room.member", B, A, 10, "$create $ja $pl $jb", "$jb", json_pack("{s:s}", "membership", "ban"));
	ev("$tb", "m.room.topic", "", B, 11, "$create $jb $pl", "$jb", json_pack("{s:s}", "topic", "evading"));
	json_t *out = resolve2(state_of("$create $ja $pl $jr $ban"), state_of(BASE " $tb"));
	ck_assert_str_eq(get(out, "m.room.member", B), "$ban");
	ck_assert_ptr_null(get(out, "m.room.topic", ""));
	json_decref(out);
}
END_TEST

START_TEST(higher_power_first_in_power_ordering)
{
	/* alice (100) demotes bob on one branch while bob (50) changes the
	 * join rules on the other, later: both are power events; alice's is
	 * ordered before bob's, so bob's change is checked against the
	 * demotion and fails */
	base_room();
	ev("$pl2", "m.room.power_levels", "", A, 30, "$create $ja $pl", "$jb",
	   json_pack("{s:{s:i}, s:i, s:i, s:i, s:i}", "users", A, 100, "users_default", 0, "state_default", 50,
		     "events_default", 0, "ban", 50));
	ev("$jr2", "m.room.join_rules", "", B, 20, "$create $jb $pl", "$jb", json_pack("{s:s}", "join_rule", "invite"));
	json_t *out = resolve2(state_of("$create $ja $pl2 $jr $jb"), state_of("$create $ja $pl $jr2 $jb"));
	ck_assert_str_eq(get(out, "m.room.power_levels", ""), "$pl2");
	ck_assert_str_eq(get(out, "m.room.join_rules", ""), "$jr");
	json_decref(out);
}
END_TEST

START_TEST(three_states_and_missing_key)
{
	base_room();
	ev("$jc", "m.room.member", C, C, 6, "$create $pl $jr", "$jb", json_pack("{s:s}", "membership", "join"));
	ev("$ta", "m.room.topic", "", A, 10, "$create $ja $pl", "$jb", json_pack("{s:s}", "topic", "a"));
	struct event_rules r;
	struct al_error err = {0};
	event_rules_for("11", &r);
	json_t *sets[3] = {state_of(BASE), state_of(BASE " $jc"), state_of(BASE " $ta")};
	json_t *out = state_res_v2(&r, sets, 3, &SRC, &err);
	ck_assert_ptr_nonnull(out);
	ck_assert_str_eq(get(out, "m.room.member", C), "$jc");
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$ta");
	ck_assert_str_eq(get(out, "m.room.member", B), "$jb");
	json_decref(out);
	for (int i = 0; i < 3; i++)
		json_decref(sets[i]);
}
END_TEST

START_TEST(rejected_events_stay_out)
{
	base_room();
	ev("$ta", "m.room.topic", "", A, 10, "$create $ja $pl", "$jb", json_pack("{s:s}", "topic", "a"));
	ev("$tb", "m.room.topic", "", B, 20, "$create $jb $pl", "$jb", json_pack("{s:s}", "topic", "b"));
	json_object_set_new(rejected, "$tb", json_true());
	json_t *out = resolve2(state_of(BASE " $ta"), state_of(BASE " $tb"));
	ck_assert_str_eq(get(out, "m.room.topic", ""), "$ta");
	json_decref(out);
}
END_TEST

START_TEST(unknown_state_event_is_an_error)
{
	base_room();
	json_t *s2 = state_of(BASE);
	char k[ROOM_AUTH_KEY_MAX + 1];
	room_auth_key("m.room.topic", "", k, sizeof(k));
	json_object_set_new(s2, k, json_string("$nowhere"));
	struct event_rules r;
	struct al_error err = {0};
	event_rules_for("11", &r);
	json_t *sets[2] = {state_of(BASE), s2};
	ck_assert_ptr_null(state_res_v2(&r, sets, 2, &SRC, &err));
	ck_assert_int_eq(err.status, 500);
	json_decref(sets[0]);
	json_decref(sets[1]);
}
END_TEST

START_TEST(auth_types)
{
	base_room();
	char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1];
	json_t *join = json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "m.room.member", "sender", C, "state_key", C,
				 "content", "membership", "join");
	ck_assert_int_eq(state_res_auth_types(join, keys), 4);
	json_decref(join);
	json_t *kick = json_pack("{s:s, s:s, s:s, s:{s:s}}", "type", "m.room.member", "sender", A, "state_key", B,
				 "content", "membership", "leave");
	ck_assert_int_eq(state_res_auth_types(kick, keys), 4);
	json_decref(kick);
	json_t *msg = json_pack("{s:s, s:s}", "type", "m.room.message", "sender", A);
	ck_assert_int_eq(state_res_auth_types(msg, keys), 3);
	json_decref(msg);
}
END_TEST

UNIT_MAIN_WITH_FIXTURE("state_res", setup, teardown, no_conflict_is_the_union, concurrent_topics_later_wins,
		       same_timestamp_event_id_decides, ban_beats_topic_of_the_banned,
		       higher_power_first_in_power_ordering, three_states_and_missing_key, rejected_events_stay_out,
		       unknown_state_event_is_an_error, auth_types)
