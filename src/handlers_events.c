#include "handlers_events.h"

#include <event2/event.h>
#include <event2/http.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <time.h>

#include "auth.h"
#include "handlers_sync.h"
#include "http.h"
#include "log.h"
#include "presence.h"
#include "sync.h"
#include "typing.h"

#define CLIENT "/_matrix/client/r0|v3"
#define EVENTS_TIMELINE_LIMIT 100

struct events_park;

struct events_state {
	pthread_mutex_t mu;
	pthread_cond_t drained;
	TAILQ_HEAD(, events_park) parked;
	int nparked;
	bool draining;
};

struct events_park {
	TAILQ_ENTRY(events_park) link;
	struct events_state *st;
	struct http_req *req;
	struct event *wake, *timer;
	struct evhttp_connection *conn;
	struct sync_pos from;
	char room_id[256];
};

/* ---- building ---- */

static void add_with_room(json_t *chunk, json_t *events, const char *room_id)
{
	size_t i;
	json_t *e;
	json_array_foreach(events, i, e)
	{
		json_t *c = json_copy(e);
		json_object_set_new(c, "room_id", json_string(room_id));
		json_array_append_new(chunk, c);
	}
}

static void add_rooms(json_t *chunk, json_t *rooms, const char *only, bool ephemeral)
{
	const char *rid;
	json_t *r;
	json_object_foreach(rooms, rid, r)
	{
		if (only[0] && strcmp(rid, only) != 0)
			continue;
		add_with_room(chunk, json_object_get(json_object_get(r, "timeline"), "events"), rid);
		if (ephemeral)
			add_with_room(chunk, json_object_get(json_object_get(r, "ephemeral"), "events"), rid);
	}
}

/* The user's own membership from each invite's stripped state. */
static void add_invites(json_t *chunk, json_t *rooms, const char *user_id, const char *only)
{
	const char *rid;
	json_t *r;
	json_object_foreach(rooms, rid, r)
	{
		if (only[0] && strcmp(rid, only) != 0)
			continue;
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(json_object_get(r, "invite_state"), "events"), i, e)
		{
			const char *type = json_string_value(json_object_get(e, "type"));
			const char *sk = json_string_value(json_object_get(e, "state_key"));
			if (type && sk && strcmp(type, "m.room.member") == 0 && strcmp(sk, user_id) == 0) {
				json_t *c = json_copy(e);
				json_object_set_new(c, "room_id", json_string(rid));
				json_array_append_new(chunk, c);
			}
		}
	}
}

/* The sync after from flattened into *chunk; *end gets next_batch. 0, or
 * -1 with err. */
static int build(struct http_req *req, const struct sync_pos *from, const char *only, json_t **chunk, char *end,
		 size_t endlen, struct al_error *err)
{
	struct sync_filter f = {0};
	json_t *doc = json_pack("{s:{s:{s:i}}}", "room", "timeline", "limit", EVENTS_TIMELINE_LIMIT);
	int rc = doc ? sync_filter_parse(doc, &f, err) : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_decref(doc);
	if (rc < 0)
		return -1;
	bool empty = true;
	json_t *s = sync_build(&req->worker->db, req->app->typing, req->user_id, req->device_id, from, false, &f,
			       &empty, err);
	sync_filter_clear(&f);
	if (!s)
		return -1;
	json_t *out = json_array();
	json_t *rooms = json_object_get(s, "rooms");
	add_rooms(out, json_object_get(rooms, "join"), only, true);
	add_rooms(out, json_object_get(rooms, "leave"), only, false);
	add_invites(out, json_object_get(rooms, "invite"), req->user_id, only);
	if (!only[0]) {
		size_t i;
		json_t *e;
		json_array_foreach(json_object_get(json_object_get(s, "presence"), "events"), i, e)
		{
			json_array_append(out, e);
		}
	}
	const char *nb = json_string_value(json_object_get(s, "next_batch"));
	snprintf(end, endlen, "%s", nb ? nb : "");
	json_decref(s);
	*chunk = out;
	return 0;
}

static void reply(struct http_req *req, const struct sync_pos *from, json_t *chunk, const char *end)
{
	char start[SYNC_TOKEN_MAX];
	sync_pos_format(from, start, sizeof(start));
	http_reply_json(req, 200,
			json_pack("{s:s, s:s, s:o}", "start", start, "end", end[0] ? end : start, "chunk",
				  chunk ? chunk : json_array()));
}

/* 1 answered (events, or an error), 0 nothing new. */
static int try_reply(struct http_req *req, const struct sync_pos *from, const char *only, bool force)
{
	struct al_error err = {0};
	json_t *chunk = NULL;
	char end[SYNC_TOKEN_MAX];
	if (build(req, from, only, &chunk, end, sizeof(end), &err) < 0) {
		http_reply_al_error(req, &err);
		return 1;
	}
	if (json_array_size(chunk) == 0 && !force) {
		json_decref(chunk);
		return 0;
	}
	if (json_array_size(chunk) == 0) {
		/* nothing: the same position again */
		json_decref(chunk);
		reply(req, from, NULL, "");
		return 1;
	}
	reply(req, from, chunk, end);
	return 1;
}

/* ---- parking ---- */

static void park_remove(struct events_park *p)
{
	struct events_state *st = p->st;
	pthread_mutex_lock(&st->mu);
	TAILQ_REMOVE(&st->parked, p, link);
	if (--st->nparked == 0)
		pthread_cond_broadcast(&st->drained);
	pthread_mutex_unlock(&st->mu);
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	event_free(p->timer);
	event_free(p->wake);
	free(p);
}

static void on_close(struct evhttp_connection *conn, void *arg);

static void park_answer(struct events_park *p, bool force)
{
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, NULL, NULL);
	if (!try_reply(p->req, &p->from, p->room_id, force)) {
		if (p->conn)
			evhttp_connection_set_closecb(p->conn, on_close, p);
		return;
	}
	p->conn = NULL;
	park_remove(p);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
	park_answer(arg, true);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
	struct events_park *p = arg;
	pthread_mutex_lock(&p->st->mu);
	bool draining = p->st->draining;
	pthread_mutex_unlock(&p->st->mu);
	park_answer(p, draining);
}

static void on_close(struct evhttp_connection *conn, void *arg)
{
	struct events_park *p = arg;
	p->conn = NULL;
	if (evhttp_request_get_connection(p->req->ev) == NULL)
		http_reply_error(p->req, 499, "M_UNKNOWN", "client went away");
	else
		log_warn("events", "parked request dropped with its connection");
	park_remove(p);
}

static int park(struct http_req *req, const struct sync_pos *from, const char *only, long timeout_ms)
{
	struct events_state *st = req->app->events;
	struct events_park *p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	p->st = st;
	p->req = req;
	p->from = *from;
	snprintf(p->room_id, sizeof(p->room_id), "%s", only);
	p->wake = event_new(req->worker->base, -1, 0, on_wake, p);
	p->timer = evtimer_new(req->worker->base, on_timeout, p);
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	if (!p->wake || !p->timer || evtimer_add(p->timer, &tv) < 0) {
		if (p->wake)
			event_free(p->wake);
		if (p->timer)
			event_free(p->timer);
		free(p);
		return -1;
	}
	pthread_mutex_lock(&st->mu);
	if (st->draining) {
		pthread_mutex_unlock(&st->mu);
		event_free(p->wake);
		event_free(p->timer);
		free(p);
		return -1;
	}
	TAILQ_INSERT_TAIL(&st->parked, p, link);
	st->nparked++;
	pthread_mutex_unlock(&st->mu);
	p->conn = evhttp_request_get_connection(req->ev);
	if (p->conn)
		evhttp_connection_set_closecb(p->conn, on_close, p);
	/* something may have committed between the check and now */
	event_active(p->wake, EV_READ, 1);
	return 0;
}

/* ---- the endpoint ---- */

static int current_pos(struct http_req *req, struct sync_pos *pos, struct al_error *err)
{
	int64_t s = sync_current_position(&req->worker->db, err);
	if (s < 0)
		return -1;
	json_t *c = NULL;
	bool reset;
	pos->typing = typing_changes(req->app->typing, 0, &c, &reset);
	json_decref(c);
	pos->stream = pos->to_device = s;
	return 0;
}

static void get_events(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *from_s = http_req_query(req, "from");
	const char *room_id = http_req_query(req, "room_id");
	struct sync_pos from = {0};
	struct al_error err = {0};
	if (room_id && strlen(room_id) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "room_id is too long");
		return;
	}
	/* reading the stream marks the user online, as /sync does (before the
	 * position is taken: her own change is not news to her) */
	bool changed = false;
	if (presence_touch(&req->worker->db, req->user_id, "online", http_now_ms(), &changed, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (changed)
		sync_notify(req->app);
	if (from_s ? sync_pos_parse(from_s, &from) < 0 : current_pos(req, &from, &err) < 0) {
		if (from_s)
			http_reply_error(req, 400, "M_INVALID_PARAM", "malformed from token");
		else
			http_reply_al_error(req, &err);
		return;
	}
	long timeout;
	if (http_req_query_timeout(req, SYNC_MAX_TIMEOUT_MS, &timeout) < 0)
		return;
	const char *only = room_id ? room_id : "";
	/* stream 0 would read as an initial sync: a fresh server has nothing */
	if (from.stream == 0) {
		reply(req, &from, NULL, "");
		return;
	}
	if (!try_reply(req, &from, only, timeout == 0) && park(req, &from, only, timeout) < 0)
		try_reply(req, &from, only, true);
}

int events_start(struct app *app)
{
	struct events_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -1;
	pthread_mutex_init(&st->mu, NULL);
	pthread_cond_init(&st->drained, NULL);
	TAILQ_INIT(&st->parked);
	app->events = st;
	return http_route(app, ROUTER_GET, CLIENT "/events", get_events);
}

void events_notify(struct app *app)
{
	struct events_state *st = app->events;
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	struct events_park *p;
	TAILQ_FOREACH(p, &st->parked, link)
	{
		event_active(p->wake, EV_READ, 1);
	}
	pthread_mutex_unlock(&st->mu);
}

void events_drain(struct app *app)
{
	struct events_state *st = app->events;
	if (!st)
		return;
	pthread_mutex_lock(&st->mu);
	st->draining = true;
	struct events_park *p;
	TAILQ_FOREACH(p, &st->parked, link)
	{
		event_active(p->wake, EV_READ, 1);
	}
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 2;
	while (st->nparked > 0)
		if (pthread_cond_timedwait(&st->drained, &st->mu, &deadline) != 0)
			break;
	if (st->nparked > 0)
		log_warn("events", "%d parked /events requests not answered at shutdown", st->nparked);
	pthread_mutex_unlock(&st->mu);
}

void events_stop(struct app *app)
{
	struct events_state *st = app->events;
	if (!st)
		return;
	pthread_mutex_destroy(&st->mu);
	pthread_cond_destroy(&st->drained);
	free(st);
	app->events = NULL;
}
