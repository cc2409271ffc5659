#include "room_visibility.h"

#include <stdlib.h>
#include <string.h>

#include "room.h"

static bool is(const char *a, const char *b)
{
	return a && strcmp(a, b) == 0;
}

bool room_visibility_allowed(const char *hv, const char *membership, bool joined_later)
{
	if (is(hv, "world_readable") || is(membership, "join"))
		return true;
	if (is(hv, "invited"))
		return is(membership, "invite");
	if (is(hv, "joined"))
		return false;
	return joined_later; /* shared, unset or unknown */
}

/* Per event: history_visibility and the user's membership after it (ha,
 * ma) and, for a visibility event or her own member event, before it (hb,
 * mb: the group of the room's previous stream event); whether she has a
 * join event at or after it. The groups are walked once each, for the two
 * keys only (state_group_edits' primary key); every step is a key lookup
 * whatever the statistics say (OFFSET 0 keeps a LATERAL a parameterised
 * scan), as the sync queries do. Last: whether it is her own member event. */
#define VIS_SQL                                                                                                        \
	"WITH RECURSIVE ev AS MATERIALIZED (SELECT q.ord, e.room_id, e.stream_ordering s, e.state_group g, "           \
	"CASE WHEN (e.type = 'm.room.history_visibility' AND e.state_key = '') "                                       \
	"OR (e.type = 'm.room.member' AND e.state_key = $1) THEN (SELECT p.state_group FROM events p "                 \
	"WHERE (p.room_id, p.stream_ordering) < (e.room_id, e.stream_ordering) "                                       \
	"AND (p.room_id, p.stream_ordering) > (e.room_id, 0) AND p.state_group IS NOT NULL "                           \
	"ORDER BY p.room_id DESC, p.stream_ordering DESC LIMIT 1) END pg, "                                            \
	"(e.type = 'm.room.member' AND e.state_key = $1) own "                                                         \
	"FROM unnest($2::text[]) WITH ORDINALITY q(id, ord) CROSS JOIN LATERAL (SELECT e.room_id, e.stream_ordering, " \
	"e.state_group, e.type, e.state_key FROM events e WHERE e.event_id = q.id OFFSET 0) e), "                      \
	"grp AS (SELECT g x FROM ev WHERE g IS NOT NULL UNION SELECT pg FROM ev WHERE pg IS NOT NULL), "               \
	"chain(origin, id, lvl) AS (SELECT x, x, 0 FROM grp UNION ALL SELECT c.origin, s.prev_group, c.lvl + 1 "       \
	"FROM chain c CROSS JOIN LATERAL (SELECT prev_group FROM state_groups WHERE id = c.id "                        \
	"AND prev_group IS NOT NULL OFFSET 0) s), "                                                                    \
	"st AS (SELECT DISTINCT ON (c.origin, x.type) c.origin, x.type, x.event_id FROM chain c "                      \
	"CROSS JOIN LATERAL (SELECT x.type, x.event_id FROM state_group_edits x WHERE x.state_group = c.id "           \
	"AND ((x.type = 'm.room.history_visibility' AND x.state_key = '') "                                            \
	"OR (x.type = 'm.room.member' AND x.state_key = $1)) OFFSET 0) x ORDER BY c.origin, x.type, c.lvl), "          \
	"val AS (SELECT st.origin, st.type, (SELECT (j.json::jsonb) -> 'content' ->> (CASE WHEN st.type = "            \
	"'m.room.member' THEN 'membership' ELSE 'history_visibility' END) FROM events j "                              \
	"WHERE j.event_id = st.event_id) v FROM st), "                                                                 \
	"lj AS (SELECT r.room_id, (SELECT max(m.stream_ordering) FROM events m WHERE m.room_id = r.room_id "           \
	"AND m.type = 'm.room.member' AND m.state_key = $1 AND m.stream_ordering > 0 "                                 \
	"AND (m.json::jsonb) -> 'content' ->> 'membership' = 'join') j FROM (SELECT DISTINCT room_id FROM ev) r) "     \
	"SELECT ev.ord, ha.v, ma.v, hb.v, mb.v, ev.pg IS NOT NULL, ev.s <= coalesce(lj.j, 0), ev.own FROM ev "         \
	"LEFT JOIN val ha ON ha.origin = ev.g AND ha.type = 'm.room.history_visibility' "                              \
	"LEFT JOIN val ma ON ma.origin = ev.g AND ma.type = 'm.room.member' "                                          \
	"LEFT JOIN val hb ON hb.origin = ev.pg AND hb.type = 'm.room.history_visibility' "                             \
	"LEFT JOIN val mb ON mb.origin = ev.pg AND mb.type = 'm.room.member' "                                         \
	"LEFT JOIN lj ON lj.room_id = ev.room_id"

static const char *val(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

int room_visibility_filter(struct db *db, const char *user_id, const char *const *event_ids, int n, bool *visible,
			   struct al_error *err)
{
	for (int i = 0; i < n; i++)
		visible[i] = false;
	if (n <= 0)
		return 0;
	char *arr = room_pg_array(event_ids, n);
	if (!arr)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {user_id, arr};
	PGresult *r = db_exec_prepared(db, err, NULL, "room_visibility", VIS_SQL, 2, p);
	free(arr);
	if (!r)
		return -1;
	for (int row = 0; row < PQntuples(r); row++) {
		bool later = PQgetvalue(r, row, 6)[0] == 't';
		bool ok = room_visibility_allowed(val(r, row, 1), val(r, row, 2), later);
		if (!ok && PQgetvalue(r, row, 5)[0] == 't')
			ok = room_visibility_allowed(val(r, row, 3), val(r, row, 4), later);
		/* her own membership events, whatever the state (as Synapse: a
		 * rejected invite's leave, maybe out of band, shows the room go) */
		ok = ok || PQgetvalue(r, row, 7)[0] == 't';
		long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
		if (ord >= 1 && ord <= n)
			visible[ord - 1] = ok;
	}
	PQclear(r);
	return 0;
}
