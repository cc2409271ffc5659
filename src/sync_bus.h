/* sync_bus.h - wake notices between auralinkd processes that share one
 * database: what handlers_sync posts to its own workers (a room, a user,
 * or everything) is also sent with NOTIFY on channel auralink_sync, and
 * what the other processes send arrives by LISTEN on the same dedicated
 * connection, on the main loop. Each process tags its notices with a
 * random origin and ignores its own. A notice published while the
 * connection is down is lost to the others (their parked syncs still
 * answer at their timeout); the connection is retried on every tick. */
#ifndef AL_SYNC_BUS_H
#define AL_SYNC_BUS_H

#include <stdbool.h>

struct event_base;
struct sync_bus;

#define SYNC_BUS_CHANNEL "auralink_sync"
#define SYNC_BUS_ID_MAX 255

/* kind: 'r' room, 'u' user, '*' everything (id ""). */
typedef void (*sync_bus_fn)(void *arg, char kind, const char *id);

/* fn runs on base's loop for every notice of another process. NULL when
 * out of memory. */
struct sync_bus *sync_bus_new(struct event_base *base, const char *conninfo, sync_bus_fn fn, void *arg);
/* Any thread: queued, sent from the main loop. */
void sync_bus_publish(struct sync_bus *b, char kind, const char *id);
/* Main loop, periodically: (re)connect and LISTEN when not connected (the
 * first call at once, then every 10th). */
void sync_bus_tick(struct sync_bus *b);
void sync_bus_free(struct sync_bus *b);

#endif
