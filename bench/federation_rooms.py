"""bench/federation_rooms.py - figures for issue 7 (rooms and calls over
federation), driven by bench/federation_rooms.sh (which builds, starts
PostgreSQL and sets the environment). Two servers A and B on loopback over
TLS from a development CA; every figure has a baseline from the same run
on A alone. Prints figures; never passes or fails."""
import os
import re
import statistics
import subprocess
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


WRK_SEND_LUA = """
local tokens = {%s}
local room = "%s"
local counter = 0
local body = '{"msgtype":"m.text","body":"wrk message"}'
-- setup runs in the main state; tid is a global of each thread's state
nthreads = 0
function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
end
function request()
  counter = counter + 1
  local t = tokens[(counter %% #tokens) + 1]
  return wrk.format("PUT", "/_matrix/client/v3/rooms/" .. room .. "/send/m.room.message/w" .. tid .. "-" .. counter,
                    {["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json"}, body)
end
"""


def wrk(args, url, script=None):
    """Run wrk; (requests/s, non-2xx count, output)."""
    cmd = ["wrk"] + args + ([("-s"), script] if script else []) + [url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return rps, int(m.group(1)) if m else 0, out


def count_messages(s, room):
    return s.sql("SELECT count(*) FROM events WHERE room_id = %s AND type = 'm.room.message'", room)[0][0]


def cpu_seconds(s):
    """User + system CPU time of a server process so far."""
    with open("/proc/%d/stat" % s.proc.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def inbound_txns(s):
    return s.sql("SELECT count(*) FROM federation_inbound_txns")[0][0]


def sustained_pdus(a, b, n_senders, conns, window, warmup, perf_dir=None):
    """wrk drives PUT /send on A (n_senders users, unique txnIds) into a
    room joined by two users of B, for warmup + window seconds; the
    messages stored on A and on B are counted at the start and the end of
    the window (the rates are those deltas), then the backlog is drained."""
    alice = User(a)
    room = alice.create_room(preset="public_chat")
    senders = [alice] + [User(a) for _ in range(n_senders - 1)]
    for u in senders[1:]:
        assert u.join(room).status_code == 200
    bobs = [User(b), User(b)]
    for u in bobs:
        deadline = time.time() + 30
        while u.post("/join/%s?server_name=%s" % (room, a.server_name)).status_code != 200:
            assert time.time() < deadline, "B cannot join"
            time.sleep(0.2)
    script = os.path.join(a.dir, "send.lua")
    with open(script, "w") as f:
        f.write(WRK_SEND_LUA % (", ".join('"%s"' % u.token for u in senders), room))
    wargs = ["-t2", "-c%d" % conns, "--timeout", "30s"]
    base_rps, _, _ = wrk(wargs + ["-d5s"], a.base + "/_matrix/client/versions")
    a0 = count_messages(a, room)
    b0 = count_messages(b, room)
    res = {}
    th = threading.Thread(target=lambda: res.update(out=wrk(wargs + ["-d%ds" % (warmup + window)], a.base, script)))
    th.start()
    time.sleep(warmup)
    t0 = time.perf_counter()
    a1, b1 = count_messages(a, room), count_messages(b, room)
    tx1, ca1, cb1 = inbound_txns(b), cpu_seconds(a), cpu_seconds(b)
    perf = [subprocess.Popen(["perf", "record", "-g", "-q", "-o", os.path.join(perf_dir, "perf-%s.data" % n),
                              "-p", str(s.proc.pid), "--", "sleep", str(window)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for n, s in (("a", a), ("b", b))] if perf_dir else []
    time.sleep(window)
    t1 = time.perf_counter()
    for p in perf:
        p.wait()
    a2, b2 = count_messages(a, room), count_messages(b, room)
    tx2, ca2, cb2 = inbound_txns(b), cpu_seconds(a), cpu_seconds(b)
    th.join()
    rps, bad, _ = res["out"]
    sent = count_messages(a, room) - a0
    deadline = time.perf_counter() + 300
    got = 0
    while time.perf_counter() < deadline:
        got = count_messages(b, room) - b0
        if got >= sent:
            break
        time.sleep(0.05)
    drained = time.perf_counter() - t1
    dt = t1 - t0
    print("Sustained PDUs A -> B: wrk -t2 -c%d, PUT /send by %d users of A into a room with 2 users of B; "
          "%d s window after %d s warm-up" % (conns, n_senders, window, warmup))
    print("%-52s %8.0f req/s" % ("baseline: GET /versions on A (wrk, same settings)", base_rps))
    print("%-52s %8.0f events/s (wrk: %.0f req/s, %d non-2xx)" % ("A: PUT /send accepted and stored on A",
                                                                  (a2 - a1) / dt, rps, bad))
    print("%-52s %8.0f PDUs/s (%.0f transactions/s, %.1f PDUs each)" % (
        "B: PDUs accepted and stored on B (same window)", (b2 - b1) / dt, (tx2 - tx1) / dt,
        (b2 - b1) / max(1, tx2 - tx1)))
    print("%-52s A %.2f, B %.2f CPU s per s" % ("server CPU in the window (process, not PostgreSQL)",
                                                (ca2 - ca1) / dt, (cb2 - cb1) / dt))
    print("%-52s %8d of %d (%s, %.1f s after the window)" % ("B: all messages of the run", got, sent,
                                                            "none lost" if got == sent else "MISSING",
                                                            drained))
    # after the window: wrk stopped, B works off what A queued meanwhile
    backlog = sent - (b2 - b0)
    if backlog > 500:
        print("%-52s %8.0f PDUs/s (%d queued on A at the end of the window)" % (
            "B: the backlog drained (A idle)", backlog / max(drained, 0.001), backlog))
    backlog_drain(a, b, bobs[0], room, wargs, script, max(5, window // 2))


def backlog_drain(a, b, bob, room, wargs, script, seconds):
    """B's accept rate with a standing queue: B is stopped while wrk sends
    on A for some seconds, then started; B's users speak (A's back-off
    for B ends) and B's stored rows are counted until it has them all."""
    b.stop()
    wrk(wargs + ["-d%ds" % seconds], a.base, script)
    b.start()
    want = count_messages(a, room)
    queued = want - count_messages(b, room)
    t0 = time.perf_counter()
    bob.send_ok(room, "b is back")
    deadline = t0 + 300
    got = count_messages(b, room)
    while got < want and time.perf_counter() < deadline:
        time.sleep(0.05)
        got = count_messages(b, room)
    dt = time.perf_counter() - t0
    print("%-52s %8.0f PDUs/s (%d queued while B was down, %s in %.1f s)" % (
        "B: a standing queue on A drained (B restarted)", queued / dt, queued,
        "all stored" if got >= want else "MISSING %d" % (want - got), dt))


def joins_latency_calls(a, b, n_members, n_joins, n_msgs, n_calls):
    """Remote join, message latency A -> B and call ringing, each next to
    its local baseline."""
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


def main():
    n_members = int(os.environ.get("FR_BENCH_MEMBERS", "100"))
    n_joins = int(os.environ.get("FR_BENCH_JOINS", "5"))
    n_msgs = int(os.environ.get("FR_BENCH_MSGS", "100"))
    n_calls = int(os.environ.get("FR_BENCH_CALLS", "20"))
    parts = os.environ.get("FR_BENCH_PARTS", "joins,pdus").split(",")
    n_senders = int(os.environ.get("FR_BENCH_SENDERS", "8"))
    n_conns = int(os.environ.get("FR_BENCH_CONNS", "32"))
    window = int(os.environ.get("FR_BENCH_WINDOW", "20"))
    warmup = int(os.environ.get("FR_BENCH_WARMUP", "3"))
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
        if "joins" in parts:
            joins_latency_calls(a, b, n_members, n_joins, n_msgs, n_calls)
        if "pdus" in parts:
            sustained_pdus(a, b, n_senders, n_conns, window, warmup, os.environ.get("FR_BENCH_PERF_DIR"))
    finally:
        for s in servers:
            s.stop()
            s.drop()


if __name__ == "__main__":
    main()
