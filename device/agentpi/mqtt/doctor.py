"""``agentpi doctor``'s broker check: DNS, TCP, TLS and the login, each with what to fix."""

from __future__ import annotations

import asyncio
import socket
import ssl

from agentpi.errors import reason_of
from agentpi.mqtt.settings import MqttConfig, broker_address, tls_context
from agentpi.settings.credentials import MQTT_PASSWORD_CREDENTIAL, MQTT_PASSWORD_ENV, Secret

TIMEOUT_S = 5.0


def check_broker(config: MqttConfig, password: Secret | None) -> tuple[bool, str, str]:
    """(ok, what was found, what to fix)."""
    address = broker_address(config)
    host, port = address.host, address.port
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][0]
    except OSError as exc:
        return False, f"DNS for {host}: {reason_of(exc)}", "check mqtt.url and the network's DNS"
    try:
        with socket.create_connection((host, port), TIMEOUT_S) as raw:
            if address.tls:
                with tls_context(config).wrap_socket(raw, server_hostname=host) as tls:
                    tls_version = tls.version()
    except ssl.SSLError as exc:
        fix = "set mqtt.ca_file to the broker's CA certificate, and check the clock"
        return False, f"TLS to {host}:{port}: {reason_of(exc)}", fix
    except OSError as exc:
        fix = "is the broker running, and is the port right (mqtts: 8883, mqtt: 1883)?"
        return False, f"{host}:{port} ({found}): {reason_of(exc)}", fix
    try:
        asyncio.run(_log_in(config, password))
    except Exception as exc:  # the library's errors carry the broker's reason code
        fix = (
            f"check mqtt.username and the password ({MQTT_PASSWORD_ENV} or the credential "
            f"{MQTT_PASSWORD_CREDENTIAL})"
        )
        return False, f"login to {host}:{port}: {reason_of(exc)}", fix
    secured = f", {tls_version}" if address.tls else ", plain"
    return True, f"{host}:{port} ({found}){secured}, logged in", ""


async def _log_in(config: MqttConfig, password: Secret | None) -> None:
    import aiomqtt

    from agentpi.mqtt.client import login_options

    async with aiomqtt.Client(**login_options(config, password), timeout=TIMEOUT_S):
        pass
