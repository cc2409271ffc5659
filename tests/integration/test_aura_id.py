"""AuraID (issue 3, item 2): claim, settings, verification, availability,
search and resolve, with privacy rules, races, audit entries and batched
last_used_at, against a real auralinkd and PostgreSQL."""
import concurrent.futures
import re
import time

import pytest

C = "/_matrix/client/v3"
A = "/_auralink/client/v1"


def bearer(token):
    return {"Authorization": "Bearer " + token}


def errcode(r):
    return r.json().get("errcode")


class User:
    def __init__(self, s, name):
        r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                          "password": "pw-" + name})
        assert r.status_code == 200, r.text
        self.s = s
        self.user_id = r.json()["user_id"]
        self.h = bearer(r.json()["access_token"])

    def get(self, path, **kw):
        return self.s.get(A + path, headers=self.h, **kw)

    def post(self, path, body=None, **kw):
        return self.s.post(A + path, headers=self.h, json=body if body is not None else {}, **kw)

    def patch(self, body):
        import requests
        return requests.patch(self.s.base + A + "/aura_id/me", headers=self.h, json=body, timeout=10)

    def claim(self, username, **extra):
        body = {"username": username}
        body.update(extra)
        r = self.post("/aura_id", body)
        assert r.status_code == 201, r.text
        return r.json()


def audit(s, action):
    return s.sql("SELECT category, actor, target, details::text FROM federation_audit_log"
                 " WHERE action = %s ORDER BY id", action)


RECORD_FIELDS = {"id", "aura_id", "user_id", "username", "display_name", "avatar_url", "is_verified",
                 "verification_method", "verified_at", "privacy_level", "allow_discovery",
                 "allow_cross_app_calls", "block_unknown_callers", "federated_domains",
                 "federation_enabled", "public_metadata", "status", "created_at", "updated_at",
                 "last_used_at"}


def test_lifecycle_create_get_patch(server):
    alice = User(server, "alice")
    before = int(time.time() * 1000)
    rec = alice.claim("Alice_1", privacy_level="friends", federation_enabled=False)
    assert set(rec) == RECORD_FIELDS
    assert rec["aura_id"] == "@Alice_1.aura" and rec["username"] == "Alice_1"
    assert rec["user_id"] == alice.user_id
    assert rec["privacy_level"] == "friends" and rec["federation_enabled"] is False
    assert rec["is_verified"] is False and rec["verified_at"] is None
    assert rec["allow_discovery"] is True and rec["federated_domains"] == [] and rec["public_metadata"] == {}
    assert rec["status"] == "active" and rec["last_used_at"] is None
    assert before - 5000 <= rec["created_at"] <= int(time.time() * 1000) + 5000
    assert alice.get("/aura_id/me").json() == rec
    # audit entry for the creation, in the identity category
    rows = audit(server, "aura_id.create")
    assert [(c, a, t) for c, a, t, _ in rows] == [("identity", alice.user_id, "@Alice_1.aura")]

    r = alice.patch({"privacy_level": "private", "allow_discovery": False, "allow_cross_app_calls": False,
                     "block_unknown_callers": True, "federation_enabled": True,
                     "federated_domains": ["B.example", "b.example", "[::1]:8448", "10.0.0.1", "c.example:443"],
                     "public_metadata": {"bio": "hi", "links": [1, 2, {"x": True}]}})
    assert r.status_code == 200, r.text
    upd = r.json()
    assert upd["privacy_level"] == "private" and upd["allow_discovery"] is False
    assert upd["allow_cross_app_calls"] is False and upd["block_unknown_callers"] is True
    assert upd["federation_enabled"] is True
    assert upd["federated_domains"] == ["b.example", "[::1]:8448", "10.0.0.1", "c.example:443"]
    assert upd["public_metadata"] == {"bio": "hi", "links": [1, 2, {"x": True}]}
    assert upd["updated_at"] >= rec["updated_at"]
    assert alice.get("/aura_id/me").json() == upd
    rows = audit(server, "aura_id.update_settings")
    assert len(rows) == 1 and rows[0][:3] == ("identity", alice.user_id, "@Alice_1.aura")
    assert '"private"' in rows[0][3]
    # partial update leaves the rest alone
    r = alice.patch({"privacy_level": "public"})
    assert r.status_code == 200 and r.json()["allow_discovery"] is False
    assert len(audit(server, "aura_id.update_settings")) == 2


def test_me_without_aura_id_and_auth(server):
    bob = User(server, "bob")
    r = bob.get("/aura_id/me")
    assert r.status_code == 404 and errcode(r) == "ORG_AURALINK_NO_AURA_ID"
    r = bob.patch({"privacy_level": "private"})
    assert r.status_code == 404 and errcode(r) == "ORG_AURALINK_NO_AURA_ID"
    r = server.get(A + "/aura_id/me")
    assert r.status_code == 401 and errcode(r) == "M_MISSING_TOKEN"
    r = server.get(A + "/aura_id/resolve/@x.aura", headers=bearer("nope"))
    assert r.status_code == 401 and errcode(r) == "M_UNKNOWN_TOKEN"


@pytest.mark.parametrize("name", ["ab", "a" * 31, "al ice", "al.ice", "alice!", "ålice", "", "al@ice"])
def test_create_invalid_username(server, name):
    u = User(server, "u1")
    r = u.post("/aura_id", {"username": name})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM", r.text
    assert server.sql("SELECT count(*) FROM aura_id_registry") == [(0,)]


def test_create_valid_edge_usernames(server):
    for i, name in enumerate(["abc", "A" * 30, "a-b_c", "-_-", "123"]):
        u = User(server, "edge%d" % i)
        assert u.claim(name)["aura_id"] == "@%s.aura" % name


def test_create_field_validation(server):
    u = User(server, "val")
    cases = [
        ({}, 400, "M_MISSING_PARAM"),
        ({"username": 5}, 400, "M_INVALID_PARAM"),
        ({"username": "valid1", "privacy_level": "secret"}, 400, "M_INVALID_PARAM"),
        ({"username": "valid1", "privacy_level": 1}, 400, "M_INVALID_PARAM"),
        ({"username": "valid1", "federation_enabled": "yes"}, 400, "M_INVALID_PARAM"),
        ({"username": "valid1", "is_verified": True}, 400, "M_INVALID_PARAM"),
    ]
    for body, status, code in cases:
        r = u.post("/aura_id", body)
        assert (r.status_code, errcode(r)) == (status, code), (body, r.text)
    r = server.post(A + "/aura_id", headers=u.h, data="not json")
    assert r.status_code == 400 and errcode(r) == "M_NOT_JSON"
    r = server.post(A + "/aura_id", headers=u.h, json=["username"])
    assert r.status_code == 400 and errcode(r) == "M_BAD_JSON"
    # nothing half-written: no record and no audit entry
    assert server.sql("SELECT count(*) FROM aura_id_registry") == [(0,)]
    assert server.sql("SELECT count(*) FROM federation_audit_log") == [(0,)]


@pytest.mark.parametrize("name", ["admin", "ADMIN", "Root", "support", "system", "administrator",
                                  "moderator", "auralink", "matrix", "security", "help"])
def test_reserved_names(server, name):
    u = User(server, "res")
    r = u.post("/aura_id", {"username": name})
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_AURA_ID_RESERVED"
    r = u.get("/aura_id/available", params={"username": name})
    assert r.status_code == 200 and r.json() == {"available": False}


def test_unique_case_insensitive_and_one_per_user(server):
    a, b = User(server, "ua"), User(server, "ub")
    a.claim("Carol")
    r = b.post("/aura_id", {"username": "cAROL"})
    assert r.status_code == 409 and errcode(r) == "ORG_AURALINK_AURA_ID_IN_USE"
    r = a.post("/aura_id", {"username": "another"})
    assert r.status_code == 409 and errcode(r) == "ORG_AURALINK_AURA_ID_EXISTS"
    assert server.sql("SELECT aura_id FROM aura_id_registry ORDER BY aura_id") == [("@Carol.aura",)]
    assert len(audit(server, "aura_id.create")) == 1
    for q, avail in [("carol", False), ("CAROL", False), ("another", True)]:
        r = b.get("/aura_id/available", params={"username": q})
        assert r.status_code == 200 and r.json() == {"available": avail}
    r = b.get("/aura_id/available", params={"username": "x"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = b.get("/aura_id/available")
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"


def test_race_for_one_handle(server):
    users = [User(server, "racer%d" % i) for i in range(8)]

    def attempt(i):
        return users[i].post("/aura_id", {"username": "Hot_Name" if i % 2 else "hot_name"})

    with concurrent.futures.ThreadPoolExecutor(len(users)) as ex:
        results = list(ex.map(attempt, range(len(users))))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] + [409] * (len(users) - 1), [r.text for r in results]
    assert all(errcode(r) == "ORG_AURALINK_AURA_ID_IN_USE" for r in results if r.status_code == 409)
    assert server.sql("SELECT count(*) FROM aura_id_registry") == [(1,)]
    assert len(audit(server, "aura_id.create")) == 1


def test_patch_validation_changes_nothing(server):
    u = User(server, "pv")
    rec = u.claim("patcher")
    deep = {"a": {"b": {"c": {"d": {"e": {}}}}}}
    cases = [
        {},
        {"privacy_level": "everyone"},
        {"privacy_level": None},
        {"allow_discovery": "false"},
        {"allow_cross_app_calls": 0},
        {"block_unknown_callers": None},
        {"federation_enabled": "true"},
        {"federated_domains": "a.example"},
        {"federated_domains": ["ok.example", "bad domain"]},
        {"federated_domains": ["-bad.example"]},
        {"federated_domains": ["a.example:99999"]},
        {"federated_domains": ["a.example:"]},
        {"federated_domains": [1]},
        {"federated_domains": ["d%d.example" % i for i in range(101)]},
        {"public_metadata": []},
        {"public_metadata": "x"},
        {"public_metadata": {"big": "x" * 4100}},
        {"public_metadata": deep},
        {"public_metadata": {"f": 1.5}},
        {"aura_id": "@other.aura"},
        {"privacy_level": "private", "status": "suspended"},
    ]
    for body in cases:
        r = u.patch(body)
        assert r.status_code == 400, (body, r.text)
        assert errcode(r) in ("M_INVALID_PARAM", "M_MISSING_PARAM", "M_BAD_JSON"), (body, r.text)
    assert u.get("/aura_id/me").json() == rec
    assert audit(server, "aura_id.update_settings") == []
    # the limits themselves are accepted
    ok = u.patch({"federated_domains": ["d%d.example" % i for i in range(100)],
                  "public_metadata": {"k": "x" * 4000, "n": {"a": {"b": {"c": 1}}}}})
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["federated_domains"]) == 100


def resolve(user, handle):
    return user.get("/aura_id/resolve/" + handle)


def test_resolve_and_privacy(server):
    owner, other = User(server, "owner"), User(server, "other")
    server.put(C + "/profile/%s/displayname" % owner.user_id, headers=owner.h, json={"displayname": "Olive Owner"})
    owner.claim("Olive")
    r = resolve(other, "@olive.aura")
    assert r.status_code == 200, r.text
    assert r.json() == {"aura_id": "@Olive.aura", "user_id": owner.user_id, "display_name": "Olive Owner",
                        "avatar_url": None, "is_verified": False, "is_online": False,
                        "privacy_level": "public", "server": server.server_name}
    assert resolve(other, "OLIVE.aura").status_code == 200  # '@' optional, any case
    for bad in ["@nobody.aura", "olive", "@ol.aura", "@olive.aura.x"]:
        r = resolve(other, bad)
        assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND", bad
    # private: only the owner resolves it; others get the same 404 as unknown
    assert owner.patch({"privacy_level": "private"}).status_code == 200
    r = resolve(other, "@olive.aura")
    assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"
    r = resolve(owner, "@olive.aura")
    assert r.status_code == 200 and r.json()["privacy_level"] == "private"
    # friends: the two share no room, so only the owner
    assert owner.patch({"privacy_level": "friends"}).status_code == 200
    assert resolve(other, "@olive.aura").status_code == 404
    assert resolve(owner, "@olive.aura").status_code == 200
    # public again; discovery off hides from search but still resolves
    assert owner.patch({"privacy_level": "public", "allow_discovery": False}).status_code == 200
    assert resolve(other, "@olive.aura").status_code == 200
    assert other.get("/aura_id/search", params={"q": "olive"}).json() == {"results": [], "count": 0}


def test_friends_level_follows_shared_joined_rooms(server):
    """friends: visible to users who share a joined room with the owner, in
    resolve and in mesh node listing; search still lists the handle (it is
    discoverable and not private)."""
    import requests
    owner, stranger = User(server, "fr_owner"), User(server, "fr_stranger")
    owner.claim("frieda", privacy_level="friends")
    r = requests.post(server.base + A + "/mesh/nodes/register", headers=owner.h, timeout=10,
                      json={"aura_id": "@frieda.aura", "node_type": "peer"})
    assert r.status_code == 201, r.text

    def nodes(user):
        return user.get("/mesh/nodes/aura/@frieda.aura")

    def room(user, path, body=None):
        r = requests.post(server.base + C + path, headers=user.h, json=body or {}, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    assert resolve(stranger, "@frieda.aura").status_code == 404
    assert errcode(resolve(stranger, "@frieda.aura")) == "M_NOT_FOUND"
    assert nodes(stranger).status_code == 404
    assert resolve(owner, "@frieda.aura").status_code == 200
    assert [x["aura_id"] for x in stranger.get("/aura_id/search", params={"q": "frieda"}).json()[
        "results"]] == ["@frieda.aura"]
    # a room the owner is in, the stranger only invited: not yet a friend
    room_id = room(owner, "/createRoom", {"preset": "private_chat"})["room_id"]
    room(owner, "/rooms/%s/invite" % room_id, {"user_id": stranger.user_id})
    assert resolve(stranger, "@frieda.aura").status_code == 404
    # both joined: visible (the cached record is decided per viewer)
    room(stranger, "/join/%s" % room_id)
    r = resolve(stranger, "@frieda.aura")
    assert r.status_code == 200, r.text
    assert r.json()["privacy_level"] == "friends" and r.json()["user_id"] == owner.user_id
    assert nodes(stranger).status_code == 200 and nodes(stranger).json()["count"] == 1
    # a third user joined elsewhere is no friend
    other = User(server, "fr_other")
    room(other, "/createRoom", {"preset": "public_chat"})
    assert resolve(other, "@frieda.aura").status_code == 404
    # one leaves: hidden again
    room(stranger, "/rooms/%s/leave" % room_id)
    assert resolve(stranger, "@frieda.aura").status_code == 404
    assert nodes(stranger).status_code == 404
    # the owner's own leaving counts too
    room2 = room(owner, "/createRoom", {"preset": "public_chat"})["room_id"]
    room(stranger, "/join/%s" % room2)
    assert resolve(stranger, "@frieda.aura").status_code == 200
    room(owner, "/rooms/%s/leave" % room2)
    assert resolve(stranger, "@frieda.aura").status_code == 404
    # private stays owner-only whatever rooms are shared
    room3 = room(owner, "/createRoom", {"preset": "public_chat"})["room_id"]
    room(stranger, "/join/%s" % room3)
    assert resolve(stranger, "@frieda.aura").status_code == 200
    assert owner.patch({"privacy_level": "private"}).status_code == 200
    assert resolve(stranger, "@frieda.aura").status_code == 404
    assert nodes(stranger).status_code == 404


def test_resolve_online_verified_and_profile_sync(server):
    owner, other = User(server, "dora"), User(server, "viewer")
    owner.claim("dora")
    assert resolve(other, "@dora.aura").json()["is_online"] is False
    # another process (here: SQL) adds an online mesh node; the change is
    # announced and the cached copy dropped
    server.sql("INSERT INTO mesh_nodes (aura_id, user_id) VALUES ('@dora.aura', %s)", owner.user_id)
    deadline = time.time() + 10
    while resolve(other, "@dora.aura").json()["is_online"] is not True:
        assert time.time() < deadline, "is_online never became true"
        time.sleep(0.05)
    # profile changes reach the AuraID copy (search and resolve)
    r = server.put(C + "/profile/%s/displayname" % owner.user_id, headers=owner.h,
                   json={"displayname": "Dora Explorer"})
    assert r.status_code == 200
    assert server.sql("SELECT display_name FROM aura_id_registry") == [("Dora Explorer",)]
    deadline = time.time() + 10
    while resolve(other, "@dora.aura").json()["display_name"] != "Dora Explorer":
        assert time.time() < deadline
        time.sleep(0.05)
    res = other.get("/aura_id/search", params={"q": "explorer"}).json()
    assert [x["aura_id"] for x in res["results"]] == ["@dora.aura"]


def test_suspended_and_inactive_do_not_resolve(server):
    owner, other = User(server, "susp"), User(server, "watcher")
    owner.claim("suspicious")
    assert resolve(other, "@suspicious.aura").status_code == 200
    server.sql("UPDATE aura_id_registry SET status = 'inactive'")
    deadline = time.time() + 10
    while resolve(other, "@suspicious.aura").status_code != 404:
        assert time.time() < deadline
        time.sleep(0.05)
    # the search index follows changes made outside this process (here: SQL)
    # through NOTIFY, a moment after PostgreSQL already answers resolve
    while other.get("/aura_id/search", params={"q": "suspicious"}).json()["count"] != 0:
        assert time.time() < deadline
        time.sleep(0.05)
    server.sql("UPDATE aura_id_registry SET status = 'active'")
    deadline = time.time() + 10
    while resolve(other, "@suspicious.aura").status_code != 200:
        assert time.time() < deadline
        time.sleep(0.05)
    # account suspension (users.suspended_at) suspends the AuraID too
    server.sql("UPDATE users SET suspended_at = now() WHERE user_id = %s", owner.user_id)
    assert server.sql("SELECT status FROM aura_id_registry") == [("suspended",)]
    deadline = time.time() + 10
    while resolve(other, "@suspicious.aura").status_code != 404:
        assert time.time() < deadline
        time.sleep(0.05)


def test_last_used_at_batched(server):
    owner, other = User(server, "lu"), User(server, "lv")
    owner.claim("lastused")
    assert server.sql("SELECT last_used_at, updated_at FROM aura_id_registry")[0][0] is None
    updated_before = server.sql("SELECT updated_at FROM aura_id_registry")[0][0]
    for _ in range(20):
        assert resolve(other, "@lastused.aura").status_code == 200
    deadline = time.time() + 10
    while server.sql("SELECT last_used_at FROM aura_id_registry")[0][0] is None:
        assert time.time() < deadline, "last_used_at not flushed within 10 s"
        time.sleep(0.1)
    # a usage write is not a settings update
    assert server.sql("SELECT updated_at FROM aura_id_registry")[0][0] == updated_before
    assert owner.get("/aura_id/me").json()["last_used_at"] is not None


def test_last_used_at_flushed_at_shutdown(make_server):
    s = make_server()
    owner, other = User(s, "sd1"), User(s, "sd2")
    owner.claim("shutdown")
    assert resolve(other, "@shutdown.aura").status_code == 200
    assert s.stop() == 0
    assert s.sql("SELECT last_used_at IS NOT NULL FROM aura_id_registry") == [(True,)]


def search(user, q, **kw):
    params = {"q": q}
    params.update(kw)
    return user.get("/aura_id/search", params=params)


def test_search_ranking_privacy_and_escaping(server):
    viewer = User(server, "searcher")
    specs = [("zed", None), ("zed_b", None), ("zedxb", None), ("azed", None),
             ("zedhidden", {"allow_discovery": False}), ("zedprivate", {"privacy_level": "private"}),
             ("zedfriends", {"privacy_level": "friends"}), ("named1", None)]
    users = {}
    for handle, patch in specs:
        u = User(server, "s_" + re.sub(r"[^a-z0-9]", "", handle))
        users[handle] = u
        if handle == "named1":
            server.put(C + "/profile/%s/displayname" % u.user_id, headers=u.h, json={"displayname": "Zed Fan"})
        u.claim(handle)
        if patch:
            assert u.patch(patch).status_code == 200
    r = search(viewer, "zed")
    assert r.status_code == 200, r.text
    got = [x["aura_id"] for x in r.json()["results"]]
    # exact > prefix (handle or display name) > substring, then by handle;
    # friends-level is discoverable, private and allow_discovery=false are not
    assert got == ["@zed.aura", "@named1.aura", "@zed_b.aura", "@zedfriends.aura", "@zedxb.aura",
                   "@azed.aura"], got
    assert r.json()["count"] == 6
    first = r.json()["results"][0]
    assert set(first) == {"aura_id", "user_id", "display_name", "avatar_url", "is_verified"}
    assert [x["aura_id"] for x in search(viewer, "@ZED.aura").json()["results"]][0] == "@zed.aura"
    assert search(viewer, "zed", limit=2).json()["count"] == 2
    # LIKE metacharacters match literally
    assert search(viewer, "%").json()["count"] == 0
    assert [x["aura_id"] for x in search(viewer, "_").json()["results"]] == ["@zed_b.aura"]
    assert [x["aura_id"] for x in search(viewer, "d_b").json()["results"]] == ["@zed_b.aura"]
    assert search(viewer, "zed%").json()["count"] == 0
    # the owner does not see her private AuraID in search either
    assert search(users["zedprivate"], "zedprivate").json()["count"] == 0
    for params, code in [({"q": ""}, "M_INVALID_PARAM"), ({"q": "x" * 65}, "M_INVALID_PARAM"),
                         ({"q": "zed", "limit": "0"}, "M_INVALID_PARAM"),
                         ({"q": "zed", "limit": "51"}, "M_INVALID_PARAM"),
                         ({"q": "zed", "limit": "ten"}, "M_INVALID_PARAM"),
                         ({"q": "a\nb"}, "M_INVALID_PARAM"), ({}, "M_MISSING_PARAM")]:
        r = viewer.get("/aura_id/search", params=params)
        assert (r.status_code, errcode(r)) == (400, code), (params, r.text)
    assert search(viewer, "x" * 64).status_code == 200
    assert search(viewer, "zed", limit=50).status_code == 200


def verify_code_from_log(s, aura_id, method, after=0):
    deadline = time.time() + 10
    pat = re.compile(r"verifier: code for %s method=%s code=(\d{6})" % (re.escape(aura_id), method))
    while time.time() < deadline:
        codes = pat.findall(s.read_log()[after:])
        if codes:
            return codes[-1]
        time.sleep(0.05)
    raise AssertionError("no code in the log")


def test_verification_flow(server):
    u, other = User(server, "ver"), User(server, "ver2")
    u.claim("verifyme")
    r = u.post("/aura_id/me/verify", {"method": "fax"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = u.post("/aura_id/me/verify", {})
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"
    r = u.post("/aura_id/me/verify", {"method": "email", "code": "123456"})
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_VERIFICATION_NOT_STARTED"
    r = other.post("/aura_id/me/verify", {"method": "email"})
    assert r.status_code == 404 and errcode(r) == "ORG_AURALINK_NO_AURA_ID"
    mark = len(server.read_log())
    r = u.post("/aura_id/me/verify", {"method": "email"})
    assert r.status_code == 200 and r.json()["method"] == "email", r.text
    code = verify_code_from_log(server, "@verifyme.aura", "email", mark)
    # stored hashed, never in clear
    row = server.sql("SELECT encode(code_hash, 'hex'), attempts FROM aura_id_verifications")
    assert len(row) == 1 and code not in row[0][0] and row[0][1] == 0
    wrong = "000000" if code != "000000" else "111111"
    r = u.post("/aura_id/me/verify", {"method": "email", "code": wrong})
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_INVALID_CODE"
    r = u.post("/aura_id/me/verify", {"method": "phone", "code": code})  # other method: not started
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_VERIFICATION_NOT_STARTED"
    assert u.get("/aura_id/me").json()["is_verified"] is False
    r = u.post("/aura_id/me/verify", {"method": "email", "code": code})
    assert r.status_code == 200, r.text
    rec = r.json()
    assert rec["is_verified"] is True and rec["verification_method"] == "email" and rec["verified_at"]
    assert server.sql("SELECT count(*) FROM aura_id_verifications") == [(0,)]
    rows = audit(server, "aura_id.verify")
    assert len(rows) == 1 and rows[0][:3] == ("identity", u.user_id, "@verifyme.aura")
    assert resolve(other, "@verifyme.aura").json()["is_verified"] is True
    # a used code does not work twice
    r = u.post("/aura_id/me/verify", {"method": "email", "code": code})
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_VERIFICATION_NOT_STARTED"


def test_verification_attempt_limit_and_expiry(server):
    u = User(server, "lim")
    u.claim("limited")
    mark = len(server.read_log())
    assert u.post("/aura_id/me/verify", {"method": "phone"}).status_code == 200
    code = verify_code_from_log(server, "@limited.aura", "phone", mark)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(5):
        r = u.post("/aura_id/me/verify", {"method": "phone", "code": wrong})
        assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_INVALID_CODE"
    r = u.post("/aura_id/me/verify", {"method": "phone", "code": code})
    assert r.status_code == 403 and errcode(r) == "ORG_AURALINK_VERIFICATION_LOCKED"
    assert u.get("/aura_id/me").json()["is_verified"] is False
    # a new code resets the attempts; an expired one is refused
    mark = len(server.read_log())
    assert u.post("/aura_id/me/verify", {"method": "phone"}).status_code == 200
    code = verify_code_from_log(server, "@limited.aura", "phone", mark)
    server.sql("UPDATE aura_id_verifications SET created_at = now() - interval '1 hour',"
               " expires_at = now() - interval '1 second'")
    r = u.post("/aura_id/me/verify", {"method": "phone", "code": code})
    assert r.status_code == 400 and errcode(r) == "ORG_AURALINK_VERIFICATION_EXPIRED"
    assert server.sql("SELECT count(*) FROM aura_id_verifications") == [(0,)]
    assert audit(server, "aura_id.verify") == []


def test_verifier_unavailable(make_server):
    s = make_server(start=False)
    with open(s.config_path) as f:
        conf = f.read()
    with open(s.config_path, "w") as f:
        f.write(conf.replace("dev_verifier = true", "dev_verifier = false"))
    s.start()
    u = User(s, "nover")
    u.claim("noverifier")
    r = u.post("/aura_id/me/verify", {"method": "email"})
    assert r.status_code == 501 and errcode(r) == "ORG_AURALINK_VERIFIER_UNAVAILABLE"
    assert "verifier: code for" not in s.read_log()
    assert s.sql("SELECT count(*) FROM aura_id_verifications") == [(0,)]
