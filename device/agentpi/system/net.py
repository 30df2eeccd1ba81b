"""Facts about network addresses that config checks and the client share."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def is_loopback(host: str) -> bool:
    """Whether ``host`` never leaves this machine (where plain ws:// and http:// are fine)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


DEFAULT_PORTS = {"wss": 443, "https": 443, "ws": 80, "http": 80}


def host_of(url: str) -> tuple[str, int] | None:
    """The host and port ``url`` connects to, or None when it names no host."""
    parts = urlsplit(url)
    try:
        port = parts.port or DEFAULT_PORTS.get(parts.scheme, 443)
    except ValueError:
        return None
    return (parts.hostname, port) if parts.hostname else None
