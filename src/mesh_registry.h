/* mesh_registry.h - the mesh nodes in memory: indexes by node_id and
 * AuraID, heartbeats, online window, reputation, route finding over the
 * registry with the learned model and the route cache. Domain module: no
 * HTTP and no SQL (mesh.c loads and flushes it). Thread-safe: one rwlock. */
#ifndef AL_MESH_REGISTRY_H
#define AL_MESH_REGISTRY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "mesh_reputation.h"
#include "mesh_route.h"

enum mesh_node_type { MESH_PEER, MESH_RELAY, MESH_EDGE, MESH_SUPER_NODE };
const char *mesh_node_type_name(int t);
int mesh_node_type_parse(const char *s); /* -1 when unknown */

#define MESH_MAX_NODES_PER_AURA 64
#define MESH_RELAY_MAX_LOAD 0.8 /* relays below 80 % of max_connections */

/* A node record as stored (register, load from the database). */
struct mesh_node_info {
	char node_id[37];
	char aura_id[256];
	char user_id[256];
	int type;
	char address[256]; /* "" = none */
	int port;          /* 0 = none */
	int max_connections, current_connections;
	double bandwidth_capacity_mbps, bandwidth_used_mbps, avg_latency_ms, packet_loss_rate;
	char region[65];
	char country_code[3];
	bool has_position;
	double latitude, longitude;
	bool supports_video, supports_audio, supports_screen_share, supports_aic;
	bool accepting_connections, is_online;
	int64_t last_heartbeat_ms, created_ms;
	double reputation_score, uptime_percentage, access_delay_ms;
	int total_routes, successful_routes;
};

/* Heartbeat metrics; a negative value / -1 means "not sent". */
struct mesh_heartbeat {
	int current_connections;
	double bandwidth_used_mbps, avg_latency_ms, packet_loss_rate;
	int accepting_connections; /* -1, 0, 1 */
};

struct mesh_registry;

struct mesh_registry *mesh_registry_new(int64_t online_window_ms, int64_t heartbeat_min_interval_ms);
void mesh_registry_free(struct mesh_registry *r);

/* Add a node (register or load). Nodes whose last heartbeat is older than
 * the online window are added offline. -1 when out of memory or known. */
int mesh_registry_add(struct mesh_registry *r, const struct mesh_node_info *info, int64_t now_ms);
/* Remove; -1 when unknown. */
int mesh_registry_remove(struct mesh_registry *r, const char *node_id);

/* Checks before registering a node for aura_id: 403 when one of its nodes
 * is banned, 400 when it has MESH_MAX_NODES_PER_AURA nodes. */
int mesh_registry_may_register(struct mesh_registry *r, const char *aura_id, struct al_error *err);

/* Owner of a node: 0 and user_id copied, or -1 (404) when unknown. */
int mesh_registry_owner(struct mesh_registry *r, const char *node_id, char *user_id, size_t len, char *aura_id,
			size_t alen, struct al_error *err);

/* Heartbeat by user_id: 404 unknown, 403 not hers, 403 banned, 429 (with
 * *retry_after_ms) when sooner than the per-node minimum interval. */
int mesh_registry_heartbeat(struct mesh_registry *r, const char *node_id, const char *user_id,
			    const struct mesh_heartbeat *hb, int64_t now_ms, int64_t *retry_after_ms,
			    struct al_error *err);

/* Mark nodes whose last heartbeat is older than the window offline (with a
 * missed_heartbeat reputation event). Returns how many. */
int mesh_registry_sweep(struct mesh_registry *r, int64_t now_ms);

/* Change a node's reputation by `change`, with an event queued. *out_new
 * gets the new score. -1 (404) when unknown. */
int mesh_registry_reputation(struct mesh_registry *r, const char *node_id, double change, enum mesh_rep_event e,
			     const char *description, const char *route_id, double *out_prev, double *out_new,
			     struct al_error *err);

/* JSON record of a node (column names of mesh_nodes), NULL when unknown.
 * is_online is true only while the last heartbeat is within the online
 * window at now_ms (remote nodes: within their TTL), even before the
 * sweeper ran. */
json_t *mesh_registry_node_json(struct mesh_registry *r, const char *node_id, int64_t now_ms);
/* Array of an AuraID's node records. */
json_t *mesh_registry_aura_json(struct mesh_registry *r, const char *aura_id, int64_t now_ms);
/* Online counts by type, trust level and region, latency, capacity. */
json_t *mesh_registry_status_json(struct mesh_registry *r, int64_t now_ms);

/* ---- routes ---- */
enum mesh_media { MESH_MEDIA_AUDIO, MESH_MEDIA_VIDEO, MESH_MEDIA_SCREEN_SHARE, MESH_MEDIA_DATA };
int mesh_media_parse(const char *s);
const char *mesh_media_name(int m);

struct mesh_find_stats {
	size_t relays_considered;
	size_t paths_evaluated;
	bool cached;
	bool explored; /* a path to try, not the best predicted (mesh_route.h) */
};

/* The best route between the best online endpoint nodes of two AuraIDs
 * (local ones, or a remote one whose nodes mesh_registry_add_remote holds;
 * "online" as in mesh_registry_node_json). 404 M_NOT_FOUND (naming the side) when an AuraID has no usable
 * node. Cached routes are returned while valid (out->route_id set);
 * otherwise out->route_id is empty and the caller stores the route and then
 * calls mesh_registry_cache_put with its id. */
int mesh_registry_find(struct mesh_registry *r, const char *src_aura, const char *dst_aura, int media, bool require_aic,
		       int64_t now_ms, struct mesh_cached_route *out, struct mesh_find_stats *st, struct al_error *err);
void mesh_registry_cache_put(struct mesh_registry *r, const char *src_aura, const char *dst_aura, int media,
			     bool require_aic, const struct mesh_cached_route *route);

/* Feedback on a route: learn latency (when given, >= 0), count the route on
 * each node, and change reputations (success or failure). */
void mesh_registry_feedback(struct mesh_registry *r, const char *route_id, const char (*node_ids)[37], int n,
			    double actual_latency_ms, bool success);

/* Re-score a reported path (node_ids[0..n-1]) with its measured latency:
 * *actual = its score with actual_latency_ms in place of the prediction
 * (the other factors from its nodes now); *best = the score of the path
 * the search chooses now between the same two nodes (same media and AIC
 * rule, the current model), or *actual when that is this path (*same).
 * -1 when a node of the path is gone or the search has no path. See
 * MESH_OPTIMAL_TOLERANCE_POINTS (mesh_route.h). */
int mesh_registry_rescore(struct mesh_registry *r, const char (*node_ids)[37], int n, double actual_latency_ms,
			  int media, bool require_aic, int64_t now_ms, double *actual, double *best, bool *same);

/* The metrics of the path node_ids[0..n-1] under the current model (what
 * the search would predict for it). -1 when a node is unknown. */
int mesh_registry_predict(struct mesh_registry *r, const char (*node_ids)[37], int n, struct mesh_path_metrics *pm);

/* Only the model part of feedback: learn the path's measured latency. */
void mesh_registry_learn(struct mesh_registry *r, const char (*node_ids)[37], int n, double actual_ms);

/* Remote nodes for cross-domain routes: the records of an
 * org.auralink.mesh_nodes answer (a JSON array of node records as
 * mesh_registry_node_json writes them) for aura_id, owned by user_id on
 * another server. Nothing a peer sends is trusted: at most
 * MESH_MAX_NODES_PER_AURA records, each checked for types and ranges (the
 * ranges of register/heartbeat; node_id a UUID, aura_id when present the
 * same, node_type known); one bad record refuses the whole answer (502,
 * the field named) and changes nothing. Offline records are skipped. The
 * accepted nodes replace the AuraID's previous remote nodes (a node that
 * stays keeps its serial, so what the model learned stays), are usable
 * until now_ms + MESH_REMOTE_TTL_MS, are never written to the database and
 * are endpoints of their AuraID only (never relays of other calls). A
 * node_id that is local or another AuraID's is refused (502), an AuraID
 * with local nodes too (409). Returns how many nodes it holds now (>= 0). */
#define MESH_REMOTE_TTL_MS (60 * 1000)
int mesh_registry_add_remote(struct mesh_registry *r, const char *aura_id, const char *user_id, const json_t *nodes,
			     int64_t now_ms, struct al_error *err);
/* True when aura_id has remote nodes within their TTL (no need to ask
 * their server again). */
bool mesh_registry_remote_fresh(struct mesh_registry *r, const char *aura_id, int64_t now_ms);

/* ---- persistence hooks (mesh.c) ---- */
/* Dirty nodes, drained: their current state for the batched UPDATE. */
size_t mesh_registry_take_dirty(struct mesh_registry *r, struct mesh_node_info **out);
struct mesh_rep_queue *mesh_registry_events(struct mesh_registry *r);

/* ---- introspection (tests, bench) ---- */
size_t mesh_registry_count(struct mesh_registry *r, size_t *online);
size_t mesh_registry_memory_bytes(struct mesh_registry *r);
struct mesh_model *mesh_registry_model(struct mesh_registry *r);

#endif
