/* fed_inbound.c - PUT /_matrix/federation/v1/send/{txnId}: de-duplicated
 * per origin, EDUs dispatched once per type to registered handlers, all in
 * the transaction that records the txnId and its response. PDUs go
 * through fed_pdu.c first (asynchronously: keys, gaps) and are answered
 * with a result each. */
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

#define MAX_EDU_TYPES 32
#define ROUTE_EDU "org.auralink.route"

struct edu_reg {
	char type[FED_EDU_TYPE_MAX + 1];
	fed_edu_handler fn;
};

static struct edu_reg registry[MAX_EDU_TYPES];
static int nregistry;
static atomic_long edus_dispatched;

int fed_edu_register(const char *type, fed_edu_handler fn)
{
	if (nregistry >= MAX_EDU_TYPES || strlen(type) > FED_EDU_TYPE_MAX)
		return -1;
	for (int i = 0; i < nregistry; i++)
		if (strcmp(registry[i].type, type) == 0) {
			registry[i].fn = fn;
			return 0;
		}
	snprintf(registry[nregistry].type, sizeof(registry[nregistry].type), "%s", type);
	registry[nregistry++].fn = fn;
	return 0;
}

long fed_inbound_edus_dispatched(void)
{
	return atomic_load(&edus_dispatched);
}

/* org.auralink.route: {call_id, route_id?, path_nodes?, predicted_latency_ms?} */
static int route_edu(struct app *app, struct db *db, const char *origin, json_t *contents, struct al_error *err)
{
	(void)app;
	json_t *ok = json_array();
	size_t i;
	json_t *c;
	json_array_foreach(contents, i, c)
	{
		const char *call_id = json_string_value(json_object_get(c, "call_id"));
		json_t *rid = json_object_get(c, "route_id");
		json_t *pn = json_object_get(c, "path_nodes");
		json_t *lat = json_object_get(c, "predicted_latency_ms");
		if (!call_id || !call_id[0] || strlen(call_id) > 255 || (rid && !json_is_string(rid)) ||
		    (pn && (!json_is_array(pn) || json_array_size(pn) > 16)) || (lat && !json_is_number(lat)))
			continue;
		json_array_append(ok, c);
	}
	int rc = 0;
	if (json_array_size(ok) > 0) {
		char *text = cjson_encode(ok, NULL, err);
		if (!text) {
			json_decref(ok);
			return -1;
		}
		const char *p[2] = {origin, text};
		PGresult *r = db_exec(db, err,
				      "INSERT INTO federation_routes_received (origin, call_id, route_id, path_nodes, "
				      "predicted_latency_ms, content) "
				      "SELECT $1, x->>'call_id', x->>'route_id', coalesce(x->'path_nodes', '[]'), "
				      "(x->>'predicted_latency_ms')::real, x FROM jsonb_array_elements($2::jsonb) x",
				      2, p);
		free(text);
		rc = r ? 0 : -1;
		PQclear(r);
	}
	json_decref(ok);
	return rc;
}

/* The stored response of an earlier transaction with this txnId, or NULL. */
static char *stored_response(struct db *db, const char *origin, const char *txn_id, size_t *len)
{
	struct al_error err = {0};
	const char *p[2] = {origin, txn_id};
	PGresult *r = db_exec(
		db, &err, "SELECT response::text FROM federation_inbound_txns WHERE origin = $1 AND txn_id = $2", 2, p);
	char *out = NULL;
	if (r && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "{}") != 0) {
		out = strndup(PQgetvalue(r, 0, 0), (size_t)PQgetlength(r, 0, 0));
		*len = (size_t)PQgetlength(r, 0, 0);
	}
	if (r)
		PQclear(r);
	return out;
}

/* The EDUs grouped by type, each group to its handler once (in the
 * transaction). How many were dispatched, or -1 with err. */
static int dispatch_edus(struct app *app, struct db *db, const char *origin, json_t *edus, struct al_error *err)
{
	int dispatched = 0;
	for (int t = 0; t < nregistry; t++) {
		json_t *group = json_array();
		size_t i;
		json_t *e;
		json_array_foreach(edus, i, e)
		{
			const char *type = json_string_value(json_object_get(e, "edu_type"));
			json_t *content = json_object_get(e, "content");
			if (type && json_is_object(content) && strcmp(type, registry[t].type) == 0)
				json_array_append(group, content);
		}
		int rc = json_array_size(group) ? registry[t].fn(app, db, origin, group, err) : 0;
		dispatched += (int)json_array_size(group);
		json_decref(group);
		if (rc < 0)
			return -1;
	}
	return dispatched;
}

/* The txnId and its response recorded, and the audit lock taken (BEGIN,
 * the INSERT and the lock in one round trip; the origin is up, so what we
 * queued for it need not wait for its back-off). 1 recorded (transaction
 * open), 0 a repeat (closed), -1. */
static int record_txn(struct db *db, const char *origin, const char *txn_id, const char *response,
		      struct audit_tip *tip, struct al_error *err)
{
	const char *p[3] = {origin, txn_id, response};
	struct db_stmt st[2] = {
		{.sql = "BEGIN"},
		{.name = "fed_inbound_record",
		 .sql = "WITH t AS (INSERT INTO federation_inbound_txns (origin, txn_id, response) "
			"VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING RETURNING 1), "
			"u AS (UPDATE federation_destinations SET retry_after = NULL WHERE destination = $1 "
			"AND retry_after IS NOT NULL AND EXISTS (SELECT 1 FROM t)) "
			"SELECT count(*) FROM t",
		 .nparams = 3,
		 .params = p},
	};
	if (audit_lock(db, st, 2, tip, err) < 0) {
		db_rollback(db);
		return -1;
	}
	int fresh = atoi(PQgetvalue(st[1].result, 0, 0)) > 0;
	PQclear(st[0].result);
	PQclear(st[1].result);
	if (!fresh)
		db_rollback(db);
	return fresh;
}

/* Once the PDUs were processed (they are idempotent: a PDU stored already
 * is known): record the txnId with its response, dispatch the EDUs and
 * write the audit entry, all in one transaction. */
static void send_finish(void *arg, json_t *results)
{
	struct http_req *req = arg;
	const char *origin = req->user_id;
	const char *txn_id = req->params[0];
	struct al_error err = {0};
	json_t *body = req->body;
	json_t *pdus = json_object_get(body, "pdus");
	json_t *edus = json_object_get(body, "edus");
	struct db *db = &req->worker->db;
	json_t *resp = json_pack("{s:O}", "pdus", results);
	char *text = resp ? cjson_encode(resp, NULL, &err) : NULL;
	struct audit_tip tip;
	int fresh = text ? record_txn(db, origin, txn_id, text, &tip, &err) : -1;
	free(text);
	if (fresh < 0)
		goto fail;
	if (!fresh) {
		size_t len = 0;
		char *stored = stored_response(db, origin, txn_id, &len);
		log_info("fed_inbound", "repeated transaction origin=%s txn=%s", origin, txn_id);
		if (stored) {
			http_reply_raw(req, 200, stored, len);
			free(stored);
		} else {
			http_reply_json(req, 200, json_incref(resp));
		}
		json_decref(resp);
		return;
	}
	int dispatched = dispatch_edus(req->app, db, origin, edus, &err);
	if (dispatched < 0) {
		db_rollback(db);
		goto fail;
	}
	int ignored = (int)json_array_size(edus) - dispatched;
	json_t *det = json_pack("{s:s, s:i, s:i, s:i}", "txn_id", txn_id, "pdus", (int)json_array_size(pdus), "edus",
				dispatched, "edus_ignored", ignored);
	int arc = audit_commit(db, &tip, "federation", "transaction.received", NULL, req->app->cfg.server_name, origin,
			       det, &err);
	json_decref(det);
	if (arc < 0) {
		db_rollback(db);
		goto fail;
	}
	atomic_fetch_add(&edus_dispatched, dispatched);
	federation_sender_wake(req->app);
	struct federation *fed = fed_of(req->app);
	if (dispatched && fed->notify) /* typing, receipts, presence for /sync */
		fed->notify(req->app);
	http_reply_json(req, 200, resp);
	return;
fail:
	json_decref(resp);
	http_reply_al_error(req, &err);
}

static void send_authed(struct http_req *req)
{
	const char *origin = req->user_id;
	const char *txn_id = req->params[0];
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!txn_id[0] || strlen(txn_id) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad txnId");
		return;
	}
	json_t *pdus = json_object_get(body, "pdus");
	json_t *edus = json_object_get(body, "edus");
	const char *borigin = json_string_value(json_object_get(body, "origin"));
	if (!json_is_array(pdus) || (edus && !json_is_array(edus))) {
		http_reply_error(req, 400, "M_BAD_JSON", "pdus must be an array (and edus, when present)");
		return;
	}
	if (borigin && strcasecmp(borigin, origin) != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "origin does not match the signed origin");
		return;
	}
	if (json_array_size(pdus) > FED_TXN_MAX_PDUS || json_array_size(edus) > FED_TXN_MAX_EDUS) {
		http_reply_error(req, 400, "M_TOO_LARGE", "at most %d PDUs and %d EDUs per transaction",
				 FED_TXN_MAX_PDUS, FED_TXN_MAX_EDUS);
		return;
	}
	/* a repeated txnId is answered with its stored response by
	 * send_finish (its PDUs are known by then: no work to speak of) */
	if (json_array_size(pdus) == 0) {
		json_t *none = json_object();
		send_finish(req, none);
		json_decref(none);
		return;
	}
	if (fed_pdu_process(fed_of(req->app), req->worker, origin, pdus, send_finish, req) < 0)
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
}

static void put_send(struct http_req *req)
{
	fed_auth_require(req, send_authed);
}

int fed_inbound_register(struct app *app)
{
	int rc = 0;
	rc |= fed_edu_register(ROUTE_EDU, route_edu);
	rc |= fed_edu_register_all();
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v1/send/{txnId}", put_send);
	return rc ? -1 : 0;
}
