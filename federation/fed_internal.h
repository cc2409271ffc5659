/* fed_internal.h - the federation layer's shared context. Only files in
 * federation/ include it; src/ sees federation.h. */
#ifndef AL_FED_INTERNAL_H
#define AL_FED_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>

#include "app.h"
#include "event.h"
#include "fed_client.h"
#include "fed_keys.h"
#include "federation.h"
#include "http.h"

struct fed_servers;
struct fed_sender;
struct fed_aura_cache;

struct federation {
	struct app *app;
	/* called after events were stored (wakes /sync), set by main */
	federation_notify_fn notify;
	struct fed_client *fc;
	struct fed_keys *keys;
	struct fed_servers *servers;
	struct fed_sender *sender;
	struct fed_aura_cache *aura;
};

/* app->federation */
struct federation *fed_of(struct app *app);

/* ---- inbound authentication (fed_auth.c) ---- */

/* Continue a request once its X-Matrix header verified. req->user_id then
 * holds the origin server name. */
typedef void (*fed_auth_cont)(struct http_req *req);

/* Verify the request's X-Matrix header. When the origin's key is in memory
 * this runs cont at once; otherwise the request is parked, the key fetched
 * asynchronously, and cont (or the error reply) runs later on the worker's
 * loop. Failures: 401 M_UNAUTHORIZED with a precise message and an audit
 * entry; 403 M_FORBIDDEN for refused origins. */
void fed_auth_require(struct http_req *req, fed_auth_cont cont);

/* ---- registry and policy (fed_servers.c) ---- */

struct fed_servers *fed_servers_new(struct federation *fed);
void fed_servers_free(struct fed_servers *s);
int fed_servers_load(struct fed_servers *s, struct db *db, struct al_error *err);
/* Upsert a row for every federation.whitelist / federation.blacklist entry
 * of the config (one statement), flags set from the config. */
int fed_servers_configure(struct fed_servers *s, struct db *db, struct al_error *err);
/* Policy, from memory (config lists + registry): may we talk to server? */
bool fed_servers_allowed(struct fed_servers *s, const char *server);
/* Up to max peers, best first: rank 0 whitelisted, 1 trusted or verified,
 * 2 others seen (trusted_only: ranks 0 and 1, for notaries; all for the
 * AuraID fan-out). ranks (may be NULL) gets each one's rank. Returns the
 * count. */
int fed_servers_pick(struct fed_servers *s, char (*out)[256], int max, bool trusted_only, int *ranks);
/* Record that server was seen inbound (memory; flushed in batches). */
void fed_servers_seen(struct fed_servers *s, const char *server);
/* Outbound traffic statistics (federation thread). */
void fed_servers_traffic(void *arg, const char *destination, int status, int64_t elapsed_ms);
void fed_servers_tick(void *arg);
int fed_servers_register_routes(struct app *app);

/* ---- handlers (fed_handlers.c) ---- */
int fed_handlers_register(struct app *app);
/* Is user_id a well-formed ID (at most 255 bytes) of a user of this server? */
bool fed_user_is_local(struct app *app, const char *user_id);
/* fed_user_is_local, or false after a 403 M_FORBIDDEN reply. */
bool fed_require_local_user(struct http_req *req, const char *user_id);
/* The rows of sql ($1 = user_id) for a user of this server; NULL once
 * replied: 403 for another server's user, the database error, or 404
 * M_NOT_FOUND not_found when there is no row. */
PGresult *fed_local_user_rows(struct http_req *req, const char *user_id, const char *sql, const char *not_found);

/* ---- AuraID across domains (fed_aura.c) ---- */
struct fed_aura_cache *fed_aura_new(void);
void fed_aura_free(struct fed_aura_cache *c);
/* The checks of an org.auralink.aura_id answer from server dest for handle
 * that need no key: the attestation names dest as its server and handle
 * as its aura_id, is still valid at now_ms, and its user_id is a user of
 * dest (a server vouches only for its own users); the record's user_id and
 * aura_id match it. 1 when they hold, else 0. The signature is checked
 * afterwards with dest's key. */
int fed_aura_attestation_check(const char *dest, const char *handle, const json_t *rec, int64_t now_ms,
			       int64_t skew_ms);

/* ---- sender and inbound transactions (sender.c, fed_inbound.c) ---- */
struct fed_sender *fed_sender_new(struct federation *fed);
void fed_sender_free(struct fed_sender *s);
void fed_sender_tick(void *arg);
int fed_inbound_register(struct app *app);

/* ---- device lists and keys without E2E keys (fed_devices.c) ---- */
int fed_devices_register(struct app *app);

/* ---- the public room directory, serving side (fed_public_rooms.c) ---- */
int fed_public_rooms_register(struct app *app);

/* ---- typing, receipts, presence over federation (fed_edu.c) ---- */
int fed_edu_register_all(void);

/* ---- room endpoints, serving side (fed_rooms.c) ---- */
int fed_rooms_register(struct app *app);
/* GET /query/directory?room_alias= (dispatched by fed_handlers.c) */
void fed_rooms_query_directory(struct http_req *req);

/* ---- PDUs from other servers (fed_pdu.c) ---- */

/* Signatures of the servers an event needs (its sender's; a restricted
 * join's authorising server's) with keys in memory, then the content hash.
 * 0 with *verified = the event, or its redacted copy when the hash does
 * not match (new reference); -1 (drop it) with why. */
int fed_pdu_verify(struct federation *fed, const struct event_rules *r, const json_t *pdu, json_t **verified, char *why,
		   size_t whylen);
/* Is pdu signed by server (a known key, none failing)? 0 or -1 with why. */
int fed_pdu_verify_server(struct federation *fed, const struct event_rules *r, const json_t *pdu, const char *server,
			  char *why, size_t whylen);
/* Fetch server's keys when its signatures on pdu cannot be checked yet. */
int fed_pdus_fetch_keys_of(struct federation *fed, struct event_base *base, const char *server, const json_t *pdu,
			   void (*cb)(void *arg), void *arg);
/* Fetch the keys that checking pdus needs (servers whose signing keys are
 * not in memory); cb runs once on base's loop, maybe at once. */
int fed_pdus_fetch_keys(struct federation *fed, struct event_base *base, json_t *pdus, const char *version,
			void (*cb)(void *arg), void *arg);
/* The PDUs of an inbound transaction from origin, on worker w: cb gets
 * the "pdus" result object (event ID -> {} or {"error"}), borrowed. */
typedef void (*fed_pdu_done_fn)(void *arg, json_t *results);
int fed_pdu_process(struct federation *fed, struct http_worker *w, const char *origin, json_t *pdus, fed_pdu_done_fn cb,
		    void *arg);

#endif
