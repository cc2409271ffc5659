"""/sync: initial and incremental, each change exactly once, tokens that
survive a restart, long-poll wake-up and timeout, filters (timeline limit,
lazy_load_members), invite/leave sections, account data, and a matrix-nio
client."""
import asyncio
import threading
import time

from rooms_util import C, User


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
