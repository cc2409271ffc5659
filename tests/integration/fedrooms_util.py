"""Helpers for the federated-rooms tests: building and signing PDUs the way
the spec says (content hash, redaction, reference-hash event IDs), written
here independently of the server's C code, and a fake homeserver that
serves its keys, receives transactions and answers get_missing_events,
event_auth and the other room endpoints from a store it is given."""
import base64
import copy
import hashlib
import http.server
import json
import os
import ssl
import threading
import time
import urllib.parse

import requests
import signedjson.key
import signedjson.sign
from unpaddedbase64 import encode_base64

from conftest import lib_sh

C = "/_matrix/client/v3"


def canonical(o):
    return json.dumps(o, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def b64(raw):
    return base64.b64encode(raw).decode().rstrip("=")


def b64url(raw):
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Room version 11 redaction (spec "Redactions", v11).
KEEP_TOP = ("event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures",
            "depth", "prev_events", "auth_events", "origin_server_ts")
KEEP_CONTENT = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": ("ban", "events", "events_default", "invite", "kick", "redact",
                            "state_default", "users", "users_default"),
    "m.room.history_visibility": ("history_visibility",),
    "m.room.redaction": ("redacts",),
}


def redact(ev):
    out = {k: v for k, v in ev.items() if k in KEEP_TOP and k != "content"}
    content = ev.get("content", {})
    if ev["type"] == "m.room.create":
        out["content"] = dict(content)
    else:
        out["content"] = {k: v for k, v in content.items() if k in KEEP_CONTENT.get(ev["type"], ())}
    return out


def content_hash(ev):
    e = {k: v for k, v in ev.items() if k not in ("unsigned", "signatures", "hashes")}
    return b64(hashlib.sha256(canonical(e)).digest())


def event_id(ev):
    r = redact(ev)
    r.pop("signatures", None)
    r.pop("unsigned", None)
    return "$" + b64url(hashlib.sha256(canonical(r)).digest())


def sign_event(ev, server, key):
    ev["hashes"] = {"sha256": content_hash(ev)}
    r = redact(ev)
    r.pop("signatures", None)
    signed = signedjson.sign.sign_json(r, server, key)
    ev.setdefault("signatures", {}).setdefault(server, {}).update(signed["signatures"][server])
    return ev


class Room:
    """A view of a room built from a server's database: the events by ID
    and the current state, enough to author valid events as another
    server would."""

    def __init__(self, server, room_id):
        self.room_id = room_id
        rows = server.sql("SELECT event_id, json, depth FROM events WHERE room_id = %s ORDER BY stream_ordering",
                          room_id)
        self.events = {eid: json.loads(j) for eid, j, _ in rows}
        for e in self.events.values():
            e.pop("unsigned", None)
        self.state = {(t, sk): eid for t, sk, eid in server.sql(
            "SELECT type, state_key, event_id FROM current_state WHERE room_id = %s", room_id)}
        self.extremities = [r[0] for r in server.sql(
            "SELECT event_id FROM room_extremities WHERE room_id = %s", room_id)]
        self.depth = max(d for _, _, d in rows)

    def auth_for(self, type_, sender, state_key=None, membership=None):
        keys = [("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.member", sender)]
        if type_ == "m.room.member":
            keys.append(("m.room.member", state_key))
            if membership in ("join", "invite", "knock"):
                keys.append(("m.room.join_rules", ""))
        out = []
        for k in keys:
            if k in self.state and self.state[k] not in out:
                out.append(self.state[k])
        return out

    def make(self, server, key, type_, sender, content, state_key=None, prev=None, auth=None, depth=None,
             ts=None):
        ev = {"room_id": self.room_id, "type": type_, "sender": sender, "content": content,
              "origin_server_ts": ts or int(time.time() * 1000),
              "prev_events": prev if prev is not None else list(self.extremities),
              "auth_events": auth if auth is not None else self.auth_for(
                  type_, sender, state_key, content.get("membership")),
              "depth": depth or self.depth + 1}
        if state_key is not None:
            ev["state_key"] = state_key
        sign_event(ev, server, key)
        return ev

    def add(self, ev):
        """Take ev as accepted: it becomes the single extremity."""
        eid = event_id(ev)
        self.events[eid] = ev
        if "state_key" in ev:
            self.state[(ev["type"], ev["state_key"])] = eid
        self.extremities = [eid]
        self.depth = max(self.depth, ev["depth"])
        return eid


class FakeServer:
    """A minimal homeserver over TLS (certificate from the test CA): its
    key document, PUT /send (transactions recorded), get_missing_events
    and event_auth answered from self.events."""

    def __init__(self, tmp_path, ca):
        self.key = signedjson.key.generate_signing_key("f1")
        self.txns = []
        self.events = {}  # event ID -> PDU, what this server can hand out
        self.state_at = {}  # event ID -> state IDs before it (/state_ids, /state)
        self.gme_answer = None  # a fixed get_missing_events answer (list of PDUs)
        self.requests = []
        d = str(tmp_path)
        lib_sh("al_tls_cert %s localhost %s" % (d, ca))
        self.ca = ca
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def reply(self, code, body):
                raw = canonical(body)
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def body(self):
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def do_GET(self):
                fake.requests.append(("GET", self.path))
                if self.path.startswith("/_matrix/key/v2/server"):
                    return self.reply(200, fake.key_document())
                if self.path.startswith("/_matrix/federation/v1/event_auth/"):
                    parts = self.path.split("/")
                    eid = urllib.parse.unquote(parts[-1])
                    return self.reply(200, {"auth_chain": fake.auth_chain(eid)})
                u = urllib.parse.urlparse(self.path)
                qs = urllib.parse.parse_qs(u.query)
                if u.path.startswith("/_matrix/federation/v1/event/"):
                    eid = urllib.parse.unquote(u.path.split("/")[-1])
                    if eid in fake.events:
                        return self.reply(200, {"origin": fake.name, "origin_server_ts": 0,
                                                "pdus": [fake.events[eid]]})
                if u.path.startswith("/_matrix/federation/v1/state_ids/") or \
                        u.path.startswith("/_matrix/federation/v1/state/"):
                    eid = qs.get("event_id", [""])[0]
                    if eid in fake.state_at:
                        ids = fake.state_at[eid]
                        chain = {a for i in ids for a in (event_id(e) for e in fake.auth_chain(i))}
                        if "/state_ids/" in u.path:
                            return self.reply(200, {"pdu_ids": ids, "auth_chain_ids": sorted(chain)})
                        return self.reply(200, {"pdus": [fake.events[i] for i in ids],
                                                "auth_chain": [fake.events[i] for i in chain]})
                self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            def do_PUT(self):
                body = self.body()
                fake.requests.append(("PUT", self.path))
                if self.path.startswith("/_matrix/federation/v1/send/"):
                    fake.txns.append(body)
                    return self.reply(200, {"pdus": {}})
                self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            def do_POST(self):
                body = self.body()
                fake.requests.append(("POST", self.path))
                if self.path.startswith("/_matrix/federation/v1/get_missing_events/"):
                    if fake.gme_answer is not None:
                        return self.reply(200, {"events": fake.gme_answer})
                    return self.reply(200, {"events": fake.missing(body)})
                self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "not here"})

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(d, "tls.crt"), os.path.join(d, "tls.key"))
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.name = "localhost:%d" % self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def key_document(self):
        k = self.key
        doc = {"server_name": self.name,
               "verify_keys": {"ed25519:" + k.version: {"key": encode_base64(k.verify_key.encode())}},
               "old_verify_keys": {},
               "valid_until_ts": int(time.time() * 1000) + 3600_000}
        return signedjson.sign.sign_json(doc, self.name, k)

    def user(self, local):
        return "@%s:%s" % (local, self.name)

    def missing(self, body):
        """get_missing_events: walk back from latest_events, not past
        earliest_events."""
        earliest = set(body.get("earliest_events", []))
        out, seen = [], set(earliest)
        pending = list(body.get("latest_events", []))
        while pending and len(out) < body.get("limit", 10):
            eid = pending.pop(0)
            for p in self.events.get(eid, {}).get("prev_events", []):
                if p not in seen and p in self.events:
                    seen.add(p)
                    out.append(self.events[p])
                    pending.append(p)
        return out

    def auth_chain(self, eid):
        out, pending, seen = [], [eid], set()
        while pending:
            for a in self.events.get(pending.pop(), {}).get("auth_events", []):
                if a not in seen and a in self.events:
                    seen.add(a)
                    out.append(self.events[a])
                    pending.append(a)
        return out

    def request(self, server, method, path, content=None):
        obj = {"method": method, "uri": path, "origin": self.name, "destination": server.server_name}
        if content is not None:
            obj["content"] = content
        signed = signedjson.sign.sign_json(copy.deepcopy(obj), self.name, self.key)
        kid = "ed25519:" + self.key.version
        auth = 'X-Matrix origin="%s",destination="%s",key="%s",sig="%s"' % (
            self.name, server.server_name, kid, signed["signatures"][self.name][kid])
        return requests.request(method, server.fed_base + path, headers={"Authorization": auth},
                                data=canonical(content) if content is not None else None, timeout=30,
                                verify=os.path.join(server.ca, "ca.crt"))

    def send(self, server, pdus, edus=(), txn=None):
        txn = txn or "t%d" % time.time_ns()
        body = {"origin": self.name, "origin_server_ts": int(time.time() * 1000), "pdus": list(pdus),
                "edus": list(edus)}
        r = self.request(server, "PUT", "/_matrix/federation/v1/send/" + txn, body)
        assert r.status_code == 200, r.text
        return r.json()["pdus"]

    def received_pdus(self):
        return [p for t in self.txns for p in t.get("pdus", [])]


def wait_for(pred, timeout=20, step=0.1, what="condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))
