#include "handlers_room_remote.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "federation.h"
#include "handlers_sync.h"
#include "log.h"
#include "room.h"
#include "room_fed.h"
#include "room_remote.h"

static const char *server_of(const char *id)
{
	const char *c = id ? strchr(id, ':') : NULL;
	return c ? c + 1 : NULL;
}

bool room_remote_user_is_remote(struct http_req *req, const char *user_id)
{
	const char *s = server_of(user_id);
	return s && !federation_is_local(req->app, s);
}

struct pending {
	struct http_req *req;
	bool reply_room_id;
	char room_id[ROOM_ID_MAX + 1];
	json_t *invitees; /* createRoom: the remote invitees still to invite */
	size_t next;
};

static void done(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct pending *p = arg;
	struct http_req *req = p->req;
	if (status == 200) {
		sync_notify(req->app);
		const char *rid = json_string_value(json_object_get(body, "room_id"));
		if (p->reply_room_id)
			http_reply_json(req, 200, json_pack("{s:s}", "room_id", rid ? rid : p->room_id));
		else
			http_reply_json(req, 200, json_object());
	} else if (json_string_value(json_object_get(body, "errcode"))) {
		http_reply_json(req, status ? status : 502, json_incref(body)); /* e.g. with room_version */
	} else if (err && err->status) {
		http_reply_al_error(req, err);
	} else {
		http_reply_error(req, status ? status : 502, "M_UNKNOWN", "The other server did not answer");
	}
	free(p);
}

/* server_name and via query parameters, every value */
static json_t *via_servers(struct http_req *req)
{
	json_t *a = json_array();
	struct evkeyval *kv;
	TAILQ_FOREACH(kv, &req->query, next)
	{
		if ((strcmp(kv->key, "server_name") == 0 || strcmp(kv->key, "via") == 0) && json_array_size(a) < 8 &&
		    strlen(kv->value) < 256)
			json_array_append_new(a, json_string(kv->value));
	}
	return a;
}

static struct pending *pending_new(struct http_req *req, const char *room_id, bool reply_room_id)
{
	struct pending *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->req = req;
	p->reply_room_id = reply_room_id;
	snprintf(p->room_id, sizeof(p->room_id), "%s", room_id);
	return p;
}

static bool start_join(struct http_req *req, const char *room, json_t *extra, bool reply_room_id, json_t *servers)
{
	struct pending *p = pending_new(req, room, reply_room_id);
	json_t *content = json_is_object(extra) ? json_deep_copy(extra) : NULL;
	if (content) {
		json_object_del(content, "membership");
		json_object_del(content, "third_party_signed");
	}
	int rc = p ? federation_room_join(req->app, req->worker->base, &req->worker->db, req->user_id, room, servers,
					  content, done, p)
		   : -1;
	json_decref(content);
	if (rc < 0) {
		free(p);
		http_reply_error(req, 400, "M_INVALID_PARAM", "Cannot join %s through federation", room);
	}
	return true;
}

bool room_remote_membership(struct http_req *req, const char *room, const char *target, const char *membership,
			    const char *reason, json_t *extra, bool reply_room_id)
{
	struct db *db = &req->worker->db;
	struct al_error err = {0};
	const char *self = req->app->cfg.server_name;
	if (!req->app->federation || !room || strlen(room) > ROOM_ID_MAX || !server_of(room))
		return false;
	if (strcmp(membership, "join") == 0 && !target) {
		char room_id[ROOM_ID_MAX + 1];
		if (room[0] == '#') {
			if (federation_is_local(req->app, server_of(room)))
				return false; /* a local alias: the local path resolves it */
			if (room_alias_resolve(db, room, room_id, &err) < 0) {
				json_t *servers = via_servers(req);
				start_join(req, room, extra, reply_room_id, servers);
				json_decref(servers);
				return true;
			}
		} else {
			snprintf(room_id, sizeof(room_id), "%s", room);
		}
		char version[4];
		bool known = room_remote_room_version(db, room_id, version, &err) == 0;
		int resident = known ? room_remote_is_resident(db, room_id, self, &err) : 0;
		if (resident != 0)
			return false; /* this server is in the room (or the query failed: let it report) */
		char inviter[256] = "";
		room_fed_inviter_server(db, room_id, req->user_id, inviter, &err);
		bool ours = federation_is_local(req->app, server_of(room_id));
		json_t *servers = via_servers(req);
		if (inviter[0])
			json_array_insert_new(servers, 0, json_string(inviter));
		if (ours && json_array_size(servers) == 0) {
			json_decref(servers);
			return false; /* our own room with nobody here: the local path says why */
		}
		start_join(req, room_id, extra, reply_room_id, servers);
		json_decref(servers);
		return true;
	}
	if (strcmp(membership, "leave") == 0 && (!target || strcmp(target, req->user_id) == 0) && room[0] == '!') {
		char m[16];
		if (room_fed_membership(db, room, req->user_id, m, &err) < 0 || strcmp(m, "invite") != 0)
			return false;
		int resident = room_remote_is_resident(db, room, self, &err);
		if (resident != 0)
			return false;
		char inviter[256] = "";
		room_fed_inviter_server(db, room, req->user_id, inviter, &err);
		json_t *servers = json_array();
		if (inviter[0])
			json_array_append_new(servers, json_string(inviter));
		struct pending *p = pending_new(req, room, reply_room_id);
		int rc = p ? federation_room_leave(req->app, req->worker->base, db, req->user_id, room, servers, reason,
						   done, p)
			   : -1;
		json_decref(servers);
		if (rc < 0) {
			free(p);
			http_reply_error(req, 500, "M_UNKNOWN", "Cannot reject the invite through federation");
		}
		return true;
	}
	if (strcmp(membership, "invite") == 0 && target && room_remote_user_is_remote(req, target) && room[0] == '!') {
		struct pending *p = pending_new(req, room, reply_room_id);
		int rc = p ? federation_room_invite(req->app, req->worker->base, db, req->user_id, room, target, reason,
						    done, p)
			   : -1;
		if (rc < 0) {
			free(p);
			http_reply_error(req, 400, "M_INVALID_PARAM", "Cannot invite %s through federation", target);
		}
		return true;
	}
	return false;
}

static void invite_next(struct pending *p);

static void create_invited(void *arg, int status, json_t *body, const struct al_error *err)
{
	(void)body;
	struct pending *p = arg;
	if (status != 200)
		log_info("rooms", "createRoom: remote invite failed room_id=%s user_id=%s: %s", p->room_id,
			 json_string_value(json_array_get(p->invitees, p->next - 1)), err ? err->message : "?");
	invite_next(p);
}

static void invite_next(struct pending *p)
{
	struct http_req *req = p->req;
	while (p->next < json_array_size(p->invitees)) {
		const char *uid = json_string_value(json_array_get(p->invitees, p->next++));
		if (federation_room_invite(req->app, req->worker->base, &req->worker->db, req->user_id, p->room_id, uid,
					   NULL, create_invited, p) == 0)
			return;
	}
	sync_notify(req->app);
	http_reply_json(req, 200, json_pack("{s:s}", "room_id", p->room_id));
	json_decref(p->invitees);
	free(p);
}

bool room_remote_create_invites(struct http_req *req, const char *room_id, json_t *body)
{
	if (!req->app->federation)
		return false;
	json_t *remote = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(json_object_get(body, "invite"), i, v)
	{
		if (room_remote_user_is_remote(req, json_string_value(v)))
			json_array_append(remote, v);
	}
	if (json_array_size(remote) == 0) {
		json_decref(remote);
		return false;
	}
	struct pending *p = pending_new(req, room_id, true);
	if (!p) {
		json_decref(remote);
		return false;
	}
	p->invitees = remote;
	invite_next(p);
	return true;
}

static void alias_done(void *arg, int status, json_t *body, const struct al_error *err)
{
	struct http_req *req = arg;
	if (status == 200 && body)
		http_reply_json(req, 200, json_incref(body));
	else
		http_reply_al_error(req, err);
}

bool room_remote_alias_lookup(struct http_req *req, const char *alias)
{
	if (!req->app->federation || !alias || alias[0] != '#' || !server_of(alias) ||
	    federation_is_local(req->app, server_of(alias)))
		return false;
	if (federation_query_directory(req->app, alias, req->worker->base, alias_done, req) < 0)
		http_reply_error(req, 400, "M_INVALID_PARAM", "Cannot look up %s", alias);
	return true;
}
