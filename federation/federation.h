/* federation.h - the federation layer as the daemon and the client handlers
 * see it (the only header of federation/ that src/ includes). */
#ifndef AL_FEDERATION_H
#define AL_FEDERATION_H

#include <jansson.h>
#include <stdbool.h>

#include "db.h"
#include "error.h"

struct app;
struct event_base;

/* Start the federation thread, load the remote key store and the server
 * registry, register the /_matrix/federation, /_matrix/key/v2/query and
 * admin routes. Needs app->router, app->keys, app->maint_db. 0 or -1. */
int federation_start(struct app *app);

/* Stop: cancels outbound requests (their callbacks run with an error) and
 * waits for them. Call while the HTTP workers still run (before
 * http_server_stop). Safe when federation_start was not called. */
void federation_stop(struct app *app);
/* After the workers stopped: free everything (stop_modules). */
void federation_free(struct app *app);

/* Called (any thread) after events from other servers were stored, so
 * that parked /sync requests wake up. Set after federation_start. */
typedef void (*federation_notify_fn)(struct app *app);
void federation_set_notify(struct app *app, federation_notify_fn fn);

/* True when server_name is this server. */
bool federation_is_local(struct app *app, const char *server_name);

/* Remote profile: GET /_matrix/federation/v1/query/profile on the user's
 * server. field NULL = both. cb runs once on base's loop with the HTTP
 * status from the remote (0 when unreachable: err filled) and the body
 * (borrowed; may be NULL). Returns -1 when it could not be started. */
typedef void (*federation_json_cb)(void *arg, int status, json_t *body, const struct al_error *err);
int federation_query_profile(struct app *app, const char *user_id, const char *field,
			     struct event_base *base, federation_json_cb cb, void *arg);

/* Resolve an AuraID hosted elsewhere: asks known peers (whitelisted and
 * trusted first, at most 8 at once), verifies the signed attestation with
 * the answering server's key, caches the answer (and misses) with a TTL.
 * cb gets status 200 and the record {aura_id, user_id, server,
 * display_name, avatar_url, is_verified, attestation}, or 404 M_NOT_FOUND /
 * 403 M_FORBIDDEN / 502. */
int federation_resolve_aura_id(struct app *app, const char *aura_id, struct event_base *base,
			       federation_json_cb cb, void *arg);

/* Queue an EDU for destination in the durable outbox; runs inside the
 * caller's transaction when one is open. The sender wakes after commit
 * (at the latest on its next tick). */
int fed_sender_enqueue_edu(struct db *db, const char *destination, const char *edu_type,
			   json_t *content, struct al_error *err);
/* Queue a PDU (its "unsigned" member left out) for each destination, in
 * the caller's transaction. The transaction that carries it is sent once
 * the caller committed and the sender woke. */
int fed_sender_enqueue_pdu(struct db *db, const char *const *destinations, int n, const json_t *pdu,
			   struct al_error *err);
/* Wake the sender now (after the caller's transaction committed). */
void federation_sender_wake(struct app *app);

#endif
