/* calls_state.h - the state machine of one call (pure: no I/O, no clock of
 * its own). calls.c feeds it the m.call.* events of a room and stores the
 * result in federated_calls; the unit tests drive it directly.
 *
 * A call is a set of milestones, each the earliest timestamp (ms since the
 * epoch, origin_server_ts of the event) at which it was seen:
 *
 *   first     any event of the call (initiated_at)
 *   expires   the invite's origin_server_ts + lifetime
 *   ring      the call reached the callee (see calls.h for who sets it)
 *   answer    m.call.answer (the callee picked up)
 *   select    m.call.select_answer (the caller took an answer)
 *   refuse    m.call.reject, or the callee's server refused the invite
 *             (block_unknown_callers), with its cause
 *   hangup    m.call.hangup, with its reason
 *   timeout   recorded once by the expiry sweeper: the invite expired
 *             unanswered (then final, see below)
 *
 * Merging a new event takes the least of each milestone (a cause goes with
 * the earliest timestamp; equal timestamps keep the byte-wise smaller
 * cause), so merging is commutative, associative and idempotent: the
 * result never depends on the order in which events arrive or on
 * duplicates. The status is then derived from the milestones:
 *
 *   connected  an answer (else a select_answer) that came before any
 *              hangup, within the invite's lifetime, and not preceded by a
 *              valid refusal. A refusal counts only before any answer and
 *              never once the caller selected one (the spec: a caller that
 *              saw an answer first disregards a reject). A hangup with
 *              reason invite_timeout means the caller never got an answer
 *              (unless it selected one).
 *   ended      connected, then a hangup: ended_at = hangup, duration =
 *              hangup - answer (rounded to the second).
 *   failed     not connected and ended by the earliest of: a hangup (its
 *              reason), a valid refusal (its cause: "rejected",
 *              "blocked_unknown_caller"), the invite's expiry
 *              ("invite_timeout", at expires).
 *   ringing    the ring milestone, nothing later.
 *   initiated  otherwise.
 *
 * So a late invite after a hangup keeps the call ended or failed; a
 * duplicate changes nothing; a terminal status never goes back to
 * initiated, ringing or connected. A late event can only refine a terminal
 * status with what happened before it: a hangup that arrived before the
 * answer it followed turns failed into ended once the answer arrives. The
 * one decision taken on this server's clock is expiry: once the sweeper
 * recorded a timeout the call stays failed, even if an answer sent in time
 * arrives later (the caller's client has given up by then too). */
#ifndef AL_CALLS_STATE_H
#define AL_CALLS_STATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "notify.h"

#define CALLS_ID_MAX 255               /* call_id, party_id, invitee: bytes */
#define CALLS_CAUSE_MAX 64             /* hangup reasons and refusal causes */
#define CALLS_VERSION_MAX 16
#define CALLS_DEFAULT_LIFETIME_MS 60000  /* an invite without lifetime */
#define CALLS_MAX_LIFETIME_MS 3600000    /* longer lifetimes are cut to 1 h */

enum calls_status { CALLS_INITIATED, CALLS_RINGING, CALLS_CONNECTED, CALLS_ENDED, CALLS_FAILED };
const char *calls_status_name(enum calls_status s);

enum calls_kind {
	CALLS_INVITE,
	CALLS_CANDIDATES,
	CALLS_ANSWER,
	CALLS_SELECT_ANSWER,
	CALLS_NEGOTIATE,
	CALLS_REJECT,
	CALLS_HANGUP,
};
/* "m.call.invite" ... -> kind; -1 for any other type. */
int calls_kind_parse(const char *type);

/* What one m.call.* event says, validated. */
struct calls_event {
	int kind;
	char call_id[CALLS_ID_MAX + 1];
	char party_id[CALLS_ID_MAX + 1];   /* "" = none (VoIP version 0) */
	char version[CALLS_VERSION_MAX + 1]; /* "0" for the integer 0 */
	/* invite */
	int64_t lifetime_ms;
	char invitee[CALLS_ID_MAX + 1];    /* "" = any other member */
	bool video;                        /* the offer's SDP has an m=video line */
	char app_id[NOTIFY_APP_ID_MAX + 1]; /* org.auralink.app_id, "" = none */
	/* hangup */
	char reason[CALLS_CAUSE_MAX + 1];  /* "" = none */
};

/* Parse the content of an event of `type`. 0, or -1 when it is not a call
 * event or malformed (no call_id, call_id longer than 255 bytes, wrong
 * types): such events are not tracked. A hangup reason that is not 1-64 of
 * [A-Za-z0-9_.-] becomes "unknown_error". */
int calls_event_parse(const char *type, const json_t *content, struct calls_event *ev);

/* Does the SDP have a line starting with "m=video"? */
bool calls_sdp_has_video(const char *sdp);

struct calls_milestones {
	int64_t first_ts, expires_ts, ring_ts, answer_ts, select_ts, refuse_ts, hangup_ts, timeout_ts;
	char refuse_cause[CALLS_CAUSE_MAX + 1];
	char hangup_cause[CALLS_CAUSE_MAX + 1];
};

/* What this server knows beside the event itself. */
struct calls_context {
	bool callee_local;       /* the callee is a user of this server */
	const char *refuse_cause; /* invite refused by the callee's server, or NULL */
	int64_t now_ms;          /* when this server stored the event */
};

/* The milestones one event contributes (0 = none). For an invite to a
 * local callee, ring (or refuse, with ctx->refuse_cause) is the moment this
 * server stored it, never before the invite's own timestamp. An answer or
 * a reject also proves the call rang. A timestamp <= 0 counts as now. */
void calls_signal(const struct calls_event *ev, int64_t origin_ts, const struct calls_context *ctx,
		  struct calls_milestones *out);

/* m := m merged with s (the least of each milestone). */
void calls_merge(struct calls_milestones *m, const struct calls_milestones *s);

struct calls_outcome {
	enum calls_status status;
	int64_t initiated_at, ringing_at, connected_at, ended_at; /* 0 = null */
	int duration_seconds;                                   /* -1 = null */
	char end_reason[CALLS_CAUSE_MAX + 1];                   /* "" = null */
};

/* The status and its timestamps at now_ms (which only matters for expiry). */
void calls_derive(const struct calls_milestones *m, int64_t now_ms, struct calls_outcome *out);

/* Should the sweeper record a timeout now (the invite expired unanswered
 * and the call is not over otherwise)? */
bool calls_should_time_out(const struct calls_milestones *m, int64_t now_ms);

#endif
