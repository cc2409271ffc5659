/* mesh_reputation.c - trust tiers, standard changes, batched event log. */
#include "mesh_reputation.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mesh_pgarr.h"

#define QUEUE_MAX 100000
#define DESC_MAX 1000

enum mesh_trust mesh_reputation_tier(double s)
{
	if (s >= 90)
		return MESH_TRUST_VERIFIED;
	if (s >= 70)
		return MESH_TRUST_TRUSTED;
	if (s >= 30)
		return MESH_TRUST_NEW;
	if (s >= 10)
		return MESH_TRUST_SUSPICIOUS;
	return MESH_TRUST_BANNED;
}

const char *mesh_trust_name(enum mesh_trust t)
{
	static const char *const names[] = {"banned", "suspicious", "new", "trusted", "verified"};
	return (unsigned)t < 5 ? names[t] : "new";
}

static const char *const event_names[MESH_REP_NEVENTS] = {
	"route_success", "route_failure", "missed_heartbeat", "abuse_confirmed", "admin_adjustment", "uptime_bonus",
};

const char *mesh_rep_event_name(enum mesh_rep_event e)
{
	return (unsigned)e < MESH_REP_NEVENTS ? event_names[e] : "admin_adjustment";
}

int mesh_rep_event_parse(const char *name)
{
	for (int i = 0; name && i < MESH_REP_NEVENTS; i++)
		if (!strcmp(name, event_names[i]))
			return i;
	return -1;
}

double mesh_reputation_abuse_delta(const char *severity)
{
	if (severity && !strcmp(severity, "low"))
		return -5;
	if (severity && !strcmp(severity, "high"))
		return -20;
	if (severity && !strcmp(severity, "critical"))
		return -40;
	return -10;
}

double mesh_reputation_apply(double score, double change)
{
	double v = score + change;
	return v < 0 ? 0 : v > 100 ? 100 : v;
}

struct rep_row {
	char node_id[37];
	char route_id[37];
	enum mesh_rep_event e;
	float prev, now, change;
	char *description;
};

struct mesh_rep_queue {
	pthread_mutex_t lock;
	struct rep_row *rows;
	size_t len, cap;
	unsigned long dropped;
};

struct mesh_rep_queue *mesh_rep_queue_new(void)
{
	struct mesh_rep_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	return q;
}

void mesh_rep_queue_free(struct mesh_rep_queue *q)
{
	if (!q)
		return;
	for (size_t i = 0; i < q->len; i++)
		free(q->rows[i].description);
	free(q->rows);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

int mesh_rep_queue_push(struct mesh_rep_queue *q, const char *node_id, enum mesh_rep_event e, double prev, double now,
			double change, const char *description, const char *route_id)
{
	int rc = -1;
	pthread_mutex_lock(&q->lock);
	if (q->len >= QUEUE_MAX || strlen(node_id) > 36 || (route_id && strlen(route_id) > 36)) {
		q->dropped++;
		goto out;
	}
	if (q->len == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 64;
		struct rep_row *n = realloc(q->rows, ncap * sizeof(*n));
		if (!n)
			goto out;
		q->rows = n;
		q->cap = ncap;
	}
	struct rep_row *r = &q->rows[q->len];
	memset(r, 0, sizeof(*r));
	snprintf(r->node_id, sizeof(r->node_id), "%s", node_id);
	if (route_id)
		snprintf(r->route_id, sizeof(r->route_id), "%s", route_id);
	r->e = e;
	r->prev = (float)prev;
	r->now = (float)now;
	r->change = (float)(change < -100 ? -100 : change > 100 ? 100 : change);
	if (description) {
		r->description = strndup(description, DESC_MAX * 4);
		if (!r->description)
			goto out;
	}
	q->len++;
	rc = 0;
out:
	pthread_mutex_unlock(&q->lock);
	return rc;
}

size_t mesh_rep_queue_len(struct mesh_rep_queue *q)
{
	pthread_mutex_lock(&q->lock);
	size_t n = q->len;
	pthread_mutex_unlock(&q->lock);
	return n;
}

int mesh_rep_queue_flush(struct mesh_rep_queue *q, struct db *db, struct al_error *err)
{
	struct rep_row *rows;
	size_t len;
	int rc = -1;
	pthread_mutex_lock(&q->lock);
	rows = q->rows;
	len = q->len;
	q->rows = NULL;
	q->len = q->cap = 0;
	pthread_mutex_unlock(&q->lock);
	if (!len)
		return 0;

	struct mesh_pgarr a[7] = {{0}};
	for (int i = 0; i < 7; i++)
		if (mesh_pgarr_init(&a[i]) < 0)
			goto out;
	for (size_t i = 0; i < len; i++) {
		mesh_pgarr_text(&a[0], rows[i].node_id);
		mesh_pgarr_text(&a[1], mesh_rep_event_name(rows[i].e));
		mesh_pgarr_double(&a[2], rows[i].prev);
		mesh_pgarr_double(&a[3], rows[i].now);
		mesh_pgarr_double(&a[4], rows[i].change);
		mesh_pgarr_text(&a[5], rows[i].description);
		mesh_pgarr_text(&a[6], rows[i].route_id[0] ? rows[i].route_id : NULL);
	}
	const char *p[7];
	for (int i = 0; i < 7; i++)
		if (!(p[i] = mesh_pgarr_finish(&a[i])))
			goto out;
	/* left() keeps descriptions within the column's check */
	PGresult *res = db_exec(db, err,
				"INSERT INTO node_reputation_events (node_id, event_type, previous_score, new_score,"
				" change, description, related_route_id)"
				" SELECT u.node_id, u.event_type, u.prev, u.now, u.change, left(u.description, 1000),"
				"  (SELECT r.route_id FROM mesh_routes r WHERE r.route_id = u.route_id)"
				" FROM unnest($1::uuid[], $2::text[], $3::real[], $4::real[], $5::real[], $6::text[],"
				"  $7::uuid[]) AS u(node_id, event_type, prev, now, change, description, route_id)"
				" WHERE EXISTS (SELECT 1 FROM mesh_nodes n WHERE n.node_id = u.node_id)",
				7, p);
	if (!res)
		goto out;
	PQclear(res);
	rc = 0;
out:
	for (int i = 0; i < 7; i++)
		mesh_pgarr_free(&a[i]);
	if (rc < 0) {
		/* put them back in front of whatever arrived meanwhile */
		pthread_mutex_lock(&q->lock);
		if (q->len + len <= QUEUE_MAX) {
			struct rep_row *n = realloc(rows, (len + q->len) * sizeof(*n));
			if (n) {
				if (q->len)
					memcpy(n + len, q->rows, q->len * sizeof(*n));
				free(q->rows);
				q->rows = n;
				q->len += len;
				q->cap = q->len;
				rows = NULL;
				len = 0;
			}
		}
		pthread_mutex_unlock(&q->lock);
		if (len)
			log_warn("mesh", "reputation events dropped count=%zu", len);
	}
	for (size_t i = 0; i < len; i++)
		free(rows[i].description);
	free(rows);
	return rc;
}
