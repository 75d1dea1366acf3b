"""Poison and size limits on the real services, with real MQTT clients (issue 11, items 2 and 5).

- A contract-valid trip without any GPS fix, published by a device beside an ordinary trip of another vehicle:
  the scorer used to die on it (IndexError) and, through its ``finally: checkpoint()``, commit past the other
  vehicles' unpublished trips. Both trips must now be stored and the scorer keep running.
- A ~0.9 MB message (over the contract's 256 KiB, under Mosquitto's 1 MB): its base64 dead letter used to exceed
  Kafka's record limit, so the bridge retried for ever and never acknowledged it. It must now be dead-lettered
  (truncated, with its size and SHA-256) and the messages behind it delivered.
"""

from __future__ import annotations

import json
import time

import numpy as np

from simulator.devices import DeviceFleet
from tests.integration.kafka_read import read_topic
from tests.integration.test_bridge import wait_count
from tests.integration.test_pipeline import wait_for_trips
from ubi.adapters import duckdb_store as store
from ubi.common.messages import DeviceEvent, TelemetryBatch


def now_batch(vehicle: str, seq: int, t0: int, gps: bool) -> TelemetryBatch:
    n = 10
    t = t0 + np.arange(n) * 1000
    z = np.zeros(n)
    g = slice(None) if gps else slice(0, 0)
    return TelemetryBatch(
        vehicle,
        seq,
        int(t[-1]),
        t[g].astype(np.int64),
        (z + 52)[g],
        (4 + np.arange(n) * 1e-4)[g],
        (z + 8)[g],
        (z + 90)[g],
        (z + 3)[g],
        int(t[0]),
        10,
        np.zeros(n * 10),
        np.zeros(n * 10),
        np.zeros(n * 10) + 9.8,
        None,
    )


def trip_messages(vehicle: str, t0: int, gps: bool) -> list:
    return [
        DeviceEvent(vehicle, 0, t0, "ignition_on"),
        now_batch(vehicle, 1, t0, gps),
        now_batch(vehicle, 2, t0 + 10_000, gps),
        DeviceEvent(vehicle, 3, t0 + 20_000, "ignition_off"),
    ]


def test_a_trip_without_gps_does_not_stop_the_scorer(stack, env):
    cfg = env.config
    g, a = f"T{env.tag}G", f"T{env.tag}A"
    fleet = DeviceFleet(cfg.mqtt, stack.enrol([g, a]))
    stages = [
        env.start("bridge", "--client-id", f"it-{env.tag}-bridge"),
        env.start("score", "--client-id", "s1"),
        env.start("store", "--client-id", "st1"),
    ]
    t0 = int(time.time() * 1000) - 120_000
    for m in trip_messages(g, t0, gps=False):
        fleet.send(m)
    for m in trip_messages(a, t0 + 1000, gps=True):
        fleet.send(m)
    fleet.close()
    assert wait_for_trips(cfg, 2, stages, timeout=60) == 2
    for s in stages:
        assert s.proc.poll() is None, s.log.read_text()[-3000:]
        assert s.stop() == 0
    con = store.connect(cfg.db_path)
    rows = dict(con.execute("SELECT vehicle_id, gps_fixes FROM trips").fetchall())
    con.close()
    assert rows == {g: 0, a: 20}


def test_a_09_mb_message_is_refused_at_the_broker_and_blocks_nothing(stack, env):
    """Issue 11, item 5: ~0.9 MB messages (over the contract's 256 KiB, under Mosquitto's old 1 MB limit) made
    dead letters too large for Kafka; the bridge retried for ever and blocked every device. Now the broker refuses
    any packet over the contract's limit (+1 KiB) at the door (real mosquitto_pub, disconnected), a device drops
    such a message itself, and whatever gets past the broker is dead-lettered with a record that always fits
    (tests/integration/test_bridge.py, tests/test_bridge_unit.py)."""
    import subprocess

    cfg = env.config
    v = f"T{env.tag}B"
    pw = stack.enrol([v])
    fleet = DeviceFleet(cfg.mqtt, pw)
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    huge = json.dumps({"v": 1, "vehicle": v, "seq": 0, "pad": "x" * 900_000}).encode()
    assert 800_000 < len(huge) < 1_000_000
    (env.path / "huge.json").write_bytes(huge)
    r = subprocess.run(
        ["mosquitto_pub", "-h", cfg.mqtt.host, "-p", str(cfg.mqtt.port), "-V", "mqttv311", "-q", "1", "-i", f"dev-{v}",
         "-u", v, "-P", pw[v], "-t", f"{cfg.mqtt.topic_prefix}/{v}/telemetry", "-f", str(env.path / "huge.json")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    # MQTT 3.1.1 (no maximum packet size in the CONNACK, so the client sends it): the broker disconnects it
    assert r.returncode != 0, r
    t0 = int(time.time() * 1000) - 60_000
    for _ in range(3):
        fleet.publish_raw(v, "telemetry", huge)  # the device's own guard: dropped before sending, counted
    good = trip_messages(v, t0, gps=True)
    for m in good:
        fleet.send(m)
    fleet.close()
    assert fleet.devices[v].oversize == 3
    ok = wait_count(cfg.kafka.bootstrap, cfg.kafka.telemetry_topic, len(good), timeout=60)
    assert len(ok) == len(good)
    assert read_topic(cfg.kafka.bootstrap, cfg.kafka.dead_letter_topic, timeout_s=3) == []
    assert bridge.stop() == 0
