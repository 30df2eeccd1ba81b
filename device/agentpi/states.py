"""The device's states and the transitions allowed between them.

Written down as a table so that an impossible transition is an error you can see, not a silent
glitch in the LEDs.
"""

from __future__ import annotations

from enum import StrEnum

from agentpi.errors import LocalProtocolError


class DeviceState(StrEnum):
    IDLE = "idle"
    MUTED = "muted"
    """Idle with the microphone muted: no wake word, nothing heard (a button press still works)."""
    WAKE_DETECTED = "wake_detected"
    CONNECTING = "connecting"
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    SPEAKING = "speaking"
    WORKING = "working"
    """A tool the agent called is running (from its request to its response)."""
    AWAITING_APPROVAL = "awaiting_approval"
    """An MCP tool waits for the user's yes (a short press) or no (a long press)."""
    ENDING = "ending"
    ERROR = "error"
    OFFLINE = "offline"


_IN_CONVERSATION = {
    DeviceState.LISTENING,
    DeviceState.USER_SPEAKING,
    DeviceState.THINKING,
    DeviceState.SPEAKING,
    DeviceState.WORKING,
    DeviceState.AWAITING_APPROVAL,
}

ALLOWED_TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    DeviceState.IDLE: frozenset(
        {DeviceState.WAKE_DETECTED, DeviceState.CONNECTING, DeviceState.ERROR, DeviceState.OFFLINE}
    ),
    DeviceState.WAKE_DETECTED: frozenset(
        {DeviceState.CONNECTING, DeviceState.IDLE, DeviceState.ERROR}
    ),
    DeviceState.CONNECTING: frozenset(
        {
            DeviceState.LISTENING,
            DeviceState.ENDING,
            DeviceState.ERROR,
            DeviceState.OFFLINE,
            DeviceState.IDLE,
        }
    ),
    **{
        state: frozenset(
            (_IN_CONVERSATION - {state})
            | {DeviceState.ENDING, DeviceState.ERROR, DeviceState.OFFLINE, DeviceState.IDLE}
        )
        for state in _IN_CONVERSATION
    },
    DeviceState.ENDING: frozenset({DeviceState.IDLE, DeviceState.ERROR, DeviceState.OFFLINE}),
    DeviceState.ERROR: frozenset({DeviceState.IDLE, DeviceState.CONNECTING, DeviceState.OFFLINE}),
    DeviceState.OFFLINE: frozenset({DeviceState.IDLE, DeviceState.CONNECTING, DeviceState.ERROR}),
}


# muted is idle with the microphone off: reached from wherever idle is, and leading where idle does
for _state, _allowed in list(ALLOWED_TRANSITIONS.items()):
    if DeviceState.IDLE in _allowed:
        ALLOWED_TRANSITIONS[_state] = _allowed | {DeviceState.MUTED}
ALLOWED_TRANSITIONS[DeviceState.MUTED] = ALLOWED_TRANSITIONS[DeviceState.IDLE] | {DeviceState.IDLE}
ALLOWED_TRANSITIONS[DeviceState.IDLE] |= {DeviceState.MUTED}


class InvalidTransition(LocalProtocolError):
    def __init__(self, old: DeviceState, new: DeviceState) -> None:
        super().__init__(f"device state cannot go from {old.value} to {new.value}")
        self.old = old
        self.new = new


def check_transition(old: DeviceState, new: DeviceState) -> None:
    if new not in ALLOWED_TRANSITIONS[old]:
        raise InvalidTransition(old, new)
