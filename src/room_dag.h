/* room_dag.h - storage shared by the local writer (room.c) and events from
 * other servers (room_remote.c): state groups and state maps, a room's
 * current state and memberships, redactions, loading events with their
 * auth chains, state resolution over stored events, and the fan-out of new
 * events to the other servers in a room. Everything runs inside the
 * caller's transaction, with the room row locked when it writes.
 *
 * A state map is a JSON object room_auth_key(type, state_key) -> event ID
 * (JSON string), as in state_res.h. */
#ifndef AL_ROOM_DAG_H
#define AL_ROOM_DAG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"
#include "event.h"

#define ROOM_DAG_MAX_GROUPS 32 /* state groups resolved at once (forward extremities) */
#define ROOM_DAG_MAX_GROUPS_STR "32"

/* The state map of each of n groups, into out[0..n) (new references). */
int room_dag_group_states(struct db *db, const int64_t *groups, int n, json_t **out, struct al_error *err);

/* A state group for state: prev_group plus what differs from prev_state
 * when prev_group is set and its chain is short enough, else a snapshot.
 * Returns prev_group itself when nothing differs. *chain_len (may be NULL)
 * gets the new group's chain length. 0 on error. */
int64_t room_dag_new_group(struct db *db, const char *room_id, json_t *state, int64_t prev_group, json_t *prev_state,
			   int prev_chain_len, int *chain_len, struct al_error *err);

/* Only the given keys (room_auth keys) of group's state: a state map. */
json_t *room_dag_group_lookup(struct db *db, int64_t group, const char *const *keys, int n, struct al_error *err);

/* The group after a state event: prev_group with (type, state_key) ->
 * event_id, a snapshot when the chain grew long. 0 on error. */
int64_t room_dag_group_add(struct db *db, const char *room_id, int64_t prev_group, const char *type,
			   const char *state_key, const char *event_id, struct al_error *err);

/* The chain length of group (0 for a snapshot); -1 on error. */
int room_dag_chain_len(struct db *db, int64_t group, struct al_error *err);

/* Make state (group) the room's current state: current_state rows that
 * differ are replaced or removed, room_memberships follow the member
 * events that changed (at stream position stream), rooms.state_group is
 * set. */
int room_dag_set_current(struct db *db, const char *room_id, json_t *state, int64_t group, int64_t stream,
			 struct al_error *err);

/* current_state[type, state_key] = event_id (and the membership when it is
 * a member event), rooms.state_group = group: the current state moved by
 * one event. */
int room_dag_set_current_key(struct db *db, const char *room_id, const char *type, const char *state_key,
			     const char *event_id, int64_t group, int64_t stream, struct al_error *err);

/* The room's current state map. */
json_t *room_dag_current_state(struct db *db, const char *room_id, struct al_error *err);

/* Stored events by ID (only those of room_id), each PDU with its
 * "event_id" member: a JSON object ID -> PDU. with_auth_chain adds every
 * event of their auth chains. *rejected (may be NULL) gets an object of
 * the rejected ones' IDs. */
json_t *room_dag_load_events(struct db *db, const char *room_id, json_t *ids, bool with_auth_chain, json_t **rejected,
			     struct al_error *err);

/* The state map restricted to the keys the auth rules need for ev,
 * loaded as a room_auth map (key -> PDU with "event_id"). */
json_t *room_dag_auth_state(struct db *db, const char *room_id, const json_t *ev, json_t *state, struct al_error *err);

/* Resolve n stored state maps (state resolution v2). New reference. */
json_t *room_dag_resolve(struct db *db, const char *room_id, const struct event_rules *r, json_t *const *states, int n,
			 struct al_error *err);

/* Apply a redaction: the stored copy of target (in room_id, not yet
 * redacted) is replaced by its redacted form with
 * unsigned.redacted_because = redaction (a client event). */
int room_dag_redact(struct db *db, const struct event_rules *r, const char *room_id, const char *target,
		    json_t *redaction, struct al_error *err);

/* Queue pdu for every other server with joined members in the room (as
 * room_memberships says now), plus extra (may be NULL), minus except (may
 * be NULL) and self. */
int room_dag_fanout(struct db *db, const char *room_id, const char *self, const json_t *pdu, const char *extra,
		    const char *except, struct al_error *err);
/* The same in two steps, for a batch of events sharing one membership:
 * the servers (one text column; PQclear it), then pdu queued for them. */
PGresult *room_dag_fanout_servers(struct db *db, const char *room_id, const char *self, const char *extra,
				  const char *except, struct al_error *err);
int room_dag_fanout_to(struct db *db, PGresult *servers, const json_t *pdu, struct al_error *err);

/* The server name of a user, room or event ID (after the first ':'). */
const char *room_dag_server_of(const char *id);

#endif
