"""Simulated on-board devices speaking the MQTT device contract, many from one thread.

Each vehicle is its own MQTT client with its own credential. One thread drives every client's network I/O
through one epoll selector (paho's external-loop callbacks), so a fleet of thousands needs neither a thread
per vehicle nor ``select()``'s 1024-descriptor limit.

Store-and-forward, as a real device does it: every message first goes to the device's own buffer (bounded;
overflow drops the oldest and is counted). While connected, up to ``window`` messages are handed to MQTT and
wait for their PUBACK; a message leaves the device only when acknowledged. When the broker is unreachable the
device keeps buffering, reconnects with back-off, and paho resends the unacknowledged ones first, so order is
kept and nothing acknowledged-by-nobody is lost.

With ``e2e=True`` (the device contract's end-to-end acknowledgement) a PUBACK is not the end: the message waits
until the bridge says on the device's ack topic that Kafka has its seq. A broker that crashed after its PUBACK but
before saving or delivering it would otherwise lose it. What is not acknowledged end to end is resent after a
reconnect and after ``resend_s``; repeats are removed downstream by seq.
"""

from __future__ import annotations

import heapq
import logging
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable, Iterator

import paho.mqtt.client as mqtt

from ingest.contract import (
    DeviceEvent,
    TelemetryBatch,
    decode_ack,
    encode_event,
    encode_telemetry,
    max_packet_bytes,
    peek_seq,
    topic_for,
)
from ubi.adapters.mqtt import make_client
from ubi.common.config import IngestConfig, MqttConfig

log = logging.getLogger("ubi.devices")

Message = DeviceEvent | TelemetryBatch


def message_time(m: Message) -> int:
    return m.t_ms if isinstance(m, DeviceEvent) else int(m.sent_ms)


@dataclass
class Device:
    vehicle: str
    client: mqtt.Client
    props: object
    buffer: deque = field(default_factory=deque)  # (topic, payload, retain, seq) not yet handed to MQTT
    unacked: dict[int, tuple] = field(default_factory=dict)  # mid -> message, waiting for its PUBACK
    awaiting: dict[int, tuple[tuple, float]] = field(default_factory=dict)  # seq -> (message, PUBACK time)
    sent: int = 0
    acked: int = 0
    confirmed: int = 0  # acknowledged end to end (safe in Kafka)
    rejected: int = 0  # refused by the platform (dead-lettered), told end to end
    resent: int = 0
    oversize: int = 0  # messages dropped before sending: over the broker's packet limit
    dropped: int = 0
    down: bool = False  # the connection was lost (not merely waiting for a CONNACK)
    next_reconnect: float = 0.0
    backoff: float = 0.2


class DeviceFleet:
    def __init__(
        self,
        cfg: MqttConfig,
        credentials: dict[str, str],
        window: int = 50,
        max_buffer: int = 200_000,
        e2e: bool = False,
        resend_s: float = 30.0,
        max_packet: int = max_packet_bytes(IngestConfig()),
    ) -> None:
        self.cfg = cfg
        self.max_packet = max_packet
        self.e2e = e2e
        self.resend_s = resend_s
        self.window = window
        self.max_buffer = max_buffer
        self.devices: dict[str, Device] = {}
        self._sel = selectors.DefaultSelector()
        self._last_misc = 0.0
        for vehicle, password in credentials.items():
            client, props = make_client(cfg, f"dev-{vehicle}", vehicle, password)
            client.will_set(topic_for(cfg.topic_prefix, vehicle, "status"), b"offline", qos=1, retain=True)
            client.max_queued_messages_set(0)
            dev = Device(vehicle, client, props)
            client.on_publish = self._on_publish_for(dev)
            client.on_connect = self._on_connect_for(dev)
            client.on_disconnect = self._on_disconnect_for(dev)
            client.on_message = self._on_ack_for(dev)
            self._attach_selector(dev)
            try:
                client.connect(cfg.host, cfg.port, keepalive=cfg.keepalive_s, properties=props)
            except OSError:  # the broker is down (restarting): keep buffering, reconnect with back-off
                dev.down, dev.next_reconnect = True, time.monotonic() + dev.backoff
            self.devices[vehicle] = dev
        self._pump_until(lambda: all(d.client.is_connected() for d in self.devices.values()), 30, "connect")

    def _on_publish_for(self, dev: Device) -> Callable:
        def on_publish(client, userdata, mid, reason_code, properties):
            msg = dev.unacked.pop(mid, None)
            if msg is not None:
                dev.acked += 1
                if self.e2e and msg[3] is not None:
                    dev.awaiting[msg[3]] = (msg, time.monotonic())

        return on_publish

    def _on_connect_for(self, dev: Device) -> Callable:
        def on_connect(client, userdata, flags, reason_code, properties):
            if reason_code.is_failure:
                dev.down = True
            else:
                dev.backoff = 0.2
                status = topic_for(self.cfg.topic_prefix, dev.vehicle, "status")
                if self.e2e:
                    client.subscribe(topic_for(self.cfg.topic_prefix, dev.vehicle, "ack"), qos=1)
                    self._resend(dev, lambda sent_at: True)  # a new connection: the broker may have lost them
                dev.buffer.appendleft((status, b"online", True, None))

        return on_connect

    @staticmethod
    def _on_ack_for(dev: Device) -> Callable:
        def on_message(client, userdata, msg):
            try:
                ranges, rejected = decode_ack(msg.payload)
            except (ValueError, TypeError):
                log.warning("%s: unreadable ack ignored: %r", dev.vehicle, msg.payload[:100])
                return
            for lo, hi in ranges:  # walk the shorter of the range and what is awaited
                seqs = range(lo, hi + 1) if hi - lo < len(dev.awaiting) else [s for s in dev.awaiting if lo <= s <= hi]
                for seq in seqs:
                    if dev.awaiting.pop(seq, None) is not None:
                        dev.confirmed += 1
            for seq, reason in rejected:
                if dev.awaiting.pop(seq, None) is not None:
                    dev.rejected += 1
                    log.warning("%s: seq %d rejected by the platform: %s", dev.vehicle, seq, reason)

        return on_message

    @staticmethod
    def _resend(dev: Device, due: Callable[[float], bool]) -> None:
        """Put messages not acknowledged end to end back at the front of the buffer, in seq order."""
        again = sorted((seq for seq, (_, at) in dev.awaiting.items() if due(at)), reverse=True)
        for seq in again:
            dev.buffer.appendleft(dev.awaiting.pop(seq)[0])
        dev.resent += len(again)

    @staticmethod
    def _on_disconnect_for(dev: Device) -> Callable:
        def on_disconnect(client, userdata, flags, reason_code, properties):
            dev.down = True
            dev.next_reconnect = time.monotonic() + dev.backoff
            dev.backoff = min(dev.backoff * 2, 5.0)

        return on_disconnect

    # --- network loop ----------------------------------------------------------
    def _attach_selector(self, dev: Device) -> None:
        """paho tells us when its socket opens, closes, or has bytes to write; the selector watches them."""
        sel = self._sel

        def opened(client, userdata, sock):
            sel.register(sock, selectors.EVENT_READ, dev)

        def closed(client, userdata, sock):
            try:
                sel.unregister(sock)
            except (KeyError, ValueError):
                pass

        def want_write(client, userdata, sock):
            try:
                sel.modify(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, dev)
            except (KeyError, ValueError):
                pass

        def written(client, userdata, sock):
            try:
                sel.modify(sock, selectors.EVENT_READ, dev)
            except (KeyError, ValueError):
                pass

        dev.client.on_socket_open = opened
        dev.client.on_socket_close = closed
        dev.client.on_socket_register_write = want_write
        dev.client.on_socket_unregister_write = written

    def _io(self, timeout: float = 0.0) -> None:
        for key, mask in self._sel.select(timeout):
            client = key.data.client
            if mask & selectors.EVENT_READ:
                client.loop_read()
            if mask & selectors.EVENT_WRITE:
                client.loop_write()
        now = time.monotonic()
        if now - self._last_misc >= 1.0:  # keep-alive pings and dead-connection detection
            self._last_misc = now
            for dev in self.devices.values():
                dev.client.loop_misc()
                if self.e2e and dev.awaiting:
                    self._resend(dev, lambda at: now - at > self.resend_s)

    def _service(self, dev: Device) -> None:
        client = dev.client
        if not client.is_connected():
            if dev.down and time.monotonic() >= dev.next_reconnect:
                dev.next_reconnect = time.monotonic() + dev.backoff
                dev.backoff = min(dev.backoff * 2, 5.0)
                try:
                    client.reconnect()
                    dev.down = False
                except OSError:
                    pass
            return
        while dev.buffer and len(dev.unacked) < self.window:
            msg = dev.buffer.popleft()
            info = client.publish(msg[0], msg[1], qos=1, retain=msg[2])
            dev.unacked[info.mid] = msg
            dev.sent += 1

    def pump(self) -> None:
        """One round of network I/O for the whole fleet: send, receive acks, reconnect."""
        for dev in self.devices.values():
            if dev.buffer or not dev.client.is_connected():
                self._service(dev)
        self._io()

    def _pump_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"devices: {what} did not finish within {timeout}s")
            self.pump()
            time.sleep(0.001)

    # --- sending -----------------------------------------------------------------
    def _enqueue(self, dev: Device, topic: str, payload: bytes, retain: bool = False, seq: int | None = None) -> None:
        if len(payload) + len(topic) + 16 > self.max_packet:
            # the broker would disconnect us for it at every reconnect: a device drops it, and counts it
            dev.oversize += 1
            log.warning("%s: message of %d bytes dropped: over the broker's packet limit", dev.vehicle, len(payload))
            return
        if len(dev.buffer) >= self.max_buffer:
            dev.buffer.popleft()
            dev.dropped += 1
        dev.buffer.append((topic, payload, retain, seq))
        if len(dev.buffer) > self.window:
            self._service(dev)
            self._io()

    def buffered(self) -> int:
        return sum(len(d.buffer) + len(d.unacked) + len(d.awaiting) for d in self.devices.values())

    def publish_raw(self, vehicle: str, kind: str, payload: bytes) -> None:
        """Publish pre-encoded bytes as ``vehicle`` on its ``kind`` topic (benchmarks, bad-input tests)."""
        seq = peek_seq(payload) if kind != "status" else None
        self._enqueue(self.devices[vehicle], topic_for(self.cfg.topic_prefix, vehicle, kind), payload, seq=seq)

    def send(self, m: Message) -> None:
        dev = self.devices[m.vehicle]
        if isinstance(m, DeviceEvent):
            self._enqueue(dev, topic_for(self.cfg.topic_prefix, m.vehicle, "events"), encode_event(m), seq=m.seq)
        else:
            topic = topic_for(self.cfg.topic_prefix, m.vehicle, "telemetry")
            self._enqueue(dev, topic, encode_telemetry(m), seq=int(m.seq))

    def play(
        self,
        streams: dict[str, Iterator[Message]],
        speedup: float = 0.0,
        progress: Callable[[int], None] | None = None,
        max_pending: int = 5000,
    ) -> int:
        """Send every vehicle's messages in device-time order across the fleet.

        ``speedup`` > 0 paces sending on an accelerated clock (3600 = an hour a second); 0 sends as fast as the
        broker acknowledges, keeping at most ``max_pending`` messages buffered across the fleet while connected.
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
                while (wait := (t - t0_dev) / 1000.0 / speedup - (time.monotonic() - t0_wall)) > 0:
                    self.pump()
                    time.sleep(min(wait, 0.01))
            self.send(m)
            sent += 1
            if sent % 100 == 0:
                self.pump()
                while self.buffered() > max_pending and all(d.client.is_connected() for d in self.devices.values()):
                    self.pump()
                    time.sleep(0.0005)
                if progress:
                    progress(sent)
            nxt = next(it, None)
            if nxt is not None:
                heapq.heappush(heap, (message_time(nxt), vehicle, nxt, it))
        if progress:
            progress(sent)
        return sent

    def flush(self, timeout: float = 120) -> None:
        """Wait until every buffered message has been acknowledged by the broker (and, with ``e2e``, end to end)."""
        self._pump_until(lambda: self.buffered() == 0, timeout, "flush")

    def wait_broker(self, timeout: float = 120) -> None:
        """Wait until the broker has PUBACKed everything buffered (with ``e2e``, the messages then wait for their
        end-to-end ack)."""
        self._pump_until(lambda: not any(d.buffer or d.unacked for d in self.devices.values()), timeout, "PUBACKs")

    def unconfirmed(self) -> int:
        return sum(len(d.awaiting) for d in self.devices.values())

    def close(self, timeout: float = 120) -> int:
        """Flush, announce offline, disconnect. Returns how many messages were never acknowledged end to end
        (0 without ``e2e``); they are logged, since a real device would keep them for its next connection."""
        try:
            self.flush(timeout)
        except TimeoutError:
            if not self.e2e or any(d.buffer or d.unacked for d in self.devices.values()):
                raise
        lost = self.unconfirmed()
        if lost:
            log.warning(
                "devices: %d messages not acknowledged end to end within %.0f s (is a bridge running?)", lost, timeout
            )
            for dev in self.devices.values():
                dev.awaiting.clear()
        for dev in self.devices.values():
            self._enqueue(dev, topic_for(self.cfg.topic_prefix, dev.vehicle, "status"), b"offline", retain=True)
        self.flush(timeout)
        for dev in self.devices.values():
            dev.client.disconnect()
        self._io(0.1)
        self._sel.close()
        dropped = sum(d.dropped for d in self.devices.values())
        if dropped:
            log.warning("devices dropped %d messages on buffer overflow", dropped)
        return lost
