/* calls_state.c - the state machine of one call: see calls_state.h. */
#include "calls_state.h"

#include <stdio.h>
#include <string.h>

#define TIMEOUT_CAUSE "invite_timeout"

const char *calls_status_name(enum calls_status s)
{
	switch (s) {
	case CALLS_INITIATED:
		return "initiated";
	case CALLS_RINGING:
		return "ringing";
	case CALLS_CONNECTED:
		return "connected";
	case CALLS_ENDED:
		return "ended";
	case CALLS_FAILED:
		return "failed";
	}
	return "initiated";
}

static const char *const kind_types[] = {
	[CALLS_INVITE] = "m.call.invite",
	[CALLS_CANDIDATES] = "m.call.candidates",
	[CALLS_ANSWER] = "m.call.answer",
	[CALLS_SELECT_ANSWER] = "m.call.select_answer",
	[CALLS_NEGOTIATE] = "m.call.negotiate",
	[CALLS_REJECT] = "m.call.reject",
	[CALLS_HANGUP] = "m.call.hangup",
};

int calls_kind_parse(const char *type)
{
	if (!type || strncmp(type, "m.call.", 7) != 0)
		return -1;
	for (size_t i = 0; i < sizeof(kind_types) / sizeof(kind_types[0]); i++)
		if (strcmp(type, kind_types[i]) == 0)
			return (int)i;
	return -1;
}

bool calls_sdp_has_video(const char *sdp)
{
	if (!sdp)
		return false;
	for (const char *p = sdp; p; p = strchr(p, '\n')) {
		if (*p == '\n')
			p++;
		if (strncmp(p, "m=video", 7) == 0)
			return true;
	}
	return false;
}

/* A string member of at most max bytes into out ("" when absent); -1 when
 * present with the wrong type or too long. */
static int opt_string(const json_t *content, const char *key, char *out, size_t max)
{
	json_t *v = json_object_get(content, key);
	out[0] = '\0';
	if (!v)
		return 0;
	if (!json_is_string(v) || json_string_length(v) > max)
		return -1;
	snprintf(out, max + 1, "%s", json_string_value(v));
	return 0;
}

static bool cause_valid(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > CALLS_CAUSE_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
		      c == '.' || c == '-'))
			return false;
	}
	return true;
}

int calls_event_parse(const char *type, const json_t *content, struct calls_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	ev->kind = calls_kind_parse(type);
	if (ev->kind < 0 || !json_is_object(content))
		return -1;
	json_t *cid = json_object_get(content, "call_id");
	if (!json_is_string(cid) || json_string_length(cid) == 0 || json_string_length(cid) > CALLS_ID_MAX)
		return -1;
	snprintf(ev->call_id, sizeof(ev->call_id), "%s", json_string_value(cid));
	if (opt_string(content, "party_id", ev->party_id, CALLS_ID_MAX) < 0)
		return -1;
	json_t *ver = json_object_get(content, "version");
	if (json_is_integer(ver) && json_integer_value(ver) >= 0 && json_integer_value(ver) < 1000)
		snprintf(ev->version, sizeof(ev->version), "%d", (int)json_integer_value(ver));
	else if (json_is_string(ver) && json_string_length(ver) >= 1 && json_string_length(ver) <= CALLS_VERSION_MAX)
		snprintf(ev->version, sizeof(ev->version), "%s", json_string_value(ver));
	else if (ver)
		return -1;
	else
		snprintf(ev->version, sizeof(ev->version), "0");
	if (ev->kind == CALLS_INVITE) {
		json_t *lt = json_object_get(content, "lifetime");
		if (lt && (!json_is_integer(lt) || json_integer_value(lt) < 0))
			return -1;
		ev->lifetime_ms = lt ? (int64_t)json_integer_value(lt) : CALLS_DEFAULT_LIFETIME_MS;
		if (ev->lifetime_ms > CALLS_MAX_LIFETIME_MS)
			ev->lifetime_ms = CALLS_MAX_LIFETIME_MS;
		if (opt_string(content, "invitee", ev->invitee, CALLS_ID_MAX) < 0 ||
		    (ev->invitee[0] && ev->invitee[0] != '@'))
			return -1;
		json_t *offer = json_object_get(content, "offer");
		json_t *sdp = json_is_object(offer) ? json_object_get(offer, "sdp") : NULL;
		ev->video = json_is_string(sdp) && calls_sdp_has_video(json_string_value(sdp));
		/* an app that does not name itself validly is simply not named */
		if (opt_string(content, "org.auralink.app_id", ev->app_id, NOTIFY_APP_ID_MAX) < 0)
			ev->app_id[0] = '\0';
	} else if (ev->kind == CALLS_HANGUP) {
		json_t *r = json_object_get(content, "reason");
		if (json_is_string(r))
			snprintf(ev->reason, sizeof(ev->reason), "%s",
				 cause_valid(json_string_value(r)) ? json_string_value(r) : "unknown_error");
	}
	return 0;
}

void calls_signal(const struct calls_event *ev, int64_t origin_ts, const struct calls_context *ctx,
		  struct calls_milestones *out)
{
	memset(out, 0, sizeof(*out));
	int64_t ts = origin_ts > 0 ? origin_ts : ctx->now_ms;
	out->first_ts = ts;
	switch (ev->kind) {
	case CALLS_INVITE:
		out->expires_ts = ts + ev->lifetime_ms;
		if (ctx->callee_local) {
			int64_t at = ctx->now_ms > ts ? ctx->now_ms : ts;
			if (ctx->refuse_cause) {
				out->refuse_ts = at;
				snprintf(out->refuse_cause, sizeof(out->refuse_cause), "%s", ctx->refuse_cause);
			} else {
				out->ring_ts = at;
			}
		}
		break;
	case CALLS_ANSWER:
		out->answer_ts = ts;
		out->ring_ts = ts;
		break;
	case CALLS_SELECT_ANSWER:
		out->select_ts = ts;
		break;
	case CALLS_REJECT:
		out->refuse_ts = ts;
		out->ring_ts = ts;
		snprintf(out->refuse_cause, sizeof(out->refuse_cause), "rejected");
		break;
	case CALLS_HANGUP:
		out->hangup_ts = ts;
		snprintf(out->hangup_cause, sizeof(out->hangup_cause), "%s", ev->reason[0] ? ev->reason : "user_hangup");
		break;
	default:
		break;
	}
}

static void least(int64_t *a, int64_t b)
{
	if (b && (!*a || b < *a))
		*a = b;
}

/* The earliest (ts, cause); equal timestamps keep the smaller cause (as
 * PostgreSQL compares text COLLATE "C"). */
static void least_cause(int64_t *ts, char *cause, size_t len, int64_t bts, const char *bcause)
{
	if (!bts)
		return;
	if (!*ts || bts < *ts || (bts == *ts && strcmp(bcause, cause) < 0)) {
		*ts = bts;
		snprintf(cause, len, "%s", bcause);
	}
}

void calls_merge(struct calls_milestones *m, const struct calls_milestones *s)
{
	least(&m->first_ts, s->first_ts);
	least(&m->expires_ts, s->expires_ts);
	least(&m->ring_ts, s->ring_ts);
	least(&m->answer_ts, s->answer_ts);
	least(&m->select_ts, s->select_ts);
	least(&m->timeout_ts, s->timeout_ts);
	least_cause(&m->refuse_ts, m->refuse_cause, sizeof(m->refuse_cause), s->refuse_ts, s->refuse_cause);
	least_cause(&m->hangup_ts, m->hangup_cause, sizeof(m->hangup_cause), s->hangup_ts, s->hangup_cause);
}

/* As calls_derive; *virtual_timeout tells whether the end is an expiry that
 * was not recorded yet. */
static void derive(const struct calls_milestones *m, int64_t now, struct calls_outcome *o,
		   bool *virtual_timeout)
{
	memset(o, 0, sizeof(*o));
	o->duration_seconds = -1;
	o->initiated_at = m->first_ts;
	*virtual_timeout = false;
	int64_t connect = m->answer_ts ? m->answer_ts : m->select_ts;
	bool refused = m->refuse_ts && !m->select_ts && (!m->answer_ts || m->refuse_ts < m->answer_ts);
	int64_t timeout = m->timeout_ts;
	if (!timeout && m->expires_ts && now >= m->expires_ts && (!connect || connect > m->expires_ts)) {
		timeout = m->expires_ts;
		*virtual_timeout = true;
	}
	bool hung_up_first = m->hangup_ts && (m->hangup_ts < connect ||
					      (!m->select_ts && strcmp(m->hangup_cause, TIMEOUT_CAUSE) == 0));
	bool answered = connect && !refused && !m->timeout_ts && !hung_up_first &&
			(!m->expires_ts || connect <= m->expires_ts);
	if (answered) {
		o->connected_at = connect;
		if (m->hangup_ts) {
			o->status = CALLS_ENDED;
			o->ended_at = m->hangup_ts;
			o->duration_seconds = (int)((m->hangup_ts - connect + 500) / 1000);
			snprintf(o->end_reason, sizeof(o->end_reason), "%s", m->hangup_cause);
		} else {
			o->status = CALLS_CONNECTED;
		}
	} else {
		int64_t end = 0;
		char cause[CALLS_CAUSE_MAX + 1] = "";
		least_cause(&end, cause, sizeof(cause), m->hangup_ts, m->hangup_cause);
		if (refused)
			least_cause(&end, cause, sizeof(cause), m->refuse_ts, m->refuse_cause);
		int64_t before = end;
		least_cause(&end, cause, sizeof(cause), timeout, TIMEOUT_CAUSE);
		if (*virtual_timeout && end == before && strcmp(cause, TIMEOUT_CAUSE) != 0)
			*virtual_timeout = false; /* an earlier end won */
		if (end) {
			o->status = CALLS_FAILED;
			o->ended_at = end;
			snprintf(o->end_reason, sizeof(o->end_reason), "%s", cause);
		} else {
			o->status = m->ring_ts ? CALLS_RINGING : CALLS_INITIATED;
		}
	}
	if (m->ring_ts && (!o->ended_at || m->ring_ts <= o->ended_at))
		o->ringing_at = m->ring_ts;
}

void calls_derive(const struct calls_milestones *m, int64_t now_ms, struct calls_outcome *out)
{
	bool v;
	derive(m, now_ms, out, &v);
}

bool calls_should_time_out(const struct calls_milestones *m, int64_t now_ms)
{
	struct calls_outcome o;
	bool v;
	derive(m, now_ms, &o, &v);
	return v && o.status == CALLS_FAILED && o.ended_at == m->expires_ts;
}
