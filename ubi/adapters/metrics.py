"""Prometheus metrics for every long-running stage and for pricing runs (``prometheus_client``).

Each stage process owns one ``CollectorRegistry`` (a fresh one per stage object by default, so unit tests can run
many stages in one process) served at ``http://<addr>:<port>/metrics``:

- bridge   ``ingest.metrics_port``         (9464) ``BridgeCollector``: reads the bridge's own counters at scrape
  time, so the per-message path keeps its single lock and pays nothing for Prometheus;
- scorer   ``ingest.scorer_metrics_port``  (9465) ``ScorerMetrics``: updated once per poll;
- store    ``ingest.store_metrics_port``   (9466) ``StoreMetrics``: updated once per poll;
- pricing  a CLI run, not a server: ``write_pricing_textfile`` writes the last run's figures to
  ``<home>/metrics/pricing.prom`` for node_exporter's textfile collector (no pushgateway here, and a batch job's
  figures must outlive its process; the store does not run pricing and must not read pricing's tables).

Cardinality: every label set is bounded by the deployment, never by the fleet: ``reason`` by the dead-letter
reasons in the code, ``partition`` by the topic's partitions. Last data per device is exposed as counts of
devices silent over fixed ages plus the ``silent_listed`` (default 20) longest-silent devices among those silent
for over a day, one series each: at most that many ``vehicle`` series whatever the fleet size.
"""

from __future__ import annotations

import calendar
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("ubi.metrics")

# Kafka commit and DuckDB write latency (seconds): a commit is ~1-20 ms, a DuckDB upsert of a poll 5 ms-1 s.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
SILENT_AGES_S = {"1h": 3600, "1d": 86400, "7d": 7 * 86400}


def serve(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1", what: str = "metrics") -> Any:
    """Start the /metrics endpoint in a daemon thread; returns the server (``.shutdown()``, ``.server_port``), or
    None when ``port`` is 0 (off) or taken (a warning: a second process on the same host then has no endpoint
    unless given its own ``--metrics-port``). Port 0 is "off" in the config, so tests ask for a free port with -1."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(max(port, 0), addr=addr, registry=registry)
    except OSError as exc:
        log.warning("%s endpoint not started on port %d: %s", what, port, exc)
        return None
    log.info("%s on http://%s:%d/metrics", what, addr, server.server_port)
    return server


# --- bridge -------------------------------------------------------------------------------------------------------


BRIDGE_NAMES = {"retries": "kafka_retries"}
BRIDGE_HELP = {
    "received": "MQTT messages taken from the broker",
    "delivered": "messages confirmed by Kafka on the telemetry topic",
    "dead_lettered": "messages confirmed by Kafka on the dead-letter topic",
    "retries": "Kafka writes retried (the message stays unacknowledged)",
    "e2e_acks": "end-to-end ack messages published to devices",
}


class BridgeCollector(Collector):
    """The bridge's ``BridgeStats`` as Prometheus families, copied under its lock at scrape time. Names and meanings
    are those of the bridge's earlier hand-written exposition (dashboards and the integration test read them)."""

    def __init__(self, stats: Any, buckets_ms: tuple[float, ...]) -> None:
        self.stats, self.buckets_ms = stats, buckets_ms
        # when ``received`` last grew, as seen by a scrape: the scrape interval is its resolution, and the
        # per-message path pays nothing for it
        self._received, self.last_s = 0, 0.0

    def collect(self) -> Iterator[Any]:
        s = self.stats
        with s.lock:
            # every int counter of BridgeStats (a new one appears without a change here); in_flight is a gauge
            counters = {k: v for k, v in vars(s).items() if type(v) is int and k != "in_flight"}
            in_flight = s.in_flight
            reasons = dict(s.reasons)
            counts, total_ms = list(s.latency_counts), s.latency_sum_ms
        for name, value in counters.items():
            yield CounterMetricFamily(f"ubi_bridge_{BRIDGE_NAMES.get(name, name)}", BRIDGE_HELP.get(name, name), value)
        yield GaugeMetricFamily("ubi_bridge_in_flight", "received, not yet confirmed by Kafka", value=in_flight)
        by_reason = CounterMetricFamily(
            "ubi_bridge_dead_letter_reasons", "dead-lettered messages by reason", labels=["reason"]
        )
        for reason, n in sorted(reasons.items()):
            by_reason.add_metric([reason], n)
        yield by_reason
        cum, buckets = 0, []
        for bound, n in zip(self.buckets_ms, counts, strict=True):
            cum += n
            buckets.append(("+Inf" if bound == float("inf") else _le(bound), cum))
        yield HistogramMetricFamily(
            "ubi_bridge_publish_to_kafka_ms",
            "MQTT receipt to Kafka confirmation, milliseconds",
            buckets=buckets,
            sum_value=total_ms,
        )
        if counters.get("received", 0) > self._received:
            self._received, self.last_s = counters["received"], time.time()
        if self.last_s:
            yield GaugeMetricFamily(
                "ubi_bridge_last_message_timestamp_seconds", "when the newest message was received", self.last_s
            )


def _le(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def bridge_registry(stats: Any, buckets_ms: tuple[float, ...]) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(BridgeCollector(stats, buckets_ms))
    return registry


# --- consumers (scorer, store) ------------------------------------------------------------------------------------


class _ConsumerMetrics:
    """What every Kafka consumer stage shows: records read, lag per partition, commit latency."""

    def __init__(self, stage: str, registry: CollectorRegistry | None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.records = Counter(f"ubi_{stage}_records", "Kafka records consumed", registry=r)
        self.lag = Gauge(
            "ubi_kafka_consumer_lag",
            "records behind the partition's high watermark (at the last poll)",
            ["group", "topic", "partition"],
            registry=r,
        )
        self.commit = Histogram(
            "ubi_kafka_commit_seconds",
            "one checkpoint: for the scorer flush + state + offset commit, for the store the offset commit",
            ["group"],
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self._lag_labels: set[tuple[str, str, str]] = set()

    def observe_lag(self, group: str, consumer: Any) -> None:
        """Lag of every partition the consumer owns: its high watermark (kafka-python's cached one, learnt with every
        fetch: no extra request; unknown before the first fetch) minus its position. A partition no longer owned is
        removed."""
        seen = set()
        for tp in consumer.assignment():
            hw = consumer.highwater(tp)
            if hw is None:
                continue
            labels = (group, tp.topic, str(tp.partition))
            self.lag.labels(*labels).set(max(hw - consumer.position(tp), 0))
            seen.add(labels)
        for labels in self._lag_labels - seen:
            self.lag.remove(*labels)
        self._lag_labels = seen

    @contextmanager
    def timed(self, hist: Histogram) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            hist.observe(time.perf_counter() - t)


class ScorerMetrics(_ConsumerMetrics):
    """Scorer figures, updated after each poll by ``observe``. The stage's summary counters are per incarnation
    (a reconnect makes a new stage); the process-wide counters here add the differences, so they never go back."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__("scorer", registry)
        r = self.registry
        self.trips = Counter("ubi_scorer_trips", "scored trips published", registry=r)
        self.unreadable = Counter("ubi_scorer_unreadable", "records the scorer could not decode", registry=r)
        self.unowned = Counter(
            "ubi_scorer_unowned_skipped",
            "records of a partition being revoked, left for its next owner (rebalances)",
            registry=r,
        )
        self.quarantined = Counter(
            "ubi_scorer_quarantined", "trips and records dead-lettered by the scorer, by reason", ["reason"], registry=r
        )
        self.open_trips = Gauge(
            "ubi_scorer_open_trips", "ignition trips open (ignition_on seen, not closed)", registry=r
        )
        self.motion_tracks = Gauge("ubi_scorer_motion_tracks", "motion-cut vehicles holding data", registry=r)
        self.vehicles = Gauge("ubi_scorer_cutter_vehicles", "vehicles in the trip cutter's state", registry=r)
        self.buffered = Gauge("ubi_scorer_buffered_batches", "telemetry messages held in open trips", registry=r)
        self.reorder_held = Gauge(
            "ubi_scorer_reorder_held",
            "messages waiting in the resequencer for an earlier seq of their device",
            registry=r,
        )
        self.waiting_start = Gauge(
            "ubi_scorer_vehicles_waiting_to_start",
            "new vehicles whose first messages wait for an ignition_on (released after the reorder window, or when "
            "the stream goes quiet)",
            registry=r,
        )
        self.uncommitted = Gauge(
            "ubi_scorer_uncommitted_records",
            "records read but not committed (held back by open trips), per partition",
            ["partition"],
            registry=r,
        )
        self._stage: Any = None
        self._seen: dict[str, Any] = {}

    def observe(self, stage: Any, records: dict) -> None:
        if stage is not self._stage:
            self._stage, self._seen = stage, {"trips": 0, "unreadable": 0, "unowned": 0, "reasons": {}}
        s = stage.summary
        self.records.inc(sum(len(b) for b in records.values()))
        self.trips.inc(s.trips_emitted - self._seen["trips"])
        self.unreadable.inc(s.unreadable - self._seen["unreadable"])
        self.unowned.inc(s.unowned_skipped - self._seen["unowned"])
        for reason, n in s.quarantine_reasons.items():
            d = n - self._seen["reasons"].get(reason, 0)
            if d:
                self.quarantined.labels(reason).inc(d)
        self._seen = {
            "trips": s.trips_emitted,
            "unreadable": s.unreadable,
            "unowned": s.unowned_skipped,
            "reasons": dict(s.quarantine_reasons),
        }
        c = stage.cutter
        self.open_trips.set(len(c.open))
        self.motion_tracks.set(len(c.tracks))
        self.vehicles.set(len(c.partition_of))
        self.buffered.set(sum(len(t.batches) for t in c.open.values()))
        self.reorder_held.set(sum(len(h) for h in c.reseq.held.values()))
        self.waiting_start.set(c.reseq.new_held())
        self.observe_lag(stage.cfg.kafka.scorer_group, stage.consumer)
        self.uncommitted.clear()
        for p, pos in stage.position.items():
            self.uncommitted.labels(str(p)).set(max(pos - stage.committed.get(p, 0), 0))


# --- store --------------------------------------------------------------------------------------------------------


@dataclass
class DeviceLastData:
    """Newest data time (epoch seconds) per vehicle in NumPy, so a scrape over a million devices is a few ms."""

    index: dict[str, int]
    last_s: np.ndarray

    @classmethod
    def empty(cls) -> "DeviceLastData":
        return cls({}, np.zeros(1024))

    def update(self, vehicle: str, ts_s: float) -> None:
        i = self.index.get(vehicle)
        if i is None:
            i = self.index[vehicle] = len(self.index)
            if i >= len(self.last_s):
                self.last_s = np.concatenate([self.last_s, np.zeros(len(self.last_s))])
            self.last_s[i] = ts_s
        elif ts_s > self.last_s[i]:
            self.last_s[i] = ts_s

    def silent(self, now_s: float, over_s: float) -> int:
        n = len(self.index)
        return int(np.count_nonzero(now_s - self.last_s[:n] > over_s))

    def longest_silent(self, now_s: float, over_s: float, k: int) -> list[tuple[str, float]]:
        n = len(self.index)
        if not n or k <= 0:
            return []
        last = self.last_s[:n]
        cand = np.flatnonzero(now_s - last > over_s)
        if len(cand) > k:
            cand = cand[np.argpartition(last[cand], k - 1)[:k]]
        names = {i: v for v, i in self.index.items()} if len(cand) else {}
        return sorted(((names[int(i)], float(last[i])) for i in cand), key=lambda x: x[1])


class _DeviceCollector(Collector):
    def __init__(self, devices: DeviceLastData, listed: int, clock: Any) -> None:
        self.devices, self.listed, self.clock = devices, listed, clock

    def collect(self) -> Iterator[Any]:
        now = self.clock()
        d = self.devices
        yield GaugeMetricFamily("ubi_store_devices_known", "devices with a policy or a stored trip", len(d.index))
        silent = GaugeMetricFamily(
            "ubi_store_devices_silent", "devices whose newest stored trip ended longer ago than 'over'", labels=["over"]
        )
        for name, age in SILENT_AGES_S.items():
            silent.add_metric([name], d.silent(now, age))
        yield silent
        per = GaugeMetricFamily(
            "ubi_store_device_last_data_timestamp_seconds",
            "newest stored data of the longest-silent devices (silent over a day; bounded list)",
            labels=["vehicle"],
        )
        for vehicle, ts in d.longest_silent(now, SILENT_AGES_S["1d"], self.listed):
            per.add_metric([vehicle], ts)
        yield per
        n = len(d.index)
        if n:
            yield GaugeMetricFamily(
                "ubi_store_newest_data_timestamp_seconds", "newest stored data of any device", float(d.last_s[:n].max())
            )


class StoreMetrics(_ConsumerMetrics):
    """Store figures: trips written, DuckDB write latency, lag, and last data per device (seeded from DuckDB at
    start by the process, then updated from each written row)."""

    def __init__(self, registry: CollectorRegistry | None = None, listed: int = 20, clock: Any = time.time) -> None:
        super().__init__("store", registry)
        r = self.registry
        self.trips = Counter("ubi_store_trips_written", "trip rows upserted into DuckDB", registry=r)
        self.write = Histogram(
            "ubi_store_duckdb_write_seconds",
            "one poll's upsert transaction in DuckDB",
            buckets=LATENCY_BUCKETS_S,
            registry=r,
        )
        self.stored = Gauge("ubi_store_trips_stored", "rows in the trips table", registry=r)
        self.devices = DeviceLastData.empty()
        r.register(_DeviceCollector(self.devices, listed, clock))

    def observe_poll(self, group: str, consumer: Any, records: dict) -> None:
        """Records read and lag after one poll."""
        self.records.inc(sum(len(b) for b in records.values()))
        self.observe_lag(group, consumer)

    def seed(self, rows: list[tuple[str, float | None]]) -> None:
        """(vehicle, newest data epoch s or None for a policy without trips) from the database."""
        for vehicle, ts in rows:
            self.devices.update(vehicle, float(ts or 0.0))

    def observe_rows(self, rows: list[dict]) -> None:
        for r in rows:
            end_ms = r.get("end_ms")
            if r.get("vehicle_id") and end_ms is not None:
                self.devices.update(r["vehicle_id"], end_ms / 1000)


# --- pricing (textfile) -------------------------------------------------------------------------------------------


def pricing_textfile(home: Path) -> Path:
    return home / "metrics" / "pricing.prom"


def write_pricing_textfile(path: Path, summary: Any, seconds: float, finished_s: float | None = None) -> None:
    """The last pricing run's figures, atomically replacing the file (node_exporter reads it on each scrape)."""
    r = CollectorRegistry()
    month = summary.month
    month_ts = calendar.timegm((month.year, month.month, 1, 0, 0, 0))
    figures = {
        "ubi_pricing_last_run_finished_timestamp_seconds": ("when the last run committed", finished_s or time.time()),
        "ubi_pricing_last_run_month_timestamp_seconds": ("first day of the month it priced (UTC)", month_ts),
        "ubi_pricing_last_run_duration_seconds": ("wall time of the run", seconds),
        "ubi_pricing_last_run_policies": ("policies priced", summary.policies),
        "ubi_pricing_last_run_priced_on_driving": ("policies priced on driving data", summary.priced_on_driving),
        "ubi_pricing_last_run_premium_before_eur": ("book premium before, EUR", float(summary.premium_before)),
        "ubi_pricing_last_run_premium_after_eur": ("book premium after, EUR", float(summary.premium_after)),
    }
    for name, (doc, value) in figures.items():
        Gauge(name, doc, registry=r).set(value)
    caps = Gauge("ubi_pricing_last_run_capped", "premiums held by the monthly cap", ["direction"], registry=r)
    caps.labels("up").set(summary.capped_up)
    caps.labels("down").set(summary.capped_down)
    ob = summary.off_balance
    if ob:
        Gauge("ubi_pricing_last_run_off_balance", "off-balance factor applied", registry=r).set(ob["factor"])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(path), r)
