"""Every stage's Prometheus endpoint, scraped over HTTP, shows what was sent through it (in-memory Kafka doubles,
a real DuckDB): messages, trips, dead letters by reason, in flight, lag per partition, open trips, latency
histograms, devices gone silent (with the per-device list bounded), and the pricing run's textfile."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter as Tally
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from prometheus_client.parser import text_string_to_metric_families

import ubi.stages.bridge as bridge_mod
from pricing.monthly import RunSummary
from tests.doubles import KafkaLog, MemConsumer, MemProducer, MemStateReader
from tests.stage_data import ignition_stream, motion_stream, publish
from tests.test_bridge_unit import HeldSink, message
from tests.test_store_stage import trips_log
from ubi.adapters import duckdb_store as store
from ubi.adapters.metrics import (
    ScorerMetrics,
    StoreMetrics,
    serve,
    write_pricing_textfile,
)
from ubi.common.config import Config
from ubi.stages.score import ScoreStage
from ubi.stages.store import StoreStage

CFG = Config()


def parse(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def scrape(server) -> dict[tuple[str, tuple], float]:
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    return parse(urllib.request.urlopen(url, timeout=5).read().decode())


def by_label(m: dict, name: str, label: str) -> dict[str, float]:
    return {dict(k[1])[label]: v for k, v in m.items() if k[0] == name}


# --- bridge ------------------------------------------------------------------------------------------------------


def test_bridge_endpoint_counts_what_was_sent_and_what_kafka_confirmed():
    sink = HeldSink()
    b = bridge_mod.Bridge(CFG, "unused", sink=sink)
    b.client = type("C", (), {"ack": lambda self, mid, qos: None})()
    server = bridge_mod.serve_metrics(b.stats, -1)
    try:
        for mid in range(1, 6):
            b._on_message(None, None, message(mid))
        bad = message(6)
        bad.payload = b"not json"
        b._on_message(None, None, bad)
        wrong = message(7)
        wrong.topic = "ubi/v1/elsewhere"
        b._on_message(None, None, wrong)
        m = scrape(server)
        assert m[("ubi_bridge_received_total", ())] == 7 and m[("ubi_bridge_in_flight", ())] == 7
        assert m[("ubi_bridge_delivered_total", ())] == 0
        sink.confirm(6)  # the five good ones and the malformed one; the unknown topic stays in flight
        m = scrape(server)
    finally:
        server.shutdown()
    assert m[("ubi_bridge_delivered_total", ())] == 5
    assert m[("ubi_bridge_dead_lettered_total", ())] == 1
    assert m[("ubi_bridge_in_flight", ())] == 1
    assert by_label(m, "ubi_bridge_dead_letter_reasons_total", "reason") == {"malformed_json": 1}
    assert m[("ubi_bridge_publish_to_kafka_ms_count", ())] == 6
    assert m[("ubi_bridge_publish_to_kafka_ms_bucket", (("le", "+Inf"),))] == 6
    assert m[("ubi_bridge_last_message_timestamp_seconds", ())] > 1.7e9


def test_a_taken_port_only_warns(caplog):
    first = serve(StoreMetrics().registry, -1)
    try:
        assert serve(StoreMetrics().registry, first.server_port) is None
        assert "not started" in caplog.text
    finally:
        first.shutdown()
    assert serve(StoreMetrics().registry, 0) is None  # 0 = off


# --- scorer ------------------------------------------------------------------------------------------------------


def fleet() -> KafkaLog:
    log = KafkaLog(partitions=3)
    publish(
        log,
        CFG,
        [
            ignition_stream("A", 3),
            ignition_stream("B", 2, first_s=35),
            ignition_stream("C", 3, 5),
            motion_stream("M", 2),
        ],
    )
    return log


def open_ignition_trips(log: KafkaLog, consumer: MemConsumer) -> int:
    """From the records the consumer has been handed: vehicles whose latest event is an ignition_on."""
    last: dict[str, str] = {}
    for tp, pos in consumer.pos.items():
        for r in log._parts(tp.topic)[tp.partition][:pos]:
            if dict(r.headers)["kind"] == b"events":
                last[r.key.decode()] = json.loads(r.value)["event"]
    return sum(1 for e in last.values() if e == "ignition_on")


def test_scorer_endpoint_matches_the_stream():
    log = fleet()

    def score(trip) -> bytes:
        if trip.vehicle == "B":
            raise ValueError("cannot score B")
        return json.dumps({"trip_id": trip.trip_id}).encode()

    metrics = ScorerMetrics()
    consumer = MemConsumer(log, CFG.kafka.scorer_group, max_records=7)
    stage = ScoreStage(
        CFG, consumer, MemProducer(log), MemStateReader(log, CFG.kafka.scorer_state_topic), score, metrics
    )
    server = serve(metrics.registry, -1)
    total = sum(log.end(CFG.kafka.telemetry_topic).values())
    try:
        polls = 0
        while polls < 2 or not open_ignition_trips(log, consumer):  # stop while ignition trips are open
            stage.step()
            polls += 1
        m = scrape(server)
        lag = by_label(m, "ubi_kafka_consumer_lag", "partition")
        ends = log.end(CFG.kafka.telemetry_topic)
        assert lag == {str(tp.partition): ends[tp.partition] - p for tp, p in consumer.pos.items()}
        assert m[("ubi_scorer_records_total", ())] == 7 * polls == total - sum(lag.values())
        assert m[("ubi_scorer_open_trips", ())] == open_ignition_trips(log, consumer) > 0
        assert m[("ubi_scorer_buffered_batches", ())] > 0
        assert m[("ubi_kafka_commit_seconds_count", (("group", CFG.kafka.scorer_group),))] == polls
        # the uncommitted records are those an open trip still holds
        held = by_label(m, "ubi_scorer_uncommitted_records", "partition")
        committed = {tp.partition: om.offset for tp, om in log.committed[CFG.kafka.scorer_group].items()}
        read = {tp.partition: pos for tp, pos in consumer.pos.items() if pos}  # partitions this stage has read
        assert held == {str(p): pos - committed.get(p, 0) for p, pos in read.items()} and sum(held.values()) > 0
        for _ in range(200):
            stage.step()
            if consumer.caught_up() and not stage.cutter.open:
                break
        stage.step()
        m = scrape(server)
    finally:
        server.shutdown()
    published = len(log.records(CFG.kafka.trips_topic))
    dlq = Tally(dict(r.headers)["reason"].decode() for r in log.records(CFG.kafka.dead_letter_topic))
    assert published == 3 + 3 + 2  # A, C and the motion vehicle; B's two trips were quarantined
    assert m[("ubi_scorer_trips_total", ())] == published
    assert by_label(m, "ubi_scorer_quarantined_total", "reason") == dict(dlq) == {"unscorable": 2}
    assert m[("ubi_scorer_records_total", ())] == total
    assert set(by_label(m, "ubi_kafka_consumer_lag", "partition").values()) == {0}
    assert m[("ubi_scorer_open_trips", ())] == 0
    assert m[("ubi_scorer_cutter_vehicles", ())] == 4
    assert m[("ubi_scorer_vehicles_waiting_to_start", ())] == m[("ubi_scorer_reorder_held", ())] == 0


def test_scorer_gauges_show_a_new_vehicle_waiting_to_start():
    """A vehicle never seen before whose first messages are not an ignition_on waits (its ignition_on may still
    come, reordered): the gauges show it and the messages it holds, until the reorder window lets it start."""
    log = KafkaLog(partitions=3)
    publish(log, CFG, [motion_stream("M", 2)])
    metrics = ScorerMetrics()
    consumer = MemConsumer(log, CFG.kafka.scorer_group, max_records=7)
    stage = ScoreStage(
        CFG, consumer, MemProducer(log), MemStateReader(log, CFG.kafka.scorer_state_topic), lambda t: b"{}", metrics
    )
    server = serve(metrics.registry, -1)
    try:
        stage.step()
        first = scrape(server)
        stage.step()
        second = scrape(server)
    finally:
        server.shutdown()
    read = sum(consumer.pos.values())
    assert first[("ubi_scorer_vehicles_waiting_to_start", ())] == 1
    assert first[("ubi_scorer_reorder_held", ())] == 7 == first[("ubi_scorer_records_total", ())]
    assert first[("ubi_scorer_motion_tracks", ())] == 0
    assert second[("ubi_scorer_vehicles_waiting_to_start", ())] == second[("ubi_scorer_reorder_held", ())] == 0
    assert second[("ubi_scorer_motion_tracks", ())] == 1 and second[("ubi_scorer_records_total", ())] == read == 14


def test_scorer_counters_carry_over_a_reconnect():
    """A reconnect makes a new stage with fresh summary counters; the process's counters never go back."""
    log = fleet()
    metrics = ScorerMetrics()

    def stage():
        return ScoreStage(
            CFG,
            MemConsumer(log, CFG.kafka.scorer_group, max_records=50),
            MemProducer(log),
            MemStateReader(log, CFG.kafka.scorer_state_topic),
            lambda t: json.dumps({"trip_id": t.trip_id}).encode(),
            metrics,
        )

    first = stage()
    for _ in range(3):
        first.step()
    emitted = first.summary.trips_emitted
    read = metrics.records._value.get()
    second = stage()
    for _ in range(40):
        second.step()
    assert metrics.trips._value.get() == emitted + second.summary.trips_emitted
    assert metrics.records._value.get() > read


# --- store -------------------------------------------------------------------------------------------------------


def test_store_endpoint_matches_duckdb_and_the_rows_sent(tmp_path):
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "t.duckdb")
    log = trips_log(cfg)
    rows = [json.loads(r.value) for r in log.records(cfg.kafka.trips_topic)]
    newest = {}
    for r in rows:
        newest[r["vehicle_id"]] = max(newest.get(r["vehicle_id"], 0), r["end_ms"] / 1000)
    now = max(newest.values()) + 2 * 86400  # every vehicle silent for two days
    metrics = StoreMetrics(listed=2, clock=lambda: now)
    metrics.seed([("VPOLICY", None)])  # insured, never drove: silent for ever
    con = store.connect(cfg.db_path)
    consumer = MemConsumer(log, cfg.kafka.store_group, [cfg.kafka.trips_topic], max_records=9)
    stage = StoreStage(cfg, consumer, con, metrics)
    server = serve(metrics.registry, -1)
    try:
        stage.step()
        m = scrape(server)
        lag = by_label(m, "ubi_kafka_consumer_lag", "partition")
        assert sum(lag.values()) == len(rows) - 9 and m[("ubi_store_records_total", ())] == 9
        polls = 1
        while stage.step():
            polls += 1
        m = scrape(server)
    finally:
        server.shutdown()
    stored = con.execute("SELECT count(*) FROM trips").fetchone()[0]
    assert m[("ubi_store_trips_stored", ())] == stored == 40
    assert m[("ubi_store_records_total", ())] == len(rows) == 41
    assert m[("ubi_store_duckdb_write_seconds_count", ())] == polls
    assert m[("ubi_kafka_commit_seconds_count", (("group", cfg.kafka.store_group),))] == polls
    assert set(by_label(m, "ubi_kafka_consumer_lag", "partition").values()) == {0}
    assert m[("ubi_store_devices_known", ())] == len(newest) + 1
    assert by_label(m, "ubi_store_devices_silent", "over") == {"1h": 5, "1d": 5, "7d": 1}
    listed = by_label(m, "ubi_store_device_last_data_timestamp_seconds", "vehicle")
    oldest_driver = min(newest, key=newest.get)
    assert listed == {"VPOLICY": 0.0, oldest_driver: pytest.approx(newest[oldest_driver])}
    assert m[("ubi_store_newest_data_timestamp_seconds", ())] == pytest.approx(max(newest.values()))


def test_the_per_device_list_stays_bounded_for_a_large_fleet():
    now = 2_000_000_000.0
    metrics = StoreMetrics(listed=20, clock=lambda: now)
    metrics.seed([(f"V{i:06d}", now - 86401 - i) for i in range(100_000)])
    server = serve(metrics.registry, -1)
    try:
        m = scrape(server)
    finally:
        server.shutdown()
    listed = by_label(m, "ubi_store_device_last_data_timestamp_seconds", "vehicle")
    assert sorted(listed) == [f"V{i:06d}" for i in range(99_980, 100_000)]  # the 20 longest silent
    assert by_label(m, "ubi_store_devices_silent", "over")["1d"] == 100_000


# --- pricing -----------------------------------------------------------------------------------------------------


def test_pricing_textfile_holds_the_runs_figures(tmp_path):
    s = RunSummary("r1", date(2026, 10, 1), 120, 100, 7, 2, Decimal("7000.50"), Decimal("6900.25"), {"factor": 1.02})
    path = tmp_path / "metrics" / "pricing.prom"
    write_pricing_textfile(path, s, 12.5, finished_s=1_793_000_000.0)
    m = parse(path.read_text())
    assert m[("ubi_pricing_last_run_policies", ())] == 120
    assert m[("ubi_pricing_last_run_priced_on_driving", ())] == 100
    assert by_label(m, "ubi_pricing_last_run_capped", "direction") == {"up": 7, "down": 2}
    assert m[("ubi_pricing_last_run_premium_after_eur", ())] == 6900.25
    assert m[("ubi_pricing_last_run_month_timestamp_seconds", ())] == 1_790_812_800  # 2026-10-01T00:00:00Z
    assert m[("ubi_pricing_last_run_duration_seconds", ())] == 12.5
    assert m[("ubi_pricing_last_run_off_balance", ())] == 1.02
    assert list(path.parent.iterdir()) == [path]  # written atomically: no temporary file left behind


def test_store_seed_from_duckdb_names_insured_and_recent_vehicles(tmp_path):
    import time as _time

    con = store.connect(tmp_path / "s.duckdb")
    now_ms = int(_time.time() * 1000)
    base = trips_log_row()
    recent = [
        {
            **base,
            "trip_id": f"r{i}",
            "vehicle_id": "VREC",
            "start_ms": now_ms - 7_200_000 + i,
            "end_ms": now_ms - 3_600_000 + i,
        }
        for i in range(3)
    ]
    old = [
        {
            **base,
            "trip_id": "o1",
            "vehicle_id": "VOLD",
            "start_ms": now_ms - 90 * 86_400_000,
            "end_ms": now_ms - 90 * 86_400_000 + 60_000,
        }
    ]
    store.upsert_trips(con, recent + old)
    con.execute("INSERT INTO policies VALUES ('P1', 'VINS', '2025-01-01', 50.00, 'A', '40-64', 'north')")
    got = dict(store.last_data_by_vehicle(con, 35))
    con.close()
    assert set(got) == {"VREC", "VINS"}  # VOLD drove 90 days ago, beyond the window, and holds no policy
    assert got["VINS"] is None and got["VREC"] == pytest.approx((now_ms - 3_600_000 + 2) / 1000, abs=0.002)


def trips_log_row() -> dict:
    from tests.test_store_stage import row

    return row(0)
