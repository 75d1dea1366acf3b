"""Simulated on-board devices speaking the MQTT device contract, many from one thread.

Each vehicle is its own MQTT client with its own credential. One thread drives every client's network loop
(``loop(timeout=0)`` round-robin), so a fleet needs no thread per vehicle. A device keeps at most ``window``
unacknowledged messages; paho resends unacknowledged QoS 1 messages after a reconnect, so a broker restart
loses nothing the device sent.
"""

from __future__ import annotations

import heapq
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import paho.mqtt.client as mqtt

from ingest.contract import DeviceEvent, TelemetryBatch, encode_event, encode_telemetry, topic_for
from ingest.mqtt_io import make_client
from ubi.config import MqttConfig

log = logging.getLogger("ubi.devices")

Message = DeviceEvent | TelemetryBatch


def message_time(m: Message) -> int:
    return m.t_ms if isinstance(m, DeviceEvent) else int(m.sent_ms)


@dataclass
class Device:
    vehicle: str
    client: mqtt.Client
    unacked: set[int] = field(default_factory=set)
    sent: int = 0
    acked: int = 0


class DeviceFleet:
    def __init__(self, cfg: MqttConfig, credentials: dict[str, str], window: int = 50) -> None:
        self.cfg = cfg
        self.window = window
        self.devices: dict[str, Device] = {}
        for vehicle, password in credentials.items():
            client, props = make_client(cfg, f"dev-{vehicle}", vehicle, password)
            status = topic_for(cfg.topic_prefix, vehicle, "status")
            client.will_set(status, b"offline", qos=1, retain=True)
            dev = Device(vehicle, client)
            client.on_publish = self._on_publish_for(dev)
            client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, properties=props)
            self.devices[vehicle] = dev
        self._pump_until(lambda: all(d.client.is_connected() for d in self.devices.values()), 30, "connect")
        for dev in self.devices.values():
            self._publish(dev, topic_for(cfg.topic_prefix, dev.vehicle, "status"), b"online", retain=True)

    @staticmethod
    def _on_publish_for(dev: Device) -> Callable:
        def on_publish(client, userdata, mid, reason_code, properties):
            if mid in dev.unacked:
                dev.unacked.discard(mid)
                dev.acked += 1
        return on_publish

    def _pump(self) -> None:
        for dev in self.devices.values():
            dev.client.loop(timeout=0)

    def _pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"devices: {what} did not finish within {timeout}s")
            self._pump()
            time.sleep(0.001)

    def _publish(self, dev: Device, topic: str, payload: bytes, retain: bool = False) -> None:
        if len(dev.unacked) >= self.window:
            self._pump_until(lambda: len(dev.unacked) < self.window, 120, f"{dev.vehicle} window")
        info = dev.client.publish(topic, payload, qos=1, retain=retain)
        dev.unacked.add(info.mid)
        dev.sent += 1

    def publish_raw(self, vehicle: str, kind: str, payload: bytes) -> None:
        """Publish pre-encoded bytes as ``vehicle`` on its ``kind`` topic (benchmarks, bad-input tests)."""
        self._publish(self.devices[vehicle], topic_for(self.cfg.topic_prefix, vehicle, kind), payload)

    def pump(self) -> None:
        """Let every client's network loop run once (call while pacing)."""
        self._pump()

    def send(self, m: Message) -> None:
        dev = self.devices[m.vehicle]
        if isinstance(m, DeviceEvent):
            self._publish(dev, topic_for(self.cfg.topic_prefix, m.vehicle, "events"), encode_event(m))
        else:
            self._publish(dev, topic_for(self.cfg.topic_prefix, m.vehicle, "telemetry"), encode_telemetry(m))

    def play(self, streams: dict[str, Iterator[Message]], speedup: float = 0.0,
             progress: Callable[[int], None] | None = None) -> int:
        """Send every vehicle's messages in device-time order across the fleet.

        ``speedup`` > 0 paces sending on an accelerated clock (3600 = an hour a second); 0 sends as fast as the
        broker acknowledges.
        """
        heap: list[tuple[int, str, Message, Iterator[Message]]] = []
        for vehicle, it in streams.items():
            first = next(it, None)
            if first is not None:
                heapq.heappush(heap, (message_time(first), vehicle, first, it))
        sent = 0
        t0_dev = heap[0][0] if heap else 0
        t0_wall = time.monotonic()
        while heap:
            t, vehicle, m, it = heapq.heappop(heap)
            if speedup > 0:
                wait = (t - t0_dev) / 1000.0 / speedup - (time.monotonic() - t0_wall)
                if wait > 0:
                    time.sleep(min(wait, 1.0))
            self.send(m)
            sent += 1
            if sent % 200 == 0:
                self._pump()
                if progress:
                    progress(sent)
            nxt = next(it, None)
            if nxt is not None:
                heapq.heappush(heap, (message_time(nxt), vehicle, nxt, it))
        if progress:
            progress(sent)
        return sent

    def close(self, timeout: float = 120) -> None:
        """Wait for every message to be acknowledged by the broker, announce offline, disconnect."""
        self._pump_until(lambda: all(not d.unacked for d in self.devices.values()), timeout, "final acks")
        for dev in self.devices.values():
            self._publish(dev, topic_for(self.cfg.topic_prefix, dev.vehicle, "status"), b"offline", retain=True)
        self._pump_until(lambda: all(not d.unacked for d in self.devices.values()), timeout, "status acks")
        for dev in self.devices.values():
            dev.client.disconnect()
            dev.client.loop(timeout=0)
