"""Cross-app connections, notification preferences (issue 3, item 3) and
abuse reports (item 4), against a real auralinkd and PostgreSQL."""
import concurrent.futures

import requests

from test_aura_id import A, User, bearer, errcode

ADMIN = "/_auralink/admin/v1"


def put_prefs(u, body):
    return requests.put(u.s.base + A + "/notification_preferences", headers=u.h, json=body, timeout=10)


def delete(u, path):
    return requests.delete(u.s.base + A + path, headers=u.h, timeout=10)


def patch_admin(s, h, path, body):
    return requests.patch(s.base + ADMIN + path, headers=h, json=body, timeout=10)


APP = {"app_id": "com.example.chat", "app_name": "Example Chat", "app_domain": "chat.example.com",
       "platform": "ios", "sdk_version": "1.2.3", "permissions": {"calls": True, "video": False}}


def test_apps_lifecycle(server):
    u = User(server, "appuser")
    r = u.post("/apps", APP)
    assert r.status_code == 404 and errcode(r) == "ORG_AURALINK_NO_AURA_ID"
    assert u.get("/apps").status_code == 404
    u.claim("appuser")
    r = u.post("/apps", APP)
    assert r.status_code == 201, r.text
    rec = r.json()
    assert {k: rec[k] for k in APP} == APP
    assert rec["aura_id"] == "@appuser.aura" and rec["is_active"] is True and rec["revoked_at"] is None
    assert isinstance(rec["connected_at"], int)
    r = u.post("/apps", {"app_id": "web.app", "app_name": "Wéb", "app_domain": "web.example"})
    assert r.status_code == 201 and r.json()["platform"] is None and r.json()["permissions"] == {}
    apps = u.get("/apps").json()["apps"]
    assert [a["app_id"] for a in apps] == ["com.example.chat", "web.app"]
    # reconnecting the same app_id updates it
    r = u.post("/apps", dict(APP, app_name="Example Chat 2", platform="android"))
    assert r.status_code == 200 and r.json()["app_name"] == "Example Chat 2"
    assert r.json()["id"] == rec["id"]
    # revoke
    r = delete(u, "/apps/com.example.chat")
    assert r.status_code == 200 and r.json()["is_active"] is False and r.json()["revoked_at"]
    assert [a["app_id"] for a in u.get("/apps").json()["apps"]] == ["web.app"]
    r = delete(u, "/apps/com.example.chat")
    assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"
    r = delete(u, "/apps/never.connected")
    assert r.status_code == 404
    # reconnecting a revoked app reactivates it
    r = u.post("/apps", APP)
    assert r.status_code == 200 and r.json()["is_active"] is True and r.json()["revoked_at"] is None
    assert len(u.get("/apps").json()["apps"]) == 2
    # another user's apps are separate
    v = User(server, "appother")
    v.claim("appother")
    assert v.get("/apps").json() == {"apps": []}
    assert delete(v, "/apps/web.app").status_code == 404


def test_apps_validation(server):
    u = User(server, "appval")
    u.claim("appval")
    bad = [
        ({k: v for k, v in APP.items() if k != "app_id"}, "M_MISSING_PARAM"),
        ({k: v for k, v in APP.items() if k != "app_name"}, "M_MISSING_PARAM"),
        ({k: v for k, v in APP.items() if k != "app_domain"}, "M_MISSING_PARAM"),
        (dict(APP, app_id=""), "M_INVALID_PARAM"),
        (dict(APP, app_id="a" * 129), "M_INVALID_PARAM"),
        (dict(APP, app_id="bad id"), "M_INVALID_PARAM"),
        (dict(APP, app_id="bad/id"), "M_INVALID_PARAM"),
        (dict(APP, app_id=7), "M_INVALID_PARAM"),
        (dict(APP, app_name=""), "M_INVALID_PARAM"),
        (dict(APP, app_name="n" * 129), "M_INVALID_PARAM"),
        (dict(APP, app_domain="not a domain"), "M_INVALID_PARAM"),
        (dict(APP, app_domain="-x.example"), "M_INVALID_PARAM"),
        (dict(APP, app_domain="a..example"), "M_INVALID_PARAM"),
        (dict(APP, platform="symbian"), "M_INVALID_PARAM"),
        (dict(APP, sdk_version="v" * 33), "M_INVALID_PARAM"),
        (dict(APP, permissions=["calls"]), "M_INVALID_PARAM"),
        (dict(APP, permissions={"calls": "yes"}), "M_INVALID_PARAM"),
        (dict(APP, permissions={"p%d" % i: True for i in range(33)}), "M_INVALID_PARAM"),
        (dict(APP, extra=1), "M_INVALID_PARAM"),
    ]
    for body, code in bad:
        r = u.post("/apps", body)
        assert (r.status_code, errcode(r)) == (400, code), (body, r.text)
    assert server.sql("SELECT count(*) FROM cross_app_connections") == [(0,)]
    ok = dict(APP, app_id="a" * 128, app_name="n" * 128, sdk_version="v" * 32,
              permissions={"p%d" % i: True for i in range(32)})
    assert u.post("/apps", ok).status_code == 201


DEFAULTS = {"preferred_apps": [], "smart_routing_enabled": False, "work_app_id": None,
            "personal_app_id": None, "work_hours_start": "09:00", "work_hours_end": "17:00",
            "work_days": [1, 2, 3, 4, 5], "dnd_enabled": False, "dnd_start": None, "dnd_end": None,
            "dnd_days": [0, 1, 2, 3, 4, 5, 6], "ring_all_apps": True, "ring_timeout_seconds": 30,
            "call_screening_enabled": False}


def test_notification_preferences(server):
    u = User(server, "prefs")
    r = u.get("/notification_preferences")
    assert r.status_code == 404 and errcode(r) == "ORG_AURALINK_NO_AURA_ID"
    u.claim("prefs")
    r = u.get("/notification_preferences")
    assert r.status_code == 200
    got = r.json()
    assert got.pop("aura_id") == "@prefs.aura" and got.pop("updated_at") is None
    assert got == DEFAULTS
    for app_id in ("work.app", "home.app", "gone.app"):
        assert u.post("/apps", {"app_id": app_id, "app_name": app_id, "app_domain": "x.example"}).status_code == 201
    assert delete(u, "/apps/gone.app").status_code == 200
    body = {"preferred_apps": ["home.app", "work.app"], "smart_routing_enabled": True,
            "work_app_id": "work.app", "personal_app_id": "home.app", "work_hours_start": "08:30",
            "work_hours_end": "16:45", "work_days": [5, 1, 2], "dnd_enabled": True, "dnd_start": "22:00",
            "dnd_end": "07:00", "dnd_days": [0, 6], "ring_all_apps": False, "ring_timeout_seconds": 120,
            "call_screening_enabled": True}
    r = put_prefs(u, body)
    assert r.status_code == 200, r.text
    stored = r.json()
    assert stored["work_days"] == [1, 2, 5] and stored["updated_at"]
    assert {k: stored[k] for k in body if k != "work_days"} == {k: v for k, v in body.items() if k != "work_days"}
    assert u.get("/notification_preferences").json() == stored
    # a GET answer can be PUT back; missing fields keep their values
    assert put_prefs(u, u.get("/notification_preferences").json()).status_code == 200
    r = put_prefs(u, {"ring_timeout_seconds": 5})
    assert r.status_code == 200 and r.json()["dnd_start"] == "22:00" and r.json()["ring_timeout_seconds"] == 5
    before = u.get("/notification_preferences").json()
    bad = [
        {"preferred_apps": ["gone.app"]}, {"preferred_apps": ["nope.app"]},
        {"preferred_apps": ["home.app", "home.app"]}, {"preferred_apps": "home.app"},
        {"work_app_id": "gone.app"}, {"personal_app_id": "nope"}, {"work_hours_start": "24:00"},
        {"work_hours_end": "7:00"}, {"dnd_start": "12:60"}, {"dnd_end": 700}, {"work_days": [7]},
        {"work_days": [1, 1]}, {"dnd_days": [-1]}, {"dnd_days": ["1"]}, {"ring_timeout_seconds": 4},
        {"ring_timeout_seconds": 121}, {"ring_timeout_seconds": 30.5}, {"ring_all_apps": "false"},
        {"dnd_enabled": 1}, {"smart_routing_enabled": None}, {"call_screening_enabled": "no"},
        {"dnd_start": None}, {"unknown": 1},
    ]
    for b in bad:
        r = put_prefs(u, b)
        assert (r.status_code, errcode(r)) == (400, "M_INVALID_PARAM"), (b, r.text)
    assert u.get("/notification_preferences").json() == before
    # clearing
    r = put_prefs(u, {"dnd_enabled": False, "dnd_start": None, "dnd_end": None, "work_app_id": None,
                      "preferred_apps": []})
    assert r.status_code == 200 and r.json()["dnd_start"] is None and r.json()["work_app_id"] is None


def admin_server(make_server):
    s = make_server(start=False)
    s.write_config(True, 'admins = ["@root:%s"];' % s.server_name)
    return s.start()


def test_abuse_reports(make_server):
    s = admin_server(make_server)
    root, eve, mallory = User(s, "root"), User(s, "eve"), User(s, "mallory")
    eve.claim("eve")
    mallory.claim("mallory")
    node = s.sql("INSERT INTO mesh_nodes (aura_id, user_id) VALUES ('@mallory.aura', %s) RETURNING node_id::text",
                 mallory.user_id)[0][0]
    own_node = s.sql("INSERT INTO mesh_nodes (aura_id, user_id) VALUES ('@eve.aura', %s) RETURNING node_id::text",
                     eve.user_id)[0][0]
    r = eve.post("/abuse_reports", {"reported_aura_id": "@Mallory.aura", "report_type": "harassment",
                                    "severity": "high", "description": "rude calls",
                                    "evidence": {"call_ids": ["c1", "c2"], "score": 0.9},
                                    "related_call_id": "c1"})
    assert r.status_code == 201, r.text
    rep = r.json()
    assert set(rep) == {"id", "status"} and rep["status"] == "pending"
    r = eve.post("/abuse_reports", {"reported_node_id": node, "report_type": "malicious_node",
                                    "description": "drops packets"})
    assert r.status_code == 201
    # reports of unknown or remote handles are kept too
    assert eve.post("/abuse_reports", {"reported_aura_id": "@someone.aura", "report_type": "spam",
                                       "description": "x"}).status_code == 201
    rows = s.sql("SELECT reported_aura_id, severity, (evidence->>'score')::float8, related_call_id"
                 " FROM abuse_reports ORDER BY created_at")
    assert rows[0] == ("@Mallory.aura", "high", 0.9, "c1")
    assert s.sql("SELECT severity FROM abuse_reports WHERE reported_node_id IS NOT NULL") == [("medium",)]
    entries = s.sql("SELECT category, actor FROM federation_audit_log WHERE action = 'abuse_report.create'")
    assert entries == [("abuse", eve.user_id)] * 3
    count = s.sql("SELECT count(*) FROM abuse_reports")[0][0]
    bad = [
        ({"report_type": "spam", "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "reported_node_id": node, "report_type": "spam",
          "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "mallory", "report_type": "spam", "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_node_id": "not-a-uuid", "report_type": "spam", "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "description": "x"}, "M_MISSING_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "rude", "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "severity": "extreme",
          "description": "x"}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam"}, "M_MISSING_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": ""}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": "d" * 4001},
         "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": "x",
          "evidence": ["a"]}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": "x",
          "evidence": {"blob": "b" * 8200}}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": "x",
          "related_call_id": "c" * 256}, "M_INVALID_PARAM"),
        ({"reported_aura_id": "@mallory.aura", "report_type": "spam", "description": "x", "x": 1},
         "M_INVALID_PARAM"),
        ({"reported_aura_id": "@EVE.aura", "report_type": "spam", "description": "me"},
         "ORG_AURALINK_CANNOT_REPORT_SELF"),
        ({"reported_node_id": own_node, "report_type": "spam", "description": "me"},
         "ORG_AURALINK_CANNOT_REPORT_SELF"),
    ]
    for body, code in bad:
        r = eve.post("/abuse_reports", body)
        assert (r.status_code, errcode(r)) == (400, code), (body, r.text)
    assert s.sql("SELECT count(*) FROM abuse_reports")[0][0] == count
    assert eve.post("/abuse_reports", {"reported_aura_id": "@mallory.aura", "report_type": "spam",
                                       "description": "d" * 4000}).status_code == 201

    # admin side
    rh = root.h
    assert s.get(ADMIN + "/abuse_reports", headers=eve.h).status_code == 403
    r = s.get(ADMIN + "/abuse_reports", headers=rh, params={"status": "pending"})
    assert r.status_code == 200 and r.json()["count"] == 4
    assert r.json()["reports"][-1]["id"] == rep["id"]
    assert s.get(ADMIN + "/abuse_reports", headers=rh, params={"status": "nonsense"}).status_code == 400
    r = patch_admin(s, rh, "/abuse_reports/" + rep["id"], {"status": "confirmed", "resolution_notes": "warned"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["resolved_by"] == root.user_id
    assert r.json()["resolved_at"] and r.json()["resolution_notes"] == "warned"
    assert patch_admin(s, eve.h, "/abuse_reports/" + rep["id"], {"status": "dismissed"}).status_code == 403
    assert patch_admin(s, rh, "/abuse_reports/" + rep["id"], {"status": "done"}).status_code == 400
    assert patch_admin(s, rh, "/abuse_reports/" + rep["id"], {}).status_code == 400
    r = patch_admin(s, rh, "/abuse_reports/00000000-0000-0000-0000-000000000000", {"status": "dismissed"})
    assert r.status_code == 404 and errcode(r) == "M_NOT_FOUND"
    assert s.get(ADMIN + "/abuse_reports", headers=rh, params={"status": "confirmed"}).json()["count"] == 1
    assert s.sql("SELECT category, actor, target FROM federation_audit_log WHERE action = 'abuse_report.update'") \
        == [("admin", root.user_id, rep["id"])]


def test_abuse_report_hourly_cap(server):
    u = User(server, "reporter")

    def report(i):
        return u.post("/abuse_reports", {"reported_aura_id": "@target%d.aura" % i, "report_type": "spam",
                                         "description": "spam %d" % i})

    with concurrent.futures.ThreadPoolExecutor(6) as ex:
        results = list(ex.map(report, range(24)))
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 20 + [429] * 4, codes
    limited = [r for r in results if r.status_code == 429][0]
    assert errcode(limited) == "M_LIMIT_EXCEEDED" and limited.json()["retry_after_ms"] > 0
    assert server.sql("SELECT count(*) FROM abuse_reports") == [(20,)]
    # another reporter is not affected
    v = User(server, "reporter2")
    assert v.post("/abuse_reports", {"reported_aura_id": "@xyz.aura", "report_type": "spam",
                                     "description": "x"}).status_code == 201


def test_abuse_endpoint_rate_limited(make_server):
    s = make_server(limits="rate_per_second = 0.001; rate_burst = 2;")
    u = User(s, "burst")
    body = {"reported_aura_id": "@xyz.aura", "report_type": "spam", "description": "x"}
    codes = [u.post("/abuse_reports", body).status_code for _ in range(4)]
    assert codes[:2] == [201, 201] and 429 in codes[2:], codes
