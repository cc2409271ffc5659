/* http.h - the HTTP core: worker threads with their own event_base, evhttp
 * and database connection; request dispatch through the router; JSON
 * replies and Matrix errors. */
#ifndef AL_HTTP_H
#define AL_HTTP_H

#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>

#include "app.h"
#include "db.h"
#include "error.h"
#include "router.h"

struct http_server;

/* Request bodies on the federation listener may be this large (at least;
 * limits.max_body_bytes when that is larger). */
#define HTTP_FED_MAX_BODY (4 * 1024 * 1024)

struct http_worker {
	int index;
	struct event_base *base;
	struct db db;
	struct http_server *server;
};

struct http_req {
	struct evhttp_request *ev;
	struct http_worker *worker;
	struct app *app;
	unsigned method;                       /* enum router_method */
	bool federation_listener;              /* arrived on the TLS federation port */
	const char *params[ROUTER_MAX_PARAMS]; /* decoded path captures */
	int nparams;
	struct evkeyvalq query; /* decoded query string */
	json_t *body;           /* parsed on demand by http_req_json_body */
	char *user_id;          /* set by authentication */
	char *device_id;
	uint64_t start_us;
	char *segments[ROUTER_MAX_SEGMENTS];
	int nseg;
};

typedef void (*http_handler)(struct http_req *req);

/* Register a route; call before http_server_start. */
int http_route(struct app *app, unsigned methods, const char *pattern, http_handler handler);

/* Listening sockets are opened in the calling thread (so start-up errors are
 * reported at once), then worker threads start serving. */
struct http_server *http_server_start(struct app *app, struct al_error *err);
void http_server_stop(struct http_server *srv);

/* Replies. Each request gets exactly one; they free the request. */
void http_reply_json(struct http_req *req, int status, json_t *body); /* steals body */
void http_reply_raw(struct http_req *req, int status, const char *body, size_t len);
void http_reply_buffer(struct http_req *req, int status, struct evbuffer *body); /* body stays the caller's */
void http_reply_error(struct http_req *req, int status, const char *errcode, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void http_reply_al_error(struct http_req *req, const struct al_error *err);
/* body (stolen) with status, or err when body is NULL: a handler's last line. */
void http_reply_result(struct http_req *req, int status, json_t *body, const struct al_error *err);

/* The request body as a JSON object, bounded by the configured limits.
 * NULL (with err filled) when it is missing, too large, too deep or not an
 * object. */
json_t *http_req_json_body(struct http_req *req, struct al_error *err);

/* Query parameter, or NULL. */
const char *http_req_query(struct http_req *req, const char *name);
/* The long-poll "timeout" query parameter in ms (0 when absent), capped at
 * max_ms; -1 after a 400 reply when it is not a non-negative integer. */
int http_req_query_timeout(struct http_req *req, long max_ms, long *timeout_ms);
/* Request header, or NULL. */
const char *http_req_header(struct http_req *req, const char *name);
/* Raw body bytes (pulled up into one piece); NULL when empty. */
const char *http_req_body_bytes(struct http_req *req, size_t *len);

uint64_t http_now_us(void);
int64_t http_now_ms(void);

#endif
