/* mesh.h - the mesh service: the registry in memory backed by PostgreSQL
 * (load at start, batched flushes, sweeper on app->main_base), node
 * registration, routes and their feedback, analytics, admin reputation.
 * Handlers (handlers_mesh.c) call these after validating their input.
 *
 * Cross-domain destinations: mesh_route_find resolves an AuraID hosted
 * elsewhere through federation, fetches its owner's org.auralink.mesh_nodes
 * and hands the records to mesh_registry_add_remote() (mesh_registry.h);
 * the search then treats them as the destination's nodes.
 * mesh_nodes_public_json() below is the answer this server gives to that
 * query for its own users. */
#ifndef AL_MESH_H
#define AL_MESH_H

#include <jansson.h>
#include <stdbool.h>

#include "app.h"
#include "db.h"
#include "error.h"
#include "mesh_registry.h"

struct mesh_route_queue; /* mesh_routes rows waiting for their batch (mesh.c) */

struct mesh_state {
	struct mesh_registry *reg;
	struct mesh_route_queue *routes;
	struct event *flush_ev, *sweep_ev, *route_flush_ev;
	struct app *app;
};

int mesh_start(struct app *app);
void mesh_stop(struct app *app);

/* Load every node from the database into reg. */
int mesh_load(struct mesh_registry *reg, struct db *db, int64_t now_ms, struct al_error *err);
/* Write dirty nodes (one UPDATE ... FROM unnest) and queued reputation
 * events (one INSERT). */
int mesh_flush(struct mesh_registry *reg, struct db *db, struct al_error *err);

/* Register a node for user_id (in->aura_id must be hers): *out the record. */
int mesh_node_register(struct app *app, struct db *db, const char *user_id, struct mesh_node_info *in, json_t **out,
		       struct al_error *err);
int mesh_node_delete(struct app *app, struct db *db, const char *user_id, const char *node_id, struct al_error *err);
/* A node record, if its AuraID is visible to viewer (else 404). */
int mesh_node_get(struct app *app, struct db *db, const char *viewer, const char *node_id, json_t **out,
		  struct al_error *err);
int mesh_nodes_of_aura(struct app *app, struct db *db, const char *viewer, const char *aura_id, json_t **out,
		       struct al_error *err);
/* org.auralink.mesh_nodes asked by server `origin`: {user_id, aura_id,
 * nodes} with the online local nodes of user_id's AuraID, under the rule
 * of the org.auralink.aura_id query: 404 M_NOT_FOUND when the user has no
 * active public AuraID (unknown, private, friends-only, suspended or
 * deactivated); 403 M_FORBIDDEN when she disabled federation or her
 * federated_domains does not list origin. */
int mesh_nodes_public_json(struct app *app, struct db *db, const char *origin, const char *user_id, json_t **out,
			   struct al_error *err);

/* POST /mesh/routes/find-optimal: src_aura must be user_id's AuraID (403).
 * A destination hosted here is routed at once. One that is not is
 * resolved through federation (federation_resolve_aura_id: its user_id and
 * server), her server is asked for her online nodes
 * (org.auralink.mesh_nodes), they join the registry as remote nodes for
 * MESH_REMOTE_TTL_MS (so later calls within that time ask nobody) and the
 * normal search runs. 404 M_NOT_FOUND when the AuraID is unknown, private,
 * not shared with this server or has no usable node; 502 when its server
 * did not answer or sent invalid records. Both AuraIDs come from the
 * AuraID cache and the search from the registry, so a route to a local
 * destination queries PostgreSQL only on a cache miss: a new route gets
 * its route_id here and its mesh_routes row is written in a batch within
 * about 50 ms (the route's performance report and the analytics write
 * waiting rows first); a cached route touches nothing. The reply carries
 * relays_considered, paths_evaluated, search_us and search_cpu_us (wall
 * clock and CPU time of this thread in mesh_registry_find, microseconds).
 * cb runs exactly once with the route (owned by cb) or NULL and err: before
 * mesh_route_find returns when no federation is needed, otherwise later on
 * base's loop. db must be usable on base's thread (a worker's own
 * connection) until then. */
typedef void (*mesh_find_cb)(void *arg, json_t *route, const struct al_error *err);
void mesh_route_find(struct app *app, struct db *db, const char *user_id, const char *src_aura, const char *dst_aura,
		     int media, bool require_aic, struct event_base *base, mesh_find_cb cb, void *arg);

struct mesh_performance {
	double actual_latency_ms;     /* < 0: not sent */
	double actual_bandwidth_mbps; /* < 0: not sent */
	double packet_loss_rate;      /* < 0: not sent */
	double jitter_ms;             /* < 0: not sent */
};
/* Success: packet loss below 5 % and latency below 400 ms (when sent). */
bool mesh_performance_success(const struct mesh_performance *p);
int mesh_route_performance(struct app *app, struct db *db, const char *user_id, const char *route_id,
			   const struct mesh_performance *p, json_t **out, struct al_error *err);
int mesh_route_analytics(struct app *app, struct db *db, const char *user_id, int hours, json_t **out,
			 struct al_error *err);

/* For abuse.c: an admin confirmed a report against node_id; lowers its
 * reputation by mesh_reputation_abuse_delta(severity) with an
 * abuse_confirmed event. 404 when the node is unknown (deleted since). */
int mesh_node_abuse_confirmed(struct app *app, const char *node_id, const char *severity, const char *report_id,
			      struct al_error *err);

int mesh_admin_reputation(struct app *app, struct db *db, const char *admin, const char *node_id, double change,
			  int event_type, const char *description, json_t **out, struct al_error *err);

#endif
