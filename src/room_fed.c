#include "room_fed.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"
#include "event.h"
#include "room.h"
#include "room_auth.h"
#include "room_dag.h"

json_t *room_fed_pdu(const char *json_text, const char *version)
{
	struct event_rules r;
	json_t *pdu = json_loads(json_text, JSON_DECODE_ANY, NULL);
	if (!json_is_object(pdu)) {
		json_decref(pdu);
		return NULL;
	}
	json_object_del(pdu, "unsigned");
	if (event_rules_for(version, &r) == 0 && r.id_format >= 3)
		json_object_del(pdu, "event_id");
	return pdu;
}

static char *ids_text(json_t *ids, size_t max)
{
	json_t *a = json_array();
	size_t i;
	json_t *v;
	json_array_foreach(ids, i, v)
	{
		if (i >= max)
			break;
		if (json_is_string(v) && strlen(json_string_value(v)) < EVENT_ID_MAX)
			json_array_append(a, v);
	}
	char *t = cjson_encode(a, NULL, NULL);
	json_decref(a);
	return t;
}

int room_fed_server_may_read(struct db *db, const char *room_id, const char *server, struct al_error *err)
{
	const char *p[] = {room_id, server};
	PGresult *r = db_exec(db, err,
			      "SELECT (SELECT 1 FROM rooms WHERE room_id = $1), EXISTS (SELECT 1 FROM room_memberships "
			      "WHERE room_id = $1 AND substring(user_id from position(':' in user_id) + 1) = $2), "
			      "EXISTS (SELECT 1 FROM current_state c JOIN events e ON e.event_id = c.event_id "
			      "WHERE c.room_id = $1 AND c.type = 'm.room.history_visibility' AND c.state_key = '' "
			      "AND e.json::jsonb->'content'->>'history_visibility' = 'world_readable')",
			      2, p);
	if (!r)
		return -1;
	int rc;
	if (PQgetisnull(r, 0, 0))
		rc = al_error_set(err, 404, "M_NOT_FOUND", "Unknown room %s", room_id);
	else
		rc = PQgetvalue(r, 0, 1)[0] == 't' || PQgetvalue(r, 0, 2)[0] == 't';
	PQclear(r);
	return rc;
}

json_t *room_fed_event(struct db *db, const char *event_id, char *room_id_out, struct al_error *err)
{
	const char *p[] = {event_id};
	PGresult *r = db_exec(db, err,
			      "SELECT e.json, e.room_id, r.room_version, coalesce(u.erased, false) FROM events e "
			      "JOIN rooms r ON r.room_id = e.room_id LEFT JOIN users u ON u.user_id = e.sender "
			      "WHERE e.event_id = $1 AND NOT e.rejected",
			      1, p);
	if (!r)
		return NULL;
	json_t *pdu = NULL;
	if (PQntuples(r) == 1) {
		pdu = room_fed_pdu(PQgetvalue(r, 0, 0), PQgetvalue(r, 0, 2));
		snprintf(room_id_out, 256, "%s", PQgetvalue(r, 0, 1));
		struct event_rules rules;
		/* an erased sender's events go out redacted (hashes and signatures kept) */
		if (pdu && PQgetvalue(r, 0, 3)[0] == 't' && event_rules_for(PQgetvalue(r, 0, 2), &rules) == 0) {
			json_t *red = event_redact(pdu, &rules);
			json_decref(pdu);
			pdu = red;
		}
	}
	PQclear(r);
	if (!pdu)
		al_error_set(err, 404, "M_NOT_FOUND", "Event not found");
	return pdu;
}

int room_fed_state_ids(struct db *db, const char *room_id, const char *event_id, json_t **pdu_ids,
		       json_t **auth_chain_ids, struct al_error *err)
{
	*pdu_ids = *auth_chain_ids = NULL;
	/* the state after the event, and what its key held after its first
	 * prev event (the state before it, for a state event) */
	const char *p[] = {room_id, event_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT e.state_group, e.type, e.state_key, (SELECT p.state_group FROM event_edges x "
		"JOIN events p ON p.event_id = x.prev_event_id WHERE x.event_id = e.event_id "
		"AND p.state_group IS NOT NULL ORDER BY p.depth DESC LIMIT 1) "
		"FROM events e WHERE e.room_id = $1 AND e.event_id = $2 AND NOT e.outlier AND NOT e.rejected",
		2, p);
	if (!r)
		return -1;
	if (PQntuples(r) != 1 || PQgetisnull(r, 0, 0)) {
		PQclear(r);
		return al_error_set(err, 404, "M_NOT_FOUND", "No state known at event %s", event_id);
	}
	int64_t g = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	int64_t pg = PQgetisnull(r, 0, 3) ? 0 : strtoll(PQgetvalue(r, 0, 3), NULL, 10);
	char key[ROOM_AUTH_KEY_MAX + 1] = "";
	bool is_state = !PQgetisnull(r, 0, 2);
	if (is_state)
		room_auth_key(PQgetvalue(r, 0, 1), PQgetvalue(r, 0, 2), key, sizeof(key));
	PQclear(r);
	json_t *st[1];
	if (room_dag_group_states(db, &g, 1, st, err) < 0)
		return -1;
	if (is_state && key[0]) {
		json_t *prevv = NULL;
		if (pg > 0) {
			const char *kl[] = {key};
			prevv = room_dag_group_lookup(db, pg, kl, 1, err);
		}
		json_t *old = prevv ? json_object_get(prevv, key) : NULL;
		if (old)
			json_object_set(st[0], key, old);
		else
			json_object_del(st[0], key);
		json_decref(prevv);
	}
	json_t *ids = json_array();
	const char *k;
	json_t *v;
	json_object_foreach(st[0], k, v)
	{
		json_array_append(ids, v);
	}
	json_decref(st[0]);
	char *text = ids_text(ids, (size_t)-1);
	if (!text) {
		json_decref(ids);
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	const char *q[] = {text, room_id};
	r = db_exec(db, err,
		    "WITH RECURSIVE s AS (SELECT jsonb_array_elements_text($1::jsonb) AS id), "
		    "c(id) AS (SELECT a.auth_event_id FROM event_auth a JOIN s ON a.event_id = s.id "
		    "UNION SELECT a.auth_event_id FROM event_auth a JOIN c ON a.event_id = c.id) "
		    "SELECT c.id FROM c JOIN events e ON e.event_id = c.id WHERE e.room_id = $2",
		    2, q);
	free(text);
	if (!r) {
		json_decref(ids);
		return -1;
	}
	json_t *chain = json_array();
	for (int i = 0; i < PQntuples(r); i++)
		json_array_append_new(chain, json_string(PQgetvalue(r, i, 0)));
	PQclear(r);
	*pdu_ids = ids;
	*auth_chain_ids = chain;
	return 0;
}

int room_fed_pdus(struct db *db, const char *room_id, json_t *ids, json_t **pdus, json_t **chain, struct al_error *err)
{
	*pdus = NULL;
	if (chain)
		*chain = NULL;
	char *text = ids_text(ids, (size_t)-1);
	if (!text)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {text, room_id, chain ? "t" : "f"};
	PGresult *r = db_exec(
		db, err,
		"WITH RECURSIVE s AS (SELECT jsonb_array_elements_text($1::jsonb) AS id), "
		"c(id) AS (SELECT a.auth_event_id FROM event_auth a JOIN s ON a.event_id = s.id "
		"WHERE $3::boolean UNION SELECT a.auth_event_id FROM event_auth a JOIN c ON a.event_id = c.id), "
		"x AS (SELECT id, true AS asked FROM s UNION ALL SELECT id, false FROM c) "
		"SELECT e.json, x.asked, r.room_version FROM x JOIN events e ON e.event_id = x.id "
		"JOIN rooms r ON r.room_id = e.room_id WHERE e.room_id = $2 ORDER BY e.depth, e.event_id",
		3, p);
	free(text);
	if (!r)
		return -1;
	json_t *a = json_array(), *b = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = room_fed_pdu(PQgetvalue(r, i, 0), PQgetvalue(r, i, 2));
		if (pdu)
			json_array_append_new(PQgetvalue(r, i, 1)[0] == 't' ? a : b, pdu);
	}
	PQclear(r);
	*pdus = a;
	if (chain)
		*chain = b;
	else
		json_decref(b);
	return 0;
}

json_t *room_fed_event_auth(struct db *db, const char *room_id, const char *event_id, struct al_error *err)
{
	const char *p[] = {event_id, room_id};
	PGresult *r = db_exec(db, err,
			      "WITH RECURSIVE c(id) AS (SELECT auth_event_id FROM event_auth WHERE event_id = $1 "
			      "UNION SELECT a.auth_event_id FROM event_auth a JOIN c ON a.event_id = c.id) "
			      "SELECT e.json, r.room_version FROM c JOIN events e ON e.event_id = c.id "
			      "JOIN rooms r ON r.room_id = e.room_id WHERE e.room_id = $2 ORDER BY e.depth",
			      2, p);
	if (!r)
		return NULL;
	json_t *a = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = room_fed_pdu(PQgetvalue(r, i, 0), PQgetvalue(r, i, 1));
		if (pdu)
			json_array_append_new(a, pdu);
	}
	PQclear(r);
	return a;
}

static json_t *pdu_rows(PGresult *r, int col_json, int col_version)
{
	json_t *a = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = room_fed_pdu(PQgetvalue(r, i, col_json), PQgetvalue(r, i, col_version));
		if (pdu)
			json_array_append_new(a, pdu);
	}
	return a;
}

json_t *room_fed_backfill(struct db *db, const char *room_id, json_t *v, int limit, struct al_error *err)
{
	char *text = ids_text(v, ROOM_FED_MAX_IDS);
	if (!text) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit < 1 ? 1 : limit > ROOM_FED_MAX_BACKFILL ? ROOM_FED_MAX_BACKFILL : limit);
	const char *p[] = {text, room_id, lim};
	/* walk prev edges back from v: a bounded breadth-first search (the
	 * depth of the walk is capped at the limit) */
	PGresult *r = db_exec(
		db, err,
		"WITH RECURSIVE w(id, n) AS (SELECT jsonb_array_elements_text($1::jsonb), 0 "
		"UNION SELECT x.prev_event_id, w.n + 1 FROM event_edges x JOIN w ON x.event_id = w.id "
		"WHERE w.n < $3::int) "
		"SELECT e.json, r.room_version FROM (SELECT DISTINCT id FROM w) d JOIN events e ON e.event_id = d.id "
		"JOIN rooms r ON r.room_id = e.room_id WHERE e.room_id = $2 AND NOT e.rejected "
		"ORDER BY e.depth DESC, e.event_id LIMIT $3::int",
		3, p);
	free(text);
	if (!r)
		return NULL;
	json_t *a = pdu_rows(r, 0, 1);
	PQclear(r);
	return a;
}

json_t *room_fed_missing(struct db *db, const char *room_id, json_t *earliest, json_t *latest, int limit,
			 long min_depth, struct al_error *err)
{
	char *e = ids_text(earliest, ROOM_FED_MAX_IDS), *l = ids_text(latest, ROOM_FED_MAX_IDS);
	if (!e || !l) {
		free(e);
		free(l);
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	char lim[16], md[24];
	snprintf(lim, sizeof(lim), "%d", limit < 1 ? 1 : limit > ROOM_FED_MAX_MISSING ? ROOM_FED_MAX_MISSING : limit);
	snprintf(md, sizeof(md), "%ld", min_depth);
	const char *p[] = {l, e, room_id, lim, md};
	PGresult *r = db_exec(db, err,
			      "WITH RECURSIVE stop AS (SELECT jsonb_array_elements_text($2::jsonb) AS id), "
			      "w(id, n) AS (SELECT x.prev_event_id, 1 FROM event_edges x "
			      "WHERE x.event_id IN (SELECT jsonb_array_elements_text($1::jsonb)) "
			      "AND x.prev_event_id NOT IN (SELECT id FROM stop) "
			      "UNION SELECT x.prev_event_id, w.n + 1 FROM event_edges x JOIN w ON x.event_id = w.id "
			      "WHERE w.n < $4::int AND x.prev_event_id NOT IN (SELECT id FROM stop)) "
			      "SELECT e.json, r.room_version FROM (SELECT id, min(n) AS n FROM w GROUP BY id) d "
			      "JOIN events e ON e.event_id = d.id JOIN rooms r ON r.room_id = e.room_id "
			      "WHERE e.room_id = $3 AND e.depth >= $5::bigint AND NOT e.rejected "
			      "AND e.event_id NOT IN (SELECT jsonb_array_elements_text($1::jsonb)) "
			      "ORDER BY d.n, e.depth DESC LIMIT $4::int",
			      5, p);
	free(e);
	free(l);
	if (!r)
		return NULL;
	json_t *a = pdu_rows(r, 0, 1);
	PQclear(r);
	/* oldest first */
	json_t *out = json_array();
	for (size_t i = json_array_size(a); i > 0; i--)
		json_array_append(out, json_array_get(a, i - 1));
	json_decref(a);
	return out;
}

json_t *room_fed_joined_servers(struct db *db, const char *room_id, struct al_error *err)
{
	const char *p[] = {room_id};
	return db_exec_strings(
		db, err,
		"SELECT DISTINCT substring(user_id from position(':' in user_id) + 1) FROM room_memberships "
		"WHERE room_id = $1 AND membership = 'join' ORDER BY 1",
		1, p);
}

json_t *room_fed_stripped_state(struct db *db, const char *room_id, const char *sender, struct al_error *err)
{
	const char *p[] = {room_id, sender};
	PGresult *r = db_exec(
		db, err,
		"SELECT e.json FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
		"WHERE cs.room_id = $1 AND ((cs.state_key = '' AND cs.type IN ('m.room.create', "
		"'m.room.join_rules', 'm.room.name', 'm.room.avatar', 'm.room.canonical_alias', "
		"'m.room.encryption', 'm.room.topic')) OR (cs.type = 'm.room.member' AND cs.state_key = $2))",
		2, p);
	if (!r)
		return NULL;
	json_t *a = json_array();
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *pdu = json_loads(PQgetvalue(r, i, 0), JSON_DECODE_ANY, NULL);
		if (pdu)
			json_array_append_new(a, json_pack("{s:O, s:O, s:O, s:O}", "type", json_object_get(pdu, "type"),
							   "state_key", json_object_get(pdu, "state_key"), "sender",
							   json_object_get(pdu, "sender"), "content",
							   json_object_get(pdu, "content")));
		json_decref(pdu);
	}
	PQclear(r);
	return a;
}

int room_fed_inviter_server(struct db *db, const char *room_id, const char *user_id, char *out, struct al_error *err)
{
	out[0] = 0;
	const char *p[] = {room_id, user_id};
	PGresult *r = db_exec(db, err,
			      "SELECT e.sender FROM room_memberships m JOIN events e ON e.event_id = m.event_id "
			      "WHERE m.room_id = $1 AND m.user_id = $2 AND m.membership = 'invite'",
			      2, p);
	if (!r)
		return -1;
	if (PQntuples(r) == 1) {
		const char *s = room_dag_server_of(PQgetvalue(r, 0, 0));
		if (s)
			snprintf(out, 256, "%s", s);
	}
	PQclear(r);
	return 0;
}

int room_fed_membership(struct db *db, const char *room_id, const char *user_id, char *out, struct al_error *err)
{
	out[0] = 0;
	const char *p[] = {room_id, user_id};
	PGresult *r = db_exec(db, err, "SELECT membership FROM room_memberships WHERE room_id = $1 AND user_id = $2", 2,
			      p);
	if (!r)
		return -1;
	if (PQntuples(r) == 1)
		snprintf(out, 16, "%s", PQgetvalue(r, 0, 0));
	PQclear(r);
	return 0;
}
