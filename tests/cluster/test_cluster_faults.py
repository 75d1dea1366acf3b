"""Faults a replicated cluster must survive (issue 16), each mid-stream on the real three-broker cluster: every true
trip stored exactly once and every premium equal to the clean run's (tests/cluster/harness.py).

Run with ``make test-cluster``; figures in the README ("Cluster fault tests").
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.cluster.harness import RESULTS
from ubi.adapters.kafka import admin_client
from ubi.adapters.topics import check
from ubi.ops import cluster as kc

pytestmark = pytest.mark.cluster


def _record(cluster, out) -> None:
    RESULTS.append(out.line(cluster.clean.seconds))
    assert out.ok(), out.line(cluster.clean.seconds)


def test_the_cluster_is_replicated_as_declared(healthy):
    """Three registered brokers, three voters, and the clean run's topics as declared: 3 copies, 2 in sync."""
    c = healthy
    RESULTS.append(c.clean.line(c.clean.seconds))
    admin = admin_client(c.cfg.kafka)
    try:
        brokers = admin.describe_cluster()["brokers"]
        assert sorted(b["broker_id"] for b in brokers) == [1, 2, 3]
        quorum = admin.describe_metadata_quorum()["topics"][0]["partitions"][0]
        assert sorted(v["replica_id"] for v in quorum["current_voters"]) == [1, 2, 3]
        declared, diffs = check(c.cfg, admin)
        assert diffs == [] and {s.replication for s in declared} == {3}
    finally:
        admin.close()
    for (_topic, _p), (_leader, replicas) in c.leaders([c.cfg.kafka.telemetry_topic]).items():
        assert sorted(replicas) == [1, 2, 3]


def _partition_leader_not_controller(c, cfg) -> kc.Node:
    controller = c.controller()
    led = {leader for (_t, _p), (leader, _r) in c.leaders([cfg.kafka.telemetry_topic, cfg.kafka.trips_topic]).items()}
    return c.node(next(n for n in sorted(led) if n != controller))


def test_a_broker_sigkilled_mid_stream(healthy):
    def fault(c, cfg, sup) -> str:
        victim = _partition_leader_not_controller(c, cfg)
        before = c.leaders([cfg.kafka.telemetry_topic])
        c.kill(victim)
        deadline = time.monotonic() + 60  # its partitions get new leaders among the two left
        while time.monotonic() < deadline:
            now = c.leaders([cfg.kafka.telemetry_topic])
            if all(leader not in (victim.node_id, -1) for leader, _r in now.values()):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"partitions still led by the dead node {victim.node_id}: {now}")
        moved = sum(1 for k, (leader, _r) in before.items() if leader == victim.node_id)
        return (
            f"node {victim.node_id} (leader of {moved} telemetry partitions, not the controller) SIGKILLed, "
            "left down for the rest of the run"
        )

    _record(healthy, healthy.run("broker SIGKILL", fault)[1])


def test_the_active_controller_sigkilled_mid_stream(healthy):
    def fault(c, cfg, sup) -> str:
        old = c.controller()
        c.kill(c.node(old))
        t0 = time.monotonic()
        deadline = t0 + 60
        while time.monotonic() < deadline:
            try:
                new = kc.quorum_leader(cfg.kafka)
            except Exception:  # noqa: BLE001 - no quorum leader yet
                new = None
            if new is not None and new != old:
                return (
                    f"active controller node {old} SIGKILLed (also a broker), node {new} leads the quorum "
                    f"{time.monotonic() - t0:.1f} s later; left down for the rest of the run"
                )
            time.sleep(0.2)
        raise AssertionError(f"no new active controller within 60 s after node {old} died")

    _record(healthy, healthy.run("controller SIGKILL", fault)[1])


def test_a_broker_restarted_mid_stream(healthy):
    def fault(c, cfg, sup) -> str:
        victim = _partition_leader_not_controller(c, cfg)
        t0 = time.monotonic()
        c.stop_node(victim)  # SIGTERM: a controlled shutdown
        stopped = time.monotonic() - t0
        kc.cluster_up(c.stack, 3)  # starts it again, waits until all three are registered
        return (
            f"node {victim.node_id} stopped (SIGTERM, {stopped:.1f} s) and started again "
            f"({time.monotonic() - t0:.1f} s in all)"
        )

    _record(healthy, healthy.run("broker restart", fault)[1])


def test_partition_leaders_moved_mid_stream(healthy):
    def fault(c, cfg, sup) -> str:
        from kafka import TopicPartition

        topics = [cfg.kafka.telemetry_topic, cfg.kafka.trips_topic]
        before = c.leaders(topics)
        # rotate every partition's replica list (same replicas, another preferred leader), then elect the preferred
        plan = {TopicPartition(t, p): r[1:] + r[:1] for (t, p), (_leader, r) in before.items()}
        admin = admin_client(cfg.kafka)
        try:
            admin.alter_partition_reassignments(plan)
            deadline = time.monotonic() + 60
            while admin.list_partition_reassignments() and time.monotonic() < deadline:
                time.sleep(0.2)
            admin.elect_leaders(0, {t: sorted(p for (tt, p) in before if tt == t) for t in topics})
        finally:
            admin.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            after = c.leaders(topics)
            if all(after[k][0] == after[k][1][0] != before[k][0] for k in before):
                return f"the leaders of all {len(before)} telemetry and trips partitions moved to another broker"
            time.sleep(0.5)
        raise AssertionError(f"leaders did not move: before {before}, after {after}")

    _record(healthy, healthy.run("leader move", fault)[1])


def _kill_one_of_two(*names: str):
    def fault(c, cfg, sup) -> str:
        killed = []
        for name in names:
            stage = next(s for s in sup.stages if s.name == name)
            stage.due_at = float("inf")  # not restarted: the other one must carry its share
            os.kill(stage.proc.proc.pid, signal.SIGKILL)
            killed.append(f"{name} {stage.args[-1]}")
        return f"SIGKILLed {' and '.join(killed)} of two (not restarted; the twin carries on)"

    return fault


@pytest.mark.parametrize(
    "names",
    [(), ("bridge",), ("score",), ("bridge", "score")],
    ids=["no-fault-control", "bridge", "scorer", "bridge+scorer"],
)
def test_one_stage_of_two_sigkilled(healthy, names):
    """Two bridges and two scorers; one of each kind (or none: the control, which tells apart what two of each do
    from what the kill does) SIGKILLed and not restarted."""
    fault = _kill_one_of_two(*names) if names else None
    label = f"{'+'.join(names)} SIGKILL" if names else "no fault"
    out = healthy.run(f"{label}, 2 bridges + 2 scorers", fault, bridges=2, scorers=2)[1]
    if not names:
        out.fault = "none (control)"
    assert out.restarts == {"bridge": 0, "score": 0, "store": 0}
    _record(healthy, out)


def test_topics_apply_raises_the_replication_factor(healthy):
    """A topic made with one copy on the cluster: check names it, apply reassigns it to three."""
    from dataclasses import replace

    from kafka.admin import NewTopic

    from ubi.adapters.kafka import drop_deployment
    from ubi.adapters.topics import apply

    c = healthy
    tag = uuid.uuid4().hex[:8]
    k = replace(c.cfg.kafka, telemetry_topic=f"rf.{tag}.telemetry", dead_letter_topic=f"rf.{tag}.dlq",
                trips_topic=f"rf.{tag}.trips", scorer_group=f"rf-{tag}-scorer")  # fmt: skip
    cfg = replace(c.cfg, kafka=k)
    admin = admin_client(k)
    try:
        admin.create_topics([NewTopic(k.trips_topic, k.partitions, 1)])
        _declared, diffs = check(cfg, admin)
        rf = [d for d in diffs if d.topic == k.trips_topic and d.kind == "replication"]
        assert [(d.want, d.have, d.fixable) for d in rf] == [(3, 1, True)]
        done, left = apply(cfg, admin)
        assert f"{k.trips_topic}: replicas reassigned to replication factor 3" in done and left == []
        for (_t, _p), (_leader, replicas) in c.leaders([k.trips_topic]).items():
            assert sorted(replicas) == [1, 2, 3]
    finally:
        admin.close()
        drop_deployment(k, timeout=30)
