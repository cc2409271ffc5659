#include "handlers_sync.h"

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "auth.h"
#include "federation.h"
#include "handlers_events.h"
#include "http.h"
#include "keys.h"
#include "latency_ring.h"
#include "log.h"
#include "presence.h"
#include "ratelimit.h"
#include "room.h"
#include "sync.h"
#include "sync_bus.h"
#include "typing.h"

#define CLIENT "/_matrix/client/r0|v3"
#define TYPING_SWEEP_MS 500
#define SYNC_WAKE_QUEUE 256 /* notices a worker holds until it runs; beyond, every parked sync re-runs */
#define SYNC_WAKE_ID_MAX 255

struct sync_park;

/* Something new for the members of a room ('r') or for one user ('u'). */
struct sync_notice {
	char kind;
	char id[SYNC_WAKE_ID_MAX + 1];
};

struct sync_worker {
	struct sync_state *st;
	struct event *wake;
	TAILQ_HEAD(, sync_park) parked;
	int nparked;
	/* under st->mu: syncs of this worker between their first look at the
	 * stream and their reply (parked or not), and the notices for them */
	int live;
	struct sync_notice *notices; /* SYNC_WAKE_QUEUE each; on_wake swaps them */
	struct sync_notice *spare;
	int nnotices;
	bool wake_all;
	uint64_t notice_us; /* when the oldest notice not yet taken was posted (0: none) */
};

struct sync_state {
	pthread_mutex_t mu;
	pthread_cond_t drained;
	int nworkers;
	int total_parked;
	bool draining;
	struct sync_worker *workers;
	struct event *typing_sweep; /* on the main loop */
	struct sync_bus *bus;       /* the other processes on this database; may be NULL */
	struct latency_ring wakes;  /* notice posted (just after a commit) to the woken sync's reply */
};

struct sync_park {
	TAILQ_ENTRY(sync_park) link;
	struct http_req *req;
	struct sync_worker *sw;
	struct sync_state *st;
	struct event *timer;
	struct evhttp_connection *conn;
	struct sync_pos since;
	bool full_state;
	struct sync_filter filter;
	json_t *rooms; /* the rooms whose events wake it: joined, invited, knocked */
};

/* ---- building and replying ---- */

/* 1 replied (or error replied), 0 nothing to report. */
static int try_reply(struct http_req *req, const struct sync_pos *since, bool full_state, const struct sync_filter *f,
		     bool force)
{
	struct al_error err = {0};
	bool empty = true;
	json_t *out = sync_build(&req->worker->db, req->app->typing, req->user_id, req->device_id, since, full_state, f,
				 &empty, &err);
	if (!out) {
		http_reply_al_error(req, &err);
		return 1;
	}
	if (empty && !force) {
		json_decref(out);
		return 0;
	}
	http_reply_json(req, 200, out);
	return 1;
}

static void park_remove(struct sync_park *p)
{
	struct sync_state *st = p->st;
	TAILQ_REMOVE(&p->sw->parked, p, link);
	p->sw->nparked--;
	if (p->timer)
		event_free(p->timer);
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	sync_filter_clear(&p->filter);
	json_decref(p->rooms);
	pthread_mutex_lock(&st->mu);
	p->sw->live--;
	st->total_parked--;
	if (st->total_parked == 0)
		pthread_cond_broadcast(&st->drained);
	pthread_mutex_unlock(&st->mu);
	free(p);
}

static void on_close(struct evhttp_connection *conn, void *arg);

/* true: answered (p is freed); false: still parked. */
static bool park_answer(struct sync_park *p, bool force)
{
	/* No close callback may point at p once the reply is on its way. */
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	if (!try_reply(p->req, &p->since, p->full_state, &p->filter, force)) {
		if (p->conn)
			evhttp_connection_set_closecb(p->conn, on_close, p);
		return false;
	}
	p->conn = NULL;
	p->req = NULL;
	park_remove(p);
	return true;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	park_answer(arg, true);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct sync_park *p = arg;
	p->conn = NULL;
	if (evhttp_request_get_connection(p->req->ev) == NULL) {
		/* libevent detached the request: replying frees it. */
		http_reply_error(p->req, 499, "M_UNKNOWN", "client went away");
	} else {
		log_warn("sync", "parked request dropped with its connection");
	}
	p->req = NULL;
	park_remove(p);
}

/* 'u' notice for the park's user: 2 (her memberships may have changed);
 * a room of hers: 1; else 0. */
static int park_matches(const struct sync_park *p, const struct sync_notice *n, int nn)
{
	int m = 0;
	for (int i = 0; i < nn && m < 2; i++) {
		if (n[i].kind == 'u' && strcmp(n[i].id, p->req->user_id) == 0)
			m = 2;
		else if (n[i].kind == 'r' && json_object_get(p->rooms, n[i].id))
			m = 1;
	}
	return m;
}

static void wake_answered(struct sync_state *st, uint64_t posted)
{
	if (!posted)
		return;
	uint64_t now = http_now_us();
	pthread_mutex_lock(&st->mu);
	latency_ring_add(&st->wakes, now > posted ? now - posted : 0);
	pthread_mutex_unlock(&st->mu);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct sync_worker *sw = arg;
	struct sync_park *p, *next;
	struct sync_state *st = sw->st;
	pthread_mutex_lock(&st->mu);
	bool draining = st->draining, all = sw->wake_all;
	struct sync_notice *mine = sw->notices;
	int nn = sw->nnotices;
	sw->notices = sw->spare;
	sw->spare = mine;
	sw->nnotices = 0;
	sw->wake_all = false;
	uint64_t posted = sw->notice_us;
	sw->notice_us = 0;
	pthread_mutex_unlock(&st->mu);
	/* mine stays this thread's until the next on_wake, on this thread */
	for (p = TAILQ_FIRST(&sw->parked); p; p = next) {
		next = TAILQ_NEXT(p, link);
		int m = all || draining || !p->rooms ? 2 : park_matches(p, mine, nn);
		if (m == 0)
			continue;
		if (park_answer(p, draining)) {
			wake_answered(st, posted);
			continue;
		}
		if (m != 2)
			continue;
		/* still parked (nothing for her after all): a notice of hers
		 * may mean she joined or left rooms */
		struct al_error err = {0};
		json_t *rooms = sync_wake_rooms(&p->req->worker->db, p->req->user_id, &err);
		if (rooms) {
			json_decref(p->rooms);
			p->rooms = rooms;
		}
	}
}

/* A sync of this worker starts looking at the stream: from now on the
 * worker collects the notices that may concern it. NULL when the wake
 * event cannot be made (the sync then cannot park). */
static struct sync_worker *live_begin(struct http_req *req, struct sync_state *st)
{
	struct sync_worker *sw = &st->workers[req->worker->index];
	pthread_mutex_lock(&st->mu);
	if (!sw->wake && !st->draining)
		sw->wake = event_new(req->worker->base, -1, 0, on_wake, sw);
	if (sw->wake)
		sw->live++;
	pthread_mutex_unlock(&st->mu);
	return sw->wake ? sw : NULL;
}

static void live_end(struct sync_worker *sw)
{
	pthread_mutex_lock(&sw->st->mu);
	sw->live--;
	pthread_mutex_unlock(&sw->st->mu);
}

static int park(struct http_req *req, struct sync_state *st, const struct sync_pos *since, bool full_state,
		struct sync_filter *f, int timeout_ms)
{
	struct sync_worker *sw = &st->workers[req->worker->index];
	pthread_mutex_lock(&st->mu);
	bool draining = st->draining;
	pthread_mutex_unlock(&st->mu);
	if (draining)
		return -1;
	struct sync_park *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	struct al_error err = {0};
	p->rooms = sync_wake_rooms(&req->worker->db, req->user_id, &err); /* NULL: any notice wakes it */
	p->req = req;
	p->sw = sw;
	p->st = st;
	p->since = *since;
	p->full_state = full_state;
	p->filter = *f;
	memset(f, 0, sizeof(*f));
	p->timer = evtimer_new(req->worker->base, on_timeout, p);
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	if (!p->timer || evtimer_add(p->timer, &tv) < 0) {
		if (p->timer)
			event_free(p->timer);
		*f = p->filter;
		json_decref(p->rooms);
		free(p);
		return -1;
	}
	p->conn = evhttp_request_get_connection(req->ev);
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, on_close, p);
	TAILQ_INSERT_TAIL(&sw->parked, p, link);
	sw->nparked++;
	pthread_mutex_lock(&st->mu);
	st->total_parked++;
	pthread_mutex_unlock(&st->mu);
	/* Whatever committed since the check was noticed for this worker
	 * (live_begin) and wakes this park once this callback returns. */
	return 0;
}

static void get_sync(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct sync_state *st = req->app->sync;
	const char *since_s = http_req_query(req, "since");
	const char *fs = http_req_query(req, "full_state");
	bool full_state = fs && strcmp(fs, "true") == 0;
	struct sync_pos since = {0};
	if (since_s && sync_pos_parse(since_s, &since) < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed since token");
		return;
	}
	long timeout;
	if (http_req_query_timeout(req, SYNC_MAX_TIMEOUT_MS, &timeout) < 0)
		return;
	struct al_error err = {0};
	struct sync_filter f = {0};
	if (sync_filter_load(&req->worker->db, req->user_id, http_req_query(req, "filter"), &f, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	/* Syncing marks the user online unless set_presence says otherwise. */
	const char *sp = http_req_query(req, "set_presence");
	if (sp && !presence_state_valid(sp)) {
		sync_filter_clear(&f);
		http_reply_error(req, 400, "M_INVALID_PARAM", "set_presence must be online, unavailable or offline");
		return;
	}
	bool presence_changed = false;
	if ((!sp || strcmp(sp, "offline") != 0) && presence_touch(&req->worker->db, req->user_id, sp ? sp : "online",
								  http_now_ms(), &presence_changed, &err) < 0) {
		sync_filter_clear(&f);
		http_reply_al_error(req, &err);
		return;
	}
	if (presence_changed)
		sync_notify(req->app);
	if (sync_to_device_ack(&req->worker->db, req->user_id, req->device_id, since.to_device, &err) < 0) {
		sync_filter_clear(&f);
		http_reply_al_error(req, &err);
		return;
	}
	/* "s0" is a real position too (a server without events yet) */
	bool can_park = since_s && timeout > 0 && !full_state;
	struct sync_worker *sw = can_park ? live_begin(req, st) : NULL;
	can_park = sw != NULL;
	if (try_reply(req, &since, full_state, &f, !can_park)) {
		if (sw)
			live_end(sw);
	} else if (park(req, st, &since, full_state, &f, (int)timeout) < 0) {
		live_end(sw);
		try_reply(req, &since, full_state, &f, true); /* could not park: answer now */
	}
	sync_filter_clear(&f);
}

/* Queue a notice (kind 0: everything re-runs) for every worker with a
 * sync in flight. Any thread. */
static void post_local(struct sync_state *st, char kind, const char *id)
{
	size_t len = id ? strlen(id) : 0;
	uint64_t now = http_now_us();
	pthread_mutex_lock(&st->mu);
	for (int i = 0; i < st->nworkers; i++) {
		struct sync_worker *sw = &st->workers[i];
		if (!sw->wake || sw->live == 0)
			continue;
		bool dup = false;
		for (int k = sw->nnotices - 1; kind && k >= 0 && !dup && !sw->wake_all; k--)
			dup = sw->notices[k].kind == kind && strcmp(sw->notices[k].id, id) == 0;
		if (dup)
			continue;
		if (!kind || len > SYNC_WAKE_ID_MAX || sw->nnotices == SYNC_WAKE_QUEUE) {
			sw->wake_all = true;
		} else if (!sw->wake_all) {
			sw->notices[sw->nnotices].kind = kind;
			memcpy(sw->notices[sw->nnotices++].id, id, len + 1);
		}
		if (!sw->notice_us)
			sw->notice_us = now;
		event_active(sw->wake, EV_READ, 1);
	}
	pthread_mutex_unlock(&st->mu);
}

/* ... and for the other processes on the database. */
static void post_notice(struct sync_state *st, char kind, const char *id)
{
	post_local(st, kind, id);
	sync_bus_publish(st->bus, kind ? kind : '*', id);
}

/* A notice of another process (main loop). */
static void on_bus(void *arg, char kind, const char *id)
{
	post_local(arg, kind == '*' ? 0 : kind, id);
}

void sync_notify(struct app *app)
{
	federation_sender_wake(app); /* events for other servers may be queued */
	events_notify(app);          /* GET /events parks its own requests */
	if (app->sync)
		post_notice(app->sync, 0, NULL);
}

void sync_notify_room(struct app *app, const char *room_id, const char *user_id)
{
	federation_sender_wake(app);
	events_notify(app);
	if (!app->sync)
		return;
	post_notice(app->sync, 'r', room_id);
	if (user_id)
		post_notice(app->sync, 'u', user_id);
}

void sync_notify_user(struct app *app, const char *user_id)
{
	events_notify(app);
	if (app->sync)
		post_notice(app->sync, 'u', user_id);
}

void sync_drain(struct app *app)
{
	struct sync_state *st = app->sync;
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	st->draining = true;
	for (int i = 0; i < st->nworkers; i++)
		if (st->workers[i].wake)
			event_active(st->workers[i].wake, EV_READ, 1);
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	while (st->total_parked > 0)
		if (pthread_cond_timedwait(&st->drained, &st->mu, &deadline) != 0)
			break;
	if (st->total_parked > 0)
		log_warn("sync", "%d parked syncs not answered at shutdown", st->total_parked);
	struct event *wakes[st->nworkers > 0 ? st->nworkers : 1];
	for (int i = 0; i < st->nworkers; i++) {
		wakes[i] = st->workers[i].wake;
		st->workers[i].wake = NULL;
	}
	pthread_mutex_unlock(&st->mu);
	for (int i = 0; i < st->nworkers; i++)
		if (wakes[i])
			event_free(wakes[i]); /* waits for a running callback */
}

/* Admins: how long woken long-polls took from the notice (posted right
 * after the commit of what woke them) to their reply, over the last
 * LATENCY_RING_SIZE wakes of this process. */
static void get_wake_stats(struct http_req *req)
{
	if (auth_require_admin(req) < 0 || ratelimit_check(req, "admin") < 0)
		return;
	struct sync_state *st = req->app->sync;
	pthread_mutex_lock(&st->mu);
	json_t *o = latency_ring_summary(&st->wakes);
	pthread_mutex_unlock(&st->mu);
	if (!o) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	http_reply_json(req, 200, o);
}

/* ---- filters ---- */

static bool own_user(struct http_req *req)
{
	if (strcmp(req->params[0], req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "Cannot access another user's data");
		return false;
	}
	return true;
}

static void post_filter(struct http_req *req)
{
	if (auth_require(req) < 0 || !own_user(req))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	int64_t id = sync_filter_store(&req->worker->db, req->user_id, body, &err);
	if (id < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	char buf[24];
	snprintf(buf, sizeof(buf), "%lld", (long long)id);
	http_reply_json(req, 200, json_pack("{s:s}", "filter_id", buf));
}

static void get_filter(struct http_req *req)
{
	if (auth_require(req) < 0 || !own_user(req))
		return;
	struct al_error err = {0};
	json_t *doc = sync_filter_get(&req->worker->db, req->user_id, req->params[1], &err);
	if (!doc) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, doc);
}

/* ---- account data ---- */

static void put_account_data(struct http_req *req)
{
	if (auth_require(req) < 0 || !own_user(req))
		return;
	const char *room = req->nparams > 2 ? req->params[1] : "";
	const char *type = req->params[req->nparams - 1];
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (sync_account_data_put(&req->worker->db, req->user_id, room, type, body, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	sync_notify_user(req->app, req->user_id);
	http_reply_json(req, 200, json_object());
}

static void get_account_data(struct http_req *req)
{
	if (auth_require(req) < 0 || !own_user(req))
		return;
	const char *room = req->nparams > 2 ? req->params[1] : "";
	const char *type = req->params[req->nparams - 1];
	struct al_error err = {0};
	json_t *c = sync_account_data_get(&req->worker->db, req->user_id, room, type, &err);
	if (!c) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, c);
}

/* ---- send-to-device ---- */

static void put_send_to_device(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *messages = json_object_get(body, "messages");
	if (!messages) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "messages is required");
		return;
	}
	bool delivered;
	if (sync_to_device_send(&req->worker->db, keys_server_name(req->app->keys), req->user_id, req->device_id,
				req->params[0], req->params[1], messages, &delivered, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (delivered) {
		const char *user;
		json_t *v;
		if (json_object_size(messages) > SYNC_WAKE_QUEUE)
			sync_notify(req->app);
		else
			json_object_foreach(messages, user, v)
			{
				sync_notify_user(req->app, user);
			}
	}
	http_reply_json(req, 200, json_object());
}

static void on_typing_sweep(evutil_socket_t fd, short what, void *arg)
{
	struct app *app = arg;
	if (typing_expire(app->typing, http_now_ms()) > 0)
		sync_notify(app);
	sync_bus_tick(app->sync->bus);
}

int sync_start(struct app *app)
{
	struct sync_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	st->nworkers = app->cfg.worker_threads;
	st->workers = calloc((size_t)st->nworkers + 1, sizeof(*st->workers));
	if (!st->workers) {
		free(st);
		return -1;
	}
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->drained, NULL);
	app->sync = st; /* sync_stop frees it, also after a failure here */
	for (int i = 0; i < st->nworkers; i++) {
		TAILQ_INIT(&st->workers[i].parked);
		st->workers[i].st = st;
		st->workers[i].notices = calloc(SYNC_WAKE_QUEUE, sizeof(struct sync_notice));
		st->workers[i].spare = calloc(SYNC_WAKE_QUEUE, sizeof(struct sync_notice));
		if (!st->workers[i].notices || !st->workers[i].spare)
			return -1;
	}
	app->typing = typing_new(http_now_ms());
	if (!app->typing)
		return -1;
	if (app->main_base) {
		struct timeval tv = {TYPING_SWEEP_MS / 1000, (TYPING_SWEEP_MS % 1000) * 1000};
		st->typing_sweep = event_new(app->main_base, -1, EV_PERSIST, on_typing_sweep, app);
		if (!st->typing_sweep || event_add(st->typing_sweep, &tv) < 0)
			return -1;
		st->bus = sync_bus_new(app->main_base, app->cfg.conninfo, on_bus, st);
		if (!st->bus)
			return -1;
		sync_bus_tick(st->bus);
	}
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, CLIENT "/sync", get_sync);
	rc |= http_route(app, ROUTER_POST, CLIENT "/user/{userId}/filter", post_filter);
	rc |= http_route(app, ROUTER_GET, CLIENT "/user/{userId}/filter/{filterId}", get_filter);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/user/{userId}/account_data/{type}", put_account_data);
	rc |= http_route(app, ROUTER_GET, CLIENT "/user/{userId}/account_data/{type}", get_account_data);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/user/{userId}/rooms/{roomId}/account_data/{type}", put_account_data);
	rc |= http_route(app, ROUTER_GET, CLIENT "/user/{userId}/rooms/{roomId}/account_data/{type}", get_account_data);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/sendToDevice/{eventType}/{txnId}", put_send_to_device);
	rc |= http_route(app, ROUTER_GET, "/_auralink/admin/v1/sync/wakes", get_wake_stats);
	return rc ? -1 : 0;
}

void sync_stop(struct app *app)
{
	struct sync_state *st = app->sync;
	if (!st)
		return;
	/* Workers are gone; any wake event left belongs to a freed base. */
	sync_bus_free(st->bus);
	if (st->typing_sweep)
		event_free(st->typing_sweep);
	typing_free(app->typing);
	app->typing = NULL;
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->drained);
	for (int i = 0; i < st->nworkers; i++) {
		free(st->workers[i].notices);
		free(st->workers[i].spare);
	}
	free(st->workers);
	free(st);
	app->sync = NULL;
}
