"""Read a whole topic back from the real Kafka (test helper)."""

from __future__ import annotations

import json
from dataclasses import replace

from kafka import KafkaConsumer, TopicPartition

from ubi.adapters.kafka import auth
from ubi.common.config import load_config


def read_topic(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list:
    """Read as the admin principal (Kafka refuses unauthenticated clients)."""
    kafka = replace(load_config().kafka, bootstrap=bootstrap)
    c = KafkaConsumer(enable_auto_commit=False, consumer_timeout_ms=int(timeout_s * 1000), **auth(kafka, "admin"))
    tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
    c.assign(tps)
    c.seek_to_beginning(*tps)
    end = c.end_offsets(tps)
    out = []
    while any(c.position(tp) < end[tp] for tp in tps):
        batch = c.poll(timeout_ms=1000)
        for recs in batch.values():
            out.extend(recs)
    c.close()
    return out


def seqs_by_vehicle(records) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in records:
        obj = json.loads(r.value)
        out.setdefault(obj["vehicle"], []).append(obj["seq"])
    return out
