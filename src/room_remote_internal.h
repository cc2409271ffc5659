/* room_remote_internal.h - the checks of room_remote.c that the batch
 * path (room_remote_batch.c) shares with it. Not for other modules. */
#ifndef AL_ROOM_REMOTE_INTERNAL_H
#define AL_ROOM_REMOTE_INTERNAL_H

#include <jansson.h>
#include <stddef.h>

#include "error.h"
#include "event.h"
#include "room_remote.h"

/* The text stored for a PDU: without unsigned (and event_id from v3). */
char *room_remote_stored_text(const json_t *pdu, const struct event_rules *r, struct al_error *err);

/* Spec auth rule 2 (the event's auth_events, looked up in known: event
 * ID -> {pdu, rejected, group, outlier}) and the auth rules against them.
 * Fills *auth_map (room_auth map; the caller's). 0 allowed, 1 rejected
 * (out->reason set), 2 missing (out->missing_auth). */
int room_remote_check_auth_events(const json_t *pdu, json_t *known, struct room_pdu_outcome *out, json_t **auth_map);

/* The auth rules for pdu against a room_auth map: 0, or -1 with reason. */
int room_remote_auth_against(const struct event_rules *rules, const json_t *pdu, json_t *auth_map, char *reason,
			     size_t rlen);

#endif
