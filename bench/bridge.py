"""Bridge benchmark (not a test): QoS 1 throughput of `ubi bridge` against a bare paho subscriber that only
acknowledges, measured in the same run on the same broker; latency from device publish to Kafka at half the
bridge's maximum rate; memory under sustained overload.

    .venv/bin/ubi stack up
    .venv/bin/python bench/bridge.py [--messages 30000] [--batch-s 1] [--overload-s 300]

Method: both subscribers get a persistent session first, then the same N messages are queued for both by the
broker; each is then connected alone and timed until it has acknowledged (baseline) or delivered to Kafka
(bridge) all N. The bridge runs as its own process (`ubi bridge`), exactly as deployed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402
from kafka.admin import NewTopic  # noqa: E402

from ingest.contract import TelemetryBatch, encode_telemetry  # noqa: E402
from simulator.devices import DeviceFleet  # noqa: E402
from ubi.adapters.kafka import admin_client, auth, ensure_topics  # noqa: E402
from ubi.adapters.mqtt import drop_session, make_client  # noqa: E402
from ubi.common.config import load_config  # noqa: E402
from ubi.ops.processes import BRIDGE_READY  # noqa: E402
from ubi.ops.stack import Stack  # noqa: E402


def batch(vehicle: str, seq: int, t_ms: int, seconds: int) -> bytes:
    n = seconds
    t = t_ms - 1000 * np.arange(n)[::-1]
    z = np.zeros(n)
    m = 10 * n
    return encode_telemetry(
        TelemetryBatch(
            vehicle,
            seq,
            t_ms,
            t.astype(np.int64),
            z + 52.37,
            z + 4.89,
            z + 13.9,
            z + 90,
            z + 3,
            int(t[0]),
            10,
            np.zeros(m) + 0.1,
            np.zeros(m),
            np.zeros(m) + 9.81,
            None,
        )
    )


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def metrics(port: int) -> dict[str, float]:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            k, v = line.split()
            out[k] = float(v)
    return out


class Baseline:
    """A bare paho subscriber on the same shared subscription pattern; acknowledges each message on receipt."""

    def __init__(self, cfg, password: str, group: str, client_id: str) -> None:
        self.count = 0
        self.done = threading.Event()
        self.target = 0
        self.client, self.props = make_client(
            cfg.mqtt,
            client_id,
            cfg.mqtt.bridge_user,
            password,
            session_expiry_s=600,
            receive_maximum=cfg.ingest.max_in_flight,
        )
        self.topic = f"$share/{group}/{cfg.mqtt.topic_prefix}/+/telemetry"
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(self.topic, qos=1)
        self.client.on_message = self._on_message
        self.first = 0.0

    def _on_message(self, client, userdata, msg) -> None:
        if self.count == 0:
            self.first = time.perf_counter()
        self.count += 1
        if self.count >= self.target:
            self.done.set()

    def connect(self, cfg) -> None:
        self.client.connect(cfg.mqtt.host, cfg.mqtt.port, clean_start=False, properties=self.props)
        self.client.loop_start()

    def disconnect(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_bridge(toml: Path, client_id: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "UBI_CONFIG": str(toml)}
    log = Path(f"/tmp/{client_id}.log")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ubi.cli",
            "--log-level",
            "INFO",
            "bridge",
            "--client-id",
            client_id,
            "--metrics-port",
            str(port),
        ],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    proc.log = log  # type: ignore[attr-defined]
    return proc


def wait_subscribed(procs: list[subprocess.Popen], timeout: float = 60) -> None:
    """Until every bridge has its SUBACK (its log says so): a bridge stopped before it subscribed leaves no session
    to queue for, and the drain then waits for messages that went nowhere (the bench hung that way once bridge
    start-up grew past the second it used to wait)."""
    deadline = time.monotonic() + timeout
    for p in procs:
        while BRIDGE_READY not in p.log.read_text():  # type: ignore[attr-defined]
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bridge did not subscribe; log:\n{p.log.read_text()[-2000:]}")  # type: ignore[attr-defined]
            time.sleep(0.1)


def total(ports: list[int], key: str) -> float:
    return sum(metrics(p).get(key, 0) for p in ports)


def wait_metric(ports: list[int], key: str, value: float, timeout: float) -> tuple[float, float]:
    """Poll until the sum of metrics[key] over all bridges >= value; returns (first message seen, reached)."""
    first = 0.0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = time.perf_counter()
        if not first and total(ports, "ubi_bridge_received_total") > 0:
            first = now
        if total(ports, key) >= value:
            return first, now
        time.sleep(0.02)
    raise TimeoutError(f"{key} did not reach {value}")


def start_bridges(toml: Path, client_id: str, ports: list[int]) -> list[subprocess.Popen]:
    return [start_bridge(toml, f"{client_id}-{i}", p) for i, p in enumerate(ports)]


def stop_bridges(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=30000)
    ap.add_argument("--vehicles", type=int, default=50)
    ap.add_argument("--batch-s", type=int, default=1, help="seconds of samples per message")
    ap.add_argument("--latency-s", type=float, default=20)
    ap.add_argument("--overload-s", type=float, default=300)
    ap.add_argument("--metrics-port", type=int, default=19990)
    ap.add_argument("--bridges", type=int, default=1, help="bridge processes sharing the subscription")
    ap.add_argument(
        "--client",
        default="librdkafka",
        choices=["librdkafka", "kafka-python"],
        help="the bridge's Kafka client (KafkaConfig.bridge_client)",
    )
    args = ap.parse_args()

    tag = uuid.uuid4().hex[:6]
    toml = Path(f"/tmp/ubi-bench-{tag}.toml")
    toml.write_text(f"""
[kafka]
telemetry_topic = "bench.{tag}.telemetry"
dead_letter_topic = "bench.{tag}.dlq"
trips_topic = "bench.{tag}.trips"
bridge_client = "{args.client}"
[mqtt]
share_group = "bench-{tag}"
bridge_session_expiry_s = 600
""")
    cfg = load_config(toml)
    stack = Stack(cfg)
    admin = admin_client(cfg.kafka)
    admin.create_topics(
        [
            NewTopic(
                cfg.kafka.telemetry_topic,
                cfg.kafka.partitions,
                1,
                topic_configs={"message.timestamp.type": "LogAppendTime"},
            )
        ]
    )
    admin.close()
    ensure_topics(cfg.kafka)
    vehicles = [f"B{tag}{i:04d}" for i in range(args.vehicles)]
    passwords = stack.enrol(vehicles, settle_s=0.5)
    bridge_pw = stack.credentials().password(cfg.mqtt.bridge_user)
    bridge_id = f"bench-bridge-{tag}"
    samples_per_msg = args.batch_s * 11  # 1 Hz GPS + 10 Hz accelerometer

    # 1. persistent sessions for both subscribers
    base = Baseline(cfg, bridge_pw, f"bench-base-{tag}", f"bench-base-{tag}")
    base.connect(cfg)
    ports = [args.metrics_port + i for i in range(args.bridges)]
    brs = start_bridges(toml, bridge_id, ports)
    wait_subscribed(brs)
    for b in brs:  # SIGKILL: a bridge stopped cleanly ends its session and leaves the share group (by design),
        b.kill()  # so nothing would be queued for it
        b.wait()
    base.disconnect()

    # 2. queue N messages for both
    fleet = DeviceFleet(cfg.mqtt, passwords, window=200)
    now = int(time.time() * 1000)
    payloads = [
        (vehicles[i % len(vehicles)], batch(vehicles[i % len(vehicles)], i // len(vehicles), now, args.batch_s))
        for i in range(args.messages)
    ]
    t0 = time.perf_counter()
    for v, p in payloads:
        fleet.publish_raw(v, "telemetry", p)
    fleet.close()
    load_s = time.perf_counter() - t0
    print(
        f"queued {args.messages} messages of {len(payloads[0][1])} bytes ({args.batch_s}s batches) "
        f"in {load_s:.1f}s ({args.messages / load_s:,.0f} msg/s publish rate)"
    )

    # 3. baseline drain
    base.target = args.messages
    base.connect(cfg)
    base.done.wait(600)
    base_s = time.perf_counter() - base.first
    base.disconnect()
    drop_session(cfg.mqtt, f"bench-base-{tag}", cfg.mqtt.bridge_user, bridge_pw)
    base_rate = args.messages / base_s

    # 4. bridge drain
    brs = start_bridges(toml, bridge_id, ports)
    first, end = wait_metric(ports, "ubi_bridge_delivered_total", args.messages, 600)
    bridge_rate = args.messages / (end - first)
    print(f"baseline (bare paho subscriber, QoS 1 ack only): {base_rate:,.0f} msg/s")
    print(
        f"ubi bridge x{args.bridges} (validate + Kafka acks=all + ack): {bridge_rate:,.0f} msg/s, "
        f"{bridge_rate * samples_per_msg:,.0f} samples/s  = {bridge_rate / base_rate:.2f} x baseline"
    )

    # 5. latency at half the maximum rate: publish paced, read Kafka's log-append time
    rate = bridge_rate / 2
    n_lat = int(rate * args.latency_s)
    fleet = DeviceFleet(cfg.mqtt, passwords, window=200)
    sent_at: dict[tuple[str, int], float] = {}
    t_start = time.perf_counter()
    for i in range(n_lat):
        due = t_start + i / rate
        while time.perf_counter() < due:
            fleet.pump()
            time.sleep(0.0005)
        v = vehicles[i % len(vehicles)]
        seq = 10_000_000 + i
        sent_at[(v, seq)] = time.time() * 1000
        fleet.publish_raw(v, "telemetry", batch(v, seq, int(time.time() * 1000), args.batch_s))
    fleet.close()
    wait_metric(ports, "ubi_bridge_delivered_total", args.messages + n_lat, 120)
    consumer = KafkaConsumer(enable_auto_commit=False, **auth(cfg.kafka, "admin"))
    tps = [
        TopicPartition(cfg.kafka.telemetry_topic, p) for p in consumer.partitions_for_topic(cfg.kafka.telemetry_topic)
    ]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    lat = []
    while any(consumer.position(tp) < ends[tp] for tp in tps):
        for recs in consumer.poll(timeout_ms=1000).values():
            for r in recs:
                obj = json.loads(r.value)
                key = (obj["vehicle"], obj["seq"])
                if key in sent_at:
                    lat.append(r.timestamp - sent_at[key])
    consumer.close()
    lat.sort()
    p50 = statistics.median(lat)
    p99 = lat[int(0.99 * (len(lat) - 1))]
    print(f"latency publish -> Kafka at {rate:,.0f} msg/s ({len(lat)} msgs): p50 {p50:.1f} ms, p99 {p99:.1f} ms")

    # 6. overload: publish at 1.5x what the bridge sustains for overload_s; the backlog piles up in the broker's
    #    queue for the bridge's session (bounded by max_queued_messages), the bridge's own memory must stay flat
    if args.overload_s > 0:
        peak = sum(rss_mb(b.pid) for b in brs)
        start_rss = peak
        max_in_flight = 0.0
        stop = threading.Event()
        published = [0]
        flood_rate = 1.5 * bridge_rate

        def flood() -> None:
            f = DeviceFleet(cfg.mqtt, passwords, window=500)
            i = 0
            t0 = time.perf_counter()
            while not stop.is_set():
                if i > (time.perf_counter() - t0) * flood_rate:
                    f.pump()
                    time.sleep(0.001)
                    continue
                v = vehicles[i % len(vehicles)]
                f.publish_raw(v, "telemetry", payloads[i % len(payloads)][1])
                i += 1
                if i % 500 == 0:
                    while f.buffered() > 20_000 and not stop.is_set():
                        f.pump()
            f.close(timeout=600)
            published[0] = i

        th = threading.Thread(target=flood)
        th.start()
        t_end = time.monotonic() + args.overload_s
        delivered0 = total(ports, "ubi_bridge_delivered_total")
        while time.monotonic() < t_end:
            peak = max(peak, sum(rss_mb(b.pid) for b in brs))
            max_in_flight = max(max_in_flight, total(ports, "ubi_bridge_in_flight"))
            time.sleep(1.0)
        delivered = total(ports, "ubi_bridge_delivered_total") - delivered0
        stop.set()
        th.join()
        print(
            f"overload {args.overload_s:.0f}s at {flood_rate:,.0f} msg/s offered: published {published[0]:,}, "
            f"bridge delivered {delivered:,.0f} ({delivered / args.overload_s:,.0f} msg/s); bridge RSS start "
            f"{start_rss:.0f} MB, peak {peak:.0f} MB; max in flight {max_in_flight:.0f} "
            f"(bound {cfg.ingest.max_in_flight} per bridge)"
        )
    stop_bridges(brs)
    for i in range(args.bridges):
        drop_session(cfg.mqtt, f"{bridge_id}-{i}", cfg.mqtt.bridge_user, bridge_pw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
