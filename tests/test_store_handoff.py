"""Reads and pricing beside the store (issue 11): DuckDB lets one process write a file at a time, so `ubi sql` and
`ubi price` used to fail with a lock error while the store ran, although the docs said they work beside it. The
store now opens the file for each write only (HandOffDatabase) and everyone waits for a busy file with back-off.
Here the store writes trips in small polls, and keeps receiving more, while other processes query and price the
same file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import replace

from tests.doubles import KafkaLog, MemConsumer
from tests.test_store_stage import row
from ubi.adapters import duckdb_store as store
from ubi.common.config import Config
from ubi.stages.store import StoreStage

N = 2000


def _cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ubi.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_sql_and_pricing_run_while_the_store_writes(tmp_path, monkeypatch):
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "ubi.duckdb")
    monkeypatch.setenv("UBI_HOME", str(tmp_path))  # this process and the CLI ones share home (and its keys)
    monkeypatch.setenv("UBI_DB", str(cfg.db_path))
    monkeypatch.delenv("UBI_CONFIG", raising=False)
    env = dict(os.environ)
    con = store.connect(cfg.db_path)  # create it, with one policy to price, then let go of it
    con.execute("INSERT INTO policies VALUES ('P1', 'V1', '2025-01-01', 60.00, 'B', '25-39', 'north')")
    con.close()
    log = KafkaLog(partitions=3)
    fed = 0

    def feed(n: int) -> None:
        nonlocal fed
        for i in range(fed, fed + n):
            r = {**row(i), "trip_id": f"h{i:05d}"}
            log.append(cfg.kafka.trips_topic, r["vehicle_id"].encode(), json.dumps(r).encode())
        fed += n

    feed(N)
    stage = StoreStage(
        cfg,
        MemConsumer(log, cfg.kafka.store_group, [cfg.kafka.trips_topic], max_records=40),
        store.HandOffDatabase(cfg.db_path, busy_timeout_s=120),
    )
    readers_done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        """Writes in small polls until the readers are done: when it has caught up before then, more trips arrive
        (fed from this thread, so the in-memory log is never touched by two threads). The overlap is made, not
        hoped for: a reader starting late on a loaded machine still finds the store writing."""
        try:
            while True:
                stage.step(timeout_ms=10)
                if stage.consumer.caught_up():
                    if readers_done.is_set():
                        return
                    feed(40)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        written_before = stage.written
        counts = []
        for _ in range(4):
            r = _cli(env, "sql", "SELECT count(*) AS n FROM trips")
            assert r.returncode == 0, r.stderr
            counts.append(r.stdout)
        priced = _cli(env, "price", "--month", "2026-09")
        assert priced.returncode == 0, priced.stderr
        written_during = stage.written - written_before
    finally:
        readers_done.set()
        writer.join(300)
    assert not errors, errors
    assert written_during > 0, "the store wrote nothing while the readers ran: it was blocked by them"
    con = store.connect(cfg.db_path)
    try:
        assert con.execute("SELECT count(*) FROM trips").fetchone()[0] == fed
        assert con.execute("SELECT count(*) FROM premiums WHERE month = '2026-09-01'").fetchone()[0] == 1
    finally:
        con.close()


def test_a_database_made_by_a_ubi_command_is_readable_by_its_owner_only(tmp_path, monkeypatch):
    """Issue 11: the store's DuckDB file was created 0644 (world-readable); every ubi command now runs with umask
    077."""
    monkeypatch.setenv("UBI_HOME", str(tmp_path))
    monkeypatch.setenv("UBI_DB", str(tmp_path / "new.duckdb"))
    monkeypatch.delenv("UBI_CONFIG", raising=False)
    r = _cli(dict(os.environ), "sql", "SELECT 1")
    assert r.returncode != 0  # read-only on a file that does not exist: refused, nothing made
    r = _cli(dict(os.environ), "price", "--month", "2026-09")
    assert r.returncode == 0, r.stderr
    made = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert (tmp_path / "new.duckdb") in made
    loose = {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in made if p.stat().st_mode & 0o077}
    assert not loose, loose
