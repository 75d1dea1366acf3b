"""MQTT adapter: client construction with the settings every component of ours shares (MQTT 5, auth)."""

from __future__ import annotations

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ubi.config import MqttConfig


def make_client(cfg: MqttConfig, client_id: str, username: str, password: str, *, manual_ack: bool = False,
                session_expiry_s: int = 0, receive_maximum: int | None = None) -> tuple[mqtt.Client, Properties]:
    """An MQTT 5 client and the CONNECT properties to pass to ``connect``.

    A non-zero ``session_expiry_s`` with ``clean_start=False`` keeps a persistent session on the broker, so QoS 1
    messages wait for us while we are away.
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    client.username_pw_set(username, password)
    props = Properties(PacketTypes.CONNECT)
    if session_expiry_s:
        props.SessionExpiryInterval = session_expiry_s
    if receive_maximum:
        props.ReceiveMaximum = receive_maximum
    return client, props
