"""Integration fixtures: the real Mosquitto and Kafka (started by `ubi stack up` if not running) and a
per-test configuration with its own topics, consumer groups and vehicle ids, so tests never see each other."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka.errors import KafkaError

from simulator.fleet import FleetSpec
from ubi.adapters.kafka import drop_deployment, ensure_topics
from ubi.adapters.mqtt import drop_session
from ubi.common.config import Config, load_config
from ubi.common.errors import StackError
from ubi.ops.processes import start_stage
from ubi.ops.stack import Stack


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Stack:
    s = Stack(load_config())
    s.up()
    return s


@pytest.fixture
def env(stack, tmp_path: Path):
    """A private configuration file (topics, groups, share group) and a DuckDB file for one test."""
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

[mqtt]
share_group = "it-{tag}"
bridge_session_expiry_s = 120
""")
    db = tmp_path / "it.duckdb"
    import os

    old = {k: os.environ.get(k) for k in ("UBI_CONFIG", "UBI_DB")}
    os.environ["UBI_CONFIG"], os.environ["UBI_DB"] = str(cfg_file), str(db)
    cfg = load_config(cfg_file)
    ensure_topics(cfg.kafka)
    procs = []

    class Env:
        config: Config = cfg
        tag_: str = tag
        path = tmp_path

        @staticmethod
        def start(name: str, *args: str):
            p = start_stage(cfg, name, *args, env={"UBI_CONFIG": str(cfg_file), "UBI_DB": str(db)})
            procs.append(p)
            return p

        @staticmethod
        def fleet(vehicles: int, days: int, seed: int) -> FleetSpec:
            today = datetime.now(timezone.utc).date()
            return FleetSpec(
                vehicles=vehicles, days=days, seed=seed, start=today - timedelta(days=days), id_prefix=f"T{tag}"
            )

    Env.tag = tag
    yield Env
    for p in procs:
        p.kill()
    # drop this test's MQTT sessions now: left to expire, they would queue every later test's traffic (the tests
    # share the topic prefix) and swell Mosquitto's persistence file
    bridge_pw = stack.credentials().password(cfg.mqtt.bridge_user)
    for client_id in (f"it-{tag}-bridge", f"it-{tag}-watch"):
        try:
            drop_session(cfg.mqtt, client_id, cfg.mqtt.bridge_user, bridge_pw)
        except OSError:
            pass  # the broker is down (a test stopped it): the session expires by itself
    try:  # this test's topics and the ACLs granted on them: otherwise they pile up run after run
        drop_deployment(cfg.kafka, timeout=10)
    except (KafkaError, OSError, StackError):
        pass  # Kafka is down (a test stopped it): left for the broker's next reset
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
