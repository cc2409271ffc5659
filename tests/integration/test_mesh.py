"""Mesh (issue 5): node registry, heartbeats and expiry, reputation and
relay eligibility, privacy, route finding and feedback, analytics, against a
real auralinkd and PostgreSQL."""
import time
import uuid

import pytest
import requests

from rooms_util import wait_for

C = "/_matrix/client/v3"
M = "/_auralink/client/v1/mesh"
ADMIN = "/_auralink/admin/v1/mesh"

MESH_CONF = "mesh = { online_window_seconds = 2; flush_interval_ms = 100; heartbeat_min_interval_ms = 200; };"


class User:
    def __init__(self, s, name, privacy="public"):
        r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                          "password": "pw-" + name})
        assert r.status_code == 200, r.text
        self.s = s
        self.user_id = r.json()["user_id"]
        self.h = {"Authorization": "Bearer " + r.json()["access_token"]}
        r = s.post("/_auralink/client/v1/aura_id", headers=self.h,
                   json={"username": name, "privacy_level": privacy})
        assert r.status_code == 201, r.text
        self.aura = r.json()["aura_id"]

    def get(self, path, **kw):
        return self.s.get(M + path, headers=self.h, **kw)

    def post(self, path, body, **kw):
        return self.s.post(M + path, headers=self.h, json=body, **kw)

    def put(self, path, body):
        return self.s.put(M + path, headers=self.h, json=body)

    def delete(self, path):
        return requests.delete(self.s.base + M + path, headers=self.h, timeout=10)

    def register(self, **kw):
        body = {"aura_id": self.aura, "node_type": "peer", "max_connections": 10,
                "bandwidth_capacity_mbps": 100, "latitude": 51.5, "longitude": -0.13,
                "region": "eu-west", "country_code": "GB", "address": "198.51.100.7", "port": 4000}
        body.update(kw)
        r = self.post("/nodes/register", body)
        assert r.status_code == 201, r.text
        return r.json()

    def beat(self, node_id, **kw):
        body = {"node_id": node_id}
        body.update(kw)
        return self.post("/nodes/heartbeat", body)


@pytest.fixture
def mesh_server(make_server):
    s = make_server(start=False)
    s.write_config(True, 'admins = ["@meshadmin:%s"]; %s' % (s.server_name, MESH_CONF))
    return s.start()


def test_register_get_list_and_db(mesh_server):
    alice = User(mesh_server, "alice")
    n = alice.register()
    assert uuid.UUID(n["node_id"])
    assert n["aura_id"] == alice.aura and n["node_type"] == "peer"
    assert n["is_online"] is True and n["reputation_score"] == 50 and n["trust_level"] == "new"
    assert n["latitude"] == pytest.approx(51.5) and n["country_code"] == "GB"
    r = alice.get("/nodes/" + n["node_id"])
    assert r.status_code == 200 and r.json()["node_id"] == n["node_id"]
    r = alice.get("/nodes/aura/" + alice.aura)
    assert r.status_code == 200 and [x["node_id"] for x in r.json()["nodes"]] == [n["node_id"]]
    rows = mesh_server.sql("SELECT aura_id, user_id, node_type FROM mesh_nodes WHERE node_id = %s",
                           n["node_id"])
    assert rows == [(alice.aura, alice.user_id, "peer")]


def test_register_needs_own_aura_id(mesh_server):
    alice = User(mesh_server, "alice2")
    bob = User(mesh_server, "bob2")
    r = bob.post("/nodes/register", {"aura_id": alice.aura})
    assert r.status_code == 403, r.text
    r = mesh_server.post(M + "/nodes/register", json={"aura_id": alice.aura})
    assert r.status_code == 401


@pytest.mark.parametrize("field,value", [
    ("latitude", 91), ("longitude", -181), ("max_connections", -1), ("max_connections", 0),
    ("bandwidth_capacity_mbps", -5), ("node_type", "satellite"), ("port", 70000),
    ("country_code", "gb"), ("supports_aic", "yes"), ("aura_id", 7),
])
def test_register_bad_inputs_name_the_field(mesh_server, field, value):
    u = User(mesh_server, "bad" + uuid.uuid4().hex[:8])
    body = {"aura_id": u.aura, field: value}
    if field == "latitude":
        body["longitude"] = 0
    if field == "longitude":
        body["latitude"] = 0
    r = u.post("/nodes/register", body)
    assert r.status_code == 400, r.text
    assert r.json()["errcode"] == "M_INVALID_PARAM"
    assert field in r.json()["error"]
    assert mesh_server.sql("SELECT count(*) FROM mesh_nodes")[0][0] == 0


def test_heartbeat_bad_inputs(mesh_server):
    u = User(mesh_server, "hbbad")
    n = u.register()
    for field, value in [("packet_loss_rate", 1.5), ("current_connections", -1),
                         ("avg_latency_ms", "fast"), ("node_id", "not-a-uuid")]:
        body = {"node_id": n["node_id"], field: value}
        r = u.post("/nodes/heartbeat", body)
        assert r.status_code == 400, r.text
        assert field in r.json()["error"]
    r = u.beat(str(uuid.uuid4()))
    assert r.status_code == 404


def test_heartbeat_expiry_and_flush(mesh_server):
    u = User(mesh_server, "beater")
    other = User(mesh_server, "other")
    n = u.register()
    nid = n["node_id"]
    r = u.beat(nid, current_connections=3, bandwidth_used_mbps=12.5, avg_latency_ms=20,
               packet_loss_rate=0.01)
    assert r.status_code == 200, r.text
    # per-node limit
    r = u.beat(nid)
    assert r.status_code == 429 and r.json()["retry_after_ms"] > 0
    # not her node
    time.sleep(0.25)
    assert other.beat(nid).status_code == 403
    j = u.get("/nodes/" + nid).json()
    assert j["current_connections"] == 3 and j["bandwidth_used_mbps"] == 12.5
    # batched flush reaches the database
    assert wait_for(lambda: mesh_server.sql(
        "SELECT current_connections FROM mesh_nodes WHERE node_id = %s", nid)[0][0] == 3)
    # no heartbeat for the 2 s window: offline, in memory and in the database
    assert wait_for(lambda: u.get("/nodes/" + nid).json()["is_online"] is False)
    assert wait_for(lambda: mesh_server.sql(
        "SELECT is_online FROM mesh_nodes WHERE node_id = %s", nid)[0][0] is False)
    ev = wait_for(lambda: mesh_server.sql(
        "SELECT event_type, previous_score, new_score FROM node_reputation_events WHERE node_id = %s",
        nid))
    assert ev == [("missed_heartbeat", 50.0, 49.0)]
    st = u.get("/network/status").json()
    assert st["online_nodes"] == 0 and st["total_nodes"] == 1
    # a heartbeat brings it back
    assert u.beat(nid).status_code == 200
    assert u.get("/nodes/" + nid).json()["is_online"] is True
    st = u.get("/network/status").json()
    assert st["online_nodes"] == 1 and st["online_by_type"]["peer"] == 1
    assert st["online_by_region"] == {"eu-west": 1}


def test_deregister(mesh_server):
    u = User(mesh_server, "leaver")
    other = User(mesh_server, "stayer")
    n = u.register()
    assert other.delete("/nodes/" + n["node_id"]).status_code == 403
    r = u.delete("/nodes/" + n["node_id"])
    assert r.status_code == 200, r.text
    assert u.get("/nodes/" + n["node_id"]).status_code == 404
    assert mesh_server.sql("SELECT count(*) FROM mesh_nodes")[0][0] == 0
    assert u.delete("/nodes/" + n["node_id"]).status_code == 404


def test_privacy(mesh_server):
    priv = User(mesh_server, "hermit", privacy="private")
    pub = User(mesh_server, "open")
    n = priv.register()
    assert priv.get("/nodes/aura/" + priv.aura).status_code == 200
    assert priv.get("/nodes/" + n["node_id"]).status_code == 200
    r = pub.get("/nodes/aura/" + priv.aura)
    assert r.status_code == 404, r.text
    assert pub.get("/nodes/" + n["node_id"]).status_code == 404
    assert priv.get("/nodes/aura/" + pub.aura).status_code == 200


def admin(s):
    return User(s, "meshadmin")


def test_routes_relays_refused_when_untrusted_or_full(mesh_server):
    root = admin(mesh_server)
    a = User(mesh_server, "caller")
    b = User(mesh_server, "callee")
    r_owner = User(mesh_server, "relayop")
    na = a.register(latitude=51.5, longitude=-0.13)          # London
    nb = b.register(latitude=48.86, longitude=2.35)          # Paris
    nr = r_owner.register(node_type="relay", latitude=50.85, longitude=4.35, max_connections=10,
                          bandwidth_capacity_mbps=1000)      # Brussels

    def keep_alive(**relay_metrics):
        time.sleep(0.21)  # per-node heartbeat limit
        for u, n, kw in ((a, na, {}), (b, nb, {}), (r_owner, nr, relay_metrics)):
            assert u.beat(n["node_id"], **kw).status_code == 200

    def find(media="audio"):
        keep_alive()
        r = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura,
                                            "media_type": media})
        assert r.status_code == 200, r.text
        return r.json()

    rt = find()
    assert rt["route_type"] == "direct_p2p" and rt["path_nodes"] == [na["node_id"], nb["node_id"]]
    assert rt["path_length"] == 2 and 0 <= rt["ai_score"] <= 100
    assert set(rt["optimization_factors"]) >= {"latency", "bandwidth", "reputation", "hop_count",
                                                "aic_support", "uptime"}
    # cached: same route
    assert find()["route_id"] == rt["route_id"]
    # the direct path performs terribly: the model learns it (and the cache drops it)
    for _ in range(3):
        r = a.put("/routes/%s/performance" % rt["route_id"],
                  {"actual_latency_ms": 250, "packet_loss_rate": 0.01, "jitter_ms": 4,
                   "actual_bandwidth_mbps": 20})
        assert r.status_code == 200, r.text
    assert r.json()["usage_count"] == 3 and r.json()["success_rate"] == 1.0
    # the relay is only "new" (50): refused
    rt2 = find()
    assert rt2["route_type"] == "direct_p2p" and rt2["relays_considered"] == 0
    # admin makes it trusted: now it is used
    r = mesh_server.post(ADMIN + "/nodes/%s/reputation" % nr["node_id"], headers=root.h,
                         json={"change": 30, "event_type": "admin_adjustment", "description": "vetted"})
    assert r.status_code == 200, r.text
    assert r.json()["trust_level"] == "trusted" and r.json()["reputation_score"] == 80
    # (a relay that gains trust does not invalidate cached routes: ask for
    # another media type, which is another cache entry)
    rt3 = find("video")
    assert rt3["relays_considered"] == 1
    assert rt3["route_type"] == "relay", rt3
    assert rt3["path_nodes"] == [na["node_id"], nr["node_id"], nb["node_id"]]
    # the relay gets full (8 of 10): refused again, the cached route is not served
    keep_alive(current_connections=8)
    rt4 = find("data")
    assert rt4["relays_considered"] == 0 and rt4["route_type"] == "direct_p2p"
    # and the cached relayed route was dropped
    rt5 = find("video")
    assert rt5["route_type"] == "direct_p2p" and rt5["route_id"] != rt3["route_id"]
    # audit entry and reputation event
    rows = mesh_server.sql("SELECT category, actor, target FROM federation_audit_log"
                           " WHERE action = 'node_reputation'")
    assert rows == [("mesh", root.user_id, nr["node_id"])]
    assert wait_for(lambda: mesh_server.sql(
        "SELECT previous_score, new_score FROM node_reputation_events WHERE node_id = %s"
        " AND event_type = 'admin_adjustment'", nr["node_id"]) == [(50.0, 80.0)])
    # non-admins may not
    r = mesh_server.post(ADMIN + "/nodes/%s/reputation" % nr["node_id"], headers=a.h,
                         json={"change": 10})
    assert r.status_code == 403


def test_find_bad_inputs_and_analytics(mesh_server):
    a = User(mesh_server, "ana")
    b = User(mesh_server, "ben")
    a.register()
    b.register(latitude=40.7, longitude=-74.0)
    r = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura,
                                        "media_type": "hologram"})
    assert r.status_code == 400 and "media_type" in r.json()["error"]
    r = a.post("/routes/find-optimal", {"source_aura_id": b.aura, "destination_aura_id": a.aura})
    assert r.status_code == 403 and "source_aura_id" in r.json()["error"]
    r = a.post("/routes/find-optimal", {"source_aura_id": a.aura})
    assert r.status_code == 400 and "destination_aura_id" in r.json()["error"]
    r = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura,
                                        "require_aic": True})
    assert r.status_code == 404
    rt = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura}).json()
    r = a.put("/routes/%s/performance" % rt["route_id"], {"actual_latency_ms": -3})
    assert r.status_code == 400 and "actual_latency_ms" in r.json()["error"]
    r = a.put("/routes/%s/performance" % rt["route_id"], {"actual_latency_ms": 60, "packet_loss_rate": 0})
    assert r.status_code == 200 and r.json()["success_rate"] == 1.0
    r = a.put("/routes/%s/performance" % rt["route_id"], {"actual_latency_ms": 80, "packet_loss_rate": 0.2})
    assert r.status_code == 200 and r.json()["success_rate"] == 0.5 and r.json()["usage_count"] == 2
    assert b.put("/routes/%s/performance" % rt["route_id"], {"actual_latency_ms": 1}).status_code == 404
    an = a.get("/routes/analytics", params={"hours": 1}).json()
    assert an["total_routes"] == 1 and an["optimal_routes"] == 1
    assert an["avg_actual_latency_ms"] == pytest.approx(70)
    assert an["mean_abs_error_ms"] == pytest.approx(abs(rt["predicted_latency_ms"] - 70), abs=0.01)
    assert an["avg_success_rate"] == 0.5
    assert a.get("/routes/analytics", params={"hours": "x"}).status_code == 400
    assert b.get("/routes/analytics").json()["total_routes"] == 0
    # the destination in any case: her stored spelling, her nodes
    r = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura.upper()[:-5] + ".aura",
                                        "media_type": "video"})
    assert r.status_code == 200, r.text
    assert r.json()["destination_aura_id"] == b.aura and r.json()["search_us"] >= 0


def test_restart_rebuilds_registry(mesh_server):
    u = User(mesh_server, "phoenix")
    n = u.register(node_type="relay")
    time.sleep(0.25)
    assert u.beat(n["node_id"], current_connections=4).status_code == 200
    # a route answered just before the shutdown is written by it
    v = User(mesh_server, "phoenixpeer")
    v.register(latitude=35.68, longitude=139.69)
    r = u.post("/routes/find-optimal", {"source_aura_id": u.aura, "destination_aura_id": v.aura})
    assert r.status_code == 200, r.text
    assert mesh_server.stop() == 0
    assert mesh_server.sql("SELECT requested_by FROM mesh_routes WHERE route_id = %s",
                           r.json()["route_id"]) == [(u.user_id,)]
    mesh_server.start()
    j = u.get("/nodes/" + n["node_id"]).json()
    assert j["node_type"] == "relay" and j["current_connections"] == 4
    # its last heartbeat is older than the 2 s window by now, or soon
    assert wait_for(lambda: u.get("/nodes/" + n["node_id"]).json()["is_online"] is False)


def test_confirmed_abuse_lowers_reputation_once(mesh_server):
    root = admin(mesh_server)
    rep = User(mesh_server, "reporter")
    bad = User(mesh_server, "badrelay")
    n = bad.register(node_type="relay")
    nid = n["node_id"]

    def report(severity):
        r = mesh_server.post("/_auralink/client/v1/abuse_reports", headers=rep.h, json={
            "reported_node_id": nid, "report_type": "malicious_node", "severity": severity,
            "description": "drops media"})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def patch(report_id, status):
        r = requests.patch(mesh_server.base + "/_auralink/admin/v1/abuse_reports/" + report_id, headers=root.h,
                           json={"status": status}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def events():
        return mesh_server.sql("SELECT previous_score, new_score, change, description FROM node_reputation_events"
                               " WHERE node_id = %s AND event_type = 'abuse_confirmed' ORDER BY id", nid)

    high = report("high")
    # investigating, dismissed: nothing happens
    patch(high, "investigating")
    low = report("low")
    patch(low, "dismissed")
    time.sleep(0.3)
    assert events() == []
    assert bad.get("/nodes/" + nid).json()["reputation_score"] == 50
    # confirmed: -20 for high, at once in memory, then as an event row
    rec = patch(high, "confirmed")
    assert rec["reputation_applied_at"] is not None
    assert bad.get("/nodes/" + nid).json()["reputation_score"] == 30
    assert wait_for(lambda: len(events()) == 1)
    prev, new, change, desc = events()[0]
    assert (prev, new, change) == (50, 30, -20) and high in desc
    # reopened and confirmed again: not punished twice
    patch(high, "pending")
    again = patch(high, "confirmed")
    assert again["reputation_applied_at"] == rec["reputation_applied_at"]
    # the dismissed low one confirmed after all: -5
    patch(low, "confirmed")
    assert bad.get("/nodes/" + nid).json()["reputation_score"] == 25
    assert wait_for(lambda: [e[:3] for e in events()] == [(50, 30, -20), (30, 25, -5)])
    assert mesh_server.sql("SELECT reputation_score, trust_level FROM mesh_nodes WHERE node_id = %s",
                           nid) == [(25.0, "suspicious")]
    # a report about an AuraID (no node) confirms without touching any node
    aura_report = mesh_server.post("/_auralink/client/v1/abuse_reports", headers=rep.h, json={
        "reported_aura_id": bad.aura, "report_type": "spam", "description": "x"}).json()["id"]
    assert patch(aura_report, "confirmed")["reputation_applied_at"] is None
    time.sleep(0.3)
    assert len(events()) == 2


def test_is_optimal_judged_after_feedback(mesh_server):
    root = admin(mesh_server)
    a = User(mesh_server, "optcaller")
    b = User(mesh_server, "optcallee")
    r_owner = User(mesh_server, "optrelay")
    na = a.register(latitude=51.5, longitude=-0.13)          # London
    nb = b.register(latitude=48.86, longitude=2.35)          # Paris
    nr = r_owner.register(node_type="relay", latitude=50.85, longitude=4.35, max_connections=10,
                          bandwidth_capacity_mbps=1000)      # Brussels
    r = mesh_server.post(ADMIN + "/nodes/%s/reputation" % nr["node_id"], headers=root.h,
                         json={"change": 30, "description": "vetted"})
    assert r.status_code == 200, r.text

    def keep_alive():
        time.sleep(0.21)
        for u, n in ((a, na), (b, nb), (r_owner, nr)):
            assert u.beat(n["node_id"]).status_code == 200

    def find():
        keep_alive()
        r = a.post("/routes/find-optimal", {"source_aura_id": a.aura, "destination_aura_id": b.aura})
        assert r.status_code == 200, r.text
        return r.json()

    # not judged before a latency is reported
    direct = find()
    assert direct["route_type"] == "direct_p2p"
    # the row is written in a batch shortly after the answer
    assert wait_for(lambda: mesh_server.sql("SELECT is_optimal FROM mesh_routes WHERE route_id = %s",
                                            direct["route_id"])) == [(False,)]
    an = a.get("/routes/analytics").json()
    assert an["optimal_routes"] == 0 and an["optimal_share"] == 0
    # the direct path turns out slow: re-scored with 250 ms it is far below
    # the relayed path the search now prefers -> not optimal
    for _ in range(3):
        r = a.put("/routes/%s/performance" % direct["route_id"], {"actual_latency_ms": 250, "packet_loss_rate": 0})
        assert r.status_code == 200, r.text
    out = r.json()
    assert out["is_optimal"] is False, out
    assert out["actual_score"] < out["best_alternative_score"] - 2
    # the next route goes through the relay and performs as predicted -> optimal
    relayed = find()
    assert relayed["route_type"] == "relay" and relayed["path_nodes"][1] == nr["node_id"], relayed
    r = a.put("/routes/%s/performance" % relayed["route_id"],
              {"actual_latency_ms": relayed["predicted_latency_ms"], "packet_loss_rate": 0})
    assert r.status_code == 200 and r.json()["is_optimal"] is True, r.text
    assert mesh_server.sql("SELECT route_id::text, is_optimal FROM mesh_routes ORDER BY created_at") == [
        (direct["route_id"], False), (relayed["route_id"], True)]
    an = a.get("/routes/analytics").json()
    assert an["total_routes"] == 2 and an["optimal_routes"] == 1 and an["optimal_share"] == 0.5
    # a report without latency does not judge (and changes nothing)
    third = find()
    assert third["route_id"] != relayed["route_id"]  # feedback dropped it from the cache
    r = a.put("/routes/%s/performance" % third["route_id"], {"packet_loss_rate": 0.01})
    assert r.status_code == 200 and "is_optimal" not in r.json()
    assert a.get("/routes/analytics").json()["optimal_share"] == 0.5
