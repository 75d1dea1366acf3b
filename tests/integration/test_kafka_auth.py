"""Kafka authentication and per-stage ACLs on the real broker (issue 11, item 4): with no credentials, `kcat` and
kafka-python had written 10 fabricated trips that were stored and priced. Now every client must log in with
SASL/SCRAM as a principal that may do only its stage's work."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest
from kafka import KafkaProducer

from tests.integration.kafka_read import read_topic
from ubi.adapters.kafka import RdKafkaSink, make_producer

FAKE_TRIP = json.dumps({"trip_id": "forged", "vehicle_id": "V-EVIL", "distance_km": 60.0}).encode()


def _refused(fn) -> BaseException | None:
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - any refusal will do; what matters is that nothing was written
        return exc
    return None


def test_unauthenticated_kafka_python_client_is_refused(stack, env):
    k = env.config.kafka

    def forge() -> None:
        p = KafkaProducer(
            bootstrap_servers=k.bootstrap,
            bootstrap_timeout_ms=3000,
            max_block_ms=5000,
            request_timeout_ms=5000,
            delivery_timeout_ms=8000,
        )
        try:
            p.send(k.trips_topic, key=b"V-EVIL", value=FAKE_TRIP).get(timeout=10)
        finally:
            p.close(timeout=2)

    assert _refused(forge) is not None, "an anonymous client wrote a trip"
    assert read_topic(k.bootstrap, k.trips_topic, timeout_s=2) == []


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is not installed (apt-get install kcat)")
def test_unauthenticated_kcat_is_refused(stack, env):
    k = env.config.kafka
    r = subprocess.run(
        [
            "kcat",
            "-b",
            k.bootstrap,
            "-P",
            "-t",
            k.trips_topic,
            "-k",
            "V-EVIL",
            "-X",
            "message.timeout.ms=5000",
            "-X",
            "socket.timeout.ms=3000",
        ],
        input=FAKE_TRIP + b"\n",
        capture_output=True,
        timeout=30,
    )
    listing = subprocess.run(["kcat", "-b", k.bootstrap, "-L", "-m", "3"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 or b"ERROR" in r.stderr.upper() or b"FAIL" in r.stderr.upper(), r.stderr
    assert listing.returncode != 0 and k.trips_topic not in listing.stdout
    assert read_topic(k.bootstrap, k.trips_topic, timeout_s=2) == []


def test_bridge_principal_cannot_write_trips(stack, env):
    k = env.config.kafka
    p = make_producer(
        k, "it-bridge-evil", user="bridge", max_block_ms=8000, delivery_timeout_ms=10000, request_timeout_ms=5000
    )
    try:
        exc = _refused(lambda: p.send(k.trips_topic, key=b"V-EVIL", value=FAKE_TRIP).get(timeout=15))
        assert exc is not None and "Authorization" in type(exc).__name__, exc
        # the same principal may write telemetry (the grant is per topic, not a dead account)
        assert p.send(k.telemetry_topic, key=b"V-OK", value=b"{}").get(timeout=15).offset >= 0
    finally:
        p.close(timeout=2)
    errors: list = []
    sink = RdKafkaSink(k, "it-bridge-evil-rd")  # the bridge's default client, as the bridge
    try:
        sink.send(k.trips_topic, b"V-EVIL", FAKE_TRIP, [], errors.append)
        deadline = time.monotonic() + 20
        while not errors and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        sink.close(2)
    assert errors and errors[0] is not None, "librdkafka wrote a trip as the bridge"
    assert read_topic(k.bootstrap, k.trips_topic, timeout_s=2) == []


def test_store_principal_cannot_read_telemetry_and_scorer_writes_trips(stack, env):
    from ubi.adapters.kafka import make_consumer

    k = env.config.kafka
    scorer = make_producer(k, "it-scorer", max_block_ms=8000)  # the scorer's principal is the default
    bridge = make_producer(k, "it-bridge", user="bridge", max_block_ms=8000)
    try:
        scorer.send(k.trips_topic, key=b"V-OK", value=b"{}").get(timeout=15)
        bridge.send(k.telemetry_topic, key=b"V-OK", value=b"{}").get(timeout=15)
    finally:
        scorer.close(timeout=2)
        bridge.close(timeout=2)
    c = make_consumer(k, k.store_group, [k.telemetry_topic], "it-store-evil")
    got: list = []
    try:  # kafka-python logs "not authorized" and returns nothing; either way the store must not get a record
        _refused(lambda: [got.extend(c.poll(timeout_ms=1000).values()) for _ in range(4)])
    finally:
        c.close(autocommit=False)
    assert got == []
    assert len(read_topic(k.bootstrap, k.telemetry_topic, timeout_s=2)) == 1  # the record was there to steal


def test_stack_status_does_not_call_a_frozen_kafka_running(stack):
    """Finding 8: `ubi stack status` said "running" for a frozen Kafka (the port still accepts connections). It now
    asks for metadata, authenticated, with a timeout."""
    import os
    import signal

    pid = int((stack.kafka_dir / "kafka.pid").read_text())
    assert stack.status()["kafka"].startswith("running")
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        row = stack.status()["kafka"]
        assert time.monotonic() - t0 < 15
    finally:
        os.kill(pid, signal.SIGCONT)
    assert not row.startswith("running") and "does not answer" in row, row


def test_a_wrong_password_is_named_as_such_not_as_a_timeout(stack, env, tmp_path):
    """kafka-python only said "Unable to bootstrap" after 30 s when the broker refused a password (it closes the
    connection); our clients now say which principal was refused and where its password comes from."""
    from dataclasses import replace

    from ubi.adapters.kafka import KafkaAuthError, make_consumer, secrets_file

    wrong = {user: "not-the-password" for user in json.loads(secrets_file(env.config.kafka).read_text())}
    path = tmp_path / "kafka.json"
    path.write_text(json.dumps(wrong))
    k = replace(env.config.kafka, sasl_secrets=str(path))
    t0 = time.monotonic()
    with pytest.raises(KafkaAuthError, match="refused the credentials of principal 'store'") as err:
        make_consumer(k, k.store_group, [k.trips_topic], "it-wrong-password", bootstrap_timeout_ms=3000)
    assert str(path) in str(err.value) and time.monotonic() - t0 < 20


def test_a_dropped_deployment_leaves_no_topics_and_no_acls(stack, env):
    """Integration tests and benchmarks made topics with ACLs that were never removed (thousands of bindings for
    topics long gone); drop_deployment removes both."""
    import uuid
    from dataclasses import replace

    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
    from kafka.admin import ResourceType as RT

    from ubi.adapters.kafka import admin_client, drop_deployment, ensure_topics

    tag = uuid.uuid4().hex[:8]
    names = {"telemetry_topic": f"drop.{tag}.t", "dead_letter_topic": f"drop.{tag}.d", "trips_topic": f"d.{tag}.tr"}
    k = replace(env.config.kafka, scorer_group=f"drop-{tag}-s", store_group=f"drop-{tag}-st", **names)
    ensure_topics(k)

    def bindings() -> int:
        admin = admin_client(k)
        try:
            found = 0
            for rt, name in ((RT.TOPIC, k.trips_topic), (RT.TOPIC, k.telemetry_topic), (RT.GROUP, k.store_group)):
                acls, _err = admin.describe_acls(
                    ACLFilter(
                        None,
                        None,
                        ACLOperation.ANY,
                        ACLPermissionType.ANY,
                        ResourcePatternFilter(rt, name, ACLResourcePatternType.LITERAL),
                    )  # fmt: skip
                )
                found += len(acls)
            return found
        finally:
            admin.close()

    assert bindings() >= 4  # ensure_topics returns once its ACLs can be read back
    drop_deployment(k)
    deadline = time.monotonic() + 10
    while bindings() and time.monotonic() < deadline:  # deletions reach the authorizer a moment later too
        time.sleep(0.2)
    assert bindings() == 0
    admin = admin_client(k)
    try:
        assert not {k.telemetry_topic, k.trips_topic, k.dead_letter_topic} & set(admin.list_topics())
    finally:
        admin.close()
