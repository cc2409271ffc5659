#include "unit.h"

#include <string.h>

#include "audit.h"
#include "cjson.h"

START_TEST(hash_is_sha256_of_canonical_json_and_prev)
{
	unsigned char prev[32] = {0}, out[32], expect[32];
	json_t *details = json_pack("{s:i, s:s}", "b", 1, "a", "x");
	struct al_error err = {0};
	ck_assert_int_eq(audit_entry_hash("admin", "suspend_user", "@a:x", "@b:x", NULL, details, 1700000000123LL, prev,
					  out, &err),
			 0);
	const char *canon = "{\"action\":\"suspend_user\",\"actor\":\"@a:x\",\"category\":\"admin\","
			    "\"created_at\":1700000000123,\"details\":{\"a\":\"x\",\"b\":1},"
			    "\"origin_server\":null,\"target\":\"@b:x\"}";
	crypto_hash_sha256_state st;
	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, (const unsigned char *)canon, strlen(canon));
	crypto_hash_sha256_update(&st, prev, 32);
	crypto_hash_sha256_final(&st, expect);
	ck_assert_mem_eq(out, expect, 32);
	json_decref(details);
}
END_TEST

START_TEST(every_field_changes_the_hash)
{
	unsigned char prev[32] = {0}, base[32], h[32];
	struct al_error err = {0};
	json_t *d = json_pack("{s:i}", "n", 1), *d2 = json_pack("{s:i}", "n", 2);
	ck_assert_int_eq(audit_entry_hash("admin", "a", "x", "y", "o", d, 5, prev, base, &err), 0);
	ck_assert_int_eq(audit_entry_hash("admin", "a", "x", "y", "o", d2, 5, prev, h, &err), 0);
	ck_assert(memcmp(base, h, 32) != 0);
	ck_assert_int_eq(audit_entry_hash("admin", "a", "x", "y", "o", d, 6, prev, h, &err), 0);
	ck_assert(memcmp(base, h, 32) != 0);
	ck_assert_int_eq(audit_entry_hash("admin", "a", "x", NULL, "o", d, 5, prev, h, &err), 0);
	ck_assert(memcmp(base, h, 32) != 0);
	prev[31] = 1;
	ck_assert_int_eq(audit_entry_hash("admin", "a", "x", "y", "o", d, 5, prev, h, &err), 0);
	ck_assert(memcmp(base, h, 32) != 0);
	json_decref(d);
	json_decref(d2);
}
END_TEST

START_TEST(null_details_equal_empty_object)
{
	unsigned char prev[32] = {0}, a[32], b[32];
	struct al_error err = {0};
	json_t *empty = json_object();
	ck_assert_int_eq(audit_entry_hash("keys", "rotate", NULL, NULL, NULL, NULL, 1, prev, a, &err), 0);
	ck_assert_int_eq(audit_entry_hash("keys", "rotate", NULL, NULL, NULL, empty, 1, prev, b, &err), 0);
	ck_assert_mem_eq(a, b, 32);
	json_decref(empty);
}
END_TEST

START_TEST(non_canonical_details_refused)
{
	unsigned char prev[32] = {0}, h[32];
	struct al_error err = {0};
	json_t *f = json_pack("{s:f}", "x", 1.5);
	ck_assert_int_eq(audit_entry_hash("admin", "a", NULL, NULL, NULL, f, 1, prev, h, &err), -1);
	json_t *arr = json_array();
	ck_assert_int_eq(audit_entry_hash("admin", "a", NULL, NULL, NULL, arr, 1, prev, h, &err), -1);
	json_decref(f);
	json_decref(arr);
}
END_TEST

UNIT_MAIN("audit", hash_is_sha256_of_canonical_json_and_prev, every_field_changes_the_hash,
	  null_details_equal_empty_object, non_canonical_details_refused)
