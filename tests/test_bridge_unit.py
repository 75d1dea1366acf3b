"""The bridge's own logic with in-memory doubles for Kafka and the MQTT client: acknowledgement only after Kafka
confirms, the in-flight bound that stops reading from the broker, retries that never acknowledge."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import ubi.stages.bridge as bridge_mod
from ubi.adapters.kafka import RecordSink
from ubi.common.config import Config, PrivacyConfig


class HeldSink(RecordSink):
    """Keeps every record until the test confirms or fails it."""

    def __init__(self) -> None:
        self.pending: list[tuple[str, bytes, object]] = []
        self.lock = threading.Condition()

    def send(self, topic, key, value, headers, done) -> None:
        with self.lock:
            self.pending.append((topic, value, done))
            self.lock.notify_all()

    def wait_pending(self, n: int, timeout: float = 5.0) -> None:
        """Until ``n`` records wait for confirmation (an event, not a sleep)."""
        with self.lock:
            assert self.lock.wait_for(lambda: len(self.pending) >= n, timeout), self.pending

    def confirm(self, n: int, exc: BaseException | None = None) -> None:
        with self.lock:
            batch, self.pending = self.pending[:n], self.pending[n:]
        for _, _, done in batch:
            done(exc)

    def flush(self, timeout: float) -> None:
        pass

    def close(self, timeout: float) -> None:
        pass


def make_bridge(monkeypatch, max_in_flight: int):
    sink = HeldSink()
    cfg = Config()
    cfg = replace(cfg, ingest=replace(cfg.ingest, max_in_flight=max_in_flight))
    b = bridge_mod.Bridge(cfg, "unused", sink=sink)
    acks: list[int] = []
    b.client = SimpleNamespace(ack=lambda mid, qos: acks.append(mid))
    return b, sink, acks


def message(mid: int, vehicle: str = "VH00001"):
    now = int(time.time() * 1000)
    body = {"v": 1, "vehicle": vehicle, "seq": mid, "t": now, "event": "ignition_on"}
    return SimpleNamespace(
        topic=f"ubi/v1/vehicles/{vehicle}/events", payload=json.dumps(body).encode(), mid=mid, qos=1, retain=False
    )


def test_acknowledged_only_after_kafka_confirms(monkeypatch):
    b, sink, acks = make_bridge(monkeypatch, 10)
    for mid in (1, 2, 3):
        b._on_message(None, None, message(mid))
    assert acks == [] and b.stats.in_flight == 3
    sink.confirm(2)
    assert acks == [1, 2] and b.stats.delivered == 2 and b.stats.in_flight == 1


def test_in_flight_bound_blocks_the_network_thread_until_kafka_confirms(monkeypatch):
    b, sink, acks = make_bridge(monkeypatch, 3)
    reader = threading.Thread(target=lambda: [b._on_message(None, None, message(m)) for m in range(1, 6)])
    reader.start()
    sink.wait_pending(3)
    reader.join(0.2)
    assert b.stats.received == 3 and b.stats.in_flight == 3 and reader.is_alive()  # the 4th waits for room
    sink.confirm(1)
    sink.wait_pending(3)  # the 4th got room and was sent
    reader.join(0.2)
    assert b.stats.received == 4 and reader.is_alive()
    sink.confirm(3)
    reader.join(2)
    assert not reader.is_alive() and b.stats.received == 5 and acks == [1, 2, 3, 4]
    assert b.stats.in_flight == 1


def test_a_failed_write_is_retried_and_never_acknowledged(monkeypatch):
    b, sink, acks = make_bridge(monkeypatch, 10)
    b._on_message(None, None, message(7))
    sink.confirm(1, RuntimeError("broker down"))
    assert acks == [] and b.stats.retries == 1 and b.stats.in_flight == 1
    sink.wait_pending(1)  # the retry timer sends it again
    sink.confirm(1)
    assert acks == [7] and b.stats.in_flight == 0


def test_stop_while_waiting_for_room_leaves_the_message_unacknowledged(monkeypatch):
    b, sink, acks = make_bridge(monkeypatch, 1)
    b._on_message(None, None, message(1))
    reader = threading.Thread(target=b._on_message, args=(None, None, message(2)))
    reader.start()
    with b._room:  # the reader is parked in the in-flight bound's wait
        assert b._room.wait_for(lambda: b.stats.received == 1, 2)
    reader.join(0.1)
    b.stop()
    reader.join(3)
    assert not reader.is_alive() and b.stats.received == 1 and acks == []


def test_a_dead_letter_always_fits_kafka():
    """Issue 11, item 5: a ~0.9 MB message (over the contract's 256 KiB, under Mosquitto's 1 MB) made a base64 dead
    letter of 1.2 MB, which Kafka refused for ever, so the bridge never acknowledged it and it blocked the others."""
    import base64
    import hashlib

    cfg = Config(privacy=PrivacyConfig(dlq_keep_payload=True))  # the payload is kept only on request
    huge = b'{"v":1,"vehicle":"' + b"X" * 900_000 + b'"}'
    out = bridge_mod.route(cfg, "ubi/v1/vehicles/VH00001/telemetry", huge, 1, 1, 1)
    assert out.dead_letter and out.reason == "oversize" and len(out.value) < 100_000
    body = json.loads(out.value)
    assert body["payload_size"] == len(huge) and body["payload_sha256"] == hashlib.sha256(huge).hexdigest()
    assert body["payload_truncated"] and huge.startswith(base64.b64decode(body["payload_b64"]))
    # a hostile vehicle field echoed in the detail, and a huge topic, are cut too
    small = json.dumps({"v": 1, "vehicle": "Y" * 200_000, "seq": 1, "t": 1, "event": "ignition_on"}).encode()
    out = bridge_mod.route(cfg, "ubi/v1/vehicles/VH00001/events", small, 1, 1, 1)
    assert out.reason == "vehicle_mismatch" and len(out.value) < 100_000
    out = bridge_mod.route(cfg, "ubi/v1/vehicles/" + "Z" * 60_000 + "/events", b"{}", 1, 1, 1)
    assert len(out.value) < 100_000 and len(out.key) <= 100


def test_qos_2_and_retained_publishes_are_dead_lettered():
    cfg = Config()
    body = json.dumps(
        {"v": 1, "vehicle": "VH00001", "seq": 1, "t": int(time.time() * 1000), "event": "ignition_on"}
    ).encode()
    topic = "ubi/v1/vehicles/VH00001/events"
    assert not bridge_mod.route(cfg, topic, body, int(time.time() * 1000), 1, 1).dead_letter
    assert bridge_mod.route(cfg, topic, body, 1, 1, 2).reason == "qos_not_allowed"
    assert bridge_mod.route(cfg, topic, body, 1, 1, 1, retain=True).reason == "retained"


def test_devices_are_acknowledged_end_to_end_only_for_what_kafka_confirmed(monkeypatch):
    """Issue 11: a PUBACK is not enough for a device to forget a message (a broker crash before its save loses it),
    so the bridge tells each device, on its own ack topic, which seqs Kafka confirmed, and which were rejected."""
    from ingest.contract import decode_ack

    b, sink, acks = make_bridge(monkeypatch, 10)
    published: list[tuple[str, bytes]] = []
    b.client = SimpleNamespace(
        ack=lambda mid, qos: acks.append(mid), publish=lambda t, p, qos: published.append((t, p))
    )
    for mid in (1, 2, 3):
        b._on_message(None, None, message(mid, "VH00001"))
    b._on_message(None, None, message(4, "VH00002"))
    bad = SimpleNamespace(
        topic="ubi/v1/vehicles/VH00002/events",
        payload=b'{"v":1,"vehicle":"VH00002","seq":5}',
        mid=5,
        qos=1,
        retain=False,
    )
    b._on_message(None, None, bad)
    assert b.publish_acks() == 0 and published == []  # nothing confirmed yet: nothing acknowledged
    sink.confirm(2)  # VH00001 seqs 1 and 2
    b.publish_acks()
    assert published == [("ubi/v1/vehicles/VH00001/ack", published[0][1])]
    assert decode_ack(published[0][1]) == ([(1, 2)], [])
    published.clear()
    sink.confirm(3)  # seq 3, VH00002's 4 and its dead-lettered 5
    b.publish_acks()
    got = {t: decode_ack(p) for t, p in published}
    assert got == {
        "ubi/v1/vehicles/VH00001/ack": ([(3, 3)], []),
        "ubi/v1/vehicles/VH00002/ack": ([(4, 4)], [(5, "missing_field")]),
    }
    assert b.publish_acks() == 0  # each seq is acknowledged once
