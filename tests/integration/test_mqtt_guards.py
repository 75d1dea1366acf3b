"""Attacks on the broker by an enrolled device, with real MQTT clients (paho, MQTT 5) on the real Mosquitto
(issue 11, items 1 and 8): joining the bridge's shared subscription, QoS 2 and retained publishes."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ubi.adapters.mqtt import drop_session, make_client


def _connect(cfg, client_id: str, user: str, password: str, expiry: int = 0, got: list | None = None):
    client, props = make_client(cfg.mqtt, client_id, user, password, session_expiry_s=expiry)
    results: dict = {}
    client.on_subscribe = lambda c, u, mid, rcs, p: results.setdefault("suback", rcs)
    if got is not None:
        client.on_message = lambda c, u, m: got.append(m.payload)
    client.connect(cfg.mqtt.host, cfg.mqtt.port, clean_start=False, properties=props)
    client.loop_start()
    deadline = time.monotonic() + 5
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert client.is_connected(), f"{user} could not connect"
    return client, results


def _subscribe(client, results, topic: str) -> list:
    results.pop("suback", None)
    client.subscribe(topic, qos=1)
    deadline = time.monotonic() + 5
    while "suback" not in results and time.monotonic() < deadline:
        time.sleep(0.02)
    return results.get("suback", [])


def _publish(cfg, vehicle: str, password: str, n: int) -> None:
    dev, props = make_client(cfg.mqtt, f"{vehicle}-pub", vehicle, password)
    dev.connect(cfg.mqtt.host, cfg.mqtt.port, properties=props)
    dev.loop_start()
    try:
        for i in range(n):
            info = dev.publish(f"{cfg.mqtt.topic_prefix}/{vehicle}/telemetry", f"m{i}", qos=1)
            info.wait_for_publish(5)
            assert info.rc == 0
    finally:
        dev.disconnect()
        dev.loop_stop()


def _wait_for(got: list, n: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # and nothing more arrives


def test_device_cannot_join_the_bridge_share_group(stack, env):
    """Finding 1: a device that joins ``$share/<bridge group>/...`` took its round-robin share of every vehicle's
    messages, failed its read ACL and the broker discarded them (PUBACK rc 0 to the publisher, nothing at the
    bridge). Now the broker refuses the subscription, online or from an offline persistent session."""
    cfg = env.config
    thief, victim = f"T{env.tag}X", f"T{env.tag}V"
    pw = stack.enrol([thief, victim])
    share = f"$share/{cfg.mqtt.share_group}/{cfg.mqtt.topic_prefix}/+/telemetry"
    bridge_id, thief_ids = f"it-{env.tag}-bridge", [f"it-{env.tag}-thief{i}" for i in range(3)]
    got: list = []
    bridge, bres = _connect(cfg, bridge_id, cfg.mqtt.bridge_user, stack.credentials().password("bridge"), 120, got)
    thieves = []
    try:
        assert all(not rc.is_failure for rc in _subscribe(bridge, bres, share))
        for i, cid in enumerate(thief_ids):
            c, res = _connect(cfg, cid, thief, pw[thief], expiry=3600)
            rcs = _subscribe(c, res, share)
            assert rcs and all(rc.is_failure for rc in rcs), f"device {thief} joined the bridge's share group: {rcs}"
            thieves.append(c)
        thieves[-1].disconnect()  # an offline persistent session of the device must not take a share either
        thieves[-1].loop_stop()
        time.sleep(0.3)
        _publish(cfg, victim, pw[victim], 20)
        _wait_for(got, 20)
        assert len(got) == 20, f"the bridge got {len(got)} of the victim's 20 messages"
    finally:
        for c in [bridge, *thieves[:-1]]:
            c.disconnect()
            c.loop_stop()
        for cid in thief_ids:
            drop_session(cfg.mqtt, cid, thief, pw[thief])
        stack.revoke([thief, victim])
