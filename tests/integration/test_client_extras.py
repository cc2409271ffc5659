"""Client API behaviour SyTest checks: filter validation, /messages from a
sync prev_batch, idempotent state and membership, ban/kick/redact checks,
archived rooms in sync, presence, the public room directory, pushers and
user-interactive auth sessions."""
import uuid
from urllib.parse import quote

from rooms_util import C, User, errcode


def test_filter_rooms_and_senders_must_be_ids(server):
    a = User(server)
    url = "/user/%s/filter" % a.user_id
    bad = [
        {"room": {"timeline": {"rooms": ["not_a_room_id"]}}},
        {"room": {"timeline": {"not_rooms": ["#alias:x"]}}},
        {"room": {"timeline": {"senders": ["not_a_sender_id"]}}},
        {"room": {"state": {"not_senders": ["@nocolon"]}}},
        {"room": {"rooms": ["room"]}},
        {"room": {"not_rooms": ["@u:x"]}},
        {"presence": {"senders": ["!r:x"]}},
    ]
    for f in bad:
        r = a.post(url, f)
        assert r.status_code == 400, (f, r.text)
        assert errcode(r) == "M_BAD_JSON"
    good = {"room": {"rooms": ["!r:x"], "timeline": {"senders": ["@u:x"], "not_rooms": ["!s:y"]}}}
    r = a.post(url, good)
    assert r.status_code == 200, r.text


def test_messages_from_untrimmed_sync_prev_batch(server):
    a = User(server)
    room = a.create_room()
    ev = a.send_ok(room, "hello")
    tl = a.sync()["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is False
    r = a.get("/rooms/%s/messages" % room, params={"dir": "b", "from": tl["prev_batch"]})
    assert r.status_code == 200, r.text
    b = r.json()
    assert "end" in b and b["chunk"], b
    assert b["chunk"][0]["event_id"] == ev
    r = a.get("/rooms/%s/messages" % room, params={"dir": "b", "from": b["end"]})
    assert r.status_code == 200 and r.json()["chunk"] == [] and "end" not in r.json()
    # a trimmed timeline's prev_batch continues just before its first event
    tl = a.sync(filter='{"room":{"timeline":{"limit":1}}}')["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is True and [e["event_id"] for e in tl["events"]] == [ev]
    r = a.get("/rooms/%s/messages" % room, params={"dir": "b", "from": tl["prev_batch"], "limit": "1"})
    assert r.json()["chunk"][0]["event_id"] != ev


def test_same_state_twice_and_join_twice_are_idempotent(server):
    a = User(server)
    room = a.create_room()
    r1 = a.put("/rooms/%s/state/a.test.state/" % room, {"k": "v"})
    r2 = a.put("/rooms/%s/state/a.test.state/" % room, {"k": "v"})
    assert r1.status_code == 200 and r2.status_code == 200
    assert r1.json()["event_id"] == r2.json()["event_id"]
    r3 = a.put("/rooms/%s/state/a.test.state/" % room, {"k": "w"})
    assert r3.json()["event_id"] != r1.json()["event_id"]
    member = a.get("/rooms/%s/state/m.room.member/%s?format=event" % (room, a.user_id)).json()["event_id"]
    assert a.join(room).status_code == 200
    again = a.get("/rooms/%s/state/m.room.member/%s?format=event" % (room, a.user_id)).json()["event_id"]
    assert again == member


def test_kick_needs_a_member_and_banned_user_stays_out(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    # nobody of that name is in the room
    r = a.post("/rooms/%s/kick" % room, {"user_id": "@bob:example.com"})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    assert b.join(room).status_code == 200
    assert a.post("/rooms/%s/kick" % room, {"user_id": b.user_id}).status_code == 200
    r = a.post("/rooms/%s/kick" % room, {"user_id": b.user_id})
    assert r.status_code == 403, r.text
    assert c.join(room).status_code == 200
    assert a.post("/rooms/%s/ban" % room, {"user_id": c.user_id}).status_code == 200
    assert c.join(room).status_code == 403
    assert a.post("/rooms/%s/invite" % room, {"user_id": c.user_id}).status_code == 403
    r = a.post("/rooms/%s/kick" % room, {"user_id": c.user_id})
    assert r.status_code == 403, r.text
    st = a.get("/rooms/%s/state/m.room.member/%s" % (room, c.user_id)).json()
    assert st["membership"] == "ban"
    assert a.post("/rooms/%s/unban" % room, {"user_id": c.user_id}).status_code == 200
    assert c.join(room).status_code == 200


def test_redact_event_of_another_room_is_400(server):
    a, b = User(server), User(server)
    room1, room2 = a.create_room(), b.create_room()
    ev = a.send_ok(room1, "x")
    r = b.put("/rooms/%s/redact/%s/%s" % (room2, ev, uuid.uuid4().hex), {})
    assert r.status_code == 400, r.text
    r = a.put("/rooms/%s/redact/%s/%s" % (room1, ev, uuid.uuid4().hex), {})
    assert r.status_code == 200, r.text


def test_include_leave_lists_left_and_banned_rooms(server):
    a, b = User(server), User(server)
    left = b.create_room()
    assert b.post("/rooms/%s/leave" % left).status_code == 200
    banned = a.create_room(preset="public_chat")
    assert b.join(banned).status_code == 200
    assert a.post("/rooms/%s/ban" % banned, {"user_id": b.user_id}).status_code == 200
    s = b.sync()
    assert left not in s["rooms"]["leave"] and banned not in s["rooms"]["leave"]
    s = b.sync(filter='{"room":{"include_leave":true}}')
    for room in (left, banned):
        entry = s["rooms"]["leave"][room]
        assert "timeline" in entry and "state" in entry
    tl = [e.get("content", {}).get("membership") for e in s["rooms"]["leave"][banned]["timeline"]["events"]]
    assert tl[-1] == "ban"
    assert left not in s["rooms"]["join"] and banned not in s["rooms"]["join"]


def test_presence_status(server):
    a, b, c = User(server), User(server), User(server)
    url = "/presence/%s/status"
    r = a.get(url % a.user_id)
    assert r.status_code == 200 and r.json()["presence"] == "offline", r.text
    r = a.put(url % a.user_id, {"presence": "online", "status_msg": "busy coding"})
    assert r.status_code == 200, r.text
    body = a.get(url % a.user_id).json()
    assert body["presence"] == "online" and body["status_msg"] == "busy coding"
    assert body["currently_active"] is True and 0 <= body["last_active_ago"] < 60000
    # only one's own presence is writable; bad values are refused
    assert a.put(url % b.user_id, {"presence": "online"}).status_code == 403
    r = a.put(url % a.user_id, {"presence": "sleeping"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = a.put(url % a.user_id, {"presence": "online", "status_msg": "x" * 2000})
    assert r.status_code == 400
    r = a.put(url % a.user_id, {"status_msg": "no state"})
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"
    # strangers may not look; room-mates may
    assert b.get(url % a.user_id).status_code == 403
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    assert b.get(url % a.user_id).json()["status_msg"] == "busy coding"
    assert c.get(url % a.user_id).status_code == 403
    # /sync reports changes as m.presence events; set_presence=offline leaves it alone
    s = b.sync(set_presence="offline")
    ev = [e for e in s["presence"]["events"] if e["sender"] == a.user_id]
    assert ev and ev[0]["type"] == "m.presence" and ev[0]["content"]["presence"] == "online"
    assert not [e for e in s["presence"]["events"] if e["sender"] == b.user_id]
    token = s["next_batch"]
    assert a.put(url % a.user_id, {"presence": "unavailable"}).status_code == 200
    s = b.sync(since=token, set_presence="offline")
    ev = [e for e in s["presence"]["events"] if e["sender"] == a.user_id]
    assert ev[-1]["content"]["presence"] == "unavailable" and "status_msg" not in ev[-1]["content"]
    # a plain sync marks the syncing user online
    b.sync()
    assert b.get(url % b.user_id).json()["presence"] == "online"
    s = b.sync(filter='{"presence":{"not_types":["m.presence"]}}')
    assert s["presence"]["events"] == []


def test_presence_of_new_room_mates_in_incremental_sync(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    a.sync()  # a is online now
    token = b.sync()["next_batch"]  # b too, before sharing a room
    assert b.join(room).status_code == 200
    s = b.sync(since=token)
    assert [e["sender"] for e in s["presence"]["events"] if e["sender"] != b.user_id] == [a.user_id]
    s = b.sync(since=s["next_batch"])
    assert s["presence"]["events"] == []


def test_public_room_directory(server):
    a, b = User(server), User(server)
    pub = a.create_room(visibility="public", name="Wombles den", topic="all about wombles",
                        room_alias_name="den" + uuid.uuid4().hex[:6])
    priv = a.create_room(name="secret wombles")
    assert b.join(pub).status_code == 200
    others = [a.create_room(visibility="public") for _ in range(4)]
    # GET needs no access token
    r = server.get(C + "/publicRooms")
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [x["room_id"] for x in body["chunk"]]
    assert pub in ids and priv not in ids and set(others) <= set(ids)
    assert ids[0] == pub  # most members first
    entry = body["chunk"][0]
    assert entry["name"] == "Wombles den" and entry["topic"] == "all about wombles"
    assert entry["num_joined_members"] == 2 and entry["canonical_alias"].startswith("#den")
    assert entry["world_readable"] is False and entry["guest_can_join"] is False
    assert body["total_room_count_estimate"] == 5
    # search (case-insensitive), pagination both ways
    r = a.post("/publicRooms", {"filter": {"generic_search_term": "WOMBLES"}})
    assert [x["room_id"] for x in r.json()["chunk"]] == [pub]
    seen, since = [], None
    while True:
        page = a.post("/publicRooms", {"limit": 2, "since": since} if since else {"limit": 2}).json()
        assert len(page["chunk"]) <= 2
        seen += [x["room_id"] for x in page["chunk"]]
        if "next_batch" not in page:
            break
        since = page["next_batch"]
    assert sorted(seen) == sorted(ids)
    back = a.post("/publicRooms", {"limit": 2, "since": page["prev_batch"]}).json()
    assert [x["room_id"] for x in back["chunk"]] == ids[2:4]
    assert a.post("/publicRooms", {"since": "nonsense"}).status_code == 400
    assert server.post(C + "/publicRooms", json={}).status_code == 401
    # visibility: read by anyone, changed by a member with the power to
    r = server.get(C + "/directory/list/room/%s" % priv)
    assert r.json() == {"visibility": "private"}
    assert b.put("/directory/list/room/%s" % pub, {"visibility": "private"}).status_code == 403
    assert a.put("/directory/list/room/%s" % priv, {"visibility": "public"}).status_code == 200
    assert server.get(C + "/directory/list/room/%s" % priv).json() == {"visibility": "public"}
    assert priv in [x["room_id"] for x in server.get(C + "/publicRooms").json()["chunk"]]
    assert a.put("/directory/list/room/%s" % priv, {"visibility": "hidden"}).status_code == 400
    assert server.get(C + "/directory/list/room/!nope:x").status_code == 404


def test_guest_joins_only_guest_access_rooms(make_server):
    s = make_server(allow_guests=True)
    a = User(s)
    room = a.create_room(preset="public_chat")
    r = s.post(C + "/register?kind=guest", json={})
    assert r.status_code == 200, r.text
    h = {"Authorization": "Bearer " + r.json()["access_token"]}
    r = s.post(C + "/join/%s" % room, headers=h, json={})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", r.text
    assert a.put("/rooms/%s/state/m.room.guest_access/" % room, {"guest_access": "can_join"}).status_code == 200
    r = s.post(C + "/join/%s" % room, headers=h, json={})
    assert r.status_code == 200, r.text


def pusher(**kw):
    body = {"profile_tag": "tag", "kind": "http", "app_id": "sytest", "app_display_name": "SyTest",
            "device_display_name": "phone", "pushkey": "key-1", "lang": "en",
            "data": {"url": "https://push.example/_matrix/push/v1/notify", "format": "event_id_only"}}
    body.update(kw)
    return body


def test_pushers_set_list_delete(server):
    a, b = User(server), User(server)
    assert a.get("/pushers").json() == {"pushers": []}
    assert a.post("/pushers/set", pusher()).status_code == 200
    got = a.get("/pushers").json()["pushers"]
    assert len(got) == 1 and got[0]["pushkey"] == "key-1" and got[0]["data"]["format"] == "event_id_only"
    assert got[0]["profile_tag"] == "tag" and got[0]["kind"] == "http"
    # same (app_id, pushkey) replaces; another pushkey adds
    assert a.post("/pushers/set", pusher(lang="de")).status_code == 200
    assert a.post("/pushers/set", pusher(pushkey="key-2")).status_code == 200
    got = a.get("/pushers").json()["pushers"]
    assert sorted((p["pushkey"], p["lang"]) for p in got) == [("key-1", "de"), ("key-2", "en")]
    # validation
    r = a.post("/pushers/set", pusher(data={"url": "https://push.example/elsewhere"}))
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = a.post("/pushers/set", {"pushkey": "k", "app_id": "x", "kind": "http"})
    assert r.status_code == 400 and errcode(r) == "M_MISSING_PARAM"
    # without append, another user taking the pushkey removes a's pusher
    assert b.post("/pushers/set", pusher(pushkey="key-2")).status_code == 200
    assert [p["pushkey"] for p in a.get("/pushers").json()["pushers"]] == ["key-1"]
    assert b.post("/pushers/set", pusher(append=True)).status_code == 200
    assert [p["pushkey"] for p in a.get("/pushers").json()["pushers"]] == ["key-1"]
    # kind null deletes
    assert a.post("/pushers/set", {"pushkey": "key-1", "app_id": "sytest", "kind": None}).status_code == 200
    assert a.get("/pushers").json() == {"pushers": []}


def test_pushers_go_with_their_device(server):
    a = User(server)
    other = a.new_device()
    assert a.post("/pushers/set", pusher(pushkey="mine")).status_code == 200
    assert other.post("/pushers/set", pusher(pushkey="theirs")).status_code == 200
    r = a.post("/account/password", {"new_password": "pw2-" + a.name,
                                      "auth": {"type": "m.login.password", "password": "pw-" + a.name,
                                               "identifier": {"type": "m.id.user", "user": a.name}}})
    assert r.status_code == 200, r.text
    assert [p["pushkey"] for p in a.get("/pushers").json()["pushers"]] == ["mine"]


def test_ui_auth_session_is_bound_to_its_operation(server):
    a = User(server)
    d1, d2 = a.new_device(), a.new_device()
    auth = {"type": "m.login.password", "password": "pw-" + a.name,
            "identifier": {"type": "m.id.user", "user": a.user_id}}
    r = a.delete("/devices/%s" % d1.device_id, json={})
    assert r.status_code == 401 and r.json()["session"]
    session = r.json()["session"]
    r = a.delete("/devices/%s" % d2.device_id, json={"auth": dict(auth, session=session)})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", r.text
    assert a.get("/devices/%s" % d2.device_id).status_code == 200
    # a wrong password answers in the same session
    r = a.delete("/devices/%s" % d1.device_id, json={"auth": dict(auth, session=session, password="nope")})
    assert r.status_code == 401 and r.json()["session"] == session
    r = a.delete("/devices/%s" % d1.device_id, json={"auth": dict(auth, session=session)})
    assert r.status_code == 200, r.text
    assert a.get("/devices/%s" % d1.device_id).status_code == 404


def test_room_summary_with_lazy_loading(server):
    users = [User(server) for _ in range(7)]
    a, others = users[0], users[1:]
    room = a.create_room(preset="public_chat")
    for u in others[:2]:
        assert u.join(room).status_code == 200
    ll = '{"room":{"state":{"lazy_load_members":true}}}'
    s = a.sync(filter=ll)["rooms"]["join"][room]["summary"]
    assert s == {"m.joined_member_count": 3, "m.invited_member_count": 0,
                 "m.heroes": sorted(u.user_id for u in others[:2])}
    assert a.sync()["rooms"]["join"][room]["summary"] == {}  # only when lazy-loading, as Synapse
    for u in others[2:]:
        assert u.join(room).status_code == 200
    # invited, never joining (a local user: a remote invite needs her server to sign it)
    ghost = User(server)
    assert a.post("/rooms/%s/invite" % room, {"user_id": ghost.user_id}).status_code == 200
    s = a.sync(filter=ll)["rooms"]["join"][room]["summary"]
    assert s["m.joined_member_count"] == 7 and s["m.invited_member_count"] == 1
    assert s["m.heroes"] == sorted([u.user_id for u in others] + [ghost.user_id])[:5]
    a.put("/rooms/%s/state/m.room.name" % room, {"name": "Named"})
    s = a.sync(filter=ll)["rooms"]["join"][room]["summary"]
    assert s == {"m.joined_member_count": 7, "m.invited_member_count": 1}


def test_canonical_alias_must_point_to_the_room(server):
    a = User(server)
    name = "c" + uuid.uuid4().hex[:8]
    room = a.create_room(room_alias_name=name)
    other = a.create_room(room_alias_name=name + "2")
    domain = a.user_id.split(":", 1)[1]
    alias, other_alias = "#%s:%s" % (name, domain), "#%s2:%s" % (name, domain)
    url = "/rooms/%s/state/m.room.canonical_alias" % room
    assert a.put(url, {"alias": alias, "alt_aliases": [alias]}).status_code == 200
    r = a.put(url, {"alias": "#NOT-%s:%s" % (name, domain)})
    assert r.status_code == 400 and errcode(r) == "M_BAD_ALIAS"
    r = a.put(url, {"alias": alias, "alt_aliases": [other_alias]})
    assert r.status_code == 400 and errcode(r) == "M_BAD_ALIAS"
    r = a.put(url, {"alias": "%" + alias[1:]})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    r = a.put(url, {"alias": alias, "alt_aliases": "nope"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    # a remote alias cannot be checked here and is taken as it is
    assert a.put(url, {"alias": alias, "alt_aliases": ["#x:elsewhere.example"]}).status_code == 200
    # deleting the alias takes it out of the canonical alias event
    assert a.delete("/directory/room/%s" % quote(alias)).status_code == 200
    st = a.get(url).json()
    assert "alias" not in st and st["alt_aliases"] == ["#x:elsewhere.example"]
    assert other


def test_room_tags(server):
    a, b = User(server), User(server)
    room = a.create_room()
    url = "/user/%s/rooms/%s/tags" % (a.user_id, room)
    assert a.get(url).json() == {"tags": {}}
    token = a.sync()["next_batch"]
    assert a.put(url + "/u.work", {"order": 0.5}).status_code == 200
    assert a.put(url + "/m.favourite", {}).status_code == 200
    assert a.get(url).json() == {"tags": {"u.work": {"order": 0.5}, "m.favourite": {}}}
    s = a.sync(since=token)
    ad = s["rooms"]["join"][room]["account_data"]["events"]
    assert [e for e in ad if e["type"] == "m.tag"][-1]["content"]["tags"]["u.work"] == {"order": 0.5}
    assert a.delete(url + "/u.work").status_code == 200
    assert a.get(url).json() == {"tags": {"m.favourite": {}}}
    s = a.sync(since=s["next_batch"])
    ad = s["rooms"]["join"][room]["account_data"]["events"]
    assert [e for e in ad if e["type"] == "m.tag"][-1]["content"] == {"tags": {"m.favourite": {}}}
    r = a.put(url + "/bad", {"order": "first"})
    assert r.status_code == 400 and errcode(r) == "M_INVALID_PARAM"
    assert b.get(url).status_code == 403
    assert b.put(url + "/x", {}).status_code == 403
