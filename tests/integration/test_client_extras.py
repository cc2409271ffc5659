"""Client API behaviour SyTest checks: filter validation, /messages from a
sync prev_batch, idempotent state and membership, ban/kick/redact checks,
archived rooms in sync, presence, the public room directory, pushers and
user-interactive auth sessions."""
import uuid

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

