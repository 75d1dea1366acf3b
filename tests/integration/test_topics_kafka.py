"""`ubi topics check|apply` against the real Kafka (one broker or the cluster, whichever the stack runs)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace

from kafka.admin import NewTopic

from ubi.adapters import topics
from ubi.adapters.kafka import admin_client, drop_deployment
from ubi.common.config import PROJECT_ROOT, load_config


def test_check_names_each_difference_and_apply_fixes_what_kafka_allows(stack, tmp_path):
    tag = uuid.uuid4().hex[:8]
    cfg_file = tmp_path / "ubi.toml"
    cfg_file.write_text(f"""
[kafka]
telemetry_topic = "it.{tag}.telemetry"
dead_letter_topic = "it.{tag}.dlq"
trips_topic = "it.{tag}.trips"
scorer_group = "it-{tag}-scorer"
store_group = "it-{tag}-store"
partitions = 3
""")
    cfg = load_config(cfg_file)
    k = cfg.kafka
    rf = k.replication_factor
    env = {**os.environ, "UBI_CONFIG": str(cfg_file)}

    def cli(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "ubi.cli.main", "topics", action], capture_output=True, text=True, env=env,
            cwd=PROJECT_ROOT, timeout=180,
        )  # fmt: skip

    admin = admin_client(k)
    try:
        # made by hand, not from the declaration: too few partitions and a week of raw telemetry; too many trips
        # partitions (which Kafka cannot lower); the DLQ and the state topic missing
        admin.create_topics(
            [
                NewTopic(k.telemetry_topic, 1, rf, topic_configs={"retention.ms": "604800000"}),
                NewTopic(k.trips_topic, 5, rf),
            ]
        )
        _declared, diffs = topics.check(cfg, admin)
        kinds = {(d.topic, d.kind) for d in diffs}
        assert {
            (k.telemetry_topic, "partitions"),
            (k.telemetry_topic, "config"),
            (k.dead_letter_topic, "missing"),
            (k.scorer_state_topic, "missing"),
            (k.trips_topic, "partitions"),
        } <= kinds
        retention = next(d for d in diffs if d.topic == k.telemetry_topic and d.key == "retention.ms")
        assert retention.have == "604800000" and retention.want == str(
            int(cfg.privacy.telemetry_retention_h * 3600_000)
        )

        checked = cli("check")
        assert checked.returncode == 1, checked.stderr
        assert f"{k.dead_letter_topic}" in checked.stdout and "missing" in checked.stdout
        assert "retention.ms=604800000, declared" in checked.stdout
        assert "cannot lower" in checked.stdout

        applied = cli("apply")
        assert applied.returncode == 1, applied.stderr  # the trips topic's 5 partitions remain
        assert f"applied: {k.dead_letter_topic}: created" in applied.stdout
        assert f"applied: {k.telemetry_topic}: partitions raised to 3" in applied.stdout
        _declared, left = topics.check(cfg, admin)
        assert [(d.topic, d.kind, d.fixable) for d in left] == [(k.trips_topic, "partitions", False)]
        described = topics.describe(admin, [k.telemetry_topic, k.scorer_state_topic])
        assert described[k.telemetry_topic].partitions == 3 and described[k.telemetry_topic].replication == rf
        assert described[k.scorer_state_topic].configs["cleanup.policy"] == "compact"

        # once the trips topic is as declared, check passes and says so
        admin.delete_topics([k.trips_topic])
        drop_deadline = time.monotonic() + 30
        while k.trips_topic in set(admin.list_topics()) and time.monotonic() < drop_deadline:
            time.sleep(0.2)
        assert cli("apply").returncode == 0
        final = cli("check")
        assert final.returncode == 0, final.stdout
        assert "0 difference(s)" in final.stdout
    finally:
        admin.close()
        drop_deployment(replace(k), timeout=10)
