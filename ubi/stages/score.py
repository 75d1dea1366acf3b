"""The scoring stage: a Kafka consumer group that cuts trips, scores them and publishes scored trips.

Exactly-once in effect: after each poll, scored trips (and quarantine records for trips that cannot be scored) are
flushed to Kafka first, then the trip cutter's changed per-vehicle state (which vehicles send ignition events, where
each motion-cut trip ended) goes to the group's compacted state topic and is flushed, then the consumer commits, per
partition, no further than the first offset an open trip or a motion track still needs, with the partition's
watermark at that offset as commit metadata. A process killed at any moment restarts from that offset with that
state and rebuilds every open trip whole; trips it emits again carry the same trip_id and are replaced, not
duplicated, by the store's upsert.

A poll whose processing fails half-way is never checkpointed: the stage stops without committing (the cutter's
state then holds trips closed in that poll but never published), and a restart replays it. That includes a record
the broker refused: kafka-python's ``flush()`` does not raise for it, so every send's future is checked after the
flush, and one that failed fails the checkpoint (``DeliveryFailed``, a Kafka error: the stage restarts and
replays). ``ingest.max_consecutive_failures`` trips in a row that cannot be scored (or records in a row that break
the cutter) are a code bug, not poison: the stage stops (``ScoringBroken``) instead of quarantining the stream.

The stage is given its consumer, producer and state reader (``ScoreStage.connect`` makes the Kafka ones), so its
logic runs on in-memory doubles in the unit tests (tests/doubles.py). ``run_score`` is the process: it reconnects
with backoff when Kafka fails (a lost broker, a commit refused after a rebalance), which is the same as a restart.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
import traceback
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Protocol

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ingest.contract import decode_trusted, parse_topic
from scoring.features import score_trip, trip_limits
from scoring.maplayer import MapLayer
from scoring.trips import ClosedTrip, CutterFailed, Quarantined, TripCutter
from ubi.adapters.kafka import DeliveryFailed, make_consumer, make_producer, read_compacted
from ubi.adapters.metrics import ScorerMetrics, serve
from ubi.common.config import Config
from ubi.common.messages import Rejected
from ubi.stages.quarantine import quarantine_record

log = logging.getLogger("ubi.score")


class ScoringBroken(RuntimeError):
    """Every trip (or record) fails in a row: a bug in the scorer, not bad data. The stage stops uncommitted."""


class StateReader(Protocol):
    def read(self, partition: int) -> dict[bytes, bytes]:
        """The latest value per key of one partition of the scorer's compacted state topic."""


class KafkaStateReader:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg

    def read(self, partition: int) -> dict[bytes, bytes]:
        return read_compacted(self.cfg.kafka, self.cfg.kafka.scorer_state_topic, partition)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: "ScoreStage") -> None:
        self.stage = stage

    def on_partitions_revoked(self, revoked):
        if self.stage.healthy:
            self.stage.checkpoint()
        self.stage.cutter.drop_partitions({tp.partition for tp in revoked})
        for tp in revoked:
            self.stage.owned.discard(tp.partition)
            self.stage.position.pop(tp.partition, None)
            self.stage.committed.pop(tp.partition, None)
            self.stage.to_load.discard(tp)

    def on_partitions_assigned(self, assigned):
        # The listener runs on the consumer's IO thread, which must not block: the state is loaded by the main
        # loop after this poll returns and before any of its records is processed.
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
        self.stage.to_load |= set(assigned)


@dataclass
class ScoreSummary:
    """What the stage did: every record read is fed to the cutter, counted as unreadable, or counted as skipped
    (its partition was being revoked; fetched again by its next owner); every closed trip is either published or
    quarantined (with its reason)."""

    trips_emitted: int = 0
    unreadable: int = 0
    quarantined: int = 0
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    unowned_skipped: int = 0  # records of a partition being revoked, left for its next owner (fetched again)


class ScoreStage:
    def __init__(
        self,
        cfg: Config,
        consumer,
        producer,
        state: StateReader,
        score: Callable[[ClosedTrip], bytes] | None = None,
        metrics: ScorerMetrics | None = None,
    ) -> None:
        """``score``: a closed trip to its ``ubi.trips.v1`` value (default: ``scoring.features.score_trip``);
        ``metrics``: the process's Prometheus figures (default: a fresh registry, served by nobody)."""
        self.cfg = cfg
        self.metrics = metrics or ScorerMetrics()
        self.score = score or self._score
        self.cutter = TripCutter.for_config(cfg.scoring, cfg.ingest)
        self.map = (
            MapLayer.load(cfg.scoring.speed_limit_map, cfg.scoring.speed_limit_radius_m)
            if cfg.scoring.speed_limit_map
            else None
        )
        self.position: dict[int, int] = {}
        self._quiet_since = time.monotonic()  # when a poll last returned records
        self.committed: dict[int, int] = {}
        self.to_load: set[TopicPartition] = set()
        # Partitions whose cutter state is loaded: only their records are cut and only their offsets committed.
        # kafka-python keeps a revoked partition "pending revocation" until the group's JoinGroup completes (seconds
        # while several scorers join) and its fetcher may still hand out that partition's records meanwhile; fed to
        # a cutter that had dropped the partition they were orphans, and their offsets were committed past open
        # trips (bench/scorer.py --scale 4 lost a trip that way). Skipped records are fetched again: a partition
        # (re)assigned starts at its committed offset (load_partition seeks there).
        self.owned: set[int] = set()
        self.summary = ScoreSummary()
        self.healthy = True  # False once a poll failed half-way: nothing may be checkpointed after that
        self._sent: list[tuple[str, object]] = []  # (what, future) of every send since the last check
        self._failed_scores = 0  # trips in a row that could not be scored
        self._failed_feeds = 0  # records in a row that broke the cutter
        self._stop = threading.Event()
        self.producer = producer
        self.consumer = consumer
        self.state = state
        self.consumer.subscribe([cfg.kafka.telemetry_topic], listener=_Rebalance(self))

    @classmethod
    def connect(
        cls, cfg: Config, client_id: str = "ubi-scorer-1", metrics: ScorerMetrics | None = None
    ) -> "ScoreStage":
        """The stage on the real Kafka."""
        return cls(
            cfg,
            make_consumer(cfg.kafka, cfg.kafka.scorer_group, [], client_id),
            make_producer(cfg.kafka, client_id=client_id),
            KafkaStateReader(cfg),
            metrics=metrics,
        )

    def _score(self, trip: ClosedTrip) -> bytes:
        return score_trip(trip, self.cfg.scoring, trip_limits(trip, self.map)).to_json()

    # kept for callers that read the old counters
    @property
    def trips_emitted(self) -> int:
        return self.summary.trips_emitted

    @property
    def rejected(self) -> int:
        return self.summary.unreadable

    def stop(self) -> None:
        self._stop.set()

    def _cut(self, call, tp, offset: int, item) -> list[ClosedTrip]:
        """Run the cutter; a poison record quarantines its vehicle's open data and the rest goes on (the trips the
        cutter closed meanwhile are kept: a record released from the resequencer may be another vehicle's)."""
        try:
            out = call()
            self._failed_feeds = 0
            return out
        except CutterFailed as exc:
            failed, closed = exc.failures, exc.closed
        except Exception as exc:  # noqa: BLE001 - poison: quarantined and counted, see below
            if item is None:
                raise
            failed, closed = [(item.vehicle, item.seq, exc)], []
        for vehicle, seq, err in failed:
            log.error(
                "record %s:%d (seq %d of %s) breaks the cutter: %s\n%s",
                tp,
                offset,
                seq,
                vehicle,
                err,
                "".join(traceback.format_exception(err, limit=4)),
            )
            self._failed_feeds += 1
            self._too_many("records in a row broke the trip cutter", self._failed_feeds, err)
            where = f"offset {tp.partition}:{offset} " if tp is not None else ""
            self.cutter.abandon(vehicle, "cutter_error", f"{where}seq {seq}: {type(err).__name__}: {err}")
        return closed

    def process(self, records, start_waiting: bool = False) -> int:
        """Feed one poll's records through the cutter, publish closed trips. Returns trips emitted.
        ``start_waiting``: the stream is quiet, start the new vehicles that wait for an ignition_on."""
        closed: list[ClosedTrip] = []
        if start_waiting:
            closed.extend(self._cut(self.cutter.start_waiting, None, -1, None))
        for tp, batch in records.items():
            if tp.partition not in self.owned:
                self.summary.unowned_skipped += len(batch)
                log.info("skipped %d records of %s: not assigned to this scorer (being revoked)", len(batch), tp)
                continue
            for rec in batch:
                headers = dict(rec.headers or [])
                topic = headers.get("mqtt_topic", b"").decode()
                parsed = parse_topic(self.cfg.mqtt.topic_prefix, topic)
                received_ms = int(headers.get("received_ms", b"0") or 0)
                item = decode_trusted(parsed[0], parsed[1], rec.value, received_ms, self.cfg.ingest) if parsed else None
                if item is None or isinstance(item, Rejected):
                    self.summary.unreadable += 1  # the bridge validated it: only a contract change gets here
                    log.warning("unreadable record at %s:%d: %s", tp, rec.offset, item)
                else:
                    closed.extend(
                        self._cut(
                            partial(self.cutter.feed, item, tp.partition, rec.offset, received_ms), tp, rec.offset, item
                        )
                    )
                self.position[tp.partition] = rec.offset + 1
        closed.extend(self._cut(self.cutter.expire, None, -1, None))
        # score everything first: a stop for too many failures in a row then sends nothing of this poll
        scored: list[tuple[ClosedTrip, bytes | Quarantined]] = []
        for trip in closed:
            try:
                scored.append((trip, self.score(trip)))
                self._failed_scores = 0
            except Exception as exc:  # one trip's data must not stop the others: quarantine it, with the reason
                log.error(
                    "trip %s of %s cannot be scored: %s\n%s",
                    trip.trip_id,
                    trip.vehicle,
                    exc,
                    traceback.format_exc(limit=3),
                )
                self._failed_scores += 1
                self._too_many("trips in a row could not be scored", self._failed_scores, exc)
                scored.append((trip, Quarantined.of_trip(trip, "unscorable", f"{type(exc).__name__}: {exc}")))
        emitted = 0
        for trip, value in scored:
            if isinstance(value, Quarantined):
                self._quarantine(value)
                continue
            self._send("trip", self.cfg.kafka.trips_topic, key=trip.vehicle.encode(), value=value)
            emitted += 1
        for q in self.cutter.take_quarantined():
            self._quarantine(q)
        self.summary.trips_emitted += emitted
        return emitted

    def _quarantine(self, q: Quarantined) -> None:
        """A dead-letter record (the DLQ topic, header reason) for what the scorer refuses; flushed with the trips,
        before the state and the commit, so it is never lost."""
        s = self.summary
        s.quarantined += 1
        s.quarantine_reasons[q.reason] = s.quarantine_reasons.get(q.reason, 0) + 1
        log.warning("quarantined %s of %s: %s (%s)", q.what, q.vehicle, q.reason, q.detail)
        self._send(
            "quarantine",
            self.cfg.kafka.dead_letter_topic,
            key=q.vehicle.encode(),
            value=quarantine_record(q),
            headers=[("reason", q.reason.encode()), ("source", b"scorer")],
        )

    def _too_many(self, what: str, n: int, exc: Exception) -> None:
        limit = self.cfg.ingest.max_consecutive_failures
        if limit and n >= limit:
            log.critical(
                "scorer stopping: %d %s (last: %s: %s); a bug, not bad data: nothing of this poll is "
                "committed or quarantined, fix the scorer and restart it (ingest.max_consecutive_failures)",
                n,
                what,
                type(exc).__name__,
                exc,
            )
            raise ScoringBroken(f"{n} {what}; last: {type(exc).__name__}: {exc}") from exc

    def _send(self, what: str, topic: str, **kwargs) -> None:
        """Send and keep the future: flush() does not raise for a record the broker refused."""
        future = self.producer.send(topic, **kwargs)
        if future is not None:
            self._sent.append((what, future))

    def _check_sent(self) -> None:
        """After a flush: every record sent since the last check must be confirmed, else nothing is committed."""
        sent, self._sent = self._sent, []
        bad = [(what, f) for what, f in sent if not getattr(f, "is_done", True) or f.failed()]
        if bad:
            self.healthy = False
            what, f = bad[0]
            err = getattr(f, "exception", None) or "not confirmed after flush"
            log.error(
                "%d of %d records not accepted by Kafka (first: a %s: %s); not committing, the stage restarts "
                "and replays",
                len(bad),
                len(sent),
                what,
                err,
            )
            raise DeliveryFailed(f"{len(bad)} of {len(sent)} records refused; first: {what}: {err}")

    def load_partition(self, tp: TopicPartition) -> int | None:
        """Give the cutter a newly assigned partition's stored state and its watermark at the committed offset;
        returns that offset (None: nothing committed yet)."""
        committed = self.consumer.committed(tp, metadata=True)
        wm = 0
        if committed is not None and committed.metadata:
            try:
                wm = int(json.loads(committed.metadata).get("wm", 0))
            except (ValueError, AttributeError):
                log.warning("unreadable commit metadata on %s: %r", tp, committed.metadata)
        raw = self.state.read(tp.partition)
        states = {k.decode(): json.loads(v) for k, v in raw.items()}
        self.cutter.load_partition(tp.partition, wm, states)
        self.owned.add(tp.partition)
        return None if committed is None else committed.offset
        log.info("partition %d: watermark %d, state of %d vehicles", tp.partition, wm, len(states))

    def checkpoint(self) -> None:
        """Make emitted trips durable, then the cutter's state, then commit what no open trip still needs."""
        if not self.healthy:
            raise RuntimeError("checkpoint after a failed poll would commit unpublished trips")
        self.producer.flush()
        self._check_sent()
        updates = self.cutter.take_state_updates()
        for vehicle, (p, state) in updates.items():
            self._send(
                "state",
                self.cfg.kafka.scorer_state_topic,
                key=vehicle.encode(),
                value=json.dumps(state).encode(),
                partition=p,
            )
        if updates:
            self.producer.flush()
            self._check_sent()
        held = self.cutter.held()
        offsets = {}
        for p, pos in self.position.items():
            safe, wm = held.get(p, (pos, self.cutter.wm.get(p, 0)))
            safe = min(safe, pos)
            if self.committed.get(p) != safe:
                offsets[TopicPartition(self.cfg.kafka.telemetry_topic, p)] = OffsetAndMetadata(
                    safe, json.dumps({"wm": wm}), -1
                )
        if offsets:
            self.consumer.commit(offsets)
            for tp, om in offsets.items():
                self.committed[tp.partition] = om.offset

    def step(self, timeout_ms: int = 500) -> int:
        """One poll: load newly assigned partitions, process, checkpoint. A failure leaves the stage unhealthy."""
        try:
            records = self.consumer.poll(timeout_ms=timeout_ms, max_records=2000)
            while self.to_load:
                tp = self.to_load.pop()
                start = self.load_partition(tp)
                got = records.get(tp)
                if start is not None and (not got or got[0].offset != start):
                    # the fetcher is not at the commit (it kept its place from before a revocation): the replay
                    # must start at the commit, where the loaded state stands
                    self.consumer.seek(tp, start)
                    records.pop(tp, None)
            if records:
                self._quiet_since = time.monotonic()
                n = self.process(records)
            elif self._quiet_start_due():
                log.info("stream quiet: starting %d new vehicles without an ignition_on", self.cutter.reseq.new_held())
                n = self.process({}, start_waiting=True)
            else:
                self.metrics.observe(self, records)
                return 0
            with self.metrics.timed(self.metrics.commit.labels(self.cfg.kafka.scorer_group)):
                self.checkpoint()
            self.metrics.observe(self, records)
            return n
        except BaseException:
            self.healthy = False
            raise

    def _quiet_start_due(self) -> bool:
        """No records: once the stream has been quiet for ``ingest.reorder_quiet_s``, new vehicles waiting for an
        ignition_on start at their first message (motion devices: without traffic no window would ever end)."""
        quiet = time.monotonic() - self._quiet_since >= self.cfg.ingest.reorder_quiet_s
        return quiet and self.cutter.waiting_to_start()

    def run(self, install_signals: bool = True) -> None:
        """Until stopped, or until an error (raised after closing without a commit)."""
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        log.info("scoring %s -> %s", self.cfg.kafka.telemetry_topic, self.cfg.kafka.trips_topic)
        try:
            while not self._stop.is_set():
                self.step()
            self.checkpoint()
        finally:
            self.close()

    def close(self) -> None:
        """Leave the group without committing; a producer that cannot flush (Kafka gone) is only logged: what it
        held is re-emitted after the restart, as the commit stayed behind it."""
        for what, close in (
            ("consumer", lambda: self.consumer.close(autocommit=False)),
            ("producer", lambda: self.producer.close(timeout=10)),
        ):
            try:
                close()
            except Exception as exc:
                log.warning("closing the %s: %s", what, exc)
        log.info("scorer stopped: %s, counters %s", self.summary, self.cutter.counters)


def run_with_retry(
    connect: Callable[[], object],
    stop: threading.Event,
    what: str,
    backoff_s: float = 0.5,
    max_backoff_s: float = 30.0,
    sleep=None,
) -> int:
    """Run ``connect().run()`` until ``stop`` is set; a Kafka error (broker gone, commit refused after a rebalance,
    timeout) closes the stage without committing and starts a fresh one after a growing pause, as a restart would.
    Returns how many times it reconnected."""
    wait = sleep or stop.wait
    retries = 0
    delay = backoff_s
    while not stop.is_set():
        try:
            stage = connect()
        except KafkaError as exc:
            retries += 1
            log.warning("%s: cannot reach Kafka (%s); retry %d in %.1f s", what, exc, retries, delay)
            wait(delay)
            delay = min(delay * 2, max_backoff_s)
            continue
        stage._stop = stop  # one stop for every incarnation
        started = time.monotonic()
        try:
            stage.run(install_signals=False)
            return retries
        except KafkaError as exc:
            retries += 1
            if time.monotonic() - started > 60:
                delay = backoff_s  # it ran well for a while: start the backoff again
            log.warning(
                "%s: Kafka failed (%s: %s); restarting from the last commit, retry %d in %.1f s",
                what,
                type(exc).__name__,
                exc,
                retries,
                delay,
            )
            wait(delay)
            delay = min(delay * 2, max_backoff_s)
    return retries


def run_score(cfg: Config, client_id: str = "ubi-scorer-1", install_signals: bool = True) -> int:
    stop = threading.Event()
    if install_signals:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
    metrics = ScorerMetrics()  # one per process: its counters carry over reconnects
    server = serve(metrics.registry, cfg.ingest.scorer_metrics_port, what="scorer metrics")
    try:
        return run_with_retry(lambda: ScoreStage.connect(cfg, client_id, metrics), stop, "scorer")
    finally:
        if server is not None:
            server.shutdown()
