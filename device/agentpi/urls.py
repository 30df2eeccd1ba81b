"""The URLs a config may name, checked whole at load: the agent's and the signed-URL endpoint's."""

from __future__ import annotations

from urllib.parse import urlsplit

from agentpi.net import is_loopback
from agentpi.settings import SettingsError

ConfigError = SettingsError


def check_agent_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("wss", "ws") or not parts.hostname:
        raise ConfigError(
            f"agent.url = {url!r}: use wss://HOST (default wss://api.elevenlabs.io), "
            "or ws://127.0.0.1:PORT for the local simulator"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"agent.url = {url!r}: give the base URL only, without ?query")
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"agent.url = {url!r}: plain ws:// is only allowed to this machine (loopback); "
            "use wss:// for remote hosts"
        )


def check_endpoint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        return
    raise ConfigError(
        f"agent.signed_url_endpoint = {url!r}: use https://HOST/... "
        "(plain http:// only to this machine)"
    )
