#include "room_directory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "room.h"
#include "room_auth.h"

/* Tokens: "p<offset>", an offset into the ordered list. */
static int parse_token(const char *tok, long *offset)
{
	if (!tok || tok[0] != 'p' || !tok[1] || strlen(tok) > 10 || strspn(tok + 1, "0123456789") != strlen(tok + 1))
		return -1;
	*offset = strtol(tok + 1, NULL, 10);
	return 0;
}

static void format_token(long offset, char *out, size_t len)
{
	snprintf(out, len, "p%ld", offset);
}

json_t *room_directory_list(struct db *db, int limit, const char *since, const char *search, struct al_error *err)
{
	long offset = 0;
	if (since && *since && parse_token(since, &offset) < 0) {
		al_error_set(err, 400, "M_INVALID_PARAM", "malformed since token");
		return NULL;
	}
	if (limit <= 0 || limit > ROOM_DIRECTORY_MAX_LIMIT)
		limit = ROOM_DIRECTORY_MAX_LIMIT;
	if (search && (!*search || strlen(search) > ROOM_DIRECTORY_SEARCH_MAX))
		search = NULL;
	char s_off[24], s_lim[24];
	snprintf(s_off, sizeof(s_off), "%ld", offset);
	snprintf(s_lim, sizeof(s_lim), "%d", limit + 1);
	const char *p[] = {s_off, s_lim, search};
	/* One row per public room with its display state and member count;
	 * the extra row tells whether a next page exists. */
	PGresult *r = db_exec(
		db, err,
		"WITH pub AS (SELECT r.room_id, "
		"(SELECT count(*) FROM room_memberships m WHERE m.room_id = r.room_id AND m.membership = 'join') AS n, "
		"s.* FROM rooms r CROSS JOIN LATERAL (SELECT "
		"max(e.json::jsonb #>> '{content,name}') FILTER (WHERE cs.type = 'm.room.name') AS name, "
		"max(e.json::jsonb #>> '{content,topic}') FILTER (WHERE cs.type = 'm.room.topic') AS topic, "
		"max(e.json::jsonb #>> '{content,alias}') FILTER (WHERE cs.type = 'm.room.canonical_alias') AS alias, "
		"max(e.json::jsonb #>> '{content,url}') FILTER (WHERE cs.type = 'm.room.avatar') AS avatar, "
		"max(e.json::jsonb #>> '{content,join_rule}') FILTER (WHERE cs.type = 'm.room.join_rules') AS "
		"join_rule, "
		"max(e.json::jsonb #>> '{content,history_visibility}') "
		"FILTER (WHERE cs.type = 'm.room.history_visibility') AS hist, "
		"max(e.json::jsonb #>> '{content,guest_access}') FILTER (WHERE cs.type = 'm.room.guest_access') AS "
		"guest, "
		"max(e.json::jsonb #>> '{content,type}') FILTER (WHERE cs.type = 'm.room.create') AS room_type "
		"FROM current_state cs JOIN events e ON e.event_id = cs.event_id WHERE cs.room_id = r.room_id "
		"AND cs.state_key = '' AND cs.type IN ('m.room.name', 'm.room.topic', 'm.room.canonical_alias', "
		"'m.room.avatar', 'm.room.join_rules', 'm.room.history_visibility', 'm.room.guest_access', "
		"'m.room.create')) s WHERE r.is_public) "
		"SELECT room_id, n, name, topic, alias, avatar, join_rule, hist, guest, room_type, count(*) OVER () "
		"FROM pub WHERE $3::text IS NULL OR position(lower($3::text) IN lower(concat_ws(' ', name, topic, "
		"alias))) > 0 "
		"ORDER BY n DESC, room_id OFFSET $1::bigint LIMIT $2::int",
		3, p);
	if (!r)
		return NULL;
	int rows = PQntuples(r), take = rows > limit ? limit : rows;
	json_t *chunk = json_array();
	for (int i = 0; chunk && i < take; i++) {
		const char *hist = PQgetisnull(r, i, 7) ? "" : PQgetvalue(r, i, 7);
		const char *guest = PQgetisnull(r, i, 8) ? "" : PQgetvalue(r, i, 8);
		json_t *room = json_pack("{s:s, s:I, s:b, s:b}", "room_id", PQgetvalue(r, i, 0), "num_joined_members",
					 (json_int_t)strtoll(PQgetvalue(r, i, 1), NULL, 10), "world_readable",
					 strcmp(hist, "world_readable") == 0, "guest_can_join",
					 strcmp(guest, "can_join") == 0);
		static const char *const keys[] = {"name", "topic", "canonical_alias", "avatar_url", "join_rule"};
		for (int k = 0; room && k < 5; k++)
			if (!PQgetisnull(r, i, 2 + k))
				json_object_set_new(room, keys[k], json_string(PQgetvalue(r, i, 2 + k)));
		if (room && !PQgetisnull(r, i, 9))
			json_object_set_new(room, "room_type", json_string(PQgetvalue(r, i, 9)));
		if (room)
			json_array_append_new(chunk, room);
	}
	long total = rows > 0 ? strtol(PQgetvalue(r, 0, 10), NULL, 10) : 0;
	PQclear(r);
	json_t *out = chunk ? json_pack("{s:o, s:I}", "chunk", chunk, "total_room_count_estimate", (json_int_t)total)
			    : NULL;
	if (!out) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	char tok[24];
	if (rows > limit) {
		format_token(offset + limit, tok, sizeof(tok));
		json_object_set_new(out, "next_batch", json_string(tok));
	}
	if (offset > 0) {
		format_token(offset > limit ? offset - limit : 0, tok, sizeof(tok));
		json_object_set_new(out, "prev_batch", json_string(tok));
	}
	return out;
}

int room_directory_get_visibility(struct db *db, const char *room_id, bool *is_public, struct al_error *err)
{
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err, "SELECT is_public FROM rooms WHERE room_id = $1", 1, p);
	if (!r)
		return -1;
	int n = PQntuples(r);
	if (n == 1)
		*is_public = PQgetvalue(r, 0, 0)[0] == 't';
	PQclear(r);
	return n == 1 ? 0 : al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
}

int room_directory_set_visibility(struct db *db, const char *room_id, const char *user_id, bool is_public,
				  struct al_error *err)
{
	const char *p[] = {room_id, user_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT cs.type, cs.state_key, e.json FROM rooms r JOIN current_state cs ON cs.room_id = r.room_id "
		"JOIN events e ON e.event_id = cs.event_id WHERE r.room_id = $1 AND ("
		"(cs.state_key = '' AND cs.type IN ('m.room.create', 'm.room.power_levels')) "
		"OR (cs.type = 'm.room.member' AND cs.state_key = $2))",
		2, p);
	if (!r)
		return -1;
	json_t *state = json_object();
	char key[ROOM_AUTH_KEY_MAX + 1];
	for (int i = 0; state && i < PQntuples(r); i++) {
		json_t *pdu = json_loads(PQgetvalue(r, i, 2), 0, NULL);
		if (pdu && room_auth_key(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), key, sizeof(key)) == 0)
			json_object_set(state, key, pdu);
		json_decref(pdu);
	}
	PQclear(r);
	if (!state)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	bool known = room_auth_state_get(state, "m.room.create", "") != NULL;
	bool ok = strcmp(room_auth_membership(state, user_id), "join") == 0 &&
		  room_auth_user_level(state, user_id) >= room_auth_event_level(state, "m.room.canonical_alias", true);
	json_decref(state);
	if (!known)
		return al_error_set(err, 404, "M_NOT_FOUND", "Unknown room");
	if (!ok)
		return al_error_set(err, 403, "M_FORBIDDEN",
				    "You may not change this room's visibility in the directory");
	const char *u[] = {room_id, is_public ? "t" : "f"};
	r = db_exec(db, err, "UPDATE rooms SET is_public = $2::boolean WHERE room_id = $1", 2, u);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

/* "#localpart:server" of at most 255 bytes. */
static bool alias_valid(const char *a)
{
	const char *colon = a ? strchr(a, ':') : NULL;
	return a && a[0] == '#' && colon && colon > a + 1 && colon[1] && strlen(a) <= 255;
}

int room_directory_check_canonical(struct db *db, const char *server_name, const char *room_id, json_t *content,
				   struct al_error *err)
{
	json_t *alias = json_object_get(content, "alias");
	json_t *alt = json_object_get(content, "alt_aliases");
	if (alias && !json_is_null(alias) && !json_is_string(alias))
		return al_error_set(err, 400, "M_INVALID_PARAM", "alias must be a string");
	if (alt && !json_is_array(alt))
		return al_error_set(err, 400, "M_INVALID_PARAM", "alt_aliases must be a list of aliases");
	if (json_array_size(alt) > ROOM_DIRECTORY_ALT_ALIASES_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "at most %d alt_aliases",
				    ROOM_DIRECTORY_ALT_ALIASES_MAX);
	const char *local[ROOM_DIRECTORY_ALT_ALIASES_MAX + 1];
	int n = 0;
	size_t suffix = strlen(server_name);
	for (size_t i = 0; i <= json_array_size(alt); i++) {
		json_t *v = i == 0 ? alias : json_array_get(alt, i - 1);
		if (i == 0 && (!v || json_is_null(v)))
			continue;
		const char *a = json_string_value(v);
		if (!alias_valid(a))
			return al_error_set(err, 400, "M_INVALID_PARAM", "%s is not a valid room alias",
					    a ? a : "an alt_aliases entry");
		size_t len = strlen(a);
		if (len > suffix + 1 && a[len - suffix - 1] == ':' && strcmp(a + len - suffix, server_name) == 0)
			local[n++] = a;
	}
	if (n == 0)
		return 0;
	char *arr = room_pg_array(local, n);
	if (!arr)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {arr, room_id};
	PGresult *r = db_exec(db, err,
			      "SELECT a FROM unnest($1::text[]) AS a WHERE NOT EXISTS (SELECT 1 FROM room_aliases ra "
			      "WHERE ra.alias = a AND ra.room_id = $2) LIMIT 1",
			      2, p);
	free(arr);
	if (!r)
		return -1;
	int bad = PQntuples(r);
	if (bad)
		al_error_set(err, 400, "M_BAD_ALIAS", "Room alias %s does not point to this room", PQgetvalue(r, 0, 0));
	PQclear(r);
	return bad ? -1 : 0;
}

json_t *room_directory_canonical_without(struct db *db, const char *room_id, const char *alias, struct al_error *err)
{
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err,
			      "SELECT e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
			      "WHERE cs.room_id = $1 AND cs.type = 'm.room.canonical_alias' AND cs.state_key = ''",
			      1, p);
	if (!r)
		return NULL;
	json_t *pdu = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
	PQclear(r);
	json_t *c = json_object_get(pdu, "content");
	json_t *out = json_is_object(c) ? json_deep_copy(c) : NULL;
	json_decref(pdu);
	if (!out)
		return NULL;
	bool changed = false;
	const char *cur = json_string_value(json_object_get(out, "alias"));
	if (cur && strcmp(cur, alias) == 0) {
		json_object_del(out, "alias");
		changed = true;
	}
	json_t *alt = json_object_get(out, "alt_aliases");
	for (size_t i = json_array_size(alt); i-- > 0;) {
		const char *a = json_string_value(json_array_get(alt, i));
		if (a && strcmp(a, alias) == 0) {
			json_array_remove(alt, i);
			changed = true;
		}
	}
	if (!changed) {
		json_decref(out);
		return NULL;
	}
	return out;
}
