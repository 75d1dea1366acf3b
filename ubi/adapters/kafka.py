"""Kafka adapter: topic creation, per-stage ACLs and the producer/consumer settings every stage shares.

Every client authenticates with SASL/SCRAM-SHA-512 as one principal: ``admin`` (topics and ACLs), ``bridge``
(writes telemetry and the DLQ), ``scorer`` (reads telemetry and its state topic, writes trips and its state, in its
group) or ``store`` (reads trips in its group). Passwords come from ``<home>/secrets/kafka.json`` (mode 0600,
written by ``ubi stack up``) or the file in ``[kafka] sasl_secrets``; a missing one is an error, never a fallback
to an anonymous connection.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    NewTopic,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)
from kafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from ubi.common.config import KafkaConfig, load_config
from ubi.common.errors import ConfigError, StackError

PRINCIPALS = ("admin", "bridge", "scorer", "store")
# kafka-python warns "Exchanging credentials in the clear" on every SCRAM login over a plaintext channel; SCRAM never
# sends the password (only a proof), and the listener is on 127.0.0.1. Its other warnings stay.
logging.getLogger("kafka.net.sasl.scram").setLevel(logging.ERROR)
# kafka-python's own event-loop timing notes ("Task ... ran for 0.1s") on a busy machine: not actionable, not ours
logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
SASL_MECHANISM = "SCRAM-SHA-512"


def secrets_file(cfg: KafkaConfig) -> Path:
    return Path(cfg.sasl_secrets) if cfg.sasl_secrets else load_config().secrets_dir / "kafka.json"


def _password(cfg: KafkaConfig, user: str) -> str:
    if user not in PRINCIPALS:
        raise ConfigError(f"no Kafka principal {user!r} (one of {', '.join(PRINCIPALS)})")
    path = secrets_file(cfg)
    try:
        return json.loads(path.read_text())[user]
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"no Kafka password for {user!r} in {path} ({exc!r}): run `ubi stack up`") from exc


class KafkaAuthError(KafkaError, StackError):
    """The broker refused a principal's credentials. A KafkaError, so a stage keeps retrying (the password file may
    be restored); the message says which principal and where its password comes from."""


def explain_bootstrap_failure(cfg: KafkaConfig, user: str, exc: Exception) -> Exception:
    """kafka-python reports refused credentials only as "Unable to bootstrap" after its bootstrap timeout (the
    broker just closes the connection); librdkafka names the cause, so ask it (a few seconds, only on failure)."""
    import socket

    for host, port in cfg.addresses:
        try:
            socket.create_connection((host, port), timeout=1.0).close()
            break
        except OSError:
            continue
    else:
        return exc  # nothing listens: the timeout is the truth
    from confluent_kafka.admin import AdminClient

    errors: list[object] = []

    class Clues:  # librdkafka logs the SASL failure (error_cb does not see it): keep its lines
        def log(self, level: int, fmt: str, *args: object) -> None:
            errors.append(fmt % args if args else fmt)

    admin = AdminClient(
        {**rdkafka_auth(cfg, user), "error_cb": errors.append, "logger": Clues(), "socket.timeout.ms": 5000}
    )
    try:
        admin.list_topics(timeout=5)
    except Exception as err:  # noqa: BLE001 - collected as a clue
        errors.append(err)
    admin.poll(0.5)  # serves the queued log lines to Clues
    refused = next((str(e) for e in errors if "authentication" in str(e).lower()), None)
    if refused is None:
        return exc
    reason = refused.split("SASL authentication error: ")[-1].split(" (after")[0]
    return KafkaAuthError(
        f"Kafka at {cfg.bootstrap} refused the credentials of principal {user!r} ({reason}); its password comes "
        f"from {secrets_file(cfg)}"
    )


def _client(factory, cfg: KafkaConfig, user: str, *args, **settings):
    """Build a kafka-python client; a bootstrap failure is explained (refused credentials or no broker)."""
    try:
        return factory(*args, **settings)
    except (KafkaTimeoutError, KafkaConnectionError) as exc:
        raise explain_bootstrap_failure(cfg, user, exc) from exc


def auth(cfg: KafkaConfig, user: str) -> dict:
    """kafka-python connection settings for ``user`` (bootstrap, SASL/SCRAM)."""
    return dict(
        bootstrap_servers=cfg.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=SASL_MECHANISM,
        sasl_plain_username=user,
        sasl_plain_password=_password(cfg, user),
    )


def rdkafka_auth(cfg: KafkaConfig, user: str) -> dict:
    """The same for librdkafka (confluent-kafka)."""
    return {
        "bootstrap.servers": cfg.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": SASL_MECHANISM,
        "sasl.username": user,
        "sasl.password": _password(cfg, user),
    }


def stage_acls(cfg: KafkaConfig) -> list[ACL]:
    """What each stage's principal may do on this configuration's topics and groups, and nothing else."""
    t, g = ResourceType.TOPIC, ResourceType.GROUP
    read, write = ACLOperation.READ, ACLOperation.WRITE
    grants = {
        "bridge": [(t, cfg.telemetry_topic, write), (t, cfg.dead_letter_topic, write)],
        "scorer": [
            (t, cfg.telemetry_topic, read),
            (g, cfg.scorer_group, read),
            (t, cfg.trips_topic, write),
            (t, cfg.dead_letter_topic, write),  # its quarantine (ubi/stages/score.py)
            (t, cfg.scorer_state_topic, write),
            (t, cfg.scorer_state_topic, read),
        ],
        "store": [(t, cfg.trips_topic, read), (g, cfg.store_group, read)],
    }
    return [
        ACL(f"User:{user}", "*", op, ACLPermissionType.ALLOW, ResourcePattern(rt, name, ACLResourcePatternType.LITERAL))
        for user, rows in grants.items()
        for rt, name, op in rows
    ]


def admin_client(cfg: KafkaConfig, **overrides) -> KafkaAdminClient:
    settings = dict(client_id="ubi-admin", request_timeout_ms=10000, **auth(cfg, "admin"))
    settings.update(overrides)
    return _client(KafkaAdminClient, cfg, "admin", **settings)


def probe(cfg: KafkaConfig, timeout: float = 5.0) -> str | None:
    """None if the broker answers an authenticated metadata request within ``timeout`` s, else why not. Runs in a
    thread so that a frozen broker (port open, nothing answering) cannot hang the caller."""
    result: list[str | None] = []

    def ask() -> None:
        try:
            admin = admin_client(cfg, request_timeout_ms=int(timeout * 1000), bootstrap_timeout_ms=int(timeout * 1000))
            try:
                admin.list_topics()
                result.append(None)
            finally:
                admin.close()
        except Exception as exc:  # noqa: BLE001 - reported to the caller
            result.append(f"{type(exc).__name__}: {exc}")

    worker = threading.Thread(target=ask, name="kafka-probe", daemon=True)
    worker.start()
    worker.join(timeout)
    return result[0] if result else f"no answer to a metadata request within {timeout:.0f} s"


def ensure_topics(cfg: KafkaConfig, timeout: float = 30) -> None:
    """Create the platform's topics if missing and grant each stage's principal its rights on them (idempotent);
    waits for the broker to accept admin calls."""
    from dataclasses import replace

    from ubi.adapters.privacy import apply_topic_configs
    from ubi.adapters.topics import declared_topics

    # the one declaration (ubi/adapters/topics.py): partitions, replication, and settings (retention from the privacy
    # settings) for new and existing topics alike; `ubi topics check` compares a cluster with the same list
    declared = {s.name: s for s in declared_topics(replace(load_config(), kafka=cfg))}
    wanted = {name: s.configs for name, s in declared.items()}
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin = admin_client(cfg)
            try:
                existing = set(admin.list_topics())
                new = [
                    NewTopic(name, s.partitions, s.replication, topic_configs=s.configs)
                    for name, s in declared.items()
                    if name not in existing
                ]
                if new:
                    try:
                        admin.create_topics(new)
                    except TopicAlreadyExistsError:
                        pass
                if set(wanted) <= set(admin.list_topics()):
                    apply_topic_configs(admin, wanted, existing)
                    failed = admin.create_acls(stage_acls(cfg))["failed"]  # an existing binding is not doubled
                    if failed:
                        raise StackError(f"could not create Kafka ACLs: {failed}")
                    _wait_for_acls(admin, cfg, deadline)
                    return
            finally:
                admin.close()
        except (KafkaError, OSError) as exc:
            last = exc
        time.sleep(0.5)
    raise StackError(f"could not create Kafka topics on {cfg.bootstrap}: {last}")


def _acls_on(admin: KafkaAdminClient, kind: ResourceType, name: str) -> list:
    flt = ACLFilter(
        None,
        None,
        ACLOperation.ANY,
        ACLPermissionType.ANY,
        ResourcePatternFilter(kind, name, ACLResourcePatternType.LITERAL),
    )
    acls, _err = admin.describe_acls(flt)
    return acls


def _wait_for_acls(admin: KafkaAdminClient, cfg: KafkaConfig, deadline: float) -> None:
    """New ACLs reach the authorizer through the metadata log a moment after create_acls returns; a client that
    writes meanwhile is refused (a test's first records were). Wait until they can be read back."""
    want = {(a.resource_pattern.resource_type, a.resource_pattern.resource_name) for a in stage_acls(cfg)}
    expected = len(stage_acls(cfg))
    while time.monotonic() < deadline:
        if sum(len(_acls_on(admin, kind, name)) for kind, name in want) >= expected:
            return
        time.sleep(0.2)
    raise StackError(f"Kafka ACLs for {cfg.trips_topic} and its sibling topics did not appear in time")


def delete_topics(cfg: KafkaConfig, topics: list[str], timeout: float = 30) -> None:
    """Delete topics if present and wait until the broker has forgotten them (used to reset the demo)."""
    admin = admin_client(cfg)
    try:
        present = [t for t in topics if t in set(admin.list_topics())]
        if present:
            admin.delete_topics(present, raise_errors=False)
        deadline = time.monotonic() + timeout
        while set(present) & set(admin.list_topics()) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        admin.close()


def drop_deployment(cfg: KafkaConfig, timeout: float = 30) -> None:
    """Remove what ``ensure_topics`` made for this configuration: its topics (the state topic too) and the ACLs
    it granted on them and on its groups. Test and benchmark deployments call it when they end, so bindings for
    topics that no longer exist do not pile up in the metadata log."""
    topics = [cfg.telemetry_topic, cfg.dead_letter_topic, cfg.trips_topic, cfg.scorer_state_topic]
    delete_topics(cfg, topics, timeout)
    admin = admin_client(cfg)
    try:
        filters = [
            ACLFilter(a.principal, a.host, a.operation, a.permission_type, ResourcePatternFilter(
                a.resource_pattern.resource_type, a.resource_pattern.resource_name, ACLResourcePatternType.LITERAL))
            for a in stage_acls(cfg)
        ]  # fmt: skip
        admin.delete_acls(filters)
    finally:
        admin.close()


def read_compacted(
    cfg: KafkaConfig, topic: str, partition: int, timeout: float = 30, user: str = "scorer"
) -> dict[bytes, bytes]:
    """The latest value per key of one partition of a compacted topic, read from its start to its current end
    (the scorer's state topic: read as ``scorer`` unless told otherwise)."""
    consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, client_id="ubi-state-reader", **auth(cfg, user))
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


def make_producer(cfg: KafkaConfig, client_id: str, user: str = "scorer", **overrides) -> KafkaProducer:
    """Idempotent producer, acks from all in-sync replicas: a record confirmed here survives a broker restart.
    It writes as ``user``: the scorer (trips and its state) unless told otherwise (the bridge's sink passes
    ``bridge``)."""
    settings = dict(
        **auth(cfg, user),
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
    return _client(KafkaProducer, cfg, user, **settings)


def make_consumer(
    cfg: KafkaConfig, group: str, topics: list[str], client_id: str, user: str | None = None, **overrides
) -> KafkaConsumer:
    """Manual commits only: each stage commits what it has made durable downstream. The principal is the stage
    that owns ``group`` (the scorer's or the store's group) unless ``user`` says otherwise."""
    if user is None:
        owners = {cfg.scorer_group: "scorer", cfg.store_group: "store"}
        if group not in owners:
            raise ConfigError(f"consumer group {group!r} belongs to no stage: pass the Kafka principal (user=...)")
        user = owners[group]
    settings = dict(
        **auth(cfg, user),
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=2000,
        session_timeout_ms=10000,
        heartbeat_interval_ms=3000,
        max_poll_interval_ms=300000,
        # A stage that subscribed before its topic's metadata reached the broker it asked got no partitions and
        # stayed idle until the next metadata refresh (kafka-python's default: 5 min; a 3-broker cluster test's
        # clean run stored 0 of 14 trips in 264 s that way). With 30 s the group sees the partitions and
        # rebalances within 30 s, for one metadata request per consumer per 30 s.
        metadata_max_age_ms=30000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    settings.update(overrides)
    return _client(KafkaConsumer, cfg, user, *topics, **settings)


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
        self.producer = make_producer(cfg, client_id=client_id, user="bridge")

    def send(self, topic, key, value, headers, done) -> None:
        fut = self.producer.send(topic, key=key, value=value, headers=headers)
        fut.add_callback(lambda _meta: done(None))
        fut.add_errback(done)

    def flush(self, timeout: float) -> None:
        self.producer.flush(timeout=timeout)

    def close(self, timeout: float) -> None:
        self.producer.close(timeout=timeout)


class DeliveryFailed(KafkaError, StackError):
    """Kafka refused or never confirmed a record we sent: librdkafka gave up on it (broker down past
    message.timeout.ms, or a fatal error; the bridge retries the record), or the scorer's checkpoint found a send
    that failed (nothing past it may be committed). A KafkaError, so run_with_retry restarts the stage."""


class RdKafkaSink(RecordSink):
    """confluent-kafka's producer (librdkafka in C: a few µs a record in Python), with the same guarantees as
    make_producer: idempotent, acks from all in-sync replicas, Java's murmur2 partitioner so a vehicle's records land
    on the partition kafka-python would pick. Delivery reports are served by a small polling thread."""

    def __init__(self, cfg: KafkaConfig, client_id: str) -> None:
        from confluent_kafka import Producer

        self.producer = Producer(
            {
                **rdkafka_auth(cfg, "bridge"),
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
            }
        )
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
