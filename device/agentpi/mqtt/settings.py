"""The ``[mqtt]`` section and its checks (no MQTT library needed to read a config)."""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from agentpi.settings.typed import SettingsError
from agentpi.system.net import is_loopback

SCHEMES = {"mqtts": 8883, "mqtt": 1883}


class MqttConfigError(SettingsError):
    pass


@dataclass(frozen=True)
class MqttConfig:
    enabled: bool = False
    url: str = ""
    """mqtts://broker.lan (port 8883 unless given); mqtt:// only to this machine unless
    allow_plain = true (the password and the transcripts would cross the network in clear)."""
    allow_plain: bool = False
    username: str = ""
    """The password comes from AGENTPI_MQTT_PASSWORD or the systemd credential
    agentpi_mqtt_password, never from this file."""
    ca_file: str = ""
    """A CA certificate for a broker with its own certificate authority (default: the system's)."""
    base_topic: str = ""
    """Default: agentpi/<device id>."""
    discovery: bool = True
    """Publish Home Assistant MQTT discovery configs."""
    discovery_prefix: str = "homeassistant"
    transcripts: bool = False
    """Publish the last user transcript and agent reply (off: they are private)."""
    events_per_s: float = 10.0
    """Event lines published at most this often (more are counted and dropped)."""
    keepalive_s: int = 30
    client_id: str = ""
    """The id the device logs in to the broker with (default: agentpi-<device id>); two clients
    with one id take the session from each other."""
    protocol: str = "5"
    """MQTT "5" (the broker then sends nothing larger than ``MAX_PACKET_BYTES``) or "3.1.1" for
    a broker without version 5 (Mosquitto before 1.6)."""


PROTOCOLS = ("5", "3.1.1")
CLIENT_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
"""What every broker takes (the standard promises only 23 letters and digits; Mosquitto and
EMQX take far longer ids)."""
MAX_PACKET_BYTES = 128 * 1024
"""The largest packet the device takes from the broker: a command is 64 KiB at most, so a
larger one is answered as too long up to here, and beyond it never reaches the device's memory."""


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def broker_address(config: MqttConfig) -> BrokerAddress:
    """The broker to connect to, or a one-line MqttConfigError saying what to fix."""
    parts = urlsplit(config.url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise MqttConfigError(f"mqtt.url = {config.url!r}: use mqtts://HOST[:PORT]")
    if parts.username or parts.password:
        raise MqttConfigError(
            "mqtt.url: no user or password in the URL; set mqtt.username and the password in "
            "AGENTPI_MQTT_PASSWORD or the credential agentpi_mqtt_password"
        )
    try:
        port = parts.port or SCHEMES[parts.scheme]
    except ValueError:
        raise MqttConfigError(f"mqtt.url = {config.url!r}: the port is not a number") from None
    tls = parts.scheme == "mqtts"
    if not tls and not config.allow_plain and not is_loopback(parts.hostname):
        raise MqttConfigError(
            f"mqtt.url = {config.url!r}: plain MQTT to another machine sends the password and "
            "the transcripts in clear; use mqtts:// or set mqtt.allow_plain = true"
        )
    return BrokerAddress(parts.hostname, port, tls)


def tls_context(config: MqttConfig) -> ssl.SSLContext:
    """The system's CA certificates, or only ``ca_file``'s when one is given."""
    return ssl.create_default_context(cafile=config.ca_file or None)


def check_mqtt(config: MqttConfig) -> None:
    if not config.enabled:
        return
    broker_address(config)
    for name in ("base_topic", "discovery_prefix"):
        topic = getattr(config, name)
        if any(ch in topic for ch in "+#\0") or topic.startswith("/") or topic.endswith("/"):
            raise MqttConfigError(f"mqtt.{name} = {topic!r}: no +, # or leading/trailing /")
    if not 0 < config.events_per_s <= 1000:
        raise MqttConfigError(f"mqtt.events_per_s = {config.events_per_s}: use 0.1 to 1000")
    if not 5 <= config.keepalive_s <= 3600:
        raise MqttConfigError(f"mqtt.keepalive_s = {config.keepalive_s}: use 5 to 3600")
    if config.client_id and not CLIENT_ID.fullmatch(config.client_id):
        raise MqttConfigError(
            f"mqtt.client_id = {config.client_id!r}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )
    if config.protocol not in PROTOCOLS:
        raise MqttConfigError(f'mqtt.protocol = {config.protocol!r}: use "5" or "3.1.1"')
