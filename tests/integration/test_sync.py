"""/sync: initial and incremental, each change exactly once, tokens that
survive a restart, long-poll wake-up and timeout, filters (timeline limit,
lazy_load_members), invite/leave sections, account data, and a matrix-nio
client."""
import asyncio
import threading
import time

from rooms_util import C, User, errcode, park_syncs


def timeline_ids(body, room):
    return [e["event_id"] for e in body["rooms"]["join"].get(room, {}).get("timeline", {}).get("events", [])]


def test_initial_and_incremental_exactly_once(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat", name="n")
    s0 = a.sync()
    assert room in s0["rooms"]["join"]
    types = [e["type"] for e in s0["rooms"]["join"][room]["timeline"]["events"]]
    assert types[0] == "m.room.create" and "m.room.name" in types
    seen = set(timeline_ids(s0, room))
    token = s0["next_batch"]
    sent = []
    assert b.join(room).status_code == 200
    for i in range(5):
        sent.append(a.send_ok(room, "m%d" % i))
        s = a.sync(since=token)
        got = timeline_ids(s, room)
        assert got[-1] == sent[-1]
        assert not (set(got) & seen), "an event was reported twice"
        seen |= set(got)
        token = s["next_batch"]
    s = a.sync(since=token)
    assert room not in s["rooms"]["join"]
    # topic change shows once, in the timeline, with prev_content for the second
    a.put("/rooms/%s/state/m.room.topic" % room, {"topic": "one"})
    a.put("/rooms/%s/state/m.room.topic" % room, {"topic": "two"})
    s = a.sync(since=token)
    evs = s["rooms"]["join"][room]["timeline"]["events"]
    assert [e["content"]["topic"] for e in evs] == ["one", "two"]
    assert evs[1]["unsigned"]["prev_content"] == {"topic": "one"}


def test_transaction_id_and_limited_timeline(server):
    a = User(server)
    room = a.create_room()
    token = a.sync()["next_batch"]
    a.send_ok(room, "x", txn="abc")
    s = a.sync(since=token)
    ev = s["rooms"]["join"][room]["timeline"]["events"][-1]
    assert ev["unsigned"]["transaction_id"] == "abc"
    token = s["next_batch"]
    ids = [a.send_ok(room, "m%d" % i) for i in range(8)]
    f = '{"room":{"timeline":{"limit":3}}}'
    s = a.sync(since=token, filter=f)
    tl = s["rooms"]["join"][room]["timeline"]
    assert tl["limited"] is True
    assert [e["event_id"] for e in tl["events"]] == ids[-3:]
    # prev_batch paginates back into the gap
    r = a.get("/rooms/%s/messages" % room, params={"dir": "b", "from": tl["prev_batch"], "limit": 5}).json()
    assert [e["event_id"] for e in r["chunk"]] == ids[-4::-1][:5]
    # stored filter
    r = a.post("/user/%s/filter" % a.user_id, {"room": {"timeline": {"limit": 2}}})
    fid = r.json()["filter_id"]
    assert a.get("/user/%s/filter/%s" % (a.user_id, fid)).json() == {"room": {"timeline": {"limit": 2}}}
    s = a.sync(filter=fid)
    assert len(s["rooms"]["join"][room]["timeline"]["events"]) == 2
    assert s["rooms"]["join"][room]["timeline"]["limited"] is True


def test_lazy_load_members(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    b.join(room)
    c.join(room)
    for _ in range(12):
        b.send_ok(room, "from b")
    f = '{"room":{"state":{"lazy_load_members":true},"timeline":{"limit":5}}}'
    s = a.sync(filter=f)
    members = {e["state_key"] for e in s["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
    assert b.user_id in members and c.user_id not in members


def test_invite_and_leave_sections(server):
    a, b = User(server), User(server)
    token = b.sync()["next_batch"]
    room = a.create_room(name="secret", invite=[b.user_id])
    s = b.sync(since=token)
    inv = s["rooms"]["invite"][room]["invite_state"]["events"]
    assert {"m.room.name", "m.room.member", "m.room.create"} <= {e["type"] for e in inv}
    token = s["next_batch"]
    b.join(room)
    s = b.sync(since=token)
    assert room in s["rooms"]["join"] and room not in s["rooms"]["invite"]
    token = s["next_batch"]
    a.post("/rooms/%s/kick" % room, {"user_id": b.user_id})
    s = b.sync(since=token)
    assert room in s["rooms"]["leave"]
    assert s["rooms"]["leave"][room]["timeline"]["events"][-1]["content"]["membership"] == "leave"


def test_long_poll_wakes_and_times_out(server):
    a = User(server)
    room = a.create_room()
    token = a.sync()["next_batch"]
    t0 = time.time()
    s = a.sync(since=token, timeout=500)
    dt = time.time() - t0
    assert 0.45 <= dt < 3, dt
    assert s["rooms"]["join"] == {}
    result = {}

    def poll():
        t = time.time()
        result["body"] = a.sync(since=token, timeout=20000)
        result["t"] = time.time()

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    sent_at = time.time()
    eid = a.send_ok(room, "wake up")
    th.join(15)
    assert not th.is_alive()
    assert eid in timeline_ids(result["body"], room)
    assert result["t"] - sent_at < 1.0


def test_wake_latency_figures_for_admins(server):
    """GET /_auralink/admin/v1/sync/wakes: one sample per long-poll answered
    because of a notice (not per timeout), for admins only."""
    a, boss = User(server), User(server)
    server.run_cli("--grant-admin", boss.user_id)
    url = "/_auralink/admin/v1/sync/wakes"
    assert server.get(url, headers=a.h).status_code == 403
    before = server.get(url, headers=boss.h).json()["count"]
    room = a.create_room()
    token = a.sync()["next_batch"]
    a.sync(since=token, timeout=300)  # times out: no sample
    assert server.get(url, headers=boss.h).json()["count"] == before
    for i in range(3):
        result = {}
        th = threading.Thread(target=lambda: result.update(body=a.sync(since=token, timeout=20000)))
        th.start()
        time.sleep(0.3)
        eid = a.send_ok(room, "wake %d" % i)
        th.join(15)
        assert eid in timeline_ids(result["body"], room)
        token = result["body"]["next_batch"]
    w = server.get(url, headers=boss.h).json()
    assert w["count"] == before + 3 and w["samples"] == w["count"]
    assert 0 <= w["p50_ms"] <= w["p99_ms"] <= w["max_ms"] < 15000


def test_long_poll_client_disconnect(server):
    """A client that goes away while parked must not crash or leak."""
    import socket
    a = User(server)
    a.create_room()
    token = a.sync()["next_batch"]
    for _ in range(3):
        sk = socket.create_connection(("127.0.0.1", server.client_port))
        sk.sendall(("GET %s/sync?since=%s&timeout=30000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
                    % (C, token, a.token)).encode())
        time.sleep(0.2)
        sk.close()
    time.sleep(0.3)
    assert server.get("/_matrix/client/versions").status_code == 200


def test_since_token_survives_restart(server):
    a = User(server)
    room = a.create_room()
    token = a.sync()["next_batch"]
    eid = a.send_ok(room, "before restart")
    server.stop()
    server.start()
    s = a.sync(since=token)
    assert timeline_ids(s, room) == [eid]


def test_account_data(server):
    a = User(server)
    room = a.create_room()
    token = a.sync()["next_batch"]
    assert a.put("/user/%s/account_data/org.example.x" % a.user_id, {"k": 1}).status_code == 200
    assert a.put("/user/%s/rooms/%s/account_data/org.example.y" % (a.user_id, room), {"k": 2}).status_code == 200
    assert a.get("/user/%s/account_data/org.example.x" % a.user_id).json() == {"k": 1}
    s = a.sync(since=token)
    assert s["account_data"]["events"] == [{"type": "org.example.x", "content": {"k": 1}}]
    assert s["rooms"]["join"][room]["account_data"]["events"] == [{"type": "org.example.y", "content": {"k": 2}}]


def test_matrix_nio_client(server):
    from nio import AsyncClient, RoomMessageText, RoomCreateResponse, JoinResponse, SyncResponse

    alice, bob = User(server), User(server)

    async def run():
        ca = AsyncClient(server.base, alice.user_id)
        ca.access_token, ca.user_id, ca.device_id = alice.token, alice.user_id, alice.device_id
        cb = AsyncClient(server.base, bob.user_id)
        cb.access_token, cb.user_id, cb.device_id = bob.token, bob.user_id, bob.device_id
        try:
            r = await ca.room_create(name="nio", invite=[bob.user_id])
            assert isinstance(r, RoomCreateResponse), r
            room = r.room_id
            s = await cb.sync(timeout=0)
            assert isinstance(s, SyncResponse), s
            assert room in s.rooms.invite
            assert isinstance(await cb.join(room), JoinResponse)
            await ca.room_send(room, "m.room.message", {"msgtype": "m.text", "body": "hi bob"})
            s = await cb.sync(timeout=3000, since=s.next_batch)
            texts = [e.body for e in s.rooms.join[room].timeline.events if isinstance(e, RoomMessageText)]
            assert texts == ["hi bob"]
        finally:
            await ca.close()
            await cb.close()

    asyncio.run(run())


# ---- ephemeral: typing, receipts; to-device ----

def ephemeral(body, room, type_):
    evs = body["rooms"]["join"].get(room, {}).get("ephemeral", {}).get("events", [])
    found = [e for e in evs if e["type"] == type_]
    assert len(found) <= 1
    return found[0]["content"] if found else None


def parked_sync(user, token, action, timeout_ms=20000):
    """Park a long-poll sync, run action() while it waits; returns the body
    and how long after the action it came back."""
    result = {}

    def poll():
        result["body"] = user.sync(since=token, timeout=timeout_ms)
        result["t"] = time.time()

    th = threading.Thread(target=poll)
    th.start()
    time.sleep(0.5)
    assert "body" not in result, "the sync did not park"
    t0 = time.time()
    action()
    th.join(15)
    assert not th.is_alive()
    return result["body"], result["t"] - t0


def test_typing(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    token = a.sync()["next_batch"]
    path = "/rooms/%s/typing/%s" % (room, b.user_id)
    assert b.put(path, {"typing": True, "timeout": 30000}).status_code == 200
    s = a.sync(since=token)
    assert ephemeral(s, room, "m.typing") == {"user_ids": [b.user_id]}
    token = s["next_batch"]
    # unchanged: not repeated, even when the room has new events
    assert b.put(path, {"typing": True, "timeout": 30000}).status_code == 200
    s = a.sync(since=token)
    assert room not in s["rooms"]["join"]
    a.send_ok(room, "hello")
    s = a.sync(since=token)
    assert ephemeral(s, room, "m.typing") is None
    token = s["next_batch"]
    # a second typist, then b stops
    assert a.put("/rooms/%s/typing/%s" % (room, a.user_id), {"typing": True, "timeout": 30000}).status_code == 200
    s = a.sync(since=token)
    assert sorted(ephemeral(s, room, "m.typing")["user_ids"]) == sorted([a.user_id, b.user_id])
    token = s["next_batch"]
    assert b.put(path, {"typing": False}).status_code == 200
    s = a.sync(since=token)
    assert ephemeral(s, room, "m.typing") == {"user_ids": [a.user_id]}
    token = s["next_batch"]
    # an initial sync shows who types now
    assert ephemeral(b.sync(), room, "m.typing") == {"user_ids": [a.user_id]}
    # refusals: for someone else, not joined, bad bodies
    r = a.put(path, {"typing": True, "timeout": 1000})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    r = c.put("/rooms/%s/typing/%s" % (room, c.user_id), {"typing": True, "timeout": 1000})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    assert b.put(path, {"timeout": 1000}).status_code == 400
    assert b.put(path, {"typing": "yes"}).status_code == 400
    assert b.put(path, {"typing": True, "timeout": -5}).status_code == 400
    s = a.sync(since=token)
    assert room not in s["rooms"]["join"]
    # the ephemeral filter can leave typing out
    f = '{"room":{"ephemeral":{"not_types":["m.typing"]}}}'
    assert ephemeral(a.sync(filter=f), room, "m.typing") is None


def test_typing_expires_and_wakes_long_poll(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    token = a.sync()["next_batch"]
    path = "/rooms/%s/typing/%s" % (room, b.user_id)
    body, dt = parked_sync(a, token, lambda: b.put(path, {"typing": True, "timeout": 1500}))
    assert dt < 1.0, dt
    assert ephemeral(body, room, "m.typing") == {"user_ids": [b.user_id]}
    token = body["next_batch"]
    # the timeout passes: the parked sync wakes again with nobody typing
    t0 = time.time()
    body = a.sync(since=token, timeout=20000)
    assert ephemeral(body, room, "m.typing") == {"user_ids": []}
    assert time.time() - t0 < 5
    # leaving stops typing
    token = body["next_batch"]
    assert b.put(path, {"typing": True, "timeout": 30000}).status_code == 200
    token = a.sync(since=token)["next_batch"]
    assert b.post("/rooms/%s/leave" % room).status_code == 200
    s = a.sync(since=token)
    assert ephemeral(s, room, "m.typing") == {"user_ids": []}


def test_typing_after_restart(server):
    """A token from before a restart gets the (now empty) typing set once."""
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    assert b.put("/rooms/%s/typing/%s" % (room, b.user_id), {"typing": True, "timeout": 60000}).status_code == 200
    s = a.sync()
    assert ephemeral(s, room, "m.typing") == {"user_ids": [b.user_id]}
    token = s["next_batch"]
    server.stop()
    server.start()
    s = a.sync(since=token)
    assert ephemeral(s, room, "m.typing") == {"user_ids": []}
    s = a.sync(since=s["next_batch"])
    assert room not in s["rooms"]["join"]


def test_receipts(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    e1 = a.send_ok(room, "one")
    e2 = a.send_ok(room, "two")
    token_a = a.sync()["next_batch"]
    token_b = b.sync()["next_batch"]
    assert b.post("/rooms/%s/receipt/m.read/%s" % (room, e2), {}).status_code == 200
    s = a.sync(since=token_a)
    rc = ephemeral(s, room, "m.receipt")
    assert list(rc) == [e2] and list(rc[e2]["m.read"]) == [b.user_id]
    assert isinstance(rc[e2]["m.read"][b.user_id]["ts"], int)
    token_a = s["next_batch"]
    # nothing new: not repeated; an older event does not move the receipt back
    assert room not in a.sync(since=token_a)["rooms"]["join"]
    assert b.post("/rooms/%s/receipt/m.read/%s" % (room, e1), {}).status_code == 200
    assert room not in a.sync(since=token_a)["rooms"]["join"]
    # private receipts: only for their owner
    assert b.post("/rooms/%s/receipt/m.read.private/%s" % (room, e1)).status_code == 200
    assert room not in a.sync(since=token_a)["rooms"]["join"]
    s = b.sync(since=token_b)
    rc = ephemeral(s, room, "m.receipt")
    assert rc[e1]["m.read.private"] == {b.user_id: {"ts": rc[e1]["m.read.private"][b.user_id]["ts"]}}
    assert b.user_id in rc[e2]["m.read"]
    # a threaded receipt carries its thread
    assert a.post("/rooms/%s/receipt/m.read/%s" % (room, e2), {"thread_id": "main"}).status_code == 200
    s = b.sync(since=s["next_batch"])
    assert ephemeral(s, room, "m.receipt")[e2]["m.read"][a.user_id]["thread_id"] == "main"
    # an initial sync has every receipt of the room
    rc = ephemeral(c.sync(), room, "m.receipt") if c.join(room).status_code == 200 else None
    assert set(rc[e2]["m.read"]) == {a.user_id, b.user_id} and "m.read.private" not in rc.get(e1, {})
    # refusals
    r = b.post("/rooms/%s/receipt/m.read/$nope" % room, {})
    assert r.status_code == 404
    r = b.post("/rooms/%s/receipt/m.unknown/%s" % (room, e1), {})
    assert r.status_code == 400
    r = b.post("/rooms/%s/receipt/m.fully_read/%s" % (room, e1), {"thread_id": "main"})
    assert r.status_code == 400
    r = b.post("/rooms/%s/receipt/m.read/%s" % (room, e1), {"thread_id": "not-an-event"})
    assert r.status_code == 400
    r = b.post("/rooms/%s/receipt/m.read/%s" % (room, e1), {"thread_id": 5})
    assert r.status_code == 400
    outsider = User(server)
    r = outsider.post("/rooms/%s/receipt/m.read/%s" % (room, e1), {})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    # m.fully_read through /receipt is room account data
    assert b.post("/rooms/%s/receipt/m.fully_read/%s" % (room, e1), {}).status_code == 200
    r = b.get("/user/%s/rooms/%s/account_data/m.fully_read" % (b.user_id, room))
    assert r.json() == {"event_id": e1}


def test_read_markers(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    e1 = a.send_ok(room, "one")
    e2 = a.send_ok(room, "two")
    token_a = a.sync()["next_batch"]
    token_b = b.sync()["next_batch"]
    r = b.post("/rooms/%s/read_markers" % room, {"m.fully_read": e1, "m.read": e2, "m.read.private": e2})
    assert r.status_code == 200, r.text
    s = b.sync(since=token_b)
    j = s["rooms"]["join"][room]
    assert j["account_data"]["events"] == [{"type": "m.fully_read", "content": {"event_id": e1}}]
    rc = ephemeral(s, room, "m.receipt")
    assert set(rc[e2]) == {"m.read", "m.read.private"}
    rc = ephemeral(a.sync(since=token_a), room, "m.receipt")
    assert set(rc[e2]) == {"m.read"}
    # a bad event ID changes nothing
    r = b.post("/rooms/%s/read_markers" % room, {"m.fully_read": e2, "m.read": "$missing"})
    assert r.status_code == 404
    assert b.get("/user/%s/rooms/%s/account_data/m.fully_read" % (b.user_id, room)).json() == {"event_id": e1}
    assert b.post("/rooms/%s/read_markers" % room, {"m.read": 5}).status_code == 400


def test_receipt_wakes_long_poll(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    e1 = a.send_ok(room, "one")
    token = a.sync()["next_batch"]
    body, dt = parked_sync(a, token, lambda: b.post("/rooms/%s/receipt/m.read/%s" % (room, e1), {}))
    assert dt < 1.0, dt
    assert b.user_id in ephemeral(body, room, "m.receipt")[e1]["m.read"]


def to_device(body):
    return body["to_device"]["events"]


def test_to_device_exactly_once(server):
    a, b = User(server), User(server)
    b2 = b.new_device()
    tb, tb2 = b.sync()["next_batch"], b2.sync()["next_batch"]
    msg = {"messages": {b.user_id: {b.device_id: {"n": 1}}}}
    assert a.put("/sendToDevice/org.example.ping/t1", msg).status_code == 200
    # the same txnId again is the same request
    assert a.put("/sendToDevice/org.example.ping/t1", msg).status_code == 200
    s = b.sync(since=tb)
    assert to_device(s) == [{"sender": a.user_id, "type": "org.example.ping", "content": {"n": 1}}]
    assert to_device(b2.sync(since=tb2)) == []
    # syncing again with the old token (the reply was lost) delivers again
    assert to_device(b.sync(since=tb)) == to_device(s)
    # the next token acknowledges: gone for good
    s2 = b.sync(since=s["next_batch"])
    assert to_device(s2) == []
    assert to_device(b.sync(since=tb)) == []
    assert server.sql("SELECT count(*) FROM device_inbox WHERE user_id = %s", b.user_id)[0][0] == 0
    # "*" reaches every device; remote users are skipped
    msg = {"messages": {b.user_id: {"*": {"n": 2}}, "@someone:remote.example": {"X": {"n": 3}}}}
    assert a.put("/sendToDevice/org.example.ping/t2", msg).status_code == 200
    assert [e["content"] for e in to_device(b.sync(since=s2["next_batch"]))] == [{"n": 2}]
    assert [e["content"] for e in to_device(b2.sync(since=tb2))] == [{"n": 2}]
    assert server.sql("SELECT count(*) FROM device_inbox WHERE user_id <> %s", b.user_id)[0][0] == 0
    # the txnId belongs to the sending device
    a2 = a.new_device()
    assert a2.put("/sendToDevice/org.example.ping/t1", {"messages": {b.user_id: {b2.device_id: {"n": 4}}}}).status_code == 200
    assert [e["content"] for e in to_device(b2.sync(since=tb2))] == [{"n": 2}, {"n": 4}]


def test_to_device_bounds_and_paging(server):
    a, b = User(server), User(server)
    # bounds
    big = {"messages": {"@u%d:%s" % (i, server.server_name): {"D": {}} for i in range(1001)}}
    r = a.put("/sendToDevice/m.x/big", big)
    assert r.status_code == 400
    assert a.put("/sendToDevice/m.x/bad1", {"messages": {b.user_id: {b.device_id: "str"}}}).status_code == 400
    assert a.put("/sendToDevice/m.x/bad2", {"messages": {"nobody": {"D": {}}}}).status_code == 400
    assert a.put("/sendToDevice/m.x/bad3", {}).status_code == 400
    assert server.sql("SELECT count(*) FROM device_inbox")[0][0] == 0
    # more than one response holds: paged, each message once
    token = b.sync()["next_batch"]
    for i in range(130):
        r = a.put("/sendToDevice/m.x/p%d" % i, {"messages": {b.user_id: {b.device_id: {"i": i}}}})
        assert r.status_code == 200
    got = []
    for _ in range(4):
        s = b.sync(since=token)
        got += [e["content"]["i"] for e in to_device(s)]
        token = s["next_batch"]
    assert got == list(range(130))


def test_to_device_wakes_long_poll(server):
    a, b = User(server), User(server)
    token = b.sync()["next_batch"]
    msg = {"messages": {b.user_id: {b.device_id: {"wake": True}}}}
    body, dt = parked_sync(b, token, lambda: a.put("/sendToDevice/org.example.wake/w1", msg))
    assert dt < 1.0, dt
    assert [e["content"] for e in to_device(body)] == [{"wake": True}]
    # acknowledged by the next sync; a parked one then times out empty
    s = b.sync(since=body["next_batch"], timeout=300)
    assert to_device(s) == []


def test_to_device_concurrent_identical_puts_and_bodyless_receipt(server):
    import concurrent.futures
    import requests
    a, b = User(server), User(server)
    token = b.sync()["next_batch"]
    msg = {"messages": {b.user_id: {b.device_id: {"once": True}}}}
    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        rs = list(ex.map(lambda _: a.put("/sendToDevice/org.example.race/same", msg), range(8)))
    assert [r.status_code for r in rs] == [200] * 8, [r.text for r in rs]
    assert [e["content"] for e in to_device(b.sync(since=token))] == [{"once": True}]
    # POST /receipt without any body
    room = a.create_room()
    e1 = a.send_ok(room, "x")
    r = requests.post(server.base + C + "/rooms/%s/receipt/m.read/%s" % (room, e1), headers=a.h, timeout=10)
    assert r.status_code == 200, r.text


def test_incremental_reports_only_changed_rooms(server):
    """An incremental sync finds the rooms with something new from the
    changes since its token: a message, a receipt, room account data,
    typing, a membership change (joined, left, invited) each bring their
    room, and the quiet rooms stay out."""
    a, b = User(server), User(server)
    rooms = [a.create_room(preset="public_chat") for _ in range(8)]
    for r in rooms[:6]:
        assert b.join(r).status_code == 200
    ev = a.send_ok(rooms[1], "for the receipt")
    token = a.sync()["next_batch"]
    assert a.sync(since=token)["rooms"] == {"join": {}, "invite": {}, "leave": {}}
    msg = b.send_ok(rooms[0], "new")
    assert b.post("/rooms/%s/receipt/m.read/%s" % (rooms[1], ev), {}).status_code == 200
    assert a.put("/user/%s/rooms/%s/account_data/org.example" % (a.user_id, rooms[2]),
                 {"x": 1}).status_code == 200
    assert b.put("/rooms/%s/typing/%s" % (rooms[3], b.user_id), {"typing": True, "timeout": 30000}).status_code == 200
    assert a.post("/rooms/%s/leave" % rooms[4]).status_code == 200
    other = b.create_room()
    assert b.post("/rooms/%s/invite" % other, {"user_id": a.user_id}).status_code == 200
    s = a.sync(since=token)
    assert sorted(s["rooms"]["join"]) == sorted(rooms[:4])
    assert timeline_ids(s, rooms[0]) == [msg]
    assert ephemeral(s, rooms[1], "m.receipt") is not None
    assert [e["type"] for e in s["rooms"]["join"][rooms[2]]["account_data"]["events"]] == ["org.example"]
    assert ephemeral(s, rooms[3], "m.typing") == {"user_ids": [b.user_id]}
    assert list(s["rooms"]["leave"]) == [rooms[4]]
    assert list(s["rooms"]["invite"]) == [other]
    # joining brings the room with its full state; then all is quiet
    assert a.join(other).status_code == 200
    s2 = a.sync(since=s["next_batch"])
    assert list(s2["rooms"]["join"]) == [other]
    j = s2["rooms"]["join"][other]
    assert {e["type"] for e in j["state"]["events"] + j["timeline"]["events"]} >= {"m.room.create", "m.room.member"}
    assert a.sync(since=s2["next_batch"])["rooms"] == {"join": {}, "invite": {}, "leave": {}}


def test_long_poll_wake_is_per_user(server):
    """A new event wakes the parked syncs of the room's members only: an
    unrelated user's sync stays parked until its own timeout; an invite
    wakes the invitee (a room she was not in when she parked)."""
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    c.create_room()
    ta, tc = a.sync()["next_batch"], c.sync()["next_batch"]
    results, order, ev = park_syncs([("c", c, tc, 4000), ("a", a, ta, 20000)], lambda: b.send_ok(room, "for a"))
    assert ev in timeline_ids(results["a"], room)
    assert order == ["a", "c"]
    assert results["c"]["rooms"]["join"] == {} and results["c"]["rooms"]["invite"] == {}
    # an invite to a room she is not in wakes her
    body, _ = parked_sync(c, results["c"]["next_batch"],
                          lambda: a.post("/rooms/%s/invite" % room, {"user_id": c.user_id}))
    assert room in body["rooms"]["invite"]
    # and once she joined, the room's events wake her too
    assert c.join(room).status_code == 200
    tok = c.sync(since=body["next_batch"])["next_batch"]
    body, _ = parked_sync(c, tok, lambda: b.send_ok(room, "for c"))
    assert "for c" in [e["content"].get("body") for e in body["rooms"]["join"][room]["timeline"]["events"]]


def test_long_poll_woken_by_another_process(make_server):
    """Two auralinkd processes on one database: an event committed by one
    wakes a sync parked on the other (LISTEN/NOTIFY), and only the parked
    syncs of the room's members."""
    import os
    import shutil

    from conftest import admin_sql

    one = make_server()
    two = make_server(start=False, server_name=one.server_name)
    admin_sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % two.dbname)
    two.dbname = one.dbname
    shutil.copy(os.path.join(one.dir, "signing.key"), os.path.join(two.dir, "signing.key"))
    two.write_config(True, "")
    two.start()
    a, b, c = User(one), User(one), User(one)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    b.s, c.s = two, two  # b and c sync on the other process
    tb, tc = b.sync()["next_batch"], c.sync()["next_batch"]
    results, order, ev = park_syncs([("c", c, tc, 4000), ("b", b, tb, 20000)],
                                    lambda: a.send_ok(room, "from the other process"))
    assert ev in timeline_ids(results["b"], room)
    assert order == ["b", "c"]
    assert results["c"]["rooms"]["join"] == {}
