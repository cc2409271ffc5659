/* room_visibility.h - history visibility (client-server spec, "History
 * visibility"): which events a user may see, decided per event from the
 * state at that event.
 *
 * For each event, its state group gives m.room.history_visibility and the
 * user's m.room.member after the event; for a history_visibility event and
 * for the user's own member events the state before it (the group of the
 * room's previous event in the stream) counts too, so a user sees her own
 * join and leave, and a visibility change is seen by whoever could see the
 * room under the old or the new setting. An event is visible when
 *   - history_visibility was world_readable, or
 *   - the user's membership was join, or
 *   - it was shared (also when unset or unknown) and the user joined at or
 *     after the event (a join event of hers at a later stream position), or
 *   - it was invited and her membership was invite.
 * Everything is decided in one query for a whole page of events. */
#ifndef AL_ROOM_VISIBILITY_H
#define AL_ROOM_VISIBILITY_H

#include <stdbool.h>

#include "db.h"
#include "error.h"

/* The rule above for one event: hv and membership may be NULL (unset). */
bool room_visibility_allowed(const char *history_visibility, const char *membership, bool joined_later);

/* visible[i] for each of n events (IDs of any rooms; an unknown ID is not
 * visible) as seen by user_id. One query. */
int room_visibility_filter(struct db *db, const char *user_id, const char *const *event_ids, int n, bool *visible,
			   struct al_error *err);

#endif
