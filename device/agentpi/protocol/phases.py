"""A conversation's life as a table, in the style of h11's ``_state.py``.

One conversation goes through five phases:

    CONNECTING --connection_opened--> AWAITING_METADATA --metadata--> OPEN
         |                                   |                          |
         |               request_end, timeout, unsupported format, end_call, silence ...
         |                                   v                          v
         +---------connection_closed-----> CLOSING --connection_closed--> CLOSED
                  (from any phase)

For every phase, ``RULES`` says how each input is handled: every server event type, every call
the device makes and the clock. ``Handling`` names the answer; there is no input a phase does not
name, which a test checks. Only ``MISUSE`` raises (``LocalProtocolError``: the adapter broke the
contract); what the server sends never does.

While OPEN, who has the floor is the ``Turn``; what the LEDs and the transcript show
(``DeviceState``) is derived from the phase and the turn by ``device_state``.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from agentpi.states import DeviceState


class Phase(StrEnum):
    CONNECTING = "connecting"
    """The session exists; the socket has not been reported open."""
    AWAITING_METADATA = "awaiting_metadata"
    """Our initiation data is sent; the server has not yet said which audio formats to use."""
    OPEN = "open"
    CLOSING = "closing"
    """We asked the socket to close; pongs still go out, nothing else does."""
    CLOSED = "closed"


class Turn(StrEnum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    """The user's turn is over (transcript or typed message); the agent owes a reply."""
    SPEAKING = "speaking"


class Handling(Enum):
    ACT = "act"
    """The phase's rule applies."""
    HOLD = "hold"
    """Kept, and acted on once the phase allows it (device text before the metadata)."""
    NOTE = "note"
    """Facts kept for the record, no action (a metadata that arrives while closing)."""
    IGNORE = "ignore"
    """Dropped, with an ``ignored`` debug event (meaningless now, not the peer's fault)."""
    REJECT = "reject"
    """Dropped, reported as the peer's protocol error (e.g. audio before the metadata)."""
    DROP = "drop"
    """Dropped without a word: expected traffic at the edges of the life (late audio, after
    the end)."""
    MISUSE = "misuse"
    """The device called out of order: ``LocalProtocolError``."""


SERVER_EVENTS: tuple[str, ...] = (
    "conversation_initiation_metadata",
    "ping",
    "audio",
    "interruption",
    "user_transcript",
    "tentative_user_transcript",
    "agent_response",
    "agent_response_correction",
    "agent_response_complete",
    "client_tool_call",
    "vad_score",
    "internal_tentative_agent_response",
    "agent_chat_response_part",
    "agent_tool_response",
    "contextual_update",
    "error",
    "unknown",
)
"""Every server event type the session tells apart ("unknown": any other type)."""

DEVICE_INPUTS: tuple[str, ...] = (
    "connection_opened",
    "invalid_frame",
    "mic_audio",
    "playback_drained",
    "tool_finished",
    "user_message",
    "contextual_update_from_device",
    "end_after_turn",
    "request_end",
    "tick",
    "connection_closed",
)
"""Every call the device (and the clock) makes on the session."""

INPUTS = SERVER_EVENTS + DEVICE_INPUTS

_A, _H, _N, _I, _R, _D, _M = (
    Handling.ACT,
    Handling.HOLD,
    Handling.NOTE,
    Handling.IGNORE,
    Handling.REJECT,
    Handling.DROP,
    Handling.MISUSE,
)


def _table(default: Handling, **special: Handling) -> dict[str, Handling]:
    unknown = set(special) - set(INPUTS)
    if unknown:
        raise ValueError(f"not session inputs: {sorted(unknown)}")
    return {name: special.get(name, default) for name in INPUTS}


RULES: dict[Phase, dict[str, Handling]] = {
    # before the socket is reported open nothing but the open (or its failure) can happen
    # (the orchestrator reports the open at once; an end asked before it would have to close
    # a socket that said nothing yet)
    Phase.CONNECTING: _table(
        _M,
        connection_opened=_A,
        connection_closed=_A,
        user_message=_H,
        contextual_update_from_device=_H,
        playback_drained=_D,
        tool_finished=_D,
        tick=_D,
    ),
    Phase.AWAITING_METADATA: _table(
        _R,  # a server that talks before its metadata is at fault; the event is dropped
        conversation_initiation_metadata=_A,
        ping=_A,
        error=_A,
        unknown=_A,
        connection_opened=_M,
        invalid_frame=_A,
        mic_audio=_M,  # no input format yet: StartAudio has not been given
        playback_drained=_D,
        tool_finished=_D,
        user_message=_H,
        contextual_update_from_device=_H,
        end_after_turn=_A,
        request_end=_A,
        tick=_A,
        connection_closed=_A,
    ),
    Phase.OPEN: _table(
        _A,
        conversation_initiation_metadata=_I,  # a second one changes nothing
        connection_opened=_M,
    ),
    Phase.CLOSING: _table(
        _A,  # transcripts and text are still reported; a ping still gets its pong
        conversation_initiation_metadata=_N,
        audio=_D,
        client_tool_call=_I,  # no result could be sent any more
        connection_opened=_M,
        mic_audio=_D,
        tool_finished=_D,
        user_message=_D,
        contextual_update_from_device=_D,
        end_after_turn=_D,
        request_end=_D,
        tick=_D,
    ),
    Phase.CLOSED: _table(_D, connection_opened=_M),
}


def device_state(phase: Phase, turn: Turn, failed: bool) -> DeviceState:
    """What the device shows for a conversation in ``phase`` (``failed``: it ended in error)."""
    if phase in (Phase.CONNECTING, Phase.AWAITING_METADATA):
        return DeviceState.CONNECTING
    if phase is Phase.OPEN:
        return DeviceState(turn.value)
    if phase is Phase.CLOSING:
        return DeviceState.ENDING
    return DeviceState.ERROR if failed else DeviceState.IDLE
