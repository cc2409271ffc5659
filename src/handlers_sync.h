/* handlers_sync.h - GET /sync with long-polling, filters, account data and
 * sendToDevice endpoints; owns the typing notices (app->typing) and their
 * expiry sweep. A /sync with a timeout and nothing to report parks its request
 * on the worker that received it (no thread blocks); sync_notify, called
 * after any stream write commits, wakes every worker's parked syncs through
 * a per-worker event (event_active is thread-safe). */
#ifndef AL_HANDLERS_SYNC_H
#define AL_HANDLERS_SYNC_H

#include "app.h"

#define SYNC_MAX_TIMEOUT_MS 60000

int sync_start(struct app *app);
/* New data committed: wake parked syncs on every worker, and the
 * federation sender (events for other servers may be queued). Any thread. */
void sync_notify(struct app *app);
/* Before the workers stop: answer every parked sync (waits up to 2 s). */
void sync_drain(struct app *app);
/* After the workers stopped. */
void sync_stop(struct app *app);

#endif
