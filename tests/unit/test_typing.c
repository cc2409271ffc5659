/* Typing notices in memory: serials, changes since a token, expiry, resets. */
#include <pthread.h>
#include <stdio.h>

#include "typing.h"
#include "unit.h"

#define R1 "!one:x"
#define R2 "!two:x"
#define A "@alice:x"
#define B "@bob:x"
#define T0 1000000

static json_t *changes(struct typing *t, int64_t since, bool *reset, int64_t *serial)
{
	json_t *c = NULL;
	*serial = typing_changes(t, since, &c, reset);
	ck_assert_ptr_nonnull(c);
	return c;
}

static size_t users_in(json_t *c, const char *room)
{
	json_t *a = json_object_get(c, room);
	ck_assert_ptr_nonnull(a);
	return json_array_size(a);
}

START_TEST(start_refresh_stop)
{
	struct typing *t = typing_new(T0);
	bool reset;
	int64_t s0, s1, s2;
	json_t *c = changes(t, 0, &reset, &s0);
	ck_assert_int_eq(json_object_size(c), 0);
	json_decref(c);
	ck_assert_int_eq(typing_set(t, R1, A, true, 5000, T0), 1);
	c = changes(t, s0, &reset, &s1);
	ck_assert(!reset);
	ck_assert_int_gt(s1, s0);
	ck_assert_int_eq(users_in(c, R1), 1);
	json_decref(c);
	/* the same user again: no change, nothing to report */
	ck_assert_int_eq(typing_set(t, R1, A, true, 5000, T0 + 100), 0);
	c = changes(t, s1, &reset, &s2);
	ck_assert_int_eq(s2, s1);
	ck_assert_int_eq(json_object_size(c), 0);
	json_decref(c);
	/* a second user, in another room: only that room changed */
	ck_assert_int_eq(typing_set(t, R2, B, true, 5000, T0 + 200), 1);
	c = changes(t, s1, &reset, &s2);
	ck_assert_int_eq(json_object_size(c), 1);
	ck_assert_int_eq(users_in(c, R2), 1);
	json_decref(c);
	/* stopping reports the room with the smaller set */
	ck_assert_int_eq(typing_set(t, R1, B, false, 0, T0 + 300), 0); /* bob was not typing there */
	ck_assert_int_eq(typing_set(t, R1, A, false, 0, T0 + 300), 1);
	c = changes(t, s2, &reset, &s1);
	ck_assert_int_eq(json_object_size(c), 1);
	ck_assert_int_eq(users_in(c, R1), 0);
	json_decref(c);
	/* an initial sync sees only rooms where someone types */
	c = changes(t, 0, &reset, &s1);
	ck_assert(!reset);
	ck_assert_int_eq(json_object_size(c), 1);
	ck_assert_ptr_nonnull(json_object_get(c, R2));
	json_decref(c);
	typing_free(t);
}
END_TEST

START_TEST(expiry)
{
	struct typing *t = typing_new(T0);
	bool reset;
	int64_t s0, s1;
	ck_assert_int_eq(typing_set(t, R1, A, true, 1000, T0), 1);
	ck_assert_int_eq(typing_set(t, R1, B, true, 3000, T0), 1);
	json_decref(changes(t, 0, &reset, &s0));
	ck_assert_int_eq(typing_expire(t, T0 + 999), 0);
	ck_assert_int_eq(typing_expire(t, T0 + 1000), 1);
	json_t *c = changes(t, s0, &reset, &s1);
	ck_assert_int_eq(users_in(c, R1), 1);
	ck_assert_str_eq(json_string_value(json_array_get(json_object_get(c, R1), 0)), B);
	json_decref(c);
	/* timeouts are clamped */
	ck_assert_int_eq(typing_set(t, R2, A, true, 10 * TYPING_MAX_TIMEOUT_MS, T0), 1);
	ck_assert_int_eq(typing_expire(t, T0 + TYPING_MAX_TIMEOUT_MS), 2);
	typing_free(t);
}
END_TEST

START_TEST(reset_for_unknown_tokens)
{
	struct typing *t = typing_new(T0);
	bool reset;
	int64_t s;
	ck_assert_int_eq(typing_set(t, R1, A, true, 1000, T0), 1);
	ck_assert_int_eq(typing_set(t, R2, A, true, 1000, T0), 1);
	ck_assert_int_eq(typing_set(t, R2, A, false, 0, T0), 1);
	/* a token of an earlier process (below the floor) */
	json_t *c = changes(t, 5, &reset, &s);
	ck_assert(reset);
	ck_assert_int_eq(json_object_size(c), 2);
	json_decref(c);
	/* a token from the future */
	c = changes(t, s + 10, &reset, &s);
	ck_assert(reset);
	json_decref(c);
	/* idle empty rooms are forgotten and raise the floor */
	int64_t old = s - 1;
	ck_assert_int_eq(typing_expire(t, T0 + TYPING_FORGET_MS), 1); /* alice expires in R1 */
	c = changes(t, old, &reset, &s);
	ck_assert(reset); /* R2 was forgotten after old */
	ck_assert_ptr_null(json_object_get(c, R2));
	json_decref(c);
	c = changes(t, s, &reset, &s);
	ck_assert(!reset);
	ck_assert_int_eq(json_object_size(c), 0);
	json_decref(c);
	typing_free(t);
}
END_TEST

START_TEST(bounds)
{
	struct typing *t = typing_new(T0);
	char long_id[300];
	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = 0;
	ck_assert_int_eq(typing_set(t, long_id, A, true, 1000, T0), -1);
	ck_assert_int_eq(typing_set(t, R1, long_id, true, 1000, T0), -1);
	typing_free(t);
}
END_TEST

static void *hammer(void *arg)
{
	struct typing *t = arg;
	char user[32];
	for (int i = 0; i < 2000; i++) {
		snprintf(user, sizeof(user), "@u%d:x", i % 17);
		typing_set(t, i % 2 ? R1 : R2, user, i % 3 != 0, 50, T0 + i);
		if (i % 100 == 0)
			typing_expire(t, T0 + i);
		json_t *c = NULL;
		bool reset;
		typing_changes(t, T0 + i / 2, &c, &reset);
		json_decref(c);
	}
	return NULL;
}

START_TEST(threads)
{
	struct typing *t = typing_new(T0);
	pthread_t th[4];
	for (int i = 0; i < 4; i++)
		pthread_create(&th[i], NULL, hammer, t);
	for (int i = 0; i < 4; i++)
		pthread_join(th[i], NULL);
	typing_expire(t, T0 + 100000);
	bool reset;
	int64_t s;
	json_t *c = changes(t, 0, &reset, &s);
	ck_assert_int_eq(json_object_size(c), 0);
	json_decref(c);
	typing_free(t);
}
END_TEST

UNIT_MAIN("typing", start_refresh_stop, expiry, reset_for_unknown_tokens, bounds, threads)
