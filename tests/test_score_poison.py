"""Poison in one vehicle's data never costs another vehicle a trip (issue 11, item 2): a trip without any GPS fix,
a trip the scoring cannot handle, a record that breaks the cutter, a producer that fails half-way through a poll.
What cannot be scored is quarantined (a dead letter with its reason, counted in the stage's summary), the stream
goes on, and a poll that failed half-way is never checkpointed."""

from __future__ import annotations

import json

import pytest

from scoring.trips import TripCutter
from tests.doubles import Faults, KafkaLog, MemConsumer, MemProducer, MemStateReader
from tests.stage_data import batch, event, ignition_stream, motion_stream, publish
from tests.test_score_stage import CFG, digest, final_state, make_stage, run_to_end, trips_by_id
from ubi.stages.score import ScoreStage


def others() -> list[list]:
    return [ignition_stream("A", 3), ignition_stream("C", 3, 5), motion_stream("M", 2, first_s=12)]


def gps_less(vehicle: str = "G", seq0: int = 0, t: int = 3) -> list:
    return [
        event(vehicle, seq0, t, "ignition_on"),
        batch(vehicle, seq0 + 1, t, gps=False),
        batch(vehicle, seq0 + 2, t + 10, gps=False),
        event(vehicle, seq0 + 3, t + 20, "ignition_off"),
    ]


def dead_letters(log: KafkaLog) -> list[dict]:
    return [json.loads(r.value) for r in log.records(CFG.kafka.dead_letter_topic)]


def clean_trips(streams) -> dict:
    log = KafkaLog()
    publish(log, CFG, streams)
    run_to_end(make_stage(log))
    return trips_by_id(log)


def test_a_trip_without_any_gps_fix_is_scored_and_the_stream_goes_on():
    log = KafkaLog()
    publish(log, CFG, [*others(), gps_less()])
    stage = make_stage(log)
    run_to_end(stage)
    trips = trips_by_id(log)
    assert len(trips) == 3 + 3 + 2 + 1
    [g] = [json.loads(next(iter(v))) for v in trips.values() if json.loads(next(iter(v)))["vehicle"] == "G"]
    assert g["fixes"] == [] and g["imu"] == 200 and g["complete"]


def test_an_unscorable_trip_is_quarantined_with_its_reason_and_the_others_are_published():
    def fussy(trip):
        if trip.vehicle == "G":
            raise IndexError("index 0 is out of bounds for axis 0 with size 0")
        return digest(trip)

    log = KafkaLog()
    publish(log, CFG, [*others(), gps_less(), gps_less(seq0=4, t=700)])
    stage = make_stage(log, score=fussy)
    run_to_end(stage)
    assert trips_by_id(log).keys() == clean_trips(others()).keys()
    dlq = dead_letters(log)
    assert [(d["vehicle"], d["reason"], d["source"]) for d in dlq] == [("G", "unscorable", "scorer")] * 2
    assert "IndexError" in dlq[0]["detail"] and dlq[0]["trip_id"]
    assert stage.summary.quarantined == 2 and stage.summary.quarantine_reasons == {"unscorable": 2}
    assert stage.summary.trips_emitted == 8


def test_a_record_that_breaks_the_cutter_quarantines_that_vehicles_trip_only(monkeypatch):
    clean = clean_trips(others())
    real = TripCutter._feed_ignition

    def broken(self, item, *args):
        if item.vehicle == "C" and item.seq == 7:  # inside C's second trip
            raise ValueError("poison")
        return real(self, item, *args)

    monkeypatch.setattr(TripCutter, "_feed_ignition", broken)
    log = KafkaLog()
    publish(log, CFG, others())
    stage = make_stage(log)
    run_to_end(stage)
    got = trips_by_id(log)
    lost = set(clean) - set(got)
    assert len(lost) == 1 and all(json.loads(next(iter(clean[t])))["vehicle"] == "C" for t in lost)
    assert set(got) <= set(clean)
    [d] = dead_letters(log)
    assert (d["vehicle"], d["reason"], d["seqs"]) == ("C", "cutter_error", [6])
    assert stage.summary.quarantine_reasons == {"cutter_error": 1}


@pytest.mark.parametrize("fail_at", [1, 2, 3, 5, 8])
def test_a_poll_that_fails_half_way_commits_nothing_so_no_trip_is_lost(fail_at):
    """The producer fails on the fail_at-th trip it is given (after others of the same poll were sent). The old
    ``finally: checkpoint()`` then committed offsets and cutter state for every trip closed in that poll."""
    log = KafkaLog()
    publish(log, CFG, others())
    faults = Faults(at=fail_at, exc=lambda: RuntimeError("broker said no"), only={"send"})
    stage = ScoreStage(
        CFG,
        MemConsumer(log, CFG.kafka.scorer_group, faults=faults, max_records=40),
        MemProducer(log, faults),
        MemStateReader(log, CFG.kafka.scorer_state_topic),
        score=digest,
    )
    stage.consumer.on_idle = stage.stop
    with pytest.raises(RuntimeError):
        stage.run(install_signals=False)
    assert not stage.healthy
    with pytest.raises(RuntimeError):
        stage.checkpoint()
    restarted = make_stage(log)
    run_to_end(restarted)
    clean_log = KafkaLog()
    publish(clean_log, CFG, others())
    run_to_end(make_stage(clean_log))
    assert trips_by_id(log) == trips_by_id(clean_log)
    assert final_state(log) == final_state(clean_log)
