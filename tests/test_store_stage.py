"""The store stage on in-memory Kafka: killed at every poll and commit in turn, then restarted, it holds every trip
exactly once (the upsert makes the replay of an uncommitted poll harmless)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.doubles import Crash, Faults, KafkaLog, MemConsumer
from ubi.adapters import duckdb_store as store
from ubi.common.config import Config
from ubi.stages.store import StoreStage


def row(i: int) -> dict:
    return {
        "trip_id": f"t{i:03d}",
        "vehicle_id": f"V{i % 4}",
        "start_ms": 1_790_000_000_000 + i * 60_000,
        "end_ms": 1_790_000_000_000 + i * 60_000 + 30_000,
        "duration_s": 30.0,
        "distance_km": 0.3 + i,
        "moving_s": 25.0,
        "idle_s": 5.0,
        "max_speed_kmh": 50.0,
        "mean_speed_kmh": 36.0,
        "harsh_brakes": i % 3,
        "harsh_accels": 0,
        "gps_fixes": 30,
        "gps_dropped": 0,
        "messages": 5,
        "complete": True,
        "ended_by": "ignition_off",
        "scorer_version": "1",
    }


def trips_log(cfg: Config) -> KafkaLog:
    log = KafkaLog(partitions=3)
    for i in range(40):
        r = row(i)
        log.append(cfg.kafka.trips_topic, r["vehicle_id"].encode(), json.dumps(r).encode())
    log.append(cfg.kafka.trips_topic, b"V1", json.dumps(row(1)).encode())  # a re-emitted trip: the same row
    return log


def drain(stage: StoreStage) -> None:
    while stage.step() or not stage.consumer.caught_up():
        pass


@pytest.mark.parametrize("at", range(1, 25))
def test_store_killed_at_every_step_keeps_each_trip_once(tmp_path, at):
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "t.duckdb")
    log = trips_log(cfg)
    con = store.connect(cfg.db_path)
    first = StoreStage(
        cfg, MemConsumer(log, cfg.kafka.store_group, [cfg.kafka.trips_topic], Faults(at=at), max_records=6), con
    )
    try:
        drain(first)
    except Crash:
        pass
    drain(StoreStage(cfg, MemConsumer(log, cfg.kafka.store_group, [cfg.kafka.trips_topic], max_records=9), con))
    got = con.execute("SELECT trip_id, distance_km FROM trips ORDER BY trip_id").fetchall()
    assert got == [(f"t{i:03d}", 0.3 + i) for i in range(40)]
