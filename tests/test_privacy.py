"""Privacy safeguards (issue 13): retention settings, dead letters without payloads, the encrypted DuckDB file."""

from __future__ import annotations

import base64
import json
import os
import stat

import duckdb
import pytest

from ubi.adapters import duckdb_store as store
from ubi.adapters import privacy
from ubi.common.config import Config, IngestConfig, PrivacyConfig, load_config
from ubi.common.errors import ConfigError, DatabaseKeyError
from ubi.stages.bridge import route


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A private UBI_HOME (keys land in its secrets/) and no key in the environment."""
    monkeypatch.setenv("UBI_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UBI_DB_KEY", raising=False)
    monkeypatch.delenv("UBI_PSEUDONYM_KEY", raising=False)
    monkeypatch.delenv("UBI_CONFIG", raising=False)
    monkeypatch.delenv("UBI_DB", raising=False)
    return tmp_path / "home"


def test_topic_retention_from_the_privacy_settings():
    cfg = Config()
    conf = privacy.topic_configs(cfg)
    tel = conf[cfg.kafka.telemetry_topic]
    assert tel["retention.ms"] == str(48 * 3600 * 1000) and tel["cleanup.policy"] == "delete"
    assert int(tel["segment.ms"]) <= 3600 * 1000  # else Kafka keeps a 7-day segment whatever the retention
    assert conf[cfg.kafka.dead_letter_topic]["retention.ms"] == str(7 * 24 * 3600 * 1000)
    assert conf[cfg.kafka.scorer_state_topic] == {"cleanup.policy": "compact", "retention.ms": "-1"}
    with pytest.raises(ConfigError, match="shorter than a trip may stay open"):
        privacy.topic_configs(Config(privacy=PrivacyConfig(telemetry_retention_h=6), ingest=IngestConfig()))
    # hours are fine where trips are shorter
    short = Config(privacy=PrivacyConfig(telemetry_retention_h=6), ingest=IngestConfig(max_trip_s=4 * 3600))
    assert privacy.topic_configs(short)[cfg.kafka.telemetry_topic]["retention.ms"] == str(6 * 3600 * 1000)
    with pytest.raises(ConfigError):
        PrivacyConfig(dlq_retention_h=0)


def test_privacy_section_from_toml(tmp_path):
    f = tmp_path / "ubi.toml"
    f.write_text("[privacy]\ntelemetry_retention_h = 72\ndlq_keep_payload = true\nposition_decimals = 3\n")
    p = load_config(f).privacy
    assert (p.telemetry_retention_h, p.dlq_keep_payload, p.position_decimals) == (72.0, True, 3)
    f.write_text('[privacy]\ndb_crypto = "rot13"\n')
    with pytest.raises(ConfigError, match="db_crypto"):
        load_config(f)


def test_dead_letter_keeps_no_payload_by_default():
    payload = b'{"v":1,"vehicle":"VH00001","gps":{"lat":[52.3700512],"lon":[4.8900233]},"oops"'
    out = route(Config(), "ubi/v1/vehicles/VH00001/telemetry", payload, 1, 1, 1)
    body = json.loads(out.value)
    assert out.dead_letter and body["reason"] == "malformed_json"
    assert "payload_b64" not in body and body["payload_kept"] is False
    assert body["payload_size"] == len(payload) and len(body["payload_sha256"]) == 64
    assert b"52.37" not in out.value and b"4.89" not in out.value


def test_a_kept_dead_letter_payload_has_coarse_positions_only():
    payload = b'{"v":1,"vehicle":"VH00001","gps":{"lat":[52.3700512,-33.8688197],"lon":[4.8900233]},"t":1795342866256'
    cfg = Config(privacy=PrivacyConfig(dlq_keep_payload=True, position_decimals=2))
    body = json.loads(route(cfg, "ubi/v1/vehicles/VH00001/telemetry", payload, 1, 1, 1).value)
    kept = base64.b64decode(body["payload_b64"])
    assert b"52.37," in kept and b"-33.86]" in kept and b"4.89]" in kept and b"1795342866256" in kept
    assert b"52.370" not in kept and b"4.890" not in kept
    assert privacy.coarsen_numbers(b"[1.23456, -7.5, 8]", 0) == b"[1, -7, 8]"


def test_database_cannot_be_read_without_its_key(home, tmp_path):
    db = tmp_path / "x.duckdb"
    con = store.connect(db)
    con.execute("INSERT INTO protected_attributes VALUES ('PL_SECRET_0001', 'f')")
    con.close()
    key_file = home / "secrets" / "db.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600 and stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert b"PL_SECRET_0001" not in db.read_bytes()  # not on disk in the clear
    assert privacy.file_is_encrypted(db) is True
    with pytest.raises(duckdb.Error, match="encrypted"):
        duckdb.connect(str(db))  # any DuckDB client, no key
    # with the key: as before, read-only too
    ro = store.connect(db, read_only=True)
    assert ro.execute("SELECT policy_id FROM protected_attributes").fetchall() == [("PL_SECRET_0001",)]
    ro.close()
    # a wrong key, from the environment: a clear error that does not show the key
    os.environ["UBI_DB_KEY"] = "not-the-key-xyz"
    try:
        with pytest.raises(DatabaseKeyError, match="wrong encryption key") as err:
            store.connect(db, read_only=True)
        assert "not-the-key-xyz" not in str(err.value)
    finally:
        del os.environ["UBI_DB_KEY"]
    # the key file gone: refused (never a fresh key for an existing encrypted file)
    key_file.rename(tmp_path / "moved.key")
    with pytest.raises(DatabaseKeyError, match="no key was given"):
        store.connect(db)
    assert not key_file.exists()


def test_the_cli_says_so_without_a_traceback(home, tmp_path, capsys, monkeypatch):
    from ubi.cli.main import main

    db = tmp_path / "y.duckdb"
    store.connect(db).close()
    capsys.readouterr()  # (a root log handler left by an earlier CLI test may complain about its closed stream)
    monkeypatch.setenv("UBI_DB_KEY", "wrong")
    assert main(["sql", "--db", str(db), "SELECT 1"]) == 2
    err = capsys.readouterr().err
    assert "wrong encryption key" in err and "Traceback" not in err


def test_an_unencrypted_file_is_encrypted_in_place(home, tmp_path):
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))  # a store written before encryption (plain DuckDB, the same schema)
    con.execute(store.SCHEMA)
    con.execute(
        "INSERT INTO policies (policy_id, vehicle_id, start_date, base_premium) VALUES "
        "('PL_OLD_0001', 'VH_OLD', DATE '2026-01-01', 50)"
    )
    con.close()
    with pytest.raises(DatabaseKeyError, match="not encrypted"):
        store.connect(db, read_only=True)  # a reader does not rewrite the file
    assert privacy.file_is_encrypted(db) is False
    con = store.connect(db)  # the first writer encrypts it, schema upgrades follow
    assert con.execute("SELECT policy_id, vehicle_id FROM policies").fetchall() == [("PL_OLD_0001", "VH_OLD")]
    con.close()
    assert privacy.file_is_encrypted(db) is True and b"PL_OLD_0001" not in db.read_bytes()
    assert not db.with_name(db.name + ".encrypting").exists()


def test_keys_are_made_once(tmp_path):
    path = tmp_path / "s" / "k.key"
    assert privacy.read_or_make_key(path, create=False) is None
    first = privacy.read_or_make_key(path, create=True)
    assert first and privacy.read_or_make_key(path, create=True) == first and len(first) >= 40


def test_rekey_makes_the_old_key_useless(home, tmp_path):
    db = tmp_path / "r.duckdb"
    con = store.connect(db)
    con.execute("INSERT INTO protected_attributes VALUES ('PL_REKEY', 'm')")
    con.close()
    key_file = home / "secrets" / "db.key"
    old = key_file.read_text().strip()
    assert privacy.rekey_database(db) == key_file
    new = key_file.read_text().strip()
    assert new != old and stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not key_file.with_name("db.key.new").exists() and b"PL_REKEY" not in db.read_bytes()
    ro = store.connect(db, read_only=True)
    assert ro.execute("SELECT policy_id FROM protected_attributes").fetchall() == [("PL_REKEY",)]
    ro.close()
    os.environ["UBI_DB_KEY"] = old
    try:
        with pytest.raises(DatabaseKeyError, match="wrong encryption key"):
            store.connect(db, read_only=True)
    finally:
        del os.environ["UBI_DB_KEY"]


def test_stack_up_makes_the_keys_but_never_a_new_key_for_an_encrypted_file(home, tmp_path):
    cfg = load_config()
    assert privacy.ensure_keys(cfg) == "made pseudonym.key, audit.key, erasure.key, db.key"
    for name in ("pseudonym.key", "audit.key", "erasure.key", "db.key"):
        assert stat.S_IMODE((home / "secrets" / name).stat().st_mode) == 0o600
    assert privacy.ensure_keys(cfg) == "present"
    store.connect(cfg.db_path).close()
    (home / "secrets" / "db.key").unlink()  # lost: the encrypted file must not get a fresh key
    assert privacy.ensure_keys(cfg) == "present" and not (home / "secrets" / "db.key").exists()


@pytest.mark.parametrize("key", [b"k", b"x" * 43, b"long" * 40, "ключ-🔑".encode()])
def test_pseudonyms_in_sql_equal_the_python_reference(key, rng):
    ids = ["PL000001", "", "VH'quote", "trip_ünïcode_🚗", *[f"T{int(x)}" for x in rng.integers(0, 10**12, 200)]]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (id VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[i] for i in ids])
    got = con.execute(f"SELECT id, {privacy.pseudonym_sql('id', 'trip')} FROM t", privacy.hmac_pads(key)).fetchall()
    assert got == [(i, privacy.pseudonym(i, key, "trip")) for i in ids]


SPILLER = """
import sys
from pathlib import Path
from ubi.adapters import duckdb_store as store
con = store.connect(Path(sys.argv[1]))
con.execute("SET memory_limit = '64MB'")
con.execute("SET threads = 1")
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TEMP TABLE big AS SELECT i, md5(i::VARCHAR) AS h FROM range(3000000) t(i)")
cur = con.execute("SELECT h FROM big ORDER BY h")
cur.fetchmany(10)
print("spilled", flush=True)
sys.stdin.read()
"""


def test_a_process_that_spills_does_not_stop_another_from_opening_the_file(home, tmp_path, monkeypatch):
    """Two processes started in one working directory: an encrypted connection spilled into ./.tmp, and DuckDB
    refused every other process's connection while those files lay there ("Existing temporary files found"), even
    to another database file: the demo's store died while a pricing benchmark spilled. Each connection now spills
    into its own directory beside its database, removed when its process is gone."""
    import subprocess
    import sys

    monkeypatch.chdir(tmp_path)
    db, other = tmp_path / "x.duckdb", tmp_path / "y.duckdb"
    store.connect(db).close()
    spiller = subprocess.Popen(
        [sys.executable, "-c", SPILLER, str(other)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ
    )
    try:
        assert spiller.stdout.readline().strip() == b"spilled"
        spills = list(tmp_path.glob(".y.duckdb.tmp-*/*"))
        assert spills and not (tmp_path / ".tmp").exists()  # its own directory, not the shared ./.tmp
        con = store.connect(db)  # a second process meanwhile: the store, `ubi sql`
        assert con.execute("SELECT count(*) FROM trips").fetchone() == (0,)
        con.close()
    finally:
        spiller.kill()
        spiller.wait()
    assert list(tmp_path.glob(".y.duckdb.tmp-*"))  # killed: DuckDB could not clean up
    store.connect(other).close()
    assert not list(tmp_path.glob(".y.duckdb.tmp-*"))  # the next connection removes a dead process's files
