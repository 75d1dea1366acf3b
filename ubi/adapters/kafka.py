"""Kafka adapter: topic creation and the producer/consumer settings every stage shares."""

from __future__ import annotations

import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ubi.common.config import KafkaConfig
from ubi.common.errors import StackError


def ensure_topics(cfg: KafkaConfig, timeout: float = 30) -> None:
    """Create the platform's topics if missing (idempotent); waits for the broker to accept admin calls."""
    wanted = {
        cfg.telemetry_topic: {"retention.ms": str(7 * 24 * 3600 * 1000)},
        cfg.dead_letter_topic: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        cfg.trips_topic: {"retention.ms": str(30 * 24 * 3600 * 1000)},
        # one small record per vehicle, kept for ever (compaction keeps the latest)
        cfg.scorer_state_topic: {"cleanup.policy": "compact", "retention.ms": "-1"},
    }
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap, client_id="ubi-admin", request_timeout_ms=10000)
            try:
                existing = set(admin.list_topics())
                new = [NewTopic(name, cfg.partitions, 1, topic_configs=conf)
                       for name, conf in wanted.items() if name not in existing]
                if new:
                    try:
                        admin.create_topics(new)
                    except TopicAlreadyExistsError:
                        pass
                if set(wanted) <= set(admin.list_topics()):
                    return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise StackError(f"could not create Kafka topics on {cfg.bootstrap}: {last}")


def delete_topics(cfg: KafkaConfig, topics: list[str], timeout: float = 30) -> None:
    """Delete topics if present and wait until the broker has forgotten them (used to reset the demo)."""
    admin = KafkaAdminClient(bootstrap_servers=cfg.bootstrap, client_id="ubi-admin", request_timeout_ms=10000)
    try:
        present = [t for t in topics if t in set(admin.list_topics())]
        if present:
            admin.delete_topics(present, raise_errors=False)
        deadline = time.monotonic() + timeout
        while set(present) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        admin.close()


def read_compacted(cfg: KafkaConfig, topic: str, partition: int, timeout: float = 30) -> dict[bytes, bytes]:
    """The latest value per key of one partition of a compacted topic, read from its start to its current end."""
    consumer = KafkaConsumer(bootstrap_servers=cfg.bootstrap, group_id=None, enable_auto_commit=False,
                             client_id="ubi-state-reader")
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = consumer.end_offsets([tp])[tp]
        consumer.seek_to_beginning(tp)
        out: dict[bytes, bytes] = {}
        deadline = time.monotonic() + timeout
        while consumer.position(tp) < end:
            if time.monotonic() > deadline:
                raise StackError(f"reading {topic}[{partition}] took longer than {timeout} s")
            for records in consumer.poll(timeout_ms=1000).values():
                for r in records:
                    if r.value is None:
                        out.pop(r.key, None)
                    else:
                        out[r.key] = r.value
        return out
    finally:
        consumer.close()


def make_producer(cfg: KafkaConfig, client_id: str, **overrides) -> KafkaProducer:
    """Idempotent producer, acks from all in-sync replicas: a record confirmed here survives a broker restart."""
    settings = dict(
        bootstrap_servers=cfg.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        batch_size=256 * 1024,
        max_request_size=1048576,
        retries=2**31 - 1,
        delivery_timeout_ms=120000,
        request_timeout_ms=30000,
        reconnect_backoff_max_ms=2000,
        metrics_enabled=False,  # kafka-python's own sensors cost ~10% per record; we count what matters ourselves
    )
    settings.update(overrides)
    return KafkaProducer(**settings)


def make_consumer(cfg: KafkaConfig, group: str, topics: list[str], client_id: str, **overrides) -> KafkaConsumer:
    """Manual commits only: each stage commits what it has made durable downstream."""
    settings = dict(
        bootstrap_servers=cfg.bootstrap,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        max_poll_interval_ms=300000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    settings.update(overrides)
    return KafkaConsumer(*topics, **settings)


class RecordSink:
    """Write Kafka records and say, per record, when the broker has it (``done(None)``) or why not
    (``done(exc)``). The bridge needs only this; two clients implement it."""

    def send(self, topic: str, key: bytes, value: bytes, headers: list[tuple[str, bytes]], done) -> None:
        raise NotImplementedError

    def flush(self, timeout: float) -> None:
        raise NotImplementedError

    def close(self, timeout: float) -> None:
        raise NotImplementedError


class KafkaPythonSink(RecordSink):
    """kafka-python's producer (pure Python; about 60 µs a record on one core)."""

    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        self.producer = make_producer(cfg, client_id=client_id)

    def send(self, topic, key, value, headers, done) -> None:
        fut = self.producer.send(topic, key=key, value=value, headers=headers)
        fut.add_callback(lambda _meta: done(None))
        fut.add_errback(done)

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout=timeout)

    def close(self, timeout: float) -> None:
        self.producer.close(timeout=timeout)


class DeliveryFailed(Exception):
    """librdkafka gave up on a record (broker down past message.timeout.ms, or a fatal error)."""


class RdKafkaSink(RecordSink):
    """confluent-kafka's producer (librdkafka in C: a few µs a record in Python), with the same guarantees as
    make_producer: idempotent, acks from all in-sync replicas, Java's murmur2 partitioner so a vehicle's records land
    on the partition kafka-python would pick. Delivery reports are served by a small polling thread."""

    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer({
            "bootstrap.servers": cfg.bootstrap,
            "client.id": client_id,
            "acks": "all",
            "enable.idempotence": True,
            "partitioner": "murmur2_random",
            "linger.ms": 5,
            "batch.size": 256 * 1024,
            "message.max.bytes": 1048576,
            "message.timeout.ms": 120000,
            "request.timeout.ms": 30000,
            "reconnect.backoff.max.ms": 2000,
            "queue.buffering.max.messages": 100000,
        })
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name="kafka-delivery", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self.producer.poll(0.05)

    def send(self, topic, key, value, headers, done) -> None:
        def report(err, _msg) -> None:
            done(None if err is None else DeliveryFailed(str(err)))

        self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=report)

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout)

    def close(self, timeout: float) -> None:
        self.producer.flush(timeout)
        self._closed.set()
        self._poller.join(timeout=2)


def make_sink(cfg: KafkaConfig, client_id: str) -> RecordSink:
    """The bridge's Kafka writer, as ``KafkaConfig.bridge_client`` says (both clients are dependencies)."""
    if cfg.bridge_client == "librdkafka":
        return RdKafkaSink(cfg, client_id)
    return KafkaPythonSink(cfg, client_id)
