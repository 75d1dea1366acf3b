"""The scoring stage's delivery logic on in-memory Kafka (tests/doubles.py): killed at every producer and consumer
operation in turn (after a publish, after the state, before the commit, ...), restarted and run to the end, it
publishes exactly the trips of an uninterrupted run, with the same contents and the same final cutter state."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from tests.doubles import Crash, Faults, KafkaLog, MemConsumer, MemProducer, MemStateReader
from tests.stage_data import encode_message, ignition_stream, motion_stream, publish, write_raw
from ubi.common.config import Config
from ubi.stages.score import ScoreStage

CFG = Config()


def digest(trip) -> bytes:
    """A stand-in for the scoring (tested elsewhere) that shows everything the cutter put into the trip."""
    return json.dumps(
        {
            "trip_id": trip.trip_id,
            "vehicle": trip.vehicle,
            "start": int(trip.start_ms),
            "end": int(trip.end_ms),
            "fixes": trip.t_ms.tolist(),
            "imu": int(trip.imu_t_ms.shape[0]),
            "messages": trip.messages,
            "complete": trip.complete,
            "ended_by": trip.ended_by,
        }
    ).encode()


def make_stage(
    log: KafkaLog, faults: Faults | None = None, max_records: int = 7, score=digest, cfg: Config = CFG
) -> ScoreStage:
    faults = faults or Faults()
    return ScoreStage(
        cfg,
        MemConsumer(log, CFG.kafka.scorer_group, faults=faults, max_records=max_records),
        MemProducer(log, faults),
        MemStateReader(log, CFG.kafka.scorer_state_topic),
        score=score,
    )


def run_to_end(stage: ScoreStage, idle_polls: int = 2) -> None:
    idle = 0
    while idle < idle_polls:
        n_before = stage.consumer.pos.copy() if stage.consumer.assigned else None
        stage.step()
        idle = idle + 1 if stage.consumer.caught_up() and n_before == stage.consumer.pos else 0
    stage.checkpoint()


def fleet_log() -> KafkaLog:
    log = KafkaLog(partitions=3)
    publish(
        log,
        CFG,
        [
            ignition_stream("A", 3),
            ignition_stream("B", 2, first_s=35),
            ignition_stream("C", 3, 5),
            motion_stream("M", 2, first_s=12),
        ],
    )
    return log


def trips_by_id(log: KafkaLog) -> dict[str, set[bytes]]:
    out: dict[str, set[bytes]] = {}
    for r in log.records(CFG.kafka.trips_topic):
        out.setdefault(json.loads(r.value)["trip_id"], set()).add(r.value)
    return out


def final_state(log: KafkaLog) -> dict:
    return {p: log.compacted(CFG.kafka.scorer_state_topic, p) for p in range(log.partitions)}


@pytest.fixture(scope="module")
def clean():
    log = fleet_log()
    faults = Faults()  # counts operations only
    stage = make_stage(log, faults)
    run_to_end(stage)
    trips = trips_by_id(log)
    assert len(trips) == 3 + 2 + 3 + 2
    assert all(len(v) == 1 for v in trips.values())
    assert stage.summary.quarantined == 0
    return trips, final_state(log), faults.count


@pytest.mark.parametrize("deliver", [False, True])
def test_killed_at_every_step_then_restarted_gives_the_clean_run(clean, deliver):
    clean_trips, clean_state, n_ops = clean
    assert n_ops > 50
    for at in range(1, n_ops + 1):
        log = fleet_log()
        first = make_stage(log, Faults(at=at))
        with pytest.raises(Crash):
            run_to_end(first)
        first.producer.crash(deliver=deliver)
        second = make_stage(log, max_records=11)  # another poll size: the restart need not cut polls alike
        run_to_end(second)
        got = trips_by_id(log)
        assert got.keys() == clean_trips.keys(), f"crash at op {at}"
        for tid, values in got.items():
            assert values == clean_trips[tid], f"crash at op {at}: trip {tid} differs"
        assert final_state(log) == clean_state, f"crash at op {at}"


def test_killed_twice_in_a_row(clean):
    clean_trips, _, n_ops = clean
    for at in range(3, n_ops, 7):
        log = fleet_log()
        for crash_at in (at, 5):
            stage = make_stage(log, Faults(at=crash_at))
            with pytest.raises(Crash):
                run_to_end(stage)
            stage.producer.crash()
        run_to_end(make_stage(log))
        got = trips_by_id(log)
        assert got.keys() == clean_trips.keys() and all(got[t] == clean_trips[t] for t in got)


QUIET = replace(CFG, ingest=replace(CFG.ingest, reorder_quiet_s=0.0))


def replayed_fast_log() -> KafkaLog:
    """A day's data uploaded in a few seconds (a simulator at speed, or devices flushing a backlog): the whole stream
    spans under the resequencer's 120 s window of receive time, so no window ever ends."""
    log = KafkaLog(partitions=3)
    items = sorted(
        (m for s in (motion_stream("M", 2), ignition_stream("A", 2)) for m in s), key=lambda m: (m.seq, m.vehicle)
    )
    for i, m in enumerate(items):
        kind, payload = encode_message(m)
        write_raw(log, CFG, m.vehicle, kind, payload, 1_000_000 + 50 * i)
    return log


def test_a_new_motion_device_starts_when_the_stream_goes_quiet():
    """A device without ignition events waits for an ignition_on that never comes; without traffic its window never
    ends (the integration suite lost 19 of 35 trips this way after a scorer restart). A quiet stream starts it."""
    held = make_stage(replayed_fast_log(), cfg=replace(CFG, ingest=replace(CFG.ingest, reorder_quiet_s=3600.0)))
    run_to_end(held)
    assert len(trips_by_id(held.producer.log)) == 2  # the ignition vehicle only: M waits
    assert held.cutter.waiting_to_start() and held.cutter.held()  # and its commit stays behind its data

    log = replayed_fast_log()
    stage = make_stage(log, cfg=QUIET)
    run_to_end(stage)
    trips = trips_by_id(log)
    assert len(trips) == 4 and sum(json.loads(next(iter(v)))["vehicle"] == "M" for v in trips.values()) == 2
    assert stage.cutter.counters.started_quiet == 1 and not stage.cutter.waiting_to_start()


def test_a_quiet_start_survives_a_kill_at_every_step():
    """Killed anywhere and restarted (its replay holds M again, the quiet stream starts it again): the same trips."""
    clean_log = replayed_fast_log()
    faults = Faults()
    run_to_end(make_stage(clean_log, faults, cfg=QUIET))
    clean = trips_by_id(clean_log)
    for at in range(1, faults.count + 1, 3):
        log = replayed_fast_log()
        with pytest.raises(Crash):
            run_to_end(make_stage(log, Faults(at=at), cfg=QUIET))
        run_to_end(make_stage(log, max_records=11, cfg=QUIET))
        got = trips_by_id(log)
        assert got.keys() == clean.keys(), f"crash at op {at}"
        assert all(got[t] == clean[t] for t in got), f"crash at op {at}"
