"""/register user-interactive auth sessions: the first request's parameters
are remembered, and a completed session answers again with the same user."""
from test_accounts import C, bearer, login


def start(s, **params):
    r = s.post(C + "/register", json=params)
    assert r.status_code == 401, r.text
    return r.json()["session"]


def finish(s, session, **params):
    params["auth"] = {"type": "m.login.dummy", "session": session}
    return s.post(C + "/register", json=params)


def test_session_remembers_parameters(server):
    sid = start(server, username="carol", password="pw1", device_id="XYZZY",
                initial_device_display_name="phone")
    r = finish(server, sid)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["user_id"] == "@carol:%s" % server.server_name and b["device_id"] == "XYZZY"
    dev = server.get(C + "/devices/XYZZY", headers=bearer(b["access_token"])).json()
    assert dev["display_name"] == "phone"
    assert login(server, "carol", password="pw1").status_code == 200


def test_session_remembers_inhibit_login(server):
    sid = start(server, username="dave", password="pw", inhibit_login=True)
    b = finish(server, sid).json()
    assert b["user_id"] == "@dave:%s" % server.server_name
    assert "access_token" not in b and "device_id" not in b


def test_completed_session_is_idempotent(server):
    sid = start(server, password="pw")
    first = finish(server, sid, password="pw").json()
    again = finish(server, sid, password="pw")
    assert again.status_code == 200, again.text
    assert again.json()["user_id"] == first["user_id"]
    assert again.json()["access_token"] != first["access_token"]
    assert server.sql("SELECT count(*) FROM users")[0][0] == 1
    sid = start(server, username="erin", password="pw")
    assert finish(server, sid, username="erin", password="pw").status_code == 200
    r = finish(server, sid, username="erin", password="pw")
    assert r.status_code == 200 and r.json()["user_id"] == "@erin:%s" % server.server_name


def test_unknown_session_is_a_fresh_registration(server):
    r = finish(server, "not-a-session", username="frank", password="pw")
    assert r.status_code == 200 and r.json()["user_id"].startswith("@frank:")
