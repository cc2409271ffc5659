"""Calls over federation (issue 7): the m.call.* events of a room shared by
two real servers are tracked on both. The callee's server makes its row
from the invite PDU it receives (ringing, or refused for an unknown caller
with block_unknown_callers, the refusal going back as a normal event), and
the caller's server follows the callee's answer and hangup."""
import time

from test_calls import AUDIO_SDP, User, answer, dm, hangup, invite, quiet, row, wait_for


def test_call_across_servers_ringing_answer_hangup(make_server):
    a = make_server()
    b = make_server()
    alice, bob = User(a), User(b)
    alice.node(), bob.node()
    room = dm(alice, bob)  # alice's DM; bob joins over federation
    invite(alice, room, "c-x", invitee=bob.user_id)
    # B makes its row from the invite PDU: bob's phone rings there
    assert wait_for(lambda: b.sql("SELECT call_status FROM federated_calls WHERE call_id = 'c-x'") == [("ringing",)],
                    timeout=20), b.read_log()[-3000:]
    assert row(b, "c-x", "direction", "caller_user_id", "callee_user_id", "caller_server", "callee_server") == (
        "inbound", alice.user_id, bob.user_id, a.server_name, b.server_name)
    assert row(a, "c-x", "direction", "callee_user_id") == ("outbound", bob.user_id)
    assert [c["call_status"] for c in bob.calls()] == ["ringing"]
    # the route A picked is recorded on both sides
    route_id = wait_for(lambda: row(a, "c-x", "route_id::text")[0], timeout=15)
    assert route_id, a.read_log()[-3000:]
    assert wait_for(lambda: row(b, "c-x", "route_id::text")[0] == route_id, timeout=30), b.read_log()[-3000:]
    # bob answers on B: A sees the remote answer
    answer(bob, room, "c-x")
    assert wait_for(lambda: row(a, "c-x", "call_status")[0] == "connected", timeout=20), a.read_log()[-3000:]
    assert row(b, "c-x", "call_status") == ("connected",)
    time.sleep(1.5)
    # alice hangs up on A: B ends the call
    hangup(alice, room, "c-x")
    assert row(a, "c-x", "call_status") == ("ended",)
    assert wait_for(lambda: row(b, "c-x", "call_status")[0] == "ended", timeout=20), b.read_log()[-3000:]
    da, ea = row(a, "c-x", "duration_seconds", "end_reason")
    db_, eb = row(b, "c-x", "duration_seconds", "end_reason")
    assert da is not None and db_ is not None and da >= 1 and abs(da - db_) <= 1, (da, db_)
    assert ea == eb, (ea, eb)
    ca, ta = row(a, "c-x", "connected_at", "ended_at")
    cb, tb = row(b, "c-x", "connected_at", "ended_at")
    assert abs(((ta - ca) - (tb - cb)).total_seconds()) <= 1
    for user in (alice, bob):
        c = user.calls()[0]
        assert c["call_status"] == "ended" and c["route_id"] == route_id
    quiet(a)
    quiet(b)


def test_remote_unknown_caller_blocked(make_server):
    a = make_server()
    b = make_server()
    carol, dave = User(a), User(b)
    dave.app("chat.app")
    dave.patch_aura(block_unknown_callers=True)
    carol.node(), dave.node()
    # carol's DM, dave joined it over federation; they share no other room
    room = dm(carol, dave)
    invite(carol, room, "c-fblock")
    # B refuses on dave's behalf ...
    assert wait_for(lambda: b.sql("SELECT call_status FROM federated_calls WHERE call_id = 'c-fblock'") == [
        ("failed",)], timeout=20), b.read_log()[-3000:]
    assert row(b, "c-fblock", "end_reason", "notified_apps", "ringing_at") == ("blocked_unknown_caller", [], None)
    # ... with an m.call.reject that reaches A as a normal event of dave's
    assert wait_for(lambda: row(a, "c-fblock", "call_status")[0] == "failed", timeout=20), a.read_log()[-3000:]
    msgs = carol.get("/rooms/%s/messages" % room, params={"dir": "b", "limit": 5}).json()["chunk"]
    rejects = [e for e in msgs if e["type"] == "m.call.reject"]
    assert len(rejects) == 1 and rejects[0]["sender"] == dave.user_id
    assert rejects[0]["content"] == {"call_id": "c-fblock", "party_id": "org.auralink.server", "version": "1"}
    # the caller is not told why; the callee is
    assert carol.calls()[0]["end_reason"] == "rejected"
    assert dave.calls()[0]["end_reason"] == "blocked_unknown_caller"
    # a known caller (dave created the DM) rings
    room2 = dm(carol, dave, created_by=dave)
    invite(carol, room2, "c-fknown", sdp=AUDIO_SDP)
    assert wait_for(lambda: b.sql("SELECT call_status, notified_apps FROM federated_calls"
                                  " WHERE call_id = 'c-fknown'") == [("ringing", ["chat.app"])], timeout=20)
    quiet(a)
    quiet(b)
