"""Cluster fault tests (issue 16): a real three-broker KRaft cluster, Mosquitto, the stages and the simulator's
ground truth. Slow (minutes), so they run only when asked for: ``make test-cluster`` (``pytest -m cluster
tests/cluster``); the default test command deselects them.

They start their own brokers under their own home (``UBI_CLUSTER_HOME``, default /tmp/ubi-cluster-tests) on their
own ports (``UBI_CLUSTER_MQTT_PORT`` 1993, ``UBI_CLUSTER_KAFKA_PORT`` 9292: nodes on 9292/9295/9298, each +1
controller and +2 replication), so neither ``ubi stack`` nor the chaos harness is disturbed, and stop them at the end
(``UBI_CLUSTER_KEEP=1`` leaves them running).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_collection_modifyitems(config, items):
    mine = [i for i in items if f"{os.sep}cluster{os.sep}" in str(i.fspath)]
    for item in mine:
        item.add_marker(pytest.mark.cluster)
    if "cluster" not in (config.option.markexpr or ""):
        config.hook.pytest_deselected(items=mine)
        items[:] = [i for i in items if i not in mine]


def pytest_terminal_summary(terminalreporter):
    import sys

    harness = sys.modules.get("tests.cluster.harness")  # loaded only when the cluster tests ran
    if harness is not None and harness.RESULTS:
        terminalreporter.write_sep("-", "cluster fault scenarios")
        for line in harness.RESULTS:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def cluster():
    from tests.cluster.harness import Cluster

    home = Path(os.environ.get("UBI_CLUSTER_HOME", "/tmp/ubi-cluster-tests"))
    c = Cluster(
        home,
        mqtt_port=int(os.environ.get("UBI_CLUSTER_MQTT_PORT", "1993")),
        kafka_port=int(os.environ.get("UBI_CLUSTER_KAFKA_PORT", "9292")),
    )
    c.start()
    yield c
    if os.environ.get("UBI_CLUSTER_KEEP") != "1":
        c.stop()


@pytest.fixture
def healthy(cluster):
    """Every node running and registered before a scenario (the previous one may have left one down)."""
    cluster.ensure_all_up()
    return cluster
