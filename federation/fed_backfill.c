/* fed_backfill.c - history from before this server joined a room (spec
 * "Backfilling and retrieving missing events"): the backward extremities
 * of the room's timeline (prev events we do not hold in it) are asked of
 * the room's other servers with GET /backfill; each PDU returned is
 * verified (signatures, hash, format, its room), checked against its auth
 * events and stored, then moved into the history range of the timeline
 * (room.h, ROOM_BACKFILL_BASE) newest first. Runs on the asking worker's
 * loop with its database connection. */
#include <event2/http.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"
#include "fed_internal.h"
#include "log.h"
#include "room.h"
#include "room_fed.h"
#include "room_remote.h"

#define BF_MAX_SERVERS 8
#define BF_MAX_EXTREMITIES 20
#define BF_MAX_PDUS 100
#define BF_TIMEOUT_MS 10000

struct bf_job {
	struct app *app;
	struct federation *fed;
	struct event_base *base;
	struct db *db;
	char room[256];
	char version[4];
	char path[4096];
	char cands[BF_MAX_SERVERS][256];
	int ncand, idx, limit;
	json_t *pdus;
	federation_json_cb cb;
	void *arg;
};

/* prev events of the room's timeline (and history) that are not in it */
static json_t *backward_extremities(struct db *db, const char *room_id, struct al_error *err)
{
	const char *p[] = {room_id};
	return db_exec_strings(
		db, err,
		"SELECT x.id FROM (SELECT ee.prev_event_id AS id, min(e.depth) AS d FROM events e "
		"JOIN event_edges ee ON ee.event_id = e.event_id LEFT JOIN events pe ON pe.event_id = "
		"ee.prev_event_id WHERE e.room_id = $1 AND (e.stream_ordering > 0 OR e.stream_ordering <= "
		"-" ROOM_BACKFILL_BASE_SQL ") AND (pe.event_id IS NULL OR pe.outlier) "
		"GROUP BY ee.prev_event_id) x ORDER BY x.d, x.id LIMIT 20",
		1, p);
}

static void job_free(struct bf_job *j)
{
	json_decref(j->pdus);
	free(j);
}

static void finish(struct bf_job *j, int added)
{
	struct al_error err = {0};
	json_t *body = json_pack("{s:i}", "backfilled", added);
	j->cb(j->arg, 200, body, &err);
	json_decref(body);
	job_free(j);
}

static int depth_desc(const void *a, const void *b)
{
	json_int_t da = json_integer_value(json_object_get(*(json_t *const *)a, "depth"));
	json_int_t db = json_integer_value(json_object_get(*(json_t *const *)b, "depth"));
	return da < db ? 1 : da > db ? -1 : 0;
}

/* Move the stored events among ids (newest first) into the history range. */
static int into_history(struct bf_job *j, json_t *ids, struct al_error *err)
{
	char *text = cjson_encode(ids, NULL, err);
	if (!text)
		return -1;
	const char *p[] = {text, j->room};
	PGresult *r = db_exec(
		j->db, err,
		"WITH o AS (SELECT e.event_id FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY "
		"x(id, ord) JOIN events e ON e.event_id = x.id WHERE e.room_id = $2 AND e.outlier AND NOT "
		"e.rejected ORDER BY x.ord), "
		"n AS (SELECT event_id, -(" ROOM_BACKFILL_BASE_SQL " + nextval('al_backfill_seq')) AS so "
		"FROM o) "
		"UPDATE events SET stream_ordering = n.so, outlier = false FROM n WHERE events.event_id = "
		"n.event_id RETURNING 1",
		2, p);
	free(text);
	if (!r)
		return -1;
	int n = PQntuples(r);
	PQclear(r);
	return n;
}

static void keys_ready(void *arg)
{
	struct bf_job *j = arg;
	struct event_rules r;
	event_rules_for(j->version, &r);
	size_t n = json_array_size(j->pdus), k = 0;
	json_t **ok = calloc(n ? n : 1, sizeof(*ok));
	size_t i;
	json_t *pdu;
	json_array_foreach(j->pdus, i, pdu)
	{
		struct al_error err = {0};
		char id[EVENT_ID_MAX], why[300] = "";
		json_t *verified = NULL;
		if (!ok || room_pdu_check_format(&r, pdu, &err) < 0 ||
		    event_compute_id(pdu, &r, id, sizeof(id), &err) < 0 ||
		    fed_pdu_verify(j->fed, &r, pdu, &verified, why, sizeof(why)) < 0) {
			log_info("fed_backfill", "dropped a PDU room=%s: %s", j->room,
				 err.message[0] ? err.message : why);
			continue;
		}
		ok[k++] = json_pack("{s:s, s:o, s:I}", "id", id, "pdu", verified, "depth",
				    json_integer_value(json_object_get(pdu, "depth")));
	}
	if (k > 1)
		qsort(ok, k, sizeof(*ok), depth_desc);
	struct room_ctx c = {.db = j->db, .keys = j->app->keys, .app = j->app};
	json_t *stored = json_array();
	for (size_t m = 0; m < k; m++) {
		struct room_pdu_outcome o;
		struct al_error err = {0};
		const char *id = json_string_value(json_object_get(ok[m], "id"));
		if (room_remote_accept(&c, j->room, json_object_get(ok[m], "pdu"), id, ROOM_ACCEPT_OUTLIER, &o, &err) ==
			    0 &&
		    (o.status == ROOM_PDU_OUTLIER || o.status == ROOM_PDU_KNOWN))
			json_array_append_new(stored, json_string(id));
		else
			log_info("fed_backfill", "not stored event_id=%s: %s", id,
				 err.message[0] ? err.message : o.reason);
		room_pdu_outcome_clear(&o);
		json_decref(ok[m]);
	}
	free(ok);
	struct al_error err = {0};
	int added = json_array_size(stored) ? into_history(j, stored, &err) : 0;
	json_decref(stored);
	if (added < 0) {
		log_warn("fed_backfill", "cannot store history room=%s: %s", j->room, err.message);
		added = 0;
	}
	log_info("fed_backfill", "room=%s from=%s received=%zu added=%d", j->room, j->cands[j->idx - 1], n, added);
	finish(j, added);
}

static void try_next(struct bf_job *j);

static void on_backfill(const struct fed_response *resp, void *arg)
{
	struct bf_job *j = arg;
	json_t *pdus = json_object_get(resp->body, "pdus");
	if (resp->status != 200 || !json_is_array(pdus)) {
		log_info("fed_backfill", "backfill at %s failed status=%d", j->cands[j->idx - 1], resp->status);
		try_next(j);
		return;
	}
	j->pdus = json_array();
	size_t i;
	json_t *p;
	json_array_foreach(pdus, i, p)
	{
		const char *rid = json_string_value(json_object_get(p, "room_id"));
		if (json_is_object(p) && rid && strcmp(rid, j->room) == 0 && json_array_size(j->pdus) < BF_MAX_PDUS)
			json_array_append(j->pdus, p);
	}
	if (fed_pdus_fetch_keys(j->fed, j->base, j->pdus, j->version, keys_ready, j) < 0)
		keys_ready(j);
}

static void try_next(struct bf_job *j)
{
	if (j->idx >= j->ncand) {
		finish(j, 0);
		return;
	}
	struct fed_request rq = {.method = "GET",
				 .destination = j->cands[j->idx++],
				 .path = j->path,
				 .sign = true,
				 .timeout_ms = BF_TIMEOUT_MS};
	if (fed_client_submit(j->fed->fc, &rq, j->base, on_backfill, j) < 0)
		try_next(j);
}

/* /backfill/{room}?v=..&limit=.. into j->path; -1 when it does not fit. */
static int build_path(struct bf_job *j, json_t *ids)
{
	char *er = evhttp_encode_uri(j->room);
	int len = snprintf(j->path, sizeof(j->path), "/_matrix/federation/v1/backfill/%s?limit=%d", er ? er : "",
			   j->limit);
	free(er);
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v)
	{
		char *ev = evhttp_encode_uri(json_string_value(v));
		if (ev && len > 0 && (size_t)len < sizeof(j->path))
			len += snprintf(j->path + len, sizeof(j->path) - (size_t)len, "&v=%s", ev);
		free(ev);
	}
	return len > 0 && (size_t)len < sizeof(j->path) ? 0 : -1;
}

int federation_room_backfill(struct app *app, struct event_base *base, struct db *db, const char *room_id, int limit,
			     federation_json_cb cb, void *arg)
{
	struct federation *fed = fed_of(app);
	struct al_error err = {0};
	if (!fed || !room_id || strlen(room_id) >= 256)
		return -1;
	struct bf_job *j = calloc(1, sizeof(*j));
	if (!j)
		return -1;
	*j = (struct bf_job){.app = app, .fed = fed, .base = base, .db = db, .cb = cb, .arg = arg};
	j->limit = limit < 1 ? 10 : limit > BF_MAX_PDUS ? BF_MAX_PDUS : limit;
	snprintf(j->room, sizeof(j->room), "%s", room_id);
	json_t *ids = NULL, *servers = NULL;
	if (room_remote_room_version(db, room_id, j->version, &err) < 0 ||
	    !(ids = backward_extremities(db, room_id, &err)) || json_array_size(ids) == 0 || build_path(j, ids) < 0 ||
	    !(servers = room_fed_joined_servers(db, room_id, &err))) {
		json_decref(ids);
		free(j);
		return -1;
	}
	json_decref(ids);
	size_t i;
	json_t *s;
	json_array_foreach(servers, i, s)
	{
		const char *name = json_string_value(s);
		if (j->ncand < BF_MAX_SERVERS && strlen(name) < 256 && !federation_is_local(app, name))
			snprintf(j->cands[j->ncand++], 256, "%s", name);
	}
	json_decref(servers);
	if (j->ncand == 0) {
		free(j);
		return -1;
	}
	try_next(j);
	return 0;
}
