"""Rooms on one server: createRoom, membership, send, state, redactions,
aliases, /messages, auth-rule refusals, event hashes/IDs/signatures
cross-checked with python3-canonicaljson and python3-signedjson, and 20
concurrent senders keeping one linear DAG."""
import concurrent.futures
import hashlib
import json
import time
from urllib.parse import quote

import canonicaljson
import signedjson.key
import signedjson.sign
from unpaddedbase64 import encode_base64

from rooms_util import C, User, errcode


def state_of(u, room_id):
    r = u.get("/rooms/%s/state" % room_id)
    assert r.status_code == 200, r.text
    return {(e["type"], e["state_key"]): e for e in r.json()}


def test_create_room_defaults(server):
    a = User(server)
    room = a.create_room(name="Room", topic="Topic", preset="public_chat")
    st = state_of(a, room)
    assert st[("m.room.create", "")]["content"]["room_version"] == "11"
    assert "creator" not in st[("m.room.create", "")]["content"]
    assert st[("m.room.member", a.user_id)]["content"]["membership"] == "join"
    assert st[("m.room.join_rules", "")]["content"]["join_rule"] == "public"
    assert st[("m.room.power_levels", "")]["content"]["users"] == {a.user_id: 100}
    assert a.get("/rooms/%s/state/m.room.name" % room).json() == {"name": "Room"}
    assert a.get("/rooms/%s/state/m.room.topic/" % room).json() == {"topic": "Topic"}
    assert a.get("/joined_rooms").json() == {"joined_rooms": [room]}
    r = a.get("/rooms/%s/state/m.room.nothing" % room)
    assert r.status_code == 404


def test_room_versions(server):
    a = User(server)
    room = a.create_room(room_version="10")
    st = state_of(a, room)
    assert st[("m.room.create", "")]["content"] == {"room_version": "10", "creator": a.user_id}
    r = a.post("/createRoom", {"room_version": "99"})
    assert r.status_code == 400 and errcode(r) == "M_UNSUPPORTED_ROOM_VERSION"
    r = a.post("/createRoom", {"room_version": 10})
    assert r.status_code == 400 and errcode(r) == "M_BAD_JSON"


def test_event_ids_hashes_signatures_cross_check(server):
    """Every stored PDU: content hash, reference hash -> event ID and our
    ed25519 signature, recomputed in Python."""
    a = User(server)
    for version in ("10", "11"):
        room = a.create_room(room_version=version, name="x")
        a.send_ok(room, "hello")
        rows = server.sql("SELECT event_id, json FROM events WHERE room_id = %s", room)
        key_doc = server.get("/_matrix/key/v2/server").json()
        (key_id, vk), = key_doc["verify_keys"].items()
        verify_key = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":")[1], vk["key"])
        assert len(rows) >= 7
        for event_id, text in rows:
            pdu = json.loads(text)
            stripped = {k: v for k, v in pdu.items() if k not in ("unsigned", "signatures", "hashes")}
            h = encode_base64(hashlib.sha256(canonicaljson.encode_canonical_json(stripped)).digest())
            assert pdu["hashes"]["sha256"] == h
            # redaction (v10 keeps origin; v11 does not), then reference hash
            keep = ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
                    "depth", "prev_events", "auth_events", "origin_server_ts"]
            if version == "10":
                keep += ["origin", "membership", "prev_state"]
            red = {k: v for k, v in pdu.items() if k in keep}
            c = pdu["content"]
            t = pdu["type"]
            if t == "m.room.create":
                red["content"] = c if version == "11" else {k: c[k] for k in ("creator",) if k in c}
            elif t == "m.room.member":
                red["content"] = {k: c[k] for k in ("membership", "join_authorised_via_users_server") if k in c}
            elif t == "m.room.power_levels":
                ks = ["ban", "events", "events_default", "kick", "redact", "state_default", "users", "users_default"]
                if version == "11":
                    ks.append("invite")
                red["content"] = {k: c[k] for k in ks if k in c}
            elif t == "m.room.join_rules":
                red["content"] = {k: c[k] for k in ("join_rule", "allow") if k in c}
            elif t == "m.room.history_visibility":
                red["content"] = {k: c[k] for k in ("history_visibility",) if k in c}
            else:
                red["content"] = {}
            ref = {k: v for k, v in red.items() if k not in ("signatures", "unsigned")}
            eid = "$" + encode_base64(hashlib.sha256(canonicaljson.encode_canonical_json(ref)).digest(), urlsafe=True)
            assert eid == event_id
            signedjson.sign.verify_signed_json(red, server.server_name, verify_key)


def test_three_users_invite_join_talk_kick_ban(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="private_chat", invite=[b.user_id])
    # c is not invited: invite-only room
    r = c.join(room)
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    assert b.join(room).status_code == 200
    b.send_ok(room, "hello from b")
    # b (power 0) can invite in a private_chat room (invite level 0)
    assert b.post("/rooms/%s/invite" % room, {"user_id": c.user_id}).status_code == 200
    assert c.join(room).status_code == 200
    joined = a.get("/rooms/%s/joined_members" % room).json()["joined"]
    assert set(joined) == {a.user_id, b.user_id, c.user_id}
    # topic: b lacks power (state_default 50)
    r = b.put("/rooms/%s/state/m.room.topic" % room, {"topic": "b's"})
    assert r.status_code == 403
    assert a.put("/rooms/%s/state/m.room.topic" % room, {"topic": "a's"}).status_code == 200
    # b cannot kick c (kick 50)
    r = b.post("/rooms/%s/kick" % room, {"user_id": c.user_id})
    assert r.status_code == 403
    assert a.post("/rooms/%s/kick" % room, {"user_id": c.user_id, "reason": "bye"}).status_code == 200
    r = c.send(room, "still here?")
    assert r.status_code == 403
    # ban b; b can no longer join, even after an invite attempt
    assert a.post("/rooms/%s/ban" % room, {"user_id": b.user_id}).status_code == 200
    assert b.join(room).status_code == 403
    r = a.post("/rooms/%s/invite" % room, {"user_id": b.user_id})
    assert r.status_code == 403
    assert a.post("/rooms/%s/unban" % room, {"user_id": b.user_id}).status_code == 200
    members = a.get("/rooms/%s/members" % room).json()["chunk"]
    ms = {m["state_key"]: m["content"]["membership"] for m in members}
    assert ms == {a.user_id: "join", b.user_id: "leave", c.user_id: "leave"}
    # c left (kicked): can read history up to the kick, then forget
    r = c.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 50})
    assert r.status_code == 200
    bodies = [e["content"].get("body") for e in r.json()["chunk"]]
    assert "hello from b" in bodies
    assert c.post("/rooms/%s/forget" % room).status_code == 200
    # a leaves
    assert a.post("/rooms/%s/leave" % room).status_code == 200
    assert a.get("/joined_rooms").json()["joined_rooms"] == []


def test_power_levels_rules(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    pl = a.get("/rooms/%s/state/m.room.power_levels" % room).json()
    pl["users"][b.user_id] = 50
    assert a.put("/rooms/%s/state/m.room.power_levels" % room, pl).status_code == 200
    # b (50) cannot raise herself to 100 nor lower a
    pl2 = json.loads(json.dumps(pl))
    pl2["users"][b.user_id] = 100
    r = b.put("/rooms/%s/state/m.room.power_levels" % room, pl2)
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    pl3 = json.loads(json.dumps(pl))
    pl3["users"][a.user_id] = 0
    assert b.put("/rooms/%s/state/m.room.power_levels" % room, pl3).status_code == 403
    # power levels must be integers in v10+
    pl4 = json.loads(json.dumps(pl))
    pl4["ban"] = "50"
    assert a.put("/rooms/%s/state/m.room.power_levels" % room, pl4).status_code == 403
    # state keys starting with @ belong to that user
    r = b.put("/rooms/%s/state/org.example.x/%s" % (room, a.user_id), {})
    assert r.status_code in (403,)
    # b can now set the topic (50 >= state_default 50)
    assert b.put("/rooms/%s/state/m.room.topic" % room, {"topic": "t"}).status_code == 200


def test_non_member_refusals(server):
    a, b = User(server), User(server)
    room = a.create_room()
    assert b.send(room).status_code == 403
    assert b.post("/rooms/%s/invite" % room, {"user_id": a.user_id}).status_code == 403
    assert b.get("/rooms/%s/state" % room).status_code == 403
    assert b.get("/rooms/%s/messages" % room).status_code == 403
    assert b.post("/rooms/%s/leave" % room).status_code == 403
    r = a.get("/rooms/!nope:%s/state" % server.server_name)
    assert r.status_code == 403
    r = a.send("!nope:%s" % server.server_name)
    assert r.status_code == 404


def test_txn_idempotent_and_redaction(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    e1 = a.send_ok(room, "one", txn="t1")
    e2 = a.send_ok(room, "one again", txn="t1")
    assert e1 == e2
    n = server.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", room)[0][0]
    assert n == 1
    # b may not redact a's event (redact 50); a may
    r = b.put("/rooms/%s/redact/%s/r1" % (room, e1), {"reason": "no"})
    assert r.status_code == 403
    r = a.put("/rooms/%s/redact/%s/r1" % (room, e1), {"reason": "oops"})
    assert r.status_code == 200, r.text
    ev = a.get("/rooms/%s/event/%s" % (room, e1)).json()
    assert ev["content"] == {}
    assert ev["unsigned"]["redacted_because"]["content"]["redacts"] == e1


def test_aliases(server):
    a, b = User(server), User(server)
    room = a.create_room(preset="public_chat", room_alias_name="lobby")
    alias = "#lobby:%s" % server.server_name
    r = a.get("/directory/room/%s" % quote(alias))
    assert r.status_code == 200 and r.json()["room_id"] == room
    st = state_of(a, room)
    assert st[("m.room.canonical_alias", "")]["content"]["alias"] == alias
    r = b.post("/createRoom", {"room_alias_name": "lobby"})
    assert r.status_code == 400 and errcode(r) == "M_ROOM_IN_USE"
    r = b.post("/join/%s" % quote(alias))
    assert r.status_code == 200 and r.json()["room_id"] == room
    alias2 = "#other:%s" % server.server_name
    assert a.put("/directory/room/%s" % quote(alias2), {"room_id": room}).status_code == 200
    assert a.put("/directory/room/%s" % quote(alias2), {"room_id": room}).status_code == 409
    assert b.delete("/directory/room/%s" % quote(alias2)).status_code == 403
    assert a.delete("/directory/room/%s" % quote(alias2)).status_code == 200
    assert a.get("/directory/room/%s" % quote(alias2)).status_code == 404


def test_messages_pagination(server):
    a = User(server)
    room = a.create_room()
    ids = [a.send_ok(room, "m%d" % i) for i in range(15)]
    r = a.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 5}).json()
    assert [e["event_id"] for e in r["chunk"]] == ids[::-1][:5]
    r2 = a.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 5, "from": r["end"]}).json()
    assert [e["event_id"] for e in r2["chunk"]] == ids[::-1][5:10]
    # forwards from there returns what we skipped
    r3 = a.get("/rooms/%s/messages" % room, params={"dir": "f", "limit": 10, "from": r2["end"]}).json()
    assert [e["event_id"] for e in r3["chunk"]] == ids[10:15] or \
        [e["event_id"] for e in r3["chunk"]][:10] == ids[5:15][:10]
    ctx = a.get("/rooms/%s/context/%s" % (room, ids[7]), params={"limit": 4}).json()
    assert ctx["event"]["event_id"] == ids[7]
    assert [e["event_id"] for e in ctx["events_before"]] == [ids[6], ids[5]]
    assert [e["event_id"] for e in ctx["events_after"]] == [ids[8], ids[9]]


def room_with_members(server, n):
    a = User(server)
    room = a.create_room(preset="public_chat")
    users = [User(server) for _ in range(n)]
    for u in users:
        assert u.join(room).status_code == 200
    return a, room, users


def assert_one_line(server, room, sent):
    """Every sent event stored; depths 1..N; each event's only prev_event
    the one before it."""
    rows = server.sql("SELECT event_id, depth, json FROM events WHERE room_id = %s ORDER BY depth", room)
    assert set(sent) <= {r[0] for r in rows}
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1))
    prev = None
    for event_id, _, text in rows:
        assert json.loads(text)["prev_events"] == ([prev] if prev else [])
        prev = event_id
    return rows


def test_concurrent_senders_linear_dag(server):
    a, room, users = room_with_members(server, 20)

    def blast(u):
        return [u.send_ok(room, "x%d" % i) for i in range(10)]

    with concurrent.futures.ThreadPoolExecutor(20) as ex:
        sent = [e for lst in ex.map(blast, users) for e in lst]
    assert len(set(sent)) == 200
    rows = assert_one_line(server, room, sent)
    n_edges = server.sql("SELECT count(*) FROM event_edges e JOIN events v USING (event_id) WHERE v.room_id = %s",
                         room)[0][0]
    assert n_edges == len(rows) - 1


def test_state_changes_between_pipelined_batches(server):
    """Messages from many senders are written in batches, the next one sent
    while the one before it is in flight, built on it as if committed;
    topic changes written meanwhile by the other path make batches find
    the room moved (nothing written, written again). Every message is
    stored once and the room stays one line."""
    a, room, users = room_with_members(server, 12)

    def blast(u):
        return [u.send_ok(room, "m%d" % i) for i in range(15)]

    def topics():
        for i in range(15):
            r = a.put("/rooms/%s/state/m.room.topic" % room, {"topic": "t%d" % i})
            assert r.status_code == 200, r.text
            time.sleep(0.01)

    with concurrent.futures.ThreadPoolExecutor(13) as ex:
        t = ex.submit(topics)
        sent = [e for lst in ex.map(blast, users) for e in lst]
        t.result()
    assert len(set(sent)) == len(sent) == 180
    assert_one_line(server, room, sent)
    messages = server.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", room)
    assert messages[0][0] == 180
    assert server.sql("SELECT count(*) FROM room_extremities WHERE room_id = %s", room)[0][0] == 1


def test_concurrent_sends_each_authorised(server):
    """PUT /send is group-committed per room: within one batch each event
    is still authorised on its own (a non-member's is refused, the others
    commit), and a state change written between batches (by another path)
    is seen by the next batch."""
    a, b, outsider = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    senders = [a, b, outsider] * 10
    with concurrent.futures.ThreadPoolExecutor(15) as ex:
        rs = list(ex.map(lambda u: (u, u.send(room, "x")), senders))
    for u, r in rs:
        if u is outsider:
            assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", r.text
        else:
            assert r.status_code == 200, r.text
    n = server.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", room)[0][0]
    assert n == 20
    assert b.send(room, "before").status_code == 200
    pl = a.get("/rooms/%s/state/m.room.power_levels" % room).json()
    pl["events_default"] = 50
    assert a.put("/rooms/%s/state/m.room.power_levels" % room, pl).status_code == 200
    r = b.send(room, "after")
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", r.text
    assert a.send(room, "admin").status_code == 200
    assert a.post("/rooms/%s/ban" % room, {"user_id": b.user_id}).status_code == 200
    pl["events_default"] = 0
    assert a.put("/rooms/%s/state/m.room.power_levels" % room, pl).status_code == 200
    r = b.send(room, "banned")
    assert r.status_code == 403, r.text
    rows = server.sql("SELECT depth, json FROM events WHERE room_id = %s ORDER BY stream_ordering", room)
    assert [d for d, _ in rows] == list(range(1, len(rows) + 1))


def test_txn_scope_room_and_endpoint(server):
    a = User(server)
    r1, r2 = a.create_room(), a.create_room()
    e1 = a.send_ok(r1, "one", txn="same")
    e2 = a.send_ok(r2, "two", txn="same")
    assert e1 != e2
    for room, body in ((r1, "one"), (r2, "two")):
        rows = server.sql("SELECT json FROM events WHERE room_id = %s AND type = 'm.room.message'", room)
        assert [json.loads(t)["content"]["body"] for t, in rows] == [body]
    # a redaction with the same txnId is another request
    r = a.put("/rooms/%s/redact/%s/same" % (r1, e1), {})
    assert r.status_code == 200, r.text
    red = r.json()["event_id"]
    assert red not in (e1, e2)
    # and each is idempotent on its own
    assert a.put("/rooms/%s/redact/%s/same" % (r1, e1), {}).json()["event_id"] == red
    assert a.send_ok(r1, "one", txn="same") == e1


def test_txn_concurrent_identical_puts(server):
    a = User(server)
    room = a.create_room()
    for attempt in range(3):
        txn = "race%d" % attempt
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            rs = list(ex.map(lambda _: a.send(room, "racing", txn=txn), range(8)))
        assert [r.status_code for r in rs] == [200] * 8, [r.text for r in rs]
        assert len({r.json()["event_id"] for r in rs}) == 1
        n = server.sql("SELECT count(*) FROM events WHERE room_id = %s AND txn_id = %s", room, txn)[0][0]
        assert n == 1


def test_unban_needs_a_ban(server):
    a, b, c = User(server), User(server), User(server)
    room = a.create_room(preset="public_chat")
    assert b.join(room).status_code == 200
    # joined, never a member, left: not banned
    for target in (b.user_id, c.user_id):
        r = a.post("/rooms/%s/unban" % room, {"user_id": target})
        assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN", r.text
    assert b.post("/rooms/%s/leave" % room).status_code == 200
    r = a.post("/rooms/%s/unban" % room, {"user_id": b.user_id})
    assert r.status_code == 403 and errcode(r) == "M_FORBIDDEN"
    n_before = server.sql("SELECT count(*) FROM events WHERE room_id = %s", room)[0][0]
    assert a.post("/rooms/%s/ban" % room, {"user_id": b.user_id}).status_code == 200
    assert a.post("/rooms/%s/unban" % room, {"user_id": b.user_id}).status_code == 200
    assert a.get("/rooms/%s/state/m.room.member/%s" % (room, b.user_id)).json()["membership"] == "leave"
    # a second unban finds no ban
    r = a.post("/rooms/%s/unban" % room, {"user_id": b.user_id})
    assert r.status_code == 403
    assert server.sql("SELECT count(*) FROM events WHERE room_id = %s", room)[0][0] == n_before + 2
    r = a.post("/rooms/%s/unban" % room, {})
    assert r.status_code == 400
