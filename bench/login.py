"""bench/login.py BASE_URL: cost of an argon2id login through auralinkd,
next to GET /_matrix/client/versions as the no-work baseline. Figures only."""
import concurrent.futures
import sys
import time

import requests

base = sys.argv[1]
N_SEQ, N_PAR, PAR = 20, 40, 8
s = requests.Session()
r = s.post(base + "/_matrix/client/v3/register",
           json={"auth": {"type": "m.login.dummy"}, "username": "bench", "password": "bench pw"})
r.raise_for_status()
body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bench"},
        "password": "bench pw"}


def timed(n, fn):
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1000


def login_ok():
    s.post(base + "/_matrix/client/v3/login", json=body).raise_for_status()


def login_bad():
    r = s.post(base + "/_matrix/client/v3/login", json=dict(body, password="wrong"))
    assert r.status_code == 403


def login_unknown():
    r = s.post(base + "/_matrix/client/v3/login",
               json=dict(body, identifier={"type": "m.id.user", "user": "nobody"}))
    assert r.status_code == 403


versions = timed(500, lambda: s.get(base + "/_matrix/client/versions").raise_for_status())
ok = timed(N_SEQ, login_ok)
bad = timed(N_SEQ, login_bad)
unknown = timed(N_SEQ, login_unknown)


def one(_):
    with requests.Session() as c:
        c.post(base + "/_matrix/client/v3/login", json=body).raise_for_status()


t = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(PAR) as ex:
    list(ex.map(one, range(N_PAR)))
par = N_PAR / (time.perf_counter() - t)

print("GET /versions (baseline):       %7.2f ms/call  %8.0f req/s (sequential)" % (versions, 1000 / versions))
print("POST /login, right password:    %7.2f ms/call  %8.1f logins/s (sequential)" % (ok, 1000 / ok))
print("POST /login, wrong password:    %7.2f ms/call" % bad)
print("POST /login, unknown user:      %7.2f ms/call" % unknown)
print("POST /login, %d clients:         %7.1f logins/s (pool of 2 hashing threads)" % (PAR, par))
