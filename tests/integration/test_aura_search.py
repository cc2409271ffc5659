"""AuraID search from the in-memory index (src/aura_search.c): loaded at
start, current at once after this process's own changes, and following the
changes of other processes sharing the database through NOTIFY
auralink_aura_id (sql/003, sql/033)."""
import os
import shutil
import time

import requests

C = "/_matrix/client/v3"
A = "/_auralink/client/v1"


def register(s, name):
    r = s.post(C + "/register", json={"auth": {"type": "m.login.dummy"}, "username": name,
                                      "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return r.json()["user_id"], {"Authorization": "Bearer " + r.json()["access_token"]}


def login(s, name):
    r = s.post(C + "/login", json={"type": "m.login.password", "user": name, "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


def found(s, h, q, **kw):
    params = {"q": q}
    params.update(kw)
    r = s.get(A + "/aura_id/search", headers=h, params=params)
    assert r.status_code == 200, r.text
    return [x["aura_id"] for x in r.json()["results"]]


def patch(s, h, body):
    r = requests.patch(s.base + A + "/aura_id/me", headers=h, json=body, timeout=10)
    assert r.status_code == 200, r.text


def eventually(fn, what, timeout=10):
    deadline = time.time() + timeout
    while not fn():
        assert time.time() < deadline, what
        time.sleep(0.05)


def second_process(make_server, first):
    """A second auralinkd for the same domain on the same database (the
    scale-out of DESIGN.md): same server name and signing key."""
    s2 = make_server(start=False, server_name=first.server_name)
    s2.drop()  # its own database is not needed
    s2.dbname = first.dbname
    s2.write_config(True, "")
    shutil.copy(os.path.join(first.dir, "signing.key"), os.path.join(s2.dir, "signing.key"))
    return s2.start()


def test_index_loaded_at_start_and_current_after_own_changes(make_server):
    s = make_server()
    uid, h = register(s, "ix_owner")
    _, viewer = register(s, "ix_viewer")
    assert "search index loaded entries=0" in s.read_log()
    r = s.post(A + "/aura_id", headers=h, json={"username": "Indexed"})
    assert r.status_code == 201, r.text
    # no waiting: this process's own changes are in its index at once
    assert found(s, viewer, "indexed") == ["@Indexed.aura"]
    assert found(s, viewer, "DEXE") == ["@Indexed.aura"]
    patch(s, h, {"allow_discovery": False})
    assert found(s, viewer, "indexed") == []
    patch(s, h, {"allow_discovery": True, "privacy_level": "private"})
    assert found(s, viewer, "indexed") == []
    patch(s, h, {"privacy_level": "friends"})
    assert found(s, viewer, "indexed") == ["@Indexed.aura"]
    r = s.put(C + "/profile/%s/displayname" % uid, headers=h, json={"displayname": "Quokka Keeper"})
    assert r.status_code == 200
    assert found(s, viewer, "quokka") == ["@Indexed.aura"]
    r = s.put(C + "/profile/%s/displayname" % uid, headers=h, json={"displayname": "Wombat"})
    assert r.status_code == 200
    assert found(s, viewer, "quokka") == []
    assert found(s, viewer, "wombat") == ["@Indexed.aura"]
    # a restart loads what is in the database (one query)
    assert s.stop() == 0
    s.start()
    viewer = login(s, "ix_viewer")
    assert "search index loaded entries=1" in s.read_log()
    assert found(s, viewer, "wombat") == ["@Indexed.aura"]


def test_second_process_sees_changes(make_server):
    s1 = make_server(start=False)
    s1.write_config(True, 'admins = ["@ix_admin:%s"];' % s1.server_name)
    s1.start()
    s2 = second_process(make_server, s1)
    try:
        uid, h = register(s1, "ix_two")
        _, admin = register(s1, "ix_admin")
        viewer2 = login(s2, "ix_two")
        r = s1.post(A + "/aura_id", headers=h, json={"username": "twoproc"})
        assert r.status_code == 201, r.text
        # created on s1, announced, read into s2's index
        eventually(lambda: found(s2, viewer2, "twopr") == ["@twoproc.aura"], "create not seen by s2")
        patch(s1, h, {"allow_discovery": False})
        eventually(lambda: found(s2, viewer2, "twoproc") == [], "allow_discovery not seen by s2")
        patch(s1, h, {"allow_discovery": True})
        eventually(lambda: found(s2, viewer2, "twoproc") == ["@twoproc.aura"], "rediscovery not seen")
        r = s1.put(C + "/profile/%s/displayname" % uid, headers=h, json={"displayname": "Platypus"})
        assert r.status_code == 200
        eventually(lambda: found(s2, viewer2, "platyp") == ["@twoproc.aura"], "display name not seen")
        # suspension by an admin of s1: gone from search on both
        r = s1.post("/_auralink/admin/v1/users/%s/suspend" % uid, headers=admin, json={})
        assert r.status_code == 200, r.text
        admin2 = login(s2, "ix_admin")
        assert found(s1, admin, "twoproc") == []
        eventually(lambda: found(s2, admin2, "twoproc") == [], "suspension not seen by s2")
        r = s1.post("/_auralink/admin/v1/users/%s/unsuspend" % uid, headers=admin, json={})
        assert r.status_code == 200, r.text
        assert found(s1, admin, "twoproc") == ["@twoproc.aura"]
        eventually(lambda: found(s2, admin2, "twoproc") == ["@twoproc.aura"], "unsuspension not seen")
        assert "search index loaded" in s2.read_log()
    finally:
        # before the fixture drops the shared database under it
        assert s2.stop() == 0


def test_update_and_notify_the_way_another_process_would(server):
    uid, h = register(server, "ix_sql")
    _, viewer = register(server, "ix_sqlview")
    assert server.post(A + "/aura_id", headers=h, json={"username": "sqlrow"}).status_code == 201
    assert found(server, viewer, "sqlrow") == ["@sqlrow.aura"]
    # a change with triggers off announces nothing: the index (not SQL)
    # answers, so the old name is still what search knows ...
    c = server.db()
    try:
        cur = c.cursor()
        cur.execute("SET session_replication_role = replica")
        cur.execute("UPDATE aura_id_registry SET display_name = 'Echidna' WHERE aura_id = '@sqlrow.aura'")
        cur.execute("SET session_replication_role = origin")
        time.sleep(0.3)
        assert found(server, viewer, "echidna") == []
        # ... until the change is announced, as any process's trigger does
        cur.execute("NOTIFY auralink_aura_id, '@sqlrow.aura'")
    finally:
        c.close()
    eventually(lambda: found(server, viewer, "echidna") == ["@sqlrow.aura"], "NOTIFY not followed")
    # rows written by another process (triggers on): insert, update, delete
    server.sql("INSERT INTO users (user_id, localpart, displayname) VALUES (%s, 'ix_other', 'Numbat')",
               "@ix_other:" + server.server_name)
    server.sql("INSERT INTO aura_id_registry (aura_id, user_id, username, display_name)"
               " VALUES ('@Other_Row.aura', %s, 'Other_Row', 'Numbat')", "@ix_other:" + server.server_name)
    eventually(lambda: found(server, viewer, "numbat") == ["@Other_Row.aura"], "insert not seen")
    assert found(server, viewer, "other_r") == ["@Other_Row.aura"]
    server.sql("UPDATE aura_id_registry SET privacy_level = 'private' WHERE username = 'Other_Row'")
    eventually(lambda: found(server, viewer, "numbat") == [], "privacy not seen")
    server.sql("UPDATE aura_id_registry SET privacy_level = 'public' WHERE username = 'Other_Row'")
    eventually(lambda: found(server, viewer, "numbat") == ["@Other_Row.aura"], "public not seen")
    server.sql("DELETE FROM aura_id_registry WHERE username = 'Other_Row'")
    eventually(lambda: found(server, viewer, "numbat") == [], "delete not seen")
    # a burst of changes by another process: one statement, many rows
    server.sql("INSERT INTO users (user_id, localpart, displayname)"
               " SELECT '@ixb' || i || ':' || %s, 'ixb' || i, 'Burst ' || i FROM generate_series(1, 300) i",
               server.server_name)
    server.sql("INSERT INTO aura_id_registry (aura_id, user_id, username, display_name)"
               " SELECT '@ixb' || i || '.aura', '@ixb' || i || ':' || %s, 'ixb' || i, 'Burst ' || i"
               " FROM generate_series(1, 300) i", server.server_name)
    # (the notifications may arrive in several reads)
    eventually(lambda: found(server, viewer, "burst 300") == ["@ixb300.aura"], "burst not seen")
    assert len(found(server, viewer, "burst", limit=50)) == 50
    assert found(server, viewer, "burst 1", limit=3) == ["@ixb1.aura", "@ixb10.aura", "@ixb100.aura"]
