"""Driver of bench/rooms.sh: prints figures, never passes or fails.

  rooms.py BASE NROOMS setup STATE.json   one room, 50 members; room ID and
                                          their tokens to STATE.json (PUT /send
                                          itself is driven by wrk)
  rooms.py BASE NROOMS run STATE.json     wake latency, incremental and
                                          initial sync
"""
import concurrent.futures
import json
import statistics
import sys
import threading
import time
import uuid

import requests

BASE = sys.argv[1]
NROOMS = int(sys.argv[2])
C = BASE + "/_matrix/client/v3"
local = threading.local()


def sess():
    if not hasattr(local, "s"):
        local.s = requests.Session()
    return local.s


def register():
    name = "b" + uuid.uuid4().hex[:12]
    r = sess().post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name, "password": "pw"})
    r.raise_for_status()
    b = r.json()
    return b["user_id"], {"Authorization": "Bearer " + b["access_token"]}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))]


def setup(out):
    """One room of 50 members; their tokens for the wrk driver of PUT /send."""
    owner, oh = register()
    room = sess().post(C + "/createRoom", headers=oh, json={"preset": "public_chat"}).json()["room_id"]
    members = [register() for _ in range(49)]
    for uid, h in members:
        sess().post(C + "/join/" + room, headers=h, json={}).raise_for_status()
    tokens = [h["Authorization"][len("Bearer "):] for h in [oh] + [h for _, h in members]]
    with open(out, "w") as f:
        json.dump({"room": room, "tokens": tokens, "owner": owner}, f)


def main(state):
    with open(state) as f:
        st = json.load(f)
    room = st["room"]
    oh = {"Authorization": "Bearer " + st["tokens"][0]}
    senders = [{"Authorization": "Bearer " + t} for t in st["tokens"]]

    def send(i):
        h = senders[i % len(senders)]
        sess().put(C + "/rooms/%s/send/m.room.message/%s" % (room, uuid.uuid4().hex), headers=h,
                   json={"msgtype": "m.text", "body": "m%d" % i}).raise_for_status()

    # long-poll wake latency
    token = sess().get(C + "/sync", headers=oh, params={"timeout": "0"}).json()["next_batch"]
    lat = []
    wakes = C.replace("/_matrix/client/v3", "/_auralink/admin/v1/sync/wakes")
    before = sess().get(wakes, headers=oh).json()["count"]
    for i in range(200):
        res = {}

        def poll():
            s = requests.get(C + "/sync", headers=oh, params={"since": token, "timeout": "10000"}, timeout=30)
            res["t"] = time.time()
            res["b"] = s.json()
        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.05)
        t_send = time.time()
        send(i)
        t_done = time.time()
        th.join()
        token = res["b"]["next_batch"]
        lat.append((res["t"] - t_done) * 1000)
        del t_send
    print("long-poll wake after send returned: p50 %.2f ms  p99 %.2f ms (client side)" %
          (statistics.median(lat), pct(lat, 0.99)))
    w = sess().get(wakes, headers=oh).json()
    print("long-poll wake, commit to reply:    p50 %.2f ms  p99 %.2f ms  max %.2f ms (server side, %d wakes; goal p99 <= 5 ms)" %
          (w["p50_ms"], w["p99_ms"], w["max_ms"], w["count"] - before))

    # a user in many rooms: incremental sync
    uid, uh = register()
    def mk(i):
        sess().post(C + "/createRoom", headers=uh, json={"preset": "private_chat"}).raise_for_status()
    t0 = time.time()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(mk, range(NROOMS)))
    print("created %d rooms in %.1f s" % (NROOMS, time.time() - t0))
    tok = sess().get(C + "/sync", headers=uh, params={"timeout": "0"}, timeout=120).json()["next_batch"]
    one = sess().get(C + "/joined_rooms", headers=uh).json()["joined_rooms"][0]
    inc = []
    for i in range(200):
        if i % 2 == 0:
            sess().put(C + "/rooms/%s/send/m.room.message/%s" % (one, uuid.uuid4().hex), headers=uh,
                       json={"msgtype": "m.text", "body": "x"}).raise_for_status()
        t = time.time()
        b = sess().get(C + "/sync", headers=uh, params={"since": tok, "timeout": "0"}).json()
        inc.append((time.time() - t) * 1000)
        tok = b["next_batch"]
    print("incremental sync, %d rooms:       p50 %.2f ms  p99 %.2f ms (goal p99 <= 10 ms)" %
          (NROOMS, statistics.median(inc), pct(inc, 0.99)))

    # initial sync of 100 rooms
    uid2, h2 = register()
    with concurrent.futures.ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: sess().post(C + "/createRoom", headers=h2, json={"name": "r%d" % i}).raise_for_status(),
                    range(100)))
    ini = []
    for _ in range(20):
        t = time.time()
        sess().get(C + "/sync", headers=h2, params={"timeout": "0"}).raise_for_status()
        ini.append((time.time() - t) * 1000)
    print("initial sync, 100 rooms:            p50 %.1f ms  p99 %.1f ms (goal <= 100 ms)" %
          (statistics.median(ini), pct(ini, 0.99)))


if sys.argv[3] == "setup":
    setup(sys.argv[4])
else:
    main(sys.argv[4])
