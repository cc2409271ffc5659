/* Authorization rules of room versions 10 and 11, one test per rule. */
#include <string.h>

#include "room_auth.h"
#include "unit.h"

#define A "@alice:x"
#define B "@bob:x"
#define C "@carol:x"

static json_t *ev(const char *type, const char *sk, const char *sender, json_t *content)
{
	json_t *e = json_pack("{s:s, s:s, s:o, s:[]}", "type", type, "sender", sender, "content", content,
			      "prev_events");
	if (sk)
		json_object_set_new(e, "state_key", json_string(sk));
	return e;
}

static void put(json_t *state, json_t *e)
{
	char k[ROOM_AUTH_KEY_MAX + 1];
	const char *sk = json_string_value(json_object_get(e, "state_key"));
	ck_assert_int_eq(room_auth_key(json_string_value(json_object_get(e, "type")), sk, k, sizeof(k)), 0);
	json_object_set_new(state, k, e);
}

static void member(json_t *st, const char *user, const char *m)
{
	put(st, ev("m.room.member", user, user, json_pack("{s:s}", "membership", m)));
}

/* A room created by alice (v11), alice joined, power levels with alice 100,
 * bob 50, join rule as given. */
static json_t *room(const char *join_rule)
{
	json_t *st = json_object();
	put(st, ev("m.room.create", "", A, json_pack("{s:s}", "room_version", "11")));
	member(st, A, "join");
	put(st, ev("m.room.power_levels", "", A,
		   json_pack("{s:{s:i, s:i}, s:i, s:i, s:i, s:i, s:i, s:i, s:{s:i}}", "users", A, 100, B, 50,
			     "users_default", 0, "state_default", 50, "events_default", 0, "ban", 50, "kick", 50,
			     "invite", 0, "events", "m.room.power_levels", 100)));
	put(st, ev("m.room.join_rules", "", A, json_pack("{s:s}", "join_rule", join_rule)));
	return st;
}

static int check(json_t *st, json_t *e)
{
	struct event_rules r;
	struct al_error err = {0};
	ck_assert_int_eq(event_rules_for("11", &r), 0);
	int rc = room_auth_check(&r, e, st, false, &err);
	if (rc < 0)
		ck_assert_int_eq(err.status, 403);
	json_decref(e);
	return rc;
}

static json_t *mem(const char *sender, const char *target, const char *m)
{
	return ev("m.room.member", target, sender, json_pack("{s:s}", "membership", m));
}

START_TEST(create_rules)
{
	struct event_rules r10, r11;
	struct al_error err = {0};
	event_rules_for("10", &r10);
	event_rules_for("11", &r11);
	json_t *st = json_object();
	json_t *c = ev("m.room.create", "", A, json_pack("{s:s}", "room_version", "10"));
	ck_assert_int_eq(room_auth_check(&r10, c, st, false, &err), -1); /* v10 needs creator */
	ck_assert_int_eq(room_auth_check(&r11, c, st, false, &err), 0);
	json_array_append_new(json_object_get(c, "prev_events"), json_string("$x"));
	ck_assert_int_eq(room_auth_check(&r11, c, st, false, &err), -1);
	json_decref(c);
	/* nothing else without a create event */
	ck_assert_int_eq(check(st, ev("m.room.message", NULL, A, json_object())), -1);
	json_decref(st);
}
END_TEST

START_TEST(first_join_of_creator)
{
	struct event_rules r;
	struct al_error err = {0};
	event_rules_for("11", &r);
	json_t *st = json_object();
	put(st, ev("m.room.create", "", A, json_pack("{s:s}", "room_version", "11")));
	json_t *j = mem(A, A, "join");
	ck_assert_int_eq(room_auth_check(&r, j, st, true, &err), 0);
	json_decref(j);
	j = mem(B, B, "join");
	ck_assert_int_eq(room_auth_check(&r, j, st, true, &err), -1);
	json_decref(j);
	json_decref(st);
}
END_TEST

START_TEST(join_rules)
{
	json_t *pub = room("public"), *inv = room("invite");
	ck_assert_int_eq(check(pub, mem(B, B, "join")), 0);
	ck_assert_int_eq(check(inv, mem(B, B, "join")), -1);
	ck_assert_int_eq(check(pub, mem(A, B, "join")), -1); /* cannot join for someone else */
	member(inv, B, "invite");
	ck_assert_int_eq(check(inv, mem(B, B, "join")), 0);
	member(pub, C, "ban");
	ck_assert_int_eq(check(pub, mem(C, C, "join")), -1);
	json_decref(pub);
	json_decref(inv);
}
END_TEST

START_TEST(invite_rules)
{
	json_t *st = room("invite");
	ck_assert_int_eq(check(st, mem(A, B, "invite")), 0);
	ck_assert_int_eq(check(st, mem(C, B, "invite")), -1); /* sender not joined */
	member(st, C, "ban");
	ck_assert_int_eq(check(st, mem(A, C, "invite")), -1); /* target banned */
	member(st, B, "join");
	ck_assert_int_eq(check(st, mem(A, B, "invite")), -1); /* already joined */
	json_t *tpi = mem(A, "@dave:x", "invite");
	json_object_set_new(json_object_get(tpi, "content"), "third_party_invite", json_object());
	ck_assert_int_eq(check(st, tpi), -1);
	json_decref(st);
}
END_TEST

START_TEST(leave_kick_ban_rules)
{
	json_t *st = room("public");
	member(st, B, "join");
	member(st, C, "join");
	ck_assert_int_eq(check(st, mem(C, C, "leave")), 0);
	ck_assert_int_eq(check(st, mem(C, B, "leave")), -1); /* power 0 cannot kick */
	ck_assert_int_eq(check(st, mem(B, C, "leave")), 0);  /* 50 kicks 0 */
	ck_assert_int_eq(check(st, mem(B, A, "leave")), -1); /* cannot kick higher */
	ck_assert_int_eq(check(st, mem(B, C, "ban")), 0);
	ck_assert_int_eq(check(st, mem(C, B, "ban")), -1);
	ck_assert_int_eq(check(st, mem(B, A, "ban")), -1);
	member(st, "@dave:x", "leave");
	ck_assert_int_eq(check(st, mem("@dave:x", "@dave:x", "leave")), -1); /* not in the room */
	json_decref(st);
}
END_TEST

START_TEST(knock_rules)
{
	json_t *st = room("knock"), *pub = room("public");
	ck_assert_int_eq(check(st, mem(C, C, "knock")), 0);
	ck_assert_int_eq(check(pub, mem(C, C, "knock")), -1);
	ck_assert_int_eq(check(st, mem(A, C, "knock")), -1);
	json_decref(st);
	json_decref(pub);
}
END_TEST

START_TEST(sender_must_be_joined_and_levels)
{
	json_t *st = room("public");
	ck_assert_int_eq(check(st, ev("m.room.message", NULL, C, json_object())), -1);
	member(st, C, "join");
	member(st, B, "join");
	ck_assert_int_eq(check(st, ev("m.room.message", NULL, C, json_object())), 0);
	ck_assert_int_eq(check(st, ev("m.room.topic", "", C, json_object())), -1); /* state_default 50 */
	ck_assert_int_eq(check(st, ev("m.room.topic", "", B, json_object())), 0);
	ck_assert_int_eq(check(st, ev("org.x", A, B, json_object())), -1); /* @-state key of another */
	ck_assert_int_eq(check(st, ev("org.x", B, B, json_object())), 0);
	json_decref(st);
}
END_TEST

static json_t *pl(json_t *users, const char *extra_key, json_t *extra)
{
	json_t *c = json_pack("{s:o, s:i, s:i, s:i, s:i, s:i, s:{s:i}}", "users", users, "users_default", 0,
			      "state_default", 50, "events_default", 0, "ban", 50, "kick", 50, "events",
			      "m.room.power_levels", 50);
	if (extra_key)
		json_object_set_new(c, extra_key, extra);
	return c;
}

START_TEST(power_level_rules)
{
	json_t *st = room("public");
	member(st, B, "join");
	/* the room's PL event requires 100 for power_levels; lower it so bob can try */
	put(st, ev("m.room.power_levels", "", A, pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 10), NULL, NULL)));
	/* bob raising himself above 50 */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 60, C, 10), NULL, NULL))),
			 -1);
	/* bob lowering alice */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_pack("{s:i, s:i, s:i}", A, 0, B, 50, C, 10), NULL, NULL))),
			 -1);
	/* bob changing carol (10 < 50) to 40 */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 40), NULL, NULL))),
			 0);
	/* bob setting ban to 60 (above his own) */
	json_t *c = pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 10), NULL, NULL);
	json_object_set_new(c, "ban", json_integer(60));
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B, c)), -1);
	/* strings are not integers in v10+ */
	c = pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 10), NULL, NULL);
	json_object_set_new(c, "kick", json_string("50"));
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", A, c)), -1);
	/* users keys must be user IDs */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", A,
				      pl(json_pack("{s:i, s:i}", A, 100, "nobody", 5), NULL, NULL))),
			 -1);
	/* alice may do anything up to 100 */
	ck_assert_int_eq(
		check(st, ev("m.room.power_levels", "", A, pl(json_pack("{s:i, s:i}", A, 100, B, 100), NULL, NULL))),
		0);
	json_decref(st);
}
END_TEST

START_TEST(member_event_shape)
{
	json_t *st = room("public");
	/* no membership in content */
	ck_assert_int_eq(check(st, ev("m.room.member", B, B, json_object())), -1);
	/* membership not a string */
	ck_assert_int_eq(check(st, ev("m.room.member", B, B, json_pack("{s:i}", "membership", 1))), -1);
	/* no state_key at all: still a member event, and refused */
	ck_assert_int_eq(check(st, ev("m.room.member", NULL, A, json_pack("{s:s}", "membership", "join"))), -1);
	/* state_key that is not a user ID */
	ck_assert_int_eq(check(st, mem(A, "alice", "join")), -1);
	ck_assert_int_eq(check(st, mem(A, "", "invite")), -1);
	/* a state_key that is not a string */
	json_t *e = mem(A, A, "join");
	json_object_set_new(e, "state_key", json_integer(5));
	ck_assert_int_eq(check(st, e), -1);
	json_decref(st);
}
END_TEST

START_TEST(unknown_membership)
{
	json_t *st = room("public");
	ck_assert_int_eq(check(st, mem(A, A, "joined")), -1);
	ck_assert_int_eq(check(st, mem(A, B, "kick")), -1);
	ck_assert_int_eq(check(st, mem(A, A, "")), -1);
	json_decref(st);
}
END_TEST

/* Power levels of alice 100, bob 50, dave 20 with the given kick, ban and
 * invite levels (power_levels itself needs 100). */
static void levels(json_t *st, int kick, int ban, int invite)
{
	put(st, ev("m.room.power_levels", "", A,
		   json_pack("{s:{s:i, s:i, s:i}, s:i, s:i, s:i, s:i, s:i, s:i, s:{s:i}}", "users", A, 100, B, 50,
			     "@dave:x", 20, "users_default", 0, "state_default", 50, "events_default", 0, "kick", kick,
			     "ban", ban, "invite", invite, "events", "m.room.power_levels", 100)));
}

START_TEST(invite_below_invite_level)
{
	json_t *st = room("invite");
	levels(st, 50, 50, 30);
	member(st, B, "join");
	member(st, C, "join");
	member(st, "@dave:x", "join");
	ck_assert_int_eq(check(st, mem("@dave:x", "@erin:x", "invite")), -1); /* 20 < 30 */
	ck_assert_int_eq(check(st, mem(C, "@erin:x", "invite")), -1);         /* 0 < 30 */
	ck_assert_int_eq(check(st, mem(B, "@erin:x", "invite")), 0);          /* 50 >= 30 */
	json_decref(st);
}
END_TEST

START_TEST(kick_ban_by_non_joined_sender)
{
	json_t *st = room("invite");
	member(st, C, "join");
	/* bob (50) has the power but is only invited, then gone, then banned */
	static const char *const states[] = {"invite", "leave", "ban", "knock"};
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		member(st, B, states[i]);
		ck_assert_int_eq(check(st, mem(B, C, "leave")), -1);
		ck_assert_int_eq(check(st, mem(B, C, "ban")), -1);
	}
	/* and bob joined may do both */
	member(st, B, "join");
	ck_assert_int_eq(check(st, mem(B, C, "leave")), 0);
	ck_assert_int_eq(check(st, mem(B, C, "ban")), 0);
	json_decref(st);
}
END_TEST

START_TEST(unban_below_ban_level)
{
	json_t *st = room("public");
	levels(st, 10, 50, 0);
	member(st, "@dave:x", "join");
	member(st, C, "join");
	/* dave (20) may kick carol (0) ... */
	ck_assert_int_eq(check(st, mem("@dave:x", C, "leave")), 0);
	/* ... but not lift her ban (ban 50) */
	member(st, C, "ban");
	ck_assert_int_eq(check(st, mem("@dave:x", C, "leave")), -1);
	member(st, B, "join");
	ck_assert_int_eq(check(st, mem(B, C, "leave")), 0); /* bob is at the ban level */
	json_decref(st);
}
END_TEST

START_TEST(knock_refused_by_membership)
{
	json_t *st = room("knock");
	static const char *const states[] = {"ban", "invite", "join"};
	for (size_t i = 0; i < sizeof(states) / sizeof(states[0]); i++) {
		member(st, C, states[i]);
		ck_assert_int_eq(check(st, mem(C, C, "knock")), -1);
	}
	member(st, C, "leave");
	ck_assert_int_eq(check(st, mem(C, C, "knock")), 0);
	json_decref(st);
}
END_TEST

START_TEST(restricted_join_needs_invite)
{
	json_t *st = room("restricted");
	ck_assert_int_eq(check(st, mem(C, C, "join")), -1);
	member(st, C, "leave");
	ck_assert_int_eq(check(st, mem(C, C, "join")), -1);
	member(st, C, "invite");
	ck_assert_int_eq(check(st, mem(C, C, "join")), 0);
	json_decref(st);
}
END_TEST

START_TEST(events_entry_above_own_level)
{
	json_t *st = room("public");
	member(st, B, "join");
	json_t *users = json_pack("{s:i, s:i}", A, 100, B, 50);
	put(st, ev("m.room.power_levels", "", A,
		   pl(json_incref(users), "events",
		      json_pack("{s:i, s:i, s:i}", "m.room.power_levels", 50, "m.room.tombstone", 100, "m.room.name",
				50))));
	/* bob lowering an entry that is above his level */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_incref(users), "events",
					 json_pack("{s:i, s:i, s:i}", "m.room.power_levels", 50, "m.room.tombstone", 50,
						   "m.room.name", 50)))),
			 -1);
	/* removing it */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_incref(users), "events",
					 json_pack("{s:i, s:i}", "m.room.power_levels", 50, "m.room.name", 50)))),
			 -1);
	/* adding a new entry above his level */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_incref(users), "events",
					 json_pack("{s:i, s:i, s:i, s:i}", "m.room.power_levels", 50,
						   "m.room.tombstone", 100, "m.room.name", 50, "org.x", 60)))),
			 -1);
	/* changing one within his level is fine */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_incref(users), "events",
					 json_pack("{s:i, s:i, s:i}", "m.room.power_levels", 50, "m.room.tombstone",
						   100, "m.room.name", 40)))),
			 0);
	json_decref(users);
	json_decref(st);
}
END_TEST

START_TEST(raise_user_above_own_level)
{
	json_t *st = room("public");
	member(st, B, "join");
	put(st, ev("m.room.power_levels", "", A, pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 10), NULL, NULL)));
	/* an existing user raised above bob */
	ck_assert_int_eq(check(st, ev("m.room.power_levels", "", B,
				      pl(json_pack("{s:i, s:i, s:i}", A, 100, B, 50, C, 60), NULL, NULL))),
			 -1);
	/* a new user added above bob */
	ck_assert_int_eq(
		check(st, ev("m.room.power_levels", "", B,
			     pl(json_pack("{s:i, s:i, s:i, s:i}", A, 100, B, 50, C, 10, "@dave:x", 70), NULL, NULL))),
		-1);
	/* up to his own level is allowed */
	ck_assert_int_eq(
		check(st, ev("m.room.power_levels", "", B,
			     pl(json_pack("{s:i, s:i, s:i, s:i}", A, 100, B, 50, C, 50, "@dave:x", 50), NULL, NULL))),
		0);
	json_decref(st);
}
END_TEST

START_TEST(levels_without_power_levels_event)
{
	json_t *st = json_object();
	put(st, ev("m.room.create", "", A, json_pack("{s:s}", "room_version", "11")));
	ck_assert_int_eq(room_auth_user_level(st, A), 100);
	ck_assert_int_eq(room_auth_user_level(st, B), 0);
	/* state_default "defaults to 50 if unspecified" (the spec's current
	 * wording; no exception without a power levels event, as Synapse) */
	ck_assert_int_eq(room_auth_event_level(st, "m.room.topic", true), 50);
	ck_assert_int_eq(room_auth_event_level(st, "m.room.message", false), 0);
	ck_assert_int_eq(room_auth_named_level(st, "ban"), 50);
	ck_assert_int_eq(room_auth_named_level(st, "invite"), 0);
	ck_assert_str_eq(room_auth_membership(st, A), "leave");
	json_decref(st);
}
END_TEST

static const char *get_id(const json_t *pdu)
{
	return json_string_value(json_object_get(pdu, "type"));
}

START_TEST(auth_event_selection)
{
	json_t *st = room("invite");
	member(st, B, "invite");
	json_t *e = mem(B, B, "join");
	const char *ids[5];
	int n = room_auth_select(e, st, ids, 5, get_id);
	ck_assert_int_eq(n, 4); /* create, power_levels, bob's member, join_rules */
	json_decref(e);
	e = ev("m.room.message", NULL, A, json_object());
	ck_assert_int_eq(room_auth_select(e, st, ids, 5, get_id), 3);
	json_decref(e);
	json_decref(st);
}
END_TEST

UNIT_MAIN("room_auth", create_rules, first_join_of_creator, join_rules, invite_rules, leave_kick_ban_rules, knock_rules,
	  sender_must_be_joined_and_levels, power_level_rules, levels_without_power_levels_event, auth_event_selection,
	  member_event_shape, unknown_membership, invite_below_invite_level, kick_ban_by_non_joined_sender,
	  unban_below_ban_level, knock_refused_by_membership, restricted_join_needs_invite,
	  events_entry_above_own_level, raise_user_above_own_level)
