"""Broker security on the real Mosquitto: no anonymous access, wrong passwords refused, and a device may
publish only under its own vehicle id (checked with the real `mosquitto_pub` and `mosquitto_sub` clients)."""

from __future__ import annotations

import subprocess
import time

from ubi.adapters.mqtt import make_client


def pub(args: list[str]) -> subprocess.CompletedProcess:
    """mosquitto_pub as a device: with -u USER it connects as client id dev-USER, as the contract requires."""
    ident = ["-i", f"dev-{args[args.index('-u') + 1]}"] if "-u" in args else []
    return subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", "1883", "-V", "mqttv5", "-q", "1", *ident, *args],
        capture_output=True,
        text=True,
        timeout=20,
    )


def test_anonymous_connect_refused(stack):
    r = pub(["-t", "ubi/v1/vehicles/ANY/telemetry", "-m", "{}"])
    assert r.returncode != 0
    assert "not authorised" in (r.stderr + r.stdout).lower() or "not authorized" in (r.stderr + r.stdout).lower()


def test_wrong_password_refused(stack, env):
    v = f"T{env.tag}A"
    stack.enrol([v])
    r = pub(["-u", v, "-P", "wrong-password", "-t", f"ubi/v1/vehicles/{v}/telemetry", "-m", "{}"])
    assert r.returncode != 0
    stack.revoke([v])


def test_device_cannot_publish_as_another_vehicle(stack, env):
    me, other = f"T{env.tag}A", f"T{env.tag}B"
    passwords = stack.enrol([me, other])
    got: list[str] = []
    sub, props = make_client(env.config.mqtt, f"it-{env.tag}-watch", "bridge", stack.credentials().password("bridge"))
    sub.on_message = lambda c, u, m: got.append(m.topic)
    sub.on_connect = lambda c, u, f, rc, p: c.subscribe("ubi/v1/vehicles/+/telemetry", qos=1)
    sub.connect("127.0.0.1", 1883, properties=props)
    sub.loop_start()
    try:
        time.sleep(1.0)
        pw = passwords[me]
        spoof = pub(["-u", me, "-P", pw, "-t", f"ubi/v1/vehicles/{other}/telemetry", "-m", "spoofed"])
        own = pub(["-u", me, "-P", pw, "-t", f"ubi/v1/vehicles/{me}/telemetry", "-m", "mine"])
        assert own.returncode == 0, own.stderr
        deadline = time.monotonic() + 5
        while f"ubi/v1/vehicles/{me}/telemetry" not in got and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert f"ubi/v1/vehicles/{me}/telemetry" in got
    assert f"ubi/v1/vehicles/{other}/telemetry" not in got, spoof
    # revoking the credential locks the device out
    stack.revoke([me])
    time.sleep(0.3)
    assert pub(["-u", me, "-P", pw, "-t", f"ubi/v1/vehicles/{me}/telemetry", "-m", "x"]).returncode != 0
    stack.revoke([other])


def test_tls_listener_accepts_devices_with_the_ca_and_refuses_unverified(stack, env):
    import ssl

    me = f"T{env.tag}S"
    pw = stack.enrol([me])[me]
    ca = str(stack.cfg.home / "tls" / "ca.crt")
    # `pub` passes -p 1883 first; the later -p wins in mosquitto_pub
    ok = pub(
        [
            "-p",
            str(env.config.mqtt.tls_port),
            "--cafile",
            ca,
            "-u",
            me,
            "-P",
            pw,
            "-t",
            f"ubi/v1/vehicles/{me}/status",
            "-m",
            "online",
        ]
    )
    assert ok.returncode == 0, ok.stderr
    client, props = make_client(env.config.mqtt, f"dev-{me}", me, pw)
    client.tls_set(cert_reqs=ssl.CERT_REQUIRED)  # system CAs only: our development CA is not trusted
    try:
        client.connect("127.0.0.1", env.config.mqtt.tls_port, properties=props)
        refused = False
    except ssl.SSLError:
        refused = True
    assert refused, "a client that cannot verify the server certificate must not connect"
    stack.revoke([me])
