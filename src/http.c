#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cjson.h"
#include "log.h"

/* Bodies up to this multiple of the configured limit are read and refused
 * with a Matrix M_TOO_LARGE; beyond it libevent itself drops them with 413. */
#define BODY_BACKSTOP_FACTOR 4
#define IDLE_TIMEOUT_SECONDS 120
#define MAX_HEADERS_BYTES (32 * 1024)

struct worker_slot {
	struct http_worker w;
	pthread_t thread;
	struct evhttp *client_http;
	struct evhttp *fed_http;
	struct http_server *srv;
};

struct http_server {
	struct app *app;
	int client_fd;
	int fed_fd;
	SSL_CTX *ssl_ctx;
	int nworkers;
	struct worker_slot *slots;
};

uint64_t http_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int64_t http_now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int http_route(struct app *app, unsigned methods, const char *pattern, http_handler handler)
{
	/* A function pointer travels through the router's opaque slot. */
	union {
		http_handler fn;
		void *ptr;
	} u;
	_Static_assert(sizeof(u.fn) == sizeof(u.ptr), "function pointers must fit in void*");
	u.fn = handler;
	if (router_add(app->router, methods, pattern, u.ptr) < 0) {
		log_error("http", "cannot add route %s", pattern);
		return -1;
	}
	return 0;
}

/* ---- replies ---- */

static const char *method_name(unsigned m)
{
	switch (m) {
	case ROUTER_GET: return "GET";
	case ROUTER_POST: return "POST";
	case ROUTER_PUT: return "PUT";
	case ROUTER_DELETE: return "DELETE";
	case ROUTER_PATCH: return "PATCH";
	case ROUTER_OPTIONS: return "OPTIONS";
	case ROUTER_HEAD: return "HEAD";
	default: return "?";
	}
}

static void req_free(struct http_req *req)
{
	evhttp_clear_headers(&req->query);
	for (int i = 0; i < req->nseg; i++)
		free(req->segments[i]);
	json_decref(req->body);
	free(req->user_id);
	free(req->device_id);
	free(req);
}

static void add_common_headers(struct evkeyvalq *h)
{
	evhttp_add_header(h, "Content-Type", "application/json");
	evhttp_add_header(h, "Access-Control-Allow-Origin", "*");
	evhttp_add_header(h, "Access-Control-Allow-Methods", "GET, HEAD, POST, PUT, DELETE, OPTIONS, PATCH");
	evhttp_add_header(h, "Access-Control-Allow-Headers", "X-Requested-With, Content-Type, Authorization, Date");
}

static void send_and_log(struct http_req *req, int status, struct evbuffer *body)
{
	add_common_headers(evhttp_request_get_output_headers(req->ev));
	evhttp_send_reply(req->ev, status, NULL, body);
	if (log_enabled(LOG_LVL_INFO)) {
		const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req->ev));
		uint64_t us = http_now_us() - req->start_us;
		log_info("http", "%s %s status=%d ms=%.2f listener=%s worker=%d", method_name(req->method),
			 path ? path : "-", status, (double)us / 1000.0,
			 req->federation_listener ? "federation" : "client", req->worker->index);
	}
	req_free(req);
}

void http_reply_buffer(struct http_req *req, int status, struct evbuffer *body)
{
	send_and_log(req, status, body);
}

void http_reply_raw(struct http_req *req, int status, const char *body, size_t len)
{
	struct evbuffer *buf = evbuffer_new();
	if (buf)
		evbuffer_add(buf, body, len);
	send_and_log(req, status, buf);
	if (buf)
		evbuffer_free(buf);
}

static int dump_to_evbuffer(const char *chunk, size_t size, void *data)
{
	return evbuffer_add((struct evbuffer *)data, chunk, size);
}

void http_reply_json(struct http_req *req, int status, json_t *body)
{
	struct evbuffer *buf = evbuffer_new();
	if (!buf || !body || json_dump_callback(body, dump_to_evbuffer, buf, JSON_COMPACT) < 0) {
		if (buf)
			evbuffer_free(buf);
		json_decref(body);
		static const char oom[] = "{\"errcode\":\"M_UNKNOWN\",\"error\":\"out of memory\"}";
		http_reply_raw(req, 500, oom, sizeof(oom) - 1);
		return;
	}
	json_decref(body);
	send_and_log(req, status, buf);
	evbuffer_free(buf);
}

static void reply_errorv(struct http_req *req, int status, const char *errcode, const char *fmt, va_list ap)
{
	char msg[512];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	http_reply_json(req, status, json_pack("{s:s, s:s}", "errcode", errcode, "error", msg));
}

void http_reply_error(struct http_req *req, int status, const char *errcode, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	reply_errorv(req, status, errcode, fmt, ap);
	va_end(ap);
}

void http_reply_al_error(struct http_req *req, const struct al_error *err)
{
	if (!err->errcode[0]) {
		http_reply_error(req, 500, "M_UNKNOWN", "internal error");
		return;
	}
	http_reply_error(req, err->status ? err->status : 500, err->errcode, "%s", err->message);
}

void http_reply_result(struct http_req *req, int status, json_t *body, const struct al_error *err)
{
	if (body)
		http_reply_json(req, status, body);
	else
		http_reply_al_error(req, err);
}

/* ---- request accessors ---- */

const char *http_req_query(struct http_req *req, const char *name)
{
	return evhttp_find_header(&req->query, name);
}

int http_req_query_timeout(struct http_req *req, long max_ms, long *timeout_ms)
{
	*timeout_ms = 0;
	const char *s = http_req_query(req, "timeout");
	if (!s)
		return 0;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "timeout must be a non-negative integer");
		return -1;
	}
	*timeout_ms = v > max_ms ? max_ms : v;
	return 0;
}

const char *http_req_header(struct http_req *req, const char *name)
{
	return evhttp_find_header(evhttp_request_get_input_headers(req->ev), name);
}

const char *http_req_body_bytes(struct http_req *req, size_t *len)
{
	struct evbuffer *in = evhttp_request_get_input_buffer(req->ev);
	*len = evbuffer_get_length(in);
	if (*len == 0)
		return NULL;
	return (const char *)evbuffer_pullup(in, -1);
}

/* Bodies on the federation listener may be larger: a transaction carries
 * up to 50 PDUs of up to 64 KiB. */
static size_t body_limit(const struct al_config *cfg, bool federation)
{
	return federation && cfg->max_body_bytes < HTTP_FED_MAX_BODY ? HTTP_FED_MAX_BODY : cfg->max_body_bytes;
}

json_t *http_req_json_body(struct http_req *req, struct al_error *err)
{
	if (req->body)
		return req->body;
	size_t len;
	const char *bytes = http_req_body_bytes(req, &len);
	struct cjson_limits lim = {.max_bytes = body_limit(&req->app->cfg, req->federation_listener),
				   .max_depth = req->app->cfg.max_json_depth};
	req->body = cjson_parse_object(bytes ? bytes : "", len, &lim, err);
	return req->body;
}

/* ---- dispatch ---- */

static unsigned method_of(struct evhttp_request *ev)
{
	switch (evhttp_request_get_command(ev)) {
	case EVHTTP_REQ_GET: return ROUTER_GET;
	case EVHTTP_REQ_POST: return ROUTER_POST;
	case EVHTTP_REQ_PUT: return ROUTER_PUT;
	case EVHTTP_REQ_DELETE: return ROUTER_DELETE;
	case EVHTTP_REQ_PATCH: return ROUTER_PATCH;
	case EVHTTP_REQ_OPTIONS: return ROUTER_OPTIONS;
	case EVHTTP_REQ_HEAD: return ROUTER_HEAD;
	default: return 0;
	}
}

static void dispatch(struct http_req *req)
{
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req->ev);
	const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
	const char *query = uri ? evhttp_uri_get_query(uri) : NULL;
	if (query && evhttp_parse_query_str(query, &req->query) < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed query string");
		return;
	}
	req->nseg = router_split_path(path, req->segments, ROUTER_MAX_SEGMENTS);
	if (req->nseg < 0) {
		req->nseg = 0;
		http_reply_error(req, 404, "M_UNRECOGNIZED", "Unrecognized request");
		return;
	}
	if (req->method == ROUTER_OPTIONS) {
		http_reply_raw(req, 200, "{}", 2);
		return;
	}
	void *handler = NULL;
	switch (router_match(req->app->router, req->method == ROUTER_HEAD ? ROUTER_GET : req->method, req->segments,
			     req->nseg, &handler, req->params, &req->nparams)) {
	case ROUTER_NOT_FOUND: http_reply_error(req, 404, "M_UNRECOGNIZED", "Unrecognized request"); return;
	case ROUTER_BAD_METHOD: http_reply_error(req, 405, "M_UNRECOGNIZED", "Unrecognized request method"); return;
	case ROUTER_FOUND: break;
	}
	size_t body_len = evbuffer_get_length(evhttp_request_get_input_buffer(req->ev));
	size_t limit = body_limit(&req->app->cfg, req->federation_listener);
	if (body_len > limit) {
		http_reply_error(req, 413, "M_TOO_LARGE", "request body exceeds %zu bytes", limit);
		return;
	}
	union {
		void *ptr;
		http_handler fn;
	} u = {.ptr = handler};
	u.fn(req);
}

static void on_request(struct evhttp_request *ev, void *arg, bool federation)
{
	struct worker_slot *slot = arg;
	struct http_req *req = calloc(1, sizeof(*req));
	if (!req) {
		evhttp_send_error(ev, 503, "out of memory");
		return;
	}
	req->ev = ev;
	req->worker = &slot->w;
	req->app = slot->srv->app;
	req->method = method_of(ev);
	req->federation_listener = federation;
	req->start_us = http_now_us();
	TAILQ_INIT(&req->query);
	if (!req->method) {
		http_reply_error(req, 405, "M_UNRECOGNIZED", "Unrecognized request method");
		return;
	}
	dispatch(req);
}

static void on_client_request(struct evhttp_request *ev, void *arg)
{
	on_request(ev, arg, false);
}

static void on_federation_request(struct evhttp_request *ev, void *arg)
{
	on_request(ev, arg, true);
}

/* ---- sockets, TLS, workers ---- */

static int open_listener(const char *bind_addr, int port, struct al_error *err)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
	struct addrinfo *ai = NULL;
	char portstr[8];
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(bind_addr, portstr, &hints, &ai) != 0 || !ai)
		return al_error_set(err, 500, "M_UNKNOWN", "listener: bind address '%s' is not an IP address",
				    bind_addr);
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	/* Accepted sockets inherit TCP_NODELAY: without it a TLS reply written as
	 * several records waits for the peer's delayed ACK (~40 ms). */
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0) {
		al_error_set(err, 500, "M_UNKNOWN", "listener: cannot listen on %s port %d: %s", bind_addr, port,
			     strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

static SSL_CTX *tls_context(const struct al_config *cfg, struct al_error *err)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	if (!ctx) {
		al_error_set(err, 500, "M_UNKNOWN", "TLS: cannot create context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->tls_certificate) != 1) {
		al_error_set(err, 500, "M_UNKNOWN", "listeners.federation.tls_certificate: cannot load %s",
			     cfg->tls_certificate);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->tls_private_key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		al_error_set(
			err, 500, "M_UNKNOWN",
			"listeners.federation.tls_private_key: cannot load %s or it does not match the certificate",
			cfg->tls_private_key);
		goto fail;
	}
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

static struct bufferevent *tls_bevcb(struct event_base *base, void *arg)
{
	SSL *ssl = SSL_new((SSL_CTX *)arg);
	if (!ssl)
		return NULL;
	return bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
}

static struct evhttp *make_evhttp(struct worker_slot *slot, int fd, void (*cb)(struct evhttp_request *, void *),
				  bool federation)
{
	const struct al_config *cfg = &slot->srv->app->cfg;
	struct evhttp *http = evhttp_new(slot->w.base);
	if (!http)
		return NULL;
	struct evconnlistener *l = evconnlistener_new(slot->w.base, NULL, NULL, LEV_OPT_CLOSE_ON_EXEC, -1, fd);
	if (!l || !evhttp_bind_listener(http, l)) {
		if (l)
			evconnlistener_free(l);
		evhttp_free(http);
		return NULL;
	}
	evhttp_set_allowed_methods(http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						 EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS | EVHTTP_REQ_HEAD);
	evhttp_set_max_body_size(http, (ev_ssize_t)(body_limit(cfg, federation) * BODY_BACKSTOP_FACTOR));
	evhttp_set_max_headers_size(http, MAX_HEADERS_BYTES);
	evhttp_set_timeout(http, IDLE_TIMEOUT_SECONDS);
	evhttp_set_gencb(http, cb, slot);
	return http;
}

static void *worker_main(void *arg)
{
	struct worker_slot *slot = arg;
	event_base_loop(slot->w.base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static int worker_init(struct http_server *srv, struct worker_slot *slot, int index, struct al_error *err)
{
	slot->srv = srv;
	slot->w.index = index;
	slot->w.server = srv;
	slot->w.base = event_base_new();
	if (!slot->w.base)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot create event base");
	if (db_open(&slot->w.db, srv->app->cfg.conninfo, err) < 0)
		return -1;
	if (srv->client_fd >= 0) {
		slot->client_http = make_evhttp(slot, srv->client_fd, on_client_request, false);
		if (!slot->client_http)
			return al_error_set(err, 500, "M_UNKNOWN", "cannot create client listener");
	}
	if (srv->fed_fd >= 0) {
		slot->fed_http = make_evhttp(slot, srv->fed_fd, on_federation_request, true);
		if (!slot->fed_http)
			return al_error_set(err, 500, "M_UNKNOWN", "cannot create federation listener");
		evhttp_set_bevcb(slot->fed_http, tls_bevcb, srv->ssl_ctx);
	}
	return 0;
}

static void worker_free(struct worker_slot *slot)
{
	if (slot->client_http)
		evhttp_free(slot->client_http);
	if (slot->fed_http)
		evhttp_free(slot->fed_http);
	if (slot->w.db.conn)
		db_close(&slot->w.db);
	if (slot->w.base)
		event_base_free(slot->w.base);
}

static void server_free(struct http_server *srv)
{
	for (int i = 0; i < srv->nworkers; i++)
		worker_free(&srv->slots[i]);
	free(srv->slots);
	if (srv->client_fd >= 0)
		close(srv->client_fd);
	if (srv->fed_fd >= 0)
		close(srv->fed_fd);
	if (srv->ssl_ctx)
		SSL_CTX_free(srv->ssl_ctx);
	free(srv);
}

static int open_sockets(struct http_server *srv, struct al_error *err)
{
	const struct al_config *cfg = &srv->app->cfg;
	if (cfg->client.enabled) {
		srv->client_fd = open_listener(cfg->client.bind, cfg->client.port, err);
		if (srv->client_fd < 0)
			return -1;
	}
	if (cfg->federation.enabled) {
		srv->ssl_ctx = tls_context(cfg, err);
		if (!srv->ssl_ctx)
			return -1;
		srv->fed_fd = open_listener(cfg->federation.bind, cfg->federation.port, err);
		if (srv->fed_fd < 0)
			return -1;
	}
	return 0;
}

struct http_server *http_server_start(struct app *app, struct al_error *err)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	if (!srv) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	srv->app = app;
	srv->client_fd = srv->fed_fd = -1;
	srv->slots = calloc((size_t)app->cfg.worker_threads, sizeof(*srv->slots));
	if (!srv->slots || open_sockets(srv, err) < 0)
		goto fail;
	for (int i = 0; i < app->cfg.worker_threads; i++) {
		srv->nworkers = i + 1;
		if (worker_init(srv, &srv->slots[i], i, err) < 0)
			goto fail;
	}
	for (int i = 0; i < srv->nworkers; i++) {
		if (pthread_create(&srv->slots[i].thread, NULL, worker_main, &srv->slots[i]) != 0) {
			al_error_set(err, 500, "M_UNKNOWN", "cannot start worker thread");
			for (int j = 0; j < i; j++) {
				event_base_loopexit(srv->slots[j].w.base, NULL);
				pthread_join(srv->slots[j].thread, NULL);
			}
			goto fail;
		}
	}
	return srv;
fail:
	server_free(srv);
	return NULL;
}

void http_server_stop(struct http_server *srv)
{
	if (!srv)
		return;
	for (int i = 0; i < srv->nworkers; i++)
		event_base_loopexit(srv->slots[i].w.base, NULL);
	for (int i = 0; i < srv->nworkers; i++)
		pthread_join(srv->slots[i].thread, NULL);
	server_free(srv);
}
