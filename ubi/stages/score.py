"""The scoring stage: a Kafka consumer group that cuts trips, scores them and publishes scored trips.

Exactly-once in effect: after each poll, scored trips are flushed to Kafka first, then the consumer commits, per
partition, no further than the first offset of the oldest trip still open there. A process killed at any moment
restarts from that offset and rebuilds every open trip whole; trips it emits again carry the same trip_id and are
replaced, not duplicated, by the store's upsert.
"""

from __future__ import annotations

import json
import logging
import signal
import threading

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from ingest.contract import Rejected, decode_trusted, parse_topic
from ingest.kafka_io import make_consumer, make_producer
from scoring.features import score_trip, trip_limits
from scoring.maplayer import MapLayer
from scoring.trips import TripCutter
from ubi.config import Config

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

    def on_partitions_assigned(self, assigned):
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


class ScoreStage:
    def __init__(self, cfg: Config, client_id: str = "ubi-scorer-1") -> None:
        self.cfg = cfg
        self.cutter = TripCutter(cfg.scoring.close_grace_s)
        self.map = (MapLayer.load(cfg.scoring.speed_limit_map, cfg.scoring.speed_limit_radius_m)
                    if cfg.scoring.speed_limit_map else None)
        self.position: dict[int, int] = {}
        self.committed: dict[int, int] = {}
        self.stream_ms = 0
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
                    self.stream_ms = max(self.stream_ms, getattr(item, "t_ms", 0) or int(item.sent_ms))
                    closed.extend(self.cutter.feed(item, tp.partition, rec.offset))
                self.position[tp.partition] = rec.offset + 1
        closed.extend(self.cutter.expire(self.stream_ms))
        for trip in closed:
            row = score_trip(trip, self.cfg.scoring, trip_limits(trip, self.map))
            self.producer.send(self.cfg.kafka.trips_topic, key=trip.vehicle.encode(),
                               value=json.dumps(row).encode())
        self.trips_emitted += len(closed)
        return len(closed)

    def checkpoint(self) -> None:
        """Make emitted trips durable, then commit what no open trip still needs."""
        self.producer.flush()
        oldest = self.cutter.oldest_open_offsets()
        offsets = {}
        for p, pos in self.position.items():
            safe = min(pos, oldest.get(p, pos))
            if self.committed.get(p) != safe:
                offsets[TopicPartition(self.cfg.kafka.telemetry_topic, p)] = OffsetAndMetadata(safe, "", -1)
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
                if records:
                    self.process(records)
                    self.checkpoint()
        finally:
            self.checkpoint()
            self.consumer.close(autocommit=False)
            self.producer.close(timeout=10)
            log.info("scorer stopped: %d trips emitted, counters %s", self.trips_emitted, self.cutter.counters)
