"""How a conversation that went wrong is shown and retried: one table, from the server's
``error_type`` (the 2026 definition's list), the close code when it names none, or the way the
connect failed, to the cue, the lights, the name in the event line and the MQTT status, and the
retry.

Retry: ``now``: not the link's fault (the user said nothing for a minute, the call reached its
maximum length): no pause. ``backoff``: the service or the network failed; the next conversation
the device starts itself waits, doubling. ``longest``: a setting is wrong (the agent refuses an
override, a variable is missing, the key is refused); no retry fixes it, so the device waits its
longest pause between attempts until a person does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from agentpi.protocol.actions import ConversationEnded
from agentpi.states import DeviceState

Retry = Literal["now", "backoff", "longest"]


@dataclass(frozen=True)
class Failure:
    name: str
    """The ``failure`` of the conversation_ended (or connect_failed) line and the MQTT status."""
    cue: Literal["end", "error"]
    shows: DeviceState
    """What the lights show for a moment after it: error, offline, or nothing (idle)."""
    retry: Retry
    means: str


def _row(
    name: str, cue: Literal["end", "error"], shows: DeviceState, retry: Retry, means: str
) -> Failure:
    return Failure(name, cue, shows, retry, means)


_E, _O, _I = DeviceState.ERROR, DeviceState.OFFLINE, DeviceState.IDLE

_SERVICE = _row("service", "error", _E, "backoff", "the service failed; tried again later")
_SETTINGS = _row("settings", "error", _E, "longest", "a setting of the device or agent is wrong")
_REFUSED = _row("refused", "error", _E, "longest", "the service refused what the device sent")

BY_ERROR_TYPE: dict[str, Failure] = {
    "unknown": _SERVICE,
    "invalid_message": _REFUSED,
    "telephony_agent_error": _SETTINGS,
    "mcp_tool_error": _SETTINGS,
    "mcp_https_error": _SETTINGS,
    "value_error": _REFUSED,
    "missing_fields": _REFUSED,
    "override_error": _SETTINGS,
    "missing_dynamic_variable_transfer": _SETTINGS,
    "missing_dynamic_variable": _SETTINGS,
    "websocket_disconnect": _row("network", "error", _O, "backoff", "the link dropped"),
    "safety_violation": _row(
        "safety", "error", _E, "now", "the agent's safety rules ended it (what was said)"
    ),
    "llm_timeout": _row("llm_timeout", "error", _E, "backoff", "the language model was too slow"),
    "transport_receive_timeout": _row(
        "no_input", "end", _I, "now", "the service heard nothing for a minute"
    ),
    "asyncio_timeout": _SERVICE,
    "http_exception": _SERVICE,
    "max_duration_exceeded": _row(
        "max_duration", "end", _I, "now", "the agent's maximum call length was reached"
    ),
    "llm_error": _SERVICE,
    "custom_llm_error": _SERVICE,
    "cascade_brain_error": _SERVICE,
    "asr_transcription_error": _SERVICE,
    "vad_error": _SERVICE,
    "turn_probability_error": _SERVICE,
    "tts_cascade_error": _SERVICE,
    "redis_timeout_error": _SERVICE,
    "unknown_websocket_crash": _SERVICE,
}
"""Every ``error_type`` of the definition's ``ErrorType``."""

BY_CLOSE_CODE: dict[int | None, Failure] = {
    1002: _SERVICE,
    1008: _REFUSED,
    1011: _SERVICE,
    None: _row("network", "error", _O, "backoff", "the connection was lost"),
}
"""When the server names no error_type: its close code (None: no close frame at all)."""

OTHER_CLOSE = _row("closed", "error", _E, "backoff", "closed with an unexpected code")
DEVICE = _row("device", "error", _E, "now", "the device failed (its microphone, speaker...)")

BY_CONNECT: dict[int | str, Failure] = {
    401: _row("auth", "error", _E, "longest", "the API key or signed URL was refused"),
    403: _row("auth", "error", _E, "longest", "the API key or signed URL was refused"),
    429: _row("quota", "error", _E, "longest", "the account's quota or concurrency is used up"),
    "offline": _row("offline", "error", _O, "backoff", "no network, or the service is away"),
    "refused": _row("connect", "error", _E, "backoff", "the service refused the connection"),
}
"""A conversation that never opened: the handshake's HTTP status, or no network."""


ALL_FAILURES: tuple[Failure, ...] = tuple(
    {
        row.name: row
        for row in (
            *BY_ERROR_TYPE.values(),
            *BY_CLOSE_CODE.values(),
            OTHER_CLOSE,
            DEVICE,
            *BY_CONNECT.values(),
        )
    }.values()
)
"""Every row, once by name (what an event entity may report)."""


def failure_of(ended: ConversationEnded) -> Failure | None:
    """The row for a conversation that ended in error (None: it ended well)."""
    if ended.error is None:
        return None
    if ended.reason == "device failure":
        return DEVICE
    if ended.error_type is not None:
        return BY_ERROR_TYPE.get(ended.error_type, _SERVICE)
    return BY_CLOSE_CODE.get(ended.code, OTHER_CLOSE)


def connect_failure(status: int | None, offline: bool) -> Failure:
    if offline:
        return BY_CONNECT["offline"]
    return BY_CONNECT.get(status or 0, BY_CONNECT["refused"])
