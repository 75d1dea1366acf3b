"""The scorer never commits past a record Kafka refused, and stops on a scoring bug instead of quarantining the
stream (issue 11: no trip lost silently). kafka-python's ``producer.flush()`` returns normally when the broker
rejected a record (the error is only on the send's future), so the stage checks every future before its state and
commit; a stage whose every trip fails stops after ``ingest.max_consecutive_failures`` in a row."""

from __future__ import annotations

from dataclasses import replace

import pytest
from kafka.errors import MessageSizeTooLargeError

from tests.doubles import Faults, KafkaLog, MemConsumer, MemProducer, MemStateReader
from tests.stage_data import event, ignition_stream, motion_stream, publish
from tests.test_score_stage import CFG, digest, final_state, make_stage, run_to_end, trips_by_id
from ubi.stages.score import DeliveryFailed, ScoreStage, ScoringBroken, run_with_retry


class Future:
    """kafka-python's FutureRecordMetadata, as far as the stage reads it."""

    def __init__(self) -> None:
        self.is_done, self.exception = False, None

    def failed(self) -> bool:
        return self.is_done and self.exception is not None


class RefusingProducer(MemProducer):
    """Returns a future per send; the broker refuses the records ``refuse(topic, nth)`` picks (the nth record of
    that topic, from 1): flush() returns normally, as kafka-python's does, and only the future says so."""

    def __init__(self, log: KafkaLog, refuse, faults: Faults | None = None) -> None:
        super().__init__(log, faults or Faults())
        self.refuse = refuse
        self.seen: dict[str, int] = {}
        self.futures: list[tuple[Future, bool]] = []

    def send(self, topic, key=None, value=None, partition=None, headers=None):
        super().send(topic, key, value, partition, headers)
        self.seen[topic] = self.seen.get(topic, 0) + 1
        refused = self.refuse(topic, self.seen[topic])
        if refused:
            self.pending.pop()
        fut = Future()
        self.futures.append((fut, refused))
        return fut

    def flush(self, timeout=None) -> None:
        super().flush(timeout)
        for fut, refused in self.futures:
            fut.is_done = True
            if refused:
                fut.exception = MessageSizeTooLargeError("refused by the broker")
        self.futures = []


def streams() -> list[list]:
    return [ignition_stream("A", 3), ignition_stream("C", 3, 5), motion_stream("M", 2, first_s=12)]


def clean_log() -> KafkaLog:
    log = KafkaLog()
    publish(log, CFG, streams())
    run_to_end(make_stage(log))
    return log


def refusing_stage(log: KafkaLog, refuse, cfg=CFG, score=digest) -> ScoreStage:
    return ScoreStage(
        cfg,
        MemConsumer(log, cfg.kafka.scorer_group, max_records=40),
        RefusingProducer(log, refuse),
        MemStateReader(log, cfg.kafka.scorer_state_topic),
        score=score,
    )


@pytest.mark.parametrize(
    "topic,nth", [(CFG.kafka.trips_topic, 1), (CFG.kafka.trips_topic, 4), (CFG.kafka.scorer_state_topic, 2)]
)
def test_a_record_the_broker_refused_fails_the_checkpoint_and_is_replayed(topic, nth):
    """Before the fix, flush() returned, the state and the offsets were committed past the refused trip: lost."""
    log = KafkaLog()
    publish(log, CFG, streams())
    stage = refusing_stage(log, lambda t, n: t == topic and n == nth)
    stage.consumer.on_idle = stage.stop
    with pytest.raises(DeliveryFailed):
        stage.run(install_signals=False)
    assert not stage.healthy
    restarted = make_stage(log)
    run_to_end(restarted)
    clean = clean_log()
    assert trips_by_id(log) == trips_by_id(clean)
    assert final_state(log) == final_state(clean)


def test_a_refused_quarantine_record_is_not_lost_either():
    log = KafkaLog()
    publish(log, CFG, streams())
    for m in (event("N", 0, 2000, "ignition_on"), event("N", 1, 1000, "ignition_off")):  # off before on
        publish(log, CFG, [[m]])
    stage = refusing_stage(log, lambda t, n: t == CFG.kafka.dead_letter_topic)
    stage.consumer.on_idle = stage.stop
    with pytest.raises(DeliveryFailed):
        stage.run(install_signals=False)
    assert log.records(CFG.kafka.dead_letter_topic) == []
    run_to_end(make_stage(log))
    [d] = log.records(CFG.kafka.dead_letter_topic)
    assert dict(d.headers)["reason"] == b"negative_duration"


def test_delivery_failures_restart_the_stage_from_the_last_commit():
    """DeliveryFailed is a Kafka error: run_with_retry restarts the stage, which replays and publishes all."""
    import threading

    log = KafkaLog()
    publish(log, CFG, streams())
    stop = threading.Event()
    made: list[ScoreStage] = []

    def connect():
        refuse = (lambda t, n: t == CFG.kafka.trips_topic and n == 2) if not made else (lambda t, n: False)
        stage = refusing_stage(log, refuse)
        stage.consumer.on_idle = stop.set
        made.append(stage)
        return stage

    assert run_with_retry(connect, stop, "scorer", sleep=lambda s: None) == 1
    assert trips_by_id(log) == trips_by_id(clean_log())


def test_every_trip_failing_stops_the_stage_instead_of_quarantining_the_stream():
    """A scoring bug: before the fix every trip of every vehicle went to the dead-letter topic, and was committed."""
    cfg = replace(CFG, ingest=replace(CFG.ingest, max_consecutive_failures=3))
    log = KafkaLog()
    publish(log, CFG, [ignition_stream("A", 6), ignition_stream("C", 6, 5)])

    def broken(trip):
        raise KeyError("score_parts")

    stage = ScoreStage(
        cfg,
        MemConsumer(log, cfg.kafka.scorer_group, max_records=7),
        MemProducer(log),
        MemStateReader(log, cfg.kafka.scorer_state_topic),
        score=broken,
    )
    stage.consumer.on_idle = stage.stop
    with pytest.raises(ScoringBroken, match="3 trips in a row"):
        stage.run(install_signals=False)
    assert stage.summary.quarantined <= 2 and len(log.records(CFG.kafka.dead_letter_topic)) <= 2
    assert log.records(CFG.kafka.trips_topic) == []
    # fixed and restarted: every trip that was not quarantined is published
    run_to_end(make_stage(log))
    quarantined = {d.value for d in log.records(CFG.kafka.dead_letter_topic)}
    assert len(trips_by_id(log)) + len(quarantined) == 12


def test_failures_between_successes_are_quarantined_as_before():
    cfg = replace(CFG, ingest=replace(CFG.ingest, max_consecutive_failures=2))
    log = KafkaLog()
    publish(log, CFG, [ignition_stream("A", 6)])
    n = {"k": 0}

    def every_other(trip):
        n["k"] += 1
        if n["k"] % 2:
            raise ValueError("odd")
        return digest(trip)

    stage = ScoreStage(
        cfg,
        MemConsumer(log, cfg.kafka.scorer_group, max_records=7),
        MemProducer(log),
        MemStateReader(log, cfg.kafka.scorer_state_topic),
        score=every_other,
    )
    run_to_end(stage)
    assert stage.summary.quarantine_reasons == {"unscorable": 3} and stage.summary.trips_emitted == 3
