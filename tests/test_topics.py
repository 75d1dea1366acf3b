"""The one topic declaration (ubi/adapters/topics.py) and its comparison with a cluster, without a broker."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ubi.adapters.topics import TopicState, _replicas_for, declared_topics, diff
from ubi.common.config import Config, KafkaConfig
from ubi.common.errors import ConfigError

ONE = Config()
THREE = replace(ONE, kafka=replace(ONE.kafka, bootstrap="127.0.0.1:9092,127.0.0.1:9095,127.0.0.1:9098"))


def as_declared(cfg: Config) -> dict[str, TopicState]:
    return {s.name: TopicState(s.partitions, s.replication, dict(s.configs)) for s in declared_topics(cfg)}


def test_declaration_covers_every_topic_with_retention_and_compaction():
    specs = {s.name: s for s in declared_topics(ONE)}
    k, p = ONE.kafka, ONE.privacy
    assert set(specs) == {k.telemetry_topic, k.dead_letter_topic, k.trips_topic, k.scorer_state_topic}
    assert specs[k.telemetry_topic].configs["retention.ms"] == str(int(p.telemetry_retention_h * 3600_000))
    assert specs[k.dead_letter_topic].configs["retention.ms"] == str(int(p.dlq_retention_h * 3600_000))
    assert specs[k.scorer_state_topic].configs["cleanup.policy"] == "compact"
    # the scorer reads a vehicle's state from the partition numbered like its telemetry partition
    assert specs[k.telemetry_topic].partitions == specs[k.scorer_state_topic].partitions == k.partitions
    # one broker: one copy, no min.insync.replicas of our own (the broker's 1)
    assert all(s.replication == 1 and "min.insync.replicas" not in s.configs for s in specs.values())


def test_three_brokers_declare_three_copies_and_two_in_sync():
    for s in declared_topics(THREE):
        assert s.replication == 3 and s.configs["min.insync.replicas"] == "2"
    five = KafkaConfig(bootstrap=",".join(f"h:{9092 + 3 * i}" for i in range(5)))
    assert (five.replication_factor, five.min_insync_replicas) == (3, 2)


def test_bad_bootstrap_lists_are_refused():
    for bad in ("127.0.0.1", "127.0.0.1:9092,", "h:x", ":9092"):
        with pytest.raises(ConfigError, match="not host:port"):
            KafkaConfig(bootstrap=bad)


def test_a_cluster_as_declared_has_no_differences():
    assert diff(declared_topics(THREE), as_declared(THREE)) == []


def test_each_kind_of_difference_is_named_and_marked_fixable_or_not():
    declared = declared_topics(THREE)
    k = THREE.kafka
    actual = as_declared(THREE)
    del actual[k.dead_letter_topic]
    actual[k.telemetry_topic] = replace(actual[k.telemetry_topic], partitions=3)
    actual[k.trips_topic] = replace(actual[k.trips_topic], partitions=12, replication=1)
    state = actual[k.scorer_state_topic]
    actual[k.scorer_state_topic] = replace(state, configs={**state.configs, "cleanup.policy": "delete"})
    got = {(d.topic, d.kind): d for d in diff(declared, actual)}
    assert set(got) == {
        (k.dead_letter_topic, "missing"),
        (k.telemetry_topic, "partitions"),
        (k.trips_topic, "partitions"),
        (k.trips_topic, "replication"),
        (k.scorer_state_topic, "config"),
    }
    assert got[(k.telemetry_topic, "partitions")].fixable  # partitions can be added
    lower = got[(k.trips_topic, "partitions")]
    assert not lower.fixable and "cannot lower" in lower.text  # never removed
    assert (lower.want, lower.have) == (k.partitions, 12)
    rf = got[(k.trips_topic, "replication")]
    assert (rf.want, rf.have, rf.fixable) == (3, 1, True)
    conf = got[(k.scorer_state_topic, "config")]
    assert (conf.key, conf.want, conf.have) == ("cleanup.policy", "compact", "delete")


def test_a_setting_the_cluster_does_not_report_counts_as_different():
    k = THREE.kafka
    actual = as_declared(THREE)
    actual[k.trips_topic] = replace(actual[k.trips_topic], configs={})
    got = [d for d in diff(declared_topics(THREE), actual) if d.topic == k.trips_topic]
    assert {d.key for d in got} == set(next(s for s in declared_topics(THREE) if s.name == k.trips_topic).configs)
    assert all(d.have is None for d in got)


@pytest.mark.parametrize("partition", range(6))
def test_replica_lists_grow_on_distinct_live_brokers_and_keep_the_leader(partition):
    grown = _replicas_for([2], 3, [1, 2, 3], partition)
    assert grown[0] == 2 and sorted(grown) == [1, 2, 3]
    assert _replicas_for([3, 1, 2], 1, [1, 2, 3], partition) == [3]
