#include "unit.h"
#include <stdlib.h>

#include "router.h"

static int h1, h2, h3;

static struct router *make(void)
{
	struct router *r = router_new();
	ck_assert_int_eq(router_add(r, ROUTER_GET, "/_matrix/client/versions", &h1), 0);
	ck_assert_int_eq(
		router_add(r, ROUTER_GET | ROUTER_PUT, "/_matrix/client/r0|v3/profile/{userId}/displayname", &h2), 0);
	ck_assert_int_eq(router_add(r, ROUTER_PUT, "/_matrix/client/v3/rooms/{roomId}/state/{type}/{stateKey}", &h3),
			 0);
	return r;
}

static enum router_result match(struct router *r, unsigned m, const char *path, void **h, const char **p, int *np)
{
	char *seg[ROUTER_MAX_SEGMENTS];
	int n = router_split_path(path, seg, ROUTER_MAX_SEGMENTS);
	ck_assert_int_ge(n, 0);
	enum router_result res = router_match(r, m, seg, n, h, p, np);
	/* params point into seg: copy what the test checks before freeing */
	static char keep[ROUTER_MAX_PARAMS][128];
	for (int i = 0; res == ROUTER_FOUND && i < *np; i++) {
		snprintf(keep[i], sizeof(keep[i]), "%s", p[i]);
		p[i] = keep[i];
	}
	for (int i = 0; i < n; i++)
		free(seg[i]);
	return res;
}

START_TEST(literal_and_alternatives)
{
	struct router *r = make();
	void *h = NULL;
	const char *p[ROUTER_MAX_PARAMS];
	int np = 0;
	ck_assert_int_eq(match(r, ROUTER_GET, "/_matrix/client/versions", &h, p, &np), ROUTER_FOUND);
	ck_assert_ptr_eq(h, &h1);
	ck_assert_int_eq(np, 0);
	ck_assert_int_eq(match(r, ROUTER_GET, "/_matrix/client/r0/profile/%40a%3Ab.c/displayname", &h, p, &np),
			 ROUTER_FOUND);
	ck_assert_ptr_eq(h, &h2);
	ck_assert_int_eq(np, 1);
	ck_assert_str_eq(p[0], "@a:b.c");
	ck_assert_int_eq(match(r, ROUTER_PUT, "/_matrix/client/v3/profile/x/displayname", &h, p, &np), ROUTER_FOUND);
	router_free(r);
}
END_TEST

START_TEST(not_found_vs_bad_method)
{
	struct router *r = make();
	void *h = NULL;
	const char *p[ROUTER_MAX_PARAMS];
	int np = 0;
	ck_assert_int_eq(match(r, ROUTER_POST, "/_matrix/client/versions", &h, p, &np), ROUTER_BAD_METHOD);
	ck_assert_int_eq(match(r, ROUTER_GET, "/_matrix/client/v4/profile/x/displayname", &h, p, &np),
			 ROUTER_NOT_FOUND);
	ck_assert_int_eq(match(r, ROUTER_GET, "/_matrix/client/versions/", &h, p, &np), ROUTER_NOT_FOUND);
	ck_assert_int_eq(match(r, ROUTER_GET, "/", &h, p, &np), ROUTER_NOT_FOUND);
	router_free(r);
}
END_TEST

START_TEST(empty_capture_and_encoded_slash)
{
	struct router *r = make();
	void *h = NULL;
	const char *p[ROUTER_MAX_PARAMS];
	int np = 0;
	ck_assert_int_eq(match(r, ROUTER_PUT, "/_matrix/client/v3/rooms/!r%3Ax/state/m.room.name/", &h, p, &np),
			 ROUTER_FOUND);
	ck_assert_int_eq(np, 3);
	ck_assert_str_eq(p[0], "!r:x");
	ck_assert_str_eq(p[1], "m.room.name");
	ck_assert_str_eq(p[2], "");
	ck_assert_int_eq(match(r, ROUTER_PUT, "/_matrix/client/v3/rooms/a/state/t/a%2Fb", &h, p, &np), ROUTER_FOUND);
	ck_assert_str_eq(p[2], "a/b");
	router_free(r);
}
END_TEST

START_TEST(split_rejects_bad_paths)
{
	char *seg[4];
	ck_assert_int_eq(router_split_path("/a/%00/b", seg, 4), -1);
	ck_assert_int_eq(router_split_path("relative", seg, 4), -1);
	ck_assert_int_eq(router_split_path(NULL, seg, 4), -1);
	ck_assert_int_eq(router_split_path("/a/b/c/d/e", seg, 4), -1);
	int n = router_split_path("/a/b", seg, 4);
	ck_assert_int_eq(n, 2);
	for (int i = 0; i < n; i++)
		free(seg[i]);
}
END_TEST

START_TEST(add_rejects_bad_patterns)
{
	struct router *r = router_new();
	ck_assert_int_eq(router_add(r, ROUTER_GET, "no-slash", &h1), -1);
	ck_assert_int_eq(router_add(r, ROUTER_GET, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}", &h1), -1);
	router_free(r);
}
END_TEST

UNIT_MAIN("router", literal_and_alternatives, not_found_vs_bad_method, empty_capture_and_encoded_slash,
	  split_rejects_bad_paths, add_rejects_bad_patterns)
