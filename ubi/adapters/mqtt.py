"""MQTT adapter: client construction with the settings every component of ours shares (MQTT 5, auth)."""

from __future__ import annotations

import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ubi.common.config import MqttConfig


def make_client(
    cfg: MqttConfig,
    client_id: str,
    username: str,
    password: str,
    *,
    manual_ack: bool = False,
    session_expiry_s: int = 0,
    receive_maximum: int | None = None,
) -> tuple[mqtt.Client, Properties]:
    """An MQTT 5 client and the CONNECT properties to pass to ``connect``.

    A non-zero ``session_expiry_s`` with ``clean_start=False`` keeps a persistent session on the broker, so QoS 1
    messages wait for us while we are away.
    """
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, manual_ack=manual_ack
    )
    client.username_pw_set(username, password)
    props = Properties(PacketTypes.CONNECT)
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return client, props


def drop_session(cfg: MqttConfig, client_id: str, username: str, password: str) -> None:
    """Make the broker forget a persistent session and its queue now (a clean start with expiry 0), instead of
    collecting every later message for it until it expires; for test and benchmark clients, and the demo's reset."""
    client, props = make_client(cfg, client_id, username, password)
    client.connect(cfg.host, cfg.port, clean_start=True, properties=props)
    deadline = time.monotonic() + 5.0
    while not client.is_connected() and time.monotonic() < deadline:
        client.loop(0.05)  # until the CONNACK: the broker has dropped the old session by then
    client.disconnect()
