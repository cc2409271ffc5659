"""Accounts (register, login, logout, whoami, devices, profile), rate
limits, admins, suspension and the audit chain, against real servers."""
import asyncio
import concurrent.futures
import hashlib
import json
import subprocess

import pytest
import requests

C = "/_matrix/client/v3"
R0 = "/_matrix/client/r0"
ADMIN = "/_auralink/admin/v1"


def register(s, username, password="sup3r s3kr1t", **extra):
    body = {"auth": {"type": "m.login.dummy"}, "username": username, "password": password}
    body.update(extra)
    return s.post(C + "/register", json=body)


def login(s, user, password="sup3r s3kr1t", **extra):
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
            "password": password}
    body.update(extra)
    return s.post(C + "/login", json=body)


def bearer(token):
    return {"Authorization": "Bearer " + token}


def errcode(r):
    return r.json().get("errcode")


def new_user(s, name, **kw):
    r = register(s, name, **kw)
    assert r.status_code == 200, r.text
    return r.json()


# ---- register ----

def test_register_flows_and_dummy_auth(server):
    r = server.post(C + "/register", json={})
    assert r.status_code == 401
    body = r.json()
    assert {"stages": ["m.login.dummy"]} in body["flows"]
    assert body["params"] == {}
    assert isinstance(body["session"], str) and body["session"]
    # Completing the stage with the session creates the account.
    r = server.post(C + "/register", json={"auth": {"type": "m.login.dummy", "session": body["session"]},
                                          "username": "alice", "password": "pw"})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["user_id"] == "@alice:%s" % server.server_name
    assert b["home_server"] == server.server_name
    assert len(b["access_token"]) == 43 and b["device_id"]
    # Stored as sha256 of the token, never the token itself.
    rows = server.sql("SELECT encode(token_hash, 'hex') FROM access_tokens WHERE user_id = %s", b["user_id"])
    assert rows == [(hashlib.sha256(b["access_token"].encode()).hexdigest(),)]
    (pw_hash,) = server.sql("SELECT password_hash FROM users WHERE user_id = %s", b["user_id"])[0]
    assert pw_hash.startswith("$argon2id$")
    assert "pw" not in server.read_log().split() and b["access_token"] not in server.read_log()


def test_register_unknown_auth_type(server):
    r = server.post(C + "/register", json={"auth": {"type": "m.login.recaptcha"}, "username": "bob"})
    assert r.status_code == 401 and "flows" in r.json() and errcode(r) == "M_FORBIDDEN"


def test_register_r0_downcases_and_device_id(server):
    r = server.post(R0 + "/register", json={"auth": {"type": "m.login.dummy"}, "username": "User-UPPER",
                                           "password": "x", "device_id": "my_device_id",
                                           "initial_device_display_name": "phone"})
    assert r.status_code == 200, r.text
    assert r.json()["user_id"] == "@user-upper:%s" % server.server_name
    assert r.json()["device_id"] == "my_device_id"
    d = server.get(C + "/devices/my_device_id", headers=bearer(r.json()["access_token"])).json()
    assert d == {"device_id": "my_device_id", "display_name": "phone"}


def test_register_generates_localpart_and_inhibit_login(server):
    r = server.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "password": "x",
                                          "inhibit_login": True})
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["user_id"].startswith("@u") and "access_token" not in b and "device_id" not in b
    assert server.sql("SELECT count(*) FROM devices WHERE user_id = %s", b["user_id"]) == [(0,)]


@pytest.mark.parametrize("name", ["bad!", 'q"', "a:b", "a?", "a@b", "a[", "a]", "a{", "a|", "a}",
                                  "£", "é", "a\n", "a'", "a b", "x" * 256])
def test_register_invalid_username(server, name):
    r = register(server, name)
    assert r.status_code == 400 and errcode(r) == "M_INVALID_USERNAME", (name, r.text)


@pytest.mark.parametrize("name", ["q3", "a.b", "a_b", "a=b", "a-b", "a/b", "a+b"])
def test_register_valid_username_chars(server, name):
    assert register(server, name).status_code == 200


def test_register_field_validation(server):
    cases = [
        ({"username": 5}, "M_INVALID_PARAM"),
        ({"password": ["x"]}, "M_INVALID_PARAM"),
        ({"password": "p" * 513}, "M_INVALID_PARAM"),
        ({"device_id": ""}, "M_INVALID_PARAM"),
        ({"device_id": "d" * 256}, "M_INVALID_PARAM"),
        ({"device_id": 7}, "M_INVALID_PARAM"),
        ({"initial_device_display_name": "n" * 257}, "M_INVALID_PARAM"),
        ({"inhibit_login": "yes"}, "M_INVALID_PARAM"),
        ({"auth": "dummy"}, "M_INVALID_PARAM"),
    ]
    for i, (extra, code) in enumerate(cases):
        body = {"auth": {"type": "m.login.dummy"}, "username": "v%d" % i, "password": "x"}
        body.update(extra)
        r = server.post(C + "/register", json=body)
        assert r.status_code == 400 and errcode(r) == code, (extra, r.text)
    # 512 bytes of password is still fine; so are 256 characters of é (512 bytes).
    assert register(server, "maxpw", password="p" * 512).status_code == 200
    assert register(server, "maxname", initial_device_display_name="é" * 256).status_code == 200
    # Not JSON / not an object.
    r = server.post(C + "/register", data="{nope")
    assert r.status_code == 400 and errcode(r) == "M_NOT_JSON"
    r = server.post(C + "/register", data="[1]")
    assert r.status_code == 400 and errcode(r) == "M_BAD_JSON"
    # Nothing of the refused requests was written.
    assert server.sql("SELECT count(*) FROM users WHERE localpart LIKE 'v%%'") == [(0,)]


def test_register_user_in_use(server):
    new_user(server, "taken")
    r = register(server, "taken")
    assert r.status_code == 400 and errcode(r) == "M_USER_IN_USE"
    r = register(server, "TAKEN")
    assert r.status_code == 400 and errcode(r) == "M_USER_IN_USE"


def test_register_available(server):
    new_user(server, "present")
    r = server.get(C + "/register/available", params={"username": "free"})
    assert r.status_code == 200 and r.json() == {"available": True}
    r = server.get(C + "/register/available", params={"username": "present"})
    assert r.status_code == 400 and errcode(r) == "M_USER_IN_USE"
    r = server.get(C + "/register/available", params={"username": "Bad!"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_USERNAME"
    r = server.get(C + "/register/available")
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"


def test_register_closed(make_server):
    s = make_server(registration=False)
    r = register(s, "nobody")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    assert s.sql("SELECT count(*) FROM users") == [(0,)]


def test_guest_registration(server, make_server):
    r = server.post(C + "/register?kind=guest", json={})
    assert r.status_code == 403 and errcode(r) == "M_GUEST_ACCESS_FORBIDDEN"
    r = server.post(C + "/register?kind=robot", json={})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    s = make_server(allow_guests=True)
    r = s.post(C + "/register?kind=guest", json={})
    assert r.status_code == 200, r.text
    w = s.get(C + "/account/whoami", headers=bearer(r.json()["access_token"])).json()
    assert w["is_guest"] is True and w["user_id"] == r.json()["user_id"]


def test_concurrent_registration_one_wins(server):
    def attempt(_):
        return register(server, "racer")
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as ex:
        results = list(ex.map(attempt, range(8)))
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 1, [r.text for r in results]
    assert all(errcode(r) == "M_USER_IN_USE" for r in results if r.status_code != 200)
    assert server.sql("SELECT count(*) FROM users WHERE localpart = 'racer'") == [(1,)]


def test_failed_registration_leaves_nothing(server):
    # A device display name the database refuses (check constraint) fails
    # after the user row was inserted: the transaction must undo it.
    server.sql("ALTER TABLE devices ADD CONSTRAINT t_no_evil CHECK (display_name IS DISTINCT FROM 'evil')")
    r = register(server, "halfway", initial_device_display_name="evil")
    assert r.status_code == 500
    assert server.sql("SELECT count(*) FROM users WHERE localpart = 'halfway'") == [(0,)]
    assert server.sql("SELECT count(*) FROM access_tokens") == [(0,)]
    assert register(server, "halfway").status_code == 200


# ---- login / logout ----

def test_login_lifecycle(server):
    u = new_user(server, "carol")
    r = server.get(C + "/login")
    assert r.status_code == 200 and {"type": "m.login.password"} in r.json()["flows"]
    # Full user ID, localpart, bare `user`, r0 path.
    a = login(server, u["user_id"])
    assert a.status_code == 200, a.text
    a = a.json()
    assert a["user_id"] == u["user_id"] and a["home_server"] == server.server_name
    assert a["well_known"]["m.homeserver"]["base_url"] == server.base
    b = login(server, "Carol").json()
    c = server.post(R0 + "/login", json={"type": "m.login.password", "user": "carol",
                                         "password": "sup3r s3kr1t"}).json()
    assert len({u["access_token"], a["access_token"], b["access_token"], c["access_token"]}) == 4
    for t in (u, a, b, c):
        w = server.get(C + "/account/whoami", headers=bearer(t["access_token"]))
        assert w.status_code == 200
        assert w.json() == {"user_id": u["user_id"], "device_id": t["device_id"], "is_guest": False}
    devs = server.get(C + "/devices", headers=bearer(a["access_token"])).json()["devices"]
    assert sorted(d["device_id"] for d in devs) == sorted(t["device_id"] for t in (u, a, b, c))

    # Logout kills this token and device only.
    r = server.post(C + "/logout", headers=bearer(a["access_token"]), json={})
    assert r.status_code == 200 and r.json() == {}
    r = server.get(C + "/account/whoami", headers=bearer(a["access_token"]))
    assert r.status_code == 401 and errcode(r) == "M_UNKNOWN_TOKEN"
    assert server.get(C + "/account/whoami", headers=bearer(b["access_token"])).status_code == 200
    assert server.get(C + "/devices/" + a["device_id"], headers=bearer(b["access_token"])).status_code == 404

    # logout/all kills every token.
    r = server.post(C + "/logout/all", headers=bearer(b["access_token"]), json={})
    assert r.status_code == 200
    for t in (u, b, c):
        r = server.get(C + "/account/whoami", headers=bearer(t["access_token"]))
        assert r.status_code == 401 and errcode(r) == "M_UNKNOWN_TOKEN"
    assert server.sql("SELECT count(*) FROM access_tokens") == [(0,)]


def test_login_reuses_device_id(server):
    u = new_user(server, "dave")
    a = login(server, "dave", device_id="DEV1", initial_device_display_name="laptop").json()
    assert a["device_id"] == "DEV1"
    b = login(server, "dave", device_id="DEV1").json()
    assert b["device_id"] == "DEV1"
    # The device's old token was replaced by the new one.
    assert server.get(C + "/account/whoami", headers=bearer(a["access_token"])).status_code == 401
    assert server.get(C + "/account/whoami", headers=bearer(b["access_token"])).status_code == 200
    d = server.get(C + "/devices/DEV1", headers=bearer(u["access_token"])).json()
    assert d["display_name"] == "laptop"


def test_login_failures(server):
    new_user(server, "erin")
    r = login(server, "erin", password="wrong")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    r = login(server, "nobody-here")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    r = login(server, "@erin:elsewhere.example")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    cases = [
        ({"type": "m.login.token", "token": "x"}, 400, "M_UNKNOWN"),
        ({"password": "x", "identifier": {"type": "m.id.user", "user": "erin"}}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "password": "x"}, 400, "M_MISSING_PARAM"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "erin"}}, 400,
         "M_MISSING_PARAM"),
        ({"type": "m.login.password", "identifier": "erin", "password": "x"}, 400, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                      "address": "e@x"}, "password": "x"}, 400, "M_UNKNOWN"),
        ({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": 5}, "password": "x"},
         400, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "user": "erin", "password": "p" * 513}, 400, "M_INVALID_PARAM"),
        ({"type": "m.login.password", "user": "erin", "password": "x", "device_id": "a\u0001"}, 400,
         "M_INVALID_PARAM"),
    ]
    for body, status, code in cases:
        r = server.post(C + "/login", json=body)
        assert r.status_code == status and errcode(r) == code, (body, r.text)


def test_missing_and_bad_tokens(server):
    r = server.get(C + "/account/whoami")
    assert r.status_code == 401 and errcode(r) == "M_MISSING_TOKEN"
    r = server.get(C + "/account/whoami", headers=bearer("nope"))
    assert r.status_code == 401 and errcode(r) == "M_UNKNOWN_TOKEN" and r.json()["soft_logout"] is False
    r = server.get(C + "/account/whoami", headers=bearer("x" * 5000))
    assert r.status_code == 401 and errcode(r) == "M_UNKNOWN_TOKEN"
    u = new_user(server, "frank")
    # The deprecated query parameter works too.
    r = server.get(C + "/account/whoami", params={"access_token": u["access_token"]})
    assert r.status_code == 200 and r.json()["user_id"] == u["user_id"]


# ---- devices and profile ----

def test_devices(server):
    u = new_user(server, "gina", device_id="D0")
    h = bearer(u["access_token"])
    assert server.get(C + "/devices/unknown", headers=h).status_code == 404
    r = server.put(C + "/devices/D0", headers=h, json={"display_name": "renamed"})
    assert r.status_code == 200
    assert server.get(C + "/devices/D0", headers=h).json()["display_name"] == "renamed"
    r = server.put(C + "/devices/unknown", headers=h, json={"display_name": "x"})
    assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"
    r = server.put(C + "/devices/D0", headers=h, json={"display_name": "x" * 257})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = server.put(C + "/devices/D0", headers=h, json={"display_name": 3})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    # Another user's device is not visible.
    other = new_user(server, "hank")
    assert server.get(C + "/devices/D0", headers=bearer(other["access_token"])).status_code == 404
    assert server.get(C + "/devices").status_code == 401


def test_profile(server):
    u = new_user(server, "ivy")
    o = new_user(server, "jack")
    uid, h = u["user_id"], bearer(u["access_token"])
    assert server.get(C + "/profile/" + uid).json() == {}
    r = server.put(C + "/profile/%s/displayname" % uid, headers=h, json={"displayname": "Ivy ✓"})
    assert r.status_code == 200
    r = server.put(C + "/profile/%s/avatar_url" % uid, headers=h, json={"avatar_url": "mxc://x/y"})
    assert r.status_code == 200
    assert server.get(C + "/profile/%s/displayname" % uid).json() == {"displayname": "Ivy ✓"}
    assert server.get(R0 + "/profile/%s/avatar_url" % uid).json() == {"avatar_url": "mxc://x/y"}
    assert server.get(C + "/profile/" + uid).json() == {"displayname": "Ivy ✓", "avatar_url": "mxc://x/y"}
    # Only one's own profile is writable.
    r = server.put(C + "/profile/%s/displayname" % uid, headers=bearer(o["access_token"]),
                   json={"displayname": "hijacked"})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    r = server.put(C + "/profile/%s/displayname" % uid, json={"displayname": "anon"})
    assert r.status_code == 401
    # Bounds and types.
    for field, value, code in [("displayname", "x" * 257, "M_INVALID_PARAM"),
                               ("displayname", 1, "M_INVALID_PARAM"),
                               ("avatar_url", "m" * 2049, "M_INVALID_PARAM"),
                               ("avatar_url", {}, "M_INVALID_PARAM")]:
        r = server.put(C + "/profile/%s/%s" % (uid, field), headers=h, json={field: value})
        assert r.status_code == 400 and errcode(r) == code, (field, r.text)
    r = server.put(C + "/profile/%s/displayname" % uid, headers=h, json={})
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"
    assert server.get(C + "/profile/%s/displayname" % uid).json() == {"displayname": "Ivy ✓"}
    # null clears.
    r = server.put(C + "/profile/%s/displayname" % uid, headers=h, json={"displayname": None})
    assert r.status_code == 200
    assert server.get(C + "/profile/" + uid).json() == {"avatar_url": "mxc://x/y"}
    # Unknown users.
    for path in ("", "/displayname", "/avatar_url"):
        r = server.get(C + "/profile/@ghost:%s%s" % (server.server_name, path))
        assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"


# ---- rate limits ----

def test_rate_limit(make_server):
    s = make_server(limits="rate_per_second = 0.5; rate_burst = 3;")
    codes = [s.get(C + "/register/available", params={"username": "z%d" % i}).status_code for i in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3] == 429, codes
    r = s.get(C + "/register/available", params={"username": "zz"})
    assert r.status_code == 429 and errcode(r) == "M_LIMIT_EXCEEDED"
    assert 0 < r.json()["retry_after_ms"] <= 2000
    # Login has its own bucket; wrong passwords are limited too.
    codes = [login(s, "nobody", password="x").status_code for _ in range(4)]
    assert codes == [403, 403, 403, 429], codes
    # Authenticated endpoints are limited per user.
    s.sql("INSERT INTO users (user_id, localpart) VALUES ('@q:%s', 'q')" % s.server_name)
    s.sql("INSERT INTO devices (user_id, device_id) VALUES ('@q:%s', 'D')" % s.server_name)
    tok = "t" * 43
    s.sql("INSERT INTO access_tokens (token_hash, user_id, device_id) VALUES (sha256(%s::bytea), %s, 'D')",
          tok, "@q:" + s.server_name)
    codes = [s.get(C + "/account/whoami", headers=bearer(tok)).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429], codes


# ---- admins, suspension, audit ----

def test_admin_endpoints_refuse_others(server):
    u = new_user(server, "mallory")
    h = bearer(u["access_token"])
    for method, path in [("post", "/users/%s/suspend" % u["user_id"]), ("post", "/users/x/unsuspend"),
                         ("get", "/audit"), ("get", "/audit/verify")]:
        r = getattr(requests, method)(server.base + ADMIN + path, headers=h, json={}, timeout=10)
        assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", (path, r.text)
        r = getattr(requests, method)(server.base + ADMIN + path, json={}, timeout=10)
        assert r.status_code == 401 and errcode(r) == "M_MISSING_TOKEN"


def test_suspension_via_config_admin(make_server, ca):
    s = make_server(start=False, config_extra='admins = ["@root:%s"];' % "PLACEHOLDER")
    # The server name is only known once the object exists: rewrite the config.
    s.write_config(True, 'admins = ["@root:%s"];' % s.server_name)
    s.start()
    admin = new_user(s, "root")
    victim = new_user(s, "victim")
    vh = bearer(victim["access_token"])
    assert s.get(C + "/account/whoami", headers=vh).status_code == 200  # now cached
    s.sql("INSERT INTO aura_id_registry (aura_id, user_id, username) VALUES ('@victim.aura', %s, 'victim')",
          victim["user_id"])
    r = s.post(ADMIN + "/users/%s/suspend" % victim["user_id"], headers=bearer(admin["access_token"]), json={})
    assert r.status_code == 200 and r.json() == {"user_id": victim["user_id"], "suspended": True}
    r = s.get(C + "/account/whoami", headers=vh)
    assert r.status_code == 403 and errcode(r) == "M_USER_SUSPENDED"
    assert s.sql("SELECT status FROM aura_id_registry WHERE user_id = %s", victim["user_id"]) == [("suspended",)]
    r = login(s, "victim")
    assert r.status_code == 403 and errcode(r) == "M_USER_SUSPENDED"
    r = login(s, "victim", password="wrong")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    rows = s.sql("SELECT category, action, actor, target FROM federation_audit_log ORDER BY id")
    assert rows == [("admin", "suspend_user", admin["user_id"], victim["user_id"])]
    # Unsuspend restores the tokens.
    r = s.post(ADMIN + "/users/%s/unsuspend" % victim["user_id"], headers=bearer(admin["access_token"]), json={})
    assert r.status_code == 200
    assert s.get(C + "/account/whoami", headers=vh).status_code == 200
    assert s.sql("SELECT status FROM aura_id_registry WHERE user_id = %s", victim["user_id"]) == [("active",)]
    r = s.post(ADMIN + "/users/@ghost:%s/suspend" % s.server_name, headers=bearer(admin["access_token"]), json={})
    assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"
    r = s.post(ADMIN + "/users/%s/suspend" % admin["user_id"], headers=bearer(admin["access_token"]), json={})
    assert r.status_code == 400
    # The unknown-user attempt wrote no audit entry.
    assert s.sql("SELECT count(*) FROM federation_audit_log") == [(2,)]


def test_grant_admin_cli(server):
    u = new_user(server, "boss")
    h = bearer(u["access_token"])
    assert server.get(ADMIN + "/audit", headers=h).status_code == 403
    r = server.run_cli("--grant-admin", "@nobody:" + server.server_name, check=False)
    assert r.returncode == 1 and "no such user" in r.stderr
    r = server.run_cli("--grant-admin", u["user_id"], check=False)
    assert r.returncode == 0, r.stderr
    assert server.sql("SELECT is_admin FROM users WHERE user_id = %s", u["user_id"]) == [(True,)]
    r = server.get(ADMIN + "/audit", headers=h)
    assert r.status_code == 200
    e = r.json()["entries"]
    assert [(x["category"], x["action"], x["target"]) for x in e] == [("admin", "grant_admin", u["user_id"])]
    assert r.json()["count"] == 1


def test_audit_chain_verify_and_tamper(server):
    boss = new_user(server, "auditor")
    server.run_cli("--grant-admin", boss["user_id"])
    h = bearer(boss["access_token"])
    users = [new_user(server, "a%d" % i) for i in range(4)]
    for u in users:
        assert server.post(ADMIN + "/users/%s/suspend" % u["user_id"], headers=h, json={}).status_code == 200
        assert server.post(ADMIN + "/users/%s/unsuspend" % u["user_id"], headers=h, json={}).status_code == 200
    r = server.get(ADMIN + "/audit/verify", headers=h)
    assert r.status_code == 200 and r.json() == {"ok": True, "entries": 9}
    # Listing: filter by category, limit, since.
    r = server.get(ADMIN + "/audit", headers=h, params={"category": "admin", "limit": 3})
    entries = r.json()["entries"]
    assert len(entries) == 3 and entries[1]["prev_hash"] == entries[0]["entry_hash"]
    assert server.get(ADMIN + "/audit", headers=h, params={"category": "mesh"}).json()["entries"] == []
    since = entries[2]["created_at"]
    later = server.get(ADMIN + "/audit", headers=h, params={"since": since}).json()["entries"]
    assert all(x["created_at"] >= since for x in later) and len(later) >= 7
    for bad in ({"category": "nope"}, {"limit": 0}, {"limit": 1001}, {"since": "x"}):
        r = server.get(ADMIN + "/audit", headers=h, params=bad)
        assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM", bad
    # The database itself refuses changes...
    import psycopg2
    with pytest.raises(psycopg2.Error):
        server.sql("UPDATE federation_audit_log SET action = 'x' WHERE id = 3")
    # ...so a superuser disables the triggers and alters entry 5 by hand.
    (victim_id,) = server.sql("SELECT id FROM federation_audit_log ORDER BY id OFFSET 4 LIMIT 1")[0]
    server.sql("ALTER TABLE federation_audit_log DISABLE TRIGGER ALL;"
               " UPDATE federation_audit_log SET target = '@someone-else:x' WHERE id = %s;"
               " ALTER TABLE federation_audit_log ENABLE TRIGGER ALL", victim_id)
    r = server.get(ADMIN + "/audit/verify", headers=h)
    assert r.json() == {"ok": False, "entries": 9, "first_bad_entry": victim_id}


def test_audit_verify_detects_details_and_link_changes(server):
    boss = new_user(server, "auditor2")
    server.run_cli("--grant-admin", boss["user_id"])
    h = bearer(boss["access_token"])
    u = new_user(server, "b0")
    server.post(ADMIN + "/users/%s/suspend" % u["user_id"], headers=h, json={})
    ids = [i for (i,) in server.sql("SELECT id FROM federation_audit_log ORDER BY id")]
    assert len(ids) == 2
    server.sql("ALTER TABLE federation_audit_log DISABLE TRIGGER ALL;"
               " UPDATE federation_audit_log SET details = '{\"x\": 1}' WHERE id = %s;"
               " ALTER TABLE federation_audit_log ENABLE TRIGGER ALL", ids[0])
    assert server.get(ADMIN + "/audit/verify", headers=h).json()["first_bad_entry"] == ids[0]


# ---- matrix-nio ----

def test_matrix_nio_register_login_whoami(server):
    import nio

    async def run():
        c = nio.AsyncClient(server.base, "nio-user")
        try:
            r = await c.register("nio-user", "n10 s3kr1t", device_name="nio")
            assert isinstance(r, nio.RegisterResponse), r
            assert r.user_id == "@nio-user:%s" % server.server_name
            c2 = nio.AsyncClient(server.base, "nio-user")
            try:
                lr = await c2.login("n10 s3kr1t", device_name="second")
                assert isinstance(lr, nio.LoginResponse), lr
                assert lr.user_id == r.user_id and lr.device_id != r.device_id
                w = await c2.whoami()
                assert isinstance(w, nio.responses.WhoamiResponse), w
                assert w.user_id == r.user_id
                bad = await nio.AsyncClient(server.base, "nio-user").login("wrong")
                assert isinstance(bad, nio.LoginError) and bad.status_code == "M_FORBIDDEN"
            finally:
                await c2.close()
        finally:
            await c.close()

    asyncio.run(run())
