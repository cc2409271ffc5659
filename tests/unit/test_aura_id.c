#include "unit.h"
#include <string.h>

#include "apps.h"
#include "aura_id.h"

START_TEST(usernames)
{
	ck_assert(aura_id_username_valid("abc"));
	ck_assert(aura_id_username_valid("A_b-9"));
	ck_assert(aura_id_username_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));   /* 30 */
	ck_assert(!aura_id_username_valid("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 31 */
	ck_assert(!aura_id_username_valid("ab"));
	ck_assert(!aura_id_username_valid(""));
	ck_assert(!aura_id_username_valid(NULL));
	ck_assert(!aura_id_username_valid("a.b.c"));
	ck_assert(!aura_id_username_valid("a b"));
	ck_assert(!aura_id_username_valid("\xc3\xa5lice"));
}
END_TEST

START_TEST(reserved)
{
	ck_assert(aura_id_username_reserved("admin"));
	ck_assert(aura_id_username_reserved("ADMIN"));
	ck_assert(aura_id_username_reserved("Root"));
	ck_assert(aura_id_username_reserved("support"));
	ck_assert(aura_id_username_reserved("system"));
	ck_assert(aura_id_username_reserved("AuraLink"));
	ck_assert(!aura_id_username_reserved("admins"));
	ck_assert(!aura_id_username_reserved("alice"));
}
END_TEST

START_TEST(parse_handles)
{
	char u[AURA_ID_MAX];
	ck_assert(aura_id_parse("@alice.aura", u, sizeof(u)));
	ck_assert_str_eq(u, "alice");
	ck_assert(aura_id_parse("Alice.aura", u, sizeof(u)));
	ck_assert_str_eq(u, "Alice");
	ck_assert(!aura_id_parse("@alice", u, sizeof(u)));
	ck_assert(!aura_id_parse("@al.aura", u, sizeof(u)));
	ck_assert(!aura_id_parse("@.aura", u, sizeof(u)));
	ck_assert(!aura_id_parse("@alice.aura.aura", u, sizeof(u)));
	ck_assert(!aura_id_parse("@alice:server.aura", u, sizeof(u)));
	ck_assert(!aura_id_parse(NULL, u, sizeof(u)));
	char small[4];
	ck_assert(!aura_id_parse("@alice.aura", small, sizeof(small)));
}
END_TEST

START_TEST(visibility)
{
	/* the lock-free part of the rule */
	ck_assert_int_eq(aura_id_visibility("@b:x", "@a:x", "public"), AURA_ID_VISIBLE);
	ck_assert_int_eq(aura_id_visibility(NULL, "@a:x", "public"), AURA_ID_VISIBLE);
	ck_assert_int_eq(aura_id_visibility("@b:x", "@a:x", "private"), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("@a:x", "@a:x", "private"), AURA_ID_VISIBLE);
	ck_assert_int_eq(aura_id_visibility(NULL, "@a:x", "private"), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("@b:x", "@a:x", "friends"), AURA_ID_IF_FRIENDS);
	ck_assert_int_eq(aura_id_visibility("@a:x", "@a:x", "friends"), AURA_ID_VISIBLE);
	ck_assert_int_eq(aura_id_visibility(NULL, "@a:x", "friends"), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("", "@a:x", "friends"), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("@b:x", "@a:x", "bogus"), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("@b:x", "@a:x", NULL), AURA_ID_HIDDEN);
	ck_assert_int_eq(aura_id_visibility("", "", "private"), AURA_ID_HIDDEN);
	/* decisions that need no database */
	struct al_error err = {0};
	ck_assert_int_eq(aura_id_visible_to(NULL, "@b:x", "@a:x", "public", &err), 1);
	ck_assert_int_eq(aura_id_visible_to(NULL, "@b:x", "@a:x", "private", &err), 0);
	ck_assert_int_eq(aura_id_visible_to(NULL, "@a:x", "@a:x", "friends", &err), 1);
	ck_assert_int_eq(aura_id_visible_to(NULL, NULL, "@a:x", "friends", &err), 0);
}
END_TEST

START_TEST(app_ids)
{
	ck_assert(apps_id_valid("com.example.app_1-x"));
	ck_assert(!apps_id_valid(""));
	ck_assert(!apps_id_valid("a b"));
	ck_assert(!apps_id_valid("a/b"));
	char id[130];
	memset(id, 'a', 128);
	id[128] = '\0';
	ck_assert(apps_id_valid(id));
	id[128] = 'a';
	id[129] = '\0';
	ck_assert(!apps_id_valid(id));
}
END_TEST

UNIT_MAIN("aura_id", usernames, reserved, parse_handles, visibility, app_ids)
