"""Rooms over federation (issue 7): PDUs received in /send (checked,
stored, gaps filled), sent to the other servers of a room, joins, invites
and leaves across servers, state resolution when the DAG forks, the
federation read endpoints. A fake homeserver written in these tests (its
own signing and hashing) plays the other side where a real auralinkd would
not do what the test needs; otherwise two or three real servers talk."""
import json
import threading
import time
import urllib.parse

import pytest
import signedjson.key

from fedrooms_util import FakeServer, Room, event_id, sign_event, wait_for
from rooms_util import User


def q(s):
    return urllib.parse.quote(s, safe="")


def messages(user, room_id, limit=50):
    r = user.get("/rooms/%s/messages" % q(room_id), params={"dir": "b", "limit": str(limit)})
    assert r.status_code == 200, r.text
    return r.json()["chunk"]


def bodies(user, room_id):
    return [e["content"].get("body") for e in reversed(messages(user, room_id)) if e["type"] == "m.room.message"]


@pytest.fixture
def fake(tmp_path_factory, ca):
    f = FakeServer(tmp_path_factory.mktemp("fake"), ca)
    yield f
    f.close()


def fake_join(a, fake, room_id, local="fred"):
    """The fake server's user joins a public room on a by sending a join
    PDU (as the resident server's /send would carry it)."""
    room = Room(a, room_id)
    uid = fake.user(local)
    join = room.make(fake.name, fake.key, "m.room.member", uid, {"membership": "join"}, state_key=uid)
    res = fake.send(a, [join])
    jid = event_id(join)
    assert res == {jid: {}}, res
    room.add(join)
    fake.events.update(room.events)
    return room, uid


def test_inbound_pdus_checked_and_stored(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    since = alice.sync()["next_batch"]
    room, fred = fake_join(a, fake, room_id)
    # the join is in the room: members, and alice's /sync wakes with it
    r = alice.get("/rooms/%s/joined_members" % q(room_id))
    assert fred in r.json()["joined"], r.text
    s = alice.sync(since=since, timeout=5000)
    tl = s["rooms"]["join"][room_id]["timeline"]["events"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == fred for e in tl)

    # a message from fred
    msg = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "hello from F"})
    res = fake.send(a, [msg])
    assert res == {event_id(msg): {}}
    room.add(msg)
    assert bodies(alice, room_id)[-1] == "hello from F"

    # the same transaction again and the same PDU again: stored once
    res = fake.send(a, [msg])
    assert res == {event_id(msg): {}}
    assert a.sql("SELECT count(*) FROM events WHERE event_id = %s", event_id(msg)) == [(1,)]

    # a forged signature (another key under the same key ID): dropped
    other = signedjson.key.generate_signing_key("f1")
    bad = room.make(fake.name, other, "m.room.message", fred, {"msgtype": "m.text", "body": "forged"})
    res = fake.send(a, [bad])
    assert "signature" in res[event_id(bad)]["error"], res
    # a sender on another server (alice's), signed by the fake only: dropped
    spoof = room.make(fake.name, fake.key, "m.room.message", alice.user_id, {"msgtype": "m.text", "body": "spoof"})
    res = fake.send(a, [spoof])
    assert "signature" in res[event_id(spoof)]["error"], res
    # a user who never joined: rejected by the auth rules
    ghost = fake.user("ghost")
    g = room.make(fake.name, fake.key, "m.room.message", ghost, {"msgtype": "m.text", "body": "boo"})
    res = fake.send(a, [g])
    assert res == {event_id(g): {}}, res  # stored as rejected: no error for it (spec)
    assert a.sql("SELECT rejected FROM events WHERE event_id = %s", event_id(g)) == [(True,)]
    assert "not allowed" in a.read_log()
    # fred may not change the power levels (state_default 50 > 0)
    pl = room.make(fake.name, fake.key, "m.room.power_levels", fred, {"users": {fred: 100}}, state_key="")
    res = fake.send(a, [pl])
    assert a.sql("SELECT rejected FROM events WHERE event_id = %s", event_id(pl)) == [(True,)]
    # none of them shows up
    assert bodies(alice, room_id) == ["hello from F"]

    # a content hash that does not match: stored redacted
    ev = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "secret"})
    ev["content"]["body"] = "tampered"  # signatures cover the redacted form, the hash the content
    res = fake.send(a, [ev])
    assert res == {event_id(ev): {}}, res
    room.add(ev)
    got = [e for e in messages(alice, room_id) if e["event_id"] == event_id(ev)]
    assert got and got[0]["content"] == {}, got

    # an unknown room
    other_room = dict(msg, room_id="!nowhere:" + fake.name)
    res = fake.send(a, [other_room])
    assert list(res.values()) == [{"error": "unknown room"}], res

    # a malformed event (depth missing): dropped
    broken = room.make(fake.name, fake.key, "m.room.message", fred, {"body": "x"})
    del broken["depth"]
    sign_event(broken, fake.name, fake.key)
    res = fake.send(a, [broken])
    assert "depth" in res[event_id(broken)]["error"], res


def test_inbound_gap_filled_with_get_missing_events(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    room, fred = fake_join(a, fake, room_id)
    m1 = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "one"})
    room.add(m1)
    m2 = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "two"})
    room.add(m2)
    fake.events.update(room.events)
    # only m2 arrives; a asks the fake for what lies between
    res = fake.send(a, [m2])
    assert res == {event_id(m2): {}}, res
    assert any(p.startswith("/_matrix/federation/v1/get_missing_events/") for _, p in fake.requests)
    assert bodies(alice, room_id) == ["one", "two"]


def verify_pdu(server, pdu):
    """The PDU is signed by server's key and its content hash matches."""
    import signedjson.sign as ss
    from fedrooms_util import content_hash, redact
    from signedjson.key import decode_verify_key_bytes
    from unpaddedbase64 import decode_base64
    doc = server.fed_get("/_matrix/key/v2/server").json()
    name = doc["server_name"]
    (kid, v), = doc["verify_keys"].items()
    vk = decode_verify_key_bytes(kid, decode_base64(v["key"]))
    ss.verify_signed_json(redact(pdu), name, vk)
    assert pdu["hashes"]["sha256"] == content_hash(pdu)


def test_outbound_pdus_to_servers_in_the_room(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    # no remote member yet: nothing is queued
    alice.send_ok(room_id, "before")
    assert a.sql("SELECT count(*) FROM federation_outbox") == [(0,)]
    room, fred = fake_join(a, fake, room_id)
    eid = alice.send_ok(room_id, "to F")
    got = wait_for(lambda: [p for p in fake.received_pdus() if event_id(p) == eid], what="the PDU at the fake")
    pdu = got[0]
    assert pdu["content"]["body"] == "to F" and pdu["sender"] == alice.user_id
    assert "unsigned" not in pdu and "event_id" not in pdu
    verify_pdu(a, pdu)
    # it builds on the fake's join: the DAG joined up
    assert pdu["prev_events"] == [event_id(room.events[room.extremities[0]])]
    # a state change goes too, and the sender empties the outbox
    r = alice.put("/rooms/%s/state/m.room.topic" % q(room_id), {"topic": "federated"})
    assert r.status_code == 200, r.text
    tid = r.json()["event_id"]
    wait_for(lambda: any(event_id(p) == tid for p in fake.received_pdus()), what="the topic at the fake")
    wait_for(lambda: a.sql("SELECT count(*) FROM federation_outbox") == [(0,)], what="an empty outbox")
    # kicking fred reaches his server too
    r = alice.post("/rooms/%s/kick" % q(room_id), {"user_id": fred})
    assert r.status_code == 200, r.text
    wait_for(lambda: any(p["type"] == "m.room.member" and p["state_key"] == fred and
                         p["content"]["membership"] == "leave" for p in fake.received_pdus()), what="the kick")
    # and after that nothing more is sent to it
    n = len(fake.received_pdus())
    alice.send_ok(room_id, "after")
    time.sleep(1.5)
    assert len(fake.received_pdus()) == n


def join_remote(user, room, via):
    r = user.post("/join/%s" % q(room) + ("?server_name=%s" % q(via) if via else ""))
    return r


def wait_bodies(user, room_id, want, timeout=20):
    return wait_for(lambda: bodies(user, room_id) if bodies(user, room_id)[-len(want):] == want else None,
                    timeout=timeout, what="%s to see %s" % (user.user_id, want))


def test_cross_domain_join_and_messages_both_ways(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    # bob (on b) joins alice's room by ID through a
    room_id = alice.create_room(preset="public_chat", name="on a")
    alice.send_ok(room_id, "before bob")
    since = bob.sync()["next_batch"]
    r = join_remote(bob, room_id, a.server_name)
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id
    # b holds the room's state as outliers and the join in its timeline
    assert b.sql("SELECT count(*) > 3 FROM events WHERE room_id = %s AND outlier", room_id) == [(True,)]
    assert b.sql("SELECT type, outlier FROM events WHERE room_id = %s AND stream_ordering > 0", room_id) == [
        ("m.room.member", False)]
    s = bob.sync(since=since, timeout=5000)
    jr = s["rooms"]["join"][room_id]
    names = [e for e in jr["state"]["events"] + jr["timeline"]["events"] if e["type"] == "m.room.name"]
    assert names and names[0]["content"]["name"] == "on a"
    # both servers see bob joined
    wait_for(lambda: bob.user_id in alice.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"],
             what="a to see bob's join")
    assert set(bob.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"]) == {alice.user_id, bob.user_id}
    # messages both ways
    alice.send_ok(room_id, "hi bob")
    wait_bodies(bob, room_id, ["hi bob"])
    bob.send_ok(room_id, "hi alice")
    wait_bodies(alice, room_id, ["hi bob", "hi alice"])
    assert bodies(bob, room_id)[-2:] == ["hi bob", "hi alice"]
    # the other way round: alice joins bob's room by its alias on b
    broom = bob.create_room(preset="public_chat", room_alias_name="bobs")
    r = join_remote(alice, "#bobs:" + b.server_name, None)
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == broom
    bob.send_ok(broom, "welcome")
    wait_bodies(alice, broom, ["welcome"])
    alice.send_ok(broom, "thanks")
    wait_bodies(bob, broom, ["welcome", "thanks"])
    # the event IDs agree on both sides
    ids_a = [e["event_id"] for e in messages(alice, broom)]
    ids_b = [e["event_id"] for e in messages(bob, broom)]
    assert set(ids_a) <= set(ids_b) or set(ids_b) <= set(ids_a)


def membership(user, room_id, who):
    r = user.get("/rooms/%s/state/m.room.member/%s" % (q(room_id), q(who)))
    return r.json().get("membership") if r.status_code == 200 else None


def test_invite_leave_reject_and_ban_across_domains(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="private_chat", name="private on a")
    # a private room: bob cannot just join
    r = join_remote(bob, room_id, a.server_name)
    assert r.status_code == 403, r.text
    # invite: b signs it, bob sees it in /sync with the stripped state
    since = bob.sync()["next_batch"]
    r = alice.post("/rooms/%s/invite" % q(room_id), {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    assert membership(alice, room_id, bob.user_id) == "invite"
    s = bob.sync(since=since, timeout=5000)
    inv = s["rooms"]["invite"][room_id]["invite_state"]["events"]
    assert any(e["type"] == "m.room.name" and e["content"]["name"] == "private on a" for e in inv)
    assert any(e["type"] == "m.room.member" and e["state_key"] == bob.user_id for e in inv)
    # bob accepts: a join through the inviting server
    r = bob.join(room_id)
    assert r.status_code == 200, r.text
    wait_for(lambda: membership(alice, room_id, bob.user_id) == "join", what="bob's join on a")
    bob.send_ok(room_id, "thanks for the invite")
    wait_bodies(alice, room_id, ["thanks for the invite"])
    # bob leaves: a sees it
    r = bob.post("/rooms/%s/leave" % q(room_id))
    assert r.status_code == 200, r.text
    wait_for(lambda: membership(alice, room_id, bob.user_id) == "leave", what="bob's leave on a")
    # invited again, bob rejects: make_leave / send_leave through a
    r = alice.post("/rooms/%s/invite" % q(room_id), {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    wait_for(lambda: bob.sync()["rooms"].get("invite", {}).get(room_id), what="the second invite at bob")
    r = bob.post("/rooms/%s/leave" % q(room_id))
    assert r.status_code == 200, r.text
    assert membership(alice, room_id, bob.user_id) == "leave"
    assert room_id not in bob.sync()["rooms"].get("invite", {})
    # a third invite, accepted; then alice bans bob
    r = alice.post("/rooms/%s/invite" % q(room_id), {"user_id": bob.user_id})
    assert r.status_code == 200, r.text
    r = bob.join(room_id)
    assert r.status_code == 200, r.text
    wait_for(lambda: membership(alice, room_id, bob.user_id) == "join", what="bob's second join")
    r = alice.post("/rooms/%s/ban" % q(room_id), {"user_id": bob.user_id, "reason": "bye"})
    assert r.status_code == 200, r.text
    wait_for(lambda: membership(bob, room_id, bob.user_id) == "ban", what="the ban on b")
    # b knows bob is banned: his messages are refused there
    r = bob.send(room_id, "still here?")
    assert r.status_code == 403, r.text
    # and a refuses a join attempt
    r = join_remote(bob, room_id, a.server_name)
    assert r.status_code == 403, r.text


def test_create_room_with_remote_invitee(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    r = alice.post("/createRoom", {"preset": "trusted_private_chat", "is_direct": True, "invite": [bob.user_id]})
    assert r.status_code == 200, r.text
    room_id = r.json()["room_id"]
    assert membership(alice, room_id, bob.user_id) == "invite"
    wait_for(lambda: bob.sync()["rooms"].get("invite", {}).get(room_id), what="the DM invite at bob")
    r = bob.join(room_id)
    assert r.status_code == 200, r.text
    bob.send_ok(room_id, "dm")
    wait_bodies(alice, room_id, ["dm"])


def test_read_endpoints_event_state_backfill_missing(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat", name="readable")
    e1 = alice.send_ok(room_id, "one")
    # not in the room yet: refused
    r = fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(e1))
    assert r.status_code == 403, r.text
    room, fred = fake_join(a, fake, room_id)
    e2 = alice.send_ok(room_id, "two")
    e3 = alice.send_ok(room_id, "three")
    # /event
    r = fake.request(a, "GET", "/_matrix/federation/v1/event/" + q(e2))
    assert r.status_code == 200, r.text
    pdu = r.json()["pdus"][0]
    assert event_id(pdu) == e2 and pdu["content"]["body"] == "two"
    verify_pdu(a, pdu)
    r = fake.request(a, "GET", "/_matrix/federation/v1/event/" + q("$nope"))
    assert r.status_code == 404
    # /state_ids and /state at e3: the state before it
    r = fake.request(a, "GET", "/_matrix/federation/v1/state_ids/%s?event_id=%s" % (q(room_id), q(e3)))
    assert r.status_code == 200, r.text
    ids = set(r.json()["pdu_ids"])
    assert ids == set(room.state.values()), (ids, room.state)
    assert set(r.json()["auth_chain_ids"]) <= set(room.events)
    r = fake.request(a, "GET", "/_matrix/federation/v1/state/%s?event_id=%s" % (q(room_id), q(e3)))
    assert r.status_code == 200, r.text
    assert {event_id(p) for p in r.json()["pdus"]} == ids
    types = {p["type"] for p in r.json()["pdus"]}
    assert {"m.room.create", "m.room.power_levels", "m.room.name", "m.room.member"} <= types
    # a state event: the state at it does not include itself
    name_id = room.state[("m.room.name", "")]
    r = fake.request(a, "GET", "/_matrix/federation/v1/state_ids/%s?event_id=%s" % (q(room_id), q(name_id)))
    assert name_id not in r.json()["pdu_ids"]
    # event_auth
    r = fake.request(a, "GET", "/_matrix/federation/v1/event_auth/%s/%s" % (q(room_id), q(e3)))
    assert r.status_code == 200, r.text
    chain = {event_id(p) for p in r.json()["auth_chain"]}
    assert room.state[("m.room.create", "")] in chain
    # backfill from e3, 3 events: e3, e2 and fred's join (newest first)
    r = fake.request(a, "GET", "/_matrix/federation/v1/backfill/%s?v=%s&limit=3" % (q(room_id), q(e3)))
    assert r.status_code == 200, r.text
    got = [event_id(p) for p in r.json()["pdus"]]
    assert got[:2] == [e3, e2] and len(got) == 3, got
    # get_missing_events between fred's join and e3: e2 (e3 itself is latest)
    join_id = [eid for eid, ev in room.events.items() if ev.get("state_key") == fred][0]
    r = fake.request(a, "POST", "/_matrix/federation/v1/get_missing_events/" + q(room_id),
                     {"earliest_events": [join_id], "latest_events": [e3], "limit": 10, "min_depth": 0})
    assert r.status_code == 200, r.text
    assert [event_id(p) for p in r.json()["events"]] == [e2]
    # directory
    r = alice.put("/directory/room/%s" % q("#readable:" + a.server_name), {"room_id": room_id})
    assert r.status_code == 200, r.text
    r = fake.request(a, "GET", "/_matrix/federation/v1/query/directory?room_alias=" + q("#readable:" + a.server_name))
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id and r.json()["servers"][0] == a.server_name
    assert fake.name in r.json()["servers"]
    r = fake.request(a, "GET", "/_matrix/federation/v1/query/directory?room_alias=" + q("#none:" + a.server_name))
    assert r.status_code == 404


def test_server_down_then_back_catches_up(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat")
    assert join_remote(bob, room_id, a.server_name).status_code == 200
    alice.send_ok(room_id, "m0")
    wait_bodies(bob, room_id, ["m0"])
    b.stop()
    sent = ["m%d" % i for i in range(1, 7)]
    for m in sent:
        alice.send_ok(room_id, m)
    # lose some of what a queued for b (as if a transaction went missing):
    # b fills the hole with get_missing_events when the rest arrives
    wait_for(lambda: a.sql("SELECT count(*) FROM federation_outbox WHERE destination = %s", b.server_name)[0][0] >= 6,
             what="a's outbox for b")
    a.sql("DELETE FROM federation_outbox WHERE id IN (SELECT id FROM federation_outbox WHERE destination = %s "
          "ORDER BY id LIMIT 3)", b.server_name)
    a.sql("UPDATE federation_outbox SET txn_id = NULL WHERE destination = %s", b.server_name)
    b.start()
    wait_bodies(bob, room_id, ["m0"] + sent, timeout=60)
    assert "get_missing_events" in a.read_log() or "fetched" in b.read_log()
    # and b's users talk back once it is up
    bob.send_ok(room_id, "back")
    wait_bodies(alice, room_id, sent + ["back"])


def test_three_servers_share_a_room(make_server):
    a, b, c = make_server(), make_server(), make_server()
    alice, bob, carol = User(a), User(b), User(c)
    room_id = alice.create_room(preset="public_chat")
    assert join_remote(bob, room_id, a.server_name).status_code == 200
    wait_for(lambda: bob.user_id in alice.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"],
             what="bob on a")
    # carol joins through b (which is resident now)
    assert join_remote(carol, room_id, b.server_name).status_code == 200
    wait_for(lambda: carol.user_id in alice.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"],
             what="carol's join relayed to a by b")
    carol.send_ok(room_id, "from c")
    wait_bodies(alice, room_id, ["from c"])
    wait_bodies(bob, room_id, ["from c"])
    bob.send_ok(room_id, "from b")
    wait_bodies(carol, room_id, ["from c", "from b"])
    wait_bodies(alice, room_id, ["from c", "from b"])


def admin_headers(s, name="fedadmin"):
    u = User(s, name)
    s.run_cli("--grant-admin", u.user_id)
    return u.h


def block(s, h, other, blocked):
    import requests
    r = requests.post(s.base + "/_auralink/admin/v1/federation/servers", headers=h, timeout=10,
                      json={"domain": other.server_name, "is_blacklisted": blocked})
    assert r.status_code in (200, 201), r.text


def topic(user, room_id):
    r = user.get("/rooms/%s/state/m.room.topic" % q(room_id))
    return r.json().get("topic") if r.status_code == 200 else None


def test_concurrent_topics_converge_by_state_resolution(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat",
                                power_level_content_override={"events": {"m.room.topic": 0}})
    assert join_remote(bob, room_id, a.server_name).status_code == 200
    wait_for(lambda: bob.user_id in alice.get("/rooms/%s/joined_members" % q(room_id)).json()["joined"],
             what="bob on a")
    ha, hb = admin_headers(a), admin_headers(b)
    # cut the link both ways, change the topic on each side, reconnect
    block(a, ha, b, True)
    block(b, hb, a, True)
    r = alice.put("/rooms/%s/state/m.room.topic" % q(room_id), {"topic": "from a"})
    assert r.status_code == 200, r.text
    ta = r.json()["event_id"]
    time.sleep(0.05)
    r = bob.put("/rooms/%s/state/m.room.topic" % q(room_id), {"topic": "from b"})
    assert r.status_code == 200, r.text
    tb = r.json()["event_id"]
    assert topic(alice, room_id) == "from a" and topic(bob, room_id) == "from b"
    block(a, ha, b, False)
    block(b, hb, a, False)
    # each side receives the other's topic: the DAG forks at the same
    # parent, two extremities, state resolution v2 picks the same winner
    wait_for(lambda: a.sql("SELECT count(*) FROM events WHERE event_id = %s", tb) == [(1,)], timeout=30,
             what="b's topic on a")
    wait_for(lambda: b.sql("SELECT count(*) FROM events WHERE event_id = %s", ta) == [(1,)], timeout=30,
             what="a's topic on b")
    assert len(a.sql("SELECT event_id FROM room_extremities WHERE room_id = %s", room_id)) == 2
    wait_for(lambda: topic(alice, room_id) == topic(bob, room_id), what="the same topic on both servers")
    assert topic(alice, room_id) == "from b"  # same mainline position: the later one is applied last
    # the next event joins the branches; the state stays agreed
    e = alice.send_ok(room_id, "merged")
    wait_bodies(bob, room_id, ["merged"])
    pdu = json.loads(a.sql("SELECT json FROM events WHERE event_id = %s", e)[0][0])
    assert set(pdu["prev_events"]) == {ta, tb}
    assert a.sql("SELECT event_id FROM room_extremities WHERE room_id = %s", room_id) == [(e,)]
    wait_for(lambda: b.sql("SELECT event_id FROM room_extremities WHERE room_id = %s", room_id) == [(e,)],
             what="one extremity on b")
    assert topic(alice, room_id) == topic(bob, room_id) == "from b"


def test_version_10_rooms_and_remote_alias_lookup(make_server):
    conf = 'rooms = { default_room_version = "10"; };'
    a = make_server(config_extra=conf)
    b = make_server(config_extra=conf)
    alice, bob = User(a), User(b)
    caps = alice.get("/capabilities").json()["capabilities"]["m.room_versions"]
    assert caps["default"] == "10"
    room_id = alice.create_room(preset="public_chat", room_alias_name="ten")
    create = alice.get("/rooms/%s/state/m.room.create" % q(room_id)).json()
    assert create["room_version"] == "10" and create["creator"] == alice.user_id
    # bob looks the alias up on a through his server
    r = bob.get("/directory/room/%s" % q("#ten:" + a.server_name))
    assert r.status_code == 200, r.text
    assert r.json()["room_id"] == room_id and a.server_name in r.json()["servers"]
    r = bob.get("/directory/room/%s" % q("#eleven:" + a.server_name))
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    assert join_remote(bob, "#ten:" + a.server_name, None).status_code == 200
    bob.send_ok(room_id, "in a v10 room")
    wait_bodies(alice, room_id, ["in a v10 room"])
    # v10 events carry origin (it is protected by the v10 redaction rules)
    pdu = json.loads(a.sql("SELECT json FROM events WHERE room_id = %s AND type = 'm.room.message'", room_id)[0][0])
    assert pdu["origin"] == b.server_name


def test_gap_state_fetched_and_unfillable_gap_refused(make_server, fake):
    a = make_server()
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    room, fred = fake_join(a, fake, room_id)
    state_before_q = list(room.state.values())
    # Q (a second user joins), R, S: S is sent, get_missing_events gives R
    # only; the state at Q comes from /state_ids (+ /state or /event)
    greta = fake.user("greta")
    q_ev = room.make(fake.name, fake.key, "m.room.member", greta, {"membership": "join"}, state_key=greta)
    qid = room.add(q_ev)
    r_ev = room.make(fake.name, fake.key, "m.room.message", greta, {"msgtype": "m.text", "body": "R"})
    room.add(r_ev)
    s_ev = room.make(fake.name, fake.key, "m.room.message", greta, {"msgtype": "m.text", "body": "S"})
    room.add(s_ev)
    fake.events.update(room.events)
    fake.state_at[qid] = state_before_q
    fake.gme_answer = [r_ev]
    res = fake.send(a, [s_ev])
    assert res == {event_id(s_ev): {}}, res
    paths = [p for _, p in fake.requests]
    assert any(p.startswith("/_matrix/federation/v1/state_ids/") and q(qid) in p for p in paths), paths
    assert bodies(alice, room_id)[-2:] == ["R", "S"]
    # Q is known as an outlier with the state after it: greta is a member
    assert a.sql("SELECT outlier, state_group IS NOT NULL FROM events WHERE event_id = %s", qid) == [(True, True)]
    # a gap the sender will not fill: the event is refused, no state asked
    hidden = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "hidden"})
    room.add(hidden)
    shown = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "orphan"})
    fake.gme_answer = []
    n = len(fake.requests)
    res = fake.send(a, [shown])
    assert "prev_events" in res[event_id(shown)]["error"], res
    assert not any("/state_ids/" in p for _, p in fake.requests[n:])
    assert "orphan" not in bodies(alice, room_id)


@pytest.mark.parametrize("version", ["1", "2", "3"])
def test_old_room_versions_across_servers(make_server, version):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    room_id = alice.create_room(preset="public_chat", room_version=version)
    assert join_remote(bob, room_id, a.server_name).status_code == 200
    alice.send_ok(room_id, "v%s from a" % version)
    wait_bodies(bob, room_id, ["v%s from a" % version])
    bob.send_ok(room_id, "v%s from b" % version)
    wait_bodies(alice, room_id, ["v%s from a" % version, "v%s from b" % version])
    pdu = json.loads(a.sql("SELECT json FROM events WHERE room_id = %s AND type = 'm.room.message' "
                           "AND sender = %s", room_id, bob.user_id)[0][0])
    if version in ("1", "2"):
        # references carry the reference hash; the event names itself on b
        assert isinstance(pdu["prev_events"][0], list) and "sha256" in pdu["prev_events"][0][1]
        assert pdu["event_id"].endswith(":" + b.server_name)
    else:
        assert isinstance(pdu["prev_events"][0], str)


def test_inbound_redactions(make_server, fake):
    a = make_server(config_extra='rooms = { default_room_version = "10"; };')
    alice = User(a)
    room_id = alice.create_room(preset="public_chat")
    other_room = alice.create_room(preset="public_chat")
    room, fred = fake_join(a, fake, room_id)
    msg = room.make(fake.name, fake.key, "m.room.message", fred, {"msgtype": "m.text", "body": "oops"})
    assert fake.send(a, [msg]) == {event_id(msg): {}}
    mid = room.add(msg)
    # fred redacts his own message: applied, redacted_by set
    red = room.make(fake.name, fake.key, "m.room.redaction", fred, {})
    red["redacts"] = mid
    sign_event(red, fake.name, fake.key)
    assert fake.send(a, [red]) == {event_id(red): {}}
    rid = room.add(red)
    ev = alice.get("/rooms/%s/event/%s" % (q(room_id), q(mid))).json()
    assert ev["content"] == {} and ev["unsigned"]["redacted_by"] == rid, ev
    # fred may not redact alice's message (power level)
    aid = alice.send_ok(room_id, "mine")
    red2 = room.make(fake.name, fake.key, "m.room.redaction", fred, {})
    red2["redacts"] = aid
    sign_event(red2, fake.name, fake.key)
    fake.send(a, [red2])
    room.add(red2)
    assert alice.get("/rooms/%s/event/%s" % (q(room_id), q(aid))).json()["content"]["body"] == "mine"
    # a redaction of an event of another room: rejected
    oid = alice.send_ok(other_room, "elsewhere")
    red3 = room.make(fake.name, fake.key, "m.room.redaction", fred, {})
    red3["redacts"] = oid
    sign_event(red3, fake.name, fake.key)
    fake.send(a, [red3])
    assert a.sql("SELECT rejected FROM events WHERE event_id = %s", event_id(red3)) == [(True,)]
    assert alice.get("/rooms/%s/event/%s" % (q(other_room), q(oid))).json()["content"]["body"] == "elsewhere"


def a_messages(s, room_id, server_name):
    """The bodies of the messages sent from server_name, in s's stream order."""
    return [r[0] for r in s.sql(
        "SELECT json::jsonb->'content'->>'body' FROM events WHERE room_id = %s AND type = 'm.room.message' "
        "AND sender LIKE %s AND NOT outlier AND NOT rejected ORDER BY stream_ordering",
        room_id, "%:" + server_name)]


def burst(users, room_id, prefix, per_user):
    """Concurrent PUT /send (group commit on the sending server)."""
    def run(u):
        for i in range(per_user):
            u.send_ok(room_id, "%s-%s-%d" % (prefix, u.name, i))
    ths = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in ths:
        t.start()
    for t in ths:
        t.join()


def test_burst_arrives_in_order_and_batched(make_server):
    a, b = make_server(), make_server()
    users = [User(a) for _ in range(4)]
    bob = User(b)
    room_id = users[0].create_room(preset="public_chat")
    for u in users[1:]:
        assert u.join(room_id).status_code == 200
    assert join_remote(bob, room_id, a.server_name).status_code == 200
    # 300 messages from 4 senders at once: all on b, in a's order, once each
    burst(users, room_id, "live", 75)
    sent = a_messages(a, room_id, a.server_name)
    assert len(sent) == 300 and len(set(sent)) == 300
    wait_for(lambda: len(a_messages(b, room_id, a.server_name)) >= 300, timeout=120, what="300 messages on b")
    assert a_messages(b, room_id, a.server_name) == sent
    # b down while 120 more are sent: a's queue for b goes in full
    # transactions (at most 50 PDUs each) once b is back
    b.stop()
    mark = b.sql("SELECT coalesce(max(id), 0) FROM federation_audit_log")[0][0]
    burst(users, room_id, "queued", 30)
    sent = a_messages(a, room_id, a.server_name)
    assert len(sent) == 420
    b.start()
    bob.send_ok(room_id, "b is back")  # a hears from b: its back-off ends
    wait_for(lambda: len(a_messages(b, room_id, a.server_name)) >= 420, timeout=120, what="420 messages on b")
    assert a_messages(b, room_id, a.server_name) == sent
    sizes = [r[0] for r in b.sql("SELECT (details->>'pdus')::int FROM federation_audit_log WHERE id > %s "
                                 "AND action = 'transaction.received' AND origin_server = %s ORDER BY id",
                                 mark, a.server_name)]
    # the transaction that failed while b was down is resent as it was;
    # the rest of the 120 fill transactions of 50
    assert sum(sizes) >= 120 and max(sizes) == 50 and len([n for n in sizes if n > 0]) <= 4, sizes
    wait_bodies(users[0], room_id, ["b is back"])
