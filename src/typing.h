/* typing.h - typing notices: who is typing in which room, in memory only
 * (they are ephemeral and never stored), shared by every worker thread
 * behind one mutex. Domain module: no HTTP, no SQL.
 *
 * Every change (a user starts or stops typing, or her timeout expires)
 * takes the next serial and stamps its room. /sync carries the last serial
 * it reported (struct sync_pos.typing) and reports a room's set again only
 * when the room was stamped after it, so an unchanged set is sent once.
 *
 * Serials start at the wall clock in ms when the process starts (the
 * floor), so a token from an earlier process is below the floor: its
 * holder may still show notices that are gone, and gets every room's
 * current set once (a reset). Rooms idle for TYPING_FORGET_MS are dropped
 * and raise the floor to their stamp. */
#ifndef AL_TYPING_H
#define AL_TYPING_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define TYPING_DEFAULT_TIMEOUT_MS 30000
#define TYPING_MAX_TIMEOUT_MS 120000
#define TYPING_FORGET_MS 600000

struct typing;

struct typing *typing_new(int64_t now_ms);
void typing_free(struct typing *t);

/* user_id starts typing in room_id until now + timeout_ms (clamped to
 * 1..TYPING_MAX_TIMEOUT_MS), or stops (typing false). 1 when the room's
 * set changed (parked syncs should wake), 0 when it did not, -1 when the
 * IDs are too long or memory ran out. */
int typing_set(struct typing *t, const char *room_id, const char *user_id, bool typing, int64_t timeout_ms,
	       int64_t now_ms);

/* Remove users whose timeout passed and forget rooms idle for
 * TYPING_FORGET_MS. Returns how many rooms' sets changed. */
int typing_expire(struct typing *t, int64_t now_ms);

/* What a sync that last saw serial `since` must report. *changes (new
 * object, owned by the caller) maps room IDs to arrays of typing user IDs:
 *  - since 0 (initial sync): the rooms where someone is typing;
 *  - since from this process: the rooms stamped after since;
 *  - otherwise (*reset set): every room known; rooms missing from
 *    *changes have nobody typing and must be reported as empty.
 * Returns the current serial (the typing part of next_batch). */
int64_t typing_changes(struct typing *t, int64_t since, json_t **changes, bool *reset);

#endif
