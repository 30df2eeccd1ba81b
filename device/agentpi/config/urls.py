"""The URLs a config may name, parsed whole at load: the agent's and the signed-URL endpoint's.

Scheme, host and port are all checked here (a port of 99999, ``host:abc`` or an unclosed ``[::1``
is a one-line config error, not a crash on the first connect), and so are credentials written
into a URL, which would otherwise end up on a log line.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from agentpi.settings.typed import SettingsError
from agentpi.system.net import is_loopback

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
