"""A conversation's life as a table, in the style of h11's ``_state.py``.

One conversation goes through five phases:

    CONNECTING --connection_opened--> AWAITING_METADATA --metadata--> OPEN
         |                                   |                          |
         |               request_end, timeout, unsupported format, end_call, silence ...
         |                                   v                          v
         +---------connection_closed-----> CLOSING --connection_closed--> CLOSED
                  (from any phase)

For every phase, ``RULES`` says how each input is handled and where it may lead: every server
event (keyed by its class, as h11 keys its table by event type), every call the device makes and
the clock (a ``DeviceInput``). A ``Rule`` names the answer and the phases the input may move the
conversation to (it may always stay); there is no input a phase does not name, which a test checks,
and the property test checks every move against the rule. Only ``MISUSE`` raises
(``LocalProtocolError``: the adapter broke the contract); what the server sends never does.

While OPEN, who has the floor is the ``Turn``, moved by ``TURNS``; what the LEDs and the
transcript show (``DeviceState``) is derived from the phase, the turn, and whether a tool is at work
or an approval is asked, by ``device_state``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, StrEnum

from agentpi.protocol import messages as m
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


class DeviceInput(StrEnum):
    """Every call the device (and the clock) makes on the session."""

    CONNECTION_OPENED = "connection_opened"
    INVALID_FRAME = "invalid_frame"
    MIC_AUDIO = "mic_audio"
    PLAYBACK_DRAINED = "playback_drained"
    TOOL_FINISHED = "tool_finished"
    APPROVAL_ANSWERED = "approval_answered"
    """The user (button, control socket, MQTT) answered an MCP tool's approval request."""
    FEEDBACK = "feedback"
    USER_MESSAGE = "user_message"
    CONTEXTUAL_UPDATE = "contextual_update_from_device"
    END_AFTER_TURN = "end_after_turn"
    REQUEST_END = "request_end"
    TICK = "tick"
    CONNECTION_CLOSED = "connection_closed"


ServerEventClass = type[m.ServerEvent]
Input = ServerEventClass | DeviceInput

SERVER_EVENT_CLASSES: tuple[ServerEventClass, ...] = (
    *m.SERVER_EVENT_TYPES.values(),
    m.ContextualUpdate,  # also a client message: the server may echo it
    m.UnknownEvent,  # any type this client does not model
)
"""Every server event the session tells apart: the one registry's, and the two outside it."""

INPUTS: tuple[Input, ...] = (*SERVER_EVENT_CLASSES, *DeviceInput)

_WIRE_NAMES: dict[ServerEventClass, str] = {
    **{cls: kind for kind, cls in m.SERVER_EVENT_TYPES.items()},
    m.ContextualUpdate: m.ContextualUpdate.type,
    m.UnknownEvent: "unknown",
}


def input_name(key: Input) -> str:
    """How an input is named in events and errors (a server event by its wire type)."""
    if isinstance(key, DeviceInput):
        return key.value
    return _WIRE_NAMES[key]


@dataclass(frozen=True)
class Rule:
    handling: Handling
    goes_to: frozenset[Phase] = frozenset()
    """The phases acting on the input may move the conversation to (it may also stay)."""


_A, _H, _N, _I, _R, _D, _M = (
    Handling.ACT,
    Handling.HOLD,
    Handling.NOTE,
    Handling.IGNORE,
    Handling.REJECT,
    Handling.DROP,
    Handling.MISUSE,
)


def _to(*phases: Phase) -> Rule:
    return Rule(Handling.ACT, frozenset(phases))


def _table(default: Handling, special: Mapping[Input, Handling | Rule]) -> dict[Input, Rule]:
    unknown = set(special) - set(INPUTS)
    if unknown:
        raise ValueError(f"not session inputs: {sorted(map(str, unknown))}")
    rules: dict[Input, Rule] = {}
    for key in INPUTS:
        cell = special.get(key, default)
        rules[key] = cell if isinstance(cell, Rule) else Rule(cell)
    return rules


_CLOSES = _to(Phase.CLOSING)
_ENDS = _to(Phase.CLOSED)
_IN = DeviceInput

RULES: dict[Phase, dict[Input, Rule]] = {
    # before the socket is reported open nothing but the open (or its failure) can happen
    # (the orchestrator reports the open at once; an end asked before it would have to close
    # a socket that said nothing yet)
    Phase.CONNECTING: _table(
        _M,
        {
            _IN.CONNECTION_OPENED: _to(Phase.AWAITING_METADATA),
            _IN.CONNECTION_CLOSED: _ENDS,
            _IN.USER_MESSAGE: _H,
            _IN.CONTEXTUAL_UPDATE: _H,
            _IN.APPROVAL_ANSWERED: _I,
            _IN.FEEDBACK: _I,
            _IN.PLAYBACK_DRAINED: _D,
            _IN.TOOL_FINISHED: _D,
            _IN.TICK: _D,
        },
    ),
    Phase.AWAITING_METADATA: _table(
        _R,  # a server that talks before its metadata is at fault; the event is dropped
        {
            m.ConversationInitiationMetadata: _to(Phase.OPEN, Phase.CLOSING),
            m.Ping: _A,
            m.ErrorEvent: _A,
            m.UnknownEvent: _A,
            # facts about the agent's set-up, harmless whenever they come
            m.AsrInitiationMetadata: _A,
            m.McpConnectionStatus: _A,
            _IN.CONNECTION_OPENED: _M,
            _IN.INVALID_FRAME: _A,
            _IN.MIC_AUDIO: _M,  # no input format yet: StartAudio has not been given
            _IN.PLAYBACK_DRAINED: _D,
            _IN.TOOL_FINISHED: _D,
            _IN.APPROVAL_ANSWERED: _I,
            _IN.FEEDBACK: _I,
            _IN.USER_MESSAGE: _H,
            _IN.CONTEXTUAL_UPDATE: _H,
            _IN.END_AFTER_TURN: _A,
            _IN.REQUEST_END: _CLOSES,
            _IN.TICK: _CLOSES,
            _IN.CONNECTION_CLOSED: _ENDS,
        },
    ),
    Phase.OPEN: _table(
        _A,
        {
            m.ConversationInitiationMetadata: _I,  # a second one changes nothing
            m.AgentToolResponse: _CLOSES,  # end_call
            _IN.CONNECTION_OPENED: _M,
            _IN.PLAYBACK_DRAINED: _CLOSES,  # end_call's goodbye has played
            _IN.REQUEST_END: _CLOSES,
            _IN.TICK: _CLOSES,
            _IN.CONNECTION_CLOSED: _ENDS,
        },
    ),
    Phase.CLOSING: _table(
        _A,  # transcripts and text are still reported; a ping still gets its pong
        {
            m.ConversationInitiationMetadata: _N,
            m.Audio: _D,
            m.ClientToolCall: _I,  # no result could be sent any more
            m.McpToolCall: _I,  # nor an approval
            _IN.CONNECTION_OPENED: _M,
            _IN.MIC_AUDIO: _D,
            _IN.TOOL_FINISHED: _D,
            _IN.APPROVAL_ANSWERED: _I,
            _IN.FEEDBACK: _I,
            _IN.USER_MESSAGE: _D,
            _IN.CONTEXTUAL_UPDATE: _D,
            _IN.END_AFTER_TURN: _D,
            _IN.REQUEST_END: _D,
            _IN.TICK: _D,
            _IN.CONNECTION_CLOSED: _ENDS,
        },
    ),
    Phase.CLOSED: _table(_D, {_IN.CONNECTION_OPENED: _M}),
}


class Turn(StrEnum):
    LISTENING = "listening"
    USER_SPEAKING = "user_speaking"
    THINKING = "thinking"
    """The user's turn is over (transcript or typed message); the agent owes a reply."""
    SPEAKING = "speaking"


class TurnCue(StrEnum):
    """What moves the floor while the conversation is open."""

    SPEECH_STARTED = "speech_started"
    """The device's VAD heard the user start."""
    SPEECH_ENDED = "speech_ended"
    USER_TURN_OVER = "user_turn_over"
    """A transcript, or a typed message: the agent owes a reply."""
    AGENT_AUDIO = "agent_audio"
    AGENT_STOPPED = "agent_stopped"
    """Its audio played out, was interrupted, or an error cut it."""
    AGENT_STOPPED_OVER_SPEECH = "agent_stopped_over_speech"
    """...while the user was speaking (a barge-in): the floor is the user's at once."""


_T = Turn
TURNS: dict[Turn, dict[TurnCue, Turn]] = {
    _T.LISTENING: {
        TurnCue.SPEECH_STARTED: _T.USER_SPEAKING,
        TurnCue.USER_TURN_OVER: _T.THINKING,
        TurnCue.AGENT_AUDIO: _T.SPEAKING,
    },
    _T.USER_SPEAKING: {
        TurnCue.SPEECH_ENDED: _T.LISTENING,
        TurnCue.USER_TURN_OVER: _T.THINKING,
        TurnCue.AGENT_AUDIO: _T.SPEAKING,
    },
    _T.THINKING: {
        TurnCue.SPEECH_STARTED: _T.USER_SPEAKING,
        TurnCue.AGENT_AUDIO: _T.SPEAKING,
    },
    _T.SPEAKING: {
        TurnCue.AGENT_STOPPED: _T.LISTENING,
        TurnCue.AGENT_STOPPED_OVER_SPEECH: _T.USER_SPEAKING,
    },
}
"""Who has the floor next; a cue a turn does not name leaves it as it is (the user's speech
while the agent speaks is the agent's to interrupt, not the device's)."""


def next_turn(turn: Turn, cue: TurnCue) -> Turn:
    return TURNS[turn].get(cue, turn)


def device_state(
    phase: Phase,
    turn: Turn,
    closed_shows: DeviceState = DeviceState.IDLE,
    asking: bool = False,
    working: bool = False,
) -> DeviceState:
    """What the device shows for a conversation in ``phase`` (``closed_shows``: once closed, as
    the failure table says: idle, error or offline; ``asking``: an MCP tool waits for the
    user's approval; ``working``: a tool is running)."""
    if phase in (Phase.CONNECTING, Phase.AWAITING_METADATA):
        return DeviceState.CONNECTING
    if phase is Phase.OPEN:
        if asking:
            return DeviceState.AWAITING_APPROVAL
        if working and turn in (Turn.LISTENING, Turn.THINKING):
            return DeviceState.WORKING
        return DeviceState(turn.value)
    if phase is Phase.CLOSING:
        return DeviceState.ENDING
    return closed_shows
