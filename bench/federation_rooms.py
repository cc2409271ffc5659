"""bench/federation_rooms.py - figures for issue 7 (rooms and calls over
federation), driven by bench/federation_rooms.sh (which builds, starts
PostgreSQL and sets the environment). Two servers A and B on loopback over
TLS from a development CA; every figure has a baseline from the same run
on A alone. Prints figures; never passes or fails."""
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import requests  # noqa: E402

from conftest import Server, lib_sh  # noqa: E402
from rooms_util import User  # noqa: E402

AURA = "/_auralink/client/v1"


def quiet(s):
    with open(s.config_path) as f:
        conf = f.read()
    with open(s.config_path, "w") as f:
        f.write(conf.replace('log_level = "info"', 'log_level = "warn"'))


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def line(what, xs):
    print("%-52s n=%-5d p50 %8.2f ms  p99 %8.2f ms" % (what, len(xs), statistics.median(xs), pct(xs, 99)))


def ms(t0):
    return (time.perf_counter() - t0) * 1000


def timed_join(user, room, via=None):
    t0 = time.perf_counter()
    r = user.post("/join/%s" % room + ("?server_name=%s" % via if via else ""))
    dt = ms(t0)
    assert r.status_code == 200, r.text
    return dt


def latency(sender, receiver, room, n):
    """PUT /send by sender -> the event in receiver's long-polling /sync."""
    out = []
    since = receiver.sync()["next_batch"]
    for i in range(n):
        body = "m-%d-%s" % (i, uuid.uuid4().hex[:6])
        got = {}

        def poll():
            nonlocal since
            deadline = time.time() + 30
            while time.time() < deadline:
                s = receiver.sync(since=since, timeout=10000)
                since = s["next_batch"]
                tl = s.get("rooms", {}).get("join", {}).get(room, {}).get("timeline", {}).get("events", [])
                if any(e.get("content", {}).get("body") == body for e in tl):
                    got["t"] = time.perf_counter()
                    return
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.02)  # the /sync is parked
        t0 = time.perf_counter()
        sender.send_ok(room, body)
        th.join()
        if "t" in got:
            out.append((got["t"] - t0) * 1000)
    return out


def call_latency(caller, callee, room, n):
    """m.call.invite on the caller's server -> ringing in GET /calls of the callee."""
    out = []
    sess = requests.Session()
    for _ in range(n):
        call_id = "c-" + uuid.uuid4().hex
        t0 = time.perf_counter()
        r = caller.put("/rooms/%s/send/m.call.invite/%s" % (room, uuid.uuid4().hex),
                       {"call_id": call_id, "party_id": "p", "version": "1", "lifetime": 60000,
                        "offer": {"type": "offer", "sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n"}})
        assert r.status_code == 200, r.text
        deadline = time.time() + 30
        while time.time() < deadline:
            calls = sess.get(callee.s.base + AURA + "/calls", headers=callee.h, params={"limit": "5"},
                             timeout=10).json()["calls"]
            if any(c["call_id"] == call_id and c["call_status"] == "ringing" for c in calls):
                out.append(ms(t0))
                break
            time.sleep(0.002)
        caller.put("/rooms/%s/send/m.call.hangup/%s" % (room, uuid.uuid4().hex),
                   {"call_id": call_id, "party_id": "p", "version": "1"})
    return out


def burst(senders, room, n):
    """n sends spread over the senders (one thread each); seconds taken."""
    per = n // len(senders)

    def run(u):
        for i in range(per):
            u.send_ok(room, "burst-%d" % i)
    ths = [threading.Thread(target=run, args=(u,)) for u in senders]
    t0 = time.perf_counter()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return per * len(senders), time.perf_counter() - t0


def main():
    n_members = int(os.environ.get("FR_BENCH_MEMBERS", "100"))
    n_joins = int(os.environ.get("FR_BENCH_JOINS", "5"))
    n_msgs = int(os.environ.get("FR_BENCH_MSGS", "100"))
    n_calls = int(os.environ.get("FR_BENCH_CALLS", "20"))
    n_pdus = int(os.environ.get("FR_BENCH_PDUS", "1000"))
    root = tempfile.mkdtemp(prefix="auralink-frbench.")
    ca = os.path.join(root, "ca")
    lib_sh("al_ca_ensure %s" % ca)
    servers = []
    try:
        for name in ("a", "b"):
            d = os.path.join(root, name)
            os.makedirs(d)
            s = Server(d, ca)
            quiet(s)
            s.start()
            servers.append(s)
        a, b = servers
        alice = User(a)
        members = [User(a) for _ in range(n_members - 1)]
        # n_joins rooms of n_members members each (A's users): a remote
        # join of each is a make_join/send_join of its own (B not yet in it)
        rooms = [alice.create_room(preset="public_chat") for _ in range(n_joins)]
        local = []
        for room in rooms:
            for u in members:
                local.append(timed_join(u, room))
        # B fetches A's keys on a small room first
        bobs = [User(b) for _ in range(2)]
        first = timed_join(bobs[0], alice.create_room(preset="public_chat"), a.server_name)
        remote = [timed_join(bobs[0], room, a.server_name) for room in rooms]
        # B is in the room now: another user of B joins it without federation
        resident = [timed_join(bobs[1], room, a.server_name) for room in rooms]
        print("Join of a room of %d members (A's rooms, %d of them)" % (n_members, n_joins))
        line("baseline: local join on A (members 2..%d)" % n_members, local)
        print("%-52s %.2f ms" % ("remote join from B, first (keys fetched, 1 member)", first))
        line("remote join from B of a %d-member room" % n_members, remote)
        line("join from B, B already in the room", resident)

        # message latency: a DM-sized room shared by A and B
        bob = bobs[0]
        carol = User(a)
        mroom = alice.create_room(preset="public_chat")
        assert carol.join(mroom).status_code == 200
        timed_join(bob, mroom, a.server_name)
        print("Message latency, PUT /send on A -> event in a long-polling /sync")
        line("baseline: to a user of A", latency(alice, carol, mroom, n_msgs))
        line("A -> B", latency(alice, bob, mroom, n_msgs))

        # calls: the callee alone with the caller in a DM
        dave = User(a)
        droom = alice.create_room(invite=[dave.user_id], is_direct=True)
        assert dave.join(droom).status_code == 200
        froom = alice.create_room(invite=[bob.user_id], is_direct=True)
        deadline = time.time() + 30
        while time.time() < deadline and bob.join(froom).status_code != 200:
            time.sleep(0.1)
        print("m.call.invite -> ringing in GET /calls of the callee's server")
        line("baseline: callee on A", call_latency(alice, dave, droom, n_calls))
        line("callee on B", call_latency(alice, bob, froom, n_calls))

        # sustained PDUs A -> B into the shared room
        senders = [alice, carol] + [User(a) for _ in range(2)]
        for u in senders[2:]:
            assert u.join(mroom).status_code == 200
        before = b.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", mroom)[0][0]
        t0 = time.perf_counter()
        sent, dt_send = burst(senders, mroom, n_pdus)
        deadline = time.perf_counter() + 300
        got = 0
        while time.perf_counter() < deadline:
            got = b.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'",
                        mroom)[0][0] - before
            if got >= sent:
                break
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        print("Sustained PDUs A -> B: %d messages from %d concurrent senders" % (sent, len(senders)))
        print("%-52s %8.0f PDUs/s (%d of %d on B in %.2f s)" % ("A -> B (first send to last stored on B)",
                                                                 got / dt, got, sent, dt))
        print("%-52s %8.0f events/s" % ("baseline: PUT /send rate on A", sent / dt_send))
    finally:
        for s in servers:
            s.stop()
            s.drop()


if __name__ == "__main__":
    main()
