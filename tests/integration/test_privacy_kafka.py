"""Privacy on the real Kafka (issue 13): retention set on new topics and on topics that predate it."""

from __future__ import annotations

import uuid
from dataclasses import replace

from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from ubi.adapters.kafka import admin_client, delete_topics, ensure_topics
from ubi.common.config import load_config


def _topic_conf(admin, topic: str) -> dict[str, str]:
    got = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)], config_filter="Dynamic")
    return {k: v["value"] for k, v in got["topic"][topic].items()}


def test_retention_applies_to_new_and_existing_topics(stack):
    cfg = load_config()
    tag = uuid.uuid4().hex[:8]
    k = replace(
        cfg.kafka,
        telemetry_topic=f"it.{tag}.telemetry",
        dead_letter_topic=f"it.{tag}.dlq",
        trips_topic=f"it.{tag}.trips",
        scorer_group=f"it-{tag}-scorer",
        store_group=f"it-{tag}-store",
        partitions=1,
    )
    admin = admin_client(k)
    try:
        # a telemetry topic from before: 7 days, and a setting of its own that must survive
        admin.create_topics(
            [
                NewTopic(
                    k.telemetry_topic, 1, 1, topic_configs={"retention.ms": "604800000", "max.message.bytes": "2000000"}
                )
            ]
        )
        ensure_topics(k)
        tel = _topic_conf(admin, k.telemetry_topic)
        assert tel["retention.ms"] == str(int(cfg.privacy.telemetry_retention_h * 3600 * 1000))
        assert int(tel["segment.ms"]) <= 3600 * 1000 and tel["max.message.bytes"] == "2000000"
        dlq = _topic_conf(admin, k.dead_letter_topic)  # created now
        assert dlq["retention.ms"] == str(int(cfg.privacy.dlq_retention_h * 3600 * 1000))
        assert _topic_conf(admin, k.scorer_state_topic)["cleanup.policy"] == "compact"
    finally:
        admin.close()
        delete_topics(k, [k.telemetry_topic, k.dead_letter_topic, k.trips_topic, k.scorer_state_topic])


def test_erase_end_to_end_and_a_kafka_replay_does_not_bring_it_back(env, stack):
    """A fleet through the real pipeline; one policy erased (DuckDB, the scorer's state topic, its MQTT
    credential); then a second store group replays the whole trips topic into the same file: everyone else's trips
    come back, none of the erased vehicle's."""
    import time

    from tests.integration.test_pipeline import wait_for_trips
    from ubi.adapters import duckdb_store as store
    from ubi.adapters import subject
    from ubi.adapters.kafka import read_compacted
    from ubi.adapters.privacy import pseudonym, pseudonym_key
    from ubi.common.config import load_config as load
    from ubi.ops.processes import start_stage
    from ubi.stages.store import read_status, status_path

    cfg = env.config
    stages = [
        env.start("bridge", "--client-id", f"it-{env.tag}-bridge"),
        env.start("score", "--client-id", "s1"),
        env.start("store", "--client-id", "st1"),
    ]
    from simulator.player import play_fleet

    spec = env.fleet(vehicles=3, days=2, seed=5)
    _sent, trips = play_fleet(cfg, spec, env.path / "sim", show=False)
    total = sum(map(len, trips.values()))
    assert wait_for_trips(cfg, total, stages) == total
    for s in stages:
        assert s.stop() == 0, s.log.read_text()[-2000:]

    con = store.connect(cfg.db_path)
    store.load_policies(con, env.path / "sim" / "policies.parquet")
    policy, vehicle = con.execute("SELECT policy_id, vehicle_id FROM policies ORDER BY 1 LIMIT 1").fetchone()
    mine = con.execute("SELECT count(*) FROM trips WHERE vehicle_id = ?", [vehicle]).fetchone()[0]
    assert mine > 0
    exported = subject.export(con, policy, cfg, enrolled=set(stack.credentials().users()))
    assert exported["device_credential"].startswith("enrolled")
    assert exported["scorer_state"] is not None and len(exported["tables"]["trips"]) == mine
    assert vehicle in stack.credentials().users()
    report = subject.erase(con, policy, "it", cfg, kafka=True, revoke=stack.revoke)
    con.close()
    assert report.kafka.startswith("cutter state tombstoned") and report.credentials == "MQTT credential revoked"
    assert vehicle not in stack.credentials().users()
    key = pseudonym_key(cfg)
    needles = [policy.encode(), vehicle.encode(), pseudonym(policy, key, "policy").encode()]
    for part in range(cfg.kafka.partitions):
        state = read_compacted(cfg.kafka, cfg.kafka.scorer_state_topic, part)
        assert not any(n in k or n in v for k, v in state.items() for n in needles)

    # replay every trip from Kafka into the same file with a fresh consumer group
    replay_toml = env.path / "replay.toml"
    replay_toml.write_text(
        (env.path / "ubi.toml")
        .read_text()
        .replace(f'store_group = "it-{env.tag}-store"', f'store_group = "it-{env.tag}-replay"')
    )
    rcfg = load(replay_toml)
    ensure_topics(rcfg.kafka)
    replay = start_stage(
        rcfg, "store", "--client-id", "st2", env={"UBI_CONFIG": str(replay_toml), "UBI_DB": str(cfg.db_path)}
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and read_status(status_path(rcfg)).get("written", 0) < total - mine:
            assert replay.proc.poll() is None, replay.log.read_text()[-2000:]
            time.sleep(0.3)
        time.sleep(2)  # let it poll past the erased vehicle's trips too
    finally:
        assert replay.stop() == 0, replay.log.read_text()[-2000:]
    con = store.connect(cfg.db_path, read_only=True)
    assert con.execute("SELECT count(*) FROM trips").fetchone()[0] == total - mine
    assert con.execute("SELECT count(*) FROM trips WHERE vehicle_id = ?", [vehicle]).fetchone()[0] == 0
    con.close()
    assert "refused" in replay.log.read_text()
