"""Helpers shared by the client-API tests: a registered user, polling and
parked long-poll syncs."""
import threading
import time
import uuid

import requests

C = "/_matrix/client/v3"


class User:
    def __init__(self, server, name=None, login=False):
        self.s = server
        name = name or "u" + uuid.uuid4().hex[:10]
        self.name = name
        if login:
            r = server.post(C + "/login", json={"type": "m.login.password", "password": "pw-" + name,
                                                "identifier": {"type": "m.id.user", "user": name}})
            assert r.status_code == 200, r.text
            self._take(r.json())
            return
        r = server.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                               "password": "pw-" + name})
        assert r.status_code == 200, r.text
        self._take(r.json())

    def _take(self, b):
        self.user_id = b["user_id"]
        self.token = b["access_token"]
        self.device_id = b["device_id"]
        self.h = {"Authorization": "Bearer " + self.token}

    def new_device(self):
        """The same account logged in again: another device."""
        return User(self.s, self.name, login=True)

    def get(self, path, timeout=10, **kw):
        return requests.get(self.s.base + C + path, headers=self.h, timeout=timeout, **kw)

    def post(self, path, body=None, **kw):
        return requests.post(self.s.base + C + path, headers=self.h, timeout=10,
                             json={} if body is None else body, **kw)

    def put(self, path, body=None, **kw):
        return requests.put(self.s.base + C + path, headers=self.h, timeout=10,
                            json={} if body is None else body, **kw)

    def delete(self, path, **kw):
        return requests.delete(self.s.base + C + path, headers=self.h, timeout=10, **kw)

    def create_room(self, **body):
        r = self.post("/createRoom", body)
        assert r.status_code == 200, r.text
        return r.json()["room_id"]

    def send(self, room_id, body="hi", txn=None, type_="m.room.message"):
        txn = txn or uuid.uuid4().hex
        return self.put("/rooms/%s/send/%s/%s" % (room_id, type_, txn), {"msgtype": "m.text", "body": body})

    def send_ok(self, room_id, body="hi", **kw):
        r = self.send(room_id, body, **kw)
        assert r.status_code == 200, r.text
        return r.json()["event_id"]

    def join(self, room):
        return self.post("/join/%s" % room)

    def sync(self, since=None, timeout=0, **params):
        p = dict(params)
        if since:
            p["since"] = since
        p["timeout"] = str(timeout)
        r = self.get("/sync", params=p, timeout=max(10, timeout / 1000 + 10))
        assert r.status_code == 200, r.text
        return r.json()


def errcode(r):
    return r.json().get("errcode")


def wait_for(pred, timeout=8.0, step=0.1):
    """pred()'s first true value within timeout seconds, else its last."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def park_syncs(polls, action):
    """Park one long-poll sync a (key, user, since, timeout_ms) of polls,
    run action() once they all wait; returns the bodies by key, the keys in
    the order the syncs came back, and what action returned."""
    results, order = {}, []

    def poll(key, user, since, timeout_ms):
        results[key] = user.sync(since=since, timeout=timeout_ms)
        order.append(key)

    threads = [threading.Thread(target=poll, args=p) for p in polls]
    for th in threads:
        th.start()
    time.sleep(0.5)
    assert not results, "the syncs did not park"
    value = action()
    for th in threads:
        th.join(30)
    return results, order, value
