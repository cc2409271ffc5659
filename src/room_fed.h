/* room_fed.h - reads of rooms that other servers make through federation
 * (domain logic, no HTTP): events in the federation (PDU) form, the state
 * at an event and auth chains, backfill, missing events, the servers in a
 * room, the stripped state sent with an invite. Access: a server may read
 * a room when one of its users has a membership in it. */
#ifndef AL_ROOM_FED_H
#define AL_ROOM_FED_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

#define ROOM_FED_MAX_BACKFILL 100
#define ROOM_FED_MAX_MISSING 100
#define ROOM_FED_MAX_IDS 100 /* earliest/latest/v lists */

/* The PDU form of a stored event (no unsigned; event_id only in room
 * versions 1-2). New reference or NULL. */
json_t *room_fed_pdu(const char *json_text, const char *version);

/* Does server have (or had) a member in the room? 404 when the room is
 * unknown. 1 / 0 / -1. */
int room_fed_server_may_read(struct db *db, const char *room_id, const char *server, struct al_error *err);

/* One event: *room_id_out (size 256) gets its room. 404 when unknown. */
json_t *room_fed_event(struct db *db, const char *event_id, char *room_id_out, struct al_error *err);

/* The state before event_id (the state "at" it) as event IDs, and the IDs
 * of their auth chain. New references. 404 for outliers and rejected
 * events (no state is known at them). */
int room_fed_state_ids(struct db *db, const char *room_id, const char *event_id, json_t **pdu_ids,
		       json_t **auth_chain_ids, struct al_error *err);

/* PDUs of ids (an array of event IDs of room_id), and (when chain is not
 * NULL) the PDUs of their whole auth chain (also those among ids, as
 * send_join answers it). */
int room_fed_pdus(struct db *db, const char *room_id, json_t *ids, json_t **pdus, json_t **chain, struct al_error *err);

/* The auth chain of one event, PDUs. */
json_t *room_fed_event_auth(struct db *db, const char *room_id, const char *event_id, struct al_error *err);

/* Backfill: v and the events before them, newest first, at most limit. */
json_t *room_fed_backfill(struct db *db, const char *room_id, json_t *v, int limit, struct al_error *err);

/* get_missing_events: the events before latest (breadth first), not
 * before earliest, depth >= min_depth, at most limit; oldest first. */
json_t *room_fed_missing(struct db *db, const char *room_id, json_t *earliest, json_t *latest, int limit,
			 long min_depth, struct al_error *err);

/* Servers with joined members. */
json_t *room_fed_joined_servers(struct db *db, const char *room_id, struct al_error *err);

/* The stripped state an invite carries (create, join rules, name, avatar,
 * canonical alias, encryption, topic, the inviter's membership). */
json_t *room_fed_stripped_state(struct db *db, const char *room_id, const char *sender, struct al_error *err);

/* The sender's server of user_id's invite into room_id, or NULL (size 256). */
int room_fed_inviter_server(struct db *db, const char *room_id, const char *user_id, char *out, struct al_error *err);

/* user_id's membership in room_id ("" when none) into out (size 16). */
int room_fed_membership(struct db *db, const char *room_id, const char *user_id, char *out, struct al_error *err);

#endif
