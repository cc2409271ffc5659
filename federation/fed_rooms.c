/* fed_rooms.c - the room endpoints other servers call (serving side):
 * make_join / send_join (v1, v2), make_leave / send_leave (v1, v2),
 * invite (v1, v2), event, state, state_ids, event_auth, backfill,
 * get_missing_events and the directory query. Thin: checks of the request
 * and the event, then room_remote / room_fed / room (src/). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cjson.h"
#include "fed_internal.h"
#include "keys.h"
#include "log.h"
#include "room.h"
#include "room_acl.h"
#include "room_fed.h"
#include "room_remote.h"
#include "sign.h"

static struct room_ctx ctx_of(struct http_req *req)
{
	struct room_ctx c = {.db = &req->worker->db, .keys = req->app->keys, .app = req->app};
	return c;
}

static const char *server_of(const char *id)
{
	const char *c = id ? strchr(id, ':') : NULL;
	return c ? c + 1 : NULL;
}

static bool id_ok(const char *s, char sigil)
{
	return s && s[0] == sigil && strlen(s) < EVENT_ID_MAX && (sigil == '$' || strchr(s, ':'));
}

/* The origin may read the room (one of its users has a membership). */
static bool may_read(struct http_req *req, const char *room_id)
{
	struct al_error err = {0};
	int rc = room_fed_server_may_read(&req->worker->db, room_id, req->user_id, &err);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return false;
	}
	if (rc == 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "%s is not in room %s", req->user_id, room_id);
		return false;
	}
	return true;
}

/* The room's server ACL lets the origin in (spec: every room endpoint). */
static bool acl_ok(struct http_req *req, const char *room_id)
{
	struct al_error err = {0};
	if (room_acl_check(&req->worker->db, room_id, req->user_id, &err) == 0)
		return true;
	http_reply_al_error(req, &err);
	return false;
}

/* ---- make_join / make_leave ---- */

static bool version_offered(struct http_req *req, const char *version)
{
	bool any = false;
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &req->query, next)
	{
		if (strcmp(kv->key, "ver") == 0) {
			any = true;
			if (strcmp(kv->value, version) == 0)
				return true;
		}
	}
	return !any && strcmp(version, "1") == 0;
}

static void make_membership(struct http_req *req, const char *membership)
{
	const char *room_id = req->params[0], *user_id = req->params[1];
	if (!id_ok(room_id, '!') || !id_ok(user_id, '@')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room or user ID");
		return;
	}
	if (strcasecmp(server_of(user_id), req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "User %s is not on %s", user_id, req->user_id);
		return;
	}
	if (!acl_ok(req, room_id))
		return;
	struct al_error err = {0};
	char version[4];
	if (room_remote_room_version(&req->worker->db, room_id, version, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (strcmp(membership, "join") == 0 && !version_offered(req, version)) {
		http_reply_json(req, 400,
				json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
					  "Your server does not support the version of this room", "room_version",
					  version));
		return;
	}
	int res = room_remote_is_resident(&req->worker->db, room_id, req->app->cfg.server_name, &err);
	if (res <= 0) {
		if (res < 0)
			http_reply_al_error(req, &err);
		else
			http_reply_error(req, 404, "M_NOT_FOUND", "This server is not in room %s", room_id);
		return;
	}
	json_t *content = json_pack("{s:s}", "membership", membership);
	struct room_event_spec spec = {.type = "m.room.member", .state_key = user_id, .content = content};
	json_t *tmpl = NULL;
	struct room_ctx c = ctx_of(req);
	int rc = room_build_event(&c, room_id, user_id, &spec, false, &tmpl, NULL, &err);
	json_decref(content);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	struct event_rules r;
	event_rules_for(version, &r);
	if (!r.redact_v11) /* v11 events have no origin (it is not protected) */
		json_object_set_new(tmpl, "origin", json_string(req->user_id));
	http_reply_json(req, 200, json_pack("{s:s, s:o}", "room_version", version, "event", tmpl));
}

static void make_join_authed(struct http_req *req)
{
	make_membership(req, "join");
}

static void make_leave_authed(struct http_req *req)
{
	make_membership(req, "leave");
}

/* ---- send_join / send_leave / invite: the event is checked once the keys
 * its signatures need are here ---- */

enum send_kind { SEND_JOIN_V1, SEND_JOIN_V2, SEND_LEAVE_V1, SEND_LEAVE_V2, INVITE_V1, INVITE_V2 };

struct send_ctx {
	struct http_req *req;
	enum send_kind kind;
	char version[4];
	char event_id[EVENT_ID_MAX];
	json_t *pdu;               /* the event as sent */
	json_t *invite_room_state; /* invite */
};

static void send_ctx_free(struct send_ctx *s)
{
	json_decref(s->pdu);
	json_decref(s->invite_room_state);
	free(s);
}

static void reply_versioned(struct http_req *req, bool v1, json_t *body)
{
	if (v1)
		http_reply_json(req, 200, json_pack("[i, o]", 200, body));
	else
		http_reply_json(req, 200, body);
}

static void send_join_reply(struct send_ctx *s, json_t *pdu, json_t *state_ids)
{
	struct http_req *req = s->req;
	struct al_error err = {0};
	json_t *state = NULL, *chain = NULL;
	if (room_fed_pdus(&req->worker->db, req->params[0], state_ids, &state, &chain, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *servers = room_fed_joined_servers(&req->worker->db, req->params[0], &err);
	json_t *ev = json_deep_copy(pdu);
	json_object_del(ev, "event_id");
	json_t *body = json_pack("{s:s, s:o, s:o, s:o, s:b, s:o}", "origin", req->app->cfg.server_name, "state", state,
				 "auth_chain", chain, "event", ev, "members_omitted", 0, "servers_in_room",
				 servers ? servers : json_array());
	reply_versioned(req, s->kind == SEND_JOIN_V1, body);
}

static json_t *state_ids_of(json_t *state_map)
{
	json_t *ids = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(state_map, k, v)
	{
		json_array_append(ids, v);
	}
	return ids;
}

static void send_checked(void *arg)
{
	struct send_ctx *s = arg;
	struct http_req *req = s->req;
	struct federation *fed = fed_of(req->app);
	struct event_rules r;
	event_rules_for(s->version, &r);
	json_t *verified = NULL;
	char why[300];
	if (fed_pdu_verify(fed, &r, s->pdu, &verified, why, sizeof(why)) < 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "The event is not signed by its sender's server: %s", why);
		send_ctx_free(s);
		return;
	}
	/* our signature too (the spec has the resident server add it) */
	struct al_error err = {0};
	json_t *pdu = json_deep_copy(verified);
	json_decref(verified);
	json_t *red = event_redact(pdu, &r);
	json_object_del(red, "signatures");
	if (!red || sign_json(red, req->app->cfg.server_name, keys_current(req->app->keys), &err) < 0) {
		json_decref(red);
		json_decref(pdu);
		http_reply_error(req, 500, "M_UNKNOWN", "cannot sign the event");
		send_ctx_free(s);
		return;
	}
	json_t *sigs = json_object_get(pdu, "signatures");
	json_object_set(sigs, req->app->cfg.server_name,
			json_object_get(json_object_get(red, "signatures"), req->app->cfg.server_name));
	json_decref(red);
	struct room_ctx c = ctx_of(req);
	if (s->kind == INVITE_V2 || s->kind == INVITE_V1) {
		int64_t stream = 0;
		if (room_remote_store_invite(&c, s->version, pdu, s->event_id, s->invite_room_state, &stream, &err) <
		    0) {
			http_reply_al_error(req, &err);
		} else {
			if (stream && fed->notify)
				fed->notify(req->app);
			json_t *ev = json_deep_copy(pdu);
			if (r.id_format >= 3)
				json_object_del(ev, "event_id");
			reply_versioned(req, s->kind == INVITE_V1, json_pack("{s:o}", "event", ev));
		}
		json_decref(pdu);
		send_ctx_free(s);
		return;
	}
	bool join = s->kind == SEND_JOIN_V1 || s->kind == SEND_JOIN_V2;
	struct room_pdu_outcome o;
	unsigned flags = ROOM_ACCEPT_FANOUT | ROOM_ACCEPT_GAPS | (join ? ROOM_ACCEPT_STATE : 0);
	if (room_remote_accept(&c, req->params[0], pdu, s->event_id, flags, &o, &err) < 0) {
		http_reply_al_error(req, &err);
	} else if (o.status == ROOM_PDU_KNOWN && join) {
		json_t *ids = NULL, *chain = NULL;
		if (room_fed_state_ids(&req->worker->db, req->params[0], s->event_id, &ids, &chain, &err) < 0) {
			http_reply_al_error(req, &err);
		} else {
			send_join_reply(s, pdu, ids);
		}
		json_decref(ids);
		json_decref(chain);
	} else if (o.status != ROOM_PDU_ACCEPTED && o.status != ROOM_PDU_KNOWN) {
		http_reply_error(req, 403, "M_FORBIDDEN", "The %s is not allowed: %s", join ? "join" : "leave",
				 o.reason[0] ? o.reason : room_pdu_status_name(o.status));
	} else {
		if (join && federation_presence_for_room(&req->worker->db, req->params[0], req->app->cfg.server_name,
							 req->user_id, &err) < 0)
			log_warn("fed_rooms", "cannot queue presence for %s: %s", req->user_id, err.message);
		if (fed->notify)
			fed->notify(req->app);
		if (join) {
			json_t *ids = state_ids_of(o.state_before);
			send_join_reply(s, pdu, ids);
			json_decref(ids);
		} else {
			reply_versioned(req, s->kind == SEND_LEAVE_V1, json_object());
		}
	}
	room_pdu_outcome_clear(&o);
	json_decref(pdu);
	send_ctx_free(s);
}

static void send_membership(struct http_req *req, enum send_kind kind)
{
	const char *room_id = req->params[0], *event_id = req->params[1];
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!id_ok(room_id, '!') || !id_ok(event_id, '$')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room or event ID");
		return;
	}
	if (!acl_ok(req, room_id))
		return;
	struct send_ctx *s = calloc(1, sizeof(*s));
	if (!s) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	s->req = req;
	s->kind = kind;
	json_t *pdu = body;
	if (kind == INVITE_V1) {
		/* v1 carries no room version: the version the room's create event
		 * names among the stripped state, else 1 */
		const char *v = NULL;
		size_t i;
		json_t *st;
		json_array_foreach(json_object_get(json_object_get(body, "unsigned"), "invite_room_state"), i, st)
		{
			if (json_is_string(json_object_get(st, "type")) &&
			    strcmp(event_str(st, "type"), "m.room.create") == 0)
				v = event_content_str(st, "room_version");
		}
		if (!v)
			v = "1";
		if (!room_remote_version_supported(v)) {
			http_reply_json(req, 400,
					json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
						  "This server does not support this room version", "room_version", v));
			send_ctx_free(s);
			return;
		}
		snprintf(s->version, sizeof(s->version), "%s", v);
		s->invite_room_state = json_incref(
			json_object_get(json_object_get(body, "unsigned"), "invite_room_state"));
	} else if (kind == INVITE_V2) {
		pdu = json_object_get(body, "event");
		const char *v = json_string_value(json_object_get(body, "room_version"));
		if (!v || !room_remote_version_supported(v)) {
			http_reply_json(req, 400,
					json_pack("{s:s, s:s, s:s}", "errcode", "M_INCOMPATIBLE_ROOM_VERSION", "error",
						  "This server does not support this room version", "room_version",
						  v ? v : ""));
			send_ctx_free(s);
			return;
		}
		snprintf(s->version, sizeof(s->version), "%s", v);
		json_t *irs = json_object_get(body, "invite_room_state");
		if (irs && !json_is_array(irs)) {
			http_reply_error(req, 400, "M_BAD_JSON", "invite_room_state must be a list");
			send_ctx_free(s);
			return;
		}
		s->invite_room_state = json_incref(irs);
	} else if (room_remote_room_version(&req->worker->db, room_id, s->version, &err) < 0) {
		http_reply_al_error(req, &err);
		send_ctx_free(s);
		return;
	}
	struct event_rules r;
	event_rules_for(s->version, &r);
	if (!json_is_object(json_object_get(pdu, "signatures")) ||
	    !json_object_size(json_object_get(pdu, "signatures")) || !json_is_object(json_object_get(pdu, "hashes"))) {
		http_reply_error(req, 403, "M_FORBIDDEN", "The event is not signed");
		send_ctx_free(s);
		return;
	}
	if (room_pdu_check_format(&r, pdu, &err) < 0 ||
	    event_compute_id(pdu, &r, s->event_id, sizeof(s->event_id), &err) < 0) {
		http_reply_al_error(req, &err);
		send_ctx_free(s);
		return;
	}
	bool invite = kind == INVITE_V1 || kind == INVITE_V2;
	const char *want = invite ? "invite" : (kind == SEND_JOIN_V1 || kind == SEND_JOIN_V2) ? "join" : "leave";
	const char *sender = event_str(pdu, "sender"), *sk = event_str(pdu, "state_key");
	const char *m = event_content_str(pdu, "membership");
	const char *why = NULL;
	if (strcmp(s->event_id, event_id) != 0)
		why = "the event ID does not match the event";
	else if (strcmp(event_str(pdu, "room_id"), room_id) != 0)
		why = "the room ID does not match the event";
	else if (strcmp(event_str(pdu, "type"), "m.room.member") != 0 || !sk || !m || strcmp(m, want) != 0)
		why = "not the expected membership event";
	else if (strcasecmp(server_of(sender), req->user_id) != 0)
		why = "the sender is not on the origin server";
	else if (!invite && strcmp(sender, sk) != 0)
		why = "the sender must be the user whose membership changes";
	else if (invite && !federation_is_local(req->app, server_of(sk)))
		why = "the invited user is not on this server";
	if (why) {
		/* someone else's membership: refused; a malformed request: 400 */
		bool forbidden = strstr(why, "sender") != NULL;
		http_reply_error(req, forbidden ? 403 : 400, forbidden ? "M_FORBIDDEN" : "M_INVALID_PARAM", "%s", why);
		send_ctx_free(s);
		return;
	}
	s->pdu = json_incref(pdu);
	json_t *one = json_pack("[O]", pdu);
	if (fed_pdus_fetch_keys(fed_of(req->app), req->worker->base, one, s->version, send_checked, s) < 0)
		send_checked(s);
	json_decref(one);
}

static void send_join_v1(struct http_req *req)
{
	send_membership(req, SEND_JOIN_V1);
}
static void send_join_v2(struct http_req *req)
{
	send_membership(req, SEND_JOIN_V2);
}
static void send_leave_v1(struct http_req *req)
{
	send_membership(req, SEND_LEAVE_V1);
}
static void send_leave_v2(struct http_req *req)
{
	send_membership(req, SEND_LEAVE_V2);
}
static void invite_v1(struct http_req *req)
{
	send_membership(req, INVITE_V1);
}
static void invite_v2(struct http_req *req)
{
	send_membership(req, INVITE_V2);
}

/* ---- reads ---- */

static void event_authed(struct http_req *req)
{
	char room_id[256];
	struct al_error err = {0};
	if (!id_ok(req->params[0], '$')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed event ID");
		return;
	}
	json_t *pdu = room_fed_event(&req->worker->db, req->params[0], room_id, &err);
	if (!pdu) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!acl_ok(req, room_id) || !may_read(req, room_id)) {
		json_decref(pdu);
		return;
	}
	http_reply_json(req, 200,
			json_pack("{s:s, s:I, s:[o]}", "origin", req->app->cfg.server_name, "origin_server_ts",
				  (json_int_t)http_now_ms(), "pdus", pdu));
}

static void state_common(struct http_req *req, bool ids_only)
{
	const char *room_id = req->params[0];
	const char *event_id = http_req_query(req, "event_id");
	if (!id_ok(room_id, '!') || !id_ok(event_id, '$')) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "event_id is required");
		return;
	}
	if (!acl_ok(req, room_id) || !may_read(req, room_id))
		return;
	struct al_error err = {0};
	json_t *ids = NULL, *chain = NULL;
	if (room_fed_state_ids(&req->worker->db, room_id, event_id, &ids, &chain, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (ids_only) {
		http_reply_json(req, 200, json_pack("{s:o, s:o}", "pdu_ids", ids, "auth_chain_ids", chain));
		return;
	}
	json_decref(chain);
	json_t *pdus = NULL, *auth = NULL;
	int rc = room_fed_pdus(&req->worker->db, room_id, ids, &pdus, &auth, &err);
	json_decref(ids);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o, s:o}", "pdus", pdus, "auth_chain", auth));
}

static void state_ids_authed(struct http_req *req)
{
	state_common(req, true);
}

static void state_authed(struct http_req *req)
{
	state_common(req, false);
}

static void event_auth_authed(struct http_req *req)
{
	const char *room_id = req->params[0], *event_id = req->params[1];
	if (!id_ok(room_id, '!') || !id_ok(event_id, '$')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room or event ID");
		return;
	}
	if (!acl_ok(req, room_id) || !may_read(req, room_id))
		return;
	struct al_error err = {0};
	json_t *chain = room_fed_event_auth(&req->worker->db, room_id, event_id, &err);
	if (!chain) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o}", "auth_chain", chain));
}

static void backfill_authed(struct http_req *req)
{
	const char *room_id = req->params[0];
	if (!id_ok(room_id, '!')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room ID");
		return;
	}
	if (!acl_ok(req, room_id))
		return;
	json_t *v = json_array();
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &req->query, next)
	{
		if (strcmp(kv->key, "v") == 0 && json_array_size(v) < ROOM_FED_MAX_IDS && id_ok(kv->value, '$'))
			json_array_append_new(v, json_string(kv->value));
	}
	const char *l = http_req_query(req, "limit");
	int limit = l ? atoi(l) : 10;
	if (json_array_size(v) == 0 || limit <= 0) {
		json_decref(v);
		http_reply_error(req, 400, "M_MISSING_PARAM", "v and a positive limit are required");
		return;
	}
	if (!may_read(req, room_id)) {
		json_decref(v);
		return;
	}
	struct al_error err = {0};
	json_t *pdus = room_fed_backfill(&req->worker->db, room_id, v, limit, &err);
	json_decref(v);
	if (!pdus) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200,
			json_pack("{s:s, s:I, s:o}", "origin", req->app->cfg.server_name, "origin_server_ts",
				  (json_int_t)http_now_ms(), "pdus", pdus));
}

static void missing_authed(struct http_req *req)
{
	const char *room_id = req->params[0];
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	if (!id_ok(room_id, '!')) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room ID");
		return;
	}
	if (!acl_ok(req, room_id))
		return;
	/* absent lists are empty */
	json_t *earliest = json_object_get(body, "earliest_events"), *latest = json_object_get(body, "latest_events");
	json_t *lim = json_object_get(body, "limit"), *md = json_object_get(body, "min_depth");
	if ((earliest && !json_is_array(earliest)) || (latest && !json_is_array(latest)) ||
	    (lim && !json_is_integer(lim)) || (md && !json_is_integer(md))) {
		http_reply_error(req, 400, "M_BAD_JSON", "earliest_events and latest_events must be lists");
		return;
	}
	if (!may_read(req, room_id))
		return;
	json_t *none = json_array();
	json_t *ev = room_fed_missing(&req->worker->db, room_id, earliest ? earliest : none, latest ? latest : none,
				      lim ? (int)json_integer_value(lim) : 10, md ? (long)json_integer_value(md) : 0,
				      &err);
	json_decref(none);
	if (!ev) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_pack("{s:o}", "events", ev));
}

void fed_rooms_query_directory(struct http_req *req)
{
	const char *alias = http_req_query(req, "room_alias");
	if (!alias || alias[0] != '#' || !server_of(alias) || strlen(alias) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "room_alias is required");
		return;
	}
	if (!federation_is_local(req->app, server_of(alias))) {
		http_reply_error(req, 404, "M_NOT_FOUND", "Room alias %s is not on this server", alias);
		return;
	}
	char room_id[ROOM_ID_MAX + 1];
	struct al_error err = {0};
	if (room_alias_resolve(&req->worker->db, alias, room_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *servers = room_fed_joined_servers(&req->worker->db, room_id, &err);
	if (!servers) {
		http_reply_al_error(req, &err);
		return;
	}
	/* this server first: it answers make_join for its own rooms */
	json_t *list = json_pack("[s]", req->app->cfg.server_name);
	size_t i;
	json_t *v;
	json_array_foreach(servers, i, v)
	{
		if (!federation_is_local(req->app, json_string_value(v)))
			json_array_append(list, v);
	}
	json_decref(servers);
	http_reply_json(req, 200, json_pack("{s:s, s:o}", "room_id", room_id, "servers", list));
}

#define AUTHED(name, fn)                       \
	static void name(struct http_req *req) \
	{                                      \
		fed_auth_require(req, fn);     \
	}

AUTHED(get_make_join, make_join_authed)
AUTHED(get_make_leave, make_leave_authed)
AUTHED(put_send_join_v1, send_join_v1)
AUTHED(put_send_join_v2, send_join_v2)
AUTHED(put_send_leave_v1, send_leave_v1)
AUTHED(put_send_leave_v2, send_leave_v2)
AUTHED(put_invite_v1, invite_v1)
AUTHED(put_invite_v2, invite_v2)
AUTHED(get_event, event_authed)
AUTHED(get_state_ids, state_ids_authed)
AUTHED(get_state, state_authed)
AUTHED(get_event_auth, event_auth_authed)
AUTHED(get_backfill, backfill_authed)
AUTHED(post_missing, missing_authed)

int fed_rooms_register(struct app *app)
{
	int rc = 0;
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/make_join/{roomId}/{userId}", get_make_join);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/make_leave/{roomId}/{userId}", get_make_leave);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v1/send_join/{roomId}/{eventId}", put_send_join_v1);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v2/send_join/{roomId}/{eventId}", put_send_join_v2);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v1/send_leave/{roomId}/{eventId}", put_send_leave_v1);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v2/send_leave/{roomId}/{eventId}", put_send_leave_v2);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v1/invite/{roomId}/{eventId}", put_invite_v1);
	rc |= http_route(app, ROUTER_PUT, "/_matrix/federation/v2/invite/{roomId}/{eventId}", put_invite_v2);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/event/{eventId}", get_event);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/state_ids/{roomId}", get_state_ids);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/state/{roomId}", get_state);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/event_auth/{roomId}/{eventId}", get_event_auth);
	rc |= http_route(app, ROUTER_GET, "/_matrix/federation/v1/backfill/{roomId}", get_backfill);
	rc |= http_route(app, ROUTER_POST, "/_matrix/federation/v1/get_missing_events/{roomId}", post_missing);
	return rc ? -1 : 0;
}
