"""The platform's Kafka topics, declared once, and how a running cluster differs from the declaration.

``declared_topics`` is the one declaration: every topic with its partitions, replication factor and settings
(retention of raw telemetry, trips and dead letters from ``[privacy]``, compaction of the scorer's state topic,
``min.insync.replicas`` on a replicated cluster). ``ensure_topics`` (``ubi stack up``) creates what is missing from
it; ``ubi topics check`` compares a cluster with it and ``ubi topics apply`` changes what Kafka lets us change.

``diff`` is pure (declaration and observed state in, differences out), so the comparison is tested without a broker.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ubi.common.config import Config

# All four topics get kafka.partitions: the telemetry topic and the scorer's state topic must keep the same count,
# since the scorer reads a vehicle's state from the state partition numbered like its telemetry partition
# (ubi/stages/score.py, load_partition).


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int
    configs: dict[str, str]
    purpose: str


@dataclass(frozen=True)
class TopicState:
    """A topic as the cluster reports it: ``replication`` is the fewest replicas any of its partitions has."""

    partitions: int
    replication: int
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Difference:
    topic: str
    kind: str  # missing | partitions | replication | config
    want: object
    have: object
    fixable: bool  # can `ubi topics apply` change it without losing data?
    text: str
    key: str = ""  # the setting's name, for kind "config"


def declared_topics(cfg: Config) -> list[TopicSpec]:
    """Every topic of this configuration, as it should be."""
    from ubi.adapters.privacy import topic_configs

    k = cfg.kafka
    retention = topic_configs(cfg)  # refuses a telemetry retention shorter than a trip may stay open
    rf = k.replication_factor
    extra = {"min.insync.replicas": str(k.min_insync_replicas)} if rf > 1 else {}
    purposes = {
        k.telemetry_topic: "raw telemetry from the bridge (exact positions: kept only while the scorer may need it)",
        k.dead_letter_topic: "dead letters of the bridge and the scorer's quarantine",
        k.trips_topic: "scored trips for the store (no coordinates)",
        k.scorer_state_topic: "the scorer group's trip-cutter state, one record per vehicle (compacted)",
    }
    return [
        TopicSpec(name, k.partitions, rf, {**retention[name], **extra}, purposes[name])
        for name in (k.telemetry_topic, k.dead_letter_topic, k.trips_topic, k.scorer_state_topic)
    ]


def diff(declared: list[TopicSpec], actual: dict[str, TopicState]) -> list[Difference]:
    """What differs between the declaration and the cluster, topic by topic (an empty list: all as declared)."""
    out: list[Difference] = []
    for spec in declared:
        have = actual.get(spec.name)
        if have is None:
            out.append(
                Difference(
                    spec.name, "missing", spec.partitions, None, True,
                    f"missing (declared: {spec.partitions} partitions, replication factor {spec.replication})",
                )
            )  # fmt: skip
            continue
        if have.partitions < spec.partitions:
            out.append(
                Difference(
                    spec.name, "partitions", spec.partitions, have.partitions, True,
                    f"{have.partitions} partitions, declared {spec.partitions} (apply adds partitions; a vehicle's "
                    "records move to another partition from then on)",
                )
            )  # fmt: skip
        elif have.partitions > spec.partitions:
            out.append(
                Difference(
                    spec.name, "partitions", spec.partitions, have.partitions, False,
                    f"{have.partitions} partitions, declared {spec.partitions}: Kafka cannot lower a topic's "
                    "partitions; declare the larger count or recreate the topic (its records are lost)",
                )
            )  # fmt: skip
        if have.replication != spec.replication:
            out.append(
                Difference(
                    spec.name, "replication", spec.replication, have.replication, True,
                    f"replication factor {have.replication}, declared {spec.replication} (apply reassigns replicas)",
                )
            )  # fmt: skip
        for key, want in sorted(spec.configs.items()):
            got = have.configs.get(key)
            if got != want:
                out.append(Difference(spec.name, "config", want, got, True, f"{key}={got}, declared {want}", key))
    return out


def describe(admin, names: list[str]) -> dict[str, TopicState]:
    """The declared topics as the cluster has them now (absent ones left out)."""
    from kafka.admin import ConfigResource, ConfigResourceType

    present = [n for n in names if n in set(admin.list_topics())]
    if not present:
        return {}
    meta = {t["name"]: t for t in admin.describe_topics(present)}
    configs = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, t) for t in present], config_filter="All"
    ).get("topic", {})
    out = {}
    for name in present:
        parts = meta.get(name, {}).get("partitions", [])
        out[name] = TopicState(
            partitions=len(parts),
            replication=min((len(p["replica_nodes"]) for p in parts), default=0),
            configs={k: v.get("value") for k, v in configs.get(name, {}).items()},
        )
    return out


def check(cfg: Config, admin) -> tuple[list[TopicSpec], list[Difference]]:
    declared = declared_topics(cfg)
    return declared, diff(declared, describe(admin, [s.name for s in declared]))


def _replicas_for(current: list[int], want: int, brokers: list[int], partition: int) -> list[int]:
    """A partition's replica list grown or shrunk to ``want``: current replicas kept in order (the leader first),
    new ones taken round-robin from the brokers (spread by partition number)."""
    if want <= len(current):
        return current[:want]
    spare = [b for b in brokers[partition % len(brokers) :] + brokers[: partition % len(brokers)] if b not in current]
    return current + spare[: want - len(current)]


def apply(cfg: Config, admin, timeout: float = 60.0) -> tuple[list[str], list[Difference]]:
    """Change what differs and Kafka can change: create missing topics, add partitions, reassign replicas, set
    settings. Returns what was done and what is left (differences apply cannot fix, or that did not take)."""
    from kafka import TopicPartition
    from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

    declared, diffs = check(cfg, admin)
    specs = {s.name: s for s in declared}
    done: list[str] = []
    missing = [specs[d.topic] for d in diffs if d.kind == "missing"]
    if missing:
        admin.create_topics([NewTopic(s.name, s.partitions, s.replication, topic_configs=s.configs) for s in missing])
        done += [f"{s.name}: created ({s.partitions} partitions, replication factor {s.replication})" for s in missing]
    grow = {d.topic: d.want for d in diffs if d.kind == "partitions" and d.fixable}
    if grow:
        admin.create_partitions(grow)
        done += [f"{t}: partitions raised to {n}" for t, n in grow.items()]
    reassign_topics = [d.topic for d in diffs if d.kind == "replication"]
    if reassign_topics:
        brokers = sorted(b["broker_id"] for b in admin.describe_cluster()["brokers"] if not b.get("is_fenced"))
        if len(brokers) < max(specs[t].replication for t in reassign_topics):
            done.append(f"replication not changed: only {len(brokers)} broker(s) registered")
        else:
            plan = {}
            for t in admin.describe_topics(reassign_topics):
                for p in t["partitions"]:
                    i = p["partition_index"]
                    plan[TopicPartition(t["name"], i)] = _replicas_for(
                        list(p["replica_nodes"]), specs[t["name"]].replication, brokers, i
                    )
            admin.alter_partition_reassignments(plan)
            _wait_reassigned(admin, timeout)
            done += [f"{t}: replicas reassigned to replication factor {specs[t].replication}" for t in reassign_topics]
    settings: dict[str, dict[str, str]] = {}
    for d in diffs:
        if d.kind == "config":
            settings.setdefault(d.topic, {})[d.key] = str(d.want)
    if settings:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, t, configs=c) for t, c in settings.items()])
        done += [f"{t}: set {', '.join(f'{k}={v}' for k, v in c.items())}" for t, c in settings.items()]
    deadline = time.monotonic() + timeout
    while True:  # new topics and settings reach every broker's metadata a moment later
        _declared, left = check(cfg, admin)
        if not any(d.fixable for d in left) or time.monotonic() > deadline:
            return done, left
        time.sleep(0.5)


def _wait_reassigned(admin, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while admin.list_partition_reassignments() and time.monotonic() < deadline:
        time.sleep(0.5)
