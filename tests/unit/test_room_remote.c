/* The pure parts of room_remote: the event format of each room version,
 * and the event references of versions 1-2 (event.h). */
#include <string.h>

#include "room_remote.h"
#include "unit.h"

static json_t *pdu11(void)
{
	return json_pack("{s:s, s:s, s:s, s:{s:s}, s:I, s:i, s:[s], s:[s, s], s:{s:s}, s:{s:{s:s}}}", "room_id",
			 "!r:a.test", "sender", "@u:b.test", "type", "m.room.message", "content", "body", "hi",
			 "origin_server_ts", (json_int_t)1700000000000, "depth", 5, "prev_events", "$p", "auth_events",
			 "$c", "$m", "hashes", "sha256", "x", "signatures", "b.test", "ed25519:1", "sig");
}

static int check(const char *version, json_t *pdu)
{
	struct event_rules r;
	struct al_error err = {0};
	ck_assert_int_eq(event_rules_for(version, &r), 0);
	int rc = room_pdu_check_format(&r, pdu, &err);
	if (rc < 0)
		ck_assert_int_ge(err.status, 400);
	return rc;
}

START_TEST(format_v11)
{
	json_t *p = pdu11();
	ck_assert_int_eq(check("11", p), 0);
	static const char *const required[] = {"room_id",          "sender",     "type",        "content",
					       "origin_server_ts", "depth",      "prev_events", "auth_events",
					       "hashes",           "signatures", NULL};
	for (const char *const *k = required; *k; k++) {
		json_t *q = json_deep_copy(p);
		json_object_del(q, *k);
		ck_assert_msg(check("11", q) < 0, "%s is required", *k);
		json_decref(q);
	}
	/* floats are not canonical JSON */
	json_t *q = json_deep_copy(p);
	json_object_set_new(json_object_get(q, "content"), "f", json_real(1.5));
	ck_assert_int_eq(check("11", q), -1);
	json_decref(q);
	/* bounds */
	q = json_deep_copy(p);
	json_t *prev = json_object_get(q, "prev_events");
	for (int i = 0; i < EVENT_MAX_PREV; i++)
		json_array_append_new(prev, json_string("$x"));
	ck_assert_int_eq(check("11", q), -1);
	json_decref(q);
	q = json_deep_copy(p);
	json_object_set_new(q, "depth", json_integer(-1));
	ck_assert_int_eq(check("11", q), -1);
	json_decref(q);
	/* v1 references are pairs: plain IDs are not */
	ck_assert_int_eq(check("1", p), -1);
	json_decref(p);
}
END_TEST

START_TEST(format_v1_pairs_and_event_id)
{
	json_t *p = pdu11();
	json_object_set_new(p, "prev_events", json_pack("[[s, {s:s}]]", "$p:a.test", "sha256", "h"));
	json_object_set_new(p, "auth_events", json_pack("[[s, {s:s}]]", "$c:a.test", "sha256", "h"));
	ck_assert_int_eq(check("1", p), -1); /* no event_id */
	json_object_set_new(p, "event_id", json_string("$e:b.test"));
	ck_assert_int_eq(check("1", p), 0);
	ck_assert_int_eq(check("2", p), 0);
	ck_assert_int_eq(check("11", p), -1);
	json_decref(p);
}
END_TEST

START_TEST(create_on_its_senders_server)
{
	json_t *p = pdu11();
	json_object_set_new(p, "type", json_string("m.room.create"));
	json_object_set_new(p, "state_key", json_string(""));
	ck_assert_int_eq(check("11", p), -1); /* room on a.test, sender on b.test */
	json_object_set_new(p, "sender", json_string("@u:a.test"));
	ck_assert_int_eq(check("11", p), 0);
	json_decref(p);
}
END_TEST

START_TEST(references)
{
	json_t *s = json_string("$id");
	json_t *pair = json_pack("[s, {s:s}]", "$id2", "sha256", "x");
	ck_assert_str_eq(event_ref_id(s), "$id");
	ck_assert_str_eq(event_ref_id(pair), "$id2");
	ck_assert_ptr_null(event_ref_id(json_object_get(pair, "nope")));
	json_t *list = json_pack("[O, O, i]", s, pair, 3);
	json_t *ids = event_ref_ids(list);
	ck_assert_int_eq(json_array_size(ids), 2);
	ck_assert_str_eq(json_string_value(json_array_get(ids, 1)), "$id2");
	json_decref(ids);
	json_decref(list);
	struct event_rules r1, r11;
	event_rules_for("1", &r1);
	event_rules_for("11", &r11);
	json_t *ev = json_pack("{s:s, s:s, s:s, s:{}}", "event_id", "$e:a", "type", "m.room.message", "sender", "@u:a",
			       "content");
	json_t *ref = event_ref_make(ev, "$e:a", &r1);
	ck_assert(json_is_array(ref));
	ck_assert_str_eq(event_ref_id(ref), "$e:a");
	ck_assert_int_eq(strlen(json_string_value(json_object_get(json_array_get(ref, 1), "sha256"))), 43);
	json_decref(ref);
	ref = event_ref_make(ev, "$e:a", &r11);
	ck_assert(json_is_string(ref));
	json_decref(ref);
	json_decref(ev);
	json_decref(s);
	json_decref(pair);
	ck_assert(room_remote_version_supported("1"));
	ck_assert(room_remote_version_supported("11"));
	ck_assert(!room_remote_version_supported("12"));
	ck_assert(!room_remote_version_supported("sytest-room-ver"));
}
END_TEST

UNIT_MAIN("room_remote", format_v11, format_v1_pairs_and_event_id, create_on_its_senders_server, references)
