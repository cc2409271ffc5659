/* handlers_events.h - GET /events, the deprecated event stream (r0): the
 * events of the user's rooms after a token, as one flat chunk (timeline
 * events, typing and receipts with their room_id, presence), built from
 * /sync (sync_build) and answered as {start, end, chunk}. Tokens are /sync
 * tokens. With a timeout and nothing new the request is parked on its
 * worker (its own wake event) until events_notify or the timeout. */
#ifndef AL_HANDLERS_EVENTS_H
#define AL_HANDLERS_EVENTS_H

#include "app.h"

int events_start(struct app *app);
/* New data committed: wake the parked /events requests. Any thread. */
void events_notify(struct app *app);
/* Before the workers stop: answer every parked request (waits up to 2 s). */
void events_drain(struct app *app);
/* After the workers stopped. */
void events_stop(struct app *app);

#endif
