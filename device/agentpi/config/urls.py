"""The URLs a config may name, parsed whole at load: the agent's, the signed-URL endpoint's and
Home Assistant's.

Scheme, host and port are all checked here (a port of 99999, ``host:abc`` or an unclosed ``[::1``
is a one-line config error, not a crash on the first connect), and so are credentials written
into a URL, which would otherwise end up on a log line.
"""

from __future__ import annotations

import re
from urllib.parse import SplitResult, urlsplit

from agentpi.settings.typed import SettingsError
from agentpi.system.net import is_loopback
from agentpi.tools.settings import HomeAssistantConfig

ConfigError = SettingsError


def parse_url(key: str, url: str, schemes: tuple[str, ...], hint: str) -> SplitResult:
    """``url`` split, with a host and a valid port, in one of ``schemes``."""
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number in 0..65535
    except ValueError as exc:
        reason = str(exc)[:1].lower() + str(exc)[1:]
        raise ConfigError(f"{key} = {url!r}: not a valid URL ({reason}); {hint}") from None
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"{key} = {url!r}: {hint}")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{key} = {url!r}: port {port} is not one of 1 to 65535")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"{key}: a user or password in the URL is not allowed (it would be logged)"
        )
    if parts.fragment:
        raise ConfigError(f"{key} = {url!r}: remove the #fragment")
    return parts


def check_agent_url(url: str) -> None:
    hint = (
        "use wss://HOST (default wss://api.elevenlabs.io), or ws://127.0.0.1:PORT for the simulator"
    )
    parts = parse_url("agent.url", url, ("wss", "ws"), hint)
    if parts.query:
        raise ConfigError(f"agent.url = {url!r}: give the base URL only, without ?query")
    if parts.scheme == "ws" and not is_loopback(parts.hostname or ""):
        raise ConfigError(
            f"agent.url = {url!r}: plain ws:// is only allowed to this machine (loopback); "
            "use wss:// for remote hosts"
        )


def check_endpoint_url(url: str) -> None:
    hint = "use https://HOST/... (plain http:// only to this machine)"
    parts = parse_url("agent.signed_url_endpoint", url, ("https", "http"), hint)
    if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
        raise ConfigError(f"agent.signed_url_endpoint = {url!r}: {hint}")


HOME_NAME = re.compile(r"[a-z_]{1,40}(\.[a-z0-9_]{1,100})?")


def check_home_assistant(home: HomeAssistantConfig) -> None:
    """The URL the token goes to (never over plain text to another machine), and the names."""
    if home.url:
        hint = "use https://HOST:8123 (plain http:// only to this machine: the token would show)"
        parts = parse_url("home_assistant.url", home.url, ("https", "http"), hint)
        if parts.scheme == "http" and not is_loopback(parts.hostname or ""):
            raise ConfigError(f"home_assistant.url = {home.url!r}: {hint}")
        if parts.query or parts.path.strip("/"):
            raise ConfigError(f"home_assistant.url = {home.url!r}: give the base URL only")
    for domain in home.domains:
        if not re.fullmatch(r"[a-z_]{1,40}", domain):
            raise ConfigError(f"home_assistant.domains: {domain!r} is not a domain such as light")
    for entity in home.entities:
        if not HOME_NAME.fullmatch(entity) or "." not in entity:
            raise ConfigError(
                f"home_assistant.entities: {entity!r} is not an entity such as lock.front_door"
            )
