/* state_res.h - state resolution version 2 (room versions 2 and later):
 * the resolution of a set of room states into one (spec: room versions,
 * "State resolution", algorithm v2). Pure: the caller supplies the events
 * of the states and of their auth chains through a lookup.
 *
 * A state map is a JSON object whose keys are room_auth_key(type,
 * state_key) and whose values are event IDs (JSON strings). */
#ifndef AL_STATE_RES_H
#define AL_STATE_RES_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "event.h"
#include "room_auth.h"

/* Bounds: more events than this in the auth chains of the states is an
 * error (a room this large is resolved by a bigger server). */
#define STATE_RES_MAX_EVENTS 200000

struct state_res_source {
	/* The PDU of event_id with its "event_id" member, or NULL when it is
	 * unknown (borrowed; must stay valid during the resolution). */
	const json_t *(*event)(void *arg, const char *event_id);
	/* True when event_id was rejected (such auth events are not used). */
	bool (*rejected)(void *arg, const char *event_id);
	void *arg;
};

/* Resolve n state maps. Returns a new state map, or NULL with err filled
 * (an event of a state missing from the source, or too many events). With
 * n == 1 the result is a copy of the only state. */
json_t *state_res_v2(const struct event_rules *r, json_t *const *states, int n, const struct state_res_source *src,
		     struct al_error *err);

#define STATE_RES_AUTH_TYPES 6
/* The (type, state_key) pairs the auth rules look at for ev (spec "Auth
 * events selection"), as room_auth keys; returns the count. */
int state_res_auth_types(const json_t *ev, char keys[STATE_RES_AUTH_TYPES][ROOM_AUTH_KEY_MAX + 1]);

#endif
