/* Server ACLs: globs, ports, IP literals, deny before allow. */
#include "room_acl.h"
#include "unit.h"

START_TEST(globs)
{
	ck_assert(room_acl_glob("*", "anything"));
	ck_assert(room_acl_glob("*.example.org", "a.b.example.org"));
	ck_assert(!room_acl_glob("*.example.org", "example.org"));
	ck_assert(room_acl_glob("ex?mple.org", "EXAMPLE.org"));
	ck_assert(!room_acl_glob("ex?mple.org", "exmple.org"));
	ck_assert(room_acl_glob("a*b*c", "aXXbYYc"));
	ck_assert(!room_acl_glob("a*b*c", "aXXbYY"));
	ck_assert(room_acl_glob("", ""));
	ck_assert(!room_acl_glob("", "x"));
}
END_TEST

START_TEST(rules)
{
	json_t *c = json_pack("{s:[s], s:[s]}", "allow", "*", "deny", "localhost");
	ck_assert(!room_acl_allows(c, "localhost:8448"));
	ck_assert(!room_acl_allows(c, "localhost"));
	ck_assert(room_acl_allows(c, "other:8448"));
	json_decref(c);
	c = json_pack("{s:[s], s:b}", "allow", "*", "allow_ip_literals", 0);
	ck_assert(!room_acl_allows(c, "127.0.0.1:8448"));
	ck_assert(!room_acl_allows(c, "[::1]:8448"));
	ck_assert(room_acl_allows(c, "host1.example:8448"));
	json_decref(c);
	c = json_pack("{s:[s]}", "deny", "evil.org");
	ck_assert(!room_acl_allows(c, "good.org")); /* no allow list: nobody */
	json_decref(c);
	c = json_pack("{s:[i, s]}", "allow", 3, "good.*");
	ck_assert(room_acl_allows(c, "good.org:1"));
	json_decref(c);
	ck_assert(room_acl_allows(NULL, "x")); /* no ACL */
}
END_TEST

UNIT_MAIN("room_acl", globs, rules)
