/* app.h - the daemon's shared context, built in main and handed to every
 * request. Each member is owned by its module. */
#ifndef AL_APP_H
#define AL_APP_H

#include "config.h"

struct keys;
struct router;
struct uia_sessions;
struct event_base;
struct db;
struct aura_id_state;
struct workpool;
struct ratelimit_table;
struct tokencache;
struct sync_state;
struct events_state;
struct typing;
struct federation;
struct mesh_state;
struct room_queue;
struct calls_module;

struct app {
	struct al_config cfg;
	struct keys *keys;
	struct router *router;
	/* The main thread's loop and database connection, for periodic
	 * maintenance (batched flushes, sweepers). Only touch them from
	 * callbacks that run on main_base. */
	struct event_base *main_base;
	struct db *maint_db;
	/* AuraID cache, pending last_used_at touches, verifier (aura_id.c). */
	struct aura_id_state *aura_id;
	/* CPU-bound work (password hashing) off the event loops: workpool.h */
	struct workpool *workpool;
	/* Token buckets of ratelimit.c */
	struct ratelimit_table *ratelimit;
	/* Access-token cache of auth.c */
	struct tokencache *tokens;
	struct uia_sessions *uia; /* /register user-interactive auth sessions */
	/* Parked long-poll syncs per worker (handlers_sync.c) */
	struct sync_state *sync;
	/* Parked long-poll GET /events (handlers_events.c) */
	struct events_state *events;
	/* Typing notices in memory (typing.c; started and freed by handlers_sync.c) */
	struct typing *typing;
	/* Mesh registry, model, route cache (mesh.c) */
	struct mesh_state *mesh;
	/* Federation layer (federation/federation.h) */
	struct federation *federation;
	/* Group commit of PUT /send (room_queue.h; started by rooms_start) */
	struct room_queue *room_queue;
	/* Call tracking: the expiry sweeper (calls.c) */
	struct calls_module *calls;
};

#endif
