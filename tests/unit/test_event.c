/* Events: content hash, redaction per room version, reference hash, event
 * IDs and signatures. The two events and their hashes/signatures are the
 * spec's appendix vectors ("Signing Events", pre-v11 redaction rules); the
 * v10/v11 event IDs were computed with python3-canonicaljson and
 * python3-signedjson. */
#include <string.h>

#include "b64.h"
#include "event.h"
#include "unit.h"

#define SEED_B64 "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1"

static void load_key(struct sign_key *key)
{
	unsigned char seed[32];
	size_t n;
	ck_assert_int_eq(b64_decode(SEED_B64, strlen(SEED_B64), seed, sizeof(seed), &n), 0);
	ck_assert_int_eq(sign_key_from_seed(key, "ed25519:1", seed), 0);
}

static json_t *load(const char *text)
{
	json_error_t jerr;
	json_t *v = json_loads(text, 0, &jerr);
	ck_assert_msg(v != NULL, "%s", jerr.text);
	return v;
}

static const char minimal[] =
	"{\"room_id\":\"!x:domain\",\"sender\":\"@a:domain\",\"origin\":\"domain\","
	"\"origin_server_ts\":1000000,\"signatures\":{},\"hashes\":{},\"type\":\"X\",\"content\":{},"
	"\"prev_events\":[],\"auth_events\":[],\"depth\":3,\"unsigned\":{\"age_ts\":1000000}}";

static const char message[] = "{\"content\":{\"body\":\"Here is the message content\"},\"event_id\":\"$0:domain\","
			      "\"origin\":\"domain\",\"origin_server_ts\":1000000,\"type\":\"m.room.message\","
			      "\"room_id\":\"!r:domain\",\"sender\":\"@u:domain\",\"signatures\":{},"
			      "\"unsigned\":{\"age_ts\":1000000}}";

static const char *sig_of(json_t *ev)
{
	return json_string_value(
		json_object_get(json_object_get(json_object_get(ev, "signatures"), "domain"), "ed25519:1"));
}

static const char *hash_of(json_t *ev)
{
	return json_string_value(json_object_get(json_object_get(ev, "hashes"), "sha256"));
}

START_TEST(spec_vector_minimal)
{
	struct sign_key key;
	struct event_rules r;
	struct al_error err = {0};
	load_key(&key);
	ck_assert_int_eq(event_rules_for("1", &r), 0);
	json_t *ev = load(minimal);
	ck_assert_int_eq(event_hash_and_sign(ev, &r, "domain", &key, &err), 0);
	ck_assert_str_eq(hash_of(ev), "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos");
	ck_assert_str_eq(sig_of(ev),
			 "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
	ck_assert_int_eq(event_check_content_hash(ev, &err), 0);
	/* unsigned stays and is not covered */
	ck_assert_ptr_nonnull(json_object_get(ev, "unsigned"));
	json_decref(ev);
	sign_key_wipe(&key);
}
END_TEST

START_TEST(spec_vector_message)
{
	struct sign_key key;
	struct event_rules r;
	struct al_error err = {0};
	load_key(&key);
	ck_assert_int_eq(event_rules_for("1", &r), 0);
	json_t *ev = load(message);
	ck_assert_int_eq(event_hash_and_sign(ev, &r, "domain", &key, &err), 0);
	ck_assert_str_eq(hash_of(ev), "onLKD1bGljeBWQhWZ1kaP9SorVmRQNdN5aM2JYU2n/g");
	ck_assert_str_eq(sig_of(ev),
			 "Wm+VzmOUOz08Ds+0NTWb1d4CZrVsJSikkeRxh6aCcUwu6pNC78FunoD7KNWzqFn241eYHYMGCA5McEiVPdhzBA");
	char id[EVENT_ID_MAX];
	ck_assert_int_eq(event_compute_id(ev, &r, id, sizeof(id), &err), 0);
	ck_assert_str_eq(id, "$0:domain");
	/* tampering with the content breaks the hash */
	json_object_set_new(json_object_get(ev, "content"), "body", json_string("other"));
	ck_assert_int_eq(event_check_content_hash(ev, &err), -1);
	json_decref(ev);
	sign_key_wipe(&key);
}
END_TEST

START_TEST(event_ids_v10_v11)
{
	struct sign_key key;
	struct event_rules r10, r11;
	struct al_error err = {0};
	char id[EVENT_ID_MAX];
	load_key(&key);
	ck_assert_int_eq(event_rules_for("10", &r10), 0);
	ck_assert_int_eq(event_rules_for("11", &r11), 0);
	json_t *ev = load(minimal);
	ck_assert_int_eq(event_hash_and_sign(ev, &r10, "domain", &key, &err), 0);
	ck_assert_str_eq(sig_of(ev),
			 "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg");
	ck_assert_int_eq(event_compute_id(ev, &r10, id, sizeof(id), &err), 0);
	ck_assert_str_eq(id, "$8yif6p8EqgoSten2BLje9ntKm720NyFLWQv9tn8memc");
	ck_assert_int_eq(event_compute_id(ev, &r11, id, sizeof(id), &err), 0);
	ck_assert_str_eq(id, "$70O_oKlXzFbkfu0KE88USi98DjSWrOELrPj-8tisl8I");
	json_object_set_new(ev, "signatures", json_object());
	ck_assert_int_eq(event_hash_and_sign(ev, &r11, "domain", &key, &err), 0);
	ck_assert_str_eq(sig_of(ev),
			 "Jxp+1glFcZM+nnHpY0EkedRR7u0VmKsJYGnQqIvqus3UvL5X/p1y6wSkLhGoTBel6MZ9lrMIzUqrjqFquWJKBw");
	json_decref(ev);

	ev = load(minimal);
	json_object_set_new(ev, "type", json_string("m.room.message"));
	json_object_set_new(ev, "content", json_pack("{s:s}", "body", "Here is the message content"));
	ck_assert_int_eq(event_hash_and_sign(ev, &r11, "domain", &key, &err), 0);
	ck_assert_str_eq(hash_of(ev), "lsVayFQPxv0QTCc9QUh27gPvZ/HAmwUvolP6L18rzmI");
	ck_assert_int_eq(event_compute_id(ev, &r11, id, sizeof(id), &err), 0);
	ck_assert_str_eq(id, "$tSDwzZh8Gv3-NPjLhiSYQPf6pSYcOnnHVNsFuT7Xlq8");
	ck_assert_int_eq(event_compute_id(ev, &r10, id, sizeof(id), &err), 0);
	ck_assert_str_eq(id, "$JSlmzUFpJNweLRyeT31d-s-Y4ZwOkz069NAWwqXlKF0");
	json_decref(ev);
	sign_key_wipe(&key);
}
END_TEST

static json_t *redact_str(const char *version, const char *text)
{
	struct event_rules r;
	ck_assert_int_eq(event_rules_for(version, &r), 0);
	json_t *ev = load(text);
	json_t *red = event_redact(ev, &r);
	json_decref(ev);
	ck_assert_ptr_nonnull(red);
	return red;
}

START_TEST(redaction_top_level)
{
	const char *ev = "{\"type\":\"m.room.message\",\"room_id\":\"!r:d\",\"sender\":\"@u:d\","
			 "\"origin\":\"d\",\"membership\":\"join\",\"prev_state\":[],\"depth\":1,"
			 "\"unsigned\":{},\"extra\":1,\"content\":{\"body\":\"x\"}}";
	json_t *a = redact_str("10", ev);
	ck_assert_ptr_nonnull(json_object_get(a, "origin"));
	ck_assert_ptr_nonnull(json_object_get(a, "membership"));
	ck_assert_ptr_nonnull(json_object_get(a, "prev_state"));
	ck_assert_ptr_null(json_object_get(a, "unsigned"));
	ck_assert_ptr_null(json_object_get(a, "extra"));
	ck_assert_int_eq(json_object_size(json_object_get(a, "content")), 0);
	json_t *b = redact_str("11", ev);
	ck_assert_ptr_null(json_object_get(b, "origin"));
	ck_assert_ptr_null(json_object_get(b, "membership"));
	ck_assert_ptr_null(json_object_get(b, "prev_state"));
	ck_assert_ptr_nonnull(json_object_get(b, "depth"));
	json_decref(a);
	json_decref(b);
}
END_TEST

START_TEST(redaction_content_rules)
{
	json_t *r;
	const char *create = "{\"type\":\"m.room.create\",\"content\":{\"creator\":\"@u:d\",\"room_version\":\"10\","
			     "\"m.federate\":true}}";
	r = redact_str("10", create);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 1);
	json_decref(r);
	r = redact_str("11", create);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 3);
	json_decref(r);

	const char *pl =
		"{\"type\":\"m.room.power_levels\",\"content\":{\"ban\":50,\"invite\":0,\"notifications\":{}}}";
	r = redact_str("10", pl);
	ck_assert_ptr_null(json_object_get(json_object_get(r, "content"), "invite"));
	ck_assert_ptr_nonnull(json_object_get(json_object_get(r, "content"), "ban"));
	json_decref(r);
	r = redact_str("11", pl);
	ck_assert_ptr_nonnull(json_object_get(json_object_get(r, "content"), "invite"));
	ck_assert_ptr_null(json_object_get(json_object_get(r, "content"), "notifications"));
	json_decref(r);

	const char *red =
		"{\"type\":\"m.room.redaction\",\"redacts\":\"$a\",\"content\":{\"redacts\":\"$a\",\"reason\":\"r\"}}";
	r = redact_str("10", red);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 0);
	ck_assert_ptr_null(json_object_get(r, "redacts"));
	json_decref(r);
	r = redact_str("11", red);
	ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r, "content"), "redacts")), "$a");
	ck_assert_ptr_null(json_object_get(json_object_get(r, "content"), "reason"));
	json_decref(r);

	const char *mem = "{\"type\":\"m.room.member\",\"content\":{\"membership\":\"join\",\"displayname\":\"x\","
			  "\"join_authorised_via_users_server\":\"@a:d\",\"third_party_invite\":{\"signed\":{\"a\":1},"
			  "\"display_name\":\"z\"}}}";
	r = redact_str("8", mem);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 1);
	json_decref(r);
	r = redact_str("10", mem);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 2);
	json_decref(r);
	r = redact_str("11", mem);
	json_t *c = json_object_get(r, "content");
	ck_assert_int_eq(json_object_size(c), 3);
	ck_assert_int_eq(json_object_size(json_object_get(c, "third_party_invite")), 1);
	json_decref(r);

	const char *jr =
		"{\"type\":\"m.room.join_rules\",\"content\":{\"join_rule\":\"restricted\",\"allow\":[],\"x\":1}}";
	r = redact_str("7", jr);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 1);
	json_decref(r);
	r = redact_str("10", jr);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 2);
	json_decref(r);

	const char *al = "{\"type\":\"m.room.aliases\",\"content\":{\"aliases\":[\"#a:d\"]}}";
	r = redact_str("5", al);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 1);
	json_decref(r);
	r = redact_str("6", al);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 0);
	json_decref(r);

	const char *hv =
		"{\"type\":\"m.room.history_visibility\",\"content\":{\"history_visibility\":\"shared\",\"y\":2}}";
	r = redact_str("11", hv);
	ck_assert_int_eq(json_object_size(json_object_get(r, "content")), 1);
	json_decref(r);
}
END_TEST

START_TEST(rules_versions)
{
	struct event_rules r;
	ck_assert_int_eq(event_rules_for("12", &r), -1);
	ck_assert_int_eq(event_rules_for("0", &r), -1);
	ck_assert_int_eq(event_rules_for("01", &r), -1);
	ck_assert_int_eq(event_rules_for("x", &r), -1);
	ck_assert_int_eq(event_rules_for("3", &r), 0);
	ck_assert_int_eq(r.id_format, 3);
	ck_assert_int_eq(event_rules_for("11", &r), 0);
	ck_assert(r.redact_v11 && r.creator_is_sender && r.integer_power_levels);
}
END_TEST

START_TEST(client_format)
{
	json_t *pdu = load("{\"type\":\"m.room.redaction\",\"room_id\":\"!r:d\",\"sender\":\"@u:d\",\"depth\":4,"
			   "\"hashes\":{},\"signatures\":{},\"prev_events\":[],\"auth_events\":[],"
			   "\"origin_server_ts\":5,\"content\":{\"redacts\":\"$x\"}}");
	json_t *c = event_to_client(pdu, "$e");
	ck_assert_str_eq(json_string_value(json_object_get(c, "event_id")), "$e");
	ck_assert_str_eq(json_string_value(json_object_get(c, "redacts")), "$x");
	ck_assert_ptr_null(json_object_get(c, "depth"));
	ck_assert_ptr_null(json_object_get(c, "hashes"));
	json_decref(c);
	json_decref(pdu);
}
END_TEST

UNIT_MAIN("event", spec_vector_minimal, spec_vector_message, event_ids_v10_v11, redaction_top_level,
	  redaction_content_rules, rules_versions, client_format)
