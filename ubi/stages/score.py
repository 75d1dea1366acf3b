"""The scoring stage: a Kafka consumer group that cuts trips, scores them and publishes scored trips.

Exactly-once in effect: after each poll, scored trips are flushed to Kafka first, then the trip cutter's changed
per-vehicle state (which vehicles send ignition events, where each motion-cut trip ended) goes to the group's
compacted state topic and is flushed, then the consumer commits, per partition, no further than the first offset
an open trip or a motion track still needs, with the partition's watermark at that offset as commit metadata. A
process killed at any moment restarts from that offset with that state and rebuilds every open trip whole; trips
it emits again carry the same trip_id and are replaced, not duplicated, by the store's upsert.
"""

from __future__ import annotations

import json
import logging
import signal
import threading

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from ingest.contract import decode_trusted, parse_topic
from ubi.common.messages import Rejected
from ubi.adapters.kafka import make_consumer, make_producer, read_compacted
from scoring.features import score_trip, trip_limits
from scoring.maplayer import MapLayer
from scoring.trips import TripCutter
from ubi.common.config import Config

log = logging.getLogger("ubi.score")


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, stage: "ScoreStage") -> None:
        self.stage = stage

    def on_partitions_revoked(self, revoked):
        self.stage.checkpoint()
        self.stage.cutter.drop_partitions({tp.partition for tp in revoked})
        for tp in revoked:
            self.stage.position.pop(tp.partition, None)
            self.stage.committed.pop(tp.partition, None)
            self.stage.to_load.discard(tp)

    def on_partitions_assigned(self, assigned):
        # The listener runs on the consumer's IO thread, which must not block: the state is loaded by the main
        # loop after this poll returns and before any of its records is processed.
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))
        self.stage.to_load |= set(assigned)


class ScoreStage:
    def __init__(self, cfg: Config, client_id: str = "ubi-scorer-1") -> None:
        self.cfg = cfg
        self.cutter = TripCutter.for_config(cfg.scoring)
        self.map = (MapLayer.load(cfg.scoring.speed_limit_map, cfg.scoring.speed_limit_radius_m)
                    if cfg.scoring.speed_limit_map else None)
        self.position: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.to_load: set[TopicPartition] = set()
        self.trips_emitted = 0
        self.rejected = 0
        self._stop = threading.Event()
        self.producer = make_producer(cfg.kafka, client_id=client_id)
        self.consumer = make_consumer(cfg.kafka, cfg.kafka.scorer_group, [], client_id)
        self.consumer.subscribe([cfg.kafka.telemetry_topic], listener=_Rebalance(self))

    def stop(self) -> None:
        self._stop.set()

    def process(self, records) -> int:
        """Feed one poll's records through the cutter, publish closed trips. Returns trips emitted."""
        closed = []
        for tp, batch in records.items():
            for rec in batch:
                headers = dict(rec.headers or [])
                topic = headers.get("mqtt_topic", b"").decode()
                parsed = parse_topic(self.cfg.mqtt.topic_prefix, topic)
                received_ms = int(headers.get("received_ms", b"0") or 0)
                item = (decode_trusted(parsed[0], parsed[1], rec.value, received_ms, self.cfg.ingest)
                        if parsed else None)
                if item is None or isinstance(item, Rejected):
                    self.rejected += 1  # the bridge validated it: only a contract change gets here
                    log.warning("unreadable record at %s:%d: %s", tp, rec.offset, item)
                else:
                    closed.extend(self.cutter.feed(item, tp.partition, rec.offset, received_ms))
                self.position[tp.partition] = rec.offset + 1
        closed.extend(self.cutter.expire())
        for trip in closed:
            row = score_trip(trip, self.cfg.scoring, trip_limits(trip, self.map))
            self.producer.send(self.cfg.kafka.trips_topic, key=trip.vehicle.encode(),
                               value=row.to_json())
        self.trips_emitted += len(closed)
        return len(closed)

    def load_partition(self, tp: TopicPartition) -> None:
        """Give the cutter a newly assigned partition's stored state and its watermark at the committed offset."""
        committed = self.consumer.committed(tp, metadata=True)
        wm = 0
        if committed is not None and committed.metadata:
            try:
                wm = int(json.loads(committed.metadata).get("wm", 0))
            except (ValueError, AttributeError):
                log.warning("unreadable commit metadata on %s: %r", tp, committed.metadata)
        raw = read_compacted(self.cfg.kafka, self.cfg.kafka.scorer_state_topic, tp.partition)
        states = {k.decode(): json.loads(v) for k, v in raw.items()}
        self.cutter.load_partition(tp.partition, wm, states)
        log.info("partition %d: watermark %d, state of %d vehicles", tp.partition, wm, len(states))

    def checkpoint(self) -> None:
        """Make emitted trips durable, then the cutter's state, then commit what no open trip still needs."""
        self.producer.flush()
        updates = self.cutter.take_state_updates()
        for vehicle, (p, state) in updates.items():
            self.producer.send(self.cfg.kafka.scorer_state_topic, key=vehicle.encode(),
                               value=json.dumps(state).encode(), partition=p)
        if updates:
            self.producer.flush()
        held = self.cutter.held()
        offsets = {}
        for p, pos in self.position.items():
            safe, wm = held.get(p, (pos, self.cutter.wm.get(p, 0)))
            safe = min(safe, pos)
            if self.committed.get(p) != safe:
                offsets[TopicPartition(self.cfg.kafka.telemetry_topic, p)] = OffsetAndMetadata(
                    safe, json.dumps({"wm": wm}), -1)
        if offsets:
            self.consumer.commit(offsets)
            for tp, om in offsets.items():
                self.committed[tp.partition] = om.offset

    def run(self, install_signals: bool = True) -> None:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self.stop())
            signal.signal(signal.SIGINT, lambda *_: self.stop())
        log.info("scoring %s -> %s", self.cfg.kafka.telemetry_topic, self.cfg.kafka.trips_topic)
        try:
            while not self._stop.is_set():
                records = self.consumer.poll(timeout_ms=500, max_records=2000)
                while self.to_load:
                    self.load_partition(self.to_load.pop())
                if records:
                    self.process(records)
                    self.checkpoint()
        finally:
            self.checkpoint()
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            log.info("scorer stopped: %d trips emitted, counters %s", self.trips_emitted, self.cutter.counters)
