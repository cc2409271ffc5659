/* fed_join.c - the room handshakes this server starts for its users:
 * joining a room on other servers (directory query for a remote alias,
 * make_join, send_join v2, verify and store the state and auth chain),
 * rejecting a remote invite (make_leave, send_leave v2) and inviting a user
 * of another server (invite v2). Each is a small state machine on the
 * caller's loop (a worker's), using that worker's database connection;
 * candidates are tried in turn. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cjson.h"
#include "fed_internal.h"
#include "keys.h"
#include "log.h"
#include "room.h"
#include "room_fed.h"
#include "room_remote.h"
#include "sign.h"

#define MAX_CANDIDATES 8
#define HANDSHAKE_TIMEOUT_MS 20000
#define SUPPORTED_VERSIONS "ver=11&ver=10&ver=9&ver=8&ver=7&ver=6&ver=5&ver=4&ver=3&ver=2&ver=1"

struct hs_job {
	struct app *app;
	struct federation *fed;
	struct event_base *base;
	struct db *db;
	char user[256];
	char room[256];
	char membership[8]; /* join / leave */
	char cands[MAX_CANDIDATES][256];
	int ncand, idx;
	json_t *content; /* extra content of the member event */
	char version[4];
	json_t *event;
	char event_id[EVENT_ID_MAX];
	json_t *resp; /* the send_join response */
	int last_status;
	struct al_error last;
	char bad_version[64]; /* the room_version of an M_INCOMPATIBLE_ROOM_VERSION answer */
	bool tried_v1;        /* the v1 API after a 404 for v2 (send_join, send_leave, invite) */
	federation_json_cb cb;
	void *arg;
};

static const char *server_of(const char *id)
{
	const char *c = id ? strchr(id, ':') : NULL;
	return c ? c + 1 : NULL;
}

static void add_candidate(struct hs_job *j, const char *s)
{
	if (!s || !*s || strlen(s) >= 256 || j->ncand >= MAX_CANDIDATES || federation_is_local(j->app, s))
		return;
	for (int i = 0; i < j->ncand; i++)
		if (strcasecmp(j->cands[i], s) == 0)
			return;
	snprintf(j->cands[j->ncand++], 256, "%s", s);
}

static void job_free(struct hs_job *j)
{
	json_decref(j->content);
	json_decref(j->event);
	json_decref(j->resp);
	free(j);
}

static void finish(struct hs_job *j, int status, json_t *body)
{
	if (status != 200 && !body && j->bad_version[0] && strcmp(j->last.errcode, "M_INCOMPATIBLE_ROOM_VERSION") == 0)
		body = json_pack("{s:s, s:s, s:s}", "errcode", j->last.errcode, "error", j->last.message,
				 "room_version", j->bad_version);
	if (status == 200 && j->fed->notify)
		j->fed->notify(j->app);
	j->cb(j->arg, status, body, &j->last);
	json_decref(body);
	job_free(j);
}

static void fail_with(struct hs_job *j, int status, const char *errcode, const char *msg)
{
	j->last_status = status;
	al_error_set(&j->last, status, errcode, "%s", msg);
}

static void try_next(struct hs_job *j);

static int submit(struct hs_job *j, const char *method, const char *dest, const char *path, json_t *body,
		  fed_response_cb cb)
{
	struct fed_request rq = {.method = method,
				 .destination = dest,
				 .path = path,
				 .body = body,
				 .sign = true,
				 .timeout_ms = HANDSHAKE_TIMEOUT_MS};
	return fed_client_submit(j->fed->fc, &rq, j->base, cb, j);
}

/* The remote answer as our error (its Matrix error when it sent one). */
static void remote_error(struct hs_job *j, const struct fed_response *resp, const char *step)
{
	const char *ec = json_string_value(json_object_get(resp->body, "errcode"));
	const char *msg = json_string_value(json_object_get(resp->body, "error"));
	char m[400];
	if (resp->status == 0) {
		snprintf(m, sizeof(m), "%s: %s unreachable (%s)", step, j->cands[j->idx - 1], resp->err.message);
		fail_with(j, 502, "M_UNKNOWN", m);
		return;
	}
	snprintf(m, sizeof(m), "%s at %s: %s", step, j->cands[j->idx - 1], msg ? msg : "failed");
	int st = resp->status == 403 || resp->status == 404 || resp->status == 400 ? resp->status : 502;
	fail_with(j, st, ec && st != 502 ? ec : "M_UNKNOWN", m);
	const char *rv = json_string_value(json_object_get(resp->body, "room_version"));
	if (ec && strcmp(ec, "M_INCOMPATIBLE_ROOM_VERSION") == 0 && rv && strlen(rv) < sizeof(j->bad_version))
		snprintf(j->bad_version, sizeof(j->bad_version), "%s", rv);
}

/* ---- the state of a joined room ---- */

static void store_joined(void *arg)
{
	struct hs_job *j = arg;
	struct event_rules r;
	event_rules_for(j->version, &r);
	json_t *lists[2] = {json_object_get(j->resp, "state"), json_object_get(j->resp, "auth_chain")};
	json_t *ok[2] = {json_array(), json_array()};
	int dropped = 0;
	for (int l = 0; l < 2; l++) {
		size_t i;
		json_t *p;
		json_array_foreach(lists[l], i, p)
		{
			json_t *v = NULL;
			char why[300];
			if (fed_pdu_verify(j->fed, &r, p, &v, why, sizeof(why)) < 0) {
				dropped++;
				log_info("fed_join", "dropped a state event of room_id=%s: %s", j->room, why);
				continue;
			}
			json_array_append_new(ok[l], v);
		}
	}
	struct room_ctx c = {.db = j->db, .keys = j->app->keys};
	int64_t stream = 0;
	struct al_error err = {0};
	int rc = room_remote_store_join(&c, j->room, j->version, j->event, j->event_id, ok[0], ok[1], &stream, &err);
	json_decref(ok[0]);
	json_decref(ok[1]);
	if (rc < 0) {
		j->last = err;
		log_warn("fed_join", "cannot store the joined room room_id=%s: %s", j->room, err.message);
		finish(j, err.status ? err.status : 500, NULL);
		return;
	}
	log_info("fed_join", "joined room_id=%s user_id=%s via=%s dropped=%d", j->room, j->user, j->cands[j->idx - 1],
		 dropped);
	/* the room's servers learn our users' presence (spec: on a new shared room) */
	if (federation_presence_for_room(j->db, j->room, j->app->cfg.server_name, NULL, &err) < 0)
		log_warn("fed_join", "cannot queue presence room_id=%s: %s", j->room, err.message);
	finish(j, 200, json_pack("{s:s}", "room_id", j->room));
}

static void on_send(const struct fed_response *resp, void *arg);

static int send_membership_event(struct hs_job *j, const char *api)
{
	char *er = evhttp_encode_uri(j->room), *ee = evhttp_encode_uri(j->event_id);
	char path[1024];
	snprintf(path, sizeof(path), "/_matrix/federation/%s/send_%s/%s/%s", api, j->membership, er ? er : "",
		 ee ? ee : "");
	free(er);
	free(ee);
	json_t *body = json_deep_copy(j->event);
	struct event_rules r;
	event_rules_for(j->version, &r);
	if (r.id_format >= 3)
		json_object_del(body, "event_id");
	int rc = submit(j, "PUT", j->cands[j->idx - 1], path, body, on_send);
	json_decref(body);
	return rc;
}

static void on_send(const struct fed_response *resp, void *arg)
{
	struct hs_job *j = arg;
	bool join = strcmp(j->membership, "join") == 0;
	const char *ec = json_string_value(json_object_get(resp->body, "errcode"));
	if (!j->tried_v1 && (resp->status == 404 || resp->status == 405 || (ec && strcmp(ec, "M_UNRECOGNIZED") == 0))) {
		/* a server without the v2 API: v1 */
		j->tried_v1 = true;
		if (send_membership_event(j, "v1") == 0)
			return;
	}
	json_t *body = resp->body;
	/* v1 answers [200, {...}] */
	if (json_is_array(body) && json_array_size(body) == 2)
		body = json_array_get(body, 1);
	if (resp->status != 200 || !json_is_object(body) ||
	    (join &&
	     (!json_is_array(json_object_get(body, "state")) || !json_is_array(json_object_get(body, "auth_chain"))))) {
		remote_error(j, resp, join ? "send_join" : "send_leave");
		try_next(j);
		return;
	}
	if (!join) {
		struct room_ctx c = {.db = j->db, .keys = j->app->keys};
		int64_t stream = 0;
		struct al_error err = {0};
		if (room_remote_store_leave(&c, j->event, j->event_id, &stream, &err) < 0) {
			j->last = err;
			finish(j, err.status ? err.status : 500, NULL);
			return;
		}
		finish(j, 200, json_object());
		return;
	}
	j->resp = json_incref(body);
	/* the resident server's copy (with its signature) when it sent one */
	json_t *ev = json_object_get(body, "event");
	struct event_rules r;
	event_rules_for(j->version, &r);
	char id[EVENT_ID_MAX];
	if (json_is_object(ev) && event_compute_id(ev, &r, id, sizeof(id), NULL) == 0 && strcmp(id, j->event_id) == 0) {
		json_decref(j->event);
		j->event = json_deep_copy(ev);
	}
	json_t *all = json_array();
	json_array_extend(all, json_object_get(body, "state"));
	json_array_extend(all, json_object_get(body, "auth_chain"));
	int rc = fed_pdus_fetch_keys(j->fed, j->base, all, j->version, store_joined, j);
	json_decref(all);
	if (rc < 0)
		store_joined(j);
}

/* Fill a template from make_join / make_leave into our event. */
static int build_from_template(struct hs_job *j, json_t *tmpl, struct al_error *err)
{
	struct event_rules r;
	event_rules_for(j->version, &r);
	if (!json_is_object(tmpl) || !json_is_string(json_object_get(tmpl, "type")) ||
	    strcmp(event_str(tmpl, "type"), "m.room.member") != 0 || !event_str(tmpl, "room_id") ||
	    strcmp(event_str(tmpl, "room_id"), j->room) != 0 || !event_str(tmpl, "sender") ||
	    strcmp(event_str(tmpl, "sender"), j->user) != 0 || !event_str(tmpl, "state_key") ||
	    strcmp(event_str(tmpl, "state_key"), j->user) != 0 || !event_content_str(tmpl, "membership") ||
	    strcmp(event_content_str(tmpl, "membership"), j->membership) != 0)
		return al_error_set(err, 502, "M_UNKNOWN",
				    "the resident server's template is not our membership event");
	json_t *ev = json_deep_copy(tmpl);
	json_object_del(ev, "event_id");
	if (r.id_format == 1) {
		/* versions 1-2: the joining server names its event */
		unsigned char rnd[16];
		char hex[33], id[EVENT_ID_MAX + 64];
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		snprintf(id, sizeof(id), "$%s:%.200s", hex, j->app->cfg.server_name);
		json_object_set_new(ev, "event_id", json_string(id));
	}
	json_object_del(ev, "signatures");
	json_object_del(ev, "hashes");
	json_object_del(ev, "unsigned");
	if (!r.redact_v11)
		json_object_set_new(ev, "origin", json_string(j->app->cfg.server_name));
	else
		json_object_del(ev, "origin");
	json_object_set_new(ev, "origin_server_ts", json_integer(http_now_ms()));
	json_t *content = json_object_get(ev, "content");
	if (json_is_object(j->content))
		json_object_update_missing(content, j->content);
	json_object_set_new(content, "membership", json_string(j->membership));
	if (event_hash_and_sign(ev, &r, j->app->cfg.server_name, keys_current(j->app->keys), err) < 0 ||
	    event_compute_id(ev, &r, j->event_id, sizeof(j->event_id), err) < 0 ||
	    room_pdu_check_format(&r, ev, err) < 0) {
		json_decref(ev);
		return -1;
	}
	json_decref(j->event);
	j->event = ev;
	return 0;
}

static void on_make(const struct fed_response *resp, void *arg)
{
	struct hs_job *j = arg;
	bool join = strcmp(j->membership, "join") == 0;
	if (resp->status != 200 || !json_is_object(resp->body)) {
		remote_error(j, resp, join ? "make_join" : "make_leave");
		try_next(j);
		return;
	}
	const char *v = json_string_value(json_object_get(resp->body, "room_version"));
	if (!v)
		v = "1";
	if (!room_remote_version_supported(v)) {
		fail_with(j, 400, "M_INCOMPATIBLE_ROOM_VERSION", "the room's version is not supported here");
		try_next(j);
		return;
	}
	snprintf(j->version, sizeof(j->version), "%s", v);
	struct al_error err = {0};
	if (build_from_template(j, json_object_get(resp->body, "event"), &err) < 0) {
		fail_with(j, 502, "M_UNKNOWN", err.message);
		try_next(j);
		return;
	}
	j->tried_v1 = false;
	if (send_membership_event(j, "v2") < 0) {
		fail_with(j, 500, "M_UNKNOWN", "cannot send the request");
		try_next(j);
	}
}

/* No resident server took the rejection of an invite (refused, failed,
 * unreachable): the invite is rejected here alone, with a leave event of
 * our own that goes nowhere (an out-of-band membership, as Synapse does
 * it), so the room leaves the invitee's /sync. 0 when stored. */
static int reject_locally(struct hs_job *j)
{
	struct al_error err = {0};
	char version[4];
	if (room_remote_room_version(j->db, j->room, version, &err) < 0)
		return -1;
	struct event_rules r;
	event_rules_for(version, &r);
	json_t *content = json_deep_copy(j->content);
	json_object_set_new(content, "membership", json_string("leave"));
	json_t *ev = json_pack("{s:s, s:s, s:s, s:s, s:o, s:I, s:i, s:[], s:[]}", "type", "m.room.member", "room_id",
			       j->room, "sender", j->user, "state_key", j->user, "content", content, "origin_server_ts",
			       (json_int_t)http_now_ms(), "depth", 1, "prev_events", "auth_events");
	if (ev && r.id_format == 1) {
		unsigned char rnd[16];
		char hex[33], id[EVENT_ID_MAX + 64];
		randombytes_buf(rnd, sizeof(rnd));
		sodium_bin2hex(hex, sizeof(hex), rnd, sizeof(rnd));
		snprintf(id, sizeof(id), "$%s:%.200s", hex, j->app->cfg.server_name);
		json_object_set_new(ev, "event_id", json_string(id));
	}
	if (ev && !r.redact_v11)
		json_object_set_new(ev, "origin", json_string(j->app->cfg.server_name));
	struct room_ctx c = {.db = j->db, .keys = j->app->keys};
	int64_t stream = 0;
	int rc = ev && event_hash_and_sign(ev, &r, j->app->cfg.server_name, keys_current(j->app->keys), &err) == 0 &&
				 event_compute_id(ev, &r, j->event_id, sizeof(j->event_id), &err) == 0 &&
				 room_remote_store_leave(&c, ev, j->event_id, &stream, &err) == 0
			 ? 0
			 : -1;
	if (rc < 0)
		log_warn("fed_join", "cannot reject the invite locally room=%s user=%s: %s", j->room, j->user,
			 err.message);
	else
		log_info("fed_join", "invite rejected locally room=%s user=%s (%s)", j->room, j->user, j->last.message);
	json_decref(ev);
	return rc;
}

static void try_next(struct hs_job *j)
{
	if (j->idx >= j->ncand) {
		if (strcmp(j->membership, "leave") == 0 && reject_locally(j) == 0) {
			finish(j, 200, json_object());
			return;
		}
		if (!j->last_status)
			fail_with(j, 404, "M_NOT_FOUND", "No server could be asked to join this room");
		finish(j, j->last_status, NULL);
		return;
	}
	const char *dest = j->cands[j->idx++];
	char *er = evhttp_encode_uri(j->room), *eu = evhttp_encode_uri(j->user);
	char path[1024];
	snprintf(path, sizeof(path), "/_matrix/federation/v1/make_%s/%s/%s%s", j->membership, er ? er : "",
		 eu ? eu : "", strcmp(j->membership, "join") == 0 ? "?" SUPPORTED_VERSIONS : "");
	free(er);
	free(eu);
	if (submit(j, "GET", dest, path, NULL, on_make) < 0) {
		fail_with(j, 500, "M_UNKNOWN", "cannot send the request");
		try_next(j);
	}
}

static void on_directory(const struct fed_response *resp, void *arg)
{
	struct hs_job *j = arg;
	const char *room_id = json_string_value(json_object_get(resp->body, "room_id"));
	if (resp->status != 200 || !room_id || room_id[0] != '!' || strlen(room_id) > 255) {
		j->idx = 1;
		if (resp->status == 404 || resp->status == 0 || !room_id) {
			fail_with(j, 404, "M_NOT_FOUND", "Room alias not found");
			finish(j, 404, NULL);
			return;
		}
		remote_error(j, resp, "directory");
		finish(j, j->last_status, NULL);
		return;
	}
	snprintf(j->room, sizeof(j->room), "%s", room_id);
	char first[256];
	snprintf(first, sizeof(first), "%s", j->cands[0]);
	j->ncand = 0;
	json_t *servers = json_object_get(resp->body, "servers");
	size_t i;
	json_t *s;
	json_array_foreach(servers, i, s)
	{
		add_candidate(j, json_string_value(s));
	}
	add_candidate(j, first);
	add_candidate(j, server_of(room_id));
	j->idx = 0;
	try_next(j);
}

static struct hs_job *job_new(struct app *app, struct event_base *base, struct db *db, const char *user_id,
			      const char *membership, federation_json_cb cb, void *arg)
{
	struct federation *fed = fed_of(app);
	if (!fed || !user_id || strlen(user_id) >= 256)
		return NULL;
	struct hs_job *j = calloc(1, sizeof(*j));
	if (!j)
		return NULL;
	j->app = app;
	j->fed = fed;
	j->base = base;
	j->db = db;
	j->cb = cb;
	j->arg = arg;
	snprintf(j->user, sizeof(j->user), "%s", user_id);
	snprintf(j->membership, sizeof(j->membership), "%s", membership);
	return j;
}

/* displayname / avatar_url of a local user for her member event */
static json_t *profile_content(struct db *db, const char *user_id, json_t *extra)
{
	json_t *c = json_is_object(extra) ? json_deep_copy(extra) : json_object();
	struct al_error err = {0};
	const char *p[] = {user_id};
	PGresult *r = db_exec(db, &err, "SELECT displayname, avatar_url FROM users WHERE user_id = $1", 1, p);
	if (r && PQntuples(r) == 1) {
		if (!PQgetisnull(r, 0, 0) && !json_object_get(c, "displayname"))
			json_object_set_new(c, "displayname", json_string(PQgetvalue(r, 0, 0)));
		if (!PQgetisnull(r, 0, 1) && !json_object_get(c, "avatar_url"))
			json_object_set_new(c, "avatar_url", json_string(PQgetvalue(r, 0, 1)));
	}
	if (r)
		PQclear(r);
	json_object_del(c, "membership");
	return c;
}

int federation_room_join(struct app *app, struct event_base *base, struct db *db, const char *user_id,
			 const char *room_or_alias, json_t *servers, json_t *content, federation_json_cb cb, void *arg)
{
	if (!room_or_alias || strlen(room_or_alias) >= 256 || !server_of(room_or_alias))
		return -1;
	struct hs_job *j = job_new(app, base, db, user_id, "join", cb, arg);
	if (!j)
		return -1;
	j->content = profile_content(db, user_id, content);
	size_t i;
	json_t *s;
	if (room_or_alias[0] == '#') {
		/* the alias's server answers the directory query */
		snprintf(j->cands[0], 256, "%s", server_of(room_or_alias));
		j->ncand = 1;
		j->idx = 1;
		char *enc = evhttp_encode_uri(room_or_alias);
		char path[700];
		snprintf(path, sizeof(path), "/_matrix/federation/v1/query/directory?room_alias=%s", enc ? enc : "");
		free(enc);
		if (submit(j, "GET", server_of(room_or_alias), path, NULL, on_directory) < 0) {
			job_free(j);
			return -1;
		}
		return 0;
	}
	snprintf(j->room, sizeof(j->room), "%s", room_or_alias);
	json_array_foreach(servers, i, s)
	{
		add_candidate(j, json_string_value(s));
	}
	add_candidate(j, server_of(room_or_alias));
	try_next(j);
	return 0;
}

int federation_room_leave(struct app *app, struct event_base *base, struct db *db, const char *user_id,
			  const char *room_id, json_t *servers, const char *reason, federation_json_cb cb, void *arg)
{
	if (!room_id || strlen(room_id) >= 256 || !server_of(room_id))
		return -1;
	struct hs_job *j = job_new(app, base, db, user_id, "leave", cb, arg);
	if (!j)
		return -1;
	j->content = reason ? json_pack("{s:s}", "reason", reason) : json_object();
	snprintf(j->room, sizeof(j->room), "%s", room_id);
	size_t i;
	json_t *s;
	json_array_foreach(servers, i, s)
	{
		add_candidate(j, json_string_value(s));
	}
	add_candidate(j, server_of(room_id));
	try_next(j);
	return 0;
}

/* ---- inviting a user of another server ---- */

static void invite_checked(void *arg)
{
	struct hs_job *j = arg;
	struct event_rules r;
	event_rules_for(j->version, &r);
	json_t *ev = j->resp;
	char why[300];
	int ok = fed_pdu_verify_server(j->fed, &r, ev, j->cands[0], why, sizeof(why));
	if (ok < 0) {
		fail_with(j, 502, "M_UNKNOWN", why);
		finish(j, 502, NULL);
		return;
	}
	struct room_ctx c = {.db = j->db, .keys = j->app->keys, .app = j->app};
	struct room_pdu_outcome o;
	struct al_error err = {0};
	if (room_remote_accept(&c, j->room, ev, j->event_id, ROOM_ACCEPT_GAPS, &o, &err) < 0) {
		j->last = err;
		finish(j, err.status ? err.status : 500, NULL);
		return;
	}
	if (o.status != ROOM_PDU_ACCEPTED && o.status != ROOM_PDU_KNOWN) {
		fail_with(j, 403, "M_FORBIDDEN", o.reason[0] ? o.reason : "the invite was not accepted");
		room_pdu_outcome_clear(&o);
		finish(j, 403, NULL);
		return;
	}
	room_pdu_outcome_clear(&o);
	finish(j, 200, json_object());
}

static int invite_path(struct hs_job *j, const char *v, char *path, size_t len)
{
	char *er = evhttp_encode_uri(j->room), *ee = evhttp_encode_uri(j->event_id);
	int n = snprintf(path, len, "/_matrix/federation/%s/invite/%s/%s", v, er ? er : "", ee ? ee : "");
	free(er);
	free(ee);
	return n > 0 && (size_t)n < len ? 0 : -1;
}

static void on_invite(const struct fed_response *resp, void *arg)
{
	struct hs_job *j = arg;
	json_t *body = resp->body;
	if (json_is_array(body) && json_array_size(body) == 2) /* v1: [200, {...}] */
		body = json_array_get(body, 1);
	json_t *ev = json_object_get(body, "event");
	struct event_rules r;
	event_rules_for(j->version, &r);
	char id[EVENT_ID_MAX];
	const char *ec = json_string_value(json_object_get(resp->body, "errcode"));
	if (!j->tried_v1 && (resp->status == 404 || resp->status == 405 || (ec && strcmp(ec, "M_UNRECOGNIZED") == 0))) {
		/* a server without invite v2: the v1 API, the stripped state in
		 * the event's unsigned */
		j->tried_v1 = true;
		json_t *v1 = json_deep_copy(j->event);
		if (r.id_format >= 3)
			json_object_del(v1, "event_id");
		json_object_set_new(v1, "unsigned", json_pack("{s:O}", "invite_room_state", j->content));
		char path[1024];
		int rc = invite_path(j, "v1", path, sizeof(path)) == 0
				 ? submit(j, "PUT", j->cands[0], path, v1, on_invite)
				 : -1;
		json_decref(v1);
		if (rc == 0)
			return;
	}
	if (resp->status != 200 || !json_is_object(ev)) {
		j->idx = 1;
		remote_error(j, resp, "invite");
		finish(j, j->last_status, NULL);
		return;
	}
	struct al_error ferr = {0};
	if (room_pdu_check_format(&r, ev, &ferr) < 0) {
		j->last = ferr;
		finish(j, ferr.status, NULL);
		return;
	}
	if (event_compute_id(ev, &r, id, sizeof(id), NULL) < 0 || strcmp(id, j->event_id) != 0) {
		fail_with(j, 502, "M_UNKNOWN", "the invited server changed the invite");
		finish(j, 502, NULL);
		return;
	}
	/* keep our copy, with the invitee server's signature added */
	json_t *sig = json_object_get(json_object_get(ev, "signatures"), j->cands[0]);
	if (!json_is_object(sig)) {
		fail_with(j, 502, "M_UNKNOWN", "the invited server did not sign the invite");
		finish(j, 502, NULL);
		return;
	}
	j->resp = json_deep_copy(j->event);
	json_object_set(json_object_get(j->resp, "signatures"), j->cands[0], sig);
	int rc = fed_pdus_fetch_keys_of(j->fed, j->base, j->cands[0], ev, invite_checked, j);
	if (rc < 0)
		invite_checked(j);
}

int federation_room_invite(struct app *app, struct event_base *base, struct db *db, const char *sender,
			   const char *room_id, const char *target, const char *reason, federation_json_cb cb,
			   void *arg)
{
	if (!room_id || !target || !server_of(target) || strlen(room_id) >= 256)
		return -1;
	struct hs_job *j = job_new(app, base, db, sender, "invite", cb, arg);
	if (!j)
		return -1;
	snprintf(j->room, sizeof(j->room), "%s", room_id);
	snprintf(j->cands[0], 256, "%s", server_of(target));
	j->ncand = 1;
	j->idx = 1;
	struct al_error err = {0};
	if (room_remote_room_version(db, room_id, j->version, &err) < 0) {
		j->last = err;
		finish(j, err.status, NULL);
		return 0;
	}
	json_t *content = json_pack("{s:s}", "membership", "invite");
	if (reason)
		json_object_set_new(content, "reason", json_string(reason));
	struct room_event_spec spec = {.type = "m.room.member", .state_key = target, .content = content};
	struct room_ctx c = {.db = db, .keys = app->keys};
	json_t *pdu = NULL;
	int rc = room_build_event(&c, room_id, sender, &spec, true, &pdu, j->event_id, &err);
	json_decref(content);
	if (rc < 0) {
		j->last = err;
		finish(j, err.status ? err.status : 500, NULL);
		return 0;
	}
	j->event = pdu;
	json_t *irs = room_fed_stripped_state(db, room_id, sender, &err);
	json_t *ev = json_deep_copy(pdu);
	struct event_rules r;
	event_rules_for(j->version, &r);
	if (r.id_format >= 3)
		json_object_del(ev, "event_id");
	if (!irs)
		irs = json_array();
	j->content = json_incref(irs); /* kept for a v1 retry */
	json_t *body = json_pack("{s:s, s:o, s:o}", "room_version", j->version, "event", ev, "invite_room_state", irs);
	char path[1024];
	rc = invite_path(j, "v2", path, sizeof(path)) == 0 ? submit(j, "PUT", j->cands[0], path, body, on_invite) : -1;
	json_decref(body);
	if (rc < 0) {
		job_free(j);
		return -1;
	}
	return 0;
}

/* ---- an alias on another server ---- */

struct dir_q {
	federation_json_cb cb;
	void *arg;
};

static void dir_done(const struct fed_response *resp, void *arg)
{
	struct dir_q *q = arg;
	const char *room_id = json_string_value(json_object_get(resp->body, "room_id"));
	json_t *servers = json_object_get(resp->body, "servers");
	struct al_error err = {0};
	if (resp->status == 200 && room_id && room_id[0] == '!' && strlen(room_id) <= 255 && json_is_array(servers)) {
		json_t *list = json_array();
		size_t i;
		json_t *s;
		json_array_foreach(servers, i, s)
		{
			if (json_is_string(s) && strlen(json_string_value(s)) < 256 && i < 32)
				json_array_append(list, s);
		}
		json_t *body = json_pack("{s:s, s:o}", "room_id", room_id, "servers", list);
		q->cb(q->arg, 200, body, &err);
		json_decref(body);
	} else if (resp->status == 404 || (resp->status == 200 && !room_id)) {
		al_error_set(&err, 404, "M_NOT_FOUND", "Room alias not found");
		q->cb(q->arg, 404, NULL, &err);
	} else {
		al_error_set(&err, 502, "M_UNKNOWN", "The alias's server did not answer (%d)", resp->status);
		q->cb(q->arg, 502, NULL, &err);
	}
	free(q);
}

int federation_query_directory(struct app *app, const char *alias, struct event_base *base, federation_json_cb cb,
			       void *arg)
{
	struct federation *fed = fed_of(app);
	const char *server = server_of(alias);
	if (!fed || !server || alias[0] != '#' || strlen(alias) > 255)
		return -1;
	char *enc = evhttp_encode_uri(alias);
	if (!enc)
		return -1;
	char path[1024];
	snprintf(path, sizeof(path), "/_matrix/federation/v1/query/directory?room_alias=%s", enc);
	free(enc);
	struct dir_q *q = malloc(sizeof(*q));
	if (!q)
		return -1;
	q->cb = cb;
	q->arg = arg;
	struct fed_request rq = {
		.method = "GET", .destination = server, .path = path, .sign = true, .timeout_ms = 10000};
	if (fed_client_submit(fed->fc, &rq, base, dir_done, q) < 0) {
		free(q);
		return -1;
	}
	return 0;
}
