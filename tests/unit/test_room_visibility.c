/* History visibility: the rule for one event (room_visibility_allowed), the
 * spec's "History visibility" list. */
#include "room_visibility.h"
#include "unit.h"

START_TEST(world_readable_and_joined)
{
	ck_assert(room_visibility_allowed("world_readable", NULL, false));
	ck_assert(room_visibility_allowed("world_readable", "leave", false));
	for (int i = 0; i < 4; i++) {
		const char *hv[] = {"world_readable", "shared", "invited", "joined"};
		ck_assert(room_visibility_allowed(hv[i], "join", false));
	}
}
END_TEST

START_TEST(shared_needs_a_later_join)
{
	ck_assert(room_visibility_allowed("shared", NULL, true));
	ck_assert(room_visibility_allowed("shared", "leave", true));
	ck_assert(!room_visibility_allowed("shared", NULL, false));
	ck_assert(!room_visibility_allowed("shared", "invite", false));
	/* unset or unknown: shared */
	ck_assert(room_visibility_allowed(NULL, NULL, true));
	ck_assert(!room_visibility_allowed(NULL, NULL, false));
	ck_assert(room_visibility_allowed("org.example.other", NULL, true));
}
END_TEST

START_TEST(invited_and_joined_only)
{
	ck_assert(room_visibility_allowed("invited", "invite", false));
	ck_assert(!room_visibility_allowed("invited", NULL, true));
	ck_assert(!room_visibility_allowed("invited", "leave", true));
	ck_assert(!room_visibility_allowed("joined", "invite", true));
	ck_assert(!room_visibility_allowed("joined", NULL, true));
	ck_assert(!room_visibility_allowed("joined", "leave", true));
}
END_TEST

UNIT_MAIN("room_visibility", world_readable_and_joined, shared_needs_a_later_join, invited_and_joined_only)
