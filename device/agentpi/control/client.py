"""The other end of the control socket, for `agentpi say`, `status`, `events`, `start`, `stop`."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from agentpi import bounded_json
from agentpi.control.paths import SYSTEM_SOCKET, user_socket_path
from agentpi.errors import AgentpiError

SOCKET_ENV = "AGENTPI_CONTROL_SOCKET"
REPLY_TIMEOUT_S = 10.0


class ControlClientError(AgentpiError):
    """No device to talk to, or it said no; the message is for the person at the shell."""


def find_socket(explicit: str | None = None) -> Path:
    """--socket, else $AGENTPI_CONTROL_SOCKET, else the service's, else a hand-run device's."""
    if explicit:
        return Path(explicit)
    if os.environ.get(SOCKET_ENV):
        return Path(os.environ[SOCKET_ENV])
    candidates = list(dict.fromkeys((SYSTEM_SOCKET, user_socket_path())))  # root: one path
    for candidate in candidates:
        if candidate.exists():
            return candidate
    places = " or ".join(str(path) for path in candidates)
    raise ControlClientError(
        f"no agentpi is running: no control socket at {places} "
        "(is the service up? systemctl status agentpi)"
    )


def _connect(path: Path, timeout: float | None) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(str(path))
    except PermissionError:
        sock.close()
        raise ControlClientError(
            f"no permission to use {path}: add yourself to its group "
            "(sudo usermod -aG agentpi $USER, then log in again)"
        ) from None
    except OSError as exc:
        sock.close()
        raise ControlClientError(
            f"no agentpi is listening on {path}: {exc.strerror or exc}"
        ) from None
    return sock


def request(
    path: Path, payload: dict[str, Any], timeout: float = REPLY_TIMEOUT_S
) -> dict[str, Any]:
    """One request, one answer."""
    with _connect(path, timeout) as sock:
        # a device with every slot taken answers at once and hangs up: its answer is still there
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(json.dumps(payload).encode() + b"\n")
        with sock.makefile("rb") as stream:
            try:
                line = stream.readline()
            except TimeoutError:
                raise ControlClientError(
                    f"the device did not answer within {timeout:g} s"
                ) from None
    if not line:
        raise ControlClientError("the device closed the connection without answering")
    return _object(line)


def event_lines(path: Path) -> Iterator[str]:
    """Every event line the device emits from now on, until it stops."""
    with _connect(path, REPLY_TIMEOUT_S) as sock, sock.makefile("rwb") as stream:
        stream.write(b'{"command": "events"}\n')
        stream.flush()
        first = _object(stream.readline() or b"{}")
        if not first.get("ok"):
            raise ControlClientError(first.get("error", "the device refused the subscription"))
        sock.settimeout(None)  # from here on, quiet stretches are normal
        for line in stream:
            yield line.decode()


MAX_REPLY_BYTES = 4 * 1024 * 1024
"""A status document or an event line is a few KB; the device caps its lines well below this."""


def _object(line: bytes) -> dict[str, Any]:
    """One JSON object from the device, or a one-line error: not whatever the socket holds."""
    try:
        return bounded_json.load_object(line, MAX_REPLY_BYTES)
    except bounded_json.JsonRefused as exc:
        raise ControlClientError(f"the device answered what is not a JSON object: {exc}") from None
