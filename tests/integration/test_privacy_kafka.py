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
