"""Simulated devices on the real Mosquitto: store-and-forward through a broker restart loses no message."""

from __future__ import annotations

import json
import threading
import time

from simulator.devices import DeviceFleet
from simulator.fleet import make_trips, vehicle_ids
from simulator.run import vehicle_stream
from ubi.adapters.mqtt import make_client


def test_device_publishing_through_mosquitto_restart_loses_nothing(stack, env):
    cfg = env.config
    spec = env.fleet(vehicles=2, days=1, seed=3)
    vehicles = vehicle_ids(spec.vehicles, spec.id_prefix)
    passwords = stack.enrol(vehicles)
    creds = stack.credentials()
    msgs = {v: list(vehicle_stream(spec, make_trips(spec, v))) for v in vehicles}
    expected = {(v, m.seq) for v, ms in msgs.items() for m in ms}

    got: set[tuple[str, int]] = set()
    watcher, props = make_client(
        cfg.mqtt, f"it-{env.tag}-watch", "bridge", creds.password("bridge"), session_expiry_s=60
    )

    def on_message(c, u, m):
        obj = json.loads(m.payload)
        if obj.get("vehicle") in msgs:
            got.add((obj["vehicle"], obj["seq"]))

    watcher.on_message = on_message
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe(
        [(f"{cfg.mqtt.topic_prefix}/+/telemetry", 1), (f"{cfg.mqtt.topic_prefix}/+/events", 1)]
    )
    watcher.connect("127.0.0.1", cfg.mqtt.port, clean_start=False, properties=props)
    watcher.loop_start()  # paho reconnects this one by itself; its persistent session survives the restart
    time.sleep(0.5)

    fleet = DeviceFleet(cfg.mqtt, passwords)
    halves = {v: len(ms) // 2 for v, ms in msgs.items()}
    fleet.play({v: iter(ms[: halves[v]]) for v, ms in msgs.items()})
    fleet.flush()
    assert stack.mosquitto_down()
    restart = threading.Timer(3.0, stack.mosquitto_up)
    restart.start()
    fleet.play({v: iter(ms[halves[v] :]) for v, ms in msgs.items()})  # broker down: devices buffer
    restart.join()
    fleet.close(timeout=60)
    deadline = time.monotonic() + 30
    while not expected <= got and time.monotonic() < deadline:
        time.sleep(0.2)
    watcher.loop_stop()
    watcher.disconnect()
    assert expected <= got, f"missing {sorted(expected - got)[:10]}"
    assert sum(d.dropped for d in fleet.devices.values()) == 0


def test_a_thousand_devices_from_one_thread(stack, env):
    """More sockets than select() can watch: the fleet's epoll loop must still connect and deliver for all."""
    cfg = env.config
    vehicles = [f"T{env.tag}{i:04d}" for i in range(1000)]
    passwords = stack.enrol(vehicles, settle_s=0.5)
    creds = stack.credentials()
    got: set[str] = set()
    watcher, props = make_client(cfg.mqtt, f"it-{env.tag}-watch", "bridge", creds.password("bridge"))
    watcher.on_message = lambda c, u, m: got.add(m.topic.split("/")[-2])
    watcher.on_connect = lambda c, u, f, rc, p: c.subscribe(f"{cfg.mqtt.topic_prefix}/+/telemetry", qos=1)
    watcher.connect("127.0.0.1", cfg.mqtt.port, properties=props)
    watcher.loop_start()
    time.sleep(0.5)
    try:
        fleet = DeviceFleet(cfg.mqtt, passwords)
        assert threading.active_count() < 10
        for v in vehicles:
            fleet.publish_raw(v, "telemetry", b"{}")
        fleet.close(timeout=60)
        deadline = time.monotonic() + 20
        while len(got) < len(vehicles) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        watcher.loop_stop()
        watcher.disconnect()
        stack.revoke(vehicles)
    assert got == set(vehicles)
