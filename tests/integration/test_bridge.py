"""The bridge on the real services: dead letters with reasons while good traffic flows, and nothing lost when
the bridge is SIGKILLed or Kafka is stopped mid-stream."""

from __future__ import annotations

import json
import signal
import time

from simulator.devices import DeviceFleet
from simulator.fleet import make_trips
from simulator.run import vehicle_stream
from tests.integration.kafka_read import read_topic, seqs_by_vehicle
from ubi.common.messages import DeviceEvent


def wait_count(bootstrap, topic, n, timeout=90):
    deadline = time.monotonic() + timeout
    recs = []
    while time.monotonic() < deadline:
        recs = read_topic(bootstrap, topic, timeout_s=2)
        if len(recs) >= n:
            return recs
        time.sleep(0.5)
    return recs


def test_bad_messages_go_to_dead_letter_with_reason(stack, env):
    cfg = env.config
    v = f"T{env.tag}D"
    fleet = DeviceFleet(cfg.mqtt, stack.enrol([v]))
    now = int(time.time() * 1000)
    good = DeviceEvent(v, 1, now, "ignition_on")
    cases = {
        "malformed_json": b"{nope",
        "wrong_type": json.dumps({"v": 1, "vehicle": v, "seq": "x", "t": now, "event": "ignition_on"}).encode(),
        "missing_field": json.dumps({"v": 1, "vehicle": v, "seq": 2, "event": "ignition_on"}).encode(),
        "unknown_version": json.dumps({"v": 9, "vehicle": v, "seq": 3}).encode(),
        "time_travel": json.dumps(
            {"v": 1, "vehicle": v, "seq": 4, "t": now + 86_400_000, "event": "ignition_on"}
        ).encode(),
        "oversize": b"[" + b" " * (cfg.ingest.max_payload_bytes + 10) + b"]",
        "vehicle_mismatch": json.dumps(
            {"v": 1, "vehicle": "SOMEONE", "seq": 5, "t": now, "event": "ignition_on"}
        ).encode(),
    }
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    time.sleep(1.5)
    fleet.send(good)
    for payload in cases.values():
        fleet.publish_raw(v, "events", payload)
    fleet.send(DeviceEvent(v, 6, now + 1000, "ignition_off"))
    fleet.close()
    dlq = wait_count(cfg.kafka.bootstrap, cfg.kafka.dead_letter_topic, len(cases))
    good_recs = wait_count(cfg.kafka.bootstrap, cfg.kafka.telemetry_topic, 2)
    reasons = sorted(json.loads(r.value)["reason"] for r in dlq)
    assert reasons == sorted(cases)
    for r in dlq:
        body = json.loads(r.value)
        assert body["mqtt_topic"].endswith("/events") and body["received_ms"] >= now - 5000
    assert seqs_by_vehicle(good_recs) == {v: [1, 6]}
    assert bridge.stop() == 0


def stream_messages(env, vehicles: int, days: int):
    spec = env.fleet(vehicles=vehicles, days=days, seed=5)
    from simulator.fleet import vehicle_ids

    streams = {}
    total = 0
    for vid in vehicle_ids(spec.vehicles, spec.id_prefix):
        msgs = list(vehicle_stream(spec, make_trips(spec, vid)))
        total += len(msgs)
        streams[vid] = iter(msgs)
    return streams, total


def assert_all_in_kafka(cfg, streams_total: int, expected_per_vehicle: dict[str, int]):
    recs = wait_count(cfg.kafka.bootstrap, cfg.kafka.telemetry_topic, streams_total)
    seqs = seqs_by_vehicle(recs)
    for v, n in expected_per_vehicle.items():
        assert set(seqs.get(v, [])) == set(range(n)), f"{v}: missing {set(range(n)) - set(seqs.get(v, []))}"


def test_bridge_sigkill_mid_stream_loses_nothing(stack, env):
    cfg = env.config
    streams, total = stream_messages(env, vehicles=3, days=2)
    per_vehicle = {}
    msgs = {}
    for v, it in streams.items():
        msgs[v] = list(it)
        per_vehicle[v] = len(msgs[v])
    fleet = DeviceFleet(cfg.mqtt, stack.enrol(list(msgs)))
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    time.sleep(1.5)
    half = {v: iter(m[: len(m) // 2]) for v, m in msgs.items()}
    rest = {v: iter(m[len(m) // 2 :]) for v, m in msgs.items()}
    fleet.play(half)
    bridge.proc.send_signal(signal.SIGKILL)
    bridge.proc.wait()
    fleet.play(rest)  # the broker holds these for the bridge's persistent session
    fleet.close()
    env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    assert_all_in_kafka(cfg, total, per_vehicle)


def test_kafka_down_for_30s_loses_nothing(stack, env):
    cfg = env.config
    streams, total = stream_messages(env, vehicles=2, days=1)
    msgs = {v: list(it) for v, it in streams.items()}
    fleet = DeviceFleet(cfg.mqtt, stack.enrol(list(msgs)))
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    time.sleep(1.5)
    third = {v: len(m) // 3 for v, m in msgs.items()}
    fleet.play({v: iter(m[: third[v]]) for v, m in msgs.items()})
    try:
        assert stack.kafka_down()
        t0 = time.monotonic()
        fleet.play({v: iter(m[third[v] :]) for v, m in msgs.items()})
        fleet.close()
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        assert bridge.proc.poll() is None, "bridge must survive a Kafka outage"
    finally:
        stack.kafka_up()
    assert_all_in_kafka(cfg, total, {v: len(m) for v, m in msgs.items()})
    assert bridge.stop() == 0


def test_metrics_endpoint_counts_every_message(stack, env):
    import urllib.request

    cfg = env.config
    v = f"T{env.tag}M"
    fleet = DeviceFleet(cfg.mqtt, stack.enrol([v]))
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge", "--metrics-port", "19464")
    time.sleep(1.5)
    now = int(time.time() * 1000)
    fleet.send(DeviceEvent(v, 1, now, "ignition_on"))
    fleet.publish_raw(v, "events", b"not json")
    fleet.close()
    deadline = time.monotonic() + 20
    text = ""
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen("http://127.0.0.1:19464/metrics", timeout=2).read().decode()
        except OSError:
            text = ""
        if "ubi_bridge_received_total 2" in text and "ubi_bridge_in_flight 0" in text:
            break
        time.sleep(0.3)
    assert "ubi_bridge_received_total 2" in text, text
    assert "ubi_bridge_delivered_total 1" in text and "ubi_bridge_dead_lettered_total 1" in text
    assert 'ubi_bridge_dead_letter_reasons_total{reason="malformed_json"} 1' in text
    assert 'ubi_bridge_publish_to_kafka_ms_bucket{le="+Inf"} 2' in text
    assert bridge.stop() == 0


def test_both_kafka_clients_put_a_vehicle_on_the_same_partition(stack, env):
    """librdkafka (the bridge's default) and kafka-python partition by the same murmur2 hash, so two bridges with
    different clients still keep each vehicle's records in one partition, in order."""
    import threading

    from ubi.adapters.kafka import KafkaPythonSink, RdKafkaSink

    cfg = env.config
    topic = cfg.kafka.dead_letter_topic  # a fresh topic of this test's namespace, 3 partitions
    keys = [f"VH{i:05d}".encode() for i in range(60)]
    for name, sink in (("rd", RdKafkaSink(cfg.kafka, "it-rd")), ("py", KafkaPythonSink(cfg.kafka, "it-py"))):
        confirmed = threading.Semaphore(0)
        refused: list = []

        def done(exc, c=confirmed, refused=refused) -> None:
            if exc is not None:
                refused.append(exc)
            c.release()

        for k in keys:
            sink.send(topic, k, name.encode(), [("client", name.encode())], done)
        sink.flush(30)
        assert all(confirmed.acquire(timeout=10) for _ in keys)
        assert not refused, refused[:3]  # a refused record (e.g. its ACL not yet in force) is not "confirmed"
        sink.close(5)
    where: dict[str, dict[bytes, int]] = {"rd": {}, "py": {}}
    for r in read_topic(cfg.kafka.bootstrap, topic):
        where[r.value.decode()][r.key] = r.partition
    assert len(where["rd"]) == len(keys) and where["rd"] == where["py"]
    assert len(set(where["rd"].values())) == 3
