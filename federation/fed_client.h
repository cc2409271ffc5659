/* fed_client.h - outbound federation requests. One federation thread owns
 * a libcurl multi handle driven by its own event_base; any thread submits
 * requests and gets the answer back as a callback on an event_base of its
 * choosing. Requests are signed with X-Matrix (origin, destination, method,
 * uri, content), sent over HTTPS with certificate verification (config:
 * federation.verify_tls, federation.ca_file), after server discovery
 * (explicit port -> direct; else /.well-known/matrix/server, cached by its
 * Cache-Control; else port 8448). Responses are size-limited and parsed
 * with cjson limits.
 *
 * Destinations that are blacklisted (federation.blacklist, or refused by the
 * policy hook) are refused before any connection; loopback addresses are
 * refused at connect time unless federation.allow_loopback. */
#ifndef AL_FED_CLIENT_H
#define AL_FED_CLIENT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "db.h"
#include "error.h"

struct app;
struct event_base;
struct fed_client;

#define FED_CLIENT_MAX_RESPONSE (4 * 1024 * 1024)
#define FED_CLIENT_DEFAULT_TIMEOUT_MS 30000
#define FED_CLIENT_MAX_QUEUE 65536
#define FED_SERVER_NAME_MAX 255

struct fed_response {
	int status;          /* HTTP status, 0 when no response arrived */
	json_t *body;        /* parsed JSON body (borrowed; valid during the callback), or NULL */
	struct al_error err; /* filled when status is 0 or the body was unusable */
	int64_t elapsed_ms;
};

typedef void (*fed_response_cb)(const struct fed_response *resp, void *arg);

struct fed_request {
	const char *method;      /* "GET", "PUT", "POST" */
	const char *destination; /* server name, e.g. "b.test:8448" */
	const char *path;        /* path and query, already percent-encoded */
	json_t *body;            /* borrowed; NULL for none */
	bool sign;               /* X-Matrix Authorization header (false for key fetches) */
	int timeout_ms;          /* 0 = default (30 s) */
};

/* Policy hook: called on the federation thread before a request leaves;
 * return false to refuse the destination (403 M_FORBIDDEN, status 0). */
typedef bool (*fed_client_policy_fn)(void *arg, const char *destination);
/* Traffic hook: called on the federation thread after each request with
 * the destination, whether a response arrived (status != 0) and its time. */
typedef void (*fed_client_traffic_fn)(void *arg, const char *destination, int status, int64_t elapsed_ms);
/* Called on the federation thread every tick_ms (0: never). */
typedef void (*fed_client_tick_fn)(void *arg);

/* Create the client (loop, curl multi, its own database connection);
 * fed_client_run then starts the thread, after hooks and ticks are set. */
struct fed_client *fed_client_start(struct app *app, struct al_error *err);
int fed_client_run(struct fed_client *fc, struct al_error *err);
/* Cancels what is in flight (callbacks run with status 0), waits until the
 * callbacks handed to other loops ran (bounded), stops the thread. Call
 * while the reply bases still dispatch. Afterwards submissions fail; the
 * memory stays until fed_client_free. NULL is a no-op. */
void fed_client_stop(struct fed_client *fc);
void fed_client_free(struct fed_client *fc);

/* Hooks; set them before requests are submitted. */
void fed_client_set_hooks(struct fed_client *fc, fed_client_policy_fn policy, fed_client_traffic_fn traffic, void *arg);
/* Periodic work on the federation thread (health checks, the sender). */
int fed_client_add_tick(struct fed_client *fc, int tick_ms, fed_client_tick_fn fn, void *arg);

/* Thread-safe. cb runs on reply_base's thread exactly once, also on
 * failure (status 0). When reply_base is the federation thread's own base
 * the callback runs there. Returns -1 only when the request could not be
 * queued (then cb never runs). */
int fed_client_submit(struct fed_client *fc, const struct fed_request *req, struct event_base *reply_base,
		      fed_response_cb cb, void *arg);

/* The federation thread's loop and its own database connection (use the
 * connection only in callbacks running on that loop). */
struct event_base *fed_client_base(struct fed_client *fc);
struct db *fed_client_db(struct fed_client *fc);
bool fed_client_on_thread(struct fed_client *fc);

/* Run fn(arg) on base's loop (thread-safe); counted so that
 * fed_client_stop waits for it. When base is the federation base and the
 * caller is on the federation thread it runs at once. 0 or -1. */
int fed_client_defer(struct fed_client *fc, struct event_base *base, void (*fn)(void *), void *arg);

/* ---- pure, for unit tests ---- */

/* Split a server name into host and port (0 when absent). IPv6 literals
 * keep their brackets. Returns 0, or -1 when malformed (empty, too long,
 * bad characters, bad port). *is_ip is set for IP literals. */
int fed_server_name_split(const char *name, char *host, size_t hostlen, int *port, bool *is_ip);

/* The m.server of a /.well-known/matrix/server body, validated as a server
 * name, into out. 0 or -1. */
int fed_wellknown_parse(const char *body, size_t len, char *out, size_t outlen);

/* max-age of a Cache-Control header value in seconds, clamped to
 * [min_s, max_s]; def_s when absent or no-store/no-cache-free garbage. */
long fed_cache_control_max_age(const char *value, long def_s, long min_s, long max_s);

/* True for 127.0.0.0/8, ::1, ::ffff:127.x, 0.0.0.0 and ::. */
bool fed_addr_is_loopback(const struct sockaddr *sa);

#endif
