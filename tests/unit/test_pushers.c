#include <string.h>

#include "pushers.h"
#include "unit.h"

static json_t *http_body(void)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:{s:s}}", "pushkey", "key", "kind", "http", "app_id",
			 "sytest", "app_display_name", "SyTest", "device_display_name", "phone", "lang", "en", "data",
			 "url", "https://push.example/_matrix/push/v1/notify");
}

static void expect(json_t *body, const char *errcode)
{
	struct al_error err = {0};
	bool del = false;
	ck_assert_int_eq(pushers_validate(body, &del, &err), -1);
	ck_assert_int_eq(err.status, 400);
	ck_assert_str_eq(err.errcode, errcode);
	json_decref(body);
}

START_TEST(accepts_http_and_delete)
{
	struct al_error err = {0};
	bool del = true;
	json_t *b = http_body();
	ck_assert_int_eq(pushers_validate(b, &del, &err), 0);
	ck_assert(!del);
	json_object_set_new(b, "kind", json_null());
	json_object_del(b, "data");
	ck_assert_int_eq(pushers_validate(b, &del, &err), 0);
	ck_assert(del);
	json_decref(b);
}
END_TEST

START_TEST(refuses_bad_bodies)
{
	json_t *b = http_body();
	json_object_del(b, "pushkey");
	expect(b, "M_MISSING_PARAM");
	b = http_body();
	json_object_del(b, "kind");
	expect(b, "M_MISSING_PARAM");
	b = http_body();
	json_object_set_new(b, "kind", json_string("carrier-pigeon"));
	expect(b, "M_INVALID_PARAM");
	b = http_body();
	json_object_del(b, "lang");
	expect(b, "M_MISSING_PARAM");
	b = http_body();
	json_object_set_new(b, "data", json_pack("{}"));
	expect(b, "M_MISSING_PARAM");
	b = http_body();
	json_object_set_new(b, "data", json_pack("{s:s}", "url", "https://push.example/other/path"));
	expect(b, "M_INVALID_PARAM");
	b = http_body();
	json_object_set_new(b, "data", json_pack("{s:s}", "url", "ftp://push.example/_matrix/push/v1/notify"));
	expect(b, "M_INVALID_PARAM");
	b = http_body();
	char big[PUSHERS_APP_ID_MAX + 2];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = 0;
	json_object_set_new(b, "app_id", json_string(big));
	expect(b, "M_INVALID_PARAM");
	b = http_body();
	json_object_set_new(b, "append", json_string("yes"));
	expect(b, "M_INVALID_PARAM");
	expect(json_string("x"), "M_BAD_JSON");
}
END_TEST

UNIT_MAIN("pushers", accepts_http_and_delete, refuses_bad_bodies)
