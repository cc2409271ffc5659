"""Walking skeleton: discovery, signed server keys, routing errors, config
and migrations, against a real auralinkd on a fresh database."""
import os
import shutil
import subprocess

import pytest
import requests
from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json, SignatureVerifyException
from unpaddedbase64 import decode_base64

from conftest import BIN, SQL_DIR


def verify_key_document(doc):
    """Check the self-signature of a /_matrix/key/v2/server document with
    python3-signedjson (an independent implementation)."""
    name = doc["server_name"]
    assert doc["verify_keys"], "no verify keys"
    for key_id, k in doc["verify_keys"].items():
        vk = decode_verify_key_bytes(key_id, decode_base64(k["key"]))
        verify_signed_json(doc, name, vk)
    return doc


def test_client_versions(server):
    r = server.get("/_matrix/client/versions")
    assert r.status_code == 200
    body = r.json()
    assert "v1.11" in body["versions"] and "r0.6.1" in body["versions"]
    assert isinstance(body["unstable_features"], dict)
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Content-Type"] == "application/json"


def test_federation_version_and_well_known(server):
    r = server.fed_get("/_matrix/federation/v1/version")
    assert r.status_code == 200
    assert r.json()["server"]["name"] == "auralink"
    assert server.get("/.well-known/matrix/server").json() == {"m.server": server.server_name}
    assert server.get("/.well-known/matrix/client").json() == {"m.homeserver": {"base_url": server.base}}


def test_key_document_is_self_signed_over_tls(server):
    r = server.fed_get("/_matrix/key/v2/server")
    assert r.status_code == 200
    doc = verify_key_document(r.json())
    assert doc["server_name"] == server.server_name
    assert doc["old_verify_keys"] == {}
    import time
    now = int(time.time() * 1000)
    assert now + 3600 * 1000 < doc["valid_until_ts"] <= now + 25 * 3600 * 1000
    # cached: the same bytes twice, the same key on the client port too
    assert server.fed_get("/_matrix/key/v2/server").content == r.content
    assert server.get("/_matrix/key/v2/server").json()["verify_keys"] == doc["verify_keys"]


def test_altered_key_document_fails_verification(server):
    doc = server.fed_get("/_matrix/key/v2/server").json()
    doc["valid_until_ts"] += 1
    with pytest.raises(SignatureVerifyException):
        verify_key_document(doc)


def test_key_kept_across_restart_and_rotation(make_server):
    s = make_server()
    first = s.get("/_matrix/key/v2/server").json()
    assert s.stop() == 0
    s.start()
    assert s.get("/_matrix/key/v2/server").json()["verify_keys"] == first["verify_keys"]
    assert s.stop() == 0
    out = s.run_cli("--rotate-key")
    assert "rotated" in out.stdout
    s.start()
    doc = verify_key_document(s.get("/_matrix/key/v2/server").json())
    (old_id, old_key), = first["verify_keys"].items()
    assert old_id not in doc["verify_keys"]
    assert doc["old_verify_keys"][old_id]["key"] == old_key["key"]
    assert doc["old_verify_keys"][old_id]["expired_ts"] > 0
    # --generate-keys keeps an existing key
    assert "kept existing" in s.run_cli("--generate-keys").stdout


def test_unknown_path_and_method(server):
    r = server.get("/_matrix/client/v3/nonexistent")
    assert r.status_code == 404 and r.json()["errcode"] == "M_UNRECOGNIZED"
    r = server.post("/_matrix/client/versions", json={})
    assert r.status_code == 405 and r.json()["errcode"] == "M_UNRECOGNIZED"
    r = requests.options(server.base + "/_matrix/client/v3/login", timeout=5)
    assert r.status_code == 200
    assert "Authorization" in r.headers["Access-Control-Allow-Headers"]
    # percent-encoded NUL in a path segment
    assert server.get("/_matrix/client/v3/profile/%00").status_code == 404


def test_huge_body_is_refused_and_server_keeps_serving(server):
    r = server.post("/_matrix/client/versions", data=b"x" * (1024 * 1024))
    assert r.status_code == 413
    assert server.get("/_matrix/client/versions").status_code == 200


@pytest.mark.parametrize("body,status,errcode", [
    (b"not json", 400, "M_NOT_JSON"),
    (b"[" * 200 + b"]" * 200, 400, "M_BAD_JSON"),
    (b'{"type": "m.login.password", "type": "x"}', 400, "M_NOT_JSON"),
    (b'["an array"]', 400, "M_BAD_JSON"),
    (b'{"pad": "' + b"x" * 100000 + b'"}', 413, "M_TOO_LARGE"),
])
def test_malformed_bodies_on_a_real_route(server, body, status, errcode):
    # Our own parser's answers (the 100 kB body is above limits.max_body_bytes,
    # 64 KiB by default, but below libevent's own backstop).
    r = server.post("/_matrix/client/v3/login", data=body,
                    headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["errcode"] == errcode
    assert server.get("/_matrix/client/versions").status_code == 200


def run(args, **kw):
    return subprocess.run([BIN] + args, capture_output=True, text=True, timeout=30, **kw)


def test_cli_version_help_check_config(make_server):
    assert run(["--version"]).stdout.startswith("auralinkd ")
    assert "--check-config" in run(["--help"]).stdout
    s = make_server(start=False)
    r = run(["--config", s.config_path, "--check-config"])
    assert r.returncode == 0 and "valid" in r.stdout


GOOD = ('server_name = "a.test"; database = { conninfo = "x"; }; signing_key_path = "k";'
        ' listeners = { federation = { tls_certificate = "c"; tls_private_key = "k"; }; };')


@pytest.mark.parametrize("text,setting", [
    ("", "server_name"),
    ('server_name = "a.test";', "database.conninfo"),
    ('server_name = "a.test"; database = { conninfo = "x"; };', "signing_key_path"),
    ('server_name = "bad name!"; ', "server_name"),
    (GOOD + ' worker_threads = 0;', "worker_threads"),
    (GOOD + ' worker_threads = "two";', "worker_threads"),
    (GOOD + ' log_level = "loud";', "log_level"),
    (GOOD.replace("federation = {", "federation = { port = 70000;"), "listeners.federation.port"),
    ('server_name = "a.test"; database = { conninfo = "x"; }; signing_key_path = "k";',
     "listeners.federation.tls_certificate"),
    ('server_name = "a.test" oops', "line 1"),
])
def test_bad_config_names_the_setting(tmp_path, text, setting):
    p = tmp_path / "bad.conf"
    p.write_text(text)
    r = run(["--config", str(p), "--check-config"], env={"PATH": os.environ["PATH"]})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and setting in lines[0], r.stderr


def test_missing_config_file_and_key(tmp_path, make_server):
    r = run(["--config", str(tmp_path / "nope.conf")])
    assert r.returncode == 2 and "nope.conf" in r.stderr
    s = make_server(start=False)
    os.unlink(os.path.join(s.dir, "signing.key"))
    r = run(["--config", s.config_path])
    assert r.returncode == 2 and "signing_key_path" in r.stderr


def test_migrations_recorded_and_not_reapplied(make_server):
    s = make_server()
    versions = s.sql("SELECT version FROM schema_version ORDER BY version")
    files = sorted(f for f in os.listdir(SQL_DIR) if f.endswith(".sql"))
    assert [v for (v,) in versions] == [int(f[:3]) for f in files]
    assert s.stop() == 0
    s.start()
    assert s.sql("SELECT count(*) FROM schema_version")[0][0] == len(files)
    for table in ("aura_id_registry", "cross_app_connections", "mesh_nodes", "mesh_routes",
                  "federation_servers", "federated_calls", "node_reputation_events",
                  "abuse_reports", "notification_preferences", "federation_audit_log"):
        assert s.sql("SELECT to_regclass(%s) IS NOT NULL", table)[0][0], table


def test_migration_numbered_below_the_newest_is_applied(make_server, tmp_path):
    """Branches land out of order: a file numbered below the newest applied
    one is still applied on the next start, once."""
    sql = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql)
    s = make_server(start=False)
    with open(s.config_path) as f:
        conf = f.read().replace('migrations_dir = "%s"' % SQL_DIR, 'migrations_dir = "%s"' % sql)
    with open(s.config_path, "w") as f:
        f.write(conf)
    s.start()
    used = {int(f[:3]) for f in os.listdir(sql) if f.endswith(".sql")}
    gap = max(v for v in range(1, max(used)) if v not in used)
    assert s.stop() == 0
    (sql / ("%03d_late_branch.sql" % gap)).write_text("CREATE TABLE late_branch (x int);\n")
    s.start()
    assert s.sql("SELECT to_regclass('late_branch') IS NOT NULL")[0][0]
    assert s.sql("SELECT name FROM schema_version WHERE version = %s", gap) == [("%03d_late_branch.sql" % gap,)]
    assert s.stop() == 0
    s.start()
    assert s.sql("SELECT count(*) FROM schema_version")[0][0] == len(used) + 1


def test_failed_migration_leaves_nothing_half_applied(make_server, tmp_path):
    sql = tmp_path / "sql"
    shutil.copytree(SQL_DIR, sql)
    (sql / "999_broken.sql").write_text(
        "CREATE TABLE half_applied (x int);\nINSERT INTO half_applied VALUES (1);\nSELEC broken;\n")
    s = make_server(start=False)
    with open(s.config_path) as f:
        conf = f.read().replace('migrations_dir = "%s"' % SQL_DIR, 'migrations_dir = "%s"' % sql)
    with open(s.config_path, "w") as f:
        f.write(conf)
    r = run(["--config", s.config_path])
    assert r.returncode == 1 and "999_broken.sql" in r.stderr
    assert s.sql("SELECT to_regclass('half_applied')")[0][0] is None
    assert s.sql("SELECT max(version) FROM schema_version")[0][0] < 999

