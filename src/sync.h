/* sync.h - building /sync responses from the stream (domain logic, no
 * HTTP) and filters. Positions: see room.h; a token is "s<N>". */
#ifndef AL_SYNC_H
#define AL_SYNC_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"

#define SYNC_DEFAULT_TIMELINE 10
#define SYNC_MAX_TIMELINE 100
#define SYNC_FILTER_MAX_BYTES 16384
#define SYNC_MAX_TO_DEVICE 100 /* to-device messages per response */
#define SYNC_TOKEN_MAX 64
#define SYNC_TO_DEVICE_MAX_TARGETS 1000

struct typing;

/* A position in everything /sync reports; the token is
 * "s<stream>_<typing>_<to_device>":
 *  stream     al_stream_seq: events, account data, receipts, to-device;
 *  typing     the serial of typing.h (in memory, see there);
 *  to_device  this device's inbox was delivered up to here. It lags behind
 *             stream when a response carried SYNC_MAX_TO_DEVICE messages
 *             and more were waiting.
 * The older form "s<stream>" reads as typing 0, to_device = stream. */
struct sync_pos {
	int64_t stream;
	int64_t typing;
	int64_t to_device;
};

/* 0, or -1 when tok is malformed. */
int sync_pos_parse(const char *tok, struct sync_pos *out);
void sync_pos_format(const struct sync_pos *p, char *out, size_t len);

struct sync_filter {
	int timeline_limit;
	bool lazy_load_members;
	bool include_leave; /* room.include_leave: initial syncs list left and banned rooms */
	json_t *timeline;   /* the room.timeline filter object (types, not_types), borrowed */
	json_t *state;      /* the room.state filter object, borrowed */
	json_t *ephemeral;  /* the room.ephemeral filter object, borrowed */
	json_t *doc;        /* owned: the whole filter document */
};

/* Parse a filter document (validated, bounded). */
int sync_filter_parse(json_t *doc, struct sync_filter *f, struct al_error *err);
void sync_filter_clear(struct sync_filter *f);
/* ?filter= : an ID stored by user_id or inline JSON. */
int sync_filter_load(struct db *db, const char *user_id, const char *param, struct sync_filter *f,
		     struct al_error *err);
/* Store a filter; returns the new ID (> 0) or -1. */
int64_t sync_filter_store(struct db *db, const char *user_id, json_t *doc, struct al_error *err);
json_t *sync_filter_get(struct db *db, const char *user_id, const char *filter_id, struct al_error *err);

/* The highest committed stream position. */
int64_t sync_current_position(struct db *db, struct al_error *err);

/* Build a sync response for (user, device) since position `since`
 * (stream 0: initial); typing may be NULL. *empty tells whether there is
 * nothing for the client (a long-poll keeps waiting). */
json_t *sync_build(struct db *db, struct typing *typing, const char *user_id, const char *device_id,
		   const struct sync_pos *since, bool full_state, const struct sync_filter *f, bool *empty,
		   struct al_error *err);

/* The rooms whose new events concern a parked sync of user_id: a set
 * (object room_id -> true) of the rooms she is joined to, invited to or
 * knocking on. */
json_t *sync_wake_rooms(struct db *db, const char *user_id, struct al_error *err);

/* A sync with since.to_device = upto acknowledges the device's to-device
 * messages at or below upto: they are deleted. */
int sync_to_device_ack(struct db *db, const char *user_id, const char *device_id, int64_t upto, struct al_error *err);

/* PUT /sendToDevice: messages is {user_id: {device_id or "*": content}}
 * (validated here: at most SYNC_TO_DEVICE_MAX_TARGETS entries, contents
 * objects). Only users of server_name get messages; others are skipped.
 * Idempotent per (sender, sender_device, txn_id): *delivered is false for
 * a repeat, or when no device was addressed. */
int sync_to_device_send(struct db *db, const char *server_name, const char *sender, const char *sender_device,
			const char *type, const char *txn_id, json_t *messages, bool *delivered, struct al_error *err);

/* Account data (room_id "" = global); content ≤ 64 KiB canonical. */
int sync_account_data_put(struct db *db, const char *user_id, const char *room_id, const char *type, json_t *content,
			  struct al_error *err);
json_t *sync_account_data_get(struct db *db, const char *user_id, const char *room_id, const char *type,
			      struct al_error *err);
#endif
