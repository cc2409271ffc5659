/* handlers_sync.h - GET /sync with long-polling, filters, account data and
 * sendToDevice endpoints; owns the typing notices (app->typing) and their
 * expiry sweep. A /sync with a timeout and nothing to report parks its request
 * on the worker that received it (no thread blocks). A write that commits
 * posts a notice (a room, or a user) to every worker with a sync in
 * flight and activates its wake event (event_active is thread-safe); the
 * worker re-runs only the parked syncs the notice concerns: the room is
 * one of the user's (joined, invited, knocking: read when she parked), or
 * the notice names her (then her rooms are read again). A sync collects
 * notices from before its first look at the stream, so nothing committed
 * between that look and parking is missed. The notices also go to the
 * other processes on the same database and theirs come in (sync_bus.h). */
#ifndef AL_HANDLERS_SYNC_H
#define AL_HANDLERS_SYNC_H

#include "app.h"

#define SYNC_MAX_TIMEOUT_MS 60000

int sync_start(struct app *app);
/* New data committed that may concern anyone (presence, events from other
 * servers): every parked sync re-runs; and the federation sender wakes
 * (events for other servers may be queued). Any thread. */
void sync_notify(struct app *app);
/* New events in room_id (and, for a membership change, user_id, may be
 * NULL): wakes the parked syncs of the room's members and of user_id, and
 * the federation sender. Any thread. */
void sync_notify_room(struct app *app, const char *room_id, const char *user_id);
/* Something new for user_id alone (account data, tags, to-device). */
void sync_notify_user(struct app *app, const char *user_id);
/* Before the workers stop: answer every parked sync (waits up to 2 s). */
void sync_drain(struct app *app);
/* After the workers stopped. */
void sync_stop(struct app *app);

#endif
