"""Fixtures that start real auralinkd servers on loopback, each with its own
database in the private PostgreSQL cluster test.sh starts, and TLS from a
CA made for the test session."""
import os
import random
import signal
import socket
import subprocess
import time
import uuid

import psycopg2
import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("AURALINK_BIN", os.path.join(ROOT, "build-test", "auralinkd"))
PGHOST = os.environ.get("AURALINK_PGHOST")
SQL_DIR = os.environ.get("AURALINK_SQL_DIR", os.path.join(ROOT, "sql"))

if not PGHOST:
    raise RuntimeError("AURALINK_PGHOST is not set: run the integration tests through ./test.sh")


_ports_handed_out = set()


def free_port():
    """A free port below the kernel's ephemeral range (32768+): a port the
    kernel hands out could be taken as the source port of some outgoing
    connection before the server binds it (or binds it again on a restart).
    A port is handed out once per session: two picks in a row (a server's
    client and federation ports) could otherwise be the same free port."""
    for _ in range(200):
        port = random.randrange(20000, 32000)
        if port in _ports_handed_out:
            continue
        _ports_handed_out.add(port)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-31999")


def lib_sh(*commands):
    """Run functions of scripts/lib.sh (the same code run.sh uses)."""
    script = ". %s/scripts/lib.sh; %s" % (ROOT, " && ".join(commands))
    subprocess.run(["bash", "-c", script], check=True)


@pytest.fixture(scope="session")
def ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("ca")
    lib_sh("al_ca_ensure %s" % d)
    return str(d)


def admin_sql(statement):
    c = psycopg2.connect(host=PGHOST, user="postgres", dbname="postgres")
    c.autocommit = True
    try:
        c.cursor().execute(statement)
    finally:
        c.close()


class Server:
    def __init__(self, tmpdir, ca, server_name=None, config_extra="", registration=True,
                 limits="rate_per_second = 0.0;", allow_guests=False, federation_extra="",
                 tls_name="localhost"):
        self.dir = str(tmpdir)
        self.client_port = free_port()
        self.fed_port = free_port()
        self.server_name = server_name or "localhost:%d" % self.fed_port
        self.dbname = "t_" + uuid.uuid4().hex[:12]
        self.ca = ca
        self.config_path = os.path.join(self.dir, "auralinkd.conf")
        self.log_path = os.path.join(self.dir, "auralinkd.log")
        self.proc = None
        self.base = "http://127.0.0.1:%d" % self.client_port
        self.fed_base = "https://127.0.0.1:%d" % self.fed_port
        # the certificate is also valid for localhost and 127.0.0.1
        lib_sh("al_tls_cert %s %s %s" % (self.dir, tls_name, ca))
        admin_sql('CREATE DATABASE "%s"' % self.dbname)
        self.limits = limits
        self.allow_guests = allow_guests
        self.federation_extra = federation_extra  # settings inside federation = { ... }
        self.write_config(registration, config_extra)
        self.run_cli("--generate-keys")

    def write_config(self, registration, extra):
        conf = """
server_name = "{name}";
public_baseurl = "{base}";
listeners = {{
  client = {{ bind = "127.0.0.1"; port = {cport}; }};
  federation = {{ bind = "127.0.0.1"; port = {fport};
    tls_certificate = "{dir}/tls.crt"; tls_private_key = "{dir}/tls.key"; }};
}};
database = {{ conninfo = "host={pg} dbname={db} user=postgres"; migrations_dir = "{sql}"; }};
signing_key_path = "{dir}/signing.key";
worker_threads = 2;
log_level = "info";
registration = {{ enabled = {reg}; allow_guests = {guests}; }};
passwords = {{ argon2_ops_limit = 1; argon2_mem_limit_kib = 8192; }};
limits = {{ {limits} }};
federation = {{ ca_file = "{ca}/ca.crt"; allow_loopback = true; {fed_extra} }};
verification = {{ dev_verifier = true; }};
{extra}
""".format(name=self.server_name, base=self.base, cport=self.client_port, fport=self.fed_port,
           dir=self.dir, pg=PGHOST, db=self.dbname, sql=SQL_DIR,
           reg="true" if registration else "false", ca=self.ca, extra=extra,
           limits=self.limits, guests="true" if self.allow_guests else "false",
           fed_extra=self.federation_extra)
        with open(self.config_path, "w") as f:
            f.write(conf)

    def run_cli(self, *args, check=True):
        return subprocess.run([BIN, "--config", self.config_path] + list(args),
                              capture_output=True, text=True, check=check, timeout=60)

    def start(self, timeout=20):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([BIN, "--config", self.config_path],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("auralinkd exited with %s:\n%s" % (self.proc.returncode, self.read_log()))
            try:
                requests.get(self.base + "/_matrix/client/versions", timeout=2)
                return self
            except (requests.ConnectionError, requests.Timeout):
                # not listening yet, or slow to answer on a loaded machine
                time.sleep(0.05)
        raise RuntimeError("auralinkd did not start:\n" + self.read_log())

    def stop(self, sig=signal.SIGTERM):
        if not self.proc:
            return None
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.log.close()
        return rc

    def read_log(self):
        if not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def db(self):
        c = psycopg2.connect(host=PGHOST, user="postgres", dbname=self.dbname)
        c.autocommit = True
        return c

    def sql(self, query, *args):
        c = self.db()
        try:
            cur = c.cursor()
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None
        finally:
            c.close()

    # HTTP helpers: client API over plain HTTP, federation over TLS.
    def get(self, path, **kw):
        return requests.get(self.base + path, timeout=10, **kw)

    def post(self, path, **kw):
        return requests.post(self.base + path, timeout=10, **kw)

    def put(self, path, **kw):
        return requests.put(self.base + path, timeout=10, **kw)

    def fed_get(self, path, **kw):
        return requests.get(self.fed_base + path, timeout=10, verify=os.path.join(self.ca, "ca.crt"), **kw)

    def drop(self):
        admin_sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % self.dbname)


SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


@pytest.fixture
def make_server(tmp_path_factory, ca):
    """Factory: make_server(**kw) -> started Server. All are stopped at the
    end; a server that did not shut down cleanly or hit a sanitizer fails
    the test."""
    servers = []

    def factory(start=True, **kw):
        s = Server(tmp_path_factory.mktemp("hs"), ca, **kw)
        servers.append(s)
        return s.start() if start else s

    yield factory
    problems = []
    for s in servers:
        rc = s.stop()
        log = s.read_log()
        if rc not in (None, 0):
            problems.append("%s exited with %s" % (s.server_name, rc))
        for m in SANITIZER_MARKERS:
            if m in log:
                problems.append("%s: %s in log:\n%s" % (s.server_name, m, log[-4000:]))
        s.drop()
    assert not problems, "\n".join(problems)


@pytest.fixture
def server(make_server):
    return make_server()
