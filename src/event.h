/* event.h - Matrix room events (PDUs): room version rules, content hash,
 * redaction algorithm, reference hash, event IDs and signing (spec: room
 * versions 1-11, "Calculating the reference hash", "Redactions"). Pure: no
 * I/O, no HTTP. */
#ifndef AL_EVENT_H
#define AL_EVENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "sign.h"

#define EVENT_MAX_BYTES 65536 /* canonical JSON of a whole PDU */
#define EVENT_TYPE_MAX 255    /* bytes of type and state_key */
#define EVENT_ID_MAX 256      /* event/room IDs we produce or accept */
#define EVENT_HASH_B64_LEN 43 /* unpadded base64 of 32 bytes */
#define EVENT_MAX_PREV 20
#define EVENT_MAX_AUTH 10

/* What differs between room versions, as far as events are concerned. */
struct event_rules {
	int version;               /* 1..11 */
	int id_format;             /* 1: given by the origin (v1-2), 3: base64 (v3), 4: URL-safe base64 (v4+) */
	bool redact_v11;           /* v11 redaction algorithm (MSC2176/MSC3821/MSC3989) */
	bool keep_aliases;         /* v1-5: m.room.aliases keeps "aliases" */
	bool keep_join_allow;      /* v8+: m.room.join_rules keeps "allow" */
	bool keep_authorised_via;  /* v9+: m.room.member keeps join_authorised_via_users_server */
	bool redacts_in_content;   /* v11: m.room.redaction carries content.redacts */
	bool knock;                /* v7+ */
	bool restricted;           /* v8+ */
	bool integer_power_levels; /* v10+: power levels must be integers */
	bool creator_is_sender;    /* v11: m.room.create has no content.creator */
};

/* Rules for a room version string ("1".."11"); -1 when unknown. */
int event_rules_for(const char *version, struct event_rules *out);

/* A new reference to a redacted copy of ev (spec redaction algorithm for
 * the rules); NULL when ev is not an object or out of memory. */
json_t *event_redact(const json_t *ev, const struct event_rules *r);

/* sha256 over the canonical JSON of ev without unsigned, signatures and
 * hashes, as unpadded standard base64 into out. */
int event_content_hash(const json_t *ev, char out[EVENT_HASH_B64_LEN + 1], struct al_error *err);

/* Reference hash: sha256 over the canonical JSON of the redacted event
 * without signatures, unsigned (and event_id for v1-2 form). */
int event_reference_hash(const json_t *ev, const struct event_rules *r, unsigned char out[32], struct al_error *err);

/* "$" + the reference hash in the version's encoding (v3: standard, v4+:
 * URL-safe, both unpadded). v1-2: the event's own event_id member. */
int event_compute_id(const json_t *ev, const struct event_rules *r, char *out, size_t outlen, struct al_error *err);

/* Fill hashes.sha256 and add our signature (over the redacted form) to
 * signatures[server_name]. Any unsigned member stays. */
int event_hash_and_sign(json_t *ev, const struct event_rules *r, const char *server_name, const struct sign_key *key,
			struct al_error *err);

/* 0 if hashes.sha256 matches the content, else -1 with err. */
int event_check_content_hash(const json_t *ev, struct al_error *err);

/* Canonical size of ev in bytes (-1 on error). */
long event_canonical_size(const json_t *ev);

/* An entry of prev_events / auth_events: the event ID itself (room
 * versions 3 and later) or [event_id, {"sha256": ...}] (versions 1-2).
 * NULL when malformed. */
const char *event_ref_id(const json_t *entry);
/* The event IDs of such a list, as a new array of strings. */
json_t *event_ref_ids(const json_t *list);
/* An entry referring to pdu (with its event ID id) in the form of the
 * room version: the ID, or [id, {"sha256": reference hash}]. New
 * reference or NULL. */
json_t *event_ref_make(const json_t *pdu, const char *id, const struct event_rules *r);

/* Accessors (NULL / -1 when missing or mistyped). */
const char *event_str(const json_t *ev, const char *key);
const char *event_content_str(const json_t *ev, const char *key);

/* Client format of a stored PDU (spec "ClientEvent"): content, event_id,
 * origin_server_ts, room_id, sender, state_key?, type, unsigned?, redacts?
 * New reference. */
json_t *event_to_client(const json_t *pdu, const char *event_id);

#endif
