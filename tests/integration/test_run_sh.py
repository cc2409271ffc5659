"""The README's ./run.sh: first run creates the state (PostgreSQL cluster,
key, certificate, config), a second run reuses it, and two instances
started with one --ca trust each other's certificates."""
import os
import signal
import subprocess
import time

import requests

from conftest import ROOT, free_port


class RunSh:
    def __init__(self, state, ca, name=None):
        self.state = str(state)
        self.cport, self.fport = free_port(), free_port()
        self.name = name or "localhost:%d" % self.fport
        self.args = [os.path.join(ROOT, "run.sh"), "--state", self.state, "--server-name", self.name,
                     "--client-port", str(self.cport), "--federation-port", str(self.fport), "--ca", str(ca)]
        self.proc = None

    def start(self, timeout=900):
        self.log = open(self.state + ".log", "a")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, open(self.state + ".log").read()
            try:
                return requests.get("http://127.0.0.1:%d/_matrix/client/versions" % self.cport, timeout=1)
            except requests.ConnectionError:
                time.sleep(0.2)
        raise AssertionError("run.sh did not start")

    def stop(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.log.close()
        return rc


def test_run_sh_first_run_reuse_and_shared_ca(tmp_path):
    ca = tmp_path / "ca"
    a, b = RunSh(tmp_path / "a", ca), RunSh(tmp_path / "b", ca)
    try:
        assert a.start().status_code == 200
        assert b.start().status_code == 200
        for f in ("auralinkd.conf", "signing.key", "tls.crt", "tls.key", "pg"):
            assert os.path.exists(os.path.join(a.state, f)), f
        assert 'server_name = "%s"' % a.name in open(os.path.join(a.state, "auralinkd.conf")).read()
        # each federation listener's certificate chains to the shared CA
        for s in (a, b):
            r = requests.get("https://localhost:%d/_matrix/key/v2/server" % s.fport,
                             verify=str(ca / "ca.crt"), timeout=5)
            assert r.json()["server_name"] == s.name
        key = open(os.path.join(a.state, "signing.key")).read()
        assert a.stop() == 0
        # PostgreSQL stopped with it
        assert not os.path.exists(os.path.join(a.state, "pg", "data", "postmaster.pid"))
        # second run reuses ./var: same key, same data
        assert a.start().status_code == 200
        assert open(os.path.join(a.state, "signing.key")).read() == key
    finally:
        for s in (a, b):
            if s.proc and s.proc.poll() is None:
                s.stop()
