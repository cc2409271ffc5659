"""Deleting devices, changing the password and deactivating, each behind
user-interactive auth with the password; /capabilities and /account/3pid."""
import requests

from test_accounts import C, bearer, errcode, login, new_user

PW = "sup3r s3kr1t"


def pw_auth(user_id, password=PW):
    return {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id},
            "password": password}


def delete(s, path, token, body=None):
    return requests.delete(s.base + C + path, headers=bearer(token), json=body, timeout=10)


def whoami(s, token):
    return s.get(C + "/account/whoami", headers=bearer(token))


def test_delete_device_needs_the_password(server):
    a = new_user(server, "alice")
    other = login(server, a["user_id"], device_id="LOGINDEV").json()
    assert whoami(server, other["access_token"]).status_code == 200
    # no body, empty body: the flows
    for body in (None, {}):
        r = delete(server, "/devices/LOGINDEV", a["access_token"], body)
        assert r.status_code == 401
        assert r.json()["flows"] == [{"stages": ["m.login.password"]}]
        assert "session" in r.json() and "params" in r.json()
    r = delete(server, "/devices/LOGINDEV", a["access_token"], {"auth": pw_auth(a["user_id"], "wrong")})
    assert r.status_code == 401 and errcode(r) == "M_FORBIDDEN" and "flows" in r.json()
    assert whoami(server, other["access_token"]).status_code == 200
    r = delete(server, "/devices/LOGINDEV", a["access_token"], {"auth": pw_auth(a["user_id"])})
    assert r.status_code == 200, r.text
    assert server.get(C + "/devices/LOGINDEV", headers=bearer(a["access_token"])).status_code == 404
    assert whoami(server, other["access_token"]).status_code == 401
    assert whoami(server, a["access_token"]).status_code == 200


def test_delete_device_auth_must_be_the_owner(server):
    a = new_user(server, "alice")
    e = new_user(server, "eve")
    login(server, a["user_id"], device_id="LOGINDEV")
    r = delete(server, "/devices/LOGINDEV", a["access_token"], {"auth": pw_auth(e["user_id"])})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    assert server.get(C + "/devices/LOGINDEV", headers=bearer(a["access_token"])).status_code == 200


def test_delete_devices_in_bulk(server):
    a = new_user(server, "alice")
    t1 = login(server, a["user_id"], device_id="D1").json()["access_token"]
    t2 = login(server, a["user_id"], device_id="D2").json()["access_token"]
    r = server.post(C + "/delete_devices", headers=bearer(a["access_token"]),
                    json={"devices": ["D1", "D2", "NOPE"], "auth": pw_auth(a["user_id"])})
    assert r.status_code == 200, r.text
    assert whoami(server, t1).status_code == 401 and whoami(server, t2).status_code == 401
    r = server.post(C + "/delete_devices", headers=bearer(a["access_token"]), json={"devices": "D1"})
    assert r.status_code == 400
    r = server.post(C + "/delete_devices", headers=bearer(a["access_token"]), json={"devices": [5]})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"


def test_change_password(server):
    a = new_user(server, "alice")
    other = login(server, a["user_id"]).json()["access_token"]
    r = server.post(C + "/account/password", headers=bearer(a["access_token"]),
                    json={"new_password": "n3w", "auth": pw_auth(a["user_id"], "wrong")})
    assert r.status_code == 401 and errcode(r) == "M_FORBIDDEN"
    assert login(server, a["user_id"]).status_code == 200
    r = server.post(C + "/account/password", headers=bearer(a["access_token"]),
                    json={"new_password": "n3w", "auth": pw_auth(a["user_id"])})
    assert r.status_code == 200, r.text
    assert login(server, a["user_id"]).status_code == 403
    assert login(server, a["user_id"], password="n3w").status_code == 200
    assert whoami(server, a["access_token"]).status_code == 200   # this session stays
    assert whoami(server, other).status_code == 401               # the others are logged out


def test_change_password_can_keep_other_sessions(server):
    a = new_user(server, "alice")
    other = login(server, a["user_id"]).json()["access_token"]
    r = server.post(C + "/account/password", headers=bearer(a["access_token"]),
                    json={"new_password": "n3w", "logout_devices": False, "auth": pw_auth(a["user_id"])})
    assert r.status_code == 200
    assert whoami(server, other).status_code == 200
    r = server.post(C + "/account/password", headers=bearer(a["access_token"]),
                    json={"auth": pw_auth(a["user_id"], "n3w")})
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"


def test_deactivate(server):
    a = new_user(server, "alice")
    r = server.post(C + "/account/deactivate", headers=bearer(a["access_token"]),
                    json={"auth": pw_auth(a["user_id"], "wrong")})
    assert r.status_code == 401 and errcode(r) == "M_FORBIDDEN"
    for k in ("error", "errcode", "params", "completed", "flows"):
        assert k in r.json()
    r = server.post(C + "/account/deactivate", headers=bearer(a["access_token"]),
                    json={"auth": pw_auth(a["user_id"])})
    assert r.status_code == 200, r.text
    assert r.json() == {"id_server_unbind_result": "no-support"}
    assert whoami(server, a["access_token"]).status_code == 401
    assert login(server, a["user_id"]).status_code == 403
    rows = server.sql("SELECT action FROM federation_audit_log WHERE target = %s", a["user_id"])
    assert ("account.deactivate",) in rows
    assert server.sql("SELECT count(*) FROM devices WHERE user_id = %s", a["user_id"])[0][0] == 0


def test_capabilities_and_threepids(server):
    a = new_user(server, "alice")
    assert server.get(C + "/capabilities").status_code == 401
    caps = server.get(C + "/capabilities", headers=bearer(a["access_token"])).json()["capabilities"]
    assert caps["m.change_password"]["enabled"] is True
    assert caps["m.room_versions"]["default"] in caps["m.room_versions"]["available"]
    r = server.get(C + "/account/3pid", headers=bearer(a["access_token"]))
    assert r.json() == {"threepids": []}
