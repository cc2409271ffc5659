#include "sync.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cjson.h"
#include "presence.h"
#include "room.h"
#include "room_visibility.h"
#include "typing.h"

static void fmt_i64(char *buf, size_t len, int64_t v)
{
	snprintf(buf, len, "%" PRId64, v);
}

static int64_t col_i64(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? 0 : strtoll(PQgetvalue(r, row, col), NULL, 10);
}

static const char *col_str(PGresult *r, int row, int col)
{
	return PQgetisnull(r, row, col) ? NULL : PQgetvalue(r, row, col);
}

/* ---- tokens ---- */

/* Up to 18 decimal digits from *p (advanced); -1 if none or too many. */
static int64_t parse_digits(const char **p)
{
	int64_t v = 0;
	int n = 0;
	for (; **p >= '0' && **p <= '9'; (*p)++) {
		if (++n > 18)
			return -1;
		v = v * 10 + (**p - '0');
	}
	return n ? v : -1;
}

int sync_pos_parse(const char *tok, struct sync_pos *out)
{
	if (!tok || *tok != 's')
		return -1;
	const char *p = tok + 1;
	out->stream = parse_digits(&p);
	if (out->stream < 0)
		return -1;
	if (!*p) {
		out->typing = 0;
		out->to_device = out->stream;
		return 0;
	}
	if (*p++ != '_' || (out->typing = parse_digits(&p)) < 0 || *p++ != '_' ||
	    (out->to_device = parse_digits(&p)) < 0 || *p)
		return -1;
	return 0;
}

void sync_pos_format(const struct sync_pos *p, char *out, size_t len)
{
	snprintf(out, len, "s%" PRId64 "_%" PRId64 "_%" PRId64, p->stream, p->typing, p->to_device);
}

/* ---- filters ---- */

void sync_filter_clear(struct sync_filter *f)
{
	json_decref(f->doc);
	memset(f, 0, sizeof(*f));
	f->timeline_limit = SYNC_DEFAULT_TIMELINE;
}

/* o[key], if present, as a list of at most 100 strings of at most 255 bytes;
 * with a sigil, each must look like "<sigil>localpart:server" (room IDs for
 * rooms/not_rooms, user IDs for senders/not_senders). */
static int check_id_list(json_t *o, const char *key, char sigil, struct al_error *err)
{
	json_t *a = json_object_get(o, key);
	if (!a)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > 100)
		return al_error_set(err, 400, "M_BAD_JSON", "filter: %s must be a list of strings", key);
	size_t i;
	json_t *v;
	json_array_foreach(a, i, v)
	{
		if (!json_is_string(v) || json_string_length(v) > 255)
			return al_error_set(err, 400, "M_BAD_JSON", "filter: %s must be a list of strings", key);
		const char *s = json_string_value(v);
		if (sigil && (s[0] != sigil || !strchr(s + 1, ':') || s[1] == ':'))
			return al_error_set(err, 400, "M_BAD_JSON", "filter: %s: %s is not a valid %s", key, s,
					    sigil == '!' ? "room ID" : "user ID");
	}
	return 0;
}

static int check_str_list(json_t *o, const char *key, struct al_error *err)
{
	return check_id_list(o, key, 0, err);
}

static int check_event_filter(json_t *o, const char *name, struct al_error *err)
{
	if (!o)
		return 0;
	if (!json_is_object(o))
		return al_error_set(err, 400, "M_BAD_JSON", "filter: %s must be an object", name);
	json_t *lim = json_object_get(o, "limit");
	if (lim && (!json_is_integer(lim) || json_integer_value(lim) < 0))
		return al_error_set(err, 400, "M_BAD_JSON", "filter: %s.limit must be a non-negative integer", name);
	static const struct {
		const char *key;
		char sigil;
	} lists[] = {{"types", 0},         {"not_types", 0}, {"senders", '@'},
		     {"not_senders", '@'}, {"rooms", '!'},   {"not_rooms", '!'}};
	for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++)
		if (check_id_list(o, lists[k].key, lists[k].sigil, err) < 0)
			return -1;
	return 0;
}

int sync_filter_parse(json_t *doc, struct sync_filter *f, struct al_error *err)
{
	sync_filter_clear(f);
	if (!json_is_object(doc))
		return al_error_set(err, 400, "M_BAD_JSON", "filter must be an object");
	json_t *room = json_object_get(doc, "room");
	if (room && !json_is_object(room))
		return al_error_set(err, 400, "M_BAD_JSON", "filter: room must be an object");
	if (check_event_filter(json_object_get(doc, "presence"), "presence", err) < 0 ||
	    check_event_filter(json_object_get(doc, "account_data"), "account_data", err) < 0 ||
	    check_event_filter(json_object_get(room, "timeline"), "room.timeline", err) < 0 ||
	    check_event_filter(json_object_get(room, "state"), "room.state", err) < 0 ||
	    check_event_filter(json_object_get(room, "ephemeral"), "room.ephemeral", err) < 0 ||
	    check_event_filter(json_object_get(room, "account_data"), "room.account_data", err) < 0 ||
	    check_id_list(room, "rooms", '!', err) < 0 || check_id_list(room, "not_rooms", '!', err) < 0)
		return -1;
	json_t *ef = json_object_get(doc, "event_fields");
	if (ef && check_str_list(doc, "event_fields", err) < 0)
		return -1;
	json_t *fmt = json_object_get(doc, "event_format");
	if (fmt && (!json_is_string(fmt) || (strcmp(json_string_value(fmt), "client") != 0 &&
					     strcmp(json_string_value(fmt), "federation") != 0)))
		return al_error_set(err, 400, "M_BAD_JSON", "filter: event_format must be client or federation");
	f->doc = json_incref(doc);
	f->timeline = json_object_get(room, "timeline");
	f->state = json_object_get(room, "state");
	f->ephemeral = json_object_get(room, "ephemeral");
	json_t *lim = json_object_get(f->timeline, "limit");
	if (json_is_integer(lim))
		f->timeline_limit = (int)(json_integer_value(lim) > SYNC_MAX_TIMELINE ? SYNC_MAX_TIMELINE
										      : json_integer_value(lim));
	f->lazy_load_members = json_is_true(json_object_get(json_object_get(room, "state"), "lazy_load_members"));
	f->include_leave = json_is_true(json_object_get(room, "include_leave"));
	return 0;
}

int64_t sync_filter_store(struct db *db, const char *user_id, json_t *doc, struct al_error *err)
{
	struct sync_filter f = {0};
	if (sync_filter_parse(doc, &f, err) < 0)
		return -1;
	sync_filter_clear(&f);
	size_t len;
	char *text = cjson_encode(doc, &len, err);
	if (!text)
		return -1;
	if (len > SYNC_FILTER_MAX_BYTES) {
		free(text);
		return al_error_set(err, 413, "M_TOO_LARGE", "filter too large");
	}
	const char *p[] = {user_id, text};
	PGresult *r = db_exec(db, err, "INSERT INTO user_filters (user_id, json) VALUES ($1, $2) RETURNING filter_id",
			      2, p);
	free(text);
	if (!r)
		return -1;
	int64_t id = col_i64(r, 0, 0);
	PQclear(r);
	return id;
}

json_t *sync_filter_get(struct db *db, const char *user_id, const char *filter_id, struct al_error *err)
{
	size_t n = strlen(filter_id);
	if (n == 0 || n > 18 || strspn(filter_id, "0123456789") != n) {
		al_error_set(err, 404, "M_NOT_FOUND", "No such filter");
		return NULL;
	}
	const char *p[] = {user_id, filter_id};
	PGresult *r = db_exec(db, err, "SELECT json FROM user_filters WHERE user_id = $1 AND filter_id = $2::bigint", 2,
			      p);
	if (!r)
		return NULL;
	json_t *doc = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
	PQclear(r);
	if (!doc)
		al_error_set(err, 404, "M_NOT_FOUND", "No such filter");
	return doc;
}

int sync_filter_load(struct db *db, const char *user_id, const char *param, struct sync_filter *f, struct al_error *err)
{
	sync_filter_clear(f);
	if (!param)
		return 0;
	json_t *doc;
	if (param[0] == '{') {
		doc = cjson_parse_object(param, strlen(param), NULL, err);
		if (!doc)
			return -1;
	} else {
		doc = sync_filter_get(db, user_id, param, err);
		if (!doc)
			return al_error_set(err, 400, "M_INVALID_PARAM", "unknown filter %s", param);
	}
	int rc = sync_filter_parse(doc, f, err);
	json_decref(doc);
	return rc;
}

/* ---- stream ---- */

/* The newest position of each stream (0 when empty); now is the newest
 * of all. A sync skips the parts whose stream did not move after its
 * token: a woken sync after one message runs half the queries. */
struct sync_marks {
	int64_t now, account_data, receipts, presence, memberships;
};

static int sync_marks_read(struct db *db, struct sync_marks *m, struct al_error *err)
{
	PGresult *r = db_exec_prepared(db, err, NULL, "sync_marks",
				       "SELECT coalesce((SELECT max(stream_ordering) FROM events), 0), "
				       "coalesce((SELECT max(stream_ordering) FROM account_data), 0), "
				       "coalesce((SELECT max(stream_ordering) FROM receipts), 0), "
				       "coalesce((SELECT max(stream_ordering) FROM device_inbox), 0), "
				       "coalesce((SELECT max(stream_ordering) FROM presence), 0), "
				       "coalesce((SELECT max(stream_ordering) FROM room_memberships), 0)",
				       0, NULL);
	if (!r)
		return -1;
	int64_t events = col_i64(r, 0, 0), inbox = col_i64(r, 0, 3);
	*m = (struct sync_marks){.account_data = col_i64(r, 0, 1),
				 .receipts = col_i64(r, 0, 2),
				 .presence = col_i64(r, 0, 4),
				 .memberships = col_i64(r, 0, 5)};
	PQclear(r);
	int64_t all[] = {events, m->account_data, m->receipts, inbox, m->presence};
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (all[i] > m->now)
			m->now = all[i];
	return 0;
}

int64_t sync_current_position(struct db *db, struct al_error *err)
{
	struct sync_marks m;
	return sync_marks_read(db, &m, err) < 0 ? -1 : m.now;
}

static bool type_matches(json_t *filter, const char *type)
{
	json_t *types = json_object_get(filter, "types"), *not_types = json_object_get(filter, "not_types");
	size_t i;
	json_t *v;
	json_array_foreach(not_types, i, v)
	{
		const char *t = json_string_value(v);
		size_t n = t ? strlen(t) : 0;
		if (t && (strcmp(t, type) == 0 || (n && t[n - 1] == '*' && strncmp(t, type, n - 1) == 0)))
			return false;
	}
	if (!json_is_array(types))
		return true;
	json_array_foreach(types, i, v)
	{
		const char *t = json_string_value(v);
		size_t n = t ? strlen(t) : 0;
		if (t && (strcmp(t, type) == 0 || (n && t[n - 1] == '*' && strncmp(t, type, n - 1) == 0)))
			return true;
	}
	return false;
}

/* A filter's type list as LIKE patterns ('*' matches anything), as a
 * PostgreSQL text[] literal; NULL when the list is absent. */
static char *like_array(json_t *list)
{
	if (!json_is_array(list))
		return NULL;
	size_t n = json_array_size(list);
	const char **items = calloc(n + 1, sizeof(*items));
	char **bufs = calloc(n + 1, sizeof(*bufs));
	char *out = NULL;
	if (!items || !bufs)
		goto out;
	for (size_t i = 0; i < n; i++) {
		const char *t = json_string_value(json_array_get(list, i));
		size_t len = t ? strlen(t) : 0;
		char *b = malloc(2 * len + 1), *q = b;
		if (!b)
			goto out;
		for (size_t k = 0; k < len; k++) {
			if (t[k] == '*') {
				*q++ = '%';
				continue;
			}
			if (t[k] == '%' || t[k] == '_' || t[k] == '\\')
				*q++ = '\\';
			*q++ = t[k];
		}
		*q = 0;
		bufs[i] = b;
		items[i] = b;
	}
	out = room_pg_array(items, (int)n);
out:
	for (size_t i = 0; bufs && i < n; i++)
		free(bufs[i]);
	free(bufs);
	free(items);
	return out;
}

/* Per-room working data. */
struct sroom {
	const char *room_id;
	char membership[8];
	int64_t mstream; /* position of the membership event */
	int64_t lo, cap; /* timeline window (lo, cap] */
	bool full_state;
	bool has_new;     /* events in (since, cap] */
	json_t *timeline; /* array */
	bool limited;
	int64_t first;   /* stream of the first timeline event */
	json_t *state;   /* array */
	json_t *senders; /* set of timeline senders (lazy loading) */
	json_t *ids;     /* set of timeline event IDs */
	json_t *account_data;
	json_t *ephemeral; /* array */
	json_t *receipts;  /* m.receipt content being built */
};

static void sroom_free(struct sroom *r)
{
	json_decref(r->timeline);
	json_decref(r->state);
	json_decref(r->senders);
	json_decref(r->ids);
	json_decref(r->account_data);
	json_decref(r->ephemeral);
	json_decref(r->receipts);
}

/* rooms are sorted by room_id, bytewise (sync_rooms' ORDER BY ... COLLATE "C") */
static struct sroom *find_room(struct sroom *rooms, int n, const char *room_id)
{
	int lo = 0, hi = n - 1;
	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2, c = strcmp(rooms[mid].room_id, room_id);
		if (c == 0)
			return &rooms[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid - 1;
	}
	return NULL;
}

static bool joined(const struct sroom *sr)
{
	return strcmp(sr->membership, "join") == 0;
}

/* hidden[k] for the timeline rows of r (room_id, event_id, ..., stream in
 * column 6; rows oldest first per room) that the history visibility rules
 * hide from user_id (room_visibility.h). Only the rows a room keeps (its
 * last `limit`) at or before the user's membership event are checked: the
 * events after her join are hers to see. A hidden event that is part of
 * the current state of a room she is in is shown all the same (as
 * Synapse: the current state appears in the timeline whatever the
 * history visibility; SyTest's "Current state appears in timeline in
 * private history"). One query, two when something is hidden; malloc'd. */
/* Un-hide the rows of r that are current state of a room she is joined to. */
static int show_current_state(struct db *db, PGresult *r, struct sroom *rooms, int n, bool *hidden,
			      struct al_error *err)
{
	int nr = PQntuples(r), k = 0;
	const char **ids = calloc((size_t)nr + 1, sizeof(*ids));
	if (!ids)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	for (int i = 0; i < nr; i++) {
		const struct sroom *sr = hidden[i] ? find_room(rooms, n, PQgetvalue(r, i, 0)) : NULL;
		if (sr && joined(sr))
			ids[k++] = PQgetvalue(r, i, 1);
	}
	char *arr = k > 0 ? room_pg_array(ids, k) : NULL;
	free(ids);
	if (k == 0)
		return 0;
	if (!arr)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	const char *p[] = {arr};
	PGresult *cs = db_exec(db, err,
			       "SELECT cs.event_id FROM events e JOIN current_state cs ON cs.room_id = e.room_id "
			       "AND cs.type = e.type AND cs.state_key = e.state_key AND cs.event_id = e.event_id "
			       "WHERE e.event_id = ANY($1::text[]) AND e.state_key IS NOT NULL",
			       1, p);
	free(arr);
	if (!cs)
		return -1;
	for (int j = 0; j < PQntuples(cs); j++)
		for (int i = 0; i < nr; i++)
			if (hidden[i] && strcmp(PQgetvalue(r, i, 1), PQgetvalue(cs, j, 0)) == 0)
				hidden[i] = false;
	PQclear(cs);
	return 0;
}

static bool *timeline_hidden(struct db *db, PGresult *r, struct sroom *rooms, int n, int limit, const char *user_id,
			     struct al_error *err)
{
	int nr = PQntuples(r), k = 0;
	bool *hidden = calloc((size_t)nr + 1, sizeof(*hidden));
	bool *vis = calloc((size_t)nr + 1, sizeof(*vis));
	const char **ids = calloc((size_t)nr + 1, sizeof(*ids));
	int *at = calloc((size_t)nr + 1, sizeof(*at));
	if (!hidden || !vis || !ids || !at) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	for (int i = 0; i < nr;) {
		struct sroom *sr = find_room(rooms, n, PQgetvalue(r, i, 0));
		int j = i;
		while (j < nr && strcmp(PQgetvalue(r, j, 0), PQgetvalue(r, i, 0)) == 0)
			j++;
		for (int x = j - i > limit ? j - limit : i; sr && x < j; x++)
			if (col_i64(r, x, 6) <= sr->mstream) {
				ids[k] = PQgetvalue(r, x, 1);
				at[k++] = x;
			}
		i = j;
	}
	if (k > 0 && room_visibility_filter(db, user_id, ids, k, vis, err) < 0)
		goto fail;
	for (int i = 0; i < k; i++)
		hidden[at[i]] = !vis[i];
	if (show_current_state(db, r, rooms, n, hidden, err) < 0)
		goto fail;
	free(vis);
	free(ids);
	free(at);
	return hidden;
fail:
	free(hidden);
	free(vis);
	free(ids);
	free(at);
	return NULL;
}

/* m.receipt for joined rooms: every receipt of the rooms in full_ids (new
 * to the client), the ones that moved after since in the others;
 * m.read.private only the user's own. */
static int add_receipts(struct db *db, struct sroom *rooms, int n, const char *user_id, const char *s_since,
			const char *s_now, const char *const *full_ids, int nfull, struct al_error *err)
{
	const char **jids = calloc((size_t)n + 1, sizeof(*jids));
	if (!jids)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	int nj = 0;
	for (int i = 0; i < n; i++)
		if (joined(&rooms[i]))
			jids[nj++] = rooms[i].room_id;
	int rc = 0;
	if (nj == 0)
		goto out;
	char *arr_j = room_pg_array(jids, nj), *arr_f = room_pg_array(full_ids, nfull);
	const char *p[] = {arr_j, arr_f, s_since, s_now, user_id};
	PGresult *r =
		arr_j && arr_f
			? db_exec_prepared(
				  db, err, NULL, "sync_receipts",
				  /* two branches, each on an index (the OR of both scanned the
					        * table): every receipt of the new rooms, the moved ones of
					        * the others */
				  "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, stream_ordering "
				  "FROM receipts WHERE room_id = ANY($2::text[]) AND stream_ordering <= $4::bigint "
				  "AND (receipt_type <> 'm.read.private' OR user_id = $5) UNION ALL "
				  "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts, stream_ordering "
				  "FROM receipts WHERE room_id = ANY($1::text[]) AND NOT room_id = ANY($2::text[]) "
				  "AND stream_ordering > $3::bigint AND stream_ordering <= $4::bigint "
				  "AND (receipt_type <> 'm.read.private' OR user_id = $5) ORDER BY 7",
				  5, p)
			: NULL;
	free(arr_j);
	free(arr_f);
	if (!r) {
		rc = err->status ? -1 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto out;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		struct sroom *sr = find_room(rooms, n, PQgetvalue(r, i, 0));
		if (!sr)
			continue;
		if (!sr->receipts)
			sr->receipts = json_object();
		json_t *by_event = json_object_get(sr->receipts, PQgetvalue(r, i, 4));
		if (!by_event) {
			by_event = json_object();
			json_object_set_new(sr->receipts, PQgetvalue(r, i, 4), by_event);
		}
		json_t *by_type = json_object_get(by_event, PQgetvalue(r, i, 2));
		if (!by_type) {
			by_type = json_object();
			json_object_set_new(by_event, PQgetvalue(r, i, 2), by_type);
		}
		json_t *rec = json_pack("{s:I}", "ts", (json_int_t)col_i64(r, i, 5));
		if (*PQgetvalue(r, i, 3))
			json_object_set_new(rec, "thread_id", json_string(PQgetvalue(r, i, 3)));
		json_object_set_new(by_type, PQgetvalue(r, i, 1), rec);
	}
	PQclear(r);
out:
	free(jids);
	return rc;
}

/* The device's to-device messages after `after`, at most
 * SYNC_MAX_TO_DEVICE; *upto is how far they reach. */
static json_t *to_device_events(struct db *db, const char *user_id, const char *device_id, int64_t after, int64_t now,
				int64_t *upto, struct al_error *err)
{
	char s_after[24], s_now[24], lim[16];
	fmt_i64(s_after, sizeof(s_after), after);
	fmt_i64(s_now, sizeof(s_now), now);
	snprintf(lim, sizeof(lim), "%d", SYNC_MAX_TO_DEVICE + 1);
	const char *p[] = {user_id, device_id, s_after, s_now, lim};
	PGresult *r = db_exec_prepared(
		db, err, NULL, "sync_to_device",
		"SELECT stream_ordering, sender, type, content FROM device_inbox WHERE user_id = $1 "
		"AND device_id = $2 AND stream_ordering > $3::bigint AND stream_ordering <= $4::bigint "
		"ORDER BY stream_ordering LIMIT $5::int",
		5, p);
	if (!r)
		return NULL;
	json_t *a = json_array();
	int rows = PQntuples(r), take = rows > SYNC_MAX_TO_DEVICE ? SYNC_MAX_TO_DEVICE : rows;
	*upto = rows > SYNC_MAX_TO_DEVICE ? col_i64(r, take - 1, 0) : now;
	for (int i = 0; i < take; i++) {
		json_t *c = json_loads(PQgetvalue(r, i, 3), 0, NULL);
		json_array_append_new(a, json_pack("{s:s, s:s, s:o}", "sender", PQgetvalue(r, i, 1), "type",
						   PQgetvalue(r, i, 2), "content", c ? c : json_object()));
	}
	PQclear(r);
	return a;
}

/* Room summaries (m.joined_member_count, m.invited_member_count, m.heroes),
 * computed as Synapse does: when members are lazy-loaded, for joined rooms
 * synced whole, gappy or with membership changes in the timeline. Heroes
 * (the room has no name or canonical alias): up to 5 other joined or
 * invited members by user ID, else those who left. One query for all
 * rooms. Returns {room_id: summary}; NULL on error. */
static json_t *room_summaries(struct db *db, struct sroom *rooms, int n, const char *user_id,
			      const struct sync_filter *f, struct al_error *err)
{
	json_t *out = json_object();
	if (!out || !f || !f->lazy_load_members)
		return out;
	const char **ids = calloc((size_t)n + 1, sizeof(*ids));
	int k = 0;
	for (int i = 0; ids && i < n; i++) {
		struct sroom *sr = &rooms[i];
		if (!joined(sr))
			continue;
		bool members = sr->full_state || sr->limited;
		size_t j;
		json_t *ev;
		json_array_foreach(sr->timeline, j, ev)
		{
			const char *t = json_string_value(json_object_get(ev, "type"));
			if (t && strcmp(t, "m.room.member") == 0)
				members = true;
		}
		if (members)
			ids[k++] = sr->room_id;
	}
	char *arr = ids && k > 0 ? room_pg_array(ids, k) : NULL;
	free(ids);
	if (!arr)
		return out;
	const char *p[] = {arr, user_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT q.room_id, "
		"(SELECT count(*) FROM room_memberships m WHERE m.room_id = q.room_id AND m.membership = 'join'), "
		"(SELECT count(*) FROM room_memberships m WHERE m.room_id = q.room_id AND m.membership = 'invite'), "
		"EXISTS (SELECT 1 FROM current_state cs JOIN events e ON e.event_id = cs.event_id "
		"WHERE cs.room_id = q.room_id AND cs.state_key = '' AND ((cs.type = 'm.room.name' AND "
		"coalesce(e.json::jsonb #>> '{content,name}', '') <> '') OR (cs.type = 'm.room.canonical_alias' AND "
		"coalesce(e.json::jsonb #>> '{content,alias}', '') <> ''))), "
		"array_to_json(ARRAY(SELECT m.user_id FROM room_memberships m WHERE m.room_id = q.room_id "
		"AND m.user_id <> $2 AND m.membership IN ('join', 'invite') ORDER BY m.user_id LIMIT 5)), "
		"array_to_json(ARRAY(SELECT m.user_id FROM room_memberships m WHERE m.room_id = q.room_id "
		"AND m.user_id <> $2 AND m.membership IN ('leave', 'ban') ORDER BY m.user_id LIMIT 5)) "
		"FROM unnest($1::text[]) AS q(room_id)",
		2, p);
	free(arr);
	if (!r) {
		json_decref(out);
		return NULL;
	}
	for (int i = 0; i < PQntuples(r); i++) {
		json_t *sum = json_pack("{s:I, s:I}", "m.joined_member_count", (json_int_t)col_i64(r, i, 1),
					"m.invited_member_count", (json_int_t)col_i64(r, i, 2));
		if (!sum)
			continue;
		if (strcmp(PQgetvalue(r, i, 3), "t") != 0) {
			json_t *heroes = json_loads(PQgetvalue(r, i, 4), 0, NULL);
			if (json_array_size(heroes) == 0) {
				json_decref(heroes);
				heroes = json_loads(PQgetvalue(r, i, 5), 0, NULL);
			}
			json_object_set_new(sum, "m.heroes", heroes ? heroes : json_array());
		}
		json_object_set_new(out, PQgetvalue(r, i, 0), sum);
	}
	PQclear(r);
	return out;
}

/* Drop the presence events a filter's senders/not_senders exclude. */
static void presence_filter_senders(json_t *events, json_t *pf)
{
	json_t *senders = json_object_get(pf, "senders"), *not_senders = json_object_get(pf, "not_senders");
	if (!senders && !not_senders)
		return;
	for (size_t i = json_array_size(events); i-- > 0;) {
		const char *who = json_string_value(json_object_get(json_array_get(events, i), "sender"));
		bool keep = !senders;
		size_t k;
		json_t *v;
		json_array_foreach(senders, k, v)
		{
			if (who && strcmp(json_string_value(v), who) == 0)
				keep = true;
		}
		json_array_foreach(not_senders, k, v)
		{
			if (who && strcmp(json_string_value(v), who) == 0)
				keep = false;
		}
		if (!keep)
			json_array_remove(events, i);
	}
}

/* The user's rooms this sync looks at, as rows (room_id, membership,
 * stream_ordering, has_new: events in (since, now]), sorted by room_id
 * bytewise (find_room).
 *  - initial (since 0): joined and invited rooms (and left and banned ones
 *    with include_leave);
 *  - incremental: rooms whose membership changed since, and the joined
 *    rooms with something new: events, receipts, the user's room account
 *    data, typing (typing_changed's rooms). Those are found from the
 *    changes since the token (each table's stream_ordering index, then the
 *    membership key per changed room), so a user in 1,000 quiet rooms costs
 *    what their few changes cost, not 1,000 rows;
 *  - all_joined (full_state, or typing reset): every joined room, and
 *    rooms whose membership changed. */
static PGresult *sync_rooms(struct db *db, const char *user_id, const char *s_since, const char *s_now,
			    json_t *typing_changed, bool all_joined, bool include_leave, struct al_error *err)
{
	if (strcmp(s_since, "0") == 0) {
		const char *p[] = {user_id, s_now, include_leave ? "t" : "f"};
		return db_exec_prepared(
			db, err, NULL, "sync_rooms_initial",
			"SELECT room_id, membership, stream_ordering, false FROM room_memberships "
			"WHERE user_id = $1 AND NOT forgotten AND stream_ordering <= $2::bigint "
			"AND (membership IN ('join', 'invite') OR ($3::boolean AND membership IN ('leave', 'ban'))) "
			"ORDER BY room_id COLLATE \"C\"",
			3, p);
	}
	if (all_joined) {
		const char *p[] = {user_id, s_since, s_now};
		return db_exec_prepared(
			db, err, NULL, "sync_rooms_all",
			"SELECT m.room_id, m.membership, m.stream_ordering, EXISTS (SELECT 1 FROM events e "
			"WHERE e.room_id = m.room_id AND e.stream_ordering > $2::bigint "
			"AND e.stream_ordering <= $3::bigint) "
			"FROM room_memberships m WHERE m.user_id = $1 AND NOT m.forgotten "
			"AND m.stream_ordering <= $3::bigint AND (m.membership = 'join' OR m.stream_ordering > "
			"$2::bigint) "
			"ORDER BY m.room_id COLLATE \"C\"",
			3, p);
	}
	size_t nt = json_object_size(typing_changed), k = 0;
	const char **trooms = calloc(nt + 1, sizeof(*trooms));
	if (!trooms) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	const char *key;
	json_t *v;
	json_object_foreach(typing_changed, key, v)
	{
		trooms[k++] = key;
	}
	char *arr = room_pg_array(trooms, (int)k);
	free(trooms);
	if (!arr) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		return NULL;
	}
	const char *p[] = {user_id, s_since, s_now, arr};
	PGresult *r = db_exec_prepared(
		db, err, NULL, "sync_rooms_changed",
		"WITH ch AS (SELECT room_id FROM events WHERE stream_ordering > $2::bigint AND stream_ordering <= "
		"$3::bigint "
		"UNION SELECT room_id FROM receipts WHERE stream_ordering > $2::bigint AND stream_ordering <= "
		"$3::bigint "
		"UNION SELECT room_id FROM account_data WHERE user_id = $1 AND room_id <> '' "
		"AND stream_ordering > $2::bigint AND stream_ordering <= $3::bigint "
		"UNION SELECT unnest($4::text[])), "
		"r AS (SELECT m.room_id, m.membership, m.stream_ordering FROM room_memberships m WHERE m.user_id = $1 "
		"AND m.stream_ordering > $2::bigint AND m.stream_ordering <= $3::bigint AND NOT m.forgotten "
		"UNION SELECT m.room_id, m.membership, m.stream_ordering FROM ch JOIN room_memberships m "
		"ON m.room_id = ch.room_id AND m.user_id = $1 WHERE m.membership = 'join' "
		"AND m.stream_ordering <= $3::bigint AND NOT m.forgotten) "
		"SELECT r.room_id, r.membership, r.stream_ordering, EXISTS (SELECT 1 FROM events e "
		"WHERE e.room_id = r.room_id AND e.stream_ordering > $2::bigint "
		"AND e.stream_ordering <= $3::bigint) FROM r ORDER BY r.room_id COLLATE \"C\"",
		4, p);
	free(arr);
	return r;
}

json_t *sync_build(struct db *db, struct typing *typing, const char *user_id, const char *device_id,
		   const struct sync_pos *since_pos, bool full_state, const struct sync_filter *f, bool *empty,
		   struct al_error *err)
{
	PGresult *mem = NULL, *r = NULL;
	struct sroom *rooms = NULL;
	json_t *out = NULL, *global_ad = json_array(), *to_device = NULL, *typing_changed = NULL, *presence = NULL,
	       *summaries = NULL;
	int64_t since = since_pos->stream;
	char *arr_rooms = NULL, *arr_caps = NULL, *arr_los = NULL, *arr_full = NULL, *arr_inv = NULL;
	const char **ids = NULL, **caps = NULL, **los = NULL, **full_ids = NULL, **inv_ids = NULL;
	char(*capbuf)[24] = NULL, (*lobuf)[24] = NULL;
	int limit = f ? f->timeline_limit : SYNC_DEFAULT_TIMELINE;
	*empty = true;
	struct sync_marks marks;
	if (sync_marks_read(db, &marks, err) < 0)
		goto fail;
	int64_t now = marks.now;
	if (since > now)
		since = now;
	char s_since[24], s_now[24];
	fmt_i64(s_since, sizeof(s_since), since);
	fmt_i64(s_now, sizeof(s_now), now);

	bool typing_reset = false;
	struct sync_pos next = {.stream = now, .typing = since_pos->typing, .to_device = now};
	if (typing)
		next.typing = typing_changes(typing, since > 0 ? since_pos->typing : 0, &typing_changed, &typing_reset);
	mem = sync_rooms(db, user_id, s_since, s_now, typing_changed, full_state || typing_reset, f && f->include_leave,
			 err);
	if (!mem)
		goto fail;
	int n = PQntuples(mem);
	rooms = calloc((size_t)n + 1, sizeof(*rooms));
	ids = calloc((size_t)n + 1, sizeof(*ids));
	caps = calloc((size_t)n + 1, sizeof(*caps));
	los = calloc((size_t)n + 1, sizeof(*los));
	full_ids = calloc((size_t)n + 1, sizeof(*full_ids));
	inv_ids = calloc((size_t)n + 1, sizeof(*inv_ids));
	capbuf = calloc((size_t)n + 1, sizeof(*capbuf));
	lobuf = calloc((size_t)n + 1, sizeof(*lobuf));
	if (!rooms || !ids || !caps || !los || !full_ids || !inv_ids || !capbuf || !lobuf) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	int nt = 0, nfull = 0, ninv = 0;
	for (int i = 0; i < n; i++) {
		struct sroom *sr = &rooms[i];
		sr->room_id = PQgetvalue(mem, i, 0);
		snprintf(sr->membership, sizeof(sr->membership), "%s", PQgetvalue(mem, i, 1));
		sr->mstream = col_i64(mem, i, 2);
		sr->has_new = PQgetvalue(mem, i, 3)[0] == 't';
		sr->timeline = json_array();
		sr->state = json_array();
		sr->senders = json_object();
		sr->ids = json_object();
		sr->account_data = json_array();
		sr->ephemeral = json_array();
		if (strcmp(sr->membership, "invite") == 0) {
			inv_ids[ninv++] = sr->room_id;
			continue;
		}
		bool is_joined = joined(sr);
		sr->cap = is_joined ? now : sr->mstream;
		sr->full_state = full_state || since == 0 || (is_joined && sr->mstream > since);
		sr->lo = sr->full_state ? 0 : since;
		if (is_joined && sr->full_state)
			full_ids[nfull++] = sr->room_id;
		ids[nt] = sr->room_id;
		fmt_i64(capbuf[nt], sizeof(capbuf[nt]), sr->cap);
		fmt_i64(lobuf[nt], sizeof(lobuf[nt]), sr->lo);
		caps[nt] = capbuf[nt];
		los[nt] = lobuf[nt];
		nt++;
	}

	/* Incremental: only rooms with new events need a timeline query. */
	if (since > 0 && nt > 0) {
		int k = 0;
		for (int i = 0; i < nt; i++) {
			struct sroom *sr = find_room(rooms, n, ids[i]);
			if (sr->has_new || sr->full_state) {
				ids[k] = ids[i];
				caps[k] = caps[i];
				los[k] = los[i];
				k++;
			}
		}
		nt = k;
	}
	if (nt > 0) {
		arr_rooms = room_pg_array(ids, nt);
		arr_caps = room_pg_array(caps, nt);
		arr_los = room_pg_array(los, nt);
		char lim[16];
		snprintf(lim, sizeof(lim), "%d", limit + 1);
		char *types = like_array(json_object_get(f ? f->timeline : NULL, "types"));
		char *not_types = like_array(json_object_get(f ? f->timeline : NULL, "not_types"));
		const char *p[] = {arr_rooms, arr_caps, arr_los, lim, types, not_types};
		r = db_exec(
			db, err,
			"SELECT x.room_id, x.event_id, x.json, x.sender, x.txn_device, x.txn_id, x.stream_ordering "
			"FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS q(room_id, cap, lo) "
			"CROSS JOIN LATERAL (SELECT e.room_id, e.event_id, e.json, e.sender, e.txn_device, e.txn_id, "
			/* the window in events_room_stream_idx: the room by equality
			     * and the stream range as separate conditions (all three index
			     * conditions of that index, a few rows estimated), ordered by
			     * both columns, an order only that index gives without a sort
			     * (the global stream index would need one). As row comparisons
			     * they were estimated by the room alone, and with statistics
			     * from before a burst of writes the planner took the
			     * (room_id, depth) index and read the whole room (12 ms for
			     * one new event in a room of 15,000) */
			"e.stream_ordering FROM events e WHERE e.room_id = q.room_id AND e.stream_ordering > q.lo "
			"AND e.stream_ordering <= q.cap "
			"AND ($5::text[] IS NULL OR e.type LIKE ANY ($5::text[])) "
			"AND NOT (e.type LIKE ANY (coalesce($6::text[], '{}'))) "
			"ORDER BY e.room_id DESC, e.stream_ordering DESC LIMIT $4::int) x "
			"ORDER BY x.room_id, x.stream_ordering",
			6, p);
		free(types);
		free(not_types);
		if (!r)
			goto fail;
		bool *hidden = timeline_hidden(db, r, rooms, n, limit, user_id, err);
		if (!hidden)
			goto fail;
		/* rows come oldest first per room; count per room to drop the extra one */
		for (int i = 0; i < PQntuples(r);) {
			struct sroom *sr = find_room(rooms, n, PQgetvalue(r, i, 0));
			int j = i;
			while (j < PQntuples(r) && strcmp(PQgetvalue(r, j, 0), PQgetvalue(r, i, 0)) == 0)
				j++;
			int start = i;
			if (j - i > limit) {
				sr->limited = true;
				start = j - limit;
			}
			for (int k = start; k < j; k++) {
				json_t *ev = hidden[k] ? NULL
						       : room_client_event(PQgetvalue(r, k, 2), PQgetvalue(r, k, 1),
									   PQgetvalue(r, k, 3), col_str(r, k, 4),
									   col_str(r, k, 5), user_id, device_id);
				if (!ev)
					continue;
				if (!sr->first)
					sr->first = col_i64(r, k, 6);
				json_object_set_new(sr->ids, PQgetvalue(r, k, 1), json_true());
				json_object_set_new(sr->senders, PQgetvalue(r, k, 3), json_true());
				json_array_append_new(sr->timeline, ev);
			}
			i = j;
		}
		free(hidden);
		PQclear(r);
		r = NULL;
		/* State: full state for new rooms; for limited incremental
		 * timelines the state that changed in the gap. */
		const char *gap[1024];
		int ngap = 0;
		for (int i = 0; i < n && ngap < 1024; i++)
			if (rooms[i].limited && !rooms[i].full_state && strcmp(rooms[i].membership, "join") == 0)
				gap[ngap++] = rooms[i].room_id;
		if (nfull + ngap > 0) {
			arr_full = room_pg_array(full_ids, nfull);
			char *arr_gap = room_pg_array(gap, ngap);
			const char *sp[] = {arr_full, arr_gap, s_since};
			r = db_exec(
				db, err,
				/* per room (full: all of it; gap: what changed after since),
				     * by key lookups whatever the statistics say: OFFSET 0 keeps
				     * each LATERAL a parameterised scan (a join the planner may
				     * turn into a hash join over all events when the statistics
				     * are stale, 60 ms after a burst of writes) */
				"SELECT q.room_id, e.event_id, e.json, e.sender, cs.type, cs.state_key, "
				"e.stream_ordering "
				"FROM (SELECT unnest($1::text[]) AS room_id, NULL::bigint AS after "
				"UNION ALL SELECT unnest($2::text[]), $3::bigint) q "
				"CROSS JOIN LATERAL (SELECT cs.type, cs.state_key, cs.event_id FROM current_state cs "
				"WHERE cs.room_id = q.room_id OFFSET 0) cs "
				"CROSS JOIN LATERAL (SELECT e.event_id, e.json, e.sender, e.stream_ordering FROM "
				"events e "
				/* full: every state event, also the outliers a remote
				     * join stored the room's state as (off the stream) */
				"WHERE e.event_id = cs.event_id AND (q.after IS NULL OR e.stream_ordering > q.after) "
				"OFFSET 0) e "
				"ORDER BY e.stream_ordering",
				3, sp);
			free(arr_gap);
			if (!r)
				goto fail;
			for (int i = 0; i < PQntuples(r); i++) {
				struct sroom *sr = find_room(rooms, n, PQgetvalue(r, i, 0));
				int64_t s = col_i64(r, i, 6);
				if (!sr || s > sr->cap || json_object_get(sr->ids, PQgetvalue(r, i, 1)))
					continue;
				if (!sr->full_state && sr->first && s >= sr->first)
					continue;
				if (f && f->lazy_load_members && strcmp(PQgetvalue(r, i, 4), "m.room.member") == 0 &&
				    strcmp(PQgetvalue(r, i, 5), user_id) != 0 &&
				    !json_object_get(sr->senders, PQgetvalue(r, i, 5)))
					continue;
				if (f && f->state && !type_matches(f->state, PQgetvalue(r, i, 4)))
					continue;
				json_t *ev = room_client_event(PQgetvalue(r, i, 2), PQgetvalue(r, i, 1), NULL, NULL,
							       NULL, NULL, NULL);
				if (ev)
					json_array_append_new(sr->state, ev);
			}
			PQclear(r);
			r = NULL;
		}
	}
	/* Invites: stripped state. */
	if (ninv > 0) {
		arr_inv = room_pg_array(inv_ids, ninv);
		const char *p[] = {arr_inv, user_id};
		r = db_exec(
			db, err,
			/* key lookups per room, as for the state above */
			"SELECT q.room_id, e.json FROM unnest($1::text[]) AS q(room_id) "
			"CROSS JOIN LATERAL (SELECT cs.event_id FROM current_state cs WHERE cs.room_id = q.room_id "
			"AND ((cs.state_key = '' AND cs.type IN ('m.room.create', "
			"'m.room.join_rules', 'm.room.name', 'm.room.avatar', 'm.room.canonical_alias', "
			"'m.room.encryption', 'm.room.topic')) OR (cs.type = 'm.room.member' AND cs.state_key = $2)) "
			"AND NOT EXISTS (SELECT 1 FROM room_invite_state i WHERE i.room_id = q.room_id AND i.user_id = "
			"$2) "
			"OFFSET 0) cs "
			"CROSS JOIN LATERAL (SELECT e.json FROM events e WHERE e.event_id = cs.event_id OFFSET 0) e "
			/* invites from rooms on other servers: their stripped state */
			"UNION ALL SELECT i.room_id, x::text FROM room_invite_state i, jsonb_array_elements(i.state) x "
			"WHERE i.room_id = ANY($1::text[]) AND i.user_id = $2",
			2, p);
		if (!r)
			goto fail;
		for (int i = 0; i < PQntuples(r); i++) {
			struct sroom *sr = find_room(rooms, n, PQgetvalue(r, i, 0));
			json_t *pdu = json_loads(PQgetvalue(r, i, 1), 0, NULL);
			if (sr && pdu)
				json_array_append_new(sr->state, json_pack("{s:O, s:O, s:O, s:O}", "type",
									   json_object_get(pdu, "type"), "state_key",
									   json_object_get(pdu, "state_key"), "content",
									   json_object_get(pdu, "content"), "sender",
									   json_object_get(pdu, "sender")));
			json_decref(pdu);
		}
		PQclear(r);
		r = NULL;
	}
	/* Account data. */
	if (since == 0 || marks.account_data > since) {
		const char *p[] = {user_id, s_since, s_now};
		r = db_exec_prepared(
			db, err, NULL, "sync_account_data",
			"SELECT room_id, type, content FROM account_data WHERE user_id = $1 "
			"AND stream_ordering > $2::bigint AND stream_ordering <= $3::bigint ORDER BY stream_ordering",
			3, p);
		if (!r)
			goto fail;
		for (int i = 0; i < PQntuples(r); i++) {
			json_t *c = json_loads(PQgetvalue(r, i, 2), 0, NULL);
			json_t *ev = json_pack("{s:s, s:o}", "type", PQgetvalue(r, i, 1), "content",
					       c ? c : json_object());
			const char *rid = PQgetvalue(r, i, 0);
			if (!*rid) {
				json_array_append_new(global_ad, ev);
				*empty = false;
				continue;
			}
			struct sroom *sr = find_room(rooms, n, rid);
			if (sr && strcmp(sr->membership, "join") == 0)
				json_array_append_new(sr->account_data, ev);
			else
				json_decref(ev);
		}
		PQclear(r);
		r = NULL;
	}

	/* Ephemeral: receipts, typing. */
	if ((since == 0 || nfull > 0 || marks.receipts > since) &&
	    add_receipts(db, rooms, n, user_id, s_since, s_now, full_ids, nfull, err) < 0)
		goto fail;
	bool want_typing = !f || !f->ephemeral || type_matches(f->ephemeral, "m.typing");
	bool want_receipts = !f || !f->ephemeral || type_matches(f->ephemeral, "m.receipt");
	for (int i = 0; i < n; i++) {
		struct sroom *sr = &rooms[i];
		if (!joined(sr))
			continue;
		json_t *users = json_object_get(typing_changed, sr->room_id);
		if (want_typing && (users || typing_reset))
			json_array_append_new(sr->ephemeral,
					      json_pack("{s:s, s:{s:o}}", "type", "m.typing", "content", "user_ids",
							users ? json_incref(users) : json_array()));
		if (want_receipts && sr->receipts)
			json_array_append_new(sr->ephemeral,
					      json_pack("{s:s, s:O}", "type", "m.receipt", "content", sr->receipts));
	}
	/* Presence of the users she may see that changed since. */
	json_t *pf = f && f->doc ? json_object_get(f->doc, "presence") : NULL;
	json_t *pl = json_object_get(pf, "limit");
	bool presence_moved = since == 0 || marks.presence > since || marks.memberships > since;
	if (presence_moved &&
	    (!pf || (type_matches(pf, "m.presence") && !(json_is_integer(pl) && json_integer_value(pl) == 0)))) {
		presence = presence_sync_events(db, user_id, since, now, room_now_ms(), err);
		if (!presence)
			goto fail;
		presence_filter_senders(presence, pf);
		if (json_array_size(presence) > 0)
			*empty = false;
	}
	/* To-device messages of this device. */
	if (device_id) {
		int64_t after = since_pos->to_device < since ? since_pos->to_device : since;
		to_device = to_device_events(db, user_id, device_id, after, now, &next.to_device, err);
		if (!to_device)
			goto fail;
		if (json_array_size(to_device) > 0)
			*empty = false;
	}

	summaries = room_summaries(db, rooms, n, user_id, f, err);
	if (!summaries)
		goto fail;
	json_t *join = json_object(), *invite = json_object(), *leave = json_object();
	char tok[SYNC_TOKEN_MAX];
	for (int i = 0; i < n; i++) {
		struct sroom *sr = &rooms[i];
		if (strcmp(sr->membership, "invite") == 0) {
			json_object_set_new(invite, sr->room_id,
					    json_pack("{s:{s:O}}", "invite_state", "events", sr->state));
			*empty = false;
			continue;
		}
		bool is_joined = joined(sr);
		bool some = json_array_size(sr->timeline) > 0 || json_array_size(sr->state) > 0 ||
			    json_array_size(sr->account_data) > 0 || json_array_size(sr->ephemeral) > 0;
		if (!some && !(is_joined && sr->full_state) && !(!is_joined && sr->mstream > since))
			continue;
		/* prev_batch: where /messages continues backwards. A room loaded
		 * whole (initial sync, new join) whose timeline was not trimmed
		 * gives the sync point itself, as Synapse does; otherwise just
		 * before the first timeline event. */
		int64_t prev = sr->first ? sr->first - 1 : since;
		if (sr->full_state && !sr->limited)
			prev = sr->cap;
		room_token_format(prev, tok, sizeof(tok));
		json_t *entry = json_pack("{s:{s:O, s:b, s:s}, s:{s:O}, s:{s:O}}", "timeline", "events", sr->timeline,
					  "limited", sr->limited, "prev_batch", tok, "state", "events", sr->state,
					  "account_data", "events", sr->account_data);
		if (is_joined) {
			json_object_set_new(entry, "ephemeral", json_pack("{s:O}", "events", sr->ephemeral));
			json_object_set_new(entry, "unread_notifications",
					    json_pack("{s:i, s:i}", "highlight_count", 0, "notification_count", 0));
			json_t *sum = json_object_get(summaries, sr->room_id);
			json_object_set_new(entry, "summary", sum ? json_incref(sum) : json_object());
			json_object_set_new(join, sr->room_id, entry);
		} else {
			json_object_set_new(leave, sr->room_id, entry);
		}
		*empty = false;
	}
	if (!to_device)
		to_device = json_array();
	sync_pos_format(&next, tok, sizeof(tok));
	if (!presence)
		presence = json_array();
	out = json_pack("{s:s, s:{s:o, s:o, s:o}, s:{s:O}, s:{s:O}, s:{s:O}, s:{s:[], s:[]}, s:{}}", "next_batch", tok,
			"rooms", "join", join, "invite", invite, "leave", leave, "account_data", "events", global_ad,
			"presence", "events", presence, "to_device", "events", to_device, "device_lists", "changed",
			"left", "device_one_time_keys_count");
	if (!out)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
fail:
	if (rooms) {
		for (int i = 0; i < (mem ? PQntuples(mem) : 0); i++)
			sroom_free(&rooms[i]);
	}
	json_decref(global_ad);
	json_decref(to_device);
	json_decref(presence);
	json_decref(summaries);
	json_decref(typing_changed);
	if (r)
		PQclear(r);
	if (mem)
		PQclear(mem);
	free(rooms);
	free(ids);
	free(caps);
	free(los);
	free(full_ids);
	free(inv_ids);
	free(capbuf);
	free(lobuf);
	free(arr_rooms);
	free(arr_caps);
	free(arr_los);
	free(arr_full);
	free(arr_inv);
	return out;
}

/* ---- account data ---- */

int sync_account_data_put(struct db *db, const char *user_id, const char *room_id, const char *type, json_t *content,
			  struct al_error *err)
{
	if (!type || !*type || strlen(type) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "type must be 1-255 bytes");
	size_t len;
	char *text = cjson_encode(content, &len, err);
	if (!text)
		return -1;
	if (len > 65536) {
		free(text);
		return al_error_set(err, 413, "M_TOO_LARGE", "account data too large");
	}
	const char *p[] = {user_id, room_id, type, text};
	int rc = -1;
	if (db_begin(db, err) < 0)
		goto out;
	PGresult *r = db_exec(db, err, "SELECT pg_advisory_xact_lock(6006)", 0, NULL);
	if (!r)
		goto rollback;
	PQclear(r);
	r = db_exec(db, err,
		    "INSERT INTO account_data (user_id, room_id, type, content, stream_ordering) "
		    "VALUES ($1, $2, $3, $4, nextval('al_stream_seq')) ON CONFLICT (user_id, room_id, type) "
		    "DO UPDATE SET content = EXCLUDED.content, stream_ordering = EXCLUDED.stream_ordering",
		    4, p);
	if (!r)
		goto rollback;
	PQclear(r);
	if (db_commit(db, err) < 0)
		goto out;
	rc = 0;
	goto out;
rollback:
	db_rollback(db);
out:
	free(text);
	return rc;
}

json_t *sync_account_data_get(struct db *db, const char *user_id, const char *room_id, const char *type,
			      struct al_error *err)
{
	const char *p[] = {user_id, room_id, type};
	PGresult *r = db_exec(
		db, err, "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND type = $3", 3, p);
	if (!r)
		return NULL;
	json_t *c = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
	PQclear(r);
	if (!c)
		al_error_set(err, 404, "M_NOT_FOUND", "Account data not found");
	return c;
}

/* ---- to-device ---- */

json_t *sync_wake_rooms(struct db *db, const char *user_id, struct al_error *err)
{
	const char *p[] = {user_id};
	PGresult *r = db_exec_prepared(db, err, NULL, "sync_wake_rooms",
				       "SELECT room_id FROM room_memberships WHERE user_id = $1 "
				       "AND membership IN ('join', 'invite', 'knock')",
				       1, p);
	if (!r)
		return NULL;
	json_t *set = json_object();
	for (int i = 0; set && i < PQntuples(r); i++)
		json_object_set_new(set, PQgetvalue(r, i, 0), json_true());
	PQclear(r);
	if (!set)
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	return set;
}

int sync_to_device_ack(struct db *db, const char *user_id, const char *device_id, int64_t upto, struct al_error *err)
{
	if (!device_id || upto <= 0)
		return 0;
	char s_upto[24];
	fmt_i64(s_upto, sizeof(s_upto), upto);
	const char *p[] = {user_id, device_id, s_upto};
	PGresult *r = db_exec_prepared(
		db, err, NULL, "sync_to_device_ack",
		"DELETE FROM device_inbox WHERE user_id = $1 AND device_id = $2 AND stream_ordering <= $3::bigint", 3,
		p);
	if (!r)
		return -1;
	PQclear(r);
	return 0;
}

/* The targets of a sendToDevice body as three parallel lists (user,
 * device or "*", canonical content); only users of server_name. */
struct td_targets {
	const char **users, **devices;
	char **contents;
	int n;
};

static void td_targets_free(struct td_targets *t)
{
	for (int i = 0; i < t->n; i++)
		free(t->contents[i]);
	free(t->users);
	free(t->devices);
	free(t->contents);
}

static int td_targets_parse(json_t *messages, const char *server_name, struct td_targets *t, struct al_error *err)
{
	memset(t, 0, sizeof(*t));
	if (!json_is_object(messages))
		return al_error_set(err, 400, "M_BAD_JSON", "messages must be an object");
	size_t total = 0;
	const char *uid;
	json_t *devs;
	json_object_foreach(messages, uid, devs)
	{
		if (!json_is_object(devs))
			return al_error_set(err, 400, "M_BAD_JSON", "messages.%s must be an object", uid);
		total += json_object_size(devs);
	}
	if (total > SYNC_TO_DEVICE_MAX_TARGETS)
		return al_error_set(err, 400, "M_INVALID_PARAM", "at most %d devices per request",
				    SYNC_TO_DEVICE_MAX_TARGETS);
	t->users = calloc(total + 1, sizeof(*t->users));
	t->devices = calloc(total + 1, sizeof(*t->devices));
	t->contents = calloc(total + 1, sizeof(*t->contents));
	if (!t->users || !t->devices || !t->contents)
		goto oom;
	json_object_foreach(messages, uid, devs)
	{
		const char *colon = strchr(uid, ':');
		if (uid[0] != '@' || !colon || strlen(uid) > 255)
			return al_error_set(err, 400, "M_INVALID_PARAM", "%s is not a user ID", uid);
		bool local = strcmp(colon + 1, server_name) == 0;
		const char *dev;
		json_t *content;
		json_object_foreach(devs, dev, content)
		{
			if (!*dev || strlen(dev) > 255)
				return al_error_set(err, 400, "M_INVALID_PARAM", "device IDs must be 1-255 bytes");
			if (!json_is_object(content))
				return al_error_set(err, 400, "M_BAD_JSON", "message content must be an object");
			if (!local)
				continue;
			size_t len;
			char *text = cjson_encode(content, &len, err);
			if (!text)
				return -1;
			if (len > 65536) {
				free(text);
				return al_error_set(err, 413, "M_TOO_LARGE", "message content too large");
			}
			t->users[t->n] = uid;
			t->devices[t->n] = dev;
			t->contents[t->n] = text;
			t->n++;
		}
	}
	return 0;
oom:
	return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

int sync_to_device_send(struct db *db, const char *server_name, const char *sender, const char *sender_device,
			const char *type, const char *txn_id, json_t *messages, bool *delivered, struct al_error *err)
{
	*delivered = false;
	if (!type || !*type || strlen(type) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "event type must be 1-255 bytes");
	if (!txn_id || !*txn_id || strlen(txn_id) > 255)
		return al_error_set(err, 400, "M_INVALID_PARAM", "txnId must be 1-255 bytes");
	struct td_targets t;
	int rc = -1;
	char *arr_u = NULL, *arr_d = NULL, *arr_c = NULL;
	if (td_targets_parse(messages, server_name, &t, err) < 0)
		goto out;
	if (db_begin(db, err) < 0)
		goto out;
	/* A concurrent twin waits here for the first to commit, then finds
	 * its row. */
	const char *tp[] = {sender, sender_device, txn_id};
	PGresult *r = db_exec(db, err,
			      "INSERT INTO device_txns (user_id, device_id, txn_id) VALUES ($1, $2, $3) "
			      "ON CONFLICT DO NOTHING RETURNING 1",
			      3, tp);
	if (!r)
		goto rollback;
	bool first = PQntuples(r) == 1;
	PQclear(r);
	if (!first) {
		db_rollback(db);
		rc = 0;
		goto out;
	}
	if (t.n > 0) {
		arr_u = room_pg_array(t.users, t.n);
		arr_d = room_pg_array(t.devices, t.n);
		arr_c = room_pg_array((const char *const *)t.contents, t.n);
		if (!arr_u || !arr_d || !arr_c) {
			al_error_set(err, 500, "M_UNKNOWN", "out of memory");
			goto rollback;
		}
		r = db_exec(db, err, "SELECT pg_advisory_xact_lock(6006)", 0, NULL);
		if (!r)
			goto rollback;
		PQclear(r);
		const char *p[] = {arr_u, arr_d, arr_c, sender, type};
		r = db_exec(
			db, err,
			"INSERT INTO device_inbox (user_id, device_id, stream_ordering, sender, type, content) "
			"SELECT d.user_id, d.device_id, nextval('al_stream_seq'), $4, $5, t.content "
			"FROM unnest($1::text[], $2::text[], $3::text[]) AS t(user_id, device_id, content) "
			"JOIN devices d ON d.user_id = t.user_id AND (t.device_id = '*' OR d.device_id = t.device_id)",
			5, p);
		if (!r)
			goto rollback;
		*delivered = strcmp(PQcmdTuples(r), "0") != 0;
		PQclear(r);
	}
	if (db_commit(db, err) < 0)
		goto out;
	rc = 0;
	goto out;
rollback:
	db_rollback(db);
out:
	td_targets_free(&t);
	free(arr_u);
	free(arr_d);
	free(arr_c);
	return rc;
}
