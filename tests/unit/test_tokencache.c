#include "unit.h"

#include <stdio.h>
#include <string.h>

#include "tokencache.h"

static void key(unsigned char h[32], int n)
{
	crypto_hash_sha256(h, (const unsigned char *)&n, sizeof(n));
}

static struct tokencache_entry entry(const char *user, const char *dev)
{
	struct tokencache_entry e;
	memset(&e, 0, sizeof(e));
	snprintf(e.user_id, sizeof(e.user_id), "%s", user);
	snprintf(e.device_id, sizeof(e.device_id), "%s", dev);
	return e;
}

START_TEST(put_get_forget)
{
	struct tokencache *c = tokencache_new(8, 0);
	unsigned char h[32];
	key(h, 1);
	struct tokencache_entry e = entry("@a:x", "D1"), out;
	ck_assert_int_eq(tokencache_get(c, h, 10, &out), 0);
	ck_assert_int_eq(tokencache_put(c, h, &e, tokencache_generation(c), 10), 1);
	ck_assert_int_eq(tokencache_get(c, h, 11, &out), 1);
	ck_assert_str_eq(out.user_id, "@a:x");
	ck_assert_str_eq(out.device_id, "D1");
	tokencache_forget_token(c, h);
	ck_assert_int_eq(tokencache_get(c, h, 12, &out), 0);
	tokencache_free(c);
}
END_TEST

START_TEST(forget_user_and_device)
{
	struct tokencache *c = tokencache_new(64, 0);
	unsigned char h1[32], h2[32], h3[32];
	key(h1, 1);
	key(h2, 2);
	key(h3, 3);
	struct tokencache_entry a1 = entry("@a:x", "D1"), a2 = entry("@a:x", "D2"), b = entry("@b:x", "D1"), out;
	tokencache_put(c, h1, &a1, tokencache_generation(c), 1);
	tokencache_put(c, h2, &a2, tokencache_generation(c), 1);
	tokencache_put(c, h3, &b, tokencache_generation(c), 1);
	tokencache_forget_user(c, "@a:x", "D1");
	ck_assert_int_eq(tokencache_get(c, h1, 2, &out), 0);
	ck_assert_int_eq(tokencache_get(c, h2, 2, &out), 1);
	ck_assert_int_eq(tokencache_get(c, h3, 2, &out), 1);
	tokencache_forget_user(c, "@a:x", NULL);
	ck_assert_int_eq(tokencache_get(c, h2, 2, &out), 0);
	ck_assert_int_eq(tokencache_get(c, h3, 2, &out), 1);
	tokencache_free(c);
}
END_TEST

START_TEST(stale_put_is_refused)
{
	/* A lookup read the database, then a logout invalidated: the
	 * lookup's result must not enter the cache. */
	struct tokencache *c = tokencache_new(8, 0);
	unsigned char h[32];
	key(h, 7);
	struct tokencache_entry e = entry("@a:x", "D1"), out;
	uint64_t gen = tokencache_generation(c);
	tokencache_forget_user(c, "@a:x", NULL);
	ck_assert_int_eq(tokencache_put(c, h, &e, gen, 1), 0);
	ck_assert_int_eq(tokencache_get(c, h, 1, &out), 0);
	tokencache_free(c);
}
END_TEST

START_TEST(bounded_with_eviction_and_ttl)
{
	struct tokencache *c = tokencache_new(4, 1000);
	struct tokencache_entry e = entry("@a:x", "D"), out;
	unsigned char h[32];
	for (int i = 0; i < 1000; i++) {
		key(h, i);
		tokencache_put(c, h, &e, tokencache_generation(c), 100 + i);
	}
	ck_assert_uint_le(tokencache_count(c), 4 * TOKENCACHE_WAYS);
	key(h, 999);
	ck_assert_int_eq(tokencache_get(c, h, 1099, &out), 1);
	/* Past the TTL the entry is not trusted any more. */
	ck_assert_int_eq(tokencache_get(c, h, 2100, &out), 0);
	tokencache_free(c);
}
END_TEST

UNIT_MAIN("tokencache", put_get_forget, forget_user_and_device, stale_put_is_refused, bounded_with_eviction_and_ttl)
