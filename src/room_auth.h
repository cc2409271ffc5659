/* room_auth.h - the authorization rules of room versions 10 and 11 (and the
 * shared parts of earlier versions) for a new event against the state
 * before it. Pure: the caller supplies the state as a map. */
#ifndef AL_ROOM_AUTH_H
#define AL_ROOM_AUTH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "event.h"

/* The state map: a JSON object whose keys are room_auth_key(type,
 * state_key) and whose values are PDUs. */
#define ROOM_AUTH_KEY_MAX (2 * EVENT_TYPE_MAX + 2)
/* "type\x1fstate_key" into buf; -1 if it does not fit. */
int room_auth_key(const char *type, const char *state_key, char *buf, size_t len);
json_t *room_auth_state_get(const json_t *state, const char *type, const char *state_key);

/* Check ev (a PDU without hashes/signatures is fine) against state (the
 * state before ev). is_first: ev's only prev_event is the create event.
 * 0 when allowed; else -1 with err = 403 M_FORBIDDEN and the reason. */
int room_auth_check(const struct event_rules *r, const json_t *ev, const json_t *state, bool is_first,
		    struct al_error *err);

/* The auth_events selection for an event (spec "Auth events selection"):
 * fills ids (at most 5) with event IDs taken from state via get_id, which
 * maps a PDU in state to its event ID. Returns the count. */
int room_auth_select(const json_t *ev, const json_t *state, const char **ids, int max,
		     const char *(*get_id)(const json_t *pdu));

/* Power level helpers (exposed for the handlers and tests). */
long room_auth_user_level(const json_t *state, const char *user_id);
long room_auth_event_level(const json_t *state, const char *type, bool is_state);
/* Named level ("ban", "kick", "redact", "invite") with its default. */
long room_auth_named_level(const json_t *state, const char *name);
/* Current membership of user_id in state ("leave" when none). */
const char *room_auth_membership(const json_t *state, const char *user_id);

#endif
