"""The store stage: the single DuckDB writer. Scored trips from Kafka are upserted by trip_id in one transaction
per poll, and only then are the Kafka offsets committed (at-least-once delivery, idempotent write)."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from ubi.adapters.kafka import make_consumer
from ubi.adapters import duckdb_store as store
from ubi.common.config import Config

log = logging.getLogger("ubi.adapters.duckdb_store")


def write_status(path: Path, status: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)


def status_path(cfg: Config) -> Path:
    """Where the store publishes its progress (the DuckDB file itself is locked by the writer)."""
    return cfg.run_dir / f"store-status-{cfg.kafka.store_group}.json"


def read_status(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class StoreStage:
    def __init__(self, cfg: Config, client_id: str = "ubi-store-1") -> None:
        self.cfg = cfg
        self._stop = threading.Event()
        self.con = store.connect(cfg.db_path)
        self.consumer = make_consumer(cfg.kafka, cfg.kafka.store_group, [cfg.kafka.trips_topic], client_id)
        self.status_path = status_path(cfg)
        self.written = 0

    def stop(self) -> None:
        self._stop.set()

    def _publish_status(self) -> None:
        total = self.con.execute("SELECT count(*) FROM trips").fetchone()[0]
        write_status(self.status_path, {"trips": total, "written": self.written, "updated": time.time(),
                                        "pid": os.getpid()})

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        log.info("storing %s -> %s", self.cfg.kafka.trips_topic, self.cfg.db_path)
        self._publish_status()
        try:
            while not self._stop.is_set():
                records = self.consumer.poll(timeout_ms=500, max_records=5000)
                rows = [json.loads(r.value) for batch in records.values() for r in batch]
                if rows:
                    self.written += store.upsert_trips(self.con, rows)
                    self.consumer.commit()
                    self._publish_status()
        finally:
            self.consumer.close(autocommit=False)
            self.con.close()
            log.info("store stopped: %d rows written", self.written)
