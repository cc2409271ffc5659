/* fed_client.c - the federation thread: an event_base driving one curl
 * multi handle (CURLMOPT_SOCKETFUNCTION / TIMERFUNCTION), a submit queue
 * woken with event_active, server discovery with a well-known cache, and
 * completions delivered on the caller's event_base. */
#define _GNU_SOURCE /* strcasestr */
#include "fed_client.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "cjson.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "xmatrix.h"

#define WK_CACHE_MAX 1024
#define WK_DEFAULT_TTL_S (24 * 3600)
#define WK_MIN_TTL_S 60
#define WK_MAX_TTL_S (48 * 3600)
#define WK_FAIL_TTL_S 600
#define WK_TIMEOUT_MS 10000
#define WK_MAX_BODY 16384
#define MAX_TICKS 8
#define DEFAULT_PORT 8448

struct fed_job {
	struct fed_client *fc;
	char *method;
	char *destination;
	char *path;
	char *body; /* canonical JSON text or NULL */
	size_t body_len;
	char *auth; /* Authorization header value or NULL */
	int timeout_ms;
	struct event_base *reply_base;
	fed_response_cb cb;
	void *arg;
	/* on the federation thread */
	CURL *easy;
	struct curl_slist *headers;
	char *resp;
	size_t resp_len, resp_cap;
	bool too_big;
	bool wellknown; /* this transfer is the discovery step */
	char wk_cache_ctl[128];
	uint64_t start_us;
	struct fed_response out;
	struct fed_job *next;
	struct fed_job *iprev, *inext; /* in flight */
	bool inflight;
};

struct wk_entry {
	char name[FED_SERVER_NAME_MAX + 1];
	char target[FED_SERVER_NAME_MAX + 16]; /* host:port */
	char host[FED_SERVER_NAME_MAX + 1];    /* Host header: the delegated name, or name */
	int64_t expires_ms;
};

struct tick {
	struct event *ev;
	struct timeval tv;
	fed_client_tick_fn fn;
	void *arg;
};

struct fed_client {
	struct app *app;
	struct event_base *base;
	pthread_t thread;
	bool thread_started;
	CURLM *multi;
	struct event *timer;
	struct event *wake;
	struct db db;
	pthread_mutex_t lock; /* queue, stopping */
	struct fed_job *qhead, *qtail;
	int queued;
	bool stopping;
	atomic_int deferred;              /* callbacks handed to other loops, not yet run */
	LIST_HEAD(, deferred) own;        /* those for this thread's loop (under lock) */
	struct wk_entry wk[WK_CACHE_MAX]; /* federation thread only */
	int nwk;
	fed_client_policy_fn policy;
	fed_client_traffic_fn traffic;
	void *hook_arg;
	struct tick ticks[MAX_TICKS];
	int nticks;
	struct curl_slist *connect_to; /* federation.connect_to */
	struct fed_job *inflight;      /* federation thread only */
};

static void inflight_add(struct fed_client *fc, struct fed_job *j)
{
	if (j->inflight)
		return;
	j->inflight = true;
	j->iprev = NULL;
	j->inext = fc->inflight;
	if (fc->inflight)
		fc->inflight->iprev = j;
	fc->inflight = j;
}

static void inflight_remove(struct fed_client *fc, struct fed_job *j)
{
	if (!j->inflight)
		return;
	j->inflight = false;
	if (j->iprev)
		j->iprev->inext = j->inext;
	else
		fc->inflight = j->inext;
	if (j->inext)
		j->inext->iprev = j->iprev;
	j->iprev = j->inext = NULL;
}

void fed_client_stop(struct fed_client *fc);

/* ---- pure helpers ---- */

static bool valid_host_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '.';
}

int fed_server_name_split(const char *name, char *host, size_t hostlen, int *port, bool *is_ip)
{
	*port = 0;
	*is_ip = false;
	size_t n = name ? strlen(name) : 0;
	if (n == 0 || n > FED_SERVER_NAME_MAX)
		return -1;
	const char *colon;
	size_t hlen;
	if (name[0] == '[') {
		const char *end = strchr(name, ']');
		if (!end)
			return -1;
		hlen = (size_t)(end - name) + 1;
		for (const char *c = name + 1; c < end; c++)
			if (!(isxdigit((unsigned char)*c) || *c == ':' || *c == '.'))
				return -1;
		if (hlen < 3)
			return -1;
		colon = end[1] == ':' ? end + 1 : NULL;
		if (end[1] && !colon)
			return -1;
		*is_ip = true;
	} else {
		colon = strchr(name, ':');
		hlen = colon ? (size_t)(colon - name) : n;
		if (hlen == 0)
			return -1;
		for (size_t i = 0; i < hlen; i++)
			if (!valid_host_char(name[i]))
				return -1;
		char tmp[64];
		if (hlen < sizeof(tmp)) {
			memcpy(tmp, name, hlen);
			tmp[hlen] = '\0';
			struct in_addr a;
			if (inet_pton(AF_INET, tmp, &a) == 1)
				*is_ip = true;
		}
	}
	if (hlen >= hostlen)
		return -1;
	memcpy(host, name, hlen);
	host[hlen] = '\0';
	if (colon) {
		const char *p = colon + 1;
		if (!*p || strlen(p) > 5)
			return -1;
		long v = 0;
		for (; *p; p++) {
			if (!isdigit((unsigned char)*p))
				return -1;
			v = v * 10 + (*p - '0');
		}
		if (v < 1 || v > 65535)
			return -1;
		*port = (int)v;
	}
	return 0;
}

int fed_wellknown_parse(const char *body, size_t len, char *out, size_t outlen)
{
	struct cjson_limits lim = {.max_bytes = WK_MAX_BODY, .max_depth = 8};
	json_t *o = cjson_parse_object(body, len, &lim, NULL);
	if (!o)
		return -1;
	const char *s = json_string_value(json_object_get(o, "m.server"));
	char host[FED_SERVER_NAME_MAX + 1];
	int port;
	bool ip;
	int rc = -1;
	if (s && fed_server_name_split(s, host, sizeof(host), &port, &ip) == 0 && strlen(s) < outlen) {
		memcpy(out, s, strlen(s) + 1);
		rc = 0;
	}
	json_decref(o);
	return rc;
}

long fed_cache_control_max_age(const char *value, long def_s, long min_s, long max_s)
{
	long v = def_s;
	if (value) {
		if (strcasestr(value, "no-store") || strcasestr(value, "no-cache"))
			v = min_s;
		const char *m = strcasestr(value, "max-age=");
		if (m) {
			m += 8;
			long x = 0;
			int digits = 0;
			while (isdigit((unsigned char)*m) && digits < 12) {
				x = x * 10 + (*m++ - '0');
				digits++;
			}
			if (digits)
				v = x;
		}
	}
	if (v < min_s)
		v = min_s;
	if (v > max_s)
		v = max_s;
	return v;
}

bool fed_addr_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
		return (a >> 24) == 127 || a == 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a) || IN6_IS_ADDR_UNSPECIFIED(a))
			return true;
		if (IN6_IS_ADDR_V4MAPPED(a))
			return a->s6_addr[12] == 127 || (a->s6_addr[12] == 0 && a->s6_addr[13] == 0 &&
							 a->s6_addr[14] == 0 && a->s6_addr[15] == 0);
	}
	return false;
}

/* ---- jobs ---- */

static void job_free(struct fed_job *j)
{
	if (!j)
		return;
	if (j->easy)
		curl_easy_cleanup(j->easy);
	curl_slist_free_all(j->headers);
	json_decref(j->out.body);
	free(j->method);
	free(j->destination);
	free(j->path);
	free(j->body);
	free(j->auth);
	free(j->resp);
	free(j);
}

struct deferred {
	struct fed_client *fc;
	void (*fn)(void *);
	void *arg;
	bool own; /* on fc->own: for the federation loop, which may stop first */
	LIST_ENTRY(deferred) link;
};

static void on_deferred(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct deferred *d = arg;
	struct fed_client *fc = d->fc;
	if (d->own) {
		pthread_mutex_lock(&fc->lock);
		LIST_REMOVE(d, link);
		pthread_mutex_unlock(&fc->lock);
	}
	d->fn(d->arg);
	free(d);
	atomic_fetch_sub(&fc->deferred, 1);
}

/* Callbacks for our own loop that it will not reach now: dropped. */
static void drop_own_deferred(struct fed_client *fc)
{
	pthread_mutex_lock(&fc->lock);
	struct deferred *d;
	while ((d = LIST_FIRST(&fc->own)) != NULL) {
		LIST_REMOVE(d, link);
		atomic_fetch_sub(&fc->deferred, 1);
		free(d);
	}
	pthread_mutex_unlock(&fc->lock);
}

bool fed_client_on_thread(struct fed_client *fc)
{
	return fc->thread_started && pthread_equal(pthread_self(), fc->thread);
}

int fed_client_defer(struct fed_client *fc, struct event_base *base, void (*fn)(void *), void *arg)
{
	if (base == fc->base && fed_client_on_thread(fc)) {
		fn(arg);
		return 0;
	}
	struct deferred *d = malloc(sizeof(*d));
	if (!d)
		return -1;
	d->fc = fc;
	d->fn = fn;
	d->arg = arg;
	d->own = base == fc->base;
	if (d->own) {
		/* a callback for our loop after it stopped would never run */
		pthread_mutex_lock(&fc->lock);
		if (fc->stopping) {
			pthread_mutex_unlock(&fc->lock);
			free(d);
			return -1;
		}
		LIST_INSERT_HEAD(&fc->own, d, link);
	}
	atomic_fetch_add(&fc->deferred, 1);
	static const struct timeval zero = {0, 0};
	bool own = d->own; /* the lock is held across event_base_once so that
			    * fed_client_stop cannot drop d in between */
	int rc = event_base_once(base, -1, EV_TIMEOUT, on_deferred, d, &zero);
	if (rc < 0) {
		if (own)
			LIST_REMOVE(d, link);
		atomic_fetch_sub(&fc->deferred, 1);
		free(d);
	}
	if (own)
		pthread_mutex_unlock(&fc->lock);
	return rc < 0 ? -1 : 0;
}

static void deliver_now(void *arg)
{
	struct fed_job *j = arg;
	j->cb(&j->out, j->arg);
	job_free(j);
}

/* Finish a job: parse what arrived, run the hooks, hand it to its loop. */
static void job_complete(struct fed_job *j)
{
	struct fed_client *fc = j->fc;
	j->out.elapsed_ms = (int64_t)((http_now_us() - j->start_us) / 1000);
	if (j->out.status && j->resp_len) {
		struct cjson_limits lim = {.max_bytes = FED_CLIENT_MAX_RESPONSE, .max_depth = 64};
		struct al_error e = {0};
		j->out.body = cjson_parse(j->resp, j->resp_len, &lim, &e);
		if (!j->out.body && j->out.status / 100 == 2)
			al_error_set(&j->out.err, 502, "M_UNKNOWN", "%s sent a body that is not JSON: %s",
				     j->destination, e.message);
	}
	free(j->resp);
	j->resp = NULL;
	j->resp_len = j->resp_cap = 0;
	if (fc->traffic && j->out.err.status != 403)
		fc->traffic(fc->hook_arg, j->destination, j->out.status, j->out.elapsed_ms);
	if (fed_client_defer(fc, j->reply_base, deliver_now, j) < 0) {
		log_error("fed_client", "cannot deliver a completion for %s; dropped", j->destination);
		job_free(j);
	}
}

static void job_fail(struct fed_job *j, int status, const char *errcode, const char *msg)
{
	j->out.status = 0;
	al_error_set(&j->out.err, status, errcode, "%s", msg);
	job_complete(j);
}

/* ---- curl callbacks ---- */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	struct fed_job *j = userdata;
	size_t n = size * nmemb;
	size_t limit = j->wellknown ? WK_MAX_BODY : FED_CLIENT_MAX_RESPONSE;
	if (j->resp_len + n > limit) {
		j->too_big = true;
		return 0; /* aborts the transfer */
	}
	if (j->resp_len + n + 1 > j->resp_cap) {
		size_t cap = j->resp_cap ? j->resp_cap * 2 : 4096;
		while (cap < j->resp_len + n + 1)
			cap *= 2;
		if (cap > limit + 1)
			cap = limit + 1;
		char *p = realloc(j->resp, cap);
		if (!p)
			return 0;
		j->resp = p;
		j->resp_cap = cap;
	}
	memcpy(j->resp + j->resp_len, ptr, n);
	j->resp_len += n;
	j->resp[j->resp_len] = '\0';
	return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
	struct fed_job *j = userdata;
	size_t n = size * nitems;
	if (j->wellknown && n > 14 && strncasecmp(buf, "Cache-Control:", 14) == 0) {
		size_t len = n - 14;
		if (len >= sizeof(j->wk_cache_ctl))
			len = sizeof(j->wk_cache_ctl) - 1;
		memcpy(j->wk_cache_ctl, buf + 14, len);
		j->wk_cache_ctl[len] = '\0';
	}
	return n;
}

static curl_socket_t on_opensocket(void *clientp, curlsocktype purpose, struct curl_sockaddr *addr)
{
	struct fed_client *fc = clientp;
	(void)purpose;
	if (!fc->app->cfg.fed_allow_loopback && fed_addr_is_loopback(&addr->addr)) {
		log_warn("fed_client", "refusing a loopback destination address");
		return CURL_SOCKET_BAD;
	}
	return socket(addr->family, addr->socktype, addr->protocol);
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg);
static void check_done(struct fed_client *fc);

static int on_curl_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	(void)e;
	struct fed_client *fc = userp;
	struct event *ev = socketp;
	if (what == CURL_POLL_REMOVE) {
		if (ev) {
			event_free(ev);
			curl_multi_assign(fc->multi, s, NULL);
		}
		return 0;
	}
	short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) |
			     EV_PERSIST);
	if (ev) {
		event_del(ev);
		event_assign(ev, fc->base, s, kind, on_sock_event, fc);
	} else {
		ev = event_new(fc->base, s, kind, on_sock_event, fc);
		if (!ev)
			return -1;
		curl_multi_assign(fc->multi, s, ev);
	}
	event_add(ev, NULL);
	return 0;
}

static int on_curl_timer(CURLM *m, long timeout_ms, void *userp)
{
	(void)m;
	struct fed_client *fc = userp;
	if (timeout_ms < 0) {
		evtimer_del(fc->timer);
		return 0;
	}
	struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	evtimer_add(fc->timer, &tv);
	return 0;
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
	struct fed_client *fc = arg;
	int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
	int running = 0;
	curl_multi_socket_action(fc->multi, fd, action, &running);
	check_done(fc);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fed_client *fc = arg;
	int running = 0;
	curl_multi_socket_action(fc->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	check_done(fc);
}

/* ---- discovery and starting transfers ---- */

static struct wk_entry *wk_find(struct fed_client *fc, const char *name)
{
	int64_t now = http_now_ms();
	for (int i = 0; i < fc->nwk; i++)
		if (strcasecmp(fc->wk[i].name, name) == 0)
			return fc->wk[i].expires_ms > now ? &fc->wk[i] : NULL;
	return NULL;
}

static void wk_store(struct fed_client *fc, const char *name, const char *target, const char *host, long ttl_s)
{
	struct wk_entry *e = NULL;
	for (int i = 0; i < fc->nwk && !e; i++)
		if (strcasecmp(fc->wk[i].name, name) == 0)
			e = &fc->wk[i];
	if (!e) {
		if (fc->nwk < WK_CACHE_MAX) {
			e = &fc->wk[fc->nwk++];
		} else { /* evict the entry expiring first */
			e = &fc->wk[0];
			for (int i = 1; i < fc->nwk; i++)
				if (fc->wk[i].expires_ms < e->expires_ms)
					e = &fc->wk[i];
		}
	}
	snprintf(e->name, sizeof(e->name), "%s", name);
	snprintf(e->target, sizeof(e->target), "%s", target);
	snprintf(e->host, sizeof(e->host), "%s", host);
	e->expires_ms = http_now_ms() + ttl_s * 1000;
}

/* host:port (or [v6]:port) for a server name or delegated name; the
 * default port applies when none is given. */
static int target_of(const char *name, char *out, size_t outlen)
{
	char host[FED_SERVER_NAME_MAX + 1];
	int port;
	bool ip;
	if (fed_server_name_split(name, host, sizeof(host), &port, &ip) < 0)
		return -1;
	int n = snprintf(out, outlen, "%s:%d", host, port ? port : DEFAULT_PORT);
	return n < 0 || (size_t)n >= outlen ? -1 : 0;
}

/* target: host:port to connect to; host: the Host header (the server
 * name, or the delegated name after a .well-known delegation). */
static int start_transfer(struct fed_job *j, const char *target, const char *host)
{
	struct fed_client *fc = j->fc;
	const struct al_config *cfg = &fc->app->cfg;
	char url[2048];
	const char *path = j->wellknown ? "/.well-known/matrix/server" : j->path;
	int n = snprintf(url, sizeof(url), "https://%s%s", target, path);
	if (n < 0 || (size_t)n >= sizeof(url))
		return -1;
	if (j->easy)
		curl_easy_cleanup(j->easy);
	curl_slist_free_all(j->headers);
	j->headers = NULL;
	j->easy = curl_easy_init();
	if (!j->easy)
		return -1;
	CURL *e = j->easy;
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_PRIVATE, j);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, j);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, j);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, on_opensocket);
	curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, fc);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)(j->wellknown ? WK_TIMEOUT_MS : j->timeout_ms));
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)FED_CLIENT_MAX_RESPONSE);
	curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, cfg->fed_verify_tls ? 1L : 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, cfg->fed_verify_tls ? 2L : 0L);
	if (cfg->fed_ca_file[0])
		curl_easy_setopt(e, CURLOPT_CAINFO, cfg->fed_ca_file);
	if (fc->connect_to)
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, fc->connect_to);
	if (!j->wellknown) {
		j->headers = curl_slist_append(j->headers, "Content-Type: application/json");
		j->headers = curl_slist_append(j->headers, "Expect:");
		if (j->auth) {
			size_t alen = strlen(j->auth) + 32;
			char *h = malloc(alen);
			if (!h)
				return -1;
			snprintf(h, alen, "Authorization: %s", j->auth);
			j->headers = curl_slist_append(j->headers, h);
			free(h);
		}
		/* Host header per the spec's discovery: the server name, or the
		 * delegated name (with its port when it has one). */
		char hosth[FED_SERVER_NAME_MAX + 32];
		snprintf(hosth, sizeof(hosth), "Host: %s", host);
		j->headers = curl_slist_append(j->headers, hosth);
		curl_easy_setopt(e, CURLOPT_HTTPHEADER, j->headers);
		curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, j->method);
		if (j->body) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, j->body);
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)j->body_len);
		} else if (strcmp(j->method, "GET") != 0) {
			curl_easy_setopt(e, CURLOPT_POSTFIELDS, "");
			curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 0L);
		}
	}
	j->resp_len = 0;
	j->too_big = false;
	if (curl_multi_add_handle(fc->multi, e) != CURLM_OK)
		return -1;
	inflight_add(fc, j);
	return 0;
}

static void job_begin(struct fed_job *j)
{
	struct fed_client *fc = j->fc;
	if (fc->policy && !fc->policy(fc->hook_arg, j->destination)) {
		job_fail(j, 403, "M_FORBIDDEN", "destination refused by federation policy");
		return;
	}
	char host[FED_SERVER_NAME_MAX + 1], target[FED_SERVER_NAME_MAX + 16];
	int port;
	bool ip;
	if (fed_server_name_split(j->destination, host, sizeof(host), &port, &ip) < 0) {
		job_fail(j, 400, "M_INVALID_PARAM", "destination is not a server name");
		return;
	}
	if (port || ip) {
		target_of(j->destination, target, sizeof(target));
		snprintf(host, sizeof(host), "%s", j->destination);
	} else {
		struct wk_entry *w = wk_find(fc, j->destination);
		if (!w) {
			j->wellknown = true;
			snprintf(target, sizeof(target), "%s", host);
			if (start_transfer(j, target, host) < 0)
				job_fail(j, 500, "M_UNKNOWN", "cannot start the discovery request");
			return;
		}
		snprintf(target, sizeof(target), "%s", w->target);
		snprintf(host, sizeof(host), "%s", w->host);
	}
	if (start_transfer(j, target, host) < 0)
		job_fail(j, 500, "M_UNKNOWN", "cannot start the request");
}

static void wellknown_done(struct fed_job *j, CURLcode res, long code)
{
	struct fed_client *fc = j->fc;
	char delegated[FED_SERVER_NAME_MAX + 1], target[FED_SERVER_NAME_MAX + 16];
	long ttl = WK_FAIL_TTL_S;
	bool delegated_ok = false;
	if (res == CURLE_OK && code == 200 &&
	    fed_wellknown_parse(j->resp ? j->resp : "", j->resp_len, delegated, sizeof(delegated)) == 0 &&
	    target_of(delegated, target, sizeof(target)) == 0) {
		ttl = fed_cache_control_max_age(j->wk_cache_ctl[0] ? j->wk_cache_ctl : NULL, WK_DEFAULT_TTL_S,
						WK_MIN_TTL_S, WK_MAX_TTL_S);
		delegated_ok = true;
	} else {
		/* no usable delegation: the server name on port 8448 */
		target_of(j->destination, target, sizeof(target));
		snprintf(delegated, sizeof(delegated), "%s", j->destination);
	}
	wk_store(fc, j->destination, target, delegated, ttl);
	log_info("fed_client", "discovery server=%s target=%s host=%s ttl=%ld source=%s", j->destination, target,
		 delegated, ttl, delegated_ok ? "well-known" : "fallback");
	j->wellknown = false;
	if (start_transfer(j, target, delegated) < 0)
		job_fail(j, 500, "M_UNKNOWN", "cannot start the request");
}

static void check_done(struct fed_client *fc)
{
	CURLMsg *msg;
	int left;
	while ((msg = curl_multi_info_read(fc->multi, &left))) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		CURL *e = msg->easy_handle;
		CURLcode res = msg->data.result;
		struct fed_job *j = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&j);
		long code = 0;
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
		curl_multi_remove_handle(fc->multi, e);
		inflight_remove(fc, j);
		if (j->wellknown) {
			wellknown_done(j, res, code);
			continue;
		}
		if (j->too_big || res == CURLE_FILESIZE_EXCEEDED) {
			job_fail(j, 502, "M_TOO_LARGE", "response exceeds the size limit");
		} else if (res != CURLE_OK) {
			char m[256];
			snprintf(m, sizeof(m), "%s: %s", j->destination, curl_easy_strerror(res));
			job_fail(j, 502, "M_UNKNOWN", m);
		} else {
			j->out.status = (int)code;
			job_complete(j);
		}
	}
}

/* ---- queue ---- */

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fed_client *fc = arg;
	pthread_mutex_lock(&fc->lock);
	struct fed_job *list = fc->qhead;
	fc->qhead = fc->qtail = NULL;
	fc->queued = 0;
	bool stopping = fc->stopping;
	pthread_mutex_unlock(&fc->lock);
	while (list) {
		struct fed_job *j = list;
		list = j->next;
		j->next = NULL;
		if (stopping)
			job_fail(j, 503, "M_UNKNOWN", "federation client is stopping");
		else
			job_begin(j);
	}
	if (stopping) {
		/* Cancel the transfers in flight; their callbacks still run. */
		while (fc->inflight) {
			struct fed_job *j = fc->inflight;
			inflight_remove(fc, j);
			curl_multi_remove_handle(fc->multi, j->easy);
			job_fail(j, 503, "M_UNKNOWN", "federation client is stopping");
		}
		event_base_loopexit(fc->base, NULL);
	}
}

int fed_client_submit(struct fed_client *fc, const struct fed_request *req, struct event_base *reply_base,
		      fed_response_cb cb, void *arg)
{
	if (!fc || !req || !req->method || !req->destination || !req->path || !cb || !reply_base)
		return -1;
	struct fed_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	j->fc = fc;
	j->method = strdup(req->method);
	j->destination = strdup(req->destination);
	j->path = strdup(req->path);
	j->timeout_ms = req->timeout_ms > 0 ? req->timeout_ms : FED_CLIENT_DEFAULT_TIMEOUT_MS;
	j->reply_base = reply_base;
	j->cb = cb;
	j->arg = arg;
	j->start_us = http_now_us();
	if (!j->method || !j->destination || !j->path || strlen(j->path) > 1900 || j->path[0] != '/')
		goto fail;
	if (req->body) {
		j->body = cjson_encode(req->body, &j->body_len, NULL);
		if (!j->body)
			goto fail;
	}
	if (req->sign) {
		const struct sign_key *k = keys_current(fc->app->keys);
		j->auth = xmatrix_build_header(k, fc->app->cfg.server_name, req->destination, req->method, req->path,
					       req->body, NULL);
		if (!j->auth)
			goto fail;
	}
	pthread_mutex_lock(&fc->lock);
	if (fc->stopping || fc->queued >= FED_CLIENT_MAX_QUEUE) {
		pthread_mutex_unlock(&fc->lock);
		goto fail;
	}
	if (fc->qtail)
		fc->qtail->next = j;
	else
		fc->qhead = j;
	fc->qtail = j;
	fc->queued++;
	pthread_mutex_unlock(&fc->lock);
	event_active(fc->wake, EV_READ, 0);
	return 0;
fail:
	job_free(j);
	return -1;
}

/* ---- life cycle ---- */

static void *fed_thread_main(void *arg)
{
	struct fed_client *fc = arg;
	event_base_loop(fc->base, EVLOOP_NO_EXIT_ON_EMPTY);
	return NULL;
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct tick *t = arg;
	t->fn(t->arg);
}

int fed_client_add_tick(struct fed_client *fc, int tick_ms, fed_client_tick_fn fn, void *arg)
{
	if (fc->nticks >= MAX_TICKS || tick_ms <= 0)
		return -1;
	struct tick *t = &fc->ticks[fc->nticks];
	t->fn = fn;
	t->arg = arg;
	t->tv.tv_sec = tick_ms / 1000;
	t->tv.tv_usec = (tick_ms % 1000) * 1000;
	t->ev = event_new(fc->base, -1, EV_PERSIST, on_tick, t);
	if (!t->ev || event_add(t->ev, &t->tv) < 0)
		return -1;
	fc->nticks++;
	return 0;
}

void fed_client_set_hooks(struct fed_client *fc, fed_client_policy_fn policy, fed_client_traffic_fn traffic, void *arg)
{
	fc->policy = policy;
	fc->traffic = traffic;
	fc->hook_arg = arg;
}

struct event_base *fed_client_base(struct fed_client *fc)
{
	return fc->base;
}

struct db *fed_client_db(struct fed_client *fc)
{
	return &fc->db;
}

void fed_client_free(struct fed_client *fc)
{
	if (!fc)
		return;
	fed_client_stop(fc);
	drop_own_deferred(fc);
	for (int i = 0; i < fc->nticks; i++)
		event_free(fc->ticks[i].ev);
	if (fc->multi)
		curl_multi_cleanup(fc->multi);
	if (fc->timer)
		event_free(fc->timer);
	if (fc->wake)
		event_free(fc->wake);
	if (fc->base)
		event_base_free(fc->base);
	curl_slist_free_all(fc->connect_to);
	if (fc->db.conn)
		db_close(&fc->db);
	pthread_mutex_destroy(&fc->lock);
	free(fc);
}

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static void curl_init_once(void)
{
	curl_global_init(CURL_GLOBAL_DEFAULT);
}

struct fed_client *fed_client_start(struct app *app, struct al_error *err)
{
	pthread_once(&curl_once, curl_init_once);
	struct fed_client *fc = calloc(1, sizeof(*fc));
	if (!fc) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	fc->app = app;
	pthread_mutex_init(&fc->lock, NULL);
	atomic_init(&fc->deferred, 0);
	LIST_INIT(&fc->own);
	fc->base = event_base_new();
	fc->multi = curl_multi_init();
	if (!fc->base || !fc->multi) {
		al_error_set(err, 500, "M_UNKNOWN", "federation client: cannot create loop");
		goto fail;
	}
	if (db_open(&fc->db, app->cfg.conninfo, err) < 0)
		goto fail;
	for (int i = 0; i < app->cfg.fed_connect_to.count; i++) {
		struct curl_slist *l = curl_slist_append(fc->connect_to, app->cfg.fed_connect_to.items[i]);
		if (!l) {
			al_error_set(err, 500, "M_UNKNOWN", "out of memory");
			goto fail;
		}
		fc->connect_to = l;
	}
	if (fc->connect_to)
		log_info("fed_client", "federation.connect_to entries=%d", app->cfg.fed_connect_to.count);
	fc->timer = evtimer_new(fc->base, on_timer, fc);
	fc->wake = event_new(fc->base, -1, 0, on_wake, fc);
	if (!fc->timer || !fc->wake) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	/* wake is activated by hand (event_active); it needs no add. */
	curl_multi_setopt(fc->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
	curl_multi_setopt(fc->multi, CURLMOPT_SOCKETDATA, fc);
	curl_multi_setopt(fc->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
	curl_multi_setopt(fc->multi, CURLMOPT_TIMERDATA, fc);
	curl_multi_setopt(fc->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	curl_multi_setopt(fc->multi, CURLMOPT_MAX_HOST_CONNECTIONS, 8L);
	curl_multi_setopt(fc->multi, CURLMOPT_MAXCONNECTS, 256L);
	return fc;
fail:
	fed_client_free(fc);
	return NULL;
}

/* Start the thread once the module set its hooks and ticks. */
int fed_client_run(struct fed_client *fc, struct al_error *err)
{
	if (pthread_create(&fc->thread, NULL, fed_thread_main, fc) != 0)
		return al_error_set(err, 500, "M_UNKNOWN", "cannot start the federation thread");
	fc->thread_started = true;
	return 0;
}

void fed_client_stop(struct fed_client *fc)
{
	if (!fc)
		return;
	if (fc->thread_started) {
		pthread_mutex_lock(&fc->lock);
		fc->stopping = true;
		pthread_mutex_unlock(&fc->lock);
		event_active(fc->wake, EV_READ, 0);
		pthread_join(fc->thread, NULL);
		fc->thread_started = false;
		drop_own_deferred(fc);
		/* Completions handed to other loops: wait (bounded) until they ran. */
		for (int i = 0; i < 5000 && atomic_load(&fc->deferred) > 0; i++)
			usleep(1000);
		if (atomic_load(&fc->deferred) > 0)
			log_warn("fed_client", "%d completions did not run before shutdown",
				 atomic_load(&fc->deferred));
	}
}
