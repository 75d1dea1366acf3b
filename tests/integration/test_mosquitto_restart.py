"""Mosquitto restarts must not lose what the broker acknowledged (issue 11, item 3): with `ubi stack up` a few
seconds after SIGTERM, the old broker was still writing its persistence file while a second one started on the
same file, and 127-758 trips that devices had been PUBACKed for were gone. Now `stack up` waits for the old broker
(it holds a lock on its persistence directory until it exits)."""

from __future__ import annotations

import os
import signal
import time

from ubi.adapters.mqtt import drop_session, make_client


def test_sigterm_then_immediate_stack_up_loses_no_acknowledged_message(stack, env):
    cfg = env.config
    n, vehicle = 5000, f"T{env.tag}R"
    pw = stack.enrol([vehicle])[vehicle]
    bridge_pw = stack.credentials().password(cfg.mqtt.bridge_user)
    bridge_id = f"it-{env.tag}-bridge"
    share = f"$share/{cfg.mqtt.share_group}/{cfg.mqtt.topic_prefix}/+/telemetry"

    def bridge_session(got: list | None):
        c, props = make_client(cfg.mqtt, bridge_id, cfg.mqtt.bridge_user, bridge_pw, session_expiry_s=600)
        if got is not None:
            c.on_message = lambda cl, u, m: got.append(m.payload)
        c.connect(cfg.mqtt.host, cfg.mqtt.port, clean_start=False, properties=props)
        c.loop_start()
        c.subscribe(share, qos=1)
        time.sleep(0.5)
        return c

    b = bridge_session(None)  # then offline: the broker queues for the session
    b.disconnect()
    b.loop_stop()
    dev, props = make_client(cfg.mqtt, f"dev-{vehicle}", vehicle, pw)
    acked: set[int] = set()
    dev.on_publish = lambda c, u, mid, rc, p: acked.add(mid)
    dev.max_inflight_messages_set(200)
    dev.connect(cfg.mqtt.host, cfg.mqtt.port, properties=props)
    dev.loop_start()
    try:
        for i in range(n):
            dev.publish(f"{cfg.mqtt.topic_prefix}/{vehicle}/telemetry", f"m{i}".ljust(400).encode(), qos=1)
        deadline = time.monotonic() + 60
        while len(acked) < n and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        dev.disconnect()
        dev.loop_stop()
    assert len(acked) == n, f"only {len(acked)} of {n} PUBACKed"

    pid = int((stack.mq_dir / "mosquitto.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    stack.mosquitto_up()  # at once, as an operator's restart would
    got: list = []
    b = bridge_session(got)
    try:
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        b.disconnect()
        b.loop_stop()
        drop_session(cfg.mqtt, bridge_id, cfg.mqtt.bridge_user, bridge_pw)
        stack.revoke([vehicle])
    assert len(set(got)) == n, f"{n - len(set(got))} of {n} acknowledged messages lost over the restart"
