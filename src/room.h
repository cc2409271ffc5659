/* room.h - rooms on this server (domain logic, no HTTP): creating rooms,
 * writing events (built, authorised against the current state, hashed,
 * signed and stored with their DAG edges and state group), aliases,
 * memberships, and reading events and state for clients.
 *
 * Writes to one room are serialised by locking its rooms row (SELECT ...
 * FOR UPDATE) for the transaction. A new local event has the room's
 * forward extremities (room_extremities, at most ROOM_MAX_PREV) as
 * prev_events and the highest depth + 1, and becomes the only extremity
 * it replaces; events from other servers (room_remote.h) keep their own.
 * Stream positions (al_stream_seq) are drawn under a global advisory lock
 * held to commit, so /sync never sees position N+1 before N. PUT /send
 * writes through room_send_batch (room_queue.h: group commit), which
 * keeps both rules: the room lock per batch, the stream lock from the
 * first position it draws to its commit. */
#ifndef AL_ROOM_H
#define AL_ROOM_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "error.h"
#include "event.h"

struct keys;
struct app;

#define ROOM_ID_MAX 255
#define ROOM_DEFAULT_VERSION "11"
#define ROOM_SNAPSHOT_INTERVAL 100 /* a full state snapshot every N state groups */
#define ROOM_MAX_PREV 10           /* prev_events of a new local event (forward extremities) */
#define ROOM_MAX_PREV_STR "10"

struct room_event_spec {
	const char *type;
	const char *state_key; /* NULL: not a state event */
	json_t *content;       /* borrowed */
	const char *redacts;   /* m.room.redaction only */
	const char *device_id; /* with txn_id: idempotency key of PUT /send and /redact, */
	const char *txn_id;    /* per (sender, device, room, endpoint: redacts set or not) */
	/* m.room.member: refused (403) unless the target's membership, under
	 * the room lock, is one of this space-separated list. NULL: no
	 * condition. */
	const char *require_membership;
};

struct room_ctx {
	struct db *db;
	const struct keys *keys;
	struct app *app; /* for the stored-event hook (calls_on_event); may be NULL */
};

/* The version of rooms created without room_version (config
 * rooms.default_room_version; set once at start-up, before the workers). */
void room_set_default_version(const char *version);
const char *room_default_version(void);

/* The body of POST /createRoom (validated here). Fills room_id (size
 * ROOM_ID_MAX+1) and the stream position of the last event written. */
int room_create(const struct room_ctx *c, const char *creator, json_t *body, char *room_id, int64_t *stream,
		struct al_error *err);

/* Write one event as sender. event_id (size EVENT_ID_MAX) gets its ID; a
 * repeated (sender, device_id, room, endpoint, txn_id), also a concurrent
 * one, returns the first event's ID with *stream 0, and so does a state
 * event that repeats the current one (same sender and content). */
int room_send(const struct room_ctx *c, const char *room_id, const char *sender, const struct room_event_spec *spec,
	      char *event_id, int64_t *stream, struct al_error *err);

/* Build one event as room_send would (prev_events, auth_events, depth,
 * authorised against the current state) without storing it. sign: hash and
 * sign it and fill event_id; else the unsigned template of make_join /
 * make_leave (sender may then be a remote user). *pdu_out: new reference. */
int room_build_event(const struct room_ctx *c, const char *room_id, const char *sender,
		     const struct room_event_spec *spec, bool sign, json_t **pdu_out, char *event_id,
		     struct al_error *err);

/* Group commit (room_queue.h): n timeline events (no state_key, no
 * redacts) into one room in one transaction: lock the room row, read the
 * state the senders need (or take it from cache), look up their txnIds,
 * one INSERT of all rows, one commit. Each item is built, authorised and
 * signed on its own and gets its own result (rc 0 with event_id and
 * stream, stream 0 for a repeated txnId; or rc -1 with err, e.g. 403 for
 * that item alone); an item's 0 means its event committed. When the
 * batch's transaction fails before COMMIT, every item goes through
 * room_send alone. Returns how many events were stored.
 *
 * Like room_send, the first event takes the room's forward extremities as
 * prev_events, each next one the event before it; the extremities it took
 * are replaced by the batch's last event. Events for other servers in the
 * room are queued in the same transaction (the caller wakes the sender).
 *
 * cache (may be NULL; one thread's) keeps, per room, the auth state the
 * last batch used, the head it wrote and the forward extremities it left;
 * it is used only while the locked row still shows that head and the room
 * still has those extremities (so any other writer's event or state change,
 * and any event accepted from another server, in between makes it
 * re-read). */
struct room_write_cache;
struct room_write_cache *room_write_cache_new(int max_rooms);
void room_write_cache_free(struct room_write_cache *cache);
struct room_batch_item {
	const char *sender;
	struct room_event_spec spec;
	char event_id[EVENT_ID_MAX];
	int64_t stream;
	int rc;
	struct al_error err;
};
int room_send_batch(const struct room_ctx *c, const char *room_id, struct room_batch_item *items, int n,
		    struct room_write_cache *cache);

/* room_send_batch in two halves, so that a writer builds a room's next
 * batch while the database writes this one: room_batch_start builds
 * items on the cache (as the batch before it left the room, committed or
 * still in flight) and sends the guarded INSERT without waiting; NULL
 * when the batch cannot take that path (nothing sent: the caller reads
 * what is in flight, then calls room_send_batch). room_batch_finish
 * reads the oldest in flight, in the order started; it answers like
 * room_send_batch, or ROOM_BATCH_AGAIN when nothing was written (the
 * room moved, or earlier_failed: the batch before it did not commit), and
 * the caller then writes those items with room_send_batch, in order, once
 * nothing is in flight. c must stay valid until then. */
#define ROOM_BATCH_AGAIN (-3)
struct room_batch_flight;
struct room_batch_flight *room_batch_start(const struct room_ctx *c, const char *room_id, struct room_batch_item *items,
					   int n, struct room_write_cache *cache);
int room_batch_finish(struct room_batch_flight *f, bool earlier_failed);

/* Membership change as sender: membership "join" (sender joins; room_id
 * may be an alias), "invite"/"leave"/"ban" with target. reason may be NULL;
 * extra_content (a join's request body, may be NULL) adds members to the content.
 * room_id_out (size ROOM_ID_MAX+1) may be NULL. */
int room_membership(const struct room_ctx *c, const char *room_id_or_alias, const char *sender, const char *target,
		    const char *membership, const char *reason, json_t *extra_content, char *room_id_out,
		    int64_t *stream, struct al_error *err);

/* A guest may join only rooms whose m.room.guest_access is can_join:
 * 0, or 403 M_FORBIDDEN (404 for an unknown alias). */
int room_guest_join_check(struct db *db, const char *room_id_or_alias, struct al_error *err);

/* POST /kick: target's membership becomes leave; 403 M_FORBIDDEN unless
 * it is join, invite or knock now (a banned or departed user). */
int room_kick(const struct room_ctx *c, const char *room_id, const char *sender, const char *target, const char *reason,
	      int64_t *stream, struct al_error *err);

/* POST /unban: target's membership becomes leave; 403 M_FORBIDDEN unless
 * it is ban now. */
int room_unban(const struct room_ctx *c, const char *room_id, const char *sender, const char *target,
	       const char *reason, int64_t *stream, struct al_error *err);

int room_forget(struct db *db, const char *room_id, const char *user_id, struct al_error *err);

/* Aliases. put: 409 M_UNKNOWN if taken; resolve: 404 M_NOT_FOUND. */
int room_alias_put(struct db *db, const char *alias, const char *room_id, const char *creator, struct al_error *err);
int room_alias_resolve(struct db *db, const char *alias, char *room_id, struct al_error *err);
int room_alias_delete(struct db *db, const char *alias, const char *user_id, struct al_error *err);
json_t *room_alias_list(struct db *db, const char *room_id, struct al_error *err);

/* Reads, as seen by user_id: joined, or up to the moment she left (her
 * leave or ban); a world-readable room (its current history_visibility)
 * also by anyone else. Timeline reads (room_get_event, room_messages,
 * room_context) also let an invitee in, and show only the events the
 * history visibility rules allow (room_visibility.h): 404 for one event
 * she may not see, a shorter chunk for a page (its tokens still move past
 * the hidden events). */
json_t *room_state(struct db *db, const char *room_id, const char *user_id, struct al_error *err);
/* The content of one state event, or (as_event) the whole client event. */
json_t *room_state_event(struct db *db, const char *room_id, const char *user_id, const char *type,
			 const char *state_key, bool as_event, struct al_error *err);
json_t *room_members(struct db *db, const char *room_id, const char *user_id, const char *membership,
		     const char *not_membership, struct al_error *err);
json_t *room_joined_members(struct db *db, const char *room_id, const char *user_id, struct al_error *err);
json_t *room_joined_rooms(struct db *db, const char *user_id, struct al_error *err);
/* 0 when user_id is joined to room_id; 403 M_FORBIDDEN otherwise. */
int room_require_joined(struct db *db, const char *room_id, const char *user_id, struct al_error *err);

/* Receipts. check: user_id is joined and event_id is an event of the room
 * (400 malformed, 403, 404). put: type m.read or m.read.private (stored in
 * receipts with a stream position; thread_id NULL = unthreaded, else "main"
 * or an event ID; an earlier event than the current receipt's is ignored)
 * or m.fully_read (room account data, no thread). *changed: something new
 * for /sync. */
int room_receipt_check(struct db *db, const char *room_id, const char *user_id, const char *event_id,
		       struct al_error *err);
int room_receipt_put(struct db *db, const char *room_id, const char *user_id, const char *type, const char *thread_id,
		     const char *event_id, bool *changed, struct al_error *err);
json_t *room_get_event(struct db *db, const char *room_id, const char *user_id, const char *event_id,
		       struct al_error *err);
/* dir 'b' or 'f'; from NULL: the end (b) or the start (f); to may be NULL. */
json_t *room_messages(struct db *db, const char *room_id, const char *user_id, const char *device_id, const char *from,
		      const char *to, char dir, int limit, json_t *filter, struct al_error *err);
/* The event, limit/2 events before it and the rest after it (each as
 * visible to user_id); "state" is the state of the room at the last event
 * returned; start and end are /messages tokens before the first and after
 * the last. */
json_t *room_context(struct db *db, const char *room_id, const char *user_id, const char *event_id, int limit,
		     struct al_error *err);

/* Events fetched from other servers' history (backfill) sit in the
 * timeline below the local stream: positions at or below
 * -ROOM_BACKFILL_BASE, older ones lower (outliers use -1, -2, ...). */
#define ROOM_BACKFILL_BASE INT64_C(4611686018427387904)
#define ROOM_BACKFILL_BASE_SQL "4611686018427387904"

/* Stream tokens: "s<N>" (a /sync token's stream part is accepted too),
 * "b<k>" for backfilled history (position -ROOM_BACKFILL_BASE - k);
 * -1 if malformed. */
int64_t room_token_parse(const char *tok);
void room_token_format(int64_t pos, char *out, size_t len);

/* A stored event row -> client event (redacted form when redacted; adds
 * unsigned.transaction_id when viewer_device sent it). New reference. */
json_t *room_client_event(const char *json_text, const char *event_id, const char *sender, const char *txn_device,
			  const char *txn_id, const char *viewer, const char *viewer_device);

/* '{"a","b"}' text for a PostgreSQL text[] parameter (a NULL item is an SQL
 * NULL element); malloc'd. */
char *room_pg_array(const char *const *items, int n);

/* ms since the epoch */
int64_t room_now_ms(void);

#endif
