#include "room_acl.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"
#include "log.h"

#define ACL_NAME_MAX 256

/* Iterative glob with single-star backtracking: O(len(pattern) * len(name)). */
bool room_acl_glob(const char *p, const char *s)
{
	const char *star = NULL, *resume = NULL;
	while (*s) {
		if (*p == '*') {
			star = p++;
			resume = s;
		} else if (*p == '?' || (*p && tolower((unsigned char)*p) == tolower((unsigned char)*s))) {
			p++;
			s++;
		} else if (star) {
			p = star + 1;
			s = ++resume;
		} else {
			return false;
		}
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* server without its port into out: "host:port" -> "host", "[v6]:port" -> "[v6]". */
static void strip_port(const char *server, char *out, size_t len)
{
	snprintf(out, len, "%s", server);
	char *end = out[0] == '[' ? strchr(out, ']') : out;
	char *colon = end ? strrchr(end, ':') : NULL;
	if (colon)
		*colon = '\0';
}

static bool is_ip_literal(const char *host)
{
	if (host[0] == '[')
		return true;
	bool digits = false;
	for (const char *c = host; *c; c++) {
		if (isdigit((unsigned char)*c))
			digits = true;
		else if (*c != '.')
			return false;
	}
	return digits;
}

static bool list_matches(const json_t *list, const char *host)
{
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		if (i >= ROOM_ACL_MAX_ENTRIES)
			break;
		const char *pat = json_string_value(v);
		if (pat && strlen(pat) < ACL_NAME_MAX && room_acl_glob(pat, host))
			return true;
	}
	return false;
}

bool room_acl_allows(const json_t *content, const char *server)
{
	if (!json_is_object(content) || !server)
		return true;
	char host[ACL_NAME_MAX];
	strip_port(server, host, sizeof(host));
	json_t *ip = json_object_get(content, "allow_ip_literals");
	if (json_is_false(ip) && is_ip_literal(host))
		return false;
	if (list_matches(json_object_get(content, "deny"), host))
		return false;
	return list_matches(json_object_get(content, "allow"), host);
}

#define ACL_SQL                                                                                           \
	"SELECT c.room_id, e.json, c.type FROM current_state c JOIN events e ON e.event_id = c.event_id " \
	"WHERE c.type IN ('m.room.server_acl', 'm.room.create') AND c.state_key = '' AND NOT e.rejected AND "

/* A server ACL row: its rule; a create row: m.federate false keeps every
 * other server out (the room stays with its creator's server). */
static bool row_allows(PGresult *r, int i, const char *server)
{
	json_t *ev = cjson_parse_object(PQgetvalue(r, i, 1), (size_t)PQgetlength(r, i, 1), NULL, NULL);
	json_t *content = json_object_get(ev, "content");
	bool ok = strcmp(PQgetvalue(r, i, 2), "m.room.create") == 0
			  ? !json_is_false(json_object_get(content, "m.federate"))
			  : room_acl_allows(content, server);
	json_decref(ev);
	return ok;
}

int room_acl_check(struct db *db, const char *room_id, const char *server, struct al_error *err)
{
	const char *p[] = {room_id};
	PGresult *r = db_exec(db, err, ACL_SQL "c.room_id = $1", 1, p);
	if (!r)
		return -1;
	bool ok = true;
	for (int i = 0; ok && i < PQntuples(r); i++)
		ok = row_allows(r, i, server);
	PQclear(r);
	return ok ? 0
		  : al_error_set(err, 403, "M_FORBIDDEN",
				 "Server %s may not take part in room %s (its ACL or m.federate)", server, room_id);
}

json_t *room_acl_denied_rooms(struct db *db, const json_t *rooms, const char *server)
{
	json_t *out = json_object();
	json_t *ids = json_array();
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)rooms, k, v)
	{
		json_array_append_new(ids, json_string(k));
	}
	struct al_error err = {0};
	char *text = json_array_size(ids) ? cjson_encode(ids, NULL, &err) : NULL;
	json_decref(ids);
	if (!text)
		return out;
	const char *p[] = {text};
	PGresult *r = db_exec(db, &err, ACL_SQL "c.room_id IN (SELECT jsonb_array_elements_text($1::jsonb))", 1, p);
	free(text);
	if (!r) {
		log_warn("room_acl", "cannot read server ACLs: %s", err.message);
		return out;
	}
	for (int i = 0; i < PQntuples(r); i++)
		if (!row_allows(r, i, server))
			json_object_set_new(out, PQgetvalue(r, i, 0), json_true());
	PQclear(r);
	return out;
}
