#include <string.h>

#include "accounts.h"
#include "uia.h"
#include "unit.h"

START_TEST(remembers_params_and_password)
{
	struct uia_sessions *s = uia_sessions_new(10, 1000);
	json_t *params = json_pack("{s:s, s:b}", "username", "alice", "inhibit_login", 1);
	char id[UIA_SESSION_ID_LEN + 1];
	ck_assert_int_eq(uia_session_create(s, params, "pw", 0, id), 0);
	json_decref(params);
	ck_assert_uint_eq(strlen(id), UIA_SESSION_ID_LEN);
	struct uia_session_view v;
	ck_assert_int_eq(uia_session_get(s, id, 10, &v), 0);
	ck_assert_str_eq(json_string_value(json_object_get(v.params, "username")), "alice");
	ck_assert_str_eq(v.password, "pw");
	ck_assert_str_eq(v.completed_user_id, "");
	json_decref(v.params);
	accounts_secret_free(v.password);
	uia_session_complete(s, id, "@alice:a.test");
	ck_assert_int_eq(uia_session_get(s, id, 20, &v), 0);
	ck_assert_str_eq(v.completed_user_id, "@alice:a.test");
	ck_assert_ptr_null(v.password); /* forgotten once used */
	json_decref(v.params);
	ck_assert_int_eq(uia_session_get(s, "nope", 20, &v), -1);
	uia_sessions_free(s);
}
END_TEST

START_TEST(expires_and_evicts_oldest)
{
	struct uia_sessions *s = uia_sessions_new(2, 1000);
	json_t *p = json_object();
	char a[UIA_SESSION_ID_LEN + 1], b[UIA_SESSION_ID_LEN + 1], c[UIA_SESSION_ID_LEN + 1];
	ck_assert_int_eq(uia_session_create(s, p, NULL, 0, a), 0);
	ck_assert_int_eq(uia_session_create(s, p, NULL, 1, b), 0);
	ck_assert_int_eq(uia_session_create(s, p, NULL, 600, c), 0); /* evicts a */
	struct uia_session_view v;
	ck_assert_int_eq(uia_session_get(s, a, 3, &v), -1);
	ck_assert_int_eq(uia_session_get(s, b, 3, &v), 0);
	json_decref(v.params);
	ck_assert_int_eq(uia_session_get(s, c, 1500, &v), 0); /* b expired meanwhile */
	json_decref(v.params);
	ck_assert_int_eq(uia_session_get(s, b, 1500, &v), -1);
	ck_assert_int_eq(uia_session_get(s, c, 1700, &v), -1);
	json_decref(p);
	uia_sessions_free(s);
}
END_TEST

UNIT_MAIN("uia", remembers_params_and_password, expires_and_evicts_oldest)
