"""The local control socket: a kiosk's own software, or a person at a shell, drives the device.

One JSON object per line each way, on a UNIX socket only the owner and one group can open
(mode 0660). Requests:

    {"command": "status"}                      -> {"ok": true, "status": {...}}
    {"command": "start"}                       -> start a conversation, as a button press would
    {"command": "stop"}                        -> end the running one
    {"command": "say", "text": "...", "start": true}
                                               -> a user_message into the running conversation
                                                  (or, with start, a new one that opens with it)
    {"command": "context", "text": "..."}      -> a contextual_update into the running one
    {"command": "events"}                      -> {"ok": true}, then every event line, as --events

Every answer is {"ok": true, ...} or {"ok": false, "error": "what went wrong"}; a bad request
never closes the connection, let alone the device.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from agentpi import bounded_json
from agentpi.errors import AgentpiError
from agentpi.events import EventBus

MAX_REQUEST_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000
COMMANDS = ("status", "start", "stop", "say", "context", "events")


class ControlRequestError(AgentpiError, ValueError):
    """A request that cannot be carried out as sent; the message says why."""


@dataclass(frozen=True)
class ControlRequest:
    command: str
    text: str = ""
    start: bool = False


def parse_request(line: bytes) -> ControlRequest:
    try:
        data = bounded_json.load_object(line, MAX_REQUEST_BYTES)
    except bounded_json.JsonRefused as exc:
        raise ControlRequestError(f"not a JSON object: {exc}") from None
    command = data.get("command")
    if command not in COMMANDS:
        raise ControlRequestError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
    text = data.get("text", "")
    if command in ("say", "context"):
        if not isinstance(text, str) or not text.strip():
            raise ControlRequestError(f'{command} needs "text": a non-empty string')
        if len(text) > MAX_TEXT_CHARS:
            raise ControlRequestError(
                f"text is {len(text)} characters; at most {MAX_TEXT_CHARS} at a time"
            )
        if not text.isascii() and not _encodable(text):
            # JSON may spell a lone surrogate ("\ud800"); no UTF-8 frame can carry it
            raise ControlRequestError("text is not valid Unicode (a lone surrogate)")
    start = data.get("start", False)
    if not isinstance(start, bool):
        raise ControlRequestError('"start" must be true or false')
    return ControlRequest(command, text.strip() if isinstance(text, str) else "", start)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ControlledDevice(Protocol):
    events: EventBus

    def status(self) -> dict[str, Any]: ...

    def start_conversation(self, user_message: str | None = None) -> str | None: ...

    def stop_conversation(self) -> str | None: ...

    def send_user_message(self, text: str) -> str | None: ...

    def send_contextual_update(self, text: str) -> str | None: ...


def carry_out(request: ControlRequest, device: ControlledDevice) -> dict[str, Any]:
    """Everything but ``events`` (which turns the connection into a stream)."""
    command = request.command
    if command == "status":
        return {"ok": True, "status": device.status()}
    error: str | None
    if command == "start":
        error = device.start_conversation()
    elif command == "stop":
        error = device.stop_conversation()
    elif command == "context":
        error = device.send_contextual_update(request.text)
    else:
        error = device.send_user_message(request.text)
        if error is not None and request.start and device.status()["in_conversation"] is False:
            error = device.start_conversation(user_message=request.text)
            if error is None:
                return {"ok": True, "started": True}
    return {"ok": True} if error is None else {"ok": False, "error": error}


def encode_answer(reply: dict[str, Any]) -> bytes:
    return (json.dumps(reply, ensure_ascii=False, default=str) + "\n").encode()
