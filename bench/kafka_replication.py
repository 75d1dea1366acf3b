"""What replication costs a producer (not a test): the bridge's producer settings (librdkafka, idempotent,
acks=all) writing the same records to a topic with one copy and to one with three copies (min.insync.replicas 2),
on the same three-broker cluster in the same run, in alternating rounds so that the shared machine's load hits both.

    .venv/bin/ubi stack up --brokers 3
    .venv/bin/python bench/kafka_replication.py [--records 100000] [--rounds 3]

Prints records/s and the delivery latency (send to the broker's acknowledgement) per replication factor, and the
ratio. Figures in docs/capacity.md ("Kafka").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import Producer  # noqa: E402

from ubi.adapters.kafka import admin_client, rdkafka_auth  # noqa: E402
from ubi.common.config import load_config  # noqa: E402


def one_round(cfg, topic: str, records: int, payload: bytes) -> tuple[float, list[float]]:
    """Send ``records`` records keyed by 500 vehicles; (records/s until all acknowledged, latencies in ms)."""
    p = Producer(
        {
            **rdkafka_auth(cfg.kafka, "admin"),
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    lat: list[float] = []
    failed: list[object] = []
    t_start = time.perf_counter()
    for i in range(records):
        t0 = time.perf_counter()

        def cb(err, msg, t0=t0) -> None:
            if err is not None:
                failed.append(err)
            else:
                lat.append((time.perf_counter() - t0) * 1000)

        while True:
            try:
                p.produce(topic, key=f"V{i % 500:05d}".encode(), value=payload, on_delivery=cb)
                break
            except BufferError:
                p.poll(0.01)
        p.poll(0)
    left = p.flush(120)
    elapsed = time.perf_counter() - t_start
    if failed or left:
        raise SystemExit(f"{topic}: {len(failed)} records failed ({failed[:1]}), {left} not delivered")
    return records / elapsed, lat


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--partitions", type=int, default=6)
    args = ap.parse_args(argv)
    cfg = load_config()
    brokers = len(cfg.kafka.addresses)
    if brokers < 3:
        raise SystemExit(f"kafka.bootstrap names {brokers} broker(s): start the cluster (`ubi stack up --brokers 3`)")
    from kafka.admin import NewTopic

    tag = uuid.uuid4().hex[:6]
    topics = {1: f"bench.{tag}.rf1", 3: f"bench.{tag}.rf3"}
    admin = admin_client(cfg.kafka)
    admin.create_topics(
        [
            NewTopic(topics[1], args.partitions, 1, topic_configs={"min.insync.replicas": "1"}),
            NewTopic(topics[3], args.partitions, 3, topic_configs={"min.insync.replicas": "2"}),
        ]
    )
    time.sleep(2)
    payload = b"x" * 349  # a one-second telemetry message's size (README "Ingest")
    rates: dict[int, list[float]] = {1: [], 3: []}
    lats: dict[int, list[float]] = {1: [], 3: []}
    try:
        for r in range(args.rounds):
            for rf in (1, 3) if r % 2 == 0 else (3, 1):
                rate, lat = one_round(cfg, topics[rf], args.records, payload)
                rates[rf].append(rate)
                lats[rf] += lat
                print(f"round {r + 1} RF {rf}: {rate:,.0f} records/s", flush=True)
    finally:
        admin.delete_topics(list(topics.values()))
        admin.close()
    for rf in (1, 3):
        q = statistics.quantiles(lats[rf], n=100)
        print(
            f"RF {rf}: median {statistics.median(rates[rf]):,.0f} records/s over {args.rounds} rounds of "
            f"{args.records:,}; delivery latency p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms"
        )
    print(f"RF 3 / RF 1 throughput: {statistics.median(rates[3]) / statistics.median(rates[1]):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
