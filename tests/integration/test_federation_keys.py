"""Federation keys, policy and discovery (issue 4, second round): keys
checked at the signing time (old_verify_keys) with a clock tolerance, key
fetches that coalesce and refetches that are rate-limited, fetching through
a notary whose key we do not hold yet, whitelist-only and blacklist policy
both ways, configured peers in the registry, the periodic health check, and
.well-known discovery with its cache and the fallback to port 8448 (names
mapped to loopback with federation.connect_to)."""
import copy
import http.server
import json
import os
import ssl
import threading
import time
import urllib.parse

import requests
import signedjson.key
import signedjson.sign
from unpaddedbase64 import encode_base64

from conftest import free_port, lib_sh
from rooms_util import wait_for

C = "/_matrix/client/v3"
ADM = "/_auralink/admin/v1"


def now_ms():
    return int(time.time() * 1000)


def canonical(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def register(s, name):
    r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                      "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return r.json()["user_id"], {"Authorization": "Bearer " + r.json()["access_token"]}


def admin(s, name="keysadmin"):
    uid, h = register(s, name)
    s.run_cli("--grant-admin", uid)
    return h


def set_displayname(s, uid, h, name):
    r = requests.put(s.base + C + "/profile/%s/displayname" % uid, headers=h,
                     json={"displayname": name}, timeout=10)
    assert r.status_code == 200, r.text


def kid(key):
    return "%s:%s" % (key.alg, key.version)


def xmatrix(key, origin, destination, method, uri, content=None, key_id=None):
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    signed = signedjson.sign.sign_json(copy.deepcopy(obj), origin, key)
    sig = signed["signatures"][origin][kid(key)]
    return 'X-Matrix origin="%s",destination="%s",key="%s",sig="%s"' % (
        origin, destination, key_id or kid(key), sig)


class TLSServer:
    """A threading HTTPS server on loopback with a certificate from the test
    CA (valid for cert_name, localhost and 127.0.0.1)."""

    def __init__(self, tmp_path, ca, handler, cert_name="localhost"):
        d = str(tmp_path)
        lib_sh("al_tls_cert %s %s %s" % (d, cert_name, ca))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(handler, status, body=None, headers=()):
    data = canonical(body) if body is not None else b""
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for k, v in headers:
        handler.send_header(k, v)
    handler.end_headers()
    handler.wfile.write(data)


class FakeHomeserver:
    """A remote homeserver written here: its key document (current and old
    keys under the test's control, optionally slow to come) and answers to
    org.auralink.aura_id queries with attestations signed as the test says."""

    def __init__(self, tmp_path, ca, key_delay=0.0, valid_for_ms=3600_000):
        self.key = signedjson.key.generate_signing_key("k1")
        self.current = [self.key]
        self.old = []  # (key, expired_ts)
        self.valid_for_ms = valid_for_ms
        self.key_delay = key_delay
        self.key_requests = 0
        self.records = {}  # lower-case handle -> (key, issued_ts, valid_until_ts)
        self.lock = threading.Lock()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                if url.path == "/_matrix/key/v2/server":
                    with fake.lock:
                        fake.key_requests += 1
                    time.sleep(fake.key_delay)
                    reply(self, 200, fake.key_document())
                elif url.path == "/_matrix/federation/v1/query/org.auralink.aura_id":
                    handle = urllib.parse.parse_qs(url.query).get("aura_id", [""])[0]
                    rec = fake.record(handle)
                    if rec:
                        reply(self, 200, rec)
                    else:
                        reply(self, 404, {"errcode": "M_NOT_FOUND", "error": "Unknown AuraID"})
                else:
                    reply(self, 404, {"errcode": "M_UNRECOGNIZED", "error": "no"})

            def log_message(self, *a):
                pass

        self.tls = TLSServer(tmp_path, ca, Handler)
        self.name = "localhost:%d" % self.tls.port

    def key_document(self):
        doc = {"server_name": self.name,
               "verify_keys": {kid(k): {"key": encode_base64(k.verify_key.encode())}
                               for k in self.current},
               "old_verify_keys": {kid(k): {"key": encode_base64(k.verify_key.encode()),
                                            "expired_ts": ts} for k, ts in self.old},
               "valid_until_ts": now_ms() + self.valid_for_ms}
        for k in self.current:
            doc = signedjson.sign.sign_json(doc, self.name, k)
        return doc

    def record(self, handle):
        entry = self.records.get(handle.lower())
        if not entry:
            return None
        key, issued, valid_until = entry
        uid = "@%s:%s" % (handle[1:].split(".")[0], self.name)
        att = {"aura_id": handle, "user_id": uid, "server": self.name, "issued_ts": issued,
               "valid_until_ts": valid_until}
        att = signedjson.sign.sign_json(att, self.name, key)
        return {"aura_id": handle, "user_id": uid, "server": self.name, "display_name": None,
                "avatar_url": None, "is_verified": False, "attestation": att}

    def request(self, server, method, path, key_id=None):
        h = {"Authorization": xmatrix(self.key, self.name, server.server_name, method, path,
                                      key_id=key_id)}
        return requests.request(method, server.fed_base + path, headers=h, timeout=15,
                                verify=os.path.join(server.ca, "ca.crt"))

    def close(self):
        self.tls.close()


def profile_path(uid):
    return "/_matrix/federation/v1/query/profile?user_id=" + urllib.parse.quote(uid)


def trust(s, h, domain):
    r = requests.post(s.base + ADM + "/federation/servers", headers=h, timeout=10,
                      json={"domain": domain, "trust_level": "trusted"})
    assert r.status_code == 201, r.text


def stats(s, h):
    r = s.get(ADM + "/federation/stats", headers=h)
    assert r.status_code == 200, r.text
    return r.json()


# ---- keys at the signing time, clock tolerance ----

def test_attestation_old_verify_keys_and_clock_skew(make_server, tmp_path_factory, ca):
    a = make_server()
    ha = admin(a)
    fake = FakeHomeserver(tmp_path_factory.mktemp("fake"), ca)
    try:
        old = signedjson.key.generate_signing_key("old1")
        fake.current = [signedjson.key.generate_signing_key("new1")]
        t = now_ms()
        fake.old = [(old, t - 5_000)]  # retired five seconds ago
        hour = 3600_000
        fake.records = {
            # signed with the old key before it was retired: valid
            "@olda.aura": (old, t - 10_000, t + hour),
            # signed with the old key after it was retired: refused
            "@oldb.aura": (old, t - 1_000, t + hour),
            # issued two minutes in our future: within the five minutes
            "@skewa.aura": (fake.current[0], t + 120_000, t + hour),
            # issued ten minutes in our future: refused
            "@skewb.aura": (fake.current[0], t + 600_000, t + hour),
            # ran out two minutes ago: within the tolerance
            "@skewc.aura": (fake.current[0], t - hour, t - 120_000),
            # ran out ten minutes ago: refused
            "@skewd.aura": (fake.current[0], t - hour, t - 600_000),
        }
        trust(a, ha, fake.name)
        for handle, ok in (("@olda.aura", True), ("@oldb.aura", False), ("@skewa.aura", True),
                           ("@skewb.aura", False), ("@skewc.aura", True), ("@skewd.aura", False)):
            r = a.get(ADM + "/federation/resolve/" + handle, headers=ha)
            if ok:
                assert r.status_code == 200, (handle, r.text)
                assert r.json()["server"] == fake.name
                assert r.json()["attestation"]["aura_id"] == handle
            else:
                assert r.status_code == 404, (handle, r.text)
        assert "attestation refused aura_id=@oldb.aura" in a.read_log()
    finally:
        fake.close()


def test_xmatrix_key_validity_clock_skew(make_server, tmp_path_factory, ca):
    # the fake's key document ran out two minutes ago
    fake = FakeHomeserver(tmp_path_factory.mktemp("fake"), ca, valid_for_ms=-120_000)
    try:
        lenient = make_server()
        uid, _ = register(lenient, "skewy")
        r = fake.request(lenient, "GET", profile_path(uid))
        assert r.status_code == 200, r.text
        strict = make_server(federation_extra="clock_skew_ms = 0;")
        uid, _ = register(strict, "strict")
        r = fake.request(strict, "GET", profile_path(uid))
        assert r.status_code == 401 and "expired" in r.json()["error"], r.text
    finally:
        fake.close()


# ---- fetch hygiene ----

def test_key_fetches_coalesce_and_refetch_is_limited(make_server, tmp_path_factory, ca):
    a = make_server()
    ha = admin(a)
    uid, _ = register(a, "burst")
    fake = FakeHomeserver(tmp_path_factory.mktemp("fake"), ca, key_delay=1.0)
    try:
        results = []

        def one():
            results.append(fake.request(a, "GET", profile_path(uid)).status_code)

        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == [200] * 8
        assert fake.key_requests == 1
        assert stats(a, ha)["key_fetches_coalesced"] >= 7

        # made-up key ids: one refetch, then none for key_refetch_interval_seconds
        fake.key_delay = 0
        for i in range(6):
            r = fake.request(a, "GET", profile_path(uid), key_id="ed25519:bogus%d" % i)
            assert r.status_code == 401 and "Unknown key" in r.json()["error"], r.text
        assert fake.key_requests == 2
        assert stats(a, ha)["key_refetches_suppressed"] >= 5
        assert "key refetch suppressed server=%s" % fake.name in a.read_log()
        # the real key still works from the cache
        assert fake.request(a, "GET", profile_path(uid)).status_code == 200
        assert fake.key_requests == 2
    finally:
        fake.close()


# ---- notary ----

def test_keys_through_a_notary_whose_key_is_unknown(make_server):
    c = make_server()
    b = make_server()
    c_keys = c.fed_get("/_matrix/key/v2/server").json()
    # B caches C's keys, then C goes away
    r = b.fed_get("/_matrix/key/v2/query/" + c.server_name)
    assert r.status_code == 200 and len(r.json()["server_keys"]) == 1, r.text
    c.stop()
    a = make_server(federation_extra='whitelist = ["%s"];' % b.server_name)
    assert a.sql("SELECT count(*) FROM federation_key_documents") == [(0,)]
    # A's direct fetch of C fails; B answers, and A fetches B's key first
    r = a.fed_get("/_matrix/key/v2/query/" + c.server_name)
    assert r.status_code == 200, r.text
    docs = r.json()["server_keys"]
    assert len(docs) == 1 and docs[0]["server_name"] == c.server_name
    for k, v in c_keys["verify_keys"].items():
        vk = signedjson.key.decode_verify_key_base64("ed25519", k.split(":", 1)[1], v["key"])
        signedjson.sign.verify_signed_json(docs[0], c.server_name, vk)
    assert a.server_name in docs[0]["signatures"]  # A counter-signs as a notary itself
    names = {r[0] for r in a.sql("SELECT server_name FROM federation_key_documents")}
    assert names == {b.server_name, c.server_name}
    log = a.read_log()
    assert "direct key fetch failed server=%s" % c.server_name in log
    assert "keys fetched through a notary server=%s notary=%s" % (c.server_name, b.server_name) in log


# ---- policy ----

def test_whitelist_only_both_ways(make_server, tmp_path_factory, ca):
    listed = FakeHomeserver(tmp_path_factory.mktemp("fake"), ca)
    other = FakeHomeserver(tmp_path_factory.mktemp("fake"), ca)
    try:
        friend = make_server()
        stranger = make_server()
        fuid, fh = register(friend, "friend")
        set_displayname(friend, fuid, fh, "Friend")
        suid, _ = register(stranger, "stranger")
        a = make_server(federation_extra='whitelist_only = true; whitelist = ["%s", "%s"];'
                        % (listed.name, friend.server_name))
        uid, _ = register(a, "host")
        # inbound
        r = listed.request(a, "GET", profile_path(uid))
        assert r.status_code == 200, r.text
        r = other.request(a, "GET", profile_path(uid))
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN", r.text
        assert other.key_requests == 0  # refused before any key fetch
        # outbound
        r = a.get(C + "/profile/" + fuid)
        assert r.status_code == 200 and r.json() == {"displayname": "Friend"}, r.text
        r = a.get(C + "/profile/" + suid)
        assert r.status_code == 502 and "refused by federation policy" in r.json()["error"], r.text
        assert "/_matrix/federation/v1/query/profile" not in stranger.read_log()
        # the configured peers have their rows
        rows = a.sql("SELECT domain, is_whitelisted, is_blacklisted FROM federation_servers "
                     "WHERE domain IN (%s, %s) ORDER BY domain", listed.name, friend.server_name)
        assert sorted(rows) == sorted([(listed.name, True, False), (friend.server_name, True, False)])
    finally:
        listed.close()
        other.close()


def test_blacklist_refused_both_ways_and_configured_rows(make_server):
    b = make_server()
    buid, _ = register(b, "banned")
    a = make_server(federation_extra='blacklist = ["%s"];' % b.server_name)
    auid, _ = register(a, "guarded")
    assert a.sql("SELECT is_whitelisted, is_blacklisted FROM federation_servers WHERE domain = %s",
                 b.server_name) == [(False, True)]
    r = a.get(C + "/profile/" + buid)
    assert r.status_code == 502 and "refused by federation policy" in r.json()["error"], r.text
    assert "/_matrix/federation/v1/query/profile" not in b.read_log()
    # B asks A: A refuses (B's client sees the profile as not found)
    r = b.get(C + "/profile/" + auid)
    assert r.status_code == 404, r.text
    assert a.sql("SELECT count(*) FROM federation_audit_log WHERE action = 'request_refused' "
                 "AND origin_server = %s", b.server_name)[0][0] >= 1
    # a restart keeps one row (upsert)
    a.stop()
    a.start()
    assert a.sql("SELECT count(*) FROM federation_servers WHERE lower(domain) = lower(%s)",
                 b.server_name) == [(1,)]


def test_periodic_health_check(make_server):
    b = make_server()
    a = make_server(federation_extra='health_interval_seconds = 1; whitelist = ["%s"];' % b.server_name)
    q = ("SELECT is_online, server_version, (extract(epoch from last_health_check_at) * 1000)::bigint "
         "FROM federation_servers WHERE domain = %s")

    def checked():
        rows = a.sql(q, b.server_name)
        return rows and rows[0][2] and rows[0][0] and rows[0]

    first = wait_for(checked, timeout=15, step=0.2)
    assert first, a.sql(q, b.server_name)
    assert first[1].startswith("auralink ")
    later = wait_for(lambda: (a.sql(q, b.server_name)[0][2] or 0) > first[2] and a.sql(q, b.server_name)[0],
                     timeout=15, step=0.2)
    assert later and later[0], "no second health check"
    b.stop()
    offline = wait_for(lambda: a.sql(q, b.server_name)[0][0] is False and a.sql(q, b.server_name)[0],
                       timeout=15, step=0.2)
    assert offline, a.sql(q, b.server_name)
    assert offline[2] > later[2]


# ---- discovery ----

class WellKnown:
    """/.well-known/matrix/server for one name over HTTPS, counting requests."""

    def __init__(self, tmp_path, ca, name, m_server, cache_control=None):
        self.requests = 0
        wk = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/.well-known/matrix/server":
                    reply(self, 404, {})
                    return
                wk.requests += 1
                reply(self, 200, {"m.server": m_server},
                      [("Cache-Control", cache_control)] if cache_control else [])

            def log_message(self, *a):
                pass

        self.tls = TLSServer(tmp_path, ca, Handler, cert_name=name)
        self.port = self.tls.port

    def close(self):
        self.tls.close()


def test_discovery_well_known_cache_and_port_8448_fallback(make_server, tmp_path_factory, ca):
    # b.test has no .well-known (nothing listens on its 443): port 8448
    b = make_server(server_name="b.test", tls_name="b.test")
    # c.test delegates to c.test:<port> with a Cache-Control of one hour
    c = make_server(server_name="c.test", tls_name="c.test")
    wk = WellKnown(tmp_path_factory.mktemp("wk"), ca, "c.test", "c.test:%d" % c.fed_port,
                   "public, max-age=3600")
    try:
        buid, bh = register(b, "bea")
        set_displayname(b, buid, bh, "Bea")
        cuid, ch = register(c, "cid")
        set_displayname(c, cuid, ch, "Cid")
        assert buid.endswith(":b.test") and cuid.endswith(":c.test")
        closed = free_port()
        a = make_server(federation_extra='connect_to = ["b.test:443:127.0.0.1:%d", '
                        '"b.test:8448:127.0.0.1:%d", "c.test:443:127.0.0.1:%d", '
                        '"c.test:%d:127.0.0.1:%d"];'
                        % (closed, b.fed_port, wk.port, c.fed_port, c.fed_port))
        r = a.get(C + "/profile/" + cuid)
        assert r.status_code == 200 and r.json() == {"displayname": "Cid"}, r.text
        r = a.get(C + "/profile/%s/displayname" % cuid)
        assert r.status_code == 200 and r.json() == {"displayname": "Cid"}, r.text
        assert wk.requests == 1  # cached
        r = a.get(C + "/profile/" + buid)
        assert r.status_code == 200 and r.json() == {"displayname": "Bea"}, r.text
        log = a.read_log()
        assert ("discovery server=c.test target=c.test:%d host=c.test:%d ttl=3600 source=well-known"
                % (c.fed_port, c.fed_port)) in log
        assert "discovery server=b.test target=b.test:8448 host=b.test ttl=600 source=fallback" in log
        # B and C verified A's signed requests (their destination was their name)
        assert "/_matrix/federation/v1/query/profile status=200" in c.read_log()
        assert "/_matrix/federation/v1/query/profile status=200" in b.read_log()
    finally:
        wk.close()
