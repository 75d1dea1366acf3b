"""Scorer benchmark (not a test): how many one-second telemetry messages (1 Hz GPS + 10 Hz accelerometer) one
`ubi score` process sustains from Kafka, against a bare kafka-python consumer that only reads the same topic,
measured in the same run; then the delay from a trip's end (its ignition_off published) to its row in DuckDB
with bridge, scorer and store running live.

    .venv/bin/ubi stack up
    .venv/bin/python bench/scorer.py [--vehicles 40] [--days 2] [--scale 1,2,4] [--no-live]

``--scale``: the same loaded topic scored again by 1, 2, 4 ... `ubi score` processes in one consumer group (a new
group, trips topic and state topic for each count). Their rate is taken over the window in which the group is
stable with every member assigned (from then until the last trip is out), so start-up and joins are left out; the
messages in that window are counted by the trips it produced (n_msgs x trips / all trips).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from kafka import KafkaConsumer, TopicPartition  # noqa: E402

from ingest.contract import DeviceEvent, encode_event, encode_telemetry  # noqa: E402
from simulator.fleet import FleetSpec, make_trips, vehicle_ids  # noqa: E402
from simulator.player import play_fleet  # noqa: E402
from simulator.run import vehicle_stream  # noqa: E402
from ubi.adapters import duckdb_store as store  # noqa: E402
from ubi.adapters.kafka import auth, ensure_topics, make_producer  # noqa: E402
from ubi.common.config import load_config  # noqa: E402


def topic_size(bootstrap: str, topic: str) -> int:
    c = KafkaConsumer(**auth(replace(load_config().kafka, bootstrap=bootstrap), "admin"))
    tps = [TopicPartition(topic, p) for p in c.partitions_for_topic(topic) or []]
    n = sum(c.end_offsets(tps).values()) if tps else 0
    c.close()
    return n


def read_all(bootstrap: str, topic: str, expected: int) -> float:
    """Baseline: a consumer that only reads (no decoding) every record; returns seconds."""
    c = KafkaConsumer(
        topic,
        **auth(replace(load_config().kafka, bootstrap=bootstrap), "admin"),
        group_id=f"bench-read-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_poll_records=2000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
    )
    n = 0
    t0 = None
    while n < expected:
        batch = c.poll(timeout_ms=1000)
        if batch and t0 is None:
            t0 = time.perf_counter()
        n += sum(len(v) for v in batch.values())
    dt = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return dt


def group_stable(cfg, members: int) -> bool:
    """Whether the scorer group is Stable with ``members`` members (each then holds partitions: 6 >= 4)."""
    from ubi.adapters.kafka import admin_client

    admin = admin_client(cfg.kafka)
    try:
        g = admin.describe_groups([cfg.kafka.scorer_group])[cfg.kafka.scorer_group]
        return g["group_state"] == "Stable" and len(g["members"]) == members
    finally:
        admin.close()


def scale(tag: str, base_toml: str, n_msgs: int, n_trips: int, counts: list[int]) -> None:
    """The loaded telemetry scored by N processes of one group, for each N in ``counts``."""
    rates: dict[int, float] = {}
    print("| scorer processes | telemetry partitions each | msg/s in the stable window | x one process | load avg |")
    print("|---|---|---|---|---|")
    for n in counts:
        toml = Path(f"/tmp/ubi-bench-scorer-{tag}-n{n}.toml")
        toml.write_text(
            base_toml.replace(f'trips_topic = "bench.{tag}.trips"', f'trips_topic = "bench.{tag}.trips.n{n}"').replace(
                f'scorer_group = "bench-{tag}-scorer"', f'scorer_group = "bench-{tag}-scorer-n{n}"'
            )
            + "scorer_metrics_port = 0\n"
        )
        cfg = load_config(toml)
        ensure_topics(cfg.kafka)
        env = {**os.environ, "UBI_CONFIG": str(toml), "UBI_DB": f"/tmp/ubi-bench-scorer-{tag}-n{n}.duckdb"}
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "ubi.cli", "--log-level", "WARNING", "score", "--client-id", f"s{n}-{i}"],
                env=env,
                cwd=ROOT,
            )
            for i in range(n)
        ]
        try:
            while not group_stable(cfg, n):
                if any(p.poll() is not None for p in procs):
                    raise SystemExit("a scorer died")
                time.sleep(0.1)
            t0, done0 = time.perf_counter(), topic_size(cfg.kafka.bootstrap, cfg.kafka.trips_topic)
            while topic_size(cfg.kafka.bootstrap, cfg.kafka.trips_topic) < n_trips:
                time.sleep(0.05)
            dt = time.perf_counter() - t0
            load = os.getloadavg()[0]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait()
        if done0 > n_trips // 2:
            print(f"| {n} | - | group joined after {done0} of {n_trips} trips: too few left to measure | - | - |")
            continue
        rates[n] = n_msgs * (n_trips - done0) / n_trips / dt
        parts = cfg.kafka.partitions
        each = f"{parts // n}-{-(-parts // n)}" if parts % n else str(parts // n)
        ratio = f"{rates[n] / rates[counts[0]]:.2f}" if counts[0] in rates else "-"
        print(f"| {n} | {each} | {rates[n]:,.0f} | {ratio} | {load:.1f} |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vehicles", type=int, default=40)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--live-vehicles", type=int, default=10)
    ap.add_argument("--speedup", type=float, default=1800.0, help="live phase clock: 1800 = a day in 48 s")
    ap.add_argument("--scale", default="", help="also score with these process counts, e.g. 1,2,4")
    ap.add_argument("--no-live", action="store_true", help="skip the live delay phase")
    args = ap.parse_args()
    tag = uuid.uuid4().hex[:6]
    toml = Path(f"/tmp/ubi-bench-scorer-{tag}.toml")
    base_toml = f"""
[kafka]
telemetry_topic = "bench.{tag}.telemetry"
dead_letter_topic = "bench.{tag}.dlq"
trips_topic = "bench.{tag}.trips"
scorer_group = "bench-{tag}-scorer"
store_group = "bench-{tag}-store"
[mqtt]
share_group = "bench-{tag}"
bridge_session_expiry_s = 300
[ingest]
metrics_port = 0
"""
    toml.write_text(base_toml)
    cfg = load_config(toml)
    ensure_topics(cfg.kafka)
    env = {**os.environ, "UBI_CONFIG": str(toml), "UBI_DB": f"/tmp/ubi-bench-scorer-{tag}.duckdb"}

    # 1. load one-second messages straight into Kafka, as the bridge would have written them
    spec = FleetSpec(
        vehicles=args.vehicles,
        days=args.days,
        seed=8,
        start=date.today() - timedelta(days=args.days),
        batch_s=1,
        id_prefix=f"S{tag}",
    )
    producer = make_producer(cfg.kafka, "bench-loader", user="bridge", linger_ms=20)
    n_msgs = n_trips = n_samples = 0
    now = str(int(time.time() * 1000)).encode()
    t0 = time.perf_counter()
    for v in vehicle_ids(spec.vehicles, spec.id_prefix):
        trips = make_trips(spec, v)
        n_trips += len(trips)
        for m in vehicle_stream(spec, trips):
            kind = "events" if isinstance(m, DeviceEvent) else "telemetry"
            payload = encode_event(m) if kind == "events" else encode_telemetry(m)
            if kind == "telemetry":
                n_samples += m.gps_t.shape[0] + m.acc_lon.shape[0]
            producer.send(
                cfg.kafka.telemetry_topic,
                key=v.encode(),
                value=payload,
                headers=[
                    ("mqtt_topic", f"{cfg.mqtt.topic_prefix}/{v}/{kind}".encode()),
                    ("kind", kind.encode()),
                    ("received_ms", now),
                    ("schema", b"1"),
                ],
            )
            n_msgs += 1
    producer.flush()
    print(f"loaded {n_msgs:,} messages ({n_samples:,} samples, {n_trips} trips) in {time.perf_counter() - t0:.0f}s")

    # 2. baseline: read only
    base_s = read_all(cfg.kafka.bootstrap, cfg.kafka.telemetry_topic, n_msgs)
    # 3. one scorer process, timed from its first trip out to its last (start-up and group join excluded;
    #    the first trip closes within seconds of stream time, so little of the stream precedes it)
    proc = subprocess.Popen([sys.executable, "-m", "ubi.cli", "--log-level", "WARNING", "score"], env=env, cwd=ROOT)
    while topic_size(cfg.kafka.bootstrap, cfg.kafka.trips_topic) == 0:
        time.sleep(0.02)
        if proc.poll() is not None:
            raise SystemExit("scorer died")
    t_start = time.perf_counter()
    while topic_size(cfg.kafka.bootstrap, cfg.kafka.trips_topic) < n_trips:
        time.sleep(0.05)
    score_s = time.perf_counter() - t_start
    n_scored = n_msgs * (n_trips - 1) / n_trips  # messages after the first trip, approximately
    proc.terminate()
    proc.wait()
    print(f"baseline (kafka-python consumer, read only): {n_msgs / base_s:,.0f} msg/s")
    rate = n_scored / score_s
    print(
        f"ubi score, one process (decode, validate, cut, score, publish): {rate:,.0f} msg/s, "
        f"{rate * n_samples / n_msgs:,.0f} samples/s = {rate / (n_msgs / base_s):.2f} x baseline"
    )

    if args.scale:
        scale(tag, base_toml, n_msgs, n_trips, [int(x) for x in args.scale.split(",")])
    if args.no_live:
        return 0
    # 4. live: bridge + scorer + store; delay from ignition_off published to the trip's row in DuckDB
    procs = [
        subprocess.Popen([sys.executable, "-m", "ubi.cli", "--log-level", "WARNING", name], env=env, cwd=ROOT)
        for name in ("bridge", "score", "store")
    ]
    time.sleep(3)
    live = FleetSpec(
        vehicles=args.live_vehicles, days=1, seed=9, start=date.today() - timedelta(days=1), id_prefix=f"L{tag}"
    )
    off_wall: dict[tuple[str, int], float] = {}
    import simulator.devices as devices

    original = devices.DeviceFleet.send

    def send(self, m):
        original(self, m)
        if isinstance(m, DeviceEvent) and m.event == "ignition_off":
            off_wall[(m.vehicle, m.t_ms)] = time.time()

    devices.DeviceFleet.send = send
    _, trips = play_fleet(cfg, live, Path(f"/tmp/ubi-bench-scorer-{tag}"), speedup=args.speedup, show=False)
    expected = sum(map(len, trips.values()))
    time.sleep(5)
    for p in reversed(procs):
        p.terminate()
        p.wait()
    con = store.connect(env["UBI_DB"], read_only=True)  # encrypted: the project's one way in
    rows = con.execute(
        "SELECT vehicle_id, end_ms_dev, epoch_ms(stored_at) FROM (SELECT vehicle_id, "
        "epoch_ms(end_ts) AS end_ms_dev, stored_at FROM trips)"
    ).fetchall()
    delays = sorted(stored / 1000.0 - off_wall[(v, end)] for v, end, stored in rows if (v, end) in off_wall)
    print(
        f"live ({args.live_vehicles} vehicles at {args.speedup:.0f}x real time): {len(delays)}/{expected} trips; "
        f"trip end -> DuckDB row p50 {np.median(delays):.2f}s, p99 {np.percentile(delays, 99):.2f}s, "
        f"max {max(delays):.2f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
