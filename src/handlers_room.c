#include "handlers_room.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "federation.h"
#include "handlers_room_remote.h"
#include "handlers_sync.h"
#include "http.h"
#include "keys.h"
#include "log.h"
#include "ratelimit.h"
#include "room.h"
#include "room_directory.h"
#include "room_queue.h"
#include "typing.h"

#define CLIENT "/_matrix/client/r0|v3"

static struct room_ctx ctx_of(struct http_req *req)
{
	struct room_ctx c = {.db = &req->worker->db, .keys = req->app->keys, .app = req->app};
	return c;
}

static bool valid_room_id(struct http_req *req, const char *id)
{
	if (!id || id[0] != '!' || !strchr(id, ':') || strlen(id) > ROOM_ID_MAX) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room ID");
		return false;
	}
	return true;
}

static bool valid_type(struct http_req *req, const char *t, bool allow_empty)
{
	if (!t || (!allow_empty && !*t) || strlen(t) > EVENT_TYPE_MAX) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "event type or state key must be 1-255 bytes");
		return false;
	}
	return true;
}

static void reply_event_id(struct http_req *req, const char *event_id)
{
	http_reply_json(req, 200, json_pack("{s:s}", "event_id", event_id));
}

/* ---- createRoom ---- */

static void post_create_room(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "create_room") < 0)
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	char room_id[ROOM_ID_MAX + 1];
	int64_t stream;
	struct room_ctx c = ctx_of(req);
	if (room_create(&c, req->user_id, body, room_id, &stream, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	sync_notify_room(req->app, room_id, req->user_id);
	json_t *inv;
	size_t i;
	json_array_foreach(json_object_get(body, "invite"), i, inv)
	{
		if (json_is_string(inv))
			sync_notify_user(req->app, json_string_value(inv));
	}
	if (room_remote_create_invites(req, room_id, body))
		return; /* answered once the invitees' servers signed */
	http_reply_json(req, 200, json_pack("{s:s}", "room_id", room_id));
}

/* ---- aliases ---- */

static bool valid_alias(struct http_req *req, const char *a)
{
	if (!a || a[0] != '#' || !strchr(a, ':') || strlen(a) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed room alias");
		return false;
	}
	return true;
}

static void put_alias(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *alias = req->params[0];
	if (!valid_alias(req, alias))
		return;
	const char *server = keys_server_name(req->app->keys);
	const char *colon = strchr(alias, ':');
	if (strcmp(colon + 1, server) != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "alias must be on this server");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *room_id = json_string_value(json_object_get(body, "room_id"));
	if (!room_id) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "room_id is required");
		return;
	}
	if (!valid_room_id(req, room_id))
		return;
	if (room_alias_put(&req->worker->db, alias, room_id, req->user_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_object());
}

static void get_alias(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *alias = req->params[0];
	if (!valid_alias(req, alias))
		return;
	char room_id[ROOM_ID_MAX + 1];
	struct al_error err = {0};
	if (room_remote_alias_lookup(req, alias))
		return; /* on another server: asked there */
	if (room_alias_resolve(&req->worker->db, alias, room_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200,
			json_pack("{s:s, s:[s]}", "room_id", room_id, "servers", keys_server_name(req->app->keys)));
}

static void delete_alias(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *alias = req->params[0];
	if (!valid_alias(req, alias))
		return;
	struct al_error err = {0};
	char room_id[ROOM_ID_MAX + 1] = "";
	if (room_alias_resolve(&req->worker->db, alias, room_id, &err) < 0 ||
	    room_alias_delete(&req->worker->db, alias, req->user_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	/* A deleted alias leaves the room's canonical alias event, as the
	 * deleting user (who may lack the power: then it stays). */
	json_t *content = room_directory_canonical_without(&req->worker->db, room_id, alias, &err);
	if (content) {
		struct room_event_spec spec = {.type = "m.room.canonical_alias", .state_key = "", .content = content};
		char event_id[EVENT_ID_MAX];
		int64_t stream = 0;
		struct room_ctx c = ctx_of(req);
		if (room_send(&c, room_id, req->user_id, &spec, event_id, &stream, &err) < 0)
			log_info("rooms", "canonical alias kept after alias deletion room_id=%s reason=%s", room_id,
				 err.message);
		else if (stream)
			sync_notify_room(req->app, room_id, NULL);
		json_decref(content);
	}
	http_reply_json(req, 200, json_object());
}

static void get_room_aliases(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *st = room_state(&req->worker->db, req->params[0], req->user_id, &err);
	if (!st) {
		http_reply_al_error(req, &err);
		return;
	}
	json_decref(st);
	json_t *a = room_alias_list(&req->worker->db, req->params[0], &err);
	if (!a) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, a);
}

/* ---- membership ---- */

static void do_membership(struct http_req *req, const char *room, const char *target, const char *membership,
			  const char *reason, json_t *extra, bool reply_room_id, bool kick)
{
	struct al_error err = {0};
	char room_id[ROOM_ID_MAX + 1];
	int64_t stream;
	struct room_ctx c = ctx_of(req);
	if (room_remote_membership(req, room, target, membership, reason, extra, reply_room_id))
		return;                                 /* other servers take part; answered when they did */
	snprintf(room_id, sizeof(room_id), "%s", room); /* room_membership resolves an alias here */
	int rc = kick ? room_kick(&c, room, req->user_id, target, reason, &stream, &err)
		      : room_membership(&c, room, req->user_id, target, membership, reason, extra, room_id, &stream,
					&err);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	/* Whoever leaves the room stops typing in it. */
	if (strcmp(membership, "leave") == 0 || strcmp(membership, "ban") == 0)
		typing_set(req->app->typing, room_id, target ? target : req->user_id, false, 0, http_now_ms());
	sync_notify_room(req->app, room_id, target ? target : req->user_id);
	if (reply_room_id)
		http_reply_json(req, 200, json_pack("{s:s}", "room_id", room_id));
	else
		http_reply_json(req, 200, json_object());
}

static const char *body_reason(json_t *body)
{
	return json_string_value(json_object_get(body, "reason"));
}

static void post_join(struct http_req *req)
{
	bool guest = false;
	if (auth_require_ex(req, &guest) < 0 || ratelimit_check(req, "join") < 0)
		return;
	struct al_error err = {0};
	if (guest && room_guest_join_check(&req->worker->db, req->params[0], &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *body = http_req_json_body(req, &err);
	do_membership(req, req->params[0], NULL, "join", body ? body_reason(body) : NULL, body, true, false);
}

static void post_membership_target(struct http_req *req, const char *membership)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *target = json_string_value(json_object_get(body, "user_id"));
	if (!target) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "user_id is required");
		return;
	}
	do_membership(req, req->params[0], target, strcmp(membership, "kick") == 0 ? "leave" : membership,
		      body_reason(body), NULL, false, strcmp(membership, "kick") == 0);
}

static void post_invite(struct http_req *req)
{
	post_membership_target(req, "invite");
}

static void post_kick(struct http_req *req)
{
	post_membership_target(req, "kick");
}

static void post_ban(struct http_req *req)
{
	post_membership_target(req, "ban");
}

static void post_unban(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	const char *target = json_string_value(json_object_get(body, "user_id"));
	if (!target) {
		http_reply_error(req, 400, "M_MISSING_PARAM", "user_id is required");
		return;
	}
	int64_t stream;
	struct room_ctx c = ctx_of(req);
	if (room_unban(&c, req->params[0], req->user_id, target, body_reason(body), &stream, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	sync_notify_room(req->app, req->params[0], target);
	http_reply_json(req, 200, json_object());
}

static void post_leave(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	do_membership(req, req->params[0], NULL, "leave", body ? body_reason(body) : NULL, NULL, false, false);
}

static void post_forget(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	if (room_forget(&req->worker->db, req->params[0], req->user_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, json_object());
}

/* ---- sending ---- */

/* A timeline event goes through the room's group commit: answered from
 * send_done once its batch committed. false: not queued (the queue is
 * stopping), the caller writes it itself. */
static void send_done(void *arg, const struct room_queue_result *res)
{
	struct http_req *req = arg;
	if (res->rc < 0) {
		http_reply_al_error(req, &res->err);
		return;
	}
	reply_event_id(req, res->event_id);
}

static bool queue_send(struct http_req *req, const struct room_event_spec *spec)
{
	int rc = room_queue_submit(req->app->room_queue, req->worker->base, req->params[0], req->user_id, spec,
				   send_done, req);
	if (rc == -2)
		http_reply_error(req, 503, "M_UNKNOWN", "Server busy, try again");
	return rc != -1;
}

static void on_batch_commit(void *arg, const char *room_id)
{
	sync_notify_room(arg, room_id, NULL);
}

static void send_event(struct http_req *req, const char *type, const char *state_key, const char *txn_id,
		       const char *redacts)
{
	if (!valid_room_id(req, req->params[0]) || !valid_type(req, type, false) ||
	    (state_key && !valid_type(req, state_key, true)))
		return;
	if (txn_id && strlen(txn_id) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "txnId too long");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *content = body;
	json_t *copy = NULL;
	if (redacts) {
		copy = json_object();
		const char *reason = body_reason(body);
		if (reason)
			json_object_set_new(copy, "reason", json_string(reason));
		content = copy;
	}
	if (state_key && !*state_key && strcmp(type, "m.room.canonical_alias") == 0 &&
	    room_directory_check_canonical(&req->worker->db, keys_server_name(req->app->keys), req->params[0], body,
					   &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	struct room_event_spec spec = {.type = type,
				       .state_key = state_key,
				       .content = content,
				       .redacts = redacts,
				       .device_id = req->device_id,
				       .txn_id = txn_id};
	if (!state_key && !redacts && queue_send(req, &spec))
		return;
	char event_id[EVENT_ID_MAX];
	int64_t stream;
	struct room_ctx c = ctx_of(req);
	int rc = room_send(&c, req->params[0], req->user_id, &spec, event_id, &stream, &err);
	json_decref(copy);
	if (rc < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (stream)
		sync_notify_room(req->app, req->params[0],
				 state_key && strcmp(type, "m.room.member") == 0 ? state_key : NULL);
	reply_event_id(req, event_id);
}

static void put_send(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "send") < 0)
		return;
	send_event(req, req->params[1], NULL, req->params[2], NULL);
}

static void post_send(struct http_req *req)
{
	if (auth_require(req) < 0 || ratelimit_check(req, "send") < 0)
		return;
	send_event(req, req->params[1], NULL, NULL, NULL);
}

static void put_state(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	send_event(req, req->params[1], req->nparams > 2 ? req->params[2] : "", NULL, NULL);
}

static void put_redact(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	const char *target = req->params[1];
	if (!target || target[0] != '$' || strlen(target) > 255) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "malformed event ID");
		return;
	}
	send_event(req, "m.room.redaction", NULL, req->nparams > 2 ? req->params[2] : NULL, target);
}

/* ---- typing and receipts ---- */

static void put_typing(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	if (strcmp(req->params[1], req->user_id) != 0) {
		http_reply_error(req, 403, "M_FORBIDDEN", "Cannot send typing notices for another user");
		return;
	}
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	json_t *typing = json_object_get(body, "typing"), *timeout = json_object_get(body, "timeout");
	if (!json_is_boolean(typing)) {
		http_reply_error(req, 400, "M_BAD_JSON", "typing must be a boolean");
		return;
	}
	if (timeout && (!json_is_integer(timeout) || json_integer_value(timeout) < 0)) {
		http_reply_error(req, 400, "M_BAD_JSON", "timeout must be a non-negative integer");
		return;
	}
	if (room_require_joined(&req->worker->db, req->params[0], req->user_id, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	int64_t ms = timeout ? (int64_t)json_integer_value(timeout) : TYPING_DEFAULT_TIMEOUT_MS;
	int rc = typing_set(req->app->typing, req->params[0], req->user_id, json_is_true(typing), ms, http_now_ms());
	if (rc < 0) {
		http_reply_error(req, 500, "M_UNKNOWN", "out of memory");
		return;
	}
	/* the room's other servers get it as an m.typing EDU (a refresh too) */
	json_t *edu = json_pack("{s:s, s:s, s:b}", "room_id", req->params[0], "user_id", req->user_id, "typing",
				json_is_true(typing));
	if (!edu || federation_edu_to_room(&req->worker->db, req->params[0], keys_server_name(req->app->keys),
					   "m.typing", edu, &err) < 0)
		log_warn("typing", "cannot queue m.typing for other servers room=%s: %s", req->params[0], err.message);
	else
		federation_sender_wake(req->app);
	json_decref(edu);
	if (rc > 0)
		sync_notify_room(req->app, req->params[0], NULL);
	http_reply_json(req, 200, json_object());
}

/* An optional JSON body: NULL (no error) when there is none. */
static bool optional_body(struct http_req *req, json_t **body)
{
	size_t len = 0;
	*body = NULL;
	if (!http_req_body_bytes(req, &len) || len == 0)
		return true;
	struct al_error err = {0};
	*body = http_req_json_body(req, &err);
	if (!*body)
		http_reply_al_error(req, &err);
	return *body != NULL;
}

static void post_receipt(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	json_t *body;
	if (!optional_body(req, &body))
		return;
	json_t *thread = json_object_get(body, "thread_id");
	if (thread && !json_is_string(thread)) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "thread_id must be a string");
		return;
	}
	struct al_error err = {0};
	bool changed;
	if (room_receipt_put(&req->worker->db, req->params[0], req->user_id, req->params[1], json_string_value(thread),
			     req->params[2], &changed, &err) < 0) {
		http_reply_al_error(req, &err);
		return;
	}
	if (changed)
		sync_notify_room(req->app, req->params[0], NULL);
	http_reply_json(req, 200, json_object());
}

static void post_read_markers(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *body = http_req_json_body(req, &err);
	if (!body) {
		http_reply_al_error(req, &err);
		return;
	}
	static const char *const types[] = {"m.fully_read", "m.read", "m.read.private"};
	const char *ids[3];
	for (int i = 0; i < 3; i++) {
		json_t *v = json_object_get(body, types[i]);
		if (v && !json_is_string(v)) {
			http_reply_error(req, 400, "M_INVALID_PARAM", "%s must be an event ID", types[i]);
			return;
		}
		ids[i] = json_string_value(v);
		/* check them all before writing any */
		if (ids[i] && room_receipt_check(&req->worker->db, req->params[0], req->user_id, ids[i], &err) < 0) {
			http_reply_al_error(req, &err);
			return;
		}
	}
	bool any = false;
	for (int i = 0; i < 3; i++) {
		bool changed = false;
		if (ids[i] && room_receipt_put(&req->worker->db, req->params[0], req->user_id, types[i], NULL, ids[i],
					       &changed, &err) < 0) {
			http_reply_al_error(req, &err);
			return;
		}
		any |= changed;
	}
	if (any)
		sync_notify_room(req->app, req->params[0], NULL);
	http_reply_json(req, 200, json_object());
}

/* ---- reads ---- */

static void get_state(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *a = room_state(&req->worker->db, req->params[0], req->user_id, &err);
	if (!a) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, a);
}

static void get_state_event(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]) || !valid_type(req, req->params[1], false))
		return;
	const char *sk = req->nparams > 2 ? req->params[2] : "";
	struct al_error err = {0};
	const char *fmt = http_req_query(req, "format");
	json_t *c = room_state_event(&req->worker->db, req->params[0], req->user_id, req->params[1], sk,
				     fmt && strcmp(fmt, "event") == 0, &err);
	if (!c) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, c);
}

static void get_members(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *m = room_members(&req->worker->db, req->params[0], req->user_id, http_req_query(req, "membership"),
				 http_req_query(req, "not_membership"), &err);
	if (!m) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, m);
}

static void get_joined_members(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *m = room_joined_members(&req->worker->db, req->params[0], req->user_id, &err);
	if (!m) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, m);
}

static void get_joined_rooms(struct http_req *req)
{
	if (auth_require(req) < 0)
		return;
	struct al_error err = {0};
	json_t *m = room_joined_rooms(&req->worker->db, req->user_id, &err);
	if (!m) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, m);
}

static void get_event(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	struct al_error err = {0};
	json_t *e = room_get_event(&req->worker->db, req->params[0], req->user_id, req->params[1], &err);
	if (!e) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, e);
}

static int query_limit(struct http_req *req, int dflt, int max)
{
	const char *l = http_req_query(req, "limit");
	if (!l)
		return dflt;
	char *end;
	long v = strtol(l, &end, 10);
	if (*end || v < 0)
		return -1;
	return v > max ? max : (int)v;
}

struct messages_q {
	struct http_req *req;
	json_t *filter;
	int limit;
};

static void reply_messages(struct http_req *req, char dir, int limit, json_t *filter)
{
	struct al_error err = {0};
	json_t *m = room_messages(&req->worker->db, req->params[0], req->user_id, req->device_id,
				  http_req_query(req, "from"), http_req_query(req, "to"), dir, limit, filter, &err);
	if (!m)
		http_reply_al_error(req, &err);
	else
		http_reply_json(req, 200, m);
}

static void backfilled(void *arg, int status, json_t *body, const struct al_error *err)
{
	(void)status;
	(void)body;
	(void)err;
	struct messages_q *q = arg;
	reply_messages(q->req, 'b', q->limit, q->filter);
	json_decref(q->filter);
	free(q);
}

/* Paging back past the start of what we hold of a room shared with other
 * servers: ask them for the history first (federation_room_backfill),
 * then answer. true when that started. */
static bool backfill_first(struct http_req *req, json_t *m, int limit, json_t *filter)
{
	if (json_array_size(json_object_get(m, "chunk")) >= (size_t)limit || http_req_query(req, "to"))
		return false;
	struct messages_q *q = calloc(1, sizeof(*q));
	if (!q)
		return false;
	*q = (struct messages_q){.req = req, .filter = json_incref(filter), .limit = limit};
	if (federation_room_backfill(req->app, req->worker->base, &req->worker->db, req->params[0], limit, backfilled,
				     q) < 0) {
		json_decref(q->filter);
		free(q);
		return false;
	}
	return true;
}

static void get_messages(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	const char *dir = http_req_query(req, "dir");
	if (dir && strcmp(dir, "b") != 0 && strcmp(dir, "f") != 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "dir must be b or f");
		return;
	}
	int limit = query_limit(req, 10, 1000);
	if (limit < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad limit");
		return;
	}
	struct al_error err = {0};
	json_t *filter = NULL;
	const char *fp = http_req_query(req, "filter");
	if (fp) {
		filter = json_loads(fp, 0, NULL);
		if (!json_is_object(filter)) {
			json_decref(filter);
			http_reply_error(req, 400, "M_INVALID_PARAM", "filter must be a JSON object");
			return;
		}
	}
	json_t *m = room_messages(&req->worker->db, req->params[0], req->user_id, req->device_id,
				  http_req_query(req, "from"), http_req_query(req, "to"), dir ? dir[0] : 'b', limit,
				  filter, &err);
	if (m && (!dir || dir[0] == 'b') && backfill_first(req, m, limit, filter)) {
		json_decref(m);
		json_decref(filter);
		return;
	}
	json_decref(filter);
	if (!m) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, m);
}

static void get_context(struct http_req *req)
{
	if (auth_require(req) < 0 || !valid_room_id(req, req->params[0]))
		return;
	int limit = query_limit(req, 10, 100);
	if (limit < 0) {
		http_reply_error(req, 400, "M_INVALID_PARAM", "bad limit");
		return;
	}
	struct al_error err = {0};
	json_t *m = room_context(&req->worker->db, req->params[0], req->user_id, req->params[1], limit, &err);
	if (!m) {
		http_reply_al_error(req, &err);
		return;
	}
	http_reply_json(req, 200, m);
}

int rooms_start(struct app *app)
{
	int rc = 0;
	struct al_error err = {0};
	int writers = app->cfg.worker_threads < 1 ? 1 : app->cfg.worker_threads;
	if (writers > ROOM_QUEUE_MAX_THREADS)
		writers = ROOM_QUEUE_MAX_THREADS;
	app->room_queue = room_queue_new(app->cfg.conninfo, app->keys, app, writers, on_batch_commit, app, &err);
	if (!app->room_queue) {
		log_error("rooms", "cannot start the room writers: %s", err.message);
		return -1;
	}
	rc |= http_route(app, ROUTER_POST, CLIENT "/createRoom", post_create_room);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/directory/room/{alias}", put_alias);
	rc |= http_route(app, ROUTER_GET, CLIENT "/directory/room/{alias}", get_alias);
	rc |= http_route(app, ROUTER_DELETE, CLIENT "/directory/room/{alias}", delete_alias);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/aliases", get_room_aliases);
	rc |= http_route(app, ROUTER_POST, CLIENT "/join/{roomIdOrAlias}", post_join);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/join", post_join);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/invite", post_invite);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/leave", post_leave);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/kick", post_kick);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/ban", post_ban);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/unban", post_unban);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/forget", post_forget);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/rooms/{roomId}/send/{type}/{txnId}", put_send);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/send/{type}", post_send);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/rooms/{roomId}/state/{type}", put_state);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/rooms/{roomId}/state/{type}/{stateKey}", put_state);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/state/{type}", get_state_event);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/state/{type}/{stateKey}", get_state_event);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/state", get_state);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/rooms/{roomId}/redact/{eventId}/{txnId}", put_redact);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/redact/{eventId}", put_redact);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/members", get_members);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/joined_members", get_joined_members);
	rc |= http_route(app, ROUTER_GET, CLIENT "/joined_rooms", get_joined_rooms);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/event/{eventId}", get_event);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/messages", get_messages);
	rc |= http_route(app, ROUTER_GET, CLIENT "/rooms/{roomId}/context/{eventId}", get_context);
	rc |= http_route(app, ROUTER_PUT, CLIENT "/rooms/{roomId}/typing/{userId}", put_typing);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/receipt/{receiptType}/{eventId}", post_receipt);
	rc |= http_route(app, ROUTER_POST, CLIENT "/rooms/{roomId}/read_markers", post_read_markers);
	rc |= sync_start(app);
	return rc ? -1 : 0;
}

void rooms_stop(struct app *app)
{
	room_queue_free(app->room_queue);
	app->room_queue = NULL;
}
