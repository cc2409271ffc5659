"""Federation interop gaps found by SyTest's tests/50federation (issue 7):
server ACLs on every room endpoint and on /send, EDUs (typing, receipts,
presence) both ways, the public room list over federation, backfill
through /messages, unknown room versions, empty-but-valid E2E answers.
A fake homeserver (fedrooms_util) plays the other side where the test must
see or forge what travels; otherwise two real servers talk."""
import threading
import urllib.parse

import pytest
import requests

from fedrooms_util import FakeServer, Room, event_id, wait_for
from rooms_util import User


def q(s):
    return urllib.parse.quote(s, safe="")


@pytest.fixture
def fake(tmp_path_factory, ca):
    f = FakeServer(tmp_path_factory.mktemp("fake"), ca)
    yield f
    f.close()


def fake_join(a, fake, room_id, local="fred"):
    room = Room(a, room_id)
    uid = fake.user(local)
    join = room.make(fake.name, fake.key, "m.room.member", uid, {"membership": "join"}, state_key=uid)
    res = fake.send(a, [join])
    assert res == {event_id(join): {}}, res
    room.add(join)
    fake.events.update(room.events)
    return room, uid


def acl_probe(a, fake, room, fred):
    """Status of each room endpoint for the fake server, and the /send result."""
    rid, last = room.room_id, room.extremities[0]
    out = {
        "make_join": fake.request(a, "GET", "/_matrix/federation/v1/make_join/%s/%s?ver=10&ver=11" % (
            q(rid), q(fake.user("newbie")))).status_code,
        "make_leave": fake.request(a, "GET", "/_matrix/federation/v1/make_leave/%s/%s" % (
            q(rid), q(fred))).status_code,
        "state_ids": fake.request(a, "GET", "/_matrix/federation/v1/state_ids/%s?event_id=%s" % (
            q(rid), q(last))).status_code,
        "state": fake.request(a, "GET", "/_matrix/federation/v1/state/%s?event_id=%s" % (
            q(rid), q(last))).status_code,
        "backfill": fake.request(a, "GET", "/_matrix/federation/v1/backfill/%s?v=%s&limit=5" % (
            q(rid), q(last))).status_code,
        "event_auth": fake.request(a, "GET", "/_matrix/federation/v1/event_auth/%s/%s" % (
            q(rid), q(last))).status_code,
        "get_missing_events": fake.request(a, "POST", "/_matrix/federation/v1/get_missing_events/" + q(rid),
                                           {}).status_code,
        "event": fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(last)).status_code,
    }
    msg = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "hello"})
    res = fake.send(a, [msg])[event_id(msg)]
    if res == {}:
        room.add(msg)
    return out, res


def test_server_acl_on_room_endpoints_and_send(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    room, fred = fake_join(a, fake, room_id)
    codes, res = acl_probe(a, fake, room, fred)
    assert set(codes.values()) == {200}, codes
    assert res == {}
    # deny the fake's host name (ports are not part of the match)
    r = alice.put("/rooms/%s/state/m.room.server_acl" % q(room_id),
                  {"allow": ["*"], "deny": ["localhost"], "allow_ip_literals": True})
    assert r.status_code == 200, r.text
    room = Room(a, room_id)
    codes, res = acl_probe(a, fake, room, fred)
    assert set(codes.values()) == {403}, codes
    assert "error" in res and "ACL" in res["error"], res
    r = fake.request(a, "GET", "/_matrix/federation/v1/make_join/%s/%s?ver=11" % (q(room_id), q(fake.user("x"))))
    assert r.json()["errcode"] == "M_FORBIDDEN"
    # an ACL that allows it again
    r = alice.put("/rooms/%s/state/m.room.server_acl" % q(room_id), {"allow": ["*"], "deny": ["*.evil.example"]})
    assert r.status_code == 200, r.text
    room = Room(a, room_id)
    codes, res = acl_probe(a, fake, room, fred)
    assert set(codes.values()) == {200}, codes
    assert res == {}


def shared_room(a, b):
    """alice@a creates a public room, bob@b joins it through a."""
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat")
    r = bob.post("/join/%s?server_name=%s" % (q(room_id), q(a.server_name)))
    assert r.status_code == 200, r.text
    wait_for(lambda: bob.user_id in alice.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"],
             what="a to see bob's join")
    return alice, bob, room_id


def events(user, **params):
    r = user.get("/events", params=params, timeout=40)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) >= {"start", "end", "chunk"}, body
    return body


def test_events_stream_long_polls_for_remote_events(make_server):
    a, b = make_server(), make_server()
    alice, bob, room_id = shared_room(a, b)
    first = events(alice, timeout="0")
    assert first["chunk"] == [] and first["start"] == first["end"]
    # a long-poll wakes when bob's message arrives over federation
    box = {}
    t = threading.Thread(target=lambda: box.update(r=events(alice, **{"from": first["end"], "timeout": "20000"})))
    t.start()
    bob.send_ok(room_id, "through the stream")
    t.join(30)
    got = box["r"]
    msgs = [e for e in got["chunk"] if e["type"] == "m.room.message"]
    assert msgs and msgs[0]["content"]["body"] == "through the stream" and msgs[0]["room_id"] == room_id, got
    assert got["start"] == first["end"] and got["end"] != got["start"]
    # nothing new: the timeout answers with the same position
    again = events(alice, **{"from": got["end"], "timeout": "100"})
    assert again["chunk"] == [] and again["end"] == got["end"]
    r = alice.get("/events", params={"from": "bogus"})
    assert r.status_code == 400


def wait_sync(user, pred, what, timeout=20):
    """Incremental syncs until pred(response) holds; returns its value."""
    box = {"since": None}

    def step():
        s = user.sync(since=box["since"], timeout=1000 if box["since"] else 0)
        box["since"] = s["next_batch"]
        return pred(s)
    return wait_for(step, timeout=timeout, what=what)


def ephemeral(s, room_id, type_):
    evs = s.get("rooms", {}).get("join", {}).get(room_id, {}).get("ephemeral", {}).get("events", [])
    return [e for e in evs if e["type"] == type_]


def typing_users(s, room_id):
    t = ephemeral(s, room_id, "m.typing")
    return t[-1]["content"]["user_ids"] if t else None


def test_typing_and_receipts_both_ways(make_server):
    a, b = make_server(), make_server()
    alice, bob, room_id = shared_room(a, b)
    # bob types on b: alice sees it on a, and the stop
    r = bob.put("/rooms/%s/typing/%s" % (q(room_id), q(bob.user_id)), {"typing": True, "timeout": 20000})
    assert r.status_code == 200, r.text
    wait_sync(alice, lambda s: typing_users(s, room_id) == [bob.user_id], "alice to see bob typing")
    # alice types on a: bob sees it on b
    alice.put("/rooms/%s/typing/%s" % (q(room_id), q(alice.user_id)), {"typing": True, "timeout": 20000})
    wait_sync(bob, lambda s: alice.user_id in (typing_users(s, room_id) or []), "bob to see alice typing")
    bob.put("/rooms/%s/typing/%s" % (q(room_id), q(bob.user_id)), {"typing": False})
    wait_sync(alice, lambda s: typing_users(s, room_id) == [alice.user_id], "bob's stop to reach a")
    # a read receipt by bob on b reaches a, and alice's reaches b
    eid = alice.send_ok(room_id, "read me")
    wait_for(lambda: bob.get("/rooms/%s/event/%s" % (q(room_id), q(eid))).status_code == 200,
             what="the message on b")
    r = bob.post("/rooms/%s/receipt/m.read/%s" % (q(room_id), q(eid)))
    assert r.status_code == 200, r.text

    def receipt_of(s, who):
        for e in ephemeral(s, room_id, "m.receipt"):
            rr = e["content"].get(eid, {}).get("m.read", {}).get(who)
            if rr:
                return rr
    rr = wait_sync(alice, lambda s: receipt_of(s, bob.user_id), "alice to see bob's receipt")
    assert "ts" in rr
    alice.post("/rooms/%s/receipt/m.read/%s" % (q(room_id), q(eid)))
    wait_sync(bob, lambda s: receipt_of(s, alice.user_id), "bob to see alice's receipt")


def test_presence_over_federation(make_server):
    a, b = make_server(), make_server()
    alice, bob, room_id = shared_room(a, b)
    r = bob.put("/presence/%s/status" % q(bob.user_id), {"presence": "online", "status_msg": "on b"})
    assert r.status_code == 200, r.text

    def bobs(s):
        for e in s.get("presence", {}).get("events", []):
            if e["sender"] == bob.user_id and e["content"].get("status_msg") == "on b":
                return e
    e = wait_sync(alice, bobs, "alice to see bob's presence")
    assert e["content"]["presence"] == "online"
    r = alice.get("/presence/%s/status" % q(bob.user_id))
    assert r.status_code == 200 and r.json()["status_msg"] == "on b", r.text


def test_inbound_edus_only_for_the_origins_users(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    room, fred = fake_join(a, fake, room_id)
    eid = alice.send_ok(room_id, "hello fred")
    since = alice.sync()["next_batch"]
    # forged: about alice (a's user); genuine: about fred
    fake.send(a, [], edus=[
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": alice.user_id, "typing": True}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {alice.user_id: {
            "event_ids": [eid], "data": {"ts": 1}}}}}},
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": "@x:elsewhere", "typing": True}},
        {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": fred, "typing": True}},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {fred: {"event_ids": [eid], "data": {"ts": 1}}}}}},
        {"edu_type": "m.typing", "content": "not an object"},
        {"edu_type": "m.receipt", "content": {room_id: {"m.read": {fred: {"event_ids": "nope"}}}}},
    ])
    s = alice.sync(since=since)
    assert typing_users(s, room_id) == [fred], s
    receipts = ephemeral(s, room_id, "m.receipt")
    readers = {u for e in receipts for u in e["content"].get(eid, {}).get("m.read", {})}
    assert readers == {fred}, receipts
    # the room's ACL refuses the fake: its EDUs are dropped too
    alice.put("/rooms/%s/state/m.room.server_acl" % q(room_id), {"allow": ["*"], "deny": ["localhost"]})
    fake.send(a, [], edus=[{"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": fred,
                                                                "typing": False}}])
    s = alice.sync(since=s["next_batch"])
    assert typing_users(s, room_id) in (None, [fred]), s


def test_public_room_list_over_federation(make_server, fake):
    a, b = make_server(), make_server()
    alice, bob = User(a), User(b)
    rid = alice.create_room(visibility="public", name="Listed on a", topic="t1", room_alias_name="listed")
    alice.create_room(preset="private_chat", name="hidden")
    # served to other servers: GET and POST (search, limit)
    r = fake.request(a, "GET", "/_matrix/federation/v1/publicRooms")
    assert r.status_code == 200, r.text
    chunk = r.json()["chunk"]
    room = [x for x in chunk if x["room_id"] == rid][0]
    assert room["name"] == "Listed on a" and room["topic"] == "t1" and room["num_joined_members"] == 1
    assert room["canonical_alias"] == "#listed:" + a.server_name
    assert {"world_readable", "guest_can_join"} <= set(room)
    assert "hidden" not in [x.get("name") for x in chunk]
    r = fake.request(a, "POST", "/_matrix/federation/v1/publicRooms",
                     {"limit": 5, "filter": {"generic_search_term": "listed ON"}})
    assert r.status_code == 200 and [x["room_id"] for x in r.json()["chunk"]] == [rid], r.text
    r = fake.request(a, "POST", "/_matrix/federation/v1/publicRooms", {"limit": "x"})
    assert r.status_code == 400
    # unsigned: refused
    r = requests.get(a.fed_base + "/_matrix/federation/v1/publicRooms", verify=a.ca + "/ca.crt", timeout=10)
    assert r.status_code == 401
    # a client of b asks for a's list through b
    r = bob.get("/publicRooms", params={"server": a.server_name})
    assert r.status_code == 200, r.text
    assert rid in [x["room_id"] for x in r.json()["chunk"]]
    r = bob.post("/publicRooms?server=" + q(a.server_name), {"filter": {"generic_search_term": "nothing like it"}})
    assert r.status_code == 200 and r.json()["chunk"] == [], r.text
    # its own name: the local list
    r = bob.get("/publicRooms", params={"server": b.server_name})
    assert r.status_code == 200 and rid not in [x["room_id"] for x in r.json()["chunk"]]


def test_invite_rejected_locally_when_the_inviter_is_down(make_server):
    a, b = make_server(), make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="private_chat")
    r = alice.post("/rooms/%s/invite" % q(room_id), {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    s = wait_sync(bob, lambda s: s if room_id in s["rooms"].get("invite", {}) else None, "the invite at bob")
    a.stop()
    # nobody to send the leave to: rejected on b alone
    r = bob.post("/rooms/%s/leave" % q(room_id))
    assert r.status_code == 200, r.text
    s = bob.sync(since=s["next_batch"])
    left = s["rooms"]["leave"][room_id]["timeline"]["events"]
    assert left[-1]["type"] == "m.room.member" and left[-1]["content"]["membership"] == "leave"
    assert left[-1]["sender"] == bob.user_id and left[-1]["state_key"] == bob.user_id
    assert room_id not in bob.sync()["rooms"].get("invite", {})
    a.start()


def test_presence_shared_when_a_server_joins(make_server):
    a, b = make_server(), make_server()
    alice, bob = User(a), User(b)
    # both online (reading the event stream marks them so)
    events(alice, timeout="0")
    events(bob, timeout="0")
    room_id = alice.create_room(preset="public_chat")
    s_a, s_b = alice.sync(), bob.sync()
    r = bob.post("/join/%s?server_name=%s" % (q(room_id), q(a.server_name)))
    assert r.status_code == 200, r.text

    def online(who):
        def pred(s):
            return any(e["sender"] == who and e["content"]["presence"] == "online"
                       for e in s.get("presence", {}).get("events", []))
        return pred
    box_a, box_b = {"since": s_a["next_batch"]}, {"since": s_b["next_batch"]}

    def step(user, box, who):
        s = user.sync(since=box["since"], timeout=1000)
        box["since"] = s["next_batch"]
        box["seen"] = box.get("seen") or online(who)(s)
        return box["seen"]
    wait_for(lambda: step(alice, box_a, bob.user_id), what="a to learn bob's presence")
    wait_for(lambda: step(bob, box_b, alice.user_id), what="b to learn alice's presence")


def history(user, room_id, limit, frm=None):
    p = {"dir": "b", "limit": str(limit)}
    if frm:
        p["from"] = frm
    r = user.get("/rooms/%s/messages" % q(room_id), params=p, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_messages_backfills_history_from_before_the_join(make_server):
    a, b = make_server(), make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat", name="old news")
    sent = ["old %d" % i for i in range(8)]
    for m in sent:
        alice.send_ok(room_id, m)
    r = bob.post("/join/%s?server_name=%s" % (q(room_id), q(a.server_name)))
    assert r.status_code == 200, r.text
    # b holds only the join in its timeline; paging back fetches the rest from a
    first = history(bob, room_id, 5)
    types = [e["type"] for e in first["chunk"]]
    assert types[0] == "m.room.member" and first["chunk"][0]["sender"] == bob.user_id, types
    got = [e["content"].get("body") for e in first["chunk"] if e["type"] == "m.room.message"]
    assert got == ["old 7", "old 6", "old 5", "old 4"], first["chunk"]
    # keep paging: every message, then the room's creation, oldest last
    chunk, frm = list(first["chunk"]), first.get("end")
    for _ in range(10):
        page = history(bob, room_id, 10, frm)
        if not page["chunk"]:
            break
        chunk += page["chunk"]
        frm = page["end"]
    bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert bodies == list(reversed(sent)), bodies
    assert chunk[-1]["type"] == "m.room.create"
    ids = [e["event_id"] for e in chunk]
    assert len(ids) == len(set(ids))
    # the history is not news: an incremental sync does not replay it
    s = bob.sync()
    s2 = bob.sync(since=s["next_batch"])
    assert room_id not in s2["rooms"].get("join", {})
    # the same events on both servers
    ids_a = {e["event_id"] for e in history(alice, room_id, 50)["chunk"]}
    assert set(ids) <= ids_a | {chunk[0]["event_id"]}


def test_device_endpoints_answer_without_keys(make_server, fake):
    a = make_server()
    alice = User(a)
    alice.new_device()
    r = fake.request(a, "GET", "/_matrix/federation/v1/user/devices/" + q(alice.user_id))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == alice.user_id and isinstance(body["stream_id"], int)
    assert len(body["devices"]) == 2 and alice.device_id in [d["device_id"] for d in body["devices"]]
    r = fake.request(a, "GET", "/_matrix/federation/v1/user/devices/" + q("@nobody:" + a.server_name))
    assert r.status_code == 404
    r = fake.request(a, "GET", "/_matrix/federation/v1/user/devices/" + q(fake.user("x")))
    assert r.status_code == 403
    r = fake.request(a, "POST", "/_matrix/federation/v1/user/keys/query",
                     {"device_keys": {alice.user_id: [], fake.user("x"): []}})
    assert r.status_code == 200 and r.json() == {"device_keys": {alice.user_id: {}}}, r.text
    r = fake.request(a, "POST", "/_matrix/federation/v1/user/keys/query", {"device_keys": []})
    assert r.status_code == 400
    r = fake.request(a, "POST", "/_matrix/federation/v1/user/keys/claim",
                     {"one_time_keys": {alice.user_id: {alice.device_id: "signed_curve25519"}}})
    assert r.status_code == 200 and r.json() == {"one_time_keys": {}}, r.text
    # a device list update is accepted (and ignored)
    fake.send(a, [], edus=[{"edu_type": "m.device_list_update", "content": {
        "user_id": fake.user("x"), "device_id": "D", "stream_id": 1, "prev_id": []}}])


def test_notary_returns_the_best_key_it_has(make_server):
    a, c = make_server(), make_server()
    r = a.fed_get("/_matrix/key/v2/query/" + c.server_name)
    assert r.status_code == 200 and len(r.json()["server_keys"]) == 1, r.text
    c.stop()
    # a later validity than the stored one is asked: the refetch fails, the stored one comes back
    far = 4102444800000
    r = a.fed_get("/_matrix/key/v2/query/%s?minimum_valid_until_ts=%d" % (c.server_name, far))
    assert r.status_code == 200, r.text
    docs = r.json()["server_keys"]
    assert len(docs) == 1 and docs[0]["server_name"] == c.server_name and docs[0]["valid_until_ts"] < far
    r = requests.post(a.fed_base + "/_matrix/key/v2/query", json={"server_keys": {c.server_name: {
        "ed25519:x": {"minimum_valid_until_ts": far}}}}, verify=a.ca + "/ca.crt", timeout=30)
    assert r.status_code == 200 and len(r.json()["server_keys"]) == 1, r.text
    c.start()


def test_origin_with_a_non_numeric_port_is_refused(make_server, fake):
    a = make_server()
    alice = User(a)
    real = fake.name
    fake.name = "localhost:http"
    try:
        r = fake.request(a, "GET", "/_matrix/federation/v1/query/profile?user_id=%s&field=displayname" % q(
            alice.user_id))
    finally:
        fake.name = real
    assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM", r.text


def test_erased_users_events_go_out_redacted(make_server, fake):
    a = make_server()
    alice, carol = User(a), User(a)
    room_id = alice.create_room(preset="public_chat")
    carol.join(room_id)
    room, fred = fake_join(a, fake, room_id)
    eid = alice.send_ok(room_id, "forget me")
    kept = carol.send_ok(room_id, "keep me")
    r = fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(eid))
    assert r.json()["pdus"][0]["content"]["body"] == "forget me"
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": alice.name},
            "password": "pw-" + alice.name}
    r = alice.post("/account/deactivate", {"auth": auth, "erase": True})
    assert r.status_code == 200, r.text
    pdu = fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(eid)).json()["pdus"][0]
    assert "body" not in pdu["content"] and event_id(pdu) == eid
    assert fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(kept)).json()["pdus"][0]["content"][
        "body"] == "keep me"
    r = carol.post("/account/deactivate", {"auth": {"type": "m.login.password", "identifier": {
        "type": "m.id.user", "user": carol.name}, "password": "pw-" + carol.name}, "erase": "yes"})
    assert r.status_code == 400


def test_unfederated_room_refuses_other_servers(make_server, fake):
    a, b = make_server(), make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat", creation_content={"m.federate": False})
    r = bob.post("/join/%s?server_name=%s" % (q(room_id), q(a.server_name)))
    assert r.status_code == 403, r.text
    r = fake.request(a, "GET", "/_matrix/federation/v1/make_join/%s/%s?ver=10&ver=11" % (
        q(room_id), q(fake.user("x"))))
    assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN", r.text
    # a federated room next to it is joinable as ever
    other = alice.create_room(preset="public_chat")
    r = bob.post("/join/%s?server_name=%s" % (q(other), q(a.server_name)))
    assert r.status_code == 200, r.text
