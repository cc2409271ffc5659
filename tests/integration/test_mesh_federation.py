"""Mesh across domains (issue 5): find-optimal towards an AuraID hosted on
another server resolves it through federation, fetches its owner's online
nodes with org.auralink.mesh_nodes and routes to them; the serving side
respects the owner's privacy and federation settings. Two real servers on
loopback sharing the test CA."""
import time
import urllib.parse

import requests

from test_federation import FakeOrigin

C = "/_matrix/client/v3"
A = "/_auralink/client/v1"
M = A + "/mesh"
ADM = "/_auralink/admin/v1"

MESH_CONF = "mesh = { online_window_seconds = 30; flush_interval_ms = 100; heartbeat_min_interval_ms = 200; };"


class User:
    def __init__(self, s, name, **aura):
        r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                          "password": "pw-" + name})
        assert r.status_code == 200, r.text
        self.s = s
        self.user_id = r.json()["user_id"]
        self.h = {"Authorization": "Bearer " + r.json()["access_token"]}
        body = {"username": name}
        body.update(aura)
        r = s.post(A + "/aura_id", headers=self.h, json=body)
        assert r.status_code == 201, r.text
        self.aura = r.json()["aura_id"]

    def register_node(self, **kw):
        body = {"aura_id": self.aura, "node_type": "peer", "max_connections": 10,
                "bandwidth_capacity_mbps": 100, "latitude": 51.5, "longitude": -0.13,
                "region": "eu-west", "country_code": "GB", "address": "198.51.100.7", "port": 4000}
        body.update(kw)
        r = self.s.post(M + "/nodes/register", headers=self.h, json=body)
        assert r.status_code == 201, r.text
        return r.json()

    def find(self, dst, **kw):
        body = {"source_aura_id": self.aura, "destination_aura_id": dst}
        body.update(kw)
        return requests.post(self.s.base + M + "/routes/find-optimal", headers=self.h, json=body, timeout=30)


def mesh_pair(make_server):
    servers = []
    for _ in range(2):
        s = make_server(start=False)
        s.write_config(True, MESH_CONF)
        servers.append(s.start())
    a, b = servers
    # A knows B (the AuraID fan-out asks known peers)
    uid = User(a, "meshfedadmin").user_id
    a.run_cli("--grant-admin", uid)
    r = a.post(C + "/login", json={"type": "m.login.password", "password": "pw-meshfedadmin",
                                   "identifier": {"type": "m.id.user", "user": "meshfedadmin"}})
    assert r.status_code == 200, r.text
    h = {"Authorization": "Bearer " + r.json()["access_token"]}
    r = a.post(ADM + "/federation/servers", headers=h, json={"domain": b.server_name, "trust_level": "trusted"})
    assert r.status_code == 201, r.text
    return a, b


def mesh_queries(s):
    return s.read_log().count("/_matrix/federation/v1/query/org.auralink.mesh_nodes status=200")


def test_route_to_a_remote_aura_id(make_server):
    a, b = mesh_pair(make_server)
    alice = User(a, "alicemesh")
    na = alice.register_node()                                  # London
    bob = User(b, "bobmesh")
    nb = bob.register_node(latitude=48.86, longitude=2.35, country_code="FR")  # Paris, on B

    r = alice.find(bob.aura)
    assert r.status_code == 200, r.text
    rt = r.json()
    assert rt["path_nodes"] == [na["node_id"], nb["node_id"]]
    assert rt["route_type"] == "direct_p2p" and rt["destination_server"] == b.server_name
    assert rt["destination_aura_id"] == bob.aura and 0 <= rt["ai_score"] <= 100
    assert rt["predicted_latency_ms"] > 0
    # the row is written in a batch shortly after the answer
    deadline = time.time() + 6
    while not a.sql("SELECT 1 FROM mesh_routes WHERE route_id = %s", rt["route_id"]) and time.time() < deadline:
        time.sleep(0.05)
    assert a.sql("SELECT destination_node_id::text, destination_aura_id FROM mesh_routes WHERE route_id = %s",
                 rt["route_id"]) == [(nb["node_id"], bob.aura)]
    assert mesh_queries(b) == 1
    # the remote nodes are cached: another media type (another route) asks nobody
    r = alice.find(bob.aura, media_type="video")
    assert r.status_code == 200, r.text
    assert r.json()["path_nodes"] == [na["node_id"], nb["node_id"]]
    assert r.json()["route_id"] != rt["route_id"]
    r = alice.find(bob.aura)
    assert r.status_code == 200 and r.json()["route_id"] == rt["route_id"] and r.json()["cached"]
    assert mesh_queries(b) == 1
    # feedback on the cross-domain route is accepted (learned in memory)
    r = a.put(M + "/routes/%s/performance" % rt["route_id"], headers=alice.h,
              json={"actual_latency_ms": 9, "packet_loss_rate": 0})
    assert r.status_code == 200, r.text
    # remote nodes are not A's: not in its status, not readable as A's own
    st = a.get(M + "/network/status", headers=alice.h).json()
    assert st["total_nodes"] == 1
    # B never writes them anywhere: A's database has only alice's node
    assert a.sql("SELECT count(*) FROM mesh_nodes") == [(1,)]


def test_remote_privacy_and_refusals(make_server, tmp_path_factory, ca):
    a, b = mesh_pair(make_server)
    alice = User(a, "alicepriv")
    alice.register_node()
    carol = User(b, "carolpriv", privacy_level="private")
    carol.register_node(latitude=48.86, longitude=2.35)
    dave = User(b, "davenofed", federation_enabled=False)
    dave.register_node(latitude=48.86, longitude=2.35)
    erin = User(b, "erinnonodes")
    for callee in (carol, dave):
        r = alice.find(callee.aura)
        assert r.status_code == 404, r.text
        assert r.json()["errcode"] == "M_NOT_FOUND" and "destination_aura_id" in r.json()["error"]
    # public, federated, but no node online
    r = alice.find(erin.aura)
    assert r.status_code == 404 and "destination_aura_id" in r.json()["error"], r.text
    # unknown everywhere
    r = alice.find("@nobodyanywhere.aura")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
    assert mesh_queries(b) == 1  # only erin's (carol and dave stop at the AuraID)

    # the serving side itself, asked by a third server with a valid signature
    fake = FakeOrigin(tmp_path_factory.mktemp("fake"), ca)
    try:
        def ask(user_id):
            path = "/_matrix/federation/v1/query/org.auralink.mesh_nodes?user_id=" + urllib.parse.quote(user_id)
            return fake.request(b, "GET", path)

        r = ask(dave.user_id)
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN", r.text
        r = ask(carol.user_id)
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
        r = ask("@nobody:" + b.server_name)
        assert r.status_code == 404, r.text
        r = ask("@someone:elsewhere.example")
        assert r.status_code == 403, r.text
        bob = User(b, "bobshared")
        nb = bob.register_node()
        r = ask(bob.user_id)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["user_id"] == bob.user_id and body["aura_id"] == bob.aura
        assert [n["node_id"] for n in body["nodes"]] == [nb["node_id"]]
        assert body["nodes"][0]["is_online"] is True
        # shared with another domain only: refused
        r = requests.patch(b.base + A + "/aura_id/me", headers=bob.h, timeout=10,
                           json={"federated_domains": ["only.example"]})
        assert r.status_code == 200, r.text
        r = ask(bob.user_id)
        assert r.status_code == 403, r.text
        # unsigned: refused
        r = fake.request(b, "GET", "/_matrix/federation/v1/query/org.auralink.mesh_nodes?user_id=x", auth=False)
        assert r.status_code == 401, r.text
    finally:
        fake.close()
