"""End-to-end acknowledgement (issue 11): a device forgets a message only when the bridge says Kafka has it.

The fault: Mosquitto PUBACKs a message, keeps it in memory for the bridge's session and saves to disk every 30 s;
a crash before the save (SIGKILL, OOM, power) loses it, and a device that dropped it on the PUBACK cannot resend.
Tested with real clients: the bridge is down (its session queues), the broker is SIGKILLed and restarted."""

from __future__ import annotations

import os
import signal
import subprocess
import time

from simulator.devices import DeviceFleet
from tests.integration.kafka_read import read_topic, seqs_by_vehicle
from ubi.adapters.mqtt import make_client
from ubi.common.messages import DeviceEvent


def _events(vehicle: str, n: int) -> list[DeviceEvent]:
    t0 = int(time.time() * 1000) - n * 2000
    return [DeviceEvent(vehicle, i, t0 + 2000 * i, "ignition_on" if i % 2 == 0 else "ignition_off") for i in range(n)]


def test_a_broker_crash_loses_nothing_a_device_keeps_until_acknowledged_end_to_end(stack, env):
    cfg = env.config
    n = 300
    plain_v, e2e_v = f"T{env.tag}P", f"T{env.tag}E"
    pws = stack.enrol([plain_v, e2e_v])
    bridge_id = f"it-{env.tag}-bridge"
    bridge = env.start("bridge", "--client-id", bridge_id)
    bridge.kill()  # crashed: its session stays and the broker queues for it, in memory
    plain = DeviceFleet(cfg.mqtt, {plain_v: pws[plain_v]})  # forgets a message on its PUBACK
    e2e = DeviceFleet(cfg.mqtt, {e2e_v: pws[e2e_v]}, e2e=True, resend_s=3.0)
    for m in _events(plain_v, n):
        plain.send(m)
    for m in _events(e2e_v, n):
        e2e.send(m)
    plain.flush(60)
    e2e.wait_broker(60)
    assert e2e.unconfirmed() == n  # PUBACKed by the broker, not yet safe in Kafka

    os.kill(int((stack.mq_dir / "mosquitto.pid").read_text()), signal.SIGKILL)
    time.sleep(0.5)
    stack.mosquitto_up()
    env.start("bridge", "--client-id", bridge_id)
    e2e.flush(90)  # reconnects, resends, and waits for the bridge's acks
    assert e2e.unconfirmed() == 0 and e2e.devices[e2e_v].confirmed == n
    plain.close(30)
    e2e.close(30)
    time.sleep(1.0)
    got = seqs_by_vehicle(read_topic(cfg.kafka.bootstrap, cfg.kafka.telemetry_topic))
    assert sorted(set(got.get(e2e_v, []))) == list(range(n)), "a message acknowledged end to end is missing"
    lost_plain = n - len(set(got.get(plain_v, [])))
    # What the fix is for (not asserted: a 30 s autosave that happens to fall between publish and kill saves all)
    print(f"device without end-to-end ack lost {lost_plain} of {n} PUBACKed messages over the broker crash")


def test_a_device_reads_only_its_own_acks_and_cannot_forge_them(stack, env):
    """Real clients: another device's ack topic delivers nothing to a device, and a device cannot publish acks."""
    cfg = env.config
    a, b = f"T{env.tag}A", f"T{env.tag}B"
    pws = stack.enrol([a, b])
    bridge = env.start("bridge", "--client-id", f"it-{env.tag}-bridge")
    got: list[str] = []
    spy, props = make_client(cfg.mqtt, f"dev-{b}", b, pws[b])
    spy.on_message = lambda c, u, m: got.append(m.topic)
    spy.connect(cfg.mqtt.host, cfg.mqtt.port, properties=props)
    spy.loop_start()
    spy.subscribe([(f"{cfg.mqtt.topic_prefix}/+/ack", 1), (f"{cfg.mqtt.topic_prefix}/{a}/ack", 1)])
    time.sleep(0.5)
    fleet = DeviceFleet(cfg.mqtt, {a: pws[a]}, e2e=True, resend_s=60)
    for m in _events(a, 20):
        fleet.send(m)
    fleet.flush(60)
    assert fleet.devices[a].confirmed == 20
    fleet.close(10)
    spy.loop_stop()
    spy.disconnect()
    bridge.stop()
    assert got == [], f"device {b} received another device's acks: {got}"
    # mosquitto_pub as the attacker: the broker refuses the forged ack (MQTT 5 reason 0x87)
    out = subprocess.run(
        [
            "mosquitto_pub",
            "-V",
            "mqttv5",
            "-q",
            "1",
            "-h",
            cfg.mqtt.host,
            "-p",
            str(cfg.mqtt.port),
            "-u",
            b,
            "-P",
            pws[b],
            "-t",
            f"{cfg.mqtt.topic_prefix}/{a}/ack",
            "-m",
            '{"v":1,"acked":[[0,99]]}',
        ],
        capture_output=True,
        text=True,
        timeout=20,
    )
    text = (out.stdout + out.stderr).lower()
    assert "not authorised" in text or "not authorized" in text, out
