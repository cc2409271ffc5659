"""bench/federation.py - figures for issue 4, driven by bench/federation.sh
(which builds, starts PostgreSQL and sets the environment). Two servers on
loopback over TLS from a development CA:

- cross-domain AuraID resolve from A for a handle hosted on B: the very
  first one (both key fetches included), cold ones (new handle each time,
  keys cached), warm ones (A's cache), all through the client endpoint
  /_auralink/client/v1/aura_id/resolve of a user of A; baseline: the same
  endpoint for a public handle hosted on A (no federation), same client,
  same auth.
- sender throughput A -> B: N org.auralink.route EDUs put in A's outbox in
  one statement; time until B stored all of them; baseline: the rate of the
  INSERT itself.
Prints figures; never passes or fails."""
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import requests  # noqa: E402

from conftest import Server, lib_sh  # noqa: E402

C = "/_matrix/client/v3"
A = "/_auralink/client/v1"
ADM = "/_auralink/admin/v1"


def quiet(s):
    with open(s.config_path) as f:
        conf = f.read()
    with open(s.config_path, "w") as f:
        f.write(conf.replace('log_level = "info"', 'log_level = "warn"'))


def register(s, name):
    r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                      "password": "pw-" + name})
    r.raise_for_status()
    return r.json()["user_id"], {"Authorization": "Bearer " + r.json()["access_token"]}


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))]


def line(what, xs):
    print("%-46s n=%-5d median %7.2f ms  p99 %7.2f ms" % (what, len(xs), statistics.median(xs), pct(xs, 99)))


def main():
    n_cold = int(os.environ.get("FED_BENCH_COLD", "200"))
    n_warm = int(os.environ.get("FED_BENCH_WARM", "2000"))
    n_edus = int(os.environ.get("FED_BENCH_EDUS", "20000"))
    root = tempfile.mkdtemp(prefix="auralink-fedbench.")
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
        admin_id, ha = register(a, "benchadmin")
        a.run_cli("--grant-admin", admin_id)
        requests.post(a.base + ADM + "/federation/servers", headers=ha, timeout=10,
                      json={"domain": b.server_name, "trust_level": "trusted"}).raise_for_status()
        b.sql("WITH u AS (INSERT INTO users (user_id, localpart) SELECT '@u' || i || ':' || %s, 'u' || i "
              "FROM generate_series(1, %s) i RETURNING user_id, localpart) "
              "INSERT INTO aura_id_registry (aura_id, user_id, username) "
              "SELECT '@' || localpart || 'x.aura', user_id, localpart || 'x' FROM u", b.server_name, n_cold + 1)
        _, hu = register(a, "benchuser")
        requests.post(a.base + A + "/aura_id", headers=hu, json={"username": "benchlocal"},
                      timeout=10).raise_for_status()
        sess = requests.Session()

        def resolve(handle):
            t0 = time.perf_counter()
            r = sess.get(a.base + A + "/aura_id/resolve/" + handle, headers=hu, timeout=30)
            dt = (time.perf_counter() - t0) * 1000
            assert r.status_code == 200, r.text
            return dt

        first = resolve("@u1x.aura")
        cold = [resolve("@u%dx.aura" % i) for i in range(2, n_cold + 2)]
        warm = [resolve("@u2x.aura") for _ in range(n_warm)]
        base = [resolve("@benchlocal.aura") for _ in range(n_warm)]
        print("AuraID resolve A -> B (loopback, TLS, sequential client)")
        print("%-46s %.2f ms" % ("first (keys fetched both ways + query)", first))
        line("cold (new handle each, keys cached)", cold)
        line("warm (A's cache)", warm)
        line("baseline: resolve of a handle hosted on A", base)

        # sender throughput
        t0 = time.perf_counter()
        a.sql("INSERT INTO federation_outbox (destination, kind, payload) "
              "SELECT %s, 'edu', jsonb_build_object('edu_type', 'org.auralink.route', 'content', "
              "jsonb_build_object('call_id', 'c' || i, 'route_id', 'r' || i, 'path_nodes', '[]'::jsonb, "
              "'predicted_latency_ms', 12)) FROM generate_series(1, %s) i", b.server_name, n_edus)
        t1 = time.perf_counter()
        deadline = t1 + 600
        got = 0
        while time.perf_counter() < deadline:
            got = b.sql("SELECT count(*) FROM federation_routes_received")[0][0]
            if got >= n_edus:
                break
            time.sleep(0.05)
        t2 = time.perf_counter()
        print("Sender A -> B: %d EDUs in transactions of <= 100" % n_edus)
        print("%-46s %8.0f EDUs/s (%d delivered in %.2f s, includes <= 1 s tick)" % (
            "throughput (outbox -> stored on B)", got / (t2 - t1), got, t2 - t1))
        print("%-46s %8.0f rows/s" % ("baseline: INSERT into A's outbox", n_edus / (t1 - t0)))
    finally:
        for s in servers:
            s.stop()
            s.drop()


if __name__ == "__main__":
    main()
