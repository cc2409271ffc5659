#include "unit.h"

#include <string.h>

#include "accounts.h"
#include "b64.h"

START_TEST(localpart_grammar)
{
	ck_assert(accounts_localpart_valid("alice"));
	ck_assert(accounts_localpart_valid("a.b_c=d-e/f+g0"));
	ck_assert(!accounts_localpart_valid(""));
	ck_assert(!accounts_localpart_valid("Alice"));
	const char *bad = "!\":?\\@[]{|} \n'#,";
	for (const char *c = bad; *c; c++) {
		char lp[8] = "ab";
		lp[2] = *c;
		ck_assert_msg(!accounts_localpart_valid(lp), "accepted %s", lp);
	}
	ck_assert(!accounts_localpart_valid("caf\xc3\xa9"));
}
END_TEST

START_TEST(lowercasing)
{
	char out[16];
	ck_assert_int_eq(accounts_localpart_lower("User-UPPER", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "user-upper");
	ck_assert_int_eq(accounts_localpart_lower("0123456789abcdefg", out, sizeof(out)), -1);
}
END_TEST

START_TEST(user_id_length_limit)
{
	char out[512], lp[300];
	struct al_error err = {0};
	ck_assert_int_eq(accounts_user_id("alice", "example.org", out, sizeof(out), &err), 0);
	ck_assert_str_eq(out, "@alice:example.org");
	/* @ + lp + : + "example.org" (11) = 255 exactly */
	memset(lp, 'a', 242);
	lp[242] = '\0';
	ck_assert_int_eq(accounts_user_id(lp, "example.org", out, sizeof(out), &err), 0);
	ck_assert_uint_eq(strlen(out), 255);
	lp[242] = 'a';
	lp[243] = '\0';
	ck_assert_int_eq(accounts_user_id(lp, "example.org", out, sizeof(out), &err), -1);
	ck_assert_str_eq(err.errcode, "M_INVALID_USERNAME");
	ck_assert_int_eq(accounts_user_id("b@d", "example.org", out, sizeof(out), &err), -1);
	ck_assert_int_eq(err.status, 400);
}
END_TEST

START_TEST(login_user_forms)
{
	char out[256];
	ck_assert_int_eq(accounts_login_user_id("alice", "hs:8448", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "@alice:hs:8448");
	ck_assert_int_eq(accounts_login_user_id("@Alice:hs:8448", "hs:8448", out, sizeof(out)), 0);
	ck_assert_str_eq(out, "@alice:hs:8448");
	ck_assert_int_eq(accounts_login_user_id("@alice:other", "hs:8448", out, sizeof(out)), -1);
	ck_assert_int_eq(accounts_login_user_id("@:hs:8448", "hs:8448", out, sizeof(out)), -1);
	ck_assert_int_eq(accounts_login_user_id("@alice", "hs:8448", out, sizeof(out)), -1);
	ck_assert_int_eq(accounts_login_user_id("al ice", "hs:8448", out, sizeof(out)), -1);
}
END_TEST

START_TEST(generated_ids)
{
	char lp[18], dev[11];
	accounts_generate_localpart(lp);
	ck_assert_uint_eq(strlen(lp), 17);
	ck_assert(accounts_localpart_valid(lp));
	accounts_generate_device_id(dev);
	ck_assert_uint_eq(strlen(dev), 10);
	ck_assert(accounts_device_id_valid(dev));
	ck_assert(!accounts_device_id_valid(""));
	ck_assert(!accounts_device_id_valid("a\nb"));
}
END_TEST

START_TEST(tokens)
{
	char *t1 = NULL, *t2 = NULL;
	unsigned char h1[32], h2[32], again[32];
	ck_assert_int_eq(accounts_token_new(&t1, h1), 0);
	ck_assert_int_eq(accounts_token_new(&t2, h2), 0);
	/* 32 bytes, unpadded URL-safe base64: 43 characters of [A-Za-z0-9_-] */
	ck_assert_uint_eq(strlen(t1), 43);
	ck_assert_uint_eq(strspn(t1, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
	unsigned char raw[40];
	size_t n = 0;
	ck_assert_int_eq(b64_decode(t1, strlen(t1), raw, sizeof(raw), &n), 0);
	ck_assert_uint_eq(n, 32);
	ck_assert_str_ne(t1, t2);
	accounts_token_hash(t1, strlen(t1), again);
	ck_assert_mem_eq(again, h1, 32);
	ck_assert(memcmp(h1, h2, 32) != 0);
	accounts_token_free(t1);
	accounts_token_free(t2);
}
END_TEST

START_TEST(passwords)
{
	struct al_config cfg = {0};
	cfg.password_ops_limit = 1;
	cfg.password_mem_limit = 8192 * 1024;
	ck_assert_int_eq(accounts_init(&cfg), 0);
	char hash[ACCOUNTS_HASH_STR_MAX];
	ck_assert_int_eq(accounts_password_hash(&cfg, "s3cret", hash), 0);
	ck_assert(strncmp(hash, "$argon2id$", 10) == 0);
	ck_assert(accounts_password_verify(hash, "s3cret"));
	ck_assert(!accounts_password_verify(hash, "s3cret!"));
	/* Unknown user: verified against the dummy hash, never true. */
	ck_assert(!accounts_password_verify(NULL, "s3cret"));
	ck_assert(!accounts_password_verify(NULL, ""));
}
END_TEST

START_TEST(utf8_chars)
{
	ck_assert_uint_eq(accounts_utf8_chars(""), 0);
	ck_assert_uint_eq(accounts_utf8_chars("abc"), 3);
	ck_assert_uint_eq(accounts_utf8_chars("\xc3\xa9t\xc3\xa9"), 3);
	ck_assert_uint_eq(accounts_utf8_chars("\xf0\x9f\x98\x80"), 1);
}
END_TEST

UNIT_MAIN("accounts", localpart_grammar, lowercasing, user_id_length_limit, login_user_forms, generated_ids, tokens,
	  passwords, utf8_chars)
