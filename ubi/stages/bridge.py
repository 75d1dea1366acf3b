"""The MQTT -> Kafka bridge: validate every message, forward it keyed by vehicle, ack only once Kafka has it.

Guarantees (see docs/device-contract.md):
- At-least-once: a device's QoS 1 message is acknowledged to the broker only after Kafka confirmed the record
  (to the telemetry topic, or to the dead-letter topic when invalid). Until then the broker keeps it in our
  persistent session and redelivers it after a crash.
- Nothing is treated as a duplicate here (not even the MQTT dup flag): repeats are removed downstream by seq.
- Bounded: at most ``max_in_flight`` messages wait for Kafka; beyond that we stop reading from the broker.
- Kafka down: records are retried with backoff and not acknowledged; the bridge resumes by itself.
- End to end: once Kafka confirmed a device's message, the bridge also tells the device, on its own
  ``<prefix>/<vehicle>/ack`` topic, that the seq is safe (``ingest.contract.encode_ack``; several a second at
  most, per device). A PUBACK alone is not enough for a device to forget a message: the broker keeps it in memory
  and a crash before its next save loses it. A device resends what was not acknowledged end to end.
- Scale-down: a bridge stopped cleanly unsubscribes and ends its session, so the broker no longer hands it a
  share of the messages; a crashed one keeps its share until its session expires (devices resend meanwhile).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ingest.contract import Valid, decode, encode_ack, parse_topic, peek_seq, topic_for
from ubi.adapters.kafka import RecordSink, make_sink
from ubi.adapters.metrics import bridge_registry, serve
from ubi.adapters.mqtt import make_client
from ubi.common.config import Config
from ubi.common.messages import DeviceEvent, Rejected, TelemetryBatch
from ubi.stages.quarantine import cut, dead_letter

log = logging.getLogger("ubi.bridge")

LATENCY_BUCKETS_MS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, float("inf"))


@dataclass
class BridgeStats:
    """Every message is in exactly one of: delivered, dead-lettered, in flight (received = sum of the three)."""

    received: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    retries: int = 0
    in_flight: int = 0
    e2e_acks: int = 0  # ack messages published to devices
    latency_counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))
    latency_sum_ms: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def observe_latency(self, ms: float) -> None:
        self.latency_counts[bisect_left(LATENCY_BUCKETS_MS, ms)] += 1  # the first bucket with ms <= bound
        self.latency_sum_ms += ms


class Outgoing(NamedTuple):
    """One Kafka record to write on behalf of one MQTT message (mid/qos identify the ack owed). A NamedTuple:
    immutable like a frozen dataclass, and four times cheaper to build on the bridge's per-message path."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    mid: int
    qos: int
    received_ms: int
    dead_letter: bool
    reason: str = ""
    vehicle: str = ""  # whose device to acknowledge end to end, and its seq (-1: none readable)
    seq: int = -1


def route(
    cfg: Config, mqtt_topic: str, payload: bytes, received_ms: int, mid: int, qos: int, retain: bool = False
) -> Outgoing:
    """Pure decision: where does this MQTT message go in Kafka, and with what key, value and headers."""
    parsed = parse_topic(cfg.mqtt.topic_prefix, mqtt_topic)
    if not parsed or parsed[1] == "status":
        decoded = Rejected("unknown_topic", mqtt_topic)
    elif qos == 2:  # the contract says QoS 1 (defensive: a QoS 1 subscription sees QoS 2 downgraded; see docs)
        decoded = Rejected("qos_not_allowed", "telemetry and events are published with QoS 1, not 2")
    elif retain:  # a retained sample would be handed to every later subscriber as if new (defensive, as above)
        decoded = Rejected("retained", "telemetry and events must not be retained")
    else:
        decoded = decode(parsed[0], parsed[1], payload, received_ms, cfg.ingest, build=False)
    vehicle = parsed[0] if parsed else "unknown"
    if isinstance(decoded, Rejected):
        # bounded whatever came in (payload cut to 64 KiB, with its size and SHA-256): always fits Kafka
        body = dead_letter(
            decoded.reason,
            decoded.detail,
            mqtt_topic,
            received_ms,
            payload,
            cfg.privacy.dlq_keep_payload,
            cfg.privacy.position_decimals,
        )
        seq = peek_seq(payload) if parsed and parsed[1] != "status" else None
        return Outgoing(
            cfg.kafka.dead_letter_topic,
            cut(vehicle, 64).encode(),
            body,
            [("reason", decoded.reason.encode())],
            mid,
            qos,
            received_ms,
            True,
            decoded.reason,
            parsed[0] if parsed else "",
            -1 if seq is None else seq,
        )
    headers = [
        ("mqtt_topic", mqtt_topic.encode()),
        ("kind", parsed[1].encode()),
        ("received_ms", str(received_ms).encode()),
        ("schema", b"1"),
    ]
    assert isinstance(decoded, (Valid, DeviceEvent, TelemetryBatch))
    seq = decoded.seq
    return Outgoing(
        cfg.kafka.telemetry_topic, vehicle.encode(), payload, headers, mid, qos, received_ms, False, "", vehicle, seq
    )


def serve_metrics(stats: BridgeStats, port: int) -> Any:
    """Expose the counters at http://127.0.0.1:<port>/metrics (prometheus_client, read under the stats lock at
    scrape time: nothing is added to the per-message path); a taken port only logs a warning."""
    return serve(bridge_registry(stats, LATENCY_BUCKETS_MS), port, what="bridge metrics")


class Bridge:
    def __init__(
        self, cfg: Config, password: str, client_id: str = "ubi-bridge-1", sink: RecordSink | None = None
    ) -> None:
        """``sink``: the Kafka writer (default: ``make_sink`` as the configuration says; a double in unit tests)."""
        self.cfg = cfg
        self.stats = BridgeStats()
        # in_flight <= max_in_flight, guarded by the stats lock (one lock per message and side, not two)
        self._room = threading.Condition(self.stats.lock)
        self._stop = threading.Event()
        self._retry_lock = threading.Lock()
        # seqs confirmed by Kafka and not yet acknowledged to their device: vehicle -> (acked, rejected)
        self._e2e: dict[str, tuple[list[int], list[tuple[int, str]]]] = {}
        self.producer: RecordSink = sink if sink is not None else make_sink(cfg.kafka, client_id=client_id)
        self.client, self._props = make_client(
            cfg.mqtt,
            client_id,
            cfg.mqtt.bridge_user,
            password,
            manual_ack=True,
            session_expiry_s=cfg.mqtt.bridge_session_expiry_s,
            receive_maximum=min(cfg.ingest.max_in_flight, 65535),
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect

    # --- MQTT side -----------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("mqtt connect refused: %s", reason_code)
            return
        # on every CONNACK, session present or not: Mosquitto 2.0.11 does not restore an offline session's shared
        # subscription after a broker restart (docs/architecture.md)
        client.subscribe([(t, 1) for t in self._topics()])
        log.info("connected to mqtt (session present=%s)", flags.session_present)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [rc for rc in reason_codes if rc.is_failure]
        if failed:
            log.error("subscription refused: %s", failed)
        else:
            log.info("subscribed to device topics")  # ubi.ops.processes.BRIDGE_READY: stages wait for this line

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if not self._stop.is_set():
            log.warning("mqtt disconnected: %s (paho reconnects)", reason_code)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self._stop.is_set():
            return  # not acknowledged: the broker redelivers it to our session after restart
        received_ms = int(time.time() * 1000)
        out = route(self.cfg, msg.topic, msg.payload, received_ms, msg.mid, msg.qos, bool(msg.retain))
        # Bound the backlog: block the network thread (the broker then holds further messages for us).
        with self._room:
            while self.stats.in_flight >= self.cfg.ingest.max_in_flight:
                if self._stop.is_set():
                    return
                self._room.wait(1.0)
            self.stats.received += 1
            self.stats.in_flight += 1
        self._send(out)

    # --- Kafka side ----------------------------------------------------------
    def _send(self, out: Outgoing) -> None:
        def done(exc: BaseException | None) -> None:
            if exc is None:
                self._delivered(out)
            else:
                self._retry(out, exc)

        try:
            self.producer.send(out.topic, out.key, out.value, out.headers, done)
        except Exception as exc:  # buffer full or producer closed: retry later, never ack
            self._retry(out, exc)

    def _delivered(self, out: Outgoing) -> None:
        if out.qos > 0:
            self.client.ack(out.mid, out.qos)
        latency = time.time() * 1000 - out.received_ms
        with self._room:
            if out.seq >= 0:
                acked, rejected = self._e2e.setdefault(out.vehicle, ([], []))
                if out.dead_letter:
                    rejected.append((out.seq, out.reason))
                else:
                    acked.append(out.seq)
            self.stats.in_flight -= 1
            if out.dead_letter:
                self.stats.dead_lettered += 1
                self.stats.reasons[out.reason] = self.stats.reasons.get(out.reason, 0) + 1
            else:
                self.stats.delivered += 1
            self.stats.observe_latency(latency)
            self._room.notify()

    def _retry(self, out: Outgoing, exc: BaseException) -> None:
        with self.stats.lock:
            self.stats.retries += 1
        log.warning("kafka write failed (%s); retrying, message not acknowledged", exc)
        timer = threading.Timer(1.0, self._send, args=(out,))
        timer.daemon = True
        timer.start()

    def publish_acks(self) -> int:
        """Tell each device which of its seqs Kafka has confirmed since the last call (QoS 1, not retained: a lost
        ack only makes the device resend, and repeats are removed downstream). Returns the acks published."""
        with self._room:
            pending, self._e2e = self._e2e, {}
        prefix = self.cfg.mqtt.topic_prefix
        for vehicle, (acked, rejected) in pending.items():
            self.client.publish(topic_for(prefix, vehicle, "ack"), encode_ack(acked, rejected), qos=1)
        with self.stats.lock:
            self.stats.e2e_acks += len(pending)
        return len(pending)

    # --- lifecycle -----------------------------------------------------------
    def run(self, install_signals: bool = True) -> BridgeStats:
        if install_signals:
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
            signal.signal(signal.SIGINT, lambda *_: self._stop.set())
        delay = 0.5
        while True:  # a broker that is down (restarting) is waited for, as paho does once connected
            try:
                self.client.connect(
                    self.cfg.mqtt.host,
                    self.cfg.mqtt.port,
                    self.cfg.mqtt.keepalive_s,
                    clean_start=False,
                    properties=self._props,
                )
                break
            except OSError as exc:
                log.warning("mqtt broker unreachable (%s); retrying in %.1f s", exc, delay)
                if self._stop.wait(delay):
                    return self.stats
                delay = min(delay * 2, 10.0)
        self.client.loop_start()
        metrics = serve_metrics(self.stats, self.cfg.ingest.metrics_port) if self.cfg.ingest.metrics_port else None
        last_report = time.monotonic()
        while not self._stop.wait(self.cfg.ingest.e2e_ack_interval_s):
            self.publish_acks()
            if time.monotonic() - last_report > 10:
                last_report = time.monotonic()
                s = self.stats
                log.info(
                    "received=%d delivered=%d dead_lettered=%d in_flight=%d",
                    s.received,
                    s.delivered,
                    s.dead_lettered,
                    s.in_flight,
                )
        try:
            return self.drain()
        finally:
            if metrics:
                metrics.shutdown()

    def stop(self) -> None:
        self._stop.set()

    def _topics(self) -> list[str]:
        group, prefix = self.cfg.mqtt.share_group, self.cfg.mqtt.topic_prefix
        return [f"$share/{group}/{prefix}/+/telemetry", f"$share/{group}/{prefix}/+/events"]

    def _leave(self) -> None:
        if self.client.is_connected():
            self.client.unsubscribe(self._topics())

    @staticmethod
    def _leave_props() -> Properties:
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        return props

    def drain(self, timeout: float = 30.0) -> BridgeStats:
        """Stop taking messages, wait for in-flight ones to be confirmed and acknowledged, then leave the share
        group and end the session (scale-down: the broker stops handing this bridge a share of the messages; what
        arrives while no bridge runs is refused with "no matching subscribers" and stays on the devices)."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        self.producer.flush(timeout)
        while self.stats.in_flight > 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.publish_acks()
        time.sleep(0.2)  # let the network thread write the last PUBACKs and acks
        self._leave()
        self.client.disconnect(reasoncode=None, properties=self._leave_props())
        self.client.loop_stop()
        self.producer.close(5)
        log.info(
            "bridge stopped: %s", {k: v for k, v in vars(self.stats).items() if k not in ("lock", "latency_counts")}
        )
        return self.stats
