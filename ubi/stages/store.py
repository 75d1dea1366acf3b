"""The store stage: the single DuckDB writer. Scored trips from Kafka are upserted by trip_id in one transaction
per poll, and only then are the Kafka offsets committed (at-least-once delivery, idempotent write).

The file is opened for each write and closed after it (``duckdb_store.HandOffDatabase``): DuckDB lets one process
write a file at a time, so this is what lets ``ubi sql``, ``ubi price`` and the portal use it while the pipeline
runs. When one of them holds it, the store waits (its offsets uncommitted) and goes on."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

from ubi.adapters import duckdb_store as store
from ubi.adapters.kafka import make_consumer
from ubi.adapters.metrics import StoreMetrics, serve
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
    """Given its consumer (subscribed to the trips topic) and its DuckDB connection; ``connect`` makes the real
    ones. ``run`` raises on a Kafka error after closing the consumer without a commit (``run_store`` retries)."""

    def __init__(self, cfg: Config, consumer, con, metrics: StoreMetrics | None = None) -> None:
        """``con``: a DuckDB connection held for the stage's life, or a ``session()`` provider such as
        ``HandOffDatabase``. ``metrics``: the process's Prometheus figures (default: a fresh registry, served by
        nobody)."""
        self.cfg = cfg
        self.metrics = metrics or StoreMetrics(listed=cfg.ingest.metrics_silent_listed)
        self._stop = threading.Event()
        self.db = con if hasattr(con, "session") else store.HeldDatabase(con)
        self.consumer = consumer
        self.status_path = status_path(cfg)
        self.written = 0

    @classmethod
    def connect(
        cls, cfg: Config, client_id: str = "ubi-store-1", con=None, metrics: StoreMetrics | None = None
    ) -> "StoreStage":
        return cls(
            cfg,
            make_consumer(cfg.kafka, cfg.kafka.store_group, [cfg.kafka.trips_topic], client_id),
            con if con is not None else store.HandOffDatabase(cfg.db_path, cfg.ingest.store_busy_timeout_s),
            metrics,
        )

    def stop(self) -> None:
        self._stop.set()

    def _publish_status(self, total: int | None = None) -> None:
        if total is None:
            with self.db.session() as con:
                total = con.execute("SELECT count(*) FROM trips").fetchone()[0]
        write_status(
            self.status_path, {"trips": total, "written": self.written, "updated": time.time(), "pid": os.getpid()}
        )
        self.metrics.stored.set(total)

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        log.info("storing %s -> %s", self.cfg.kafka.trips_topic, self.cfg.db_path)
        self._publish_status()
        try:
            while not self._stop.is_set():
                self.step()
        finally:
            try:
                self.consumer.close(autocommit=False)
            except Exception as exc:
                log.warning("closing the consumer: %s", exc)
            log.info("store stopped: %d rows written", self.written)

    def step(self, timeout_ms: int = 500) -> int:
        """One poll: upsert its rows in one transaction, then commit the offsets (at-least-once, idempotent)."""
        records = self.consumer.poll(timeout_ms=timeout_ms, max_records=5000)
        rows = [json.loads(r.value) for batch in records.values() for r in batch]
        m = self.metrics
        if rows:
            with self.db.session() as con:
                with m.timed(m.write):
                    n = store.upsert_trips(con, rows)
                total = con.execute("SELECT count(*) FROM trips").fetchone()[0]
            self.written += n
            with m.timed(m.commit.labels(self.cfg.kafka.store_group)):
                self.consumer.commit()
            m.trips.inc(n)
            m.observe_rows(rows)
            self._publish_status(total)
        m.observe_poll(self.cfg.kafka.store_group, self.consumer, records)
        return len(rows)


def run_store(cfg: Config, client_id: str = "ubi-store-1", install_signals: bool = True) -> int:
    """The store process: one DuckDB connection for its life; a fresh Kafka consumer after each Kafka failure
    (the rows of an uncommitted poll come again and are upserted again: same result)."""
    from ubi.stages.score import run_with_retry

    stop = threading.Event()
    if install_signals:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    db = store.HandOffDatabase(cfg.db_path, cfg.ingest.store_busy_timeout_s)
    metrics = StoreMetrics(listed=cfg.ingest.metrics_silent_listed)  # one per process: counters carry over
    with db.session() as con:
        metrics.seed(store.last_data_by_vehicle(con, cfg.ingest.max_age_days))
    server = serve(metrics.registry, cfg.ingest.store_metrics_port, what="store metrics")
    try:
        return run_with_retry(lambda: StoreStage.connect(cfg, client_id, db, metrics), stop, "store")
    finally:
        if server is not None:
            server.shutdown()
