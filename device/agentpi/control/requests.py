"""The local control socket: a kiosk's own software, or a person at a shell, drives the device.

One JSON object per line each way, on a UNIX socket only the owner and one group can open
(mode 0660). Requests:

    {"command": "status"}                      -> {"ok": true, "status": {...}}
    {"command": "start"}                       -> start a conversation, as a button press would
    {"command": "stop"}                        -> end the running one
    {"command": "say", "text": "...", "start": true}
                                               -> a user_message into the running conversation
                                                  (or, with start, a new one that opens with it)
    {"command": "context", "text": "...", "id": "kitchen"}
                                               -> a contextual_update into the running one (with
                                                  an id, the agent keeps only the latest of it)
    {"command": "approve"} / {"command": "deny"}
                                               -> answer the MCP tool call waiting for approval
                                                  (the oldest, or "tool_call_id")
    {"command": "feedback", "score": "like"}   -> rate the agent's last answer (like, dislike)
    {"command": "announce", "text": "..."}     -> the agent says the sentence: a conversation that
                                                  opens with it and ends after it, or, while one
                                                  runs, a request to read it out
    {"command": "start", "first_message": "...", "instructions": "..."}
                                               -> a conversation that opens with those words and
                                                  that background, then goes on as usual
    {"command": "mute", "on": true}            -> the microphone off (no wake word, nothing heard
                                                  but in a conversation the button starts)
    {"command": "wake_word", "model": "alexa"} -> only that wake word starts a conversation
                                                  ("all": any of them)
    {"command": "events"}                      -> {"ok": true}, then every event line, as --events

Every answer is {"ok": true, ...} or {"ok": false, "error": "what went wrong"}; a bad request
never closes the connection, let alone the device.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Protocol

from agentpi import bounded_json
from agentpi.errors import AgentpiError
from agentpi.events import EventBus

MAX_REQUEST_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000
COMMANDS = (
    "status",
    "start",
    "stop",
    "say",
    "context",
    "approve",
    "deny",
    "feedback",
    "announce",
    "mute",
    "wake_word",
    "events",
)
SCORES = ("like", "dislike")
MAX_ID_CHARS = 128


class ControlRequestError(AgentpiError, ValueError):
    """A request that cannot be carried out as sent; the message says why."""


@dataclass(frozen=True)
class Opening:
    """How a conversation asked for over the control socket or MQTT begins: the agent's first
    words (a first_message override), background for the agent, and for an announcement, the
    end once those words are said."""

    first_message: str | None = None
    instructions: str | None = None
    announcement: bool = False


@dataclass(frozen=True)
class ControlRequest:
    command: str
    text: str = ""
    start: bool = False
    context_id: str | None = None
    tool_call_id: str | None = None
    score: str | None = None
    first_message: str | None = None
    instructions: str | None = None
    on: bool = True
    model: str | None = None


def parse_request(line: bytes) -> ControlRequest:
    try:
        data = bounded_json.load_object(line, MAX_REQUEST_BYTES)
    except bounded_json.JsonRefused as exc:
        raise ControlRequestError(f"not a JSON object: {exc}") from None
    command = data.get("command")
    if command not in COMMANDS:
        raise ControlRequestError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
    text = data.get("text", "")
    if command in ("say", "context", "announce"):
        _check_text(text, f'{command} needs "text"', "text")
    start = data.get("start", False)
    if not isinstance(start, bool):
        raise ControlRequestError('"start" must be true or false')
    score = data.get("score")
    if command == "feedback" and score not in SCORES:
        raise ControlRequestError(f'feedback needs "score": {" or ".join(SCORES)}')
    on = data.get("on", True)
    if not isinstance(on, bool):
        raise ControlRequestError('"on" must be true or false')
    model = data.get("model")
    if command == "wake_word" and (
        not isinstance(model, str) or not re.fullmatch(r"[\w.-]{1,64}", model)
    ):
        raise ControlRequestError('wake_word needs "model": a wake word\'s name, or "all"')
    opening = {}
    for key in ("first_message", "instructions"):
        value = data.get(key)
        if value is not None:
            _check_text(value, f'"{key}" must be', key)
            opening[key] = value.strip()
    return ControlRequest(
        command,
        text.strip() if isinstance(text, str) else "",
        start,
        context_id=_optional_id(data, "id"),
        tool_call_id=_optional_id(data, "tool_call_id"),
        score=score if command == "feedback" else None,
        on=on,
        model=model if command == "wake_word" else None,
        **opening,
    )


def _check_text(text: object, needs: str, name: str) -> None:
    if not isinstance(text, str) or not text.strip():
        raise ControlRequestError(f"{needs}: a non-empty string")
    if len(text) > MAX_TEXT_CHARS:
        raise ControlRequestError(
            f"{name} is {len(text)} characters; at most {MAX_TEXT_CHARS} at a time"
        )
    if not text.isascii() and not _encodable(text):
        # JSON may spell a lone surrogate ("\ud800"); no UTF-8 frame can carry it
        raise ControlRequestError(f"{name} is not valid Unicode (a lone surrogate)")


def _optional_id(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_ID_CHARS:
        raise ControlRequestError(f'"{key}" must be a non-empty string of at most {MAX_ID_CHARS}')
    if not _encodable(value):
        raise ControlRequestError(f'"{key}" is not valid Unicode (a lone surrogate)')
    return value.strip()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ControlledDevice(Protocol):
    events: EventBus

    def status(self) -> dict[str, Any]: ...

    def start_conversation(
        self, user_message: str | None = None, opening: Opening | None = None
    ) -> str | None: ...

    def announce(self, text: str) -> str | None: ...

    def set_muted(self, muted: bool) -> str | None: ...

    def choose_wake_word(self, model: str) -> str | None: ...

    def stop_conversation(self) -> str | None: ...

    def send_user_message(self, text: str) -> str | None: ...

    def send_contextual_update(self, text: str, context_id: str | None = None) -> str | None: ...

    def answer_approval(
        self, approved: bool, by: str, tool_call_id: str | None = None
    ) -> str | None: ...

    def send_feedback(self, score: str) -> str | None: ...


def carry_out(
    request: ControlRequest, device: ControlledDevice, origin: str = "control"
) -> dict[str, Any]:
    """Everything but ``events`` (which turns the connection into a stream); ``origin`` (control,
    mqtt) is who answered an approval, in its event line."""
    command = request.command
    if command == "status":
        return {"ok": True, "status": device.status()}
    error: str | None
    if command == "start":
        opening = None
        if request.first_message is not None or request.instructions is not None:
            opening = Opening(request.first_message, request.instructions)
        error = device.start_conversation(opening=opening)
    elif command == "announce":
        error = device.announce(request.text)
    elif command == "mute":
        error = device.set_muted(request.on)
    elif command == "wake_word":
        assert request.model is not None  # parse_request insists
        error = device.choose_wake_word(request.model)
    elif command == "stop":
        error = device.stop_conversation()
    elif command == "context":
        error = device.send_contextual_update(request.text, request.context_id)
    elif command in ("approve", "deny"):
        error = device.answer_approval(command == "approve", origin, request.tool_call_id)
    elif command == "feedback":
        assert request.score is not None  # parse_request insists
        error = device.send_feedback(request.score)
    else:
        error = device.send_user_message(request.text)
        if error is not None and request.start and device.status()["in_conversation"] is False:
            error = device.start_conversation(user_message=request.text)
            if error is None:
                return {"ok": True, "started": True}
    return {"ok": True} if error is None else {"ok": False, "error": error}


def encode_answer(reply: dict[str, Any]) -> bytes:
    return (json.dumps(reply, ensure_ascii=False, default=str) + "\n").encode()
