"""Federation core (issue 4): X-Matrix authentication, remote keys and the
notary, the registry, AuraID across domains and the durable sender, with two
(or three) real auralinkd servers on loopback over TLS from the test CA, and
a fake origin server written here for the refusal cases."""
import copy
import http.server
import json
import os
import signal
import ssl
import threading
import time
import urllib.parse

import nacl.signing
import pytest
import requests
import signedjson.key
import signedjson.sign
from unpaddedbase64 import encode_base64

from conftest import lib_sh

C = "/_matrix/client/v3"
A = "/_auralink/client/v1"
ADM = "/_auralink/admin/v1"


def bearer(token):
    return {"Authorization": "Bearer " + token}


def register(s, name):
    r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                      "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return r.json()["user_id"], bearer(r.json()["access_token"])


def admin(s, name="fedadmin"):
    uid, h = register(s, name)
    s.run_cli("--grant-admin", uid)
    return h


def canonical(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def xmatrix(key, origin, destination, method, uri, content=None, key_id=None):
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    signed = signedjson.sign.sign_json(copy.deepcopy(obj), origin, key)
    kid = "%s:%s" % (key.alg, key.version)
    sig = signed["signatures"][origin][kid]
    return 'X-Matrix origin="%s",destination="%s",key="%s",sig="%s"' % (
        origin, destination, key_id or kid, sig)


class FakeOrigin:
    """A minimal remote homeserver: serves its key document over HTTPS
    (certificate from the test CA) and counts key requests. It answers
    org.auralink.aura_id queries for the handles in self.aura ({handle:
    {"user_id", "server"?, "delay"?}}) with attestations signed by its key,
    whatever they say (it does not check the asker's signature)."""

    def __init__(self, tmp_path, ca, valid_for_ms=3600_000):
        self.key = signedjson.key.generate_signing_key("a1")
        self.old_keys = {}
        self.valid_for_ms = valid_for_ms
        self.key_requests = 0
        self.aura = {}
        self.aura_queries = {}
        d = str(tmp_path)
        lib_sh("al_tls_cert %s localhost %s" % (d, ca))
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, status, doc):
                body = canonical(doc)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if self.path.startswith("/_matrix/key/v2/server"):
                    fake.key_requests += 1
                    self.reply(200, fake.key_document())
                elif url.path == "/_matrix/federation/v1/query/org.auralink.aura_id":
                    handle = urllib.parse.parse_qs(url.query).get("aura_id", [""])[0]
                    fake.aura_queries[handle] = fake.aura_queries.get(handle, 0) + 1
                    spec = fake.aura.get(handle)
                    if spec is None:
                        self.reply(404, {"errcode": "M_NOT_FOUND", "error": "Unknown AuraID"})
                        return
                    time.sleep(spec.get("delay", 0))
                    self.reply(200, fake.aura_answer(handle, spec))
                else:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.name = "localhost:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def key_document(self):
        k = self.key
        doc = {"server_name": self.name,
               "verify_keys": {"ed25519:" + k.version: {
                   "key": encode_base64(k.verify_key.encode())}},
               "old_verify_keys": self.old_keys,
               "valid_until_ts": int(time.time() * 1000) + self.valid_for_ms}
        return signedjson.sign.sign_json(doc, self.name, k)

    def aura_answer(self, handle, spec):
        now = int(time.time() * 1000)
        server = spec.get("server", self.name)
        att = signedjson.sign.sign_json({"aura_id": handle, "user_id": spec["user_id"], "server": server,
                                         "issued_ts": now, "valid_until_ts": now + 3600_000},
                                        self.name, self.key)
        return {"aura_id": handle, "user_id": spec["user_id"], "server": server, "display_name": None,
                "avatar_url": None, "is_verified": False, "attestation": att}

    def request(self, server, method, path, content=None, key=None, destination=None, key_id=None,
                sent_content=None, auth=None):
        h = {}
        if auth is not False:
            h["Authorization"] = auth or xmatrix(key or self.key, self.name,
                                                 destination or server.server_name, method, path,
                                                 content, key_id)
        body = sent_content if sent_content is not None else content
        return requests.request(method, server.fed_base + path, headers=h,
                                data=canonical(body) if body is not None else None, timeout=15,
                                verify=os.path.join(server.ca, "ca.crt"))

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def audit_reasons(s, action="auth_failed"):
    return [r[0] for r in s.sql("SELECT details->>'reason' FROM federation_audit_log "
                                "WHERE category = 'federation' AND action = %s ORDER BY id", action)]


def test_xmatrix_refusals_and_key_cache(make_server, tmp_path_factory, ca):
    # refetches for unknown key ids: at most one a second here (default 30 s)
    a = make_server(federation_extra="key_refetch_interval_seconds = 1;")
    uid, _ = register(a, "carl")
    fake = FakeOrigin(tmp_path_factory.mktemp("fake"), ca)
    try:
        path = "/_matrix/federation/v1/query/profile?user_id=" + urllib.parse.quote(uid)
        r = fake.request(a, "GET", path)
        assert r.status_code == 200, r.text
        assert fake.key_requests == 1
        # cached: no second fetch
        r = fake.request(a, "GET", path)
        assert r.status_code == 200, r.text
        assert fake.key_requests == 1

        # missing header
        r = fake.request(a, "GET", path, auth=False)
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNAUTHORIZED"
        assert "Missing Authorization" in r.json()["error"]
        # signed with a wrong key under the right key id
        wrong = signedjson.key.generate_signing_key("a1")
        r = fake.request(a, "GET", path, key=wrong)
        assert r.status_code == 401 and "Invalid signature" in r.json()["error"], r.text
        # a signed request replayed with an altered body
        txn = "/_matrix/federation/v1/send/t1"
        good = {"origin": fake.name, "pdus": [], "edus": []}
        altered = {"origin": fake.name, "pdus": [], "edus": [{"edu_type": "x", "content": {}}]}
        r = fake.request(a, "PUT", txn, content=good, sent_content=altered)
        assert r.status_code == 401 and "Invalid signature" in r.json()["error"], r.text
        r = fake.request(a, "PUT", txn, content=good)
        assert r.status_code == 200, r.text
        # the same request replayed: the transaction is answered from the store
        r2 = fake.request(a, "PUT", txn, content=good)
        assert r2.status_code == 200 and r2.json() == r.json()
        # wrong destination
        r = fake.request(a, "GET", path, destination="elsewhere.test")
        assert r.status_code == 401 and "Destination" in r.json()["error"], r.text
        # unknown key id: one refetch, then refused
        r = fake.request(a, "GET", path, key_id="ed25519:nope")
        assert r.status_code == 401 and "Unknown key" in r.json()["error"], r.text
        assert fake.key_requests == 2

        reasons = audit_reasons(a)
        assert len(reasons) >= 5
        assert any("Missing" in x for x in reasons)
        assert any("Destination" in x for x in reasons)

        # the key changes without rotation (old key not in old_verify_keys)
        time.sleep(1.1)  # past key_refetch_interval_seconds
        fake.key = signedjson.key.generate_signing_key("a2")
        r = fake.request(a, "GET", path)
        assert r.status_code == 200, r.text
        rows = a.sql("SELECT target FROM federation_audit_log WHERE category = 'keys' "
                     "AND action = 'key_changed_without_rotation'")
        assert rows == [(fake.name,)]
    finally:
        fake.close()


def test_expired_key_refused(make_server, tmp_path_factory, ca):
    a = make_server()
    uid, _ = register(a, "dora")
    # expired ten minutes ago: beyond federation.clock_skew_ms (five minutes)
    fake = FakeOrigin(tmp_path_factory.mktemp("fake"), ca, valid_for_ms=-600_000)
    try:
        path = "/_matrix/federation/v1/query/profile?user_id=" + urllib.parse.quote(uid)
        r = fake.request(a, "GET", path)
        assert r.status_code == 401 and "expired" in r.json()["error"], r.text
    finally:
        fake.close()


def verify_signed(doc, server, key_doc):
    for kid, v in key_doc["verify_keys"].items():
        vk = signedjson.key.decode_verify_key_base64("ed25519", kid.split(":", 1)[1], v["key"])
        signedjson.sign.verify_signed_json(doc, server, vk)
        return True
    return False


def test_notary_answers_signed_by_both(make_server):
    a = make_server()
    b = make_server()
    a_keys = a.fed_get("/_matrix/key/v2/server").json()
    b_keys = b.fed_get("/_matrix/key/v2/server").json()
    r = b.fed_get("/_matrix/key/v2/query/" + a.server_name)
    assert r.status_code == 200, r.text
    docs = r.json()["server_keys"]
    assert len(docs) == 1 and docs[0]["server_name"] == a.server_name
    assert verify_signed(docs[0], a.server_name, a_keys)
    assert verify_signed(docs[0], b.server_name, b_keys)
    # POST form, with minimum_valid_until_ts; B answers from its cache now
    body = {"server_keys": {a.server_name: {}, b.server_name: {}}}
    r = requests.post(b.fed_base + "/_matrix/key/v2/query", json=body, timeout=10,
                      verify=os.path.join(b.ca, "ca.crt"))
    assert r.status_code == 200, r.text
    names = sorted(d["server_name"] for d in r.json()["server_keys"])
    assert names == sorted([a.server_name, b.server_name])
    # B stored A's keys
    assert b.sql("SELECT count(*) FROM federation_key_documents WHERE server_name = %s",
                 a.server_name) == [(1,)]


def claim(s, user_id, username, federated_domains=()):
    """An AuraID row as the AuraID module writes it (created in SQL so that
    this suite depends only on the table, not on the client endpoint)."""
    s.sql("INSERT INTO aura_id_registry (aura_id, user_id, username, federated_domains) "
          "VALUES (%s, %s, %s, %s)", "@%s.aura" % username, user_id, username, list(federated_domains))


def test_aura_id_across_domains(make_server):
    a = make_server()
    b = make_server()
    ha = admin(a)
    hb = admin(b, "badmin")
    # A federates with B
    r = requests.post(a.base + ADM + "/federation/servers", headers=ha, timeout=10,
                      json={"domain": b.server_name, "trust_level": "trusted"})
    assert r.status_code == 201, r.text
    assert r.json()["trust_level"] == "trusted"
    bob, _ = register(b, "bob")
    claim(b, bob, "bobfed")
    carol, _ = register(b, "carol")
    claim(b, carol, "carolfed", ["only.example"])

    # a user of A resolves B's handle through the client endpoint
    _, hal = register(a, "alice")

    def resolve(handle):
        return a.get(A + "/aura_id/resolve/" + handle, headers=hal)

    def queries_on_b():
        return b.read_log().count("/_matrix/federation/v1/query/org.auralink.aura_id")

    r = resolve("@bobfed.aura")
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["server"] == b.server_name and rec["user_id"] == "@bob:" + b.server_name
    assert rec["aura_id"] == "@bobfed.aura" and rec["privacy_level"] == "public"
    assert rec["is_online"] is False and rec["is_verified"] is False
    att = rec["attestation"]
    assert att["aura_id"] == "@bobfed.aura" and att["server"] == b.server_name
    assert att["user_id"] == rec["user_id"]
    assert verify_signed(att, b.server_name, b.fed_get("/_matrix/key/v2/server").json())
    # warm: served from A's cache, B is not asked again
    asked = queries_on_b()
    r = resolve("@BobFed.aura")
    assert r.status_code == 200 and r.json()["user_id"] == rec["user_id"], r.text
    assert queries_on_b() == asked
    # the admin endpoint resolves through the same machinery
    r = a.get(ADM + "/federation/resolve/@bobfed.aura", headers=ha)
    assert r.status_code == 200 and r.json()["server"] == b.server_name, r.text
    # carol shares only with another domain: her server refuses A; A's
    # user gets the 404 of a hidden AuraID, the admin sees the refusal
    r = resolve("@carolfed.aura")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
    r = a.get(ADM + "/federation/resolve/@carolfed.aura", headers=ha)
    assert r.status_code == 403, r.text
    # unknown everywhere
    r = resolve("@nobodyhere.aura")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
    # friends-level and private AuraIDs on B are not shared with servers
    for name, level in [("erinfed", "friends"), ("frankfed", "private")]:
        uid, _ = register(b, name[:-3])
        claim(b, uid, name)
        b.sql("UPDATE aura_id_registry SET privacy_level = %s WHERE user_id = %s", level, uid)
        r = resolve("@%s.aura" % name)
        assert r.status_code == 404, (name, r.text)
    # a handle hosted on A but hidden there (private, or suspended) is
    # answered 404 by A without asking anyone, even though B has one
    for name in ("twin", "twin2"):
        uid, _ = register(b, "b" + name)
        claim(b, uid, name)
    r = requests.post(a.base + A + "/aura_id", headers=register(a, "twinowner")[1], timeout=10,
                      json={"username": "twin", "privacy_level": "private"})
    assert r.status_code == 201, r.text
    suspended, hs = register(a, "twin2owner")
    r = requests.post(a.base + A + "/aura_id", headers=hs, timeout=10, json={"username": "twin2"})
    assert r.status_code == 201, r.text
    r = requests.post(a.base + ADM + "/users/%s/suspend" % suspended, headers=ha, timeout=10, json={})
    assert r.status_code == 200, r.text
    asked = queries_on_b()
    for name in ("@twin.aura", "@twin2.aura"):
        r = resolve(name)
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", (name, r.text)
    assert queries_on_b() == asked

    # B blacklists A: refused
    dan, _ = register(b, "dan")
    claim(b, dan, "danfed")
    r = requests.post(b.base + ADM + "/federation/servers", headers=hb, timeout=10,
                      json={"domain": a.server_name, "is_blacklisted": True})
    assert r.status_code == 201, r.text
    r = resolve("@danfed.aura")
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", r.text
    r = a.get(ADM + "/federation/resolve/@danfed.aura", headers=ha)
    assert r.status_code == 403, r.text
    assert b.sql("SELECT count(*) FROM federation_audit_log WHERE category = 'federation' "
                 "AND action = 'request_refused' AND origin_server = %s", a.server_name)[0][0] >= 1

    # registry: B's row on A was updated by traffic; admin GET/PATCH/DELETE
    r = a.get(ADM + "/federation/servers/" + b.server_name, headers=ha)
    assert r.status_code == 200 and r.json()["domain"] == b.server_name
    r = requests.patch(a.base + ADM + "/federation/servers/" + b.server_name, headers=ha, timeout=10,
                       json={"trust_level": "verified", "notes": "peer"})
    assert r.status_code == 200 and r.json()["trust_level"] == "verified", r.text
    r = requests.patch(a.base + ADM + "/federation/servers/" + b.server_name, headers=ha, timeout=10,
                       json={"trust_level": "bogus"})
    assert r.status_code == 400
    r = a.get(ADM + "/federation/servers", headers=ha)
    assert r.status_code == 200 and any(s["domain"] == b.server_name for s in r.json()["servers"])
    _, hplain = register(a, "plain")
    assert a.get(ADM + "/federation/servers", headers=hplain).status_code == 403
    r = requests.delete(a.base + ADM + "/federation/servers/" + b.server_name, headers=ha, timeout=10)
    assert r.status_code == 200
    assert a.get(ADM + "/federation/servers/" + b.server_name, headers=ha).status_code == 404


def test_aura_id_ranked_answers_and_foreign_users(make_server, tmp_path_factory, ca):
    """Two peers claim one handle: the whitelisted one wins although the
    pending one answers first; a peer may vouch only for its own users."""
    a = make_server()
    ha = admin(a)
    _, hal = register(a, "rankalice")
    low = FakeOrigin(tmp_path_factory.mktemp("low"), ca)
    high = FakeOrigin(tmp_path_factory.mktemp("high"), ca)

    def resolve(handle):
        return a.get(A + "/aura_id/resolve/" + handle, headers=hal)

    try:
        for fake, body in ((low, {"trust_level": "pending"}), (high, {"is_whitelisted": True})):
            body["domain"] = fake.name
            r = requests.post(a.base + ADM + "/federation/servers", headers=ha, json=body, timeout=10)
            assert r.status_code == 201, r.text
        low.aura["@rankbob.aura"] = {"user_id": "@bob:" + low.name}
        high.aura["@rankbob.aura"] = {"user_id": "@bob:" + high.name, "delay": 1.0}
        t0 = time.time()
        r = resolve("@rankbob.aura")
        assert r.status_code == 200, r.text
        assert r.json()["server"] == high.name and r.json()["user_id"] == "@bob:" + high.name, r.text
        assert time.time() - t0 >= 0.9
        assert low.aura_queries.get("@rankbob.aura") == 1  # it was asked and answered first
        assert "conflicting answers aura_id=@rankbob.aura kept=%s" % high.name in a.read_log()
        # a better-ranked peer that takes too long: the other's answer once
        # the request timeout (5 s) has passed
        low.aura["@slowhigh.aura"] = {"user_id": "@sh:" + low.name}
        high.aura["@slowhigh.aura"] = {"user_id": "@sh:" + high.name, "delay": 8.0}
        t0 = time.time()
        r = resolve("@slowhigh.aura")
        assert r.status_code == 200 and r.json()["server"] == low.name, r.text
        assert 4.5 <= time.time() - t0 < 7.5
        # the better-ranked peer does not know the handle: the other's answer
        # is taken as soon as that is known
        low.aura["@lowonly.aura"] = {"user_id": "@lo:" + low.name}
        t0 = time.time()
        r = resolve("@lowonly.aura")
        assert r.status_code == 200 and r.json()["server"] == low.name, r.text
        assert time.time() - t0 < 3
        # a signed attestation for a user of another server is refused, also
        # when it names that server as its own
        for handle, spec in [("@liar.aura", {"user_id": "@victim:" + high.name}),
                             ("@liar2.aura", {"user_id": "@victim:" + high.name, "server": high.name})]:
            low.aura[handle] = spec
            r = resolve(handle)
            assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND", (handle, r.text)
            assert low.aura_queries.get(handle) == 1
        assert "attestation refused aura_id=@liar.aura server=%s" % low.name in a.read_log()
    finally:
        low.close()
        high.close()


def test_sender_durable_exactly_once(make_server):
    a = make_server()
    b = make_server()
    b.stop()
    n = 200
    rows = ",".join(
        "('%s', 'edu', '{\"edu_type\": \"org.auralink.route\", \"content\": {\"call_id\": \"c%03d\", "
        "\"route_id\": \"r%d\", \"path_nodes\": [], \"predicted_latency_ms\": 12}}')" % (b.server_name, i, i)
        for i in range(n))
    a.sql("INSERT INTO federation_outbox (destination, kind, payload) VALUES " + rows)
    # A tries (B is down), backs off, then dies without a clean shutdown
    deadline = time.time() + 10
    while time.time() < deadline:
        if a.sql("SELECT count(*) FROM federation_destinations WHERE destination = %s AND retry_interval_ms > 0",
                 b.server_name)[0][0]:
            break
        time.sleep(0.2)
    assert a.stop(sig=signal.SIGKILL) == -signal.SIGKILL
    b.start()
    a.start()
    deadline = time.time() + 60
    got = 0
    while time.time() < deadline:
        got = b.sql("SELECT count(*) FROM federation_routes_received")[0][0]
        if got >= n and a.sql("SELECT count(*) FROM federation_outbox")[0][0] == 0:
            break
        time.sleep(0.3)
    assert got == n, a.read_log()[-3000:]
    assert b.sql("SELECT count(DISTINCT call_id), count(*) FROM federation_routes_received") == [(n, n)]
    assert b.sql("SELECT DISTINCT origin FROM federation_routes_received") == [(a.server_name,)]
    assert a.sql("SELECT count(*) FROM federation_outbox") == [(0,)]
    assert a.sql("SELECT retry_interval_ms FROM federation_destinations WHERE destination = %s",
                 b.server_name) == [(0,)]
    assert a.sql("SELECT count(*) FROM federation_audit_log WHERE action = 'destination.backoff'")[0][0] >= 1


def test_remote_profile_through_federation(make_server):
    a = make_server()
    b = make_server()
    uid, h = register(b, "erin")
    r = requests.put(b.base + C + "/profile/%s/displayname" % uid, headers=h,
                     json={"displayname": "Erin B"}, timeout=10)
    assert r.status_code == 200, r.text
    r = a.get(C + "/profile/" + uid)
    assert r.status_code == 200 and r.json() == {"displayname": "Erin B"}, r.text
    r = a.get(C + "/profile/%s/displayname" % uid)
    assert r.status_code == 200 and r.json() == {"displayname": "Erin B"}, r.text
    r = a.get(C + "/profile/%s/avatar_url" % uid)
    assert r.status_code == 200 and r.json() == {}, r.text
    r = a.get(C + "/profile/@nobody:" + b.server_name)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    # B fetched A's key once and knows A now (traffic reached the registry)
    assert b.sql("SELECT count(*) FROM federation_key_documents WHERE server_name = %s",
                 a.server_name) == [(1,)]
    seen = "SELECT count(*) FROM federation_servers WHERE domain = %s AND last_seen_at IS NOT NULL"
    stats = ("SELECT count(*) FROM federation_servers WHERE domain = %s AND success_rate = 1 "
             "AND avg_response_time_ms >= 0 AND is_online")
    deadline = time.time() + 5
    while time.time() < deadline and not (b.sql(seen, a.server_name)[0][0] and
                                          a.sql(stats, b.server_name)[0][0]):
        time.sleep(0.2)
    assert b.sql(seen, a.server_name) == [(1,)]
    assert a.sql(stats, b.server_name) == [(1,)]
