"""The cluster's node layout and how a home's clients come to name every broker (no broker needed)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest

from ubi.common.config import Config, load_config
from ubi.common.errors import StackError
from ubi.ops.cluster import nodes


def cfg_with(bootstrap: str, home: Path = Path("/tmp/h")) -> Config:
    c = Config()
    return replace(c, home=home, kafka=replace(c.kafka, bootstrap=bootstrap))


def test_nodes_follow_the_first_port_in_steps_of_three():
    got = nodes(cfg_with("127.0.0.1:9092"), 3)
    assert [(n.node_id, n.port, n.controller_port, n.internal_port) for n in got] == [
        (1, 9092, 9093, 9094),
        (2, 9095, 9096, 9097),
        (3, 9098, 9099, 9100),
    ]
    assert got[2].dir == Path("/tmp/h/kafka-cluster/node3")


def test_a_bootstrap_list_naming_every_broker_is_used_as_it_is():
    got = nodes(cfg_with("127.0.0.1:9300,127.0.0.1:9400,127.0.0.1:9500"), 3)
    assert [n.port for n in got] == [9300, 9400, 9500]


@pytest.mark.parametrize(
    "bootstrap, brokers, why",
    [
        ("127.0.0.1:9092", 2, "at least 3"),
        ("127.0.0.1:9092,127.0.0.1:9095", 3, "names 2 brokers"),
        ("127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9098", 3, "+1 and +2 free"),
    ],
)
def test_impossible_layouts_are_refused(bootstrap, brokers, why):
    with pytest.raises(StackError, match=re.escape(why)):
        nodes(cfg_with(bootstrap), brokers)


def test_a_home_running_a_cluster_gives_its_clients_every_broker(tmp_path, monkeypatch):
    for k in ("UBI_CONFIG", "UBI_KAFKA_BOOTSTRAP", "UBI_DB"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("UBI_HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # no ./ubi.toml
    assert load_config().kafka.bootstrap == "127.0.0.1:9092"
    (tmp_path / "kafka-cluster").mkdir()
    listed = "127.0.0.1:9092,127.0.0.1:9095,127.0.0.1:9098"
    (tmp_path / "kafka-cluster" / "bootstrap").write_text(listed + "\n")
    cfg = load_config()
    assert cfg.kafka.bootstrap == listed and cfg.kafka.replication_factor == 3
    # a configuration pointing elsewhere is not rewritten
    monkeypatch.setenv("UBI_KAFKA_BOOTSTRAP", "10.0.0.5:9092")
    assert load_config().kafka.bootstrap == "10.0.0.5:9092"
