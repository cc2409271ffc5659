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
 * scan), as the sync queries do. Last: whether it is her own member event.
 * Rows: the events (ord, group, previous group, joined later, own) and the
 * values per group (NULL ord, group, type, value), matched in C: joined in
 * SQL the planner, told ten rows by unnest, compared every event with every
 * value four times (20 ms of a 100-room initial sync). */
#define VIS_SQL                                                                                                        \
	"WITH RECURSIVE ev AS MATERIALIZED (SELECT q.ord, e.room_id, e.stream_ordering s, e.state_group g, "           \
	"CASE WHEN (e.type = 'm.room.history_visibility' AND e.state_key = '') "                                       \
	"OR (e.type = 'm.room.member' AND e.state_key = $1) THEN (SELECT p.state_group FROM events p "                 \
	"WHERE p.room_id = e.room_id AND p.stream_ordering < e.stream_ordering "                                       \
	"AND p.stream_ordering > 0 AND p.state_group IS NOT NULL "                                                     \
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
	"SELECT ev.ord, ev.g, ev.pg, ev.s <= coalesce(lj.j, 0), ev.own, NULL, NULL FROM ev "                           \
	"LEFT JOIN lj ON lj.room_id = ev.room_id "                                                                     \
	"UNION ALL SELECT NULL, val.origin, NULL, NULL, NULL, val.type, val.v FROM val"

static const char *val(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* A state group's history_visibility and the user's membership in it. */
struct group_values {
	long long group;
	const char *hv, *membership;
};

static int by_group(const void *a, const void *b)
{
	long long x = ((const struct group_values *)a)->group, y = ((const struct group_values *)b)->group;
	return (x > y) - (x < y);
}

/* The value rows of r, one entry per group, sorted by group. */
static struct group_values *group_values_of(PGresult *r, int *count)
{
	int rows = PQntuples(r), n = 0;
	struct group_values *gv = calloc((size_t)rows + 1, sizeof(*gv));
	if (!gv)
		return NULL;
	for (int row = 0; row < rows; row++)
		if (PQgetisnull(r, row, 0))
			gv[n++] = (struct group_values){.group = strtoll(PQgetvalue(r, row, 1), NULL, 10)};
	qsort(gv, (size_t)n, sizeof(*gv), by_group);
	int k = 0; /* fold the two types of a group into one entry */
	for (int i = 0; i < n; i++)
		if (k == 0 || gv[k - 1].group != gv[i].group)
			gv[k++] = gv[i];
	for (int row = 0; row < rows; row++) {
		if (!PQgetisnull(r, row, 0))
			continue;
		struct group_values key = {.group = strtoll(PQgetvalue(r, row, 1), NULL, 10)};
		struct group_values *g = bsearch(&key, gv, (size_t)k, sizeof(*gv), by_group);
		if (!g)
			continue;
		if (is(PQgetvalue(r, row, 5), "m.room.member"))
			g->membership = val(r, row, 6);
		else
			g->hv = val(r, row, 6);
	}
	*count = k;
	return gv;
}

static const struct group_values *group_find(const struct group_values *gv, int n, PGresult *r, int row, int col)
{
	static const struct group_values none;
	if (PQgetisnull(r, row, col))
		return &none;
	struct group_values key = {.group = strtoll(PQgetvalue(r, row, col), NULL, 10)};
	const struct group_values *g = bsearch(&key, gv, (size_t)n, sizeof(*gv), by_group);
	return g ? g : &none;
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
	int ngroups = 0;
	struct group_values *gv = group_values_of(r, &ngroups);
	if (!gv) {
		PQclear(r);
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	}
	for (int row = 0; row < PQntuples(r); row++) {
		if (PQgetisnull(r, row, 0))
			continue;
		bool later = PQgetvalue(r, row, 3)[0] == 't';
		const struct group_values *after = group_find(gv, ngroups, r, row, 1);
		bool ok = room_visibility_allowed(after->hv, after->membership, later);
		if (!ok && !PQgetisnull(r, row, 2)) {
			const struct group_values *before = group_find(gv, ngroups, r, row, 2);
			ok = room_visibility_allowed(before->hv, before->membership, later);
		}
		/* her own membership events, whatever the state (as Synapse: a
		 * rejected invite's leave, maybe out of band, shows the room go) */
		ok = ok || PQgetvalue(r, row, 4)[0] == 't';
		long ord = strtol(PQgetvalue(r, row, 0), NULL, 10);
		if (ord >= 1 && ord <= n)
			visible[ord - 1] = ok;
	}
	free(gv);
	PQclear(r);
	return 0;
}
