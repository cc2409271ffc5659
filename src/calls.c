/* calls.c - tracking of calls in federated_calls: see calls.h. */
#include "calls.h"

#include <ctype.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "apps.h"
#include "calls_state.h"
#include "event.h"
#include "federation.h"
#include "log.h"
#include "mesh.h"
#include "notify.h"
#include "room.h"

#define MS(col) "(extract(epoch FROM " col ") * 1000)::bigint"
#define USER_MAX 255
#define NOTIFIED_MAX 32 /* federated_calls_notified_apps_check */
#define BLOCKED_CAUSE "blocked_unknown_caller"

struct calls_module {
	struct event *sweep_ev;
};

/* Every column a caller of row_from() selects, in this order. */
#define ROW_COLUMNS                                                                                             \
	"id::text, first_ts, expires_ts, ring_ts, answer_ts, select_ts, refuse_ts, refuse_cause,"               \
	" hangup_ts, hangup_cause, timeout_ts, call_status, " MS("initiated_at") ", " MS("ringing_at") ", " MS( \
		"connected_at") ", " MS("ended_at") ", duration_seconds, end_reason, invite_event_id,"          \
						    " route_id::text, caller_user_id, callee_user_id, "         \
						    "caller_aura_id, callee_aura_id, direction,"                \
						    " media_type, caller_server, callee_server, voip_version, " \
						    "room_id, call_id, notified_apps"

struct call_row {
	char id[37];
	struct calls_milestones m;
	char status[16];
	struct calls_outcome stored;
	char invite_event_id[EVENT_ID_MAX + 1];
	char route_id[37];
	char caller[USER_MAX + 1], callee[USER_MAX + 1];
	char caller_aura[USER_MAX + 1], callee_aura[USER_MAX + 1];
	char direction[16], media[16];
	char caller_server[USER_MAX + 1], callee_server[USER_MAX + 1];
	char version[CALLS_VERSION_MAX + 1];
	char room_id[ROOM_ID_MAX + 1], call_id[CALLS_ID_MAX + 1];
	char notified_apps[NOTIFIED_MAX * (NOTIFY_APP_ID_MAX + 3) + 3];
};

static int64_t col_ms(PGresult *r, int i, int c)
{
	return PQgetisnull(r, i, c) ? 0 : strtoll(PQgetvalue(r, i, c), NULL, 10);
}

static void col_copy(PGresult *r, int i, int c, char *out, size_t len)
{
	snprintf(out, len, "%s", PQgetisnull(r, i, c) ? "" : PQgetvalue(r, i, c));
}

static void row_from(PGresult *r, int i, struct call_row *row)
{
	memset(row, 0, sizeof(*row));
	int c = 0;
	col_copy(r, i, c++, row->id, sizeof(row->id));
	row->m.first_ts = col_ms(r, i, c++);
	row->m.expires_ts = col_ms(r, i, c++);
	row->m.ring_ts = col_ms(r, i, c++);
	row->m.answer_ts = col_ms(r, i, c++);
	row->m.select_ts = col_ms(r, i, c++);
	row->m.refuse_ts = col_ms(r, i, c++);
	col_copy(r, i, c++, row->m.refuse_cause, sizeof(row->m.refuse_cause));
	row->m.hangup_ts = col_ms(r, i, c++);
	col_copy(r, i, c++, row->m.hangup_cause, sizeof(row->m.hangup_cause));
	row->m.timeout_ts = col_ms(r, i, c++);
	col_copy(r, i, c++, row->status, sizeof(row->status));
	row->stored.initiated_at = col_ms(r, i, c++);
	row->stored.ringing_at = col_ms(r, i, c++);
	row->stored.connected_at = col_ms(r, i, c++);
	row->stored.ended_at = col_ms(r, i, c++);
	row->stored.duration_seconds = PQgetisnull(r, i, c) ? -1 : atoi(PQgetvalue(r, i, c));
	c++;
	col_copy(r, i, c++, row->stored.end_reason, sizeof(row->stored.end_reason));
	col_copy(r, i, c++, row->invite_event_id, sizeof(row->invite_event_id));
	col_copy(r, i, c++, row->route_id, sizeof(row->route_id));
	col_copy(r, i, c++, row->caller, sizeof(row->caller));
	col_copy(r, i, c++, row->callee, sizeof(row->callee));
	col_copy(r, i, c++, row->caller_aura, sizeof(row->caller_aura));
	col_copy(r, i, c++, row->callee_aura, sizeof(row->callee_aura));
	col_copy(r, i, c++, row->direction, sizeof(row->direction));
	col_copy(r, i, c++, row->media, sizeof(row->media));
	col_copy(r, i, c++, row->caller_server, sizeof(row->caller_server));
	col_copy(r, i, c++, row->callee_server, sizeof(row->callee_server));
	col_copy(r, i, c++, row->version, sizeof(row->version));
	col_copy(r, i, c++, row->room_id, sizeof(row->room_id));
	col_copy(r, i, c++, row->call_id, sizeof(row->call_id));
	col_copy(r, i, c++, row->notified_apps, sizeof(row->notified_apps));
}

static const char *server_of(const char *user_id)
{
	const char *c = user_id ? strchr(user_id, ':') : NULL;
	return c && c[1] ? c + 1 : NULL;
}

static const char *ms_param(char *buf, size_t len, int64_t v)
{
	if (!v)
		return NULL;
	snprintf(buf, len, "%lld", (long long)v);
	return buf;
}

/* ---- derived columns ---- */

static bool outcome_differs(const struct call_row *row, const struct calls_outcome *o)
{
	const struct calls_outcome *s = &row->stored;
	return strcmp(row->status, calls_status_name(o->status)) != 0 || s->initiated_at != o->initiated_at ||
	       s->ringing_at != o->ringing_at || s->connected_at != o->connected_at || s->ended_at != o->ended_at ||
	       s->duration_seconds != o->duration_seconds || strcmp(s->end_reason, o->end_reason) != 0;
}

/* Store the status derived from the row's milestones when it changed. The
 * row is locked by the caller's statement in the same transaction. */
static int store_outcome(struct db *db, struct call_row *row, int64_t now, struct al_error *err)
{
	struct calls_outcome o;
	calls_derive(&row->m, now, &o);
	if (!outcome_differs(row, &o))
		return 0;
	char b[5][24];
	const char *p[8] = {row->id,
			    calls_status_name(o.status),
			    ms_param(b[0], sizeof(b[0]), o.initiated_at ? o.initiated_at : now),
			    ms_param(b[1], sizeof(b[1]), o.ringing_at),
			    ms_param(b[2], sizeof(b[2]), o.connected_at),
			    ms_param(b[3], sizeof(b[3]), o.ended_at),
			    NULL,
			    o.end_reason[0] ? o.end_reason : NULL};
	if (o.duration_seconds >= 0) {
		snprintf(b[4], sizeof(b[4]), "%d", o.duration_seconds);
		p[6] = b[4];
	}
	PGresult *r = db_exec(db, err,
			      "UPDATE federated_calls SET call_status = $2,"
			      " initiated_at = to_timestamp($3::bigint / 1000.0),"
			      " ringing_at = to_timestamp($4::bigint / 1000.0),"
			      " connected_at = to_timestamp($5::bigint / 1000.0),"
			      " ended_at = to_timestamp($6::bigint / 1000.0),"
			      " duration_seconds = $7::int, end_reason = $8 WHERE id = $1::uuid",
			      8, p);
	if (!r)
		return -1;
	PQclear(r);
	snprintf(row->status, sizeof(row->status), "%s", calls_status_name(o.status));
	row->stored = o;
	return 0;
}

/* ---- the event ---- */

/* Everything the upsert needs about one event. */
struct call_input {
	const char *room_id, *event_id, *sender;
	struct calls_event ev;
	char caller[USER_MAX + 1], callee[USER_MAX + 1];
	int rank; /* identity_rank; 0: only update an existing row */
	const char *direction;
	bool caller_local, callee_local;
	struct calls_milestones sig;
	bool refused; /* sig carries this server's refusal */
	bool notify;  /* notified_apps was decided */
	const char *notified[NOTIFIED_MAX];
	int nnotified;
	char apps[APPS_MAX_ACTIVE][NOTIFY_APP_ID_MAX + 1];
};

static json_t *load_event(struct db *db, const char *room_id, const char *event_id, struct al_error *err)
{
	const char *p[2] = {event_id, room_id};
	PGresult *r = db_exec(db, err,
			      "SELECT json FROM events WHERE event_id = $1 AND room_id = $2"
			      " AND NOT rejected AND NOT soft_failed",
			      2, p);
	if (!r)
		return NULL;
	json_t *ev = PQntuples(r) == 1 ? json_loads(PQgetvalue(r, 0, 0), 0, NULL) : NULL;
	PQclear(r);
	if (!ev)
		al_error_set(err, 404, "M_NOT_FOUND", "event not found");
	return ev;
}

/* The room's only other member (joined or invited): 0 and copied, 1 when
 * there is none or more than one, -1 on error. */
static int room_peer(struct db *db, const char *room_id, const char *user, char *out, size_t len, struct al_error *err)
{
	const char *p[2] = {room_id, user};
	PGresult *r = db_exec(db, err,
			      "SELECT user_id FROM room_memberships WHERE room_id = $1 AND user_id <> $2"
			      " AND membership IN ('join', 'invite') LIMIT 2",
			      2, p);
	if (!r)
		return -1;
	int rc = 1;
	if (PQntuples(r) == 1) {
		snprintf(out, len, "%s", PQgetvalue(r, 0, 0));
		rc = 0;
	}
	PQclear(r);
	return rc;
}

/* Caller, callee and identity rank (calls.h). 1 when the event is not
 * tracked. */
static int roles_of(struct app *app, struct db *db, struct call_input *in, struct al_error *err)
{
	char peer[USER_MAX + 1] = "";
	const struct calls_event *ev = &in->ev;
	bool need_peer = !(ev->kind == CALLS_INVITE && ev->invitee[0]);
	int prc = need_peer ? room_peer(db, in->room_id, in->sender, peer, sizeof(peer), err) : 0;
	if (prc < 0)
		return -1;
	switch (ev->kind) {
	case CALLS_INVITE:
		if (prc || strcmp(ev->invitee[0] ? ev->invitee : peer, in->sender) == 0)
			return 1;
		snprintf(in->caller, sizeof(in->caller), "%s", in->sender);
		snprintf(in->callee, sizeof(in->callee), "%s", ev->invitee[0] ? ev->invitee : peer);
		in->rank = 3;
		break;
	case CALLS_ANSWER:
	case CALLS_REJECT:
		snprintf(in->callee, sizeof(in->callee), "%s", in->sender);
		snprintf(in->caller, sizeof(in->caller), "%s", prc ? in->sender : peer);
		in->rank = prc ? 0 : 2;
		break;
	case CALLS_SELECT_ANSWER:
		snprintf(in->caller, sizeof(in->caller), "%s", in->sender);
		snprintf(in->callee, sizeof(in->callee), "%s", prc ? in->sender : peer);
		in->rank = prc ? 0 : 2;
		break;
	default:
		snprintf(in->caller, sizeof(in->caller), "%s", in->sender);
		snprintf(in->callee, sizeof(in->callee), "%s", prc ? in->sender : peer);
		in->rank = prc ? 0 : 1;
		break;
	}
	in->caller_local = federation_is_local(app, server_of(in->caller));
	in->callee_local = federation_is_local(app, server_of(in->callee));
	/* calls of nobody here; with rank 0 only an existing row is updated */
	if (in->rank > 0 && !in->caller_local && !in->callee_local)
		return 1;
	in->direction = in->caller_local && in->callee_local ? "local" : in->caller_local ? "outbound" : "inbound";
	return 0;
}

/* The callee's server decides on an invite: refuse (block_unknown_callers)
 * or which apps ring (allow_cross_app_calls, notify_targets). */
static int decide_ringing(struct db *db, struct call_input *in, int64_t now, struct al_error *err)
{
	const char *p[3] = {in->callee, in->caller, in->room_id};
	PGresult *r = db_exec(
		db, err,
		"SELECT r.aura_id, r.block_unknown_callers, r.allow_cross_app_calls,"
		" EXISTS (SELECT 1 FROM rooms WHERE room_id = $3 AND creator = $1)"
		" OR EXISTS (SELECT 1 FROM room_memberships a JOIN room_memberships b ON b.room_id = a.room_id"
		"  WHERE a.user_id = $1 AND a.membership = 'join' AND b.user_id = $2 AND b.membership = 'join'"
		"  AND a.room_id <> $3)"
		" FROM aura_id_registry r WHERE r.user_id = $1 AND r.status = 'active'",
		3, p);
	if (!r)
		return -1;
	in->notify = true; /* no AuraID: no connected apps, nothing rings */
	if (PQntuples(r) != 1) {
		PQclear(r);
		return 0;
	}
	char aura[USER_MAX + 1];
	snprintf(aura, sizeof(aura), "%s", PQgetvalue(r, 0, 0));
	bool block = PQgetvalue(r, 0, 1)[0] == 't';
	bool cross_app = PQgetvalue(r, 0, 2)[0] == 't';
	bool known = PQgetvalue(r, 0, 3)[0] == 't';
	PQclear(r);
	if (block && !known) {
		in->refused = true;
		return 0;
	}
	struct notify_prefs prefs;
	if (apps_prefs_load(db, aura, &prefs, err) < 0)
		return -1;
	int napps = apps_active_ids(db, aura, in->apps, APPS_MAX_ACTIVE, err);
	if (napps < 0)
		return -1;
	struct notify_app apps[APPS_MAX_ACTIVE];
	for (int i = 0; i < napps; i++) {
		apps[i].app_id = in->apps[i];
		/* without cross-app calls only the app the call came from rings */
		apps[i].is_active = cross_app || (in->ev.app_id[0] && strcmp(in->ev.app_id, in->apps[i]) == 0);
	}
	time_t t = (time_t)(now / 1000);
	struct tm tm;
	localtime_r(&t, &tm);
	int idx[NOTIFIED_MAX];
	int n = notify_targets(&prefs, apps, napps, known ? NOTIFY_CALL_PERSONAL : NOTIFY_CALL_UNKNOWN, tm.tm_wday,
			       tm.tm_hour * 60 + tm.tm_min, idx, NOTIFIED_MAX);
	for (int i = 0; i < n; i++)
		in->notified[in->nnotified++] = in->apps[idx[i]];
	return 0;
}

/* The one upsert: merge the event into the row (sql/041_calls.sql). */
static const char UPSERT[] =
	"INSERT INTO federated_calls AS f (room_id, call_id, caller_user_id, callee_user_id, caller_aura_id,"
	" callee_aura_id, caller_server, callee_server, direction, identity_rank, media_type, invite_event_id,"
	" voip_version, caller_party_id, first_ts, expires_ts, ring_ts, answer_ts, select_ts, refuse_ts,"
	" refuse_cause, hangup_ts, hangup_cause, notified_apps, route_id, initiated_at)"
	" SELECT $1, $2, $3, $4, (SELECT aura_id FROM aura_id_registry WHERE user_id = $3),"
	" (SELECT aura_id FROM aura_id_registry WHERE user_id = $4), $5, $6, $7, $8::smallint,"
	" coalesce($9, 'audio'), $10, $11, $12, $13::bigint, $14::bigint, $15::bigint, $16::bigint, $17::bigint,"
	" $18::bigint, $19, $20::bigint, $21, coalesce($22::text[], '{}'),"
	" CASE WHEN $7 = 'inbound' THEN (SELECT x.route_id::uuid FROM federation_routes_received x"
	"  WHERE x.origin = $5 AND x.call_id = $2"
	"  AND (x.content->>'room_id' IS NULL OR x.content->>'room_id' = $1)"
	"  AND x.route_id ~* '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'"
	"  ORDER BY x.id LIMIT 1) END,"
	" to_timestamp($13::bigint / 1000.0)"
	" WHERE $8::smallint > 0 OR EXISTS (SELECT 1 FROM federated_calls WHERE room_id = $1 AND call_id = $2)"
	" ON CONFLICT (room_id, call_id) DO UPDATE SET"
	" caller_user_id = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.caller_user_id ELSE f.caller_user_id END,"
	" callee_user_id = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.callee_user_id ELSE f.callee_user_id END,"
	" caller_aura_id = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.caller_aura_id ELSE f.caller_aura_id END,"
	" callee_aura_id = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.callee_aura_id ELSE f.callee_aura_id END,"
	" caller_server = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.caller_server ELSE f.caller_server END,"
	" callee_server = CASE WHEN EXCLUDED.identity_rank > f.identity_rank"
	"  THEN EXCLUDED.callee_server ELSE f.callee_server END,"
	" direction = CASE WHEN EXCLUDED.identity_rank > f.identity_rank THEN EXCLUDED.direction ELSE f.direction END,"
	" identity_rank = greatest(f.identity_rank, EXCLUDED.identity_rank),"
	" media_type = CASE WHEN f.invite_event_id IS NULL AND EXCLUDED.invite_event_id IS NOT NULL"
	"  THEN EXCLUDED.media_type ELSE f.media_type END,"
	" voip_version = CASE WHEN f.invite_event_id IS NULL AND EXCLUDED.invite_event_id IS NOT NULL"
	"  THEN EXCLUDED.voip_version ELSE coalesce(f.voip_version, EXCLUDED.voip_version) END,"
	" caller_party_id = CASE WHEN f.invite_event_id IS NULL AND EXCLUDED.invite_event_id IS NOT NULL"
	"  THEN EXCLUDED.caller_party_id ELSE f.caller_party_id END,"
	" notified_apps = CASE WHEN f.invite_event_id IS NULL AND EXCLUDED.invite_event_id IS NOT NULL"
	"  AND f.refuse_ts IS NULL AND f.hangup_ts IS NULL THEN EXCLUDED.notified_apps ELSE f.notified_apps END,"
	" invite_event_id = coalesce(f.invite_event_id, EXCLUDED.invite_event_id),"
	" first_ts = least(f.first_ts, EXCLUDED.first_ts),"
	" expires_ts = least(f.expires_ts, EXCLUDED.expires_ts),"
	" ring_ts = least(f.ring_ts, EXCLUDED.ring_ts),"
	" answer_ts = least(f.answer_ts, EXCLUDED.answer_ts),"
	" select_ts = least(f.select_ts, EXCLUDED.select_ts),"
	" refuse_cause = CASE WHEN EXCLUDED.refuse_ts IS NOT NULL AND (f.refuse_ts IS NULL"
	"  OR EXCLUDED.refuse_ts < f.refuse_ts OR (EXCLUDED.refuse_ts = f.refuse_ts"
	"  AND EXCLUDED.refuse_cause COLLATE \"C\" < f.refuse_cause COLLATE \"C\"))"
	"  THEN EXCLUDED.refuse_cause ELSE f.refuse_cause END,"
	" refuse_ts = least(f.refuse_ts, EXCLUDED.refuse_ts),"
	" hangup_cause = CASE WHEN EXCLUDED.hangup_ts IS NOT NULL AND (f.hangup_ts IS NULL"
	"  OR EXCLUDED.hangup_ts < f.hangup_ts OR (EXCLUDED.hangup_ts = f.hangup_ts"
	"  AND EXCLUDED.hangup_cause COLLATE \"C\" < f.hangup_cause COLLATE \"C\"))"
	"  THEN EXCLUDED.hangup_cause ELSE f.hangup_cause END,"
	" hangup_ts = least(f.hangup_ts, EXCLUDED.hangup_ts),"
	" route_id = coalesce(f.route_id, EXCLUDED.route_id)"
	" RETURNING " ROW_COLUMNS;

struct merge_arg {
	const struct call_input *in;
	int64_t now;
	struct call_row *row;
	bool found;
};

static int merge_txn(struct db *db, const void *arg, struct al_error *err)
{
	const struct merge_arg *a = arg;
	const struct call_input *in = a->in;
	const struct calls_milestones *s = &in->sig;
	char b[8][24], rank[8];
	char *notified = in->notify ? room_pg_array(in->notified, in->nnotified) : NULL;
	if (in->notify && !notified)
		return al_error_set(err, 500, "M_UNKNOWN", "out of memory");
	snprintf(rank, sizeof(rank), "%d", in->rank);
	bool invite = in->ev.kind == CALLS_INVITE;
	const char *p[22] = {in->room_id,
			     in->ev.call_id,
			     in->caller,
			     in->callee,
			     server_of(in->caller),
			     server_of(in->callee),
			     in->direction,
			     rank,
			     invite ? (in->ev.video ? "video" : "audio") : NULL,
			     invite ? in->event_id : NULL,
			     in->ev.version,
			     invite && in->ev.party_id[0] ? in->ev.party_id : NULL,
			     ms_param(b[0], sizeof(b[0]), s->first_ts),
			     ms_param(b[1], sizeof(b[1]), s->expires_ts),
			     ms_param(b[2], sizeof(b[2]), s->ring_ts),
			     ms_param(b[3], sizeof(b[3]), s->answer_ts),
			     ms_param(b[4], sizeof(b[4]), s->select_ts),
			     ms_param(b[5], sizeof(b[5]), s->refuse_ts),
			     s->refuse_ts ? s->refuse_cause : NULL,
			     ms_param(b[6], sizeof(b[6]), s->hangup_ts),
			     s->hangup_ts ? s->hangup_cause : NULL,
			     notified};
	PGresult *r = db_exec(db, err, UPSERT, 22, p);
	free(notified);
	if (!r)
		return -1;
	struct merge_arg *out = (struct merge_arg *)a;
	out->found = PQntuples(r) == 1;
	if (out->found)
		row_from(r, 0, a->row);
	PQclear(r);
	return out->found ? store_outcome(db, a->row, a->now, err) : 0;
}

/* ---- follow-ups, after the commit ---- */

/* block_unknown_callers: decline on the callee's behalf (calls.h). */
static void send_refusal(struct app *app, struct db *db, const struct call_row *row)
{
	bool v1 = strcmp(row->version, "0") != 0;
	json_t *content = json_pack("{s:s, s:s}", "call_id", row->call_id, "party_id", CALLS_SERVER_PARTY_ID);
	if (!content)
		return;
	json_object_set_new(content, "version", v1 ? json_string(row->version) : json_integer(0));
	struct room_ctx c = {.db = db, .keys = app->keys, .app = app};
	struct room_event_spec spec = {.type = v1 ? "m.call.reject" : "m.call.hangup", .content = content};
	char event_id[EVENT_ID_MAX];
	int64_t stream;
	struct al_error err = {0};
	if (room_send(&c, row->room_id, row->callee, &spec, event_id, &stream, &err) < 0)
		log_info("calls", "could not decline for the callee call_id=%s room=%s: %s", row->call_id, row->room_id,
			 err.message); /* e.g. she is invited, not joined */
	else
		log_info("calls", "declined an unknown caller call_id=%s room=%s event=%s", row->call_id, row->room_id,
			 event_id);
	json_decref(content);
}

/* Route on the caller's server (calls.h). mesh_route_find answers at once
 * for a local callee; for a remote one her server is first asked for her
 * AuraID and online nodes, and the rest runs on app->main_base with
 * app->maint_db. */
struct route_ctx {
	struct app *app;
	struct db *db; /* the connection of the thread the next step runs on */
	char id[37];
	char call_id[CALLS_ID_MAX + 1], room_id[ROOM_ID_MAX + 1];
	char caller[USER_MAX + 1], caller_aura[USER_MAX + 1];
	char callee[USER_MAX + 1], callee_aura[USER_MAX + 1], callee_server[USER_MAX + 1];
	int media;
	bool remote;
};

static void record_route(struct route_ctx *c, json_t *route)
{
	struct db *db = c->db;
	struct al_error err = {0};
	const char *route_id = json_string_value(json_object_get(route, "route_id"));
	bool queued = false;
	const char *p[2] = {c->id, route_id};
	PGresult *r = NULL;
	if (!route_id || db_begin(db, &err) < 0)
		goto out;
	r = db_exec(db, &err, "UPDATE federated_calls SET route_id = $2::uuid WHERE id = $1::uuid AND route_id IS NULL",
		    2, p);
	if (!r)
		goto rollback;
	if (c->remote && strcmp(PQcmdTuples(r), "1") == 0) {
		/* canonical JSON has no floats: whole milliseconds */
		double lat = json_number_value(json_object_get(route, "predicted_latency_ms"));
		json_t *edu = json_pack("{s:s, s:s, s:O, s:I, s:s}", "call_id", c->call_id, "route_id", route_id,
					"path_nodes", json_object_get(route, "path_nodes"), "predicted_latency_ms",
					(json_int_t)(lat + 0.5), "room_id", c->room_id);
		int rc = edu ? fed_sender_enqueue_edu(db, c->callee_server, CALLS_ROUTE_EDU, edu, &err) : -1;
		json_decref(edu);
		if (rc < 0)
			goto rollback;
		queued = true;
	}
	if (db_commit(db, &err) < 0)
		goto rollback;
	if (queued)
		federation_sender_wake(c->app);
	log_info("calls", "route call_id=%s route=%s%s", c->call_id, route_id, queued ? " sent" : "");
	goto out;
rollback:
	db_rollback(db);
	log_warn("calls", "could not record the route call_id=%s: %s", c->call_id, err.message);
out:
	PQclear(r);
}

static void on_route(void *arg, json_t *route, const struct al_error *err)
{
	struct route_ctx *c = arg;
	if (route)
		record_route(c, route);
	else
		log_info("calls", "no route call_id=%s from=%s to=%s: %s", c->call_id, c->caller_aura, c->callee_aura,
			 err && err->message[0] ? err->message : "-");
	json_decref(route);
	free(c);
}

static void find_route(struct route_ctx *c)
{
	mesh_route_find(c->app, c->db, c->caller, c->caller_aura, c->callee_aura, c->media, false, c->app->main_base,
			on_route, c);
}

/* org.auralink.mesh_nodes of the remote callee, on app->main_base. */
static void on_callee_nodes(void *arg, int status, json_t *body, const struct al_error *ferr)
{
	struct route_ctx *c = arg;
	struct al_error err = {0};
	c->db = c->app->maint_db;
	const char *uid = json_string_value(json_object_get(body, "user_id"));
	const char *aura = json_string_value(json_object_get(body, "aura_id"));
	if (status != 200 || !uid || strcmp(uid, c->callee) != 0 || !aura || !aura[0] || strlen(aura) > USER_MAX) {
		log_info("calls", "no route call_id=%s: the callee's nodes are not available status=%d error=%s",
			 c->call_id, status, ferr && ferr->message[0] ? ferr->message : "-");
		free(c);
		return;
	}
	/* the registry keys remote AuraIDs lower-cased (as mesh_route_find) */
	size_t i = 0;
	for (; aura[i]; i++)
		c->callee_aura[i] = (char)tolower((unsigned char)aura[i]);
	c->callee_aura[i] = '\0';
	if (mesh_registry_add_remote(c->app->mesh->reg, c->callee_aura, c->callee, json_object_get(body, "nodes"),
				     room_now_ms(), &err) < 0) {
		log_info("calls", "no route call_id=%s: the callee's nodes were refused: %s", c->call_id, err.message);
		free(c);
		return;
	}
	/* her server told us her AuraID: the row keeps it */
	const char *p[2] = {c->id, aura};
	PGresult *r = db_exec(
		c->db, &err,
		"UPDATE federated_calls SET callee_aura_id = $2 WHERE id = $1::uuid AND callee_aura_id IS NULL", 2, p);
	if (!r)
		log_warn("calls", "could not record the callee's AuraID call_id=%s: %s", c->call_id, err.message);
	PQclear(r);
	find_route(c);
}

static void pick_route(struct app *app, struct db *db, const struct call_row *row)
{
	struct route_ctx *c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->app = app;
	c->db = db;
	snprintf(c->id, sizeof(c->id), "%s", row->id);
	snprintf(c->call_id, sizeof(c->call_id), "%s", row->call_id);
	snprintf(c->room_id, sizeof(c->room_id), "%s", row->room_id);
	snprintf(c->caller, sizeof(c->caller), "%s", row->caller);
	snprintf(c->caller_aura, sizeof(c->caller_aura), "%s", row->caller_aura);
	snprintf(c->callee, sizeof(c->callee), "%s", row->callee);
	snprintf(c->callee_aura, sizeof(c->callee_aura), "%s", row->callee_aura);
	snprintf(c->callee_server, sizeof(c->callee_server), "%s", row->callee_server);
	c->media = strcmp(row->media, "video") == 0 ? MESH_MEDIA_VIDEO : MESH_MEDIA_AUDIO;
	c->remote = strcmp(row->direction, "outbound") == 0 && row->callee_server[0];
	if (c->callee_aura[0]) {
		find_route(c);
		return;
	}
	if (!c->remote || federation_query_mesh_nodes(app, c->callee, app->main_base, on_callee_nodes, c) < 0) {
		log_info("calls", "no route call_id=%s: the callee has no AuraID here", c->call_id);
		free(c);
	}
}

void calls_on_event(struct app *app, struct db *db, const char *room_id, const char *event_id, const char *type,
		    const json_t *event)
{
	if (calls_kind_parse(type) < 0 || !app || !db || !room_id || !event_id)
		return;
	struct al_error err = {0};
	json_t *loaded = NULL;
	struct call_input *in = calloc(1, sizeof(*in));
	struct call_row *row = calloc(1, sizeof(*row));
	if (!in || !row)
		goto out;
	if (!event && !(event = loaded = load_event(db, room_id, event_id, &err)))
		goto fail;
	in->room_id = room_id;
	in->event_id = event_id;
	in->sender = json_string_value(json_object_get(event, "sender"));
	json_t *ts = json_object_get(event, "origin_server_ts");
	if (!in->sender || strlen(in->sender) > USER_MAX || json_object_get(event, "state_key") ||
	    calls_event_parse(type, json_object_get(event, "content"), &in->ev) < 0)
		goto out; /* not a call event we track */
	int rc = roles_of(app, db, in, &err);
	if (rc < 0)
		goto fail;
	if (rc > 0)
		goto out;
	int64_t now = room_now_ms();
	int64_t origin_ts = json_is_integer(ts) ? (int64_t)json_integer_value(ts) : 0;
	bool invite = in->ev.kind == CALLS_INVITE;
	int64_t expires = (origin_ts > 0 ? origin_ts : now) + in->ev.lifetime_ms;
	/* the callee's server decides on a live invite */
	if (invite && in->callee_local && now < expires && decide_ringing(db, in, now, &err) < 0)
		goto fail;
	struct calls_context ctx = {
		.callee_local = in->callee_local, .refuse_cause = in->refused ? BLOCKED_CAUSE : NULL, .now_ms = now};
	calls_signal(&in->ev, origin_ts, &ctx, &in->sig);
	struct merge_arg a = {.in = in, .now = now, .row = row};
	if (db_transaction(db, &err, merge_txn, &a) < 0)
		goto fail;
	if (!a.found)
		goto out;
	log_debug("calls", "event call_id=%s type=%s status=%s", row->call_id, type, row->status);
	/* our refusal is the one that counts: decline once */
	if (in->refused && row->m.refuse_ts == in->sig.refuse_ts && strcmp(row->m.refuse_cause, BLOCKED_CAUSE) == 0)
		send_refusal(app, db, row);
	/* the first invite on the caller's server picks the route (not for a
	 * call that is already over, refused for instance) */
	bool over = strcmp(row->status, "ended") == 0 || strcmp(row->status, "failed") == 0;
	if (invite && in->caller_local && !over && !row->route_id[0] && strcmp(row->invite_event_id, event_id) == 0 &&
	    row->caller_aura[0] && strcmp(row->caller, in->sender) == 0)
		pick_route(app, db, row);
	goto out;
fail:
	log_warn("calls", "event not tracked event=%s room=%s: %s", event_id, room_id, err.message);
out:
	json_decref(loaded);
	free(in);
	free(row);
}

/* ---- GET /calls ---- */

static json_t *ms_or_null(int64_t v)
{
	return v ? json_integer((json_int_t)v) : json_null();
}

static json_t *str_or_null(const char *s)
{
	return s[0] ? json_string(s) : json_null();
}

/* "{a,b}" of app IDs (no quoting needed) -> array */
static json_t *apps_array(const char *lit)
{
	json_t *a = json_array();
	size_t n = strlen(lit);
	if (n < 2)
		return a;
	char buf[sizeof(((struct call_row *)0)->notified_apps)];
	snprintf(buf, sizeof(buf), "%.*s", (int)(n - 2), lit + 1);
	char *save = NULL;
	for (char *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
		json_array_append_new(a, json_string(t));
	return a;
}

static json_t *call_json(const struct call_row *row, const char *viewer, int64_t now)
{
	struct calls_outcome o;
	calls_derive(&row->m, now, &o);
	const char *reason = o.end_reason;
	bool callee = strcmp(viewer, row->callee) == 0;
	/* the caller is not told that she was blocked */
	if (!callee && strcmp(reason, BLOCKED_CAUSE) == 0)
		reason = "rejected";
	json_t *j = json_pack(
		"{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "call_id",
		row->call_id, "room_id", row->room_id, "caller_user_id", row->caller, "callee_user_id",
		str_or_null(row->callee), "caller_aura_id", str_or_null(row->caller_aura), "callee_aura_id",
		str_or_null(row->callee_aura), "caller_server", str_or_null(row->caller_server), "callee_server",
		str_or_null(row->callee_server), "direction", row->direction, "media_type", row->media, "call_status",
		calls_status_name(o.status), "end_reason", str_or_null(reason), "route_id", str_or_null(row->route_id),
		"initiated_at", ms_or_null(o.initiated_at), "ringing_at", ms_or_null(o.ringing_at), "connected_at",
		ms_or_null(o.connected_at), "ended_at", ms_or_null(o.ended_at), "duration_seconds",
		o.duration_seconds >= 0 ? json_integer(o.duration_seconds) : json_null());
	if (j && callee)
		json_object_set_new(j, "notified_apps", apps_array(row->notified_apps));
	return j;
}

int calls_list(struct db *db, const char *user_id, int limit, json_t **out, struct al_error *err)
{
	*out = NULL;
	if (limit < 1 || limit > CALLS_LIST_MAX)
		return al_error_set(err, 400, "M_INVALID_PARAM", "limit must be between 1 and %d", CALLS_LIST_MAX);
	char lim[16];
	snprintf(lim, sizeof(lim), "%d", limit);
	const char *p[2] = {user_id, lim};
	PGresult *r = db_exec(db, err,
			      "SELECT " ROW_COLUMNS " FROM federated_calls WHERE id IN ("
			      "(SELECT id FROM federated_calls WHERE caller_user_id = $1"
			      "  ORDER BY initiated_at DESC LIMIT $2::int) UNION ALL"
			      " (SELECT id FROM federated_calls WHERE callee_user_id = $1"
			      "  ORDER BY initiated_at DESC LIMIT $2::int))"
			      " ORDER BY initiated_at DESC, id DESC LIMIT $2::int",
			      2, p);
	if (!r)
		return -1;
	int64_t now = room_now_ms();
	json_t *calls = json_array();
	struct call_row *row = malloc(sizeof(*row));
	for (int i = 0; calls && row && i < PQntuples(r); i++) {
		row_from(r, i, row);
		if (json_array_append_new(calls, call_json(row, user_id, now)) < 0) {
			json_decref(calls);
			calls = NULL;
		}
	}
	free(row);
	PQclear(r);
	*out = calls && row ? json_pack("{s:o}", "calls", calls) : NULL;
	if (!*out && calls && !row)
		json_decref(calls);
	return *out ? 0 : al_error_set(err, 500, "M_UNKNOWN", "out of memory");
}

/* ---- expiry ---- */

int calls_expire(struct db *db, int64_t now_ms, struct al_error *err)
{
	char now_s[24], lim[16];
	snprintf(now_s, sizeof(now_s), "%lld", (long long)now_ms);
	snprintf(lim, sizeof(lim), "%d", CALLS_SWEEP_BATCH);
	const char *p[2] = {now_s, lim};
	if (db_begin(db, err) < 0)
		return -1;
	/* rows an event is merging into right now wait for the next run */
	PGresult *r = db_exec(db, err,
			      "SELECT " ROW_COLUMNS
			      " FROM federated_calls WHERE call_status IN ('initiated', 'ringing')"
			      " AND expires_ts <= $1::bigint AND timeout_ts IS NULL ORDER BY expires_ts"
			      " LIMIT $2::int FOR UPDATE SKIP LOCKED",
			      2, p);
	if (!r)
		goto fail;
	json_t *updates = json_array();
	struct call_row *row = malloc(sizeof(*row));
	int timed_out = 0;
	for (int i = 0; updates && row && i < PQntuples(r); i++) {
		row_from(r, i, row);
		bool t = calls_should_time_out(&row->m, now_ms);
		if (t) {
			row->m.timeout_ts = row->m.expires_ts;
			timed_out++;
		}
		struct calls_outcome o;
		calls_derive(&row->m, now_ms, &o);
		json_array_append_new(
			updates, json_pack("{s:s, s:o, s:s, s:o, s:o, s:o, s:o, s:o}", "id", row->id, "timeout_ts",
					   t ? json_integer((json_int_t)row->m.timeout_ts) : json_null(), "status",
					   calls_status_name(o.status), "ringing", ms_or_null(o.ringing_at),
					   "connected", ms_or_null(o.connected_at), "ended", ms_or_null(o.ended_at),
					   "reason", str_or_null(o.end_reason), "duration",
					   o.duration_seconds >= 0 ? json_integer(o.duration_seconds) : json_null()));
	}
	int n = PQntuples(r);
	PQclear(r);
	free(row);
	char *text = updates && n ? json_dumps(updates, JSON_COMPACT) : NULL;
	json_decref(updates);
	if (n && !text) {
		al_error_set(err, 500, "M_UNKNOWN", "out of memory");
		goto fail;
	}
	if (text) {
		const char *q[1] = {text};
		r = db_exec(db, err,
			    "UPDATE federated_calls f SET timeout_ts = coalesce(u.timeout_ts, f.timeout_ts),"
			    " call_status = u.status, ringing_at = to_timestamp(u.ringing / 1000.0),"
			    " connected_at = to_timestamp(u.connected / 1000.0),"
			    " ended_at = to_timestamp(u.ended / 1000.0), end_reason = u.reason,"
			    " duration_seconds = u.duration"
			    " FROM jsonb_to_recordset($1::jsonb) AS u(id uuid, timeout_ts bigint, status text,"
			    " ringing bigint, connected bigint, ended bigint, reason text, duration int)"
			    " WHERE f.id = u.id",
			    1, q);
		free(text);
		if (!r)
			goto fail;
		PQclear(r);
	}
	if (db_commit(db, err) < 0)
		goto fail;
	return timed_out;
fail:
	db_rollback(db);
	return -1;
}

static void on_sweep(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct app *app = arg;
	struct al_error err = {0};
	int n = calls_expire(app->maint_db, room_now_ms(), &err);
	if (n < 0)
		log_warn("calls", "expiry sweep failed: %s", err.message);
	else if (n > 0)
		log_info("calls", "invites expired unanswered count=%d", n);
}

int calls_start(struct app *app)
{
	struct calls_module *m = calloc(1, sizeof(*m));
	if (!m)
		return -1;
	app->calls = m;
	struct timeval tv = {CALLS_SWEEP_INTERVAL_MS / 1000, (CALLS_SWEEP_INTERVAL_MS % 1000) * 1000};
	m->sweep_ev = event_new(app->main_base, -1, EV_PERSIST, on_sweep, app);
	if (!m->sweep_ev || event_add(m->sweep_ev, &tv) < 0)
		return -1;
	return 0;
}

void calls_stop(struct app *app)
{
	struct calls_module *m = app->calls;
	if (!m)
		return;
	if (m->sweep_ev)
		event_free(m->sweep_ev);
	free(m);
	app->calls = NULL;
}
