/* calls.h - calls (m.call.* events in a room) as this server tracks them:
 * one federated_calls row per call (room_id, call_id) on each server that
 * hosts the caller or the callee. Domain module: no HTTP. The state machine
 * itself is pure and lives in calls_state.h.
 *
 * The hook. calls_on_event() is called once an event is stored in a room
 * and its transaction committed: by room_send() for local events, and by
 * the code that stores remote PDUs (the same call, with the PDU in hand).
 * It runs its own transaction: one upsert that merges the event into the
 * row (plus one UPDATE of the derived status when it changed). An event is
 * tracked when its content has a valid call_id and the caller or the
 * callee is local; events of other users, malformed ones and events in
 * rooms where the callee cannot be told (an invite without invitee in a
 * room with more than one other member) are ignored. Failures are logged;
 * the event itself is stored either way.
 *
 * Roles. The invite's sender is the caller; the callee is its invitee or
 * else the room's only other member (joined or invited). Before the invite
 * is seen, an answer or reject names the callee by its sender, a
 * select_answer the caller; candidates, negotiate and hangup name nobody
 * for sure (the row guesses the sender as caller until a better event).
 * direction: local (both here), outbound (caller here), inbound (callee
 * here). AuraIDs are those of aura_id_registry (local users only).
 *
 * Ringing. On the callee's server the call rings the moment the invite is
 * stored for a local callee (unless refused, see below); the connected
 * apps that ring are decided then by notify_targets() and recorded in
 * notified_apps. The caller's server learns that the call rang from the
 * callee's first spec event for the call: m.call.answer or m.call.reject
 * (the VoIP spec has no ringing event; the caller stays "initiated" until
 * then). A finer signal needs the PDU sender: when the callee's server
 * answers 200 for the invite's PDU, set ring_ts on the caller's row.
 *
 * Policy on the callee's server (the callee's aura_id_registry record):
 *  - block_unknown_callers: a caller is known when the callee created the
 *    call's room or both are joined to another room. An unknown caller's
 *    invite is refused: the row fails with end_reason
 *    "blocked_unknown_caller", nothing rings, and the server sends an
 *    m.call.reject (VoIP version 1; an m.call.hangup for version 0) on the
 *    callee's behalf with party_id "org.auralink.server". So the caller's
 *    client stops at once, as after a decline (it is not told why), and the
 *    callee's own clients, which see the invite in /sync followed by her
 *    reject, do not ring. The caller sees end_reason "rejected" in GET
 *    /calls.
 *  - allow_cross_app_calls = false: only the app the call was placed from
 *    may ring (the invite's optional content field org.auralink.app_id,
 *    when the callee has that app connected); a call that names no app, or
 *    an app the callee does not have, rings none of her connected apps
 *    (her Matrix clients still see the invite).
 *  - notify_targets() gets the callee's notification preferences, her
 *    active apps (oldest first), the kind (a known caller: personal, else
 *    unknown) and the server's local weekday and time.
 *
 * Route. When an invite is first seen on the caller's server and the
 * caller has an AuraID, the mesh engine picks a route (mesh_route_find,
 * requested by the caller, so she can report its performance with PUT
 * /mesh/routes/{id}/performance, which feeds the model). A remote callee's
 * server is asked first for her AuraID and online nodes
 * (org.auralink.mesh_nodes; the AuraID is kept on the row); that part runs
 * on app->main_base. The route_id is recorded on the row and, for a remote
 * callee, sent to her server as an org.auralink.route EDU {call_id,
 * route_id, path_nodes, predicted_latency_ms (whole ms: canonical JSON has
 * no floats), room_id} through the durable sender. The callee's server
 * records it on its row whichever of the EDU and the invite arrives first
 * (sql/041_calls.sql). No route (no AuraID, no usable mesh node, her
 * server refuses) is not an error.
 *
 * Expiry: every CALLS_SWEEP_INTERVAL_MS the main loop records a timeout on
 * unanswered calls whose invite lifetime has passed (calls_state.h). */
#ifndef AL_CALLS_H
#define AL_CALLS_H

#include <jansson.h>
#include <stdint.h>

#include "app.h"
#include "db.h"
#include "error.h"

#define CALLS_LIST_DEFAULT 20
#define CALLS_LIST_MAX 100
#define CALLS_SWEEP_INTERVAL_MS 1000
#define CALLS_SWEEP_BATCH 500
#define CALLS_SERVER_PARTY_ID "org.auralink.server"
#define CALLS_ROUTE_EDU "org.auralink.route"

/* Module life cycle (main.c): the expiry sweeper on app->main_base. */
int calls_start(struct app *app);
void calls_stop(struct app *app);

/* An event was stored in room_id and committed (see above). type: the
 * event's type (events of other types return at once); event: the PDU or
 * client event (borrowed), or NULL to load it by event_id. */
void calls_on_event(struct app *app, struct db *db, const char *room_id, const char *event_id, const char *type,
		    const json_t *event);

/* GET /calls: user_id's calls, newest first: {calls: [...]} with the
 * fields of API.md (timestamps in ms since the epoch, null when unset),
 * plus caller_user_id, callee_user_id, direction, end_reason, ringing_at
 * and, for the callee only, notified_apps. limit 1..CALLS_LIST_MAX. */
int calls_list(struct db *db, const char *user_id, int limit, json_t **out, struct al_error *err);

/* Record timeouts on calls whose invite expired unanswered (at most
 * CALLS_SWEEP_BATCH per run). Returns how many, or -1. */
int calls_expire(struct db *db, int64_t now_ms, struct al_error *err);

#endif
