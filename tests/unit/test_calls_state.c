#include "unit.h"
#include <stdio.h>
#include <string.h>

#include "calls_state.h"

#define T0 1700000000000LL /* invite's origin_server_ts */
#define SEC 1000LL

/* One event as the calls layer sees it: type, content, timestamp. */
struct ev {
	const char *type;
	const char *content;
	int64_t ts;
};

static void signal_of(const struct ev *e, bool callee_local, const char *refuse, int64_t now,
		      struct calls_milestones *out)
{
	json_t *c = json_loads(e->content, 0, NULL);
	ck_assert_ptr_nonnull(c);
	struct calls_event ce;
	ck_assert_int_eq(calls_event_parse(e->type, c, &ce), 0);
	struct calls_context ctx = {.callee_local = callee_local, .refuse_cause = refuse, .now_ms = now};
	calls_signal(&ce, e->ts, &ctx, out);
	json_decref(c);
}

/* Merge the events in the given order; outcome at now. The callee's server
 * stores each event at its own timestamp (now_ms = ts). */
static void run(const struct ev *evs, const int *order, int n, bool callee_local, int64_t now,
		struct calls_outcome *o, struct calls_milestones *mout)
{
	struct calls_milestones m, s;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < n; i++) {
		const struct ev *e = &evs[order ? order[i] : i];
		signal_of(e, callee_local, NULL, e->ts, &s);
		calls_merge(&m, &s);
	}
	calls_derive(&m, now, o);
	if (mout)
		*mout = m;
}

#define INVITE(ts) {"m.call.invite", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"lifetime\":60000," \
	"\"offer\":{\"type\":\"offer\",\"sdp\":\"v=0\\r\\nm=audio 9 UDP/TLS/RTP/SAVPF 111\\r\\n\"}}", ts}
#define ANSWER(ts) {"m.call.answer", \
	"{\"call_id\":\"c1\",\"party_id\":\"p2\",\"version\":\"1\",\"answer\":{\"type\":\"answer\",\"sdp\":\"v=0\"}}", ts}
#define SELECT(ts) {"m.call.select_answer", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"selected_party_id\":\"p2\"}", ts}
#define CANDIDATES(ts) {"m.call.candidates", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"candidates\":[]}", ts}
#define NEGOTIATE(ts) {"m.call.negotiate", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"lifetime\":10000," \
	"\"description\":{\"type\":\"offer\",\"sdp\":\"v=0\"}}", ts}
#define REJECT(ts) {"m.call.reject", "{\"call_id\":\"c1\",\"party_id\":\"p2\",\"version\":\"1\"}", ts}
#define HANGUP(ts) {"m.call.hangup", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"reason\":\"user_hangup\"}", ts}
#define HANGUP_R(ts, r) {"m.call.hangup", \
	"{\"call_id\":\"c1\",\"party_id\":\"p1\",\"version\":\"1\",\"reason\":\"" r "\"}", ts}

START_TEST(parse_events)
{
	struct calls_event e;
	json_t *c = json_pack("{s:s, s:s, s:i, s:i, s:{s:s, s:s}, s:s, s:s}", "call_id", "abc", "party_id", "dev1",
			      "version", 0, "lifetime", 30000, "offer", "type", "offer", "sdp",
			      "v=0\r\nm=audio 9 RTP 0\r\nm=video 9 RTP 96\r\n", "invitee", "@bob:b.test",
			      "org.auralink.app_id", "chat.app");
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), 0);
	ck_assert_int_eq(e.kind, CALLS_INVITE);
	ck_assert_str_eq(e.call_id, "abc");
	ck_assert_str_eq(e.party_id, "dev1");
	ck_assert_str_eq(e.version, "0");
	ck_assert_int_eq(e.lifetime_ms, 30000);
	ck_assert(e.video);
	ck_assert_str_eq(e.invitee, "@bob:b.test");
	ck_assert_str_eq(e.app_id, "chat.app");
	/* audio only; lifetime missing and too long */
	json_object_set_new(json_object_get(c, "offer"), "sdp", json_string("v=0\r\nm=audio 9 RTP 0\r\n"));
	json_object_del(c, "lifetime");
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), 0);
	ck_assert(!e.video);
	ck_assert_int_eq(e.lifetime_ms, CALLS_DEFAULT_LIFETIME_MS);
	json_object_set_new(c, "lifetime", json_integer(86400000));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), 0);
	ck_assert_int_eq(e.lifetime_ms, CALLS_MAX_LIFETIME_MS);
	/* malformed */
	json_object_set_new(c, "lifetime", json_string("soon"));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	json_object_set_new(c, "lifetime", json_integer(1000));
	json_object_set_new(c, "invitee", json_string("bob"));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	json_object_del(c, "invitee");
	char big[300];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	json_object_set_new(c, "call_id", json_string(big));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	json_object_set_new(c, "call_id", json_integer(7));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	json_object_set_new(c, "call_id", json_string(""));
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	json_object_set_new(c, "call_id", json_string("abc"));
	json_object_set_new(c, "version", json_true());
	ck_assert_int_eq(calls_event_parse("m.call.invite", c, &e), -1);
	ck_assert_int_eq(calls_event_parse("m.room.message", c, &e), -1);
	ck_assert_int_eq(calls_event_parse("m.call.unknown", c, &e), -1);
	json_decref(c);
	/* hangup reasons are bounded */
	c = json_pack("{s:s, s:s, s:s}", "call_id", "abc", "version", "1", "reason", "ice_failed");
	ck_assert_int_eq(calls_event_parse("m.call.hangup", c, &e), 0);
	ck_assert_str_eq(e.reason, "ice_failed");
	json_object_set_new(c, "reason", json_string("it's <b>over</b>"));
	ck_assert_int_eq(calls_event_parse("m.call.hangup", c, &e), 0);
	ck_assert_str_eq(e.reason, "unknown_error");
	json_decref(c);
	ck_assert_int_eq(calls_kind_parse("m.call.select_answer"), CALLS_SELECT_ANSWER);
	ck_assert(calls_sdp_has_video("m=video 9 RTP 96"));
	ck_assert(!calls_sdp_has_video("v=0\r\na=m=video\r\n"));
	ck_assert(!calls_sdp_has_video(NULL));
}
END_TEST

START_TEST(every_transition)
{
	struct calls_outcome o;
	struct ev inv[] = {INVITE(T0)};
	/* caller's server, remote callee: initiated until the callee side shows up */
	run(inv, NULL, 1, false, T0 + SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_INITIATED);
	ck_assert_int_eq(o.initiated_at, T0);
	ck_assert_int_eq(o.ringing_at, 0);
	/* callee's server: ringing once stored */
	run(inv, NULL, 1, true, T0 + SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_RINGING);
	ck_assert_int_eq(o.ringing_at, T0);
	/* initiated -> connected (the answer proves it rang) */
	struct ev call[] = {INVITE(T0), ANSWER(T0 + 2 * SEC), SELECT(T0 + 2 * SEC + 100), HANGUP(T0 + 62 * SEC + 400)};
	run(call, NULL, 2, false, T0 + 3 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_CONNECTED);
	ck_assert_int_eq(o.ringing_at, T0 + 2 * SEC);
	ck_assert_int_eq(o.connected_at, T0 + 2 * SEC);
	ck_assert_int_eq(o.duration_seconds, -1);
	/* connected stays connected past the invite's lifetime */
	run(call, NULL, 3, false, T0 + 120 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_CONNECTED);
	/* connected -> ended, duration rounded */
	run(call, NULL, 4, true, T0 + 120 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_ENDED);
	ck_assert_int_eq(o.ended_at, T0 + 62 * SEC + 400);
	ck_assert_int_eq(o.duration_seconds, 60);
	ck_assert_str_eq(o.end_reason, "user_hangup");
	ck_assert_int_eq(o.ringing_at, T0);
	/* select_answer alone also connects (the caller's server may see it first) */
	struct ev sel[] = {INVITE(T0), SELECT(T0 + SEC)};
	run(sel, NULL, 2, false, T0 + 2 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_CONNECTED);
	ck_assert_int_eq(o.connected_at, T0 + SEC);
	/* ringing -> failed: rejected */
	struct ev rej[] = {INVITE(T0), REJECT(T0 + 3 * SEC)};
	run(rej, NULL, 2, true, T0 + 4 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "rejected");
	ck_assert_int_eq(o.ended_at, T0 + 3 * SEC);
	ck_assert_int_eq(o.connected_at, 0);
	ck_assert_int_eq(o.duration_seconds, -1);
	/* ringing -> failed: the caller hangs up first, with her reason */
	struct ev cancel[] = {INVITE(T0), HANGUP_R(T0 + 5 * SEC, "user_busy")};
	run(cancel, NULL, 2, true, T0 + 6 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "user_busy");
	/* candidates and negotiate change nothing */
	struct ev cand[] = {INVITE(T0), CANDIDATES(T0 + 10), NEGOTIATE(T0 + 20)};
	run(cand, NULL, 3, true, T0 + SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_RINGING);
	ck_assert_int_eq(o.initiated_at, T0);
}
END_TEST

START_TEST(refused_by_the_callee_server)
{
	struct ev e = INVITE(T0);
	struct calls_milestones m, s;
	memset(&m, 0, sizeof(m));
	signal_of(&e, true, "blocked_unknown_caller", T0 + 5, &s);
	calls_merge(&m, &s);
	struct calls_outcome o;
	calls_derive(&m, T0 + 10, &o);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "blocked_unknown_caller");
	ck_assert_int_eq(o.ended_at, T0 + 5);
	ck_assert_int_eq(o.ringing_at, 0);
	/* the m.call.reject the server then sends on the callee's behalf
	 * comes later and keeps the cause */
	struct ev r = REJECT(T0 + 7);
	signal_of(&r, true, NULL, T0 + 7, &s);
	calls_merge(&m, &s);
	calls_derive(&m, T0 + 10, &o);
	ck_assert_str_eq(o.end_reason, "blocked_unknown_caller");
	ck_assert_int_eq(o.ended_at, T0 + 5);
}
END_TEST

START_TEST(expiry)
{
	struct calls_outcome o;
	struct calls_milestones m;
	struct ev inv[] = {INVITE(T0)};
	run(inv, NULL, 1, true, T0 + 59 * SEC, &o, &m);
	ck_assert_int_eq(o.status, CALLS_RINGING);
	ck_assert(!calls_should_time_out(&m, T0 + 59 * SEC));
	/* lifetime passed: failed at the expiry, seen before the sweeper ran */
	calls_derive(&m, T0 + 61 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "invite_timeout");
	ck_assert_int_eq(o.ended_at, T0 + 60 * SEC);
	ck_assert(calls_should_time_out(&m, T0 + 61 * SEC));
	/* the sweeper records it; an answer sent in time that arrives later
	 * does not revive the call */
	m.timeout_ts = m.expires_ts;
	ck_assert(!calls_should_time_out(&m, T0 + 61 * SEC));
	struct ev a = ANSWER(T0 + 59 * SEC);
	struct calls_milestones s;
	signal_of(&a, true, NULL, T0 + 65 * SEC, &s);
	calls_merge(&m, &s);
	calls_derive(&m, T0 + 66 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "invite_timeout");
	/* before the sweeper, the same late answer connects */
	struct ev late[] = {INVITE(T0), ANSWER(T0 + 59 * SEC)};
	run(late, NULL, 2, true, T0 + 65 * SEC, &o, &m);
	ck_assert_int_eq(o.status, CALLS_CONNECTED);
	ck_assert(!calls_should_time_out(&m, T0 + 65 * SEC));
	/* an answer after the lifetime does not count */
	struct ev after[] = {INVITE(T0), ANSWER(T0 + 61 * SEC)};
	run(after, NULL, 2, true, T0 + 62 * SEC, &o, &m);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "invite_timeout");
	/* a hangup before the expiry wins over it */
	struct ev hung[] = {INVITE(T0), HANGUP(T0 + 10 * SEC)};
	run(hung, NULL, 2, true, T0 + 70 * SEC, &o, &m);
	ck_assert_str_eq(o.end_reason, "user_hangup");
	ck_assert(!calls_should_time_out(&m, T0 + 70 * SEC));
	/* the caller's client hanging up with invite_timeout: never connected,
	 * even when an unselected answer (sent earlier) is known */
	struct ev gaveup[] = {INVITE(T0), ANSWER(T0 + 58 * SEC), HANGUP_R(T0 + 60 * SEC, "invite_timeout")};
	run(gaveup, NULL, 3, false, T0 + 70 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "invite_timeout");
}
END_TEST

START_TEST(reject_rules)
{
	struct calls_outcome o;
	/* a reject from another device after the answer is disregarded */
	struct ev a[] = {INVITE(T0), ANSWER(T0 + SEC), REJECT(T0 + 2 * SEC), HANGUP(T0 + 11 * SEC)};
	run(a, NULL, 4, true, T0 + 20 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_ENDED);
	ck_assert_int_eq(o.duration_seconds, 10);
	/* a reject before the answer wins ... */
	struct ev b[] = {INVITE(T0), REJECT(T0 + SEC), ANSWER(T0 + 2 * SEC)};
	run(b, NULL, 3, true, T0 + 20 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "rejected");
	/* ... unless the caller selected an answer */
	struct ev c[] = {INVITE(T0), REJECT(T0 + SEC), ANSWER(T0 + 2 * SEC), SELECT(T0 + 3 * SEC)};
	run(c, NULL, 4, true, T0 + 20 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_CONNECTED);
	/* an answer after the hangup never connected */
	struct ev d[] = {INVITE(T0), HANGUP(T0 + SEC), ANSWER(T0 + 2 * SEC)};
	run(d, NULL, 3, true, T0 + 20 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_str_eq(o.end_reason, "user_hangup");
}
END_TEST

static bool same(const struct calls_outcome *a, const struct calls_outcome *b)
{
	return a->status == b->status && a->initiated_at == b->initiated_at && a->ringing_at == b->ringing_at &&
	       a->connected_at == b->connected_at && a->ended_at == b->ended_at &&
	       a->duration_seconds == b->duration_seconds && strcmp(a->end_reason, b->end_reason) == 0;
}

/* Every order of the events (Heap's algorithm), each also with every event
 * delivered twice: one outcome. */
static void all_orders(const struct ev *evs, int n, bool callee_local, int64_t now, const struct calls_outcome *want)
{
	int order[8], c[8] = {0}, twice[16];
	for (int i = 0; i < n; i++)
		order[i] = i;
	struct calls_outcome o;
	int i = 0, count = 0;
	for (;;) {
		run(evs, order, n, callee_local, now, &o, NULL);
		ck_assert_msg(same(&o, want), "order %d gives %s", count, calls_status_name(o.status));
		for (int k = 0; k < n; k++)
			twice[2 * k] = twice[2 * k + 1] = order[k];
		run(evs, twice, 2 * n, callee_local, now, &o, NULL);
		ck_assert(same(&o, want));
		count++;
		while (i < n && c[i] >= i) {
			c[i] = 0;
			i++;
		}
		if (i >= n)
			break;
		int j = (i % 2) ? c[i] : 0;
		int t = order[j];
		order[j] = order[i];
		order[i] = t;
		c[i]++;
		i = 0;
	}
	int fact = 1;
	for (int k = 2; k <= n; k++)
		fact *= k;
	ck_assert_int_eq(count, fact);
}

START_TEST(order_and_duplicates_do_not_matter)
{
	struct ev call[] = {INVITE(T0), CANDIDATES(T0 + 50), ANSWER(T0 + 2 * SEC), SELECT(T0 + 2 * SEC + 100),
			    HANGUP(T0 + 32 * SEC)};
	struct calls_outcome want;
	run(call, NULL, 5, true, T0 + 100 * SEC, &want, NULL);
	ck_assert_int_eq(want.status, CALLS_ENDED);
	ck_assert_int_eq(want.duration_seconds, 30);
	all_orders(call, 5, true, T0 + 100 * SEC, &want);
	/* the caller's server: rang when the answer came */
	run(call, NULL, 5, false, T0 + 100 * SEC, &want, NULL);
	ck_assert_int_eq(want.ringing_at, T0 + 2 * SEC);
	all_orders(call, 5, false, T0 + 100 * SEC, &want);
	struct ev rej[] = {INVITE(T0), REJECT(T0 + SEC), HANGUP(T0 + 2 * SEC), ANSWER(T0 + 3 * SEC)};
	run(rej, NULL, 4, true, T0 + 100 * SEC, &want, NULL);
	ck_assert_int_eq(want.status, CALLS_FAILED);
	ck_assert_str_eq(want.end_reason, "rejected");
	all_orders(rej, 4, true, T0 + 100 * SEC, &want);
	/* simultaneous ends: the cause does not depend on the order either */
	struct ev tie[] = {INVITE(T0), REJECT(T0 + SEC), HANGUP_R(T0 + SEC, "user_busy")};
	run(tie, NULL, 3, true, T0 + 2 * SEC, &want, NULL);
	all_orders(tie, 3, true, T0 + 2 * SEC, &want);
}
END_TEST

START_TEST(late_invite_after_hangup)
{
	struct calls_outcome o;
	/* the answer and the hangup arrive, then the invite */
	struct ev ev[] = {ANSWER(T0 + 2 * SEC), HANGUP(T0 + 12 * SEC), INVITE(T0)};
	struct calls_milestones m, s;
	memset(&m, 0, sizeof(m));
	for (int i = 0; i < 2; i++) {
		signal_of(&ev[i], true, NULL, ev[i].ts, &s);
		calls_merge(&m, &s);
	}
	calls_derive(&m, T0 + 13 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_ENDED);
	ck_assert_int_eq(o.duration_seconds, 10);
	/* stored long after: ringing would be later than the end */
	signal_of(&ev[2], true, NULL, T0 + 20 * SEC, &s);
	calls_merge(&m, &s);
	calls_derive(&m, T0 + 20 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_ENDED);
	ck_assert_int_eq(o.duration_seconds, 10);
	ck_assert_int_eq(o.initiated_at, T0);
	ck_assert_int_eq(o.ringing_at, T0 + 2 * SEC); /* the answer's */
	/* a hangup alone, then the invite: failed, and stays failed */
	struct ev h[] = {HANGUP(T0 + 5 * SEC), INVITE(T0)};
	memset(&m, 0, sizeof(m));
	signal_of(&h[0], true, NULL, h[0].ts, &s);
	calls_merge(&m, &s);
	calls_derive(&m, T0 + 6 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	signal_of(&h[1], true, NULL, T0 + 6 * SEC, &s);
	calls_merge(&m, &s);
	calls_derive(&m, T0 + 6 * SEC, &o);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	ck_assert_int_eq(o.ringing_at, 0);
	ck_assert_str_eq(o.end_reason, "user_hangup");
}
END_TEST

START_TEST(a_late_answer_refines_failed_to_ended)
{
	struct calls_outcome o;
	struct ev ev[] = {INVITE(T0), HANGUP(T0 + 9 * SEC), ANSWER(T0 + 4 * SEC)};
	run(ev, NULL, 2, true, T0 + 10 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_FAILED);
	run(ev, NULL, 3, true, T0 + 10 * SEC, &o, NULL);
	ck_assert_int_eq(o.status, CALLS_ENDED);
	ck_assert_int_eq(o.duration_seconds, 5);
}
END_TEST

UNIT_MAIN("calls_state", parse_events, every_transition, refused_by_the_callee_server, expiry, reject_rules,
	  order_and_duplicates_do_not_matter, late_invite_after_hangup, a_late_answer_refines_failed_to_ended)
