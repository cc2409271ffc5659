#include "typing.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#define TYPING_ID_MAX 255

struct typing_user {
	char user_id[TYPING_ID_MAX + 1];
	int64_t expires_ms;
};

struct typing_room {
	TAILQ_ENTRY(typing_room) link;
	char room_id[TYPING_ID_MAX + 1];
	int64_t stamp;      /* serial of the last change */
	int64_t changed_ms; /* when it happened */
	struct typing_user *users;
	size_t n, cap;
};

/* Rooms are kept most recently changed first, so the changes after a
 * serial are a prefix of the list. */
TAILQ_HEAD(typing_rooms, typing_room);

struct typing {
	pthread_mutex_t mu;
	struct typing_rooms rooms;
	int64_t serial;
	int64_t floor;
};

struct typing *typing_new(int64_t now_ms)
{
	struct typing *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	pthread_mutex_init(&t->mu, NULL);
	TAILQ_INIT(&t->rooms);
	t->serial = t->floor = now_ms > 0 ? now_ms : 1;
	return t;
}

static void room_free(struct typing_room *r)
{
	free(r->users);
	free(r);
}

void typing_free(struct typing *t)
{
	if (!t)
		return;
	struct typing_room *r;
	while ((r = TAILQ_FIRST(&t->rooms))) {
		TAILQ_REMOVE(&t->rooms, r, link);
		room_free(r);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

static struct typing_room *room_find(struct typing *t, const char *room_id)
{
	struct typing_room *r;
	TAILQ_FOREACH(r, &t->rooms, link)
	{
		if (strcmp(r->room_id, room_id) == 0)
			return r;
	}
	return NULL;
}

static void room_stamp(struct typing *t, struct typing_room *r, int64_t now_ms)
{
	r->stamp = ++t->serial;
	r->changed_ms = now_ms;
	if (TAILQ_FIRST(&t->rooms) != r) {
		TAILQ_REMOVE(&t->rooms, r, link);
		TAILQ_INSERT_HEAD(&t->rooms, r, link);
	}
}

static long user_index(const struct typing_room *r, const char *user_id)
{
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->users[i].user_id, user_id) == 0)
			return (long)i;
	return -1;
}

int typing_set(struct typing *t, const char *room_id, const char *user_id, bool typing, int64_t timeout_ms,
	       int64_t now_ms)
{
	if (!room_id || !user_id || strlen(room_id) > TYPING_ID_MAX || strlen(user_id) > TYPING_ID_MAX)
		return -1;
	if (timeout_ms < 1)
		timeout_ms = 1;
	if (timeout_ms > TYPING_MAX_TIMEOUT_MS)
		timeout_ms = TYPING_MAX_TIMEOUT_MS;
	int rc = 0;
	pthread_mutex_lock(&t->mu);
	struct typing_room *r = room_find(t, room_id);
	long i = r ? user_index(r, user_id) : -1;
	if (!typing) {
		if (i >= 0) {
			r->users[i] = r->users[r->n - 1];
			r->n--;
			room_stamp(t, r, now_ms);
			rc = 1;
		}
		goto out;
	}
	if (i >= 0) {
		r->users[i].expires_ms = now_ms + timeout_ms; /* same set: nothing to report */
		goto out;
	}
	bool fresh = !r;
	if (fresh) {
		r = calloc(1, sizeof(*r));
		if (!r) {
			rc = -1;
			goto out;
		}
		memcpy(r->room_id, room_id, strlen(room_id) + 1);
	}
	if (r->n == r->cap) {
		size_t cap = r->cap ? 2 * r->cap : 4;
		struct typing_user *u = realloc(r->users, cap * sizeof(*u));
		if (!u) {
			if (fresh)
				room_free(r);
			rc = -1;
			goto out;
		}
		r->users = u;
		r->cap = cap;
	}
	if (fresh)
		TAILQ_INSERT_HEAD(&t->rooms, r, link);
	memcpy(r->users[r->n].user_id, user_id, strlen(user_id) + 1);
	r->users[r->n].expires_ms = now_ms + timeout_ms;
	r->n++;
	room_stamp(t, r, now_ms);
	rc = 1;
out:
	pthread_mutex_unlock(&t->mu);
	return rc;
}

int typing_expire(struct typing *t, int64_t now_ms)
{
	int changed = 0;
	pthread_mutex_lock(&t->mu);
	struct typing_room *r, *next;
	/* Collect first: stamping moves rooms to the head of the list. */
	struct typing_rooms touched = TAILQ_HEAD_INITIALIZER(touched);
	for (r = TAILQ_FIRST(&t->rooms); r; r = next) {
		next = TAILQ_NEXT(r, link);
		size_t before = r->n;
		for (size_t i = 0; i < r->n;) {
			if (r->users[i].expires_ms <= now_ms)
				r->users[i] = r->users[--r->n];
			else
				i++;
		}
		if (r->n != before) {
			TAILQ_REMOVE(&t->rooms, r, link);
			TAILQ_INSERT_TAIL(&touched, r, link);
		} else if (r->n == 0 && now_ms - r->changed_ms >= TYPING_FORGET_MS) {
			TAILQ_REMOVE(&t->rooms, r, link);
			if (r->stamp > t->floor)
				t->floor = r->stamp;
			room_free(r);
		}
	}
	while ((r = TAILQ_FIRST(&touched))) {
		TAILQ_REMOVE(&touched, r, link);
		TAILQ_INSERT_HEAD(&t->rooms, r, link);
		room_stamp(t, r, now_ms);
		changed++;
	}
	pthread_mutex_unlock(&t->mu);
	return changed;
}

static json_t *room_users(const struct typing_room *r)
{
	json_t *a = json_array();
	for (size_t i = 0; a && i < r->n; i++)
		json_array_append_new(a, json_string(r->users[i].user_id));
	return a;
}

int64_t typing_changes(struct typing *t, int64_t since, json_t **changes, bool *reset)
{
	json_t *out = json_object();
	pthread_mutex_lock(&t->mu);
	*reset = since != 0 && (since < t->floor || since > t->serial);
	struct typing_room *r;
	TAILQ_FOREACH(r, &t->rooms, link)
	{
		if (since != 0 && !*reset && r->stamp <= since)
			break;
		if (since == 0 && r->n == 0)
			continue;
		if (out)
			json_object_set_new(out, r->room_id, room_users(r));
	}
	int64_t serial = t->serial;
	pthread_mutex_unlock(&t->mu);
	*changes = out;
	return serial;
}
