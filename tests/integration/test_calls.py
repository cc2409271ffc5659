"""Calls (issue 7, part 2): m.call.* events in rooms tracked as
federated_calls rows (status, timestamps, duration, media, AuraIDs),
notify_targets and the callee's block_unknown_callers and
allow_cross_app_calls, the mesh route of a call, GET /calls, invite expiry,
and the org.auralink.route EDU recorded on the callee's server. Local users
on one server; test_fed_calls.py has calls between two servers."""
import time
import uuid

import requests

from rooms_util import User as RoomUser, errcode, wait_for

A = "/_auralink/client/v1"
VIDEO_SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
AUDIO_SDP = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


class User(RoomUser):
    def __init__(self, server, aura=True, **kw):
        super().__init__(server, **kw)
        self.aura = None
        if aura:
            name = "a" + uuid.uuid4().hex[:12]
            r = self.api("post", "/aura_id", {"username": name})
            assert r.status_code == 201, r.text
            self.aura = r.json()["aura_id"]

    def api(self, method, path, body=None, **kw):
        return getattr(requests, method)(self.s.base + A + path, headers=self.h, json=body, timeout=10, **kw)

    def node(self):
        r = self.api("post", "/mesh/nodes/register",
                     {"aura_id": self.aura, "node_type": "peer", "max_connections": 10,
                      "bandwidth_capacity_mbps": 100, "latitude": 48.85, "longitude": 2.35})
        assert r.status_code == 201, r.text
        return r.json()["node_id"]

    def app(self, app_id):
        r = self.api("post", "/apps", {"app_id": app_id, "app_name": app_id, "app_domain": "apps.example"})
        assert r.status_code == 201, r.text

    def patch_aura(self, **changes):
        r = self.api("patch", "/aura_id/me", changes)
        assert r.status_code == 200, r.text

    def call_event(self, room, type_, content):
        r = self.put("/rooms/%s/send/%s/%s" % (room, type_, uuid.uuid4().hex), content)
        assert r.status_code == 200, r.text
        return r.json()["event_id"]

    def calls(self, **params):
        r = self.api("get", "/calls", params=params)
        assert r.status_code == 200, r.text
        return r.json()["calls"]


def invite(user, room, call_id, sdp=AUDIO_SDP, lifetime=60000, **extra):
    c = {"call_id": call_id, "party_id": "caller-dev", "version": "1", "lifetime": lifetime,
         "offer": {"type": "offer", "sdp": sdp}}
    c.update(extra)
    return user.call_event(room, "m.call.invite", c)


def answer(user, room, call_id):
    return user.call_event(room, "m.call.answer", {"call_id": call_id, "party_id": "callee-dev", "version": "1",
                                                   "answer": {"type": "answer", "sdp": AUDIO_SDP}})


def hangup(user, room, call_id, party="caller-dev", **extra):
    return user.call_event(room, "m.call.hangup", dict({"call_id": call_id, "party_id": party, "version": "1"},
                                                      **extra))


def dm(caller, callee, created_by=None):
    """A room with just the two of them; created by `created_by` (default the caller)."""
    owner = created_by or caller
    other = callee if owner is caller else caller
    room = owner.create_room(invite=[other.user_id], is_direct=True)
    assert other.join(room).status_code == 200
    return room


def row(server, call_id, *cols):
    rows = server.sql("SELECT %s FROM federated_calls WHERE call_id = %%s" % ", ".join(cols), call_id)
    assert len(rows) == 1, rows
    return rows[0]


def quiet(server):
    """No call event failed to be tracked (SQL errors and the like)."""
    bad = [l for l in server.read_log().splitlines() if l.startswith(("warn calls:", "error calls:"))]
    assert not bad, bad


def test_full_call_ringing_answer_hangup(server):
    alice, bob = User(server), User(server)
    bob.app("chat.app")
    bob.app("work.app")
    na, nb = alice.node(), bob.node()
    room = dm(alice, bob)
    call_id = "call-" + uuid.uuid4().hex
    t0 = time.time()
    invite_id = invite(alice, room, call_id, sdp=VIDEO_SDP, invitee=bob.user_id)
    status, media, direction, caller, callee, caller_aura, callee_aura, cs, ces, apps, inv = row(
        server, call_id, "call_status", "media_type", "direction", "caller_user_id", "callee_user_id",
        "caller_aura_id", "callee_aura_id", "caller_server", "callee_server", "notified_apps", "invite_event_id")
    # the callee is local: ringing as soon as the invite is stored
    assert status == "ringing" and media == "video" and direction == "local"
    assert (caller, callee, caller_aura, callee_aura) == (alice.user_id, bob.user_id, alice.aura, bob.aura)
    assert cs == ces == server.server_name
    assert apps == ["chat.app", "work.app"] and inv == invite_id
    # the route, chosen by the mesh engine for the caller
    route_id = wait_for(lambda: row(server, call_id, "route_id::text")[0])
    assert route_id
    # its mesh_routes row is written in a batch shortly after
    assert wait_for(lambda: server.sql("SELECT source_aura_id, destination_aura_id, requested_by, path_nodes::text[] "
                                       "FROM mesh_routes WHERE route_id = %s", route_id)) == [
        (alice.aura, bob.aura, alice.user_id, [na, nb])]
    # candidates change nothing; the answer connects
    alice.call_event(room, "m.call.candidates", {"call_id": call_id, "party_id": "caller-dev", "version": "1",
                                                 "candidates": [{"candidate": "c", "sdpMid": "0"}]})
    assert row(server, call_id, "call_status") == ("ringing",)
    answer(bob, room, call_id)
    alice.call_event(room, "m.call.select_answer", {"call_id": call_id, "party_id": "caller-dev", "version": "1",
                                                    "selected_party_id": "callee-dev"})
    status, connected, ended = row(server, call_id, "call_status", "connected_at", "ended_at")
    assert status == "connected" and connected and ended is None
    time.sleep(max(0, 1.6 - (time.time() - t0)))
    hangup(alice, room, call_id, reason="user_hangup")
    status, duration, reason, ringing, connected, ended, initiated = row(
        server, call_id, "call_status", "duration_seconds", "end_reason", "ringing_at", "connected_at", "ended_at",
        "initiated_at")
    assert status == "ended" and reason == "user_hangup"
    assert initiated <= ringing <= connected < ended
    assert abs(duration - (ended - connected).total_seconds()) <= 0.5 and 1 <= duration <= 3
    # a second hangup (the other side) and a repeated answer change nothing
    hangup(bob, room, call_id, party="callee-dev")
    answer(bob, room, call_id)
    assert row(server, call_id, "call_status", "duration_seconds", "ended_at") == (status, duration, ended)
    assert server.sql("SELECT count(*) FROM federated_calls") == [(1,)]
    # GET /calls for both, with the fields of API.md
    for u in (alice, bob):
        calls = u.calls()
        assert len(calls) == 1
        c = calls[0]
        assert {"call_id", "room_id", "caller_aura_id", "callee_aura_id", "caller_server", "callee_server",
                "media_type", "call_status", "route_id", "initiated_at", "connected_at", "ended_at",
                "duration_seconds"} <= set(c)
        assert c["call_id"] == call_id and c["room_id"] == room and c["call_status"] == "ended"
        assert c["caller_aura_id"] == alice.aura and c["callee_aura_id"] == bob.aura
        assert c["route_id"] == route_id and c["media_type"] == "video" and c["duration_seconds"] == duration
        assert c["initiated_at"] <= c["connected_at"] < c["ended_at"]
        assert abs(c["ended_at"] / 1000 - ended.timestamp()) < 0.002
    assert "notified_apps" not in alice.calls()[0]
    assert bob.calls()[0]["notified_apps"] == ["chat.app", "work.app"]
    # the caller reports the route's performance: it feeds the mesh model
    r = alice.api("put", "/mesh/routes/%s/performance" % route_id, {"actual_latency_ms": 40, "packet_loss_rate": 0})
    assert r.status_code == 200, r.text
    assert server.sql("SELECT usage_count FROM mesh_routes WHERE route_id = %s", route_id) == [(1,)]
    quiet(server)


def test_reject_and_hangup_before_answer(server):
    alice, bob = User(server), User(server, aura=False)
    room = dm(alice, bob)
    invite(alice, room, "c-rej")
    # a callee without AuraID: rings, no connected apps
    assert row(server, "c-rej", "call_status", "notified_apps", "callee_aura_id") == ("ringing", [], None)
    bob.call_event(room, "m.call.reject", {"call_id": "c-rej", "party_id": "callee-dev", "version": "1"})
    bob.call_event(room, "m.call.reject", {"call_id": "c-rej", "party_id": "callee-dev2", "version": "1"})
    status, reason, ended, connected, duration = row(server, "c-rej", "call_status", "end_reason", "ended_at",
                                                     "connected_at", "duration_seconds")
    assert status == "failed" and reason == "rejected" and ended and connected is None and duration is None
    # no route without both AuraIDs
    assert row(server, "c-rej", "route_id::text") == (None,)
    # the caller gives up before an answer
    invite(alice, room, "c-cancel")
    hangup(alice, room, "c-cancel", reason="user_busy")
    assert row(server, "c-cancel", "call_status", "end_reason") == ("failed", "user_busy")
    # an answer that comes after the hangup does not connect it
    answer(bob, room, "c-cancel")
    assert row(server, "c-cancel", "call_status", "connected_at") == ("failed", None)
    # order: newest first, limit
    calls = alice.calls()
    assert [c["call_id"] for c in calls] == ["c-cancel", "c-rej"]
    assert [c["call_id"] for c in alice.calls(limit=1)] == ["c-cancel"]
    for bad in ("0", "101", "x", "", "-3"):
        r = alice.api("get", "/calls", params={"limit": bad})
        assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM", bad
    assert requests.get(server.base + A + "/calls", timeout=10).status_code == 401
    # a user who is in neither call sees none
    assert User(server, aura=False).calls() == []
    quiet(server)


def test_block_unknown_callers(server):
    bob, stranger, friend = User(server), User(server), User(server)
    bob.app("chat.app")
    bob.patch_aura(block_unknown_callers=True)
    stranger.node(), bob.node()
    # the stranger's DM: bob joined it, but they share no other room
    room = dm(stranger, bob)
    invite(stranger, room, "c-block")
    status, reason, apps, ringing = row(server, "c-block", "call_status", "end_reason", "notified_apps",
                                        "ringing_at")
    assert status == "failed" and reason == "blocked_unknown_caller" and apps == [] and ringing is None
    assert row(server, "c-block", "route_id::text") == (None,)  # no route for a refused call
    # the server declined on bob's behalf: the caller's client sees a reject
    msgs = bob.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 5}).json()["chunk"]
    rejects = [e for e in msgs if e["type"] == "m.call.reject"]
    assert len(rejects) == 1 and rejects[0]["sender"] == bob.user_id
    assert rejects[0]["content"] == {"call_id": "c-block", "party_id": "org.auralink.server", "version": "1"}
    # the caller is not told why; the callee is
    assert stranger.calls()[0]["end_reason"] == "rejected"
    assert bob.calls()[0]["end_reason"] == "blocked_unknown_caller"
    assert bob.calls()[0]["call_status"] == "failed"
    # the same invite again (a retry): still one decline
    invite(stranger, room, "c-block")
    msgs = bob.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 10}).json()["chunk"]
    assert len([e for e in msgs if e["type"] == "m.call.reject"]) == 1
    # a version 0 call gets a hangup
    stranger.call_event(room, "m.call.invite", {"call_id": "c-v0", "version": 0, "lifetime": 60000,
                                                 "offer": {"type": "offer", "sdp": AUDIO_SDP}})
    msgs = bob.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 3}).json()["chunk"]
    assert [e["content"] for e in msgs if e["type"] == "m.call.hangup"] == [
        {"call_id": "c-v0", "party_id": "org.auralink.server", "version": 0}]
    assert row(server, "c-v0", "call_status", "end_reason") == ("failed", "blocked_unknown_caller")
    # a known caller: bob created the room
    room2 = dm(friend, bob, created_by=bob)
    invite(friend, room2, "c-known")
    assert row(server, "c-known", "call_status", "notified_apps") == ("ringing", ["chat.app"])
    # ... or they share another joined room
    room3 = dm(stranger, bob)
    shared = bob.create_room(invite=[stranger.user_id])
    assert stranger.join(shared).status_code == 200
    invite(stranger, room3, "c-shared")
    assert row(server, "c-shared", "call_status") == ("ringing",)
    assert wait_for(lambda: row(server, "c-shared", "route_id::text")[0])
    quiet(server)


def test_notify_targets_and_cross_app_calls(server):
    alice, bob = User(server), User(server)
    for a in ("chat.app", "work.app", "home.app"):
        bob.app(a)
    r = bob.api("put", "/notification_preferences", {"ring_all_apps": False, "preferred_apps": ["home.app"]})
    assert r.status_code == 200, r.text
    room = dm(alice, bob)
    invite(alice, room, "c-pref")
    assert row(server, "c-pref", "notified_apps") == (["home.app"],)
    r = bob.api("put", "/notification_preferences", {"ring_all_apps": True, "preferred_apps": ["work.app"]})
    assert r.status_code == 200
    invite(alice, room, "c-all")
    assert row(server, "c-all", "notified_apps") == (["work.app", "chat.app", "home.app"],)
    # do not disturb, all day
    r = bob.api("put", "/notification_preferences", {"dnd_enabled": True, "dnd_start": "00:00", "dnd_end": "00:00"})
    assert r.status_code == 200, r.text
    invite(alice, room, "c-dnd")
    assert row(server, "c-dnd", "call_status", "notified_apps") == ("ringing", [])
    r = bob.api("put", "/notification_preferences", {"dnd_enabled": False})
    assert r.status_code == 200
    # no cross-app calls: only the app the call came from rings
    bob.patch_aura(allow_cross_app_calls=False)
    invite(alice, room, "c-same-app", **{"org.auralink.app_id": "chat.app"})
    assert row(server, "c-same-app", "notified_apps") == (["chat.app"],)
    invite(alice, room, "c-other-app", **{"org.auralink.app_id": "elsewhere.app"})
    assert row(server, "c-other-app", "call_status", "notified_apps") == ("ringing", [])
    invite(alice, room, "c-no-app")
    assert row(server, "c-no-app", "notified_apps") == ([],)
    quiet(server)


def test_out_of_order_and_duplicates(server):
    alice, bob = User(server), User(server)
    room = dm(alice, bob)
    # the answer and the hangup are stored before the invite
    answer(bob, room, "c-late")
    assert row(server, "c-late", "call_status", "identity_rank") == ("connected", 2)
    time.sleep(1.1)
    hangup(alice, room, "c-late")
    assert row(server, "c-late", "call_status", "duration_seconds") == ("ended", 1)
    invite(alice, room, "c-late", sdp=VIDEO_SDP)
    status, duration, media, rank, caller, callee, apps = row(
        server, "c-late", "call_status", "duration_seconds", "media_type", "identity_rank", "caller_user_id",
        "callee_user_id", "notified_apps")
    assert (status, duration, media, rank) == ("ended", 1, "video", 3)
    assert (caller, callee) == (alice.user_id, bob.user_id)
    assert apps == []  # a call that is over does not ring
    # a hangup first, then the invite: failed, and stays so
    hangup(alice, room, "c-h")
    invite(alice, room, "c-h")
    assert row(server, "c-h", "call_status", "end_reason", "ringing_at") == ("failed", "user_hangup", None)
    # an invite sent twice: one row, one route decision
    invite(alice, room, "c-dup")
    first = row(server, "c-dup", "invite_event_id", "initiated_at", "ringing_at")
    invite(alice, room, "c-dup")
    assert row(server, "c-dup", "invite_event_id", "initiated_at", "ringing_at") == first
    # malformed call events are stored but not tracked
    for content in ({"party_id": "x"}, {"call_id": 5}, {"call_id": "x" * 300}):
        alice.call_event(room, "m.call.invite", content)
    assert server.sql("SELECT count(*) FROM federated_calls") == [(3,)]
    # a group call invite without invitee is not tracked; with one it is
    carol = User(server, aura=False)
    group = alice.create_room(invite=[bob.user_id, carol.user_id])
    invite(alice, group, "c-group")
    assert server.sql("SELECT count(*) FROM federated_calls WHERE call_id = 'c-group'") == [(0,)]
    invite(alice, group, "c-group2", invitee=carol.user_id)
    assert row(server, "c-group2", "callee_user_id") == (carol.user_id,)
    quiet(server)


def test_invite_expiry(server):
    alice, bob = User(server), User(server)
    room = dm(alice, bob)
    invite(alice, room, "c-exp", lifetime=1000)
    assert row(server, "c-exp", "call_status") == ("ringing",)
    got = wait_for(lambda: row(server, "c-exp", "call_status", "end_reason", "timeout_ts", "expires_ts")[0] == "failed")
    assert got
    status, reason, timeout_ts, expires_ts, ended = row(server, "c-exp", "call_status", "end_reason", "timeout_ts",
                                                        "expires_ts", "ended_at")
    assert (status, reason) == ("failed", "invite_timeout") and timeout_ts == expires_ts
    assert abs(ended.timestamp() * 1000 - expires_ts) < 2
    # an answer arriving after the recorded timeout does not revive it
    answer(bob, room, "c-exp")
    assert row(server, "c-exp", "call_status", "end_reason") == ("failed", "invite_timeout")
    assert alice.calls()[0]["call_status"] == "failed"
    quiet(server)


def test_route_edu_recorded_on_the_callee_server(make_server):
    """B records the route that A's org.auralink.route EDU names on its
    inbound call row; only A (the caller's server) may set it. The row is
    made with SQL: a call from A's user to B's needs a room over
    federation."""
    a = make_server()
    b = make_server()
    bob = User(b)
    rid = str(uuid.uuid4())
    room = "!fedroom:" + a.server_name
    b.sql("INSERT INTO federated_calls (call_id, room_id, caller_user_id, callee_user_id, caller_server, "
          "callee_server, direction, identity_rank) VALUES ('c-fed', %s, %s, %s, %s, %s, 'inbound', 3)",
          room, "@alice:" + a.server_name, bob.user_id, a.server_name, b.server_name)
    # a route EDU from another origin is stored but ignored
    b.sql("INSERT INTO federation_routes_received (origin, call_id, route_id, content) "
          "VALUES ('evil.example', 'c-fed', %s, '{}')", str(uuid.uuid4()))
    assert row(b, "c-fed", "route_id::text") == (None,)
    content = '{"call_id": "c-fed", "route_id": "%s", "path_nodes": [], "predicted_latency_ms": 21, ' \
              '"room_id": "%s"}' % (rid, room)
    a.sql("INSERT INTO federation_outbox (destination, kind, payload) VALUES (%s, 'edu', "
          "('{\"edu_type\": \"org.auralink.route\", \"content\": ' || %s || '}')::jsonb)", b.server_name, content)
    got = wait_for(lambda: row(b, "c-fed", "route_id::text")[0], timeout=30)
    assert got == rid, (b.sql("SELECT origin, call_id, route_id, content::text FROM federation_routes_received"),
                        a.sql("SELECT count(*) FROM federation_outbox"), a.read_log()[-3000:])
    assert bob.calls()[0]["route_id"] == rid
    assert b.sql("SELECT predicted_latency_ms FROM federation_routes_received WHERE origin = %s",
                 a.server_name) == [(21,)]


def test_outbound_call_to_a_remote_callee(make_server):
    """A call from alice on A to bob on B, as far as one server can take it
    today: A's room lists bob as invited (rooms over federation will carry
    the events to B). A tracks the call as outbound, learns bob's AuraID and
    nodes from B (org.auralink.mesh_nodes), routes through the mesh engine
    and sends the route to B, which records it on its row (made with SQL
    here, as B's PDU path will make it)."""
    a = make_server()
    b = make_server()
    alice = User(a)
    na = alice.node()
    bob = User(b)
    nb = bob.node()
    room = alice.create_room(invite=[bob.user_id])
    b.sql("INSERT INTO federated_calls (call_id, room_id, caller_user_id, callee_user_id, caller_server, "
          "callee_server, direction, identity_rank) VALUES ('c-out', %s, %s, %s, %s, %s, 'inbound', 3)",
          room, alice.user_id, bob.user_id, a.server_name, b.server_name)
    invite(alice, room, "c-out", sdp=VIDEO_SDP)
    status, direction, callee, cs, ces, ringing = row(a, "c-out", "call_status", "direction", "callee_user_id",
                                                      "caller_server", "callee_server", "ringing_at")
    # the callee's server has not answered anything yet: initiated
    assert (status, direction, callee) == ("initiated", "outbound", bob.user_id)
    assert (cs, ces, ringing) == (a.server_name, b.server_name, None)
    route_id = wait_for(lambda: row(a, "c-out", "route_id::text")[0], timeout=15)
    assert route_id, a.read_log()[-3000:]
    assert row(a, "c-out", "callee_aura_id") == (bob.aura,)
    assert wait_for(lambda: a.sql("SELECT destination_aura_id, path_nodes::text[], media_type FROM mesh_routes"
                                  " WHERE route_id = %s", route_id)) == [(bob.aura, [na, nb], "video")]
    # B records the same route on its row
    assert wait_for(lambda: row(b, "c-out", "route_id::text")[0] == route_id, timeout=30), a.read_log()[-3000:]
    edu = b.sql("SELECT origin, content FROM federation_routes_received WHERE call_id = 'c-out'")
    assert len(edu) == 1 and edu[0][0] == a.server_name
    content = edu[0][1]
    assert content["route_id"] == route_id and content["path_nodes"] == [na, nb] and content["room_id"] == room
    assert isinstance(content["predicted_latency_ms"], int)
    assert [c["call_id"] for c in alice.calls()] == ["c-out"]
    quiet(a)
