"""Attacks on the broker by an enrolled device, with real MQTT clients (paho, MQTT 5) on the real Mosquitto
(issue 11, items 1 and 8): joining the bridge's shared subscription, QoS 2 and retained publishes."""

from __future__ import annotations

import subprocess
import time

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
    dev, props = make_client(cfg.mqtt, f"dev-{vehicle}", vehicle, password)
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
    bridge_id, thief_ids = f"it-{env.tag}-bridge", [f"dev-{thief}", thief]  # the two ids a device may use
    got: list = []
    bridge, bres = _connect(cfg, bridge_id, cfg.mqtt.bridge_user, stack.credentials().password("bridge"), 120, got)
    thieves = []
    try:
        assert all(not rc.is_failure for rc in _subscribe(bridge, bres, share))
        for cid in thief_ids:
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


def _publish_as(cfg, vehicle: str, password: str, topic: str, qos: int, retain: bool) -> list:
    """Publish once; the events the device sees (PUBACK reason or DISCONNECT)."""
    events: list = []
    dev, props = make_client(cfg.mqtt, f"dev-{vehicle}", vehicle, password)
    dev.on_publish = lambda c, u, mid, rc, p: events.append(("puback", rc))
    dev.on_disconnect = lambda c, u, f, rc, p: events.append(("disconnect", rc))
    dev.connect(cfg.mqtt.host, cfg.mqtt.port, properties=props)
    dev.loop_start()
    try:
        deadline = time.monotonic() + 5
        while not dev.is_connected() and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            dev.publish(topic, b"{}", qos=qos, retain=retain)
        except Exception as exc:  # noqa: BLE001 - paho may refuse locally what the CONNACK forbade
            events.append(("client", exc))
        deadline = time.monotonic() + 3
        while not events and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        dev.disconnect()
        dev.loop_stop()
    return events


def test_qos2_and_retained_telemetry_are_refused_by_the_broker(stack, env):
    """Finding 8: QoS 2 and retained telemetry were accepted although the contract forbids them. A retained status
    (the contract's `online` / last will) still works."""
    cfg = env.config
    v = f"T{env.tag}Q"
    pw = stack.enrol([v])[v]
    got: list = []
    watcher, wres = _connect(
        cfg, f"it-{env.tag}-watch", cfg.mqtt.bridge_user, stack.credentials().password("bridge"), 0, got
    )
    try:
        _subscribe(watcher, wres, f"{cfg.mqtt.topic_prefix}/{v}/telemetry")
        telemetry = f"{cfg.mqtt.topic_prefix}/{v}/telemetry"
        # paho reports the PUBCOMP of a refused QoS 2 flow as success; mosquitto_pub reports the PUBREC reason 0x87
        qos2 = subprocess.run(
            [
                "mosquitto_pub",
                "-h",
                cfg.mqtt.host,
                "-p",
                str(cfg.mqtt.port),
                "-V",
                "mqttv5",
                "-d",
                "-u",
                v,
                "-P",
                pw,
                "-i",
                f"dev-{v}",
                "-t",
                telemetry,
                "-q",
                "2",
                "-m",
                "{}",
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        assert "not authorized" in qos2.stderr.lower(), qos2.stdout + qos2.stderr
        retained = _publish_as(cfg, v, pw, telemetry, qos=1, retain=True)
        assert retained and retained[0][0] == "puback" and retained[0][1].is_failure, retained
        status = _publish_as(cfg, v, pw, f"{cfg.mqtt.topic_prefix}/{v}/status", qos=1, retain=True)
        assert status and status[0][0] == "puback" and not status[0][1].is_failure, status
        time.sleep(0.5)
        assert got == [], "a refused publish reached the bridge"
    finally:
        watcher.disconnect()
        watcher.loop_stop()
        stack.revoke([v])


def test_a_device_cannot_take_over_the_bridge_session_or_another_device(stack, env):
    """A device that connected with the bridge's client id was accepted and the broker destroyed the bridge's
    offline session with the messages queued in it (found with a real client). Now a device may connect only as
    dev-<vehicle> (or <vehicle>): checked with mosquitto_pub, and the bridge's queue survives the attempt."""
    import subprocess

    cfg = env.config
    thief, victim = f"T{env.tag}K", f"T{env.tag}W"
    pw = stack.enrol([thief, victim])
    bridge_id = f"it-{env.tag}-bridge"
    bridge_pw = stack.credentials().password("bridge")
    share = f"$share/{cfg.mqtt.share_group}/{cfg.mqtt.topic_prefix}/+/telemetry"
    bridge, bres = _connect(cfg, bridge_id, cfg.mqtt.bridge_user, bridge_pw, 120)
    assert all(not rc.is_failure for rc in _subscribe(bridge, bres, share))
    bridge.disconnect()  # offline: the broker queues the victim's messages for it
    bridge.loop_stop()
    try:
        _publish(cfg, victim, pw[victim], 10)
        for cid in (bridge_id, f"dev-{victim}", victim, "mosq-anything"):
            r = subprocess.run(
                ["mosquitto_pub", "-h", cfg.mqtt.host, "-p", str(cfg.mqtt.port), "-V", "mqttv5", "-q", "1",
                 "-i", cid, "-u", thief, "-P", pw[thief], "-t", f"{cfg.mqtt.topic_prefix}/{thief}/status", "-m", "x"],
                capture_output=True, text=True, timeout=20,
            )  # fmt: skip
            assert r.returncode != 0 and "not authori" in (r.stdout + r.stderr).lower(), (cid, r)
        got: list = []
        bridge, bres = _connect(cfg, bridge_id, cfg.mqtt.bridge_user, bridge_pw, 120, got)
        _subscribe(bridge, bres, share)
        _wait_for(got, 10)
        assert len(got) == 10, f"the bridge's queued messages were lost: {len(got)} of 10"
    finally:
        bridge.disconnect()
        bridge.loop_stop()
        drop_session(cfg.mqtt, bridge_id, cfg.mqtt.bridge_user, bridge_pw)
        stack.revoke([thief, victim])
