/* room_remote.h - events of rooms shared with other servers, as the domain
 * sees them (no HTTP, no outbound requests): the checks a PDU from another
 * server goes through once its signatures and hashes were verified (event
 * format; auth against its auth events; against the state before it;
 * soft failure against the current state, spec "Checks performed on
 * receipt of a PDU"), storing it in the DAG with its own prev_events and
 * depth (the forward extremities become a set, state resolution v2 when
 * they disagree), and storing what a remote join, invite or leave brings.
 *
 * Events this server builds for a remote handshake (an invite counter-
 * signed by the invitee's server) are stored the same way; those whose
 * sender is local are queued for the other servers in the room. */
#ifndef AL_ROOM_REMOTE_H
#define AL_ROOM_REMOTE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "event.h"
#include "room.h"

enum room_pdu_status {
	ROOM_PDU_ACCEPTED = 0, /* stored in the timeline */
	ROOM_PDU_SOFT_FAILED,  /* stored; not shown, not a forward extremity */
	ROOM_PDU_REJECTED,     /* stored as rejected (auth failed) */
	ROOM_PDU_OUTLIER,      /* stored outside the timeline: no state known before it */
	ROOM_PDU_KNOWN,        /* stored already */
	ROOM_PDU_MISSING,      /* prev or auth events unknown, see missing_* */
};

struct room_pdu_outcome {
	enum room_pdu_status status;
	char reason[256];
	int64_t stream;       /* its stream position when it joined the timeline */
	json_t *missing_prev; /* IDs (new references, or NULL) */
	json_t *missing_auth;
	json_t *state_before; /* with ROOM_ACCEPT_STATE: state map before the event */
};

void room_pdu_outcome_clear(struct room_pdu_outcome *o);
const char *room_pdu_status_name(enum room_pdu_status s);

/* Flags of room_remote_accept. */
#define ROOM_ACCEPT_GAPS 1u    /* prev_events still unknown: use the known ones; outlier when none */
#define ROOM_ACCEPT_FANOUT 2u  /* queue it for the other servers (send_join, send_leave) */
#define ROOM_ACCEPT_STATE 4u   /* fill state_before */
#define ROOM_ACCEPT_OUTLIER 8u /* store as an outlier after the auth-events check (fetched auth events) */

/* The room versions this server federates: "1" .. "11" (versions 1 and 2
 * refer to events as [event_id, hashes] and name their own event IDs;
 * version 1 is resolved with state resolution v2 too, not v1). */
bool room_remote_version_supported(const char *version);

/* The event format of the room version (spec "Event format"): types,
 * bounds, canonical JSON. Pure. 0 or -1 with 400 M_BAD_JSON. */
int room_pdu_check_format(const struct event_rules *r, const json_t *pdu, struct al_error *err);

/* The version of a stored room into version (size 4); 404 M_NOT_FOUND. */
int room_remote_room_version(struct db *db, const char *room_id, char *version, struct al_error *err);

/* Check and store one PDU (signatures and content hash already verified;
 * a PDU whose hash failed comes redacted). pdu is not modified. 0 with
 * out filled (the status says what happened), or -1 with err (database,
 * unknown room: 404). */
int room_remote_accept(const struct room_ctx *c, const char *room_id, const json_t *pdu, const char *event_id,
		       unsigned flags, struct room_pdu_outcome *out, struct al_error *err);

/* A run of PDUs of one room pushed to us (signatures and hashes verified,
 * event IDs computed, in depth order) for room_remote_accept_run. */
#define ROOM_REMOTE_RUN_MAX 64
struct room_pdu_run_item {
	const json_t *pdu;
	const char *event_id;
	struct room_pdu_outcome out; /* when done */
	bool done;
};

/* The common case of an inbound transaction in one database transaction
 * (about three round trips for the whole run): the leading items that are
 * timeline events of another server (no state event, no redaction), each
 * on earlier items of the run or on stored timeline events with the room's
 * current state, allowed by their auth events and by that state, when
 * every forward extremity of the room is on that state too (so no soft
 * failure and no state resolution can arise), are stored as
 * room_remote_accept would store them one by one, and events stored
 * already are known. Those items are done (ROOM_PDU_ACCEPTED with their
 * stream position, or ROOM_PDU_KNOWN); the run ends before the first item
 * that does not fit, and that one and the rest are for room_remote_accept
 * in the same order. At most ROOM_REMOTE_RUN_MAX items are looked at.
 * Returns how many are done (0 is fine), or -1 with err (none done). */
int room_remote_accept_run(const struct room_ctx *c, const char *room_id, struct room_pdu_run_item *items, int n,
			   struct al_error *err);

/* The state before event_id (a stored outlier, a prev event of a gap) as
 * another server told it (/state_ids: ids, events stored already): the
 * event gets a state group (that state, plus itself when it is a state
 * event), so events after it can build on it. Unknown or rejected IDs are
 * left out. */
int room_remote_set_state_after(const struct room_ctx *c, const char *room_id, const char *event_id, json_t *ids,
				struct al_error *err);

/* A room joined through a resident server (send_join): the room's state
 * and auth chain (arrays of verified PDUs) become outliers (each checked
 * against its auth events), then the join event joins the timeline with
 * that state as the state before it. Replaces the placeholder room an invite left. */
int room_remote_store_join(const struct room_ctx *c, const char *room_id, const char *version, const json_t *join,
			   const char *join_id, json_t *state, json_t *auth_chain, int64_t *stream,
			   struct al_error *err);

/* An invite to a local user from a room this server is not in (federation
 * /invite): a placeholder room, the invite as the user's membership, and the
 * stripped state for her /sync. When the room is here already (a local
 * member is joined), nothing is stored: the event arrives through /send. */
int room_remote_store_invite(const struct room_ctx *c, const char *version, const json_t *invite, const char *event_id,
			     json_t *invite_room_state, int64_t *stream, struct al_error *err);

/* A rejected remote invite (the leave event accepted by a resident server
 * through send_leave): the user's membership becomes leave. */
int room_remote_store_leave(const struct room_ctx *c, const json_t *leave, const char *event_id, int64_t *stream,
			    struct al_error *err);

/* Is a local user joined to the room (this server is resident)? */
int room_remote_is_resident(struct db *db, const char *room_id, const char *self, struct al_error *err);

#endif
