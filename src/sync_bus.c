#include "sync_bus.h"

#include <event2/event.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "log.h"
#include "room.h"

#define BUS_QUEUE 256 /* notices waiting for the main loop; beyond, one '*' */
#define ORIGIN_LEN 16
#define RETRY_TICKS 10 /* ticks between two connection attempts */

struct bus_notice {
	char kind;
	char id[SYNC_BUS_ID_MAX + 1];
};

struct sync_bus {
	struct event_base *base;
	char *conninfo;
	sync_bus_fn fn;
	void *arg;
	char origin[ORIGIN_LEN + 1];
	struct db db; /* main loop only */
	struct event *read_ev, *pub_ev;
	pthread_mutex_t mu;
	bool connected; /* under mu */
	struct bus_notice *queue, *spare;
	int nqueue;
	bool all;
	int wait_ticks; /* main loop: before the next attempt */
};

static void bus_disconnect(struct sync_bus *b)
{
	if (b->read_ev)
		event_free(b->read_ev);
	b->read_ev = NULL;
	if (b->db.conn)
		db_close(&b->db);
	pthread_mutex_lock(&b->mu);
	b->connected = false;
	b->nqueue = 0;
	b->all = false;
	pthread_mutex_unlock(&b->mu);
}

/* "<origin><kind><id>": the others' notices to fn. */
static void drain(struct sync_bus *b)
{
	PGnotify *n;
	while (b->db.conn && (n = PQnotifies(b->db.conn)) != NULL) {
		const char *p = n->extra;
		size_t len = p ? strlen(p) : 0;
		if (len > ORIGIN_LEN && len <= ORIGIN_LEN + 1 + SYNC_BUS_ID_MAX &&
		    memcmp(p, b->origin, ORIGIN_LEN) != 0 && strchr("ru*", p[ORIGIN_LEN]))
			b->fn(b->arg, p[ORIGIN_LEN], p + ORIGIN_LEN + 1);
		PQfreemem(n);
	}
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
	struct sync_bus *b = arg;
	if (!PQconsumeInput(b->db.conn)) {
		log_warn("sync", "notices of other processes lost: %s", PQerrorMessage(b->db.conn));
		bus_disconnect(b);
		return;
	}
	drain(b);
}

static void on_publish(evutil_socket_t fd, short what, void *arg)
{
	struct sync_bus *b = arg;
	pthread_mutex_lock(&b->mu);
	struct bus_notice *mine = b->queue;
	int n = b->nqueue;
	bool all = b->all;
	b->queue = b->spare;
	b->spare = mine;
	b->nqueue = 0;
	b->all = false;
	pthread_mutex_unlock(&b->mu);
	if (!b->db.conn || (n == 0 && !all))
		return;
	if (all)
		n = 0;
	char(*payload)[ORIGIN_LEN + 2 + SYNC_BUS_ID_MAX] = calloc((size_t)n + 1, sizeof(*payload));
	const char **items = calloc((size_t)n + 1, sizeof(*items));
	if (!payload || !items)
		goto out;
	for (int i = 0; i < n || (all && i == 0); i++) {
		snprintf(payload[i], sizeof(payload[i]), "%s%c%s", b->origin, all ? '*' : mine[i].kind,
			 all ? "" : mine[i].id);
		items[i] = payload[i];
	}
	char *arr = room_pg_array(items, all ? 1 : n);
	struct al_error err = {0};
	const char *p[] = {arr};
	PGresult *r = arr ? db_exec(&b->db, &err,
				    "SELECT pg_notify('" SYNC_BUS_CHANNEL "', x) FROM unnest($1::text[]) x", 1, p)
			  : NULL;
	free(arr);
	if (r)
		PQclear(r);
	else if (PQstatus(b->db.conn) != CONNECTION_OK)
		bus_disconnect(b);
	drain(b); /* the query may have read notices into libpq's queue */
out:
	free(payload);
	free(items);
}

void sync_bus_tick(struct sync_bus *b)
{
	if (!b || b->db.conn || b->wait_ticks-- > 0)
		return;
	b->wait_ticks = RETRY_TICKS;
	struct al_error err = {0};
	if (db_open(&b->db, b->conninfo, &err) < 0)
		return;
	PGresult *r = db_exec(&b->db, &err, "LISTEN " SYNC_BUS_CHANNEL, 0, NULL);
	if (!r) {
		db_close(&b->db);
		return;
	}
	PQclear(r);
	b->read_ev = event_new(b->base, PQsocket(b->db.conn), EV_READ | EV_PERSIST, on_readable, b);
	if (!b->read_ev || event_add(b->read_ev, NULL) < 0) {
		bus_disconnect(b);
		return;
	}
	pthread_mutex_lock(&b->mu);
	b->connected = true;
	pthread_mutex_unlock(&b->mu);
	/* whatever the others committed while this process did not listen:
	 * its parked syncs look again */
	b->fn(b->arg, '*', "");
}

void sync_bus_publish(struct sync_bus *b, char kind, const char *id)
{
	size_t len = id ? strlen(id) : 0;
	if (!b)
		return;
	pthread_mutex_lock(&b->mu);
	if (b->connected) {
		bool dup = false;
		for (int i = b->nqueue - 1; i >= 0 && !dup && !b->all; i--)
			dup = b->queue[i].kind == kind && strcmp(b->queue[i].id, id ? id : "") == 0;
		if (dup) {
			/* already queued */
		} else if (kind == '*' || len > SYNC_BUS_ID_MAX || b->nqueue == BUS_QUEUE) {
			b->all = true;
		} else if (!b->all) {
			b->queue[b->nqueue].kind = kind;
			memcpy(b->queue[b->nqueue++].id, id, len + 1);
		}
		event_active(b->pub_ev, EV_READ, 1);
	}
	pthread_mutex_unlock(&b->mu);
}

struct sync_bus *sync_bus_new(struct event_base *base, const char *conninfo, sync_bus_fn fn, void *arg)
{
	struct sync_bus *b = calloc(1, sizeof(*b));
	if (!b)
		return NULL;
	b->base = base;
	b->fn = fn;
	b->arg = arg;
	b->conninfo = strdup(conninfo ? conninfo : "");
	b->queue = calloc(BUS_QUEUE, sizeof(*b->queue));
	b->spare = calloc(BUS_QUEUE, sizeof(*b->spare));
	b->pub_ev = event_new(base, -1, 0, on_publish, b);
	pthread_mutex_init(&b->mu, NULL);
	unsigned char rnd[ORIGIN_LEN / 2];
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(b->origin, sizeof(b->origin), rnd, sizeof(rnd));
	if (!b->conninfo || !b->queue || !b->spare || !b->pub_ev) {
		sync_bus_free(b);
		return NULL;
	}
	return b;
}

void sync_bus_free(struct sync_bus *b)
{
	if (!b)
		return;
	bus_disconnect(b);
	if (b->pub_ev)
		event_free(b->pub_ev);
	pthread_mutex_destroy(&b->mu);
	free(b->queue);
	free(b->spare);
	free(b->conninfo);
	free(b);
}
