/* federation.h - the federation layer as the daemon and the client handlers
 * see it (the only header of federation/ that src/ includes). */
#ifndef AL_FEDERATION_H
#define AL_FEDERATION_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

struct app;
struct event_base;

/* Start the federation thread, load the remote key store and the server
 * registry, register the /_matrix/federation, /_matrix/key/v2/query and
 * admin routes. Needs app->router, app->keys, app->maint_db. 0 or -1. */
int federation_start(struct app *app);

/* Stop: cancels outbound requests (their callbacks run with an error) and
 * waits for them. Call while the HTTP workers still run (before
 * http_server_stop). Safe when federation_start was not called. */
void federation_stop(struct app *app);
/* After the workers stopped: free everything (stop_modules). */
void federation_free(struct app *app);

/* Called (any thread) after events from other servers were stored, so
 * that parked /sync requests wake up. Set after federation_start. */
typedef void (*federation_notify_fn)(struct app *app);
void federation_set_notify(struct app *app, federation_notify_fn fn);

/* True when server_name is this server. */
bool federation_is_local(struct app *app, const char *server_name);

/* Remote profile: GET /_matrix/federation/v1/query/profile on the user's
 * server. field NULL = both. cb runs once on base's loop with the HTTP
 * status from the remote (0 when unreachable: err filled) and the body
 * (borrowed; may be NULL). Returns -1 when it could not be started. */
typedef void (*federation_json_cb)(void *arg, int status, json_t *body, const struct al_error *err);
int federation_query_profile(struct app *app, const char *user_id, const char *field, struct event_base *base,
			     federation_json_cb cb, void *arg);

/* Resolve an AuraID hosted elsewhere: asks known peers (whitelisted and
 * trusted first, at most 8 at once), verifies the signed attestation with
 * the answering server's key (it must name one of that server's own users),
 * caches the answer (and misses) with a TTL. When several peers answer, the
 * best-ranked one wins: a lower-ranked answer waits for the better-ranked
 * peers still outstanding, at most the request timeout (5 s).
 * cb gets status 200 and the record {aura_id, user_id, server,
 * display_name, avatar_url, is_verified, attestation}, or 404 M_NOT_FOUND /
 * 403 M_FORBIDDEN / 502. */
int federation_resolve_aura_id(struct app *app, const char *aura_id, struct event_base *base, federation_json_cb cb,
			       void *arg);

/* ---- rooms on other servers (fed_join.c). Each runs on base's loop (a
 * worker's) with that worker's database connection db; cb gets 200 and a
 * body, or the error. -1 when it could not start (cb never runs). ---- */

/* Join room_or_alias (a room ID, or an alias on another server, resolved
 * with /query/directory) through make_join and send_join v2 at the
 * servers given (a JSON array, may be NULL) then the room's own server;
 * the state and auth chain are verified and stored. content: extra
 * members of the join event (may be NULL). Body: {room_id}; on an
 * incompatible room version the error body with its room_version. */
int federation_room_join(struct app *app, struct event_base *base, struct db *db, const char *user_id,
			 const char *room_or_alias, json_t *servers, json_t *content, federation_json_cb cb, void *arg);
/* Reject an invite to a room this server is not in: make_leave and
 * send_leave v2 at servers (the inviter's), then the room's server. */
int federation_room_leave(struct app *app, struct event_base *base, struct db *db, const char *user_id,
			  const char *room_id, json_t *servers, const char *reason, federation_json_cb cb, void *arg);
/* Invite target (a user of another server) into a room here: the invite
 * event is built, counter-signed by the target's server (invite v2) and
 * then stored and sent to the room's other servers. Body: {}. */
int federation_room_invite(struct app *app, struct event_base *base, struct db *db, const char *sender,
			   const char *room_id, const char *target, const char *reason, federation_json_cb cb,
			   void *arg);

/* History from before we joined room_id: GET /backfill from the room's
 * other servers at its backward extremities, verified, auth-checked and
 * stored in the timeline's history range (room.h). cb gets 200 and
 * {backfilled: n} (0 when nobody had more). -1 when there is nothing to
 * ask (no extremity, no other server): cb never runs. */
int federation_room_backfill(struct app *app, struct event_base *base, struct db *db, const char *room_id, int limit,
			     federation_json_cb cb, void *arg);

/* GET /query/directory?room_alias= on the alias's server: body {room_id,
 * servers}; 404 M_NOT_FOUND. */
int federation_query_directory(struct app *app, const char *alias, struct event_base *base, federation_json_cb cb,
			       void *arg);

/* Another server's public room directory: POST
 * /_matrix/federation/v1/publicRooms (limit <= 0: theirs; since, search
 * may be NULL). cb as for federation_query_profile. */
int federation_public_rooms(struct app *app, const char *server, int limit, const char *since, const char *search,
			    struct event_base *base, federation_json_cb cb, void *arg);

/* Online mesh nodes of a user of another server: GET
 * /_matrix/federation/v1/query/org.auralink.mesh_nodes on her server
 * (fed_mesh.c). cb as for federation_query_profile, once, on base's loop:
 * 200 and {user_id, aura_id, nodes: [node records]} (unvalidated: hand the
 * nodes to mesh_registry_add_remote), 403/404 when her settings refuse,
 * 0 when unreachable. -1 when it could not be started (a local or
 * malformed user_id). */
int federation_query_mesh_nodes(struct app *app, const char *user_id, struct event_base *base, federation_json_cb cb,
				void *arg);

/* Queue an EDU for destination in the durable outbox; runs inside the
 * caller's transaction when one is open. The sender wakes after commit
 * (at the latest on its next tick). */
int fed_sender_enqueue_edu(struct db *db, const char *destination, const char *edu_type, json_t *content,
			   struct al_error *err);
/* Queue a PDU (its "unsigned" member left out) for each destination, in
 * the caller's transaction. The transaction that carries it is sent once
 * the caller committed and the sender woke. */
int fed_sender_enqueue_pdu(struct db *db, const char *const *destinations, int n, const json_t *pdu,
			   struct al_error *err);
/* An EDU for the servers with members joined to room_id other than self
 * (typing, receipts), or for the servers sharing a joined room with the
 * local user user_id (presence): one statement, in the caller's
 * transaction; sync_notify wakes the sender. */
int federation_edu_to_room(struct db *db, const char *room_id, const char *self, const char *edu_type, json_t *content,
			   struct al_error *err);
int federation_edu_to_peers(struct db *db, const char *user_id, const char *edu_type, json_t *content,
			    struct al_error *err);
/* When a server joins a room (dest), or we join one (dest NULL: every
 * other server in it): the presence of this server's (self) users joined
 * there, as one m.presence EDU per destination. One statement. */
int federation_presence_for_room(struct db *db, const char *room_id, const char *self, const char *dest,
				 struct al_error *err);
/* Wake the sender now (after the caller's transaction committed). */
void federation_sender_wake(struct app *app);

#endif
