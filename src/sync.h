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

struct sync_filter {
	int timeline_limit;
	bool lazy_load_members;
	json_t *timeline; /* the room.timeline filter object (types, not_types), borrowed */
	json_t *state;    /* the room.state filter object, borrowed */
	json_t *doc;      /* owned: the whole filter document */
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

/* Build a sync response for (user, device) since position `since` (0:
 * initial). *empty tells whether there is nothing for the client (a
 * long-poll keeps waiting). */
json_t *sync_build(struct db *db, const char *user_id, const char *device_id, int64_t since, bool full_state,
		   const struct sync_filter *f, bool *empty, struct al_error *err);



/* Account data (room_id "" = global); content ≤ 64 KiB canonical. */
int sync_account_data_put(struct db *db, const char *user_id, const char *room_id, const char *type,
			  json_t *content, struct al_error *err);
json_t *sync_account_data_get(struct db *db, const char *user_id, const char *room_id, const char *type,
			      struct al_error *err);
#endif
