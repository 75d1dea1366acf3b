"""Small device streams for the stage unit tests: ignition trips and motion-cut trips, as the bridge writes them."""

from __future__ import annotations

import numpy as np

from ingest.contract import encode_event, encode_telemetry, topic_for
from tests.doubles import KafkaLog
from ubi.common.config import Config
from ubi.common.messages import DeviceEvent, TelemetryBatch

T0 = 1_790_000_000_000


def batch(vehicle, seq, t0_s, n=10, speed=10.0, gps=True):
    t = T0 + (np.arange(n) + t0_s) * 1000
    z = np.zeros(n)
    g = slice(None) if gps else slice(0, 0)
    x = np.cumsum(z + speed) * 1e-5
    return TelemetryBatch(
        vehicle,
        seq,
        int(t[-1]),
        t[g].astype(np.int64),
        (z + 52)[g],
        (4 + x)[g],
        (z + speed)[g],
        (z + 90)[g],
        (z + 3)[g],
        int(t[0]),
        10,
        np.zeros(n * 10),
        np.zeros(n * 10),
        np.zeros(n * 10) + 9.8,
        None,
    )


def event(vehicle, seq, t_s, kind):
    return DeviceEvent(vehicle, seq, T0 + t_s * 1000, kind)


def ignition_stream(vehicle: str, trips: int, first_s: int = 0, seq0: int = 0, batches: int = 4) -> list:
    out, seq, t = [], seq0, first_s
    for _ in range(trips):
        out.append(event(vehicle, seq, t, "ignition_on"))
        seq += 1
        for _ in range(batches):
            out.append(batch(vehicle, seq, t))
            seq += 1
            t += 10
        out.append(event(vehicle, seq, t, "ignition_off"))
        seq += 1
        t += 600
    return out


def motion_stream(vehicle: str, trips: int, first_s: int = 0) -> list:
    """Moving 120 s, then parked 250 s (a fix a second), per trip: cut by motion."""
    out, seq, t = [], 0, first_s
    for _ in range(trips):
        for _ in range(12):
            out.append(batch(vehicle, seq, t, speed=12.0))
            seq += 1
            t += 10
        for _ in range(25):
            out.append(batch(vehicle, seq, t, speed=0.0))
            seq += 1
            t += 10
    return out


def message_time(m) -> int:
    return m.t_ms if isinstance(m, DeviceEvent) else int(m.sent_ms)


def publish(log: KafkaLog, cfg: Config, streams: list[list], rx_delay_ms: int = 500) -> None:
    """Interleave the streams by device time and write them to the telemetry topic as the bridge does."""
    items = sorted((m for s in streams for m in s), key=lambda m: (message_time(m), m.vehicle, m.seq))
    for m in items:
        kind, payload = encode_message(m)
        write_raw(log, cfg, m.vehicle, kind, payload, message_time(m) + rx_delay_ms)


def encode_message(m) -> tuple[str, bytes]:
    """The topic kind and the payload, as a device sends them."""
    if isinstance(m, DeviceEvent):
        return "events", encode_event(m)
    return "telemetry", encode_telemetry(m)


def write_raw(log: KafkaLog, cfg: Config, vehicle: str, kind: str, payload: bytes, rx: int) -> None:
    topic = topic_for(cfg.mqtt.topic_prefix, vehicle, kind)
    log.append(
        cfg.kafka.telemetry_topic,
        vehicle.encode(),
        payload,
        [("mqtt_topic", topic.encode()), ("kind", kind.encode()), ("received_ms", str(rx).encode()), ("schema", b"1")],
    )
