"""Stages survive Kafka outages (issue 11, item 7): a commit refused after a rebalance (CommitFailedError) or a
broker that does not answer in time (KafkaTimeoutError) used to end the scorer and the store. Now the stage is
closed without committing and started afresh after a growing pause, which gives the same trips as a clean run."""

from __future__ import annotations

import threading
from dataclasses import replace

from kafka.errors import CommitFailedError, KafkaConnectionError, KafkaTimeoutError

from tests.doubles import Faults, KafkaLog, MemConsumer, MemProducer, MemStateReader
from tests.stage_data import ignition_stream, motion_stream, publish
from tests.test_score_stage import CFG, digest, make_stage, run_to_end, trips_by_id
from ubi.adapters import duckdb_store as store
from ubi.common.config import Config
from ubi.stages.score import ScoreStage, run_with_retry
from ubi.stages.store import StoreStage


def streams():
    return [ignition_stream("A", 3), ignition_stream("C", 2, 5), motion_stream("M", 2, first_s=12)]


def test_scorer_restarts_after_commit_failed_timeouts_and_no_broker():
    log = KafkaLog()
    publish(log, CFG, streams())
    errors = iter([CommitFailedError("rebalanced"), KafkaTimeoutError("flush timed out"), None, None])
    stop = threading.Event()
    pauses: list[float] = []
    connects = {"n": 0}

    def connect():
        connects["n"] += 1
        if connects["n"] == 3:
            raise KafkaConnectionError()
        exc = next(errors)
        only = {"commit"} if isinstance(exc, CommitFailedError) else {"flush"}
        faults = Faults(at=2, exc=exc, only=only) if exc else Faults()
        stage = ScoreStage(
            CFG,
            MemConsumer(log, CFG.kafka.scorer_group, faults=faults, max_records=5),
            MemProducer(log, faults),
            MemStateReader(log, CFG.kafka.scorer_state_topic),
            score=digest,
        )
        stage.consumer.on_idle = stop.set
        return stage

    retries = run_with_retry(connect, stop, "scorer", backoff_s=0.5, sleep=pauses.append)
    assert retries == 3 and pauses == [0.5, 1.0, 2.0]
    clean = KafkaLog()
    publish(clean, CFG, streams())
    run_to_end(make_stage(clean))
    assert trips_by_id(log) == trips_by_id(clean)


def test_store_restarts_after_commit_failed(tmp_path):
    cfg = replace(Config(), home=tmp_path, db_path=tmp_path / "t.duckdb")
    log = KafkaLog()
    for i in range(12):
        log.append(
            cfg.kafka.trips_topic,
            b"V",
            (
                '{"trip_id": "t%02d", "vehicle_id": "V", "start_ms": %d, '
                '"end_ms": %d, "duration_s": 1.0, "distance_km": 1.0, "moving_s": 1.0, "idle_s": 0.0, '
                '"max_speed_kmh": 1.0, "mean_speed_kmh": 1.0, "harsh_brakes": 0, "harsh_accels": 0, '
                '"gps_fixes": 1, "gps_dropped": 0, "messages": 3, "complete": true, "ended_by": "ignition_off", '
                '"scorer_version": "1"}' % (i, i * 1000, i * 1000 + 500)
            ).encode(),
        )
    con = store.connect(cfg.db_path)
    stop = threading.Event()
    faults = iter([Faults(at=1, exc=CommitFailedError("rebalanced"), only={"commit"}), Faults()])

    def connect():
        c = MemConsumer(log, cfg.kafka.store_group, [cfg.kafka.trips_topic], next(faults), max_records=5)
        c.on_idle = stop.set
        return StoreStage(cfg, c, con)

    assert run_with_retry(connect, stop, "store", sleep=lambda s: None) == 1
    assert con.execute("SELECT count(*) FROM trips").fetchone()[0] == 12
