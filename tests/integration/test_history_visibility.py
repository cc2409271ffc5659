"""History visibility (client-server spec, "History visibility"): /messages,
/context, /event, /sync timelines and /members show a user only the events
the m.room.history_visibility and her membership at each event allow."""
from rooms_util import User, errcode


def room_with(a, visibility, preset="public_chat"):
    room = a.create_room(preset=preset)
    r = a.put("/rooms/%s/state/m.room.history_visibility" % room, {"history_visibility": visibility})
    assert r.status_code == 200, r.text
    return room


def bodies(events):
    return [e["content"].get("body") for e in events if e["type"] == "m.room.message"]


def messages(u, room, **params):
    p = {"dir": "b", "limit": 50}
    p.update(params)
    r = u.get("/rooms/%s/messages" % room, params=p)
    assert r.status_code == 200, r.text
    return r.json()


def test_joined_hides_earlier_messages(server):
    a, b = User(server), User(server)
    room = room_with(a, "joined")
    early = a.send_ok(room, "before b")
    assert b.join(room).status_code == 200
    a.send_ok(room, "after b")
    assert bodies(messages(b, room)["chunk"]) == ["after b"]
    # a member since the start sees everything
    assert bodies(messages(a, room)["chunk"]) == ["after b", "before b"]
    # her own join is hers to see
    assert any(e["type"] == "m.room.member" and e["state_key"] == b.user_id
               for e in messages(b, room)["chunk"])
    assert b.get("/rooms/%s/event/%s" % (room, early)).status_code == 404
    r = b.get("/rooms/%s/context/%s" % (room, early))
    assert r.status_code == 404
    # the initial sync timeline hides it as well
    tl = b.sync()["rooms"]["join"][room]["timeline"]["events"]
    assert "before b" not in bodies(tl) and "after b" in bodies(tl)


def test_shared_shows_earlier_messages(server):
    a, b = User(server), User(server)
    room = room_with(a, "shared")
    early = a.send_ok(room, "before b")
    assert b.join(room).status_code == 200
    a.send_ok(room, "after b")
    assert bodies(messages(b, room)["chunk"]) == ["after b", "before b"]
    assert b.get("/rooms/%s/event/%s" % (room, early)).status_code == 200
    tl = b.sync()["rooms"]["join"][room]["timeline"]["events"]
    assert "before b" in bodies(tl)
    # an invitee who has not joined sees nothing of shared history
    c = User(server)
    assert a.post("/rooms/%s/invite" % room, {"user_id": c.user_id}).status_code == 200
    assert bodies(messages(c, room)["chunk"]) == []


def test_invited_shows_from_invite(server):
    a, b = User(server), User(server)
    room = room_with(a, "invited", preset="private_chat")
    a.send_ok(room, "before invite")
    assert a.post("/rooms/%s/invite" % room, {"user_id": b.user_id}).status_code == 200
    a.send_ok(room, "while invited")
    assert b.join(room).status_code == 200
    a.send_ok(room, "after join")
    assert bodies(messages(b, room)["chunk"]) == ["after join", "while invited"]
    ids = [e["event_id"] for e in messages(a, room)["chunk"] if e["type"] == "m.room.message"]
    assert b.get("/rooms/%s/event/%s" % (room, ids[-1])).status_code == 404


def test_leave_cuts_off(server):
    a, b = User(server), User(server)
    room = room_with(a, "shared")
    a.send_ok(room, "one")
    assert b.join(room).status_code == 200
    a.send_ok(room, "two")
    assert b.post("/rooms/%s/leave" % room).status_code == 200
    late = a.send_ok(room, "three")
    assert bodies(messages(b, room)["chunk"]) == ["two", "one"]
    assert b.get("/rooms/%s/event/%s" % (room, late)).status_code == 404
    # members as they were when she left: she is still listed as leave, a is joined
    r = b.get("/rooms/%s/members" % room)
    assert r.status_code == 200
    got = {e["state_key"]: e["content"]["membership"] for e in r.json()["chunk"]}
    assert got == {a.user_id: "join", b.user_id: "leave"}
    c = User(server)
    assert c.join(room).status_code == 200
    r = b.get("/rooms/%s/members" % room)
    assert c.user_id not in {e["state_key"] for e in r.json()["chunk"]}


def test_world_readable_non_member(server):
    a, b = User(server), User(server)
    room = room_with(a, "world_readable")
    ev = a.send_ok(room, "public")
    assert bodies(messages(b, room)["chunk"]) == ["public"]
    assert b.get("/rooms/%s/event/%s" % (room, ev)).status_code == 200
    assert b.get("/rooms/%s/context/%s" % (room, ev)).status_code == 200
    assert b.get("/rooms/%s/members" % room).status_code == 200
    # once no longer world readable, a non-member is out
    assert a.put("/rooms/%s/state/m.room.history_visibility" % room,
                 {"history_visibility": "joined"}).status_code == 200
    a.send_ok(room, "private")
    r = b.get("/rooms/%s/messages" % room, params={"dir": "b"})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    # a room that never was world readable stays closed
    other = room_with(a, "shared")
    assert b.get("/rooms/%s/messages" % other).status_code == 403


def test_visibility_change_is_per_event(server):
    a, b = User(server), User(server)
    room = room_with(a, "joined")
    a.send_ok(room, "hidden")
    assert a.put("/rooms/%s/state/m.room.history_visibility" % room,
                 {"history_visibility": "shared"}).status_code == 200
    a.send_ok(room, "shared later")
    assert b.join(room).status_code == 200
    got = messages(b, room)["chunk"]
    assert bodies(got) == ["shared later"]
    # the change to shared is visible under the new setting
    assert any(e["type"] == "m.room.history_visibility" and e["content"]["history_visibility"] == "shared"
               for e in got)


def test_context_state_at_event(server):
    a = User(server)
    room = a.create_room(preset="public_chat", name="old name")
    ids = [a.send_ok(room, "m%d" % i) for i in range(6)]
    assert a.put("/rooms/%s/state/m.room.name" % room, {"name": "new name"}).status_code == 200
    a.send_ok(room, "later")
    ctx = a.get("/rooms/%s/context/%s" % (room, ids[2]), params={"limit": 2}).json()
    assert ctx["event"]["event_id"] == ids[2]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[3]]
    names = [e["content"]["name"] for e in ctx["state"] if e["type"] == "m.room.name"]
    assert names == ["old name"]
    # the tokens continue with /messages
    back = messages(a, room, **{"from": ctx["start"], "limit": 10})
    assert [e["event_id"] for e in back["chunk"] if e["type"] == "m.room.message"] == [ids[0]]
    fwd = messages(a, room, **{"from": ctx["end"], "dir": "f", "limit": 3})
    assert [e["event_id"] for e in fwd["chunk"]][:2] == [ids[4], ids[5]]


def test_current_state_appears_in_sync_timeline(server):
    """A member event sent while she was away is hidden by "joined"
    visibility, but a sync after her return shows it in the timeline all the
    same, because it is part of the room's current state (as Synapse does;
    SyTest 31sync "Current state appears in timeline in private history").
    A message sent while she was away stays hidden."""
    a, b, c = User(server), User(server), User(server)
    room = room_with(a, "joined")
    assert b.join(room).status_code == 200
    assert a.post("/rooms/%s/invite" % room, {"user_id": c.user_id}).status_code == 200
    token = b.sync()["next_batch"]
    assert b.post("/rooms/%s/leave" % room, {}).status_code == 200
    assert c.join(room).status_code == 200
    a.send_ok(room, "while b was away")
    assert b.join(room).status_code == 200
    timeline = b.sync(since=token)["rooms"]["join"][room]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == c.user_id and
               e["content"]["membership"] == "join" for e in timeline), timeline
    assert "while b was away" not in bodies(timeline)
