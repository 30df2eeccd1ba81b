"""Secrets (the API key, the endpoint token, the MQTT password, Home Assistant's token) from the
environment or a systemd credential.

Never from the config file or the command line; a Secret never shows its value when printed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

API_KEY_ENV = "ELEVENLABS_API_KEY"
API_KEY_CREDENTIAL = "elevenlabs_api_key"
ENDPOINT_TOKEN_ENV = "AGENTPI_ENDPOINT_TOKEN"
ENDPOINT_TOKEN_CREDENTIAL = "agentpi_endpoint_token"
MQTT_PASSWORD_ENV = "AGENTPI_MQTT_PASSWORD"
MQTT_PASSWORD_CREDENTIAL = "agentpi_mqtt_password"
HA_TOKEN_ENV = "AGENTPI_HA_TOKEN"
HA_TOKEN_CREDENTIAL = "agentpi_ha_token"


@dataclass(frozen=True)
class CredentialSpec:
    credential: str
    """The systemd credential's name (the unit's ``LoadCredential=``)."""
    variable: str
    """The environment variable that gives it outside systemd."""
    file: str
    """Its file in /etc/agentpi, which install-service makes (empty: not used)."""
    use: str


CREDENTIALS = (
    CredentialSpec(API_KEY_CREDENTIAL, API_KEY_ENV, "api_key", "private agents"),
    CredentialSpec(
        ENDPOINT_TOKEN_CREDENTIAL, ENDPOINT_TOKEN_ENV, "endpoint_token", "a signed_url_endpoint"
    ),
    CredentialSpec(MQTT_PASSWORD_CREDENTIAL, MQTT_PASSWORD_ENV, "mqtt_password", "an MQTT broker"),
    CredentialSpec(
        HA_TOKEN_CREDENTIAL, HA_TOKEN_ENV, "ha_token", "Home Assistant's long-lived access token"
    ),
)
"""Every secret the device reads: the unit loads each, install-service makes each file."""


class Secret:
    """A credential that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class AgentCredentials:
    """What the device shows the platform: the API key (a signed URL for a private agent), or
    its token for the owner's signed-URL endpoint; neither for a public agent."""

    api_key: Secret | None = None
    endpoint_token: Secret | None = None


NO_CREDENTIALS = AgentCredentials()


def read_api_key(environ: dict[str, str] | None = None) -> Secret | None:
    """``ELEVENLABS_API_KEY``, else the systemd credential; None when neither is set."""
    return _read_secret(API_KEY_ENV, API_KEY_CREDENTIAL, environ)


def read_endpoint_token(environ: dict[str, str] | None = None) -> Secret | None:
    """The device's token for the owner's signed-URL endpoint, if it has one."""
    return _read_secret(ENDPOINT_TOKEN_ENV, ENDPOINT_TOKEN_CREDENTIAL, environ)


def read_mqtt_password(environ: dict[str, str] | None = None) -> Secret | None:
    """The MQTT broker's password: ``AGENTPI_MQTT_PASSWORD`` or the credential."""
    return _read_secret(MQTT_PASSWORD_ENV, MQTT_PASSWORD_CREDENTIAL, environ)


def read_ha_token(environ: dict[str, str] | None = None) -> Secret | None:
    """Home Assistant's long-lived access token: ``AGENTPI_HA_TOKEN`` or the credential."""
    return _read_secret(HA_TOKEN_ENV, HA_TOKEN_CREDENTIAL, environ)


def _read_secret(variable: str, credential: str, environ: dict[str, str] | None) -> Secret | None:
    env = os.environ if environ is None else environ
    value = env.get(variable, "").strip()
    if not value and env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / credential
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            value = ""
    return Secret(value) if value else None
