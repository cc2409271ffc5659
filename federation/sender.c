/* sender.c - the durable sender, on the federation thread with its own
 * database connection: per destination one transaction in flight, built
 * from federation_outbox, items deleted after a 200, exponential back-off
 * persisted in federation_destinations. With a backlog the next full
 * transaction is tagged and built while one is in flight and goes out on
 * its 200; the database work after a PUT (recording deliveries, the
 * prefetch) waits until the loop has written that request. */
#include <event2/event.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "audit.h"
#include "cjson.h"
#include "fed_internal.h"
#include "fed_sender.h"
#include "log.h"

#define MAX_INFLIGHT 64

struct inflight {
	char dest[256];
	char txn_id[64];
	int64_t prev_interval;
	int count;
	/* the next transaction, tagged and built while this one is in flight */
	json_t *next_body;
	char next_txn[64];
	int next_count;
};

/* A delivery to record once the next transaction is on its way. */
struct delivered {
	char dest[256];
	char txn_id[64];
	int count;
	int64_t prev_interval;
};

struct fed_sender {
	struct federation *fed;
	struct inflight slots[MAX_INFLIGHT];
	int n;
	atomic_bool wake_pending;
	/* work after a PUT was handed to the client (post_send): the loop
	 * first sends it, then this runs */
	struct delivered done[MAX_INFLIGHT];
	int ndone;
	bool post_pending;
};

int64_t fed_backoff_next(int64_t current_ms)
{
	if (current_ms < FED_BACKOFF_MIN_MS)
		return FED_BACKOFF_MIN_MS;
	if (current_ms >= FED_BACKOFF_MAX_MS / 2)
		return FED_BACKOFF_MAX_MS;
	return current_ms * 2;
}

struct fed_sender *fed_sender_new(struct federation *fed)
{
	struct fed_sender *s = calloc(1, sizeof(*s));
	if (s) {
		s->fed = fed;
		atomic_init(&s->wake_pending, false);
	}
	return s;
}

void fed_sender_free(struct fed_sender *s)
{
	if (!s)
		return;
	for (int i = 0; i < s->n; i++)
		json_decref(s->slots[i].next_body);
	free(s);
}

int fed_sender_enqueue_edu(struct db *db, const char *destination, const char *edu_type, json_t *content,
			   struct al_error *err)
{
	if (!destination || strlen(destination) > 255 || !edu_type || strlen(edu_type) > FED_EDU_TYPE_MAX ||
	    !json_is_object(content))
		return al_error_set(err, 400, "M_INVALID_PARAM", "bad EDU");
	json_t *payload = json_pack("{s:s, s:O}", "edu_type", edu_type, "content", content);
	char *text = payload ? cjson_encode(payload, NULL, err) : NULL;
	json_decref(payload);
	if (!text)
		return -1;
	const char *p[2] = {destination, text};
	PGresult *r = db_exec(
		db, err, "INSERT INTO federation_outbox (destination, kind, payload) VALUES ($1, 'edu', $2::jsonb)", 2,
		p);
	free(text);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

int fed_sender_enqueue_pdu(struct db *db, const char *const *destinations, int n, const json_t *pdu,
			   struct al_error *err)
{
	if (n <= 0)
		return 0;
	if (!json_is_object(pdu))
		return al_error_set(err, 400, "M_INVALID_PARAM", "bad PDU");
	json_t *copy = json_copy((json_t *)pdu); /* shallow: members shared */
	if (!copy)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	json_object_del(copy, "unsigned");
	char *text = cjson_encode(copy, NULL, err);
	json_decref(copy);
	if (!text)
		return -1;
	json_t *dl = json_array();
	for (int i = 0; dl && i < n; i++)
		if (destinations[i] && strlen(destinations[i]) <= 255)
			json_array_append_new(dl, json_string(destinations[i]));
	char *dtext = dl ? cjson_encode(dl, NULL, err) : NULL;
	json_decref(dl);
	if (!dtext) {
		free(text);
		return -1;
	}
	const char *p[2] = {dtext, text};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO federation_outbox (destination, kind, payload) "
			      "SELECT d, 'pdu', $2::jsonb FROM jsonb_array_elements_text($1::jsonb) d",
			      2, p);
	free(text);
	free(dtext);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

static struct inflight *slot_find(struct fed_sender *s, const char *dest)
{
	for (int i = 0; i < s->n; i++)
		if (strcasecmp(s->slots[i].dest, dest) == 0)
			return &s->slots[i];
	return NULL;
}

static void slot_remove(struct fed_sender *s, struct inflight *f)
{
	json_decref(f->next_body); /* still tagged: resent in order later */
	*f = s->slots[--s->n];
}

struct txn_ctx {
	struct fed_sender *s;
	char dest[256];
};

static void start_txn(struct fed_sender *s, const char *dest);

static void record_failure(struct fed_sender *s, struct inflight *f, const char *why)
{
	struct db *db = fed_client_db(s->fed->fc);
	struct al_error err = {0};
	int64_t next = fed_backoff_next(f->prev_interval);
	char iv[24];
	snprintf(iv, sizeof(iv), "%lld", (long long)next);
	char msg[256];
	snprintf(msg, sizeof(msg), "%.250s", why);
	const char *p[3] = {f->dest, iv, msg};
	if (db_begin(db, &err) < 0)
		return;
	PGresult *r = db_exec(
		db, &err,
		"INSERT INTO federation_destinations (destination, retry_interval_ms, retry_after, last_failure_at, "
		"last_error) "
		"VALUES ($1, $2::bigint, now() + $2::bigint * interval '1 millisecond', now(), $3) "
		"ON CONFLICT (destination) DO UPDATE SET retry_interval_ms = EXCLUDED.retry_interval_ms, "
		"retry_after = EXCLUDED.retry_after, last_failure_at = now(), last_error = EXCLUDED.last_error",
		3, p);
	PQclear(r);
	if (r && f->prev_interval == 0) {
		json_t *det = json_pack("{s:s, s:I}", "error", msg, "retry_in_ms", (json_int_t)next);
		if (audit_append(db, "federation", "destination.backoff", NULL, f->dest, NULL, det, &err) < 0)
			r = NULL;
		json_decref(det);
	}
	if (!r || db_commit(db, &err) < 0)
		db_rollback(db);
	log_info("sender", "transaction failed destination=%s retry_in_ms=%lld error=%s", f->dest, (long long)next,
		 msg);
}

/* A delivered transaction's items leave the outbox, the destination is
 * up, the audit entry: two round trips. false on a database error (the
 * items stay and are resent under the same txnId: the receiver answers
 * the repeat from its record). */
static bool record_delivery(struct fed_sender *s, const char *dest, const char *txn_id, int count,
			    int64_t prev_interval)
{
	struct db *db = fed_client_db(s->fed->fc);
	struct al_error err = {0};
	const char *p[2] = {dest, txn_id};
	struct db_stmt st[2] = {
		{.sql = "BEGIN"},
		{.name = "sender_delivered",
		 .sql = "WITH del AS (DELETE FROM federation_outbox WHERE destination = $1 AND txn_id = $2 RETURNING "
			"1) "
			"INSERT INTO federation_destinations (destination, retry_interval_ms, retry_after, "
			"last_success_at) "
			"VALUES ($1, 0, NULL, now()) ON CONFLICT (destination) DO UPDATE SET retry_interval_ms = 0, "
			"retry_after = NULL, last_success_at = now() RETURNING (SELECT count(*) FROM del)",
		 .nparams = 2,
		 .params = p},
	};
	struct audit_tip tip;
	bool ok = audit_lock(db, st, 2, &tip, &err) == 0;
	if (ok) {
		PQclear(st[0].result);
		PQclear(st[1].result);
		json_t *det = json_pack("{s:s, s:i}", "txn_id", txn_id, "items", count);
		ok = audit_commit(db, &tip, "federation", prev_interval ? "destination.recovered" : "transaction.sent",
				  NULL, dest, NULL, det, &err) == 0;
		json_decref(det);
	}
	if (!ok) {
		db_rollback(db);
		log_error("sender", "cannot record delivery destination=%s: %s", dest, err.message);
	}
	return ok;
}

/* Tag and read a transaction for dest (txn_id: a new one), one statement:
 * a transaction built but not acknowledged is resent first (same txnId,
 * same items), else the next PDUs and EDUs get txn_id. full_only: only
 * when FED_TXN_MAX_PDUS PDUs are waiting and nothing is tagged yet but
 * the transaction in flight (tagged_txn), for the prefetch. The request
 * body, or NULL (nothing to send, or an error); fills txn_id, count and
 * prev_interval. */
static json_t *build_txn(struct fed_sender *s, const char *dest, char *txn_id, size_t txn_len, const char *tagged_txn,
			 int *count, int64_t *prev_interval)
{
	struct db *db = fed_client_db(s->fed->fc);
	struct al_error err = {0};
	snprintf(txn_id, txn_len, "%lld.%08x", (long long)http_now_ms(), randombytes_random());
	const char *p[3] = {dest, txn_id, tagged_txn};
	PGresult *r = db_exec_prepared(
		db, &err, NULL, tagged_txn ? "sender_prefetch" : "sender_build",
		"WITH old AS (SELECT txn_id FROM federation_outbox WHERE destination = $1 AND txn_id IS NOT NULL "
		"  AND txn_id IS DISTINCT FROM $3::text ORDER BY id LIMIT 1), "
		"pdus AS (SELECT id FROM federation_outbox WHERE destination = $1 AND txn_id IS NULL AND kind = 'pdu' "
		"  ORDER BY id LIMIT 50), "
		"go AS (SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM old) AND ($3::text IS NULL OR "
		"  (SELECT count(*) FROM pdus) = " FED_TXN_MAX_PDUS_STR ")), "
		"tagged AS (UPDATE federation_outbox SET txn_id = $2 WHERE EXISTS (SELECT 1 FROM go) AND id IN ("
		"  (SELECT id FROM pdus) UNION ALL "
		"  (SELECT id FROM federation_outbox WHERE destination = $1 AND txn_id IS NULL AND kind = 'edu' ORDER "
		"BY id LIMIT " FED_TXN_MAX_EDUS_STR ")) "
		"  RETURNING id, kind, payload), "
		"items AS (SELECT id, kind, payload FROM tagged UNION ALL "
		"  SELECT o.id, o.kind, o.payload FROM federation_outbox o, old WHERE o.destination = $1 AND o.txn_id "
		"= old.txn_id AND $3::text IS NULL) "
		"SELECT coalesce((SELECT txn_id FROM old WHERE $3::text IS NULL), $2), count(*), "
		"coalesce(jsonb_agg(payload ORDER BY id) FILTER (WHERE kind = 'pdu'), '[]')::text, "
		"coalesce(jsonb_agg(payload ORDER BY id) FILTER (WHERE kind = 'edu'), '[]')::text, "
		"(SELECT retry_interval_ms FROM federation_destinations WHERE destination = $1) FROM items",
		3, p);
	if (!r)
		return NULL;
	*count = atoi(PQgetvalue(r, 0, 1));
	if (*count == 0) {
		PQclear(r);
		return NULL;
	}
	snprintf(txn_id, txn_len, "%s", PQgetvalue(r, 0, 0));
	*prev_interval = PQgetisnull(r, 0, 4) ? 0 : atoll(PQgetvalue(r, 0, 4));
	json_t *pdus = cjson_parse(PQgetvalue(r, 0, 2), (size_t)PQgetlength(r, 0, 2), NULL, NULL);
	json_t *edus = cjson_parse(PQgetvalue(r, 0, 3), (size_t)PQgetlength(r, 0, 3), NULL, NULL);
	PQclear(r);
	if (!pdus || !edus) {
		json_decref(pdus);
		json_decref(edus);
		return NULL;
	}
	return json_pack("{s:s, s:I, s:o, s:o}", "origin", s->fed->app->cfg.server_name, "origin_server_ts",
			 (json_int_t)http_now_ms(), "pdus", pdus, "edus", edus);
}

static void txn_done(const struct fed_response *resp, void *arg);

/* PUT the body of f's transaction. false when it could not be started. */
static bool submit(struct fed_sender *s, struct inflight *f, json_t *body)
{
	char path[128];
	snprintf(path, sizeof(path), "/_matrix/federation/v1/send/%s", f->txn_id);
	struct txn_ctx *c = calloc(1, sizeof(*c));
	struct fed_request rq = {
		.method = "PUT", .destination = f->dest, .path = path, .body = body, .sign = true, .timeout_ms = 30000};
	if (c) {
		snprintf(c->dest, sizeof(c->dest), "%s", f->dest);
		c->s = s;
	}
	bool ok = body && c && fed_client_submit(s->fed->fc, &rq, fed_client_base(s->fed->fc), txn_done, c) == 0;
	if (!ok)
		free(c);
	json_decref(body);
	return ok;
}

/* While f's transaction is in flight: the next one built already when a
 * full one is waiting (a backlog), so that it goes out as soon as this
 * one is acknowledged. */
static void prefetch(struct fed_sender *s, struct inflight *f)
{
	if (f->next_body)
		return;
	int64_t iv = 0;
	f->next_body = build_txn(s, f->dest, f->next_txn, sizeof(f->next_txn), f->txn_id, &f->next_count, &iv);
}


/* After a PUT was handed to the client: the deliveries it followed are
 * recorded and the next transactions prefetched, off the path of the
 * request (the database calls block this thread). */
static void post_send(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct fed_sender *s = arg;
	s->post_pending = false;
	while (s->ndone > 0) {
		struct delivered d = s->done[--s->ndone];
		if (record_delivery(s, d.dest, d.txn_id, d.count, d.prev_interval) && !slot_find(s, d.dest))
			start_txn(s, d.dest);
	}
	for (int i = 0; i < s->n; i++)
		prefetch(s, &s->slots[i]);
}

static void post_send_schedule(struct fed_sender *s)
{
	static const struct timeval soon = {0, 2000}; /* the loop writes the request first */
	if (s->post_pending)
		return;
	if (event_base_once(fed_client_base(s->fed->fc), -1, EV_TIMEOUT, post_send, s, &soon) == 0)
		s->post_pending = true;
	else
		post_send(-1, 0, s);
}

static void txn_done(const struct fed_response *resp, void *arg)
{
	struct txn_ctx *c = arg;
	struct fed_sender *s = c->s;
	struct inflight *f = slot_find(s, c->dest);
	free(c);
	if (!f)
		return;
	if (resp->status != 200) {
		char why[400];
		snprintf(why, sizeof(why), "status %d %s", resp->status, resp->err.message);
		record_failure(s, f, why);
		slot_remove(s, f);
		return;
	}
	struct delivered d = {.count = f->count, .prev_interval = f->prev_interval};
	snprintf(d.dest, sizeof(d.dest), "%s", f->dest);
	snprintf(d.txn_id, sizeof(d.txn_id), "%s", f->txn_id);
	json_t *next = f->next_body;
	f->next_body = NULL;
	if (next && s->ndone < MAX_INFLIGHT) {
		/* the next one goes first (this one is complete: still one in
		 * flight), this one's record after it (post_send) */
		snprintf(f->txn_id, sizeof(f->txn_id), "%s", f->next_txn);
		f->count = f->next_count;
		f->prev_interval = 0;
		if (!submit(s, f, next))
			slot_remove(s, f);
		s->done[s->ndone++] = d;
		post_send_schedule(s);
		return;
	}
	json_decref(next); /* still tagged: sent next, in order */
	slot_remove(s, f);
	if (record_delivery(s, d.dest, d.txn_id, d.count, d.prev_interval))
		start_txn(s, d.dest); /* more items waiting? */
}

static void start_txn(struct fed_sender *s, const char *dest)
{
	if (s->n >= MAX_INFLIGHT || slot_find(s, dest))
		return;
	if (!fed_servers_allowed(s->fed->servers, dest))
		return;
	char txn_id[64];
	int count = 0;
	int64_t prev_interval = 0;
	json_t *body = build_txn(s, dest, txn_id, sizeof(txn_id), NULL, &count, &prev_interval);
	if (!body)
		return;
	struct inflight *f = &s->slots[s->n++];
	memset(f, 0, sizeof(*f));
	snprintf(f->dest, sizeof(f->dest), "%s", dest);
	snprintf(f->txn_id, sizeof(f->txn_id), "%s", txn_id);
	f->prev_interval = prev_interval;
	f->count = count;
	if (!submit(s, f, body))
		slot_remove(s, f);
	else
		post_send_schedule(s); /* prefetch */
}

void fed_sender_tick(void *arg)
{
	struct fed_sender *s = arg;
	atomic_store(&s->wake_pending, false);
	if (s->n >= MAX_INFLIGHT)
		return;
	struct al_error err = {0};
	PGresult *r = db_exec(
		fed_client_db(s->fed->fc), &err,
		"WITH RECURSIVE d AS ("
		"  (SELECT destination FROM federation_outbox ORDER BY destination LIMIT 1) "
		"  UNION ALL SELECT (SELECT o.destination FROM federation_outbox o WHERE o.destination > d.destination "
		"  ORDER BY o.destination LIMIT 1) FROM d WHERE d.destination IS NOT NULL) "
		"SELECT d.destination FROM d LEFT JOIN federation_destinations x USING (destination) "
		"WHERE d.destination IS NOT NULL AND (x.retry_after IS NULL OR x.retry_after <= now()) LIMIT 64",
		0, NULL);
	if (!r)
		return;
	for (int i = 0; i < PQntuples(r); i++)
		start_txn(s, PQgetvalue(r, i, 0));
	PQclear(r);
}

static void wake_cb(void *arg)
{
	fed_sender_tick(arg);
}

void federation_sender_wake(struct app *app)
{
	struct federation *fed = fed_of(app);
	if (!fed || !fed->sender)
		return;
	if (atomic_exchange(&fed->sender->wake_pending, true))
		return;
	if (fed_client_defer(fed->fc, fed_client_base(fed->fc), wake_cb, fed->sender) < 0)
		atomic_store(&fed->sender->wake_pending, false);
}
