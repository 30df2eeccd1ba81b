"""The conversation rules, with no I/O: events in, actions out.

``ConversationSession`` is fed what happens (the socket opened, a server message arrived, a
microphone chunk was captured, playback ran dry, a tool finished, time passed) and answers with
the actions the adapters must carry out (send a message, play or flush audio, change the device
state, report an event, run a tool, close the socket). Time is always passed in, never read, so
tests drive it as fast as they like.

The rules it owns:
- ``conversation_initiation_client_data`` is the first message sent;
- every ``ping`` gets a ``pong`` echoing its ``event_id``;
- after ``interruption`` N, playback is flushed and audio with ``event_id <= N`` is dropped;
- ``user_activity`` goes out while the user speaks (at onset, then every interval);
- the conversation closes with 1000 once the agent's turn is complete (``agent_response_complete``,
  or ``agent_response`` with its audio played out) and the user has then been silent for
  ``silence_close_s``;
- a server close or ``error`` ends it with the reason kept;
- a ``user_message`` or ``contextual_update`` from the device waits for the metadata, then goes
  out in order; a typed message is a user turn like a spoken one;
- a device request to end after the agent's turn (the end_conversation tool) lets the agent
  finish what it is saying first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentpi.audio.formats import AudioFormat
from agentpi.events import CONTEXT_SENT_EVENT
from agentpi.protocol.messages import (
    AgentChatResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentToolResponse,
    Audio,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    InternalTentativeAgentResponse,
    Interruption,
    Ping,
    Pong,
    ProtocolError,
    ServerEvent,
    TentativeUserTranscript,
    UnknownEvent,
    UserActivity,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    VadScore,
)
from agentpi.protocol.states import DeviceState, check_transition

NORMAL_CLOSE = 1000


@dataclass(frozen=True)
class SessionSettings:
    silence_close_s: float = 4.0
    """User silence after the agent's completed turn that ends the conversation."""
    user_activity_interval_s: float = 1.0
    metadata_timeout_s: float = 10.0
    """How long to wait for ``conversation_initiation_metadata`` after the socket opened."""
    response_audio_idle_s: float = 1.0
    """Fallback for servers without ``agent_response_complete``: an ``agent_response`` whose audio
    has stopped arriving for this long, and has played out, counts as a complete turn."""
    idle_close_s: float = 30.0
    """Close when neither side has done anything for this long (an agent that never answers)."""
    error_close_grace_s: float = 2.0
    """After a server ``error``, how long to wait for the server's own close before closing."""
    init: ConversationInitiationClientData = field(default_factory=ConversationInitiationClientData)


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Send:
    message: ClientMessage


@dataclass(frozen=True)
class PlayAudio:
    """Agent audio, still in the agent's output format, to queue for the speaker."""

    audio: bytes = field(repr=False)
    event_id: int


@dataclass(frozen=True)
class FlushPlayback:
    """Stop sound now and drop everything queued (an interruption)."""


@dataclass(frozen=True)
class SetState:
    state: DeviceState


@dataclass(frozen=True)
class Notify:
    """Something observable happened; becomes one line of the ``--events`` stream."""

    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunTool:
    call: ClientToolCall


@dataclass(frozen=True)
class CloseConnection:
    code: int
    reason: str


@dataclass(frozen=True)
class ConversationEnded:
    code: int | None
    reason: str
    closed_by: str  # "client" or "server"
    error: str | None = None


Action = (
    Send
    | PlayAudio
    | FlushPlayback
    | SetState
    | Notify
    | RunTool
    | CloseConnection
    | ConversationEnded
)


# --------------------------------------------------------------------------- the session


class SessionUsageError(RuntimeError):
    """The adapter called the session out of order (a bug in agentpi, not in the peer)."""


class ConversationSession:
    """One conversation with the agent, from socket open to socket close."""

    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.settings = settings or SessionSettings()
        self.state = DeviceState.CONNECTING
        self.metadata: ConversationInitiationMetadata | None = None
        self.input_format: AudioFormat | None = None
        self.output_format: AudioFormat | None = None
        self.ended = False
        self.last_interrupt_id: int | None = None
        self.dropped_audio_chunks = 0
        self.turns = 0

        self._opened_at: float | None = None
        self._closing = False
        self._local_error: str | None = None
        self._server_error: ErrorEvent | None = None
        self._server_error_at = 0.0
        self._pending_tools: set[str] = set()
        self._hangup_after_playback = False
        self._end_after_turn_at: float | None = None
        self._held_back: list[UserMessage | ContextualUpdate] = []

        self._playing = False
        self._drained_at = 0.0
        self._last_agent_audio_at = 0.0
        self._response_at: float | None = None
        self._complete_at: float | None = None
        self._last_activity_at = 0.0

        self._user_speaking = False
        self._last_speech_at = 0.0
        self._last_user_activity_sent = float("-inf")

    # ------------------------------------------------------------------ inputs

    def connection_opened(self, now: float) -> list[Action]:
        if self._opened_at is not None:
            raise SessionUsageError("connection_opened called twice")
        self._opened_at = now
        self._last_activity_at = now
        return [Send(self.settings.init)]

    def receive(self, event: ServerEvent, now: float) -> list[Action]:
        """A message from the server."""
        if self.ended:
            return []
        if self._opened_at is None:
            raise SessionUsageError("receive called before connection_opened")
        if isinstance(event, Ping):
            # Answered even while closing: a late pong costs nothing, a missing one looks dead.
            actions: list[Action] = [Send(Pong(event.event_id))]
            if event.ping_ms is not None:
                actions.append(Notify("latency", {"ping_ms": event.ping_ms}))
            return actions
        if isinstance(event, ConversationInitiationMetadata):
            return self._on_metadata(event, now)
        if isinstance(event, ErrorEvent):
            return self._on_error(event, now)
        if self.metadata is None and not isinstance(event, UnknownEvent):
            return [Notify("protocol_error", {"message": f"{event.type} before metadata; ignored"})]
        return self._dispatch(event, now)

    def receive_invalid(self, error: ProtocolError, now: float) -> list[Action]:
        """A frame that could not be decoded: reported once, otherwise ignored."""
        if self.ended:
            return []
        return [Notify("protocol_error", {"message": str(error)})]

    def mic_audio(self, chunk: bytes, speaking: bool, now: float) -> list[Action]:
        """A captured chunk, already in the agent's input format, and the local VAD verdict."""
        if self.metadata is None:
            raise SessionUsageError("mic_audio before conversation_initiation_metadata")
        if self._closing or self.ended:
            return []
        actions: list[Action] = []
        if speaking:
            self._last_speech_at = now
            self._last_activity_at = now
            if not self._user_speaking:
                self._user_speaking = True
                if self.state in (DeviceState.LISTENING, DeviceState.THINKING):
                    self._set_state(DeviceState.USER_SPEAKING, actions)
            if now - self._last_user_activity_sent >= self.settings.user_activity_interval_s:
                self._last_user_activity_sent = now
                actions.append(Send(UserActivity()))
        elif self._user_speaking:
            self._user_speaking = False
            if self.state is DeviceState.USER_SPEAKING:
                self._set_state(DeviceState.LISTENING, actions)
        actions.append(Send(UserAudioChunk(chunk)))
        return actions

    def playback_drained(self, now: float) -> list[Action]:
        """The speaker has played everything it was given."""
        if not self._playing or self.ended:
            return []
        self._playing = False
        self._drained_at = now
        self._last_activity_at = now
        actions: list[Action] = []
        if self.state is DeviceState.SPEAKING:
            next_state = DeviceState.USER_SPEAKING if self._user_speaking else DeviceState.LISTENING
            self._set_state(next_state, actions)
        if self._hangup_after_playback:
            actions += self._close(NORMAL_CLOSE, "agent ended the call")
        return actions

    def tool_finished(
        self, tool_call_id: str, result: str, is_error: bool, now: float
    ) -> list[Action]:
        if tool_call_id not in self._pending_tools or self.ended:
            return []
        self._pending_tools.discard(tool_call_id)
        self._last_activity_at = now
        return [
            Send(ClientToolResult(tool_call_id, result, is_error)),
            Notify("tool_result", {"tool_call_id": tool_call_id, "is_error": is_error}),
        ]

    @property
    def accepts_input(self) -> bool:
        """Whether text from the device would still be sent (not once closing has begun)."""
        return not (self.ended or self._closing)

    def user_message(self, text: str, now: float) -> list[Action]:
        """Text from the device as if the user had said it: the agent replies."""
        return self._from_device(UserMessage(text), now)

    def contextual_update(self, text: str, now: float) -> list[Action]:
        """Background for the agent; it does not reply to it."""
        return self._from_device(ContextualUpdate(text), now)

    def end_after_turn(self, now: float) -> list[Action]:
        """End once the agent has finished its current turn (its goodbye), without waiting for
        the user's silence."""
        if not self.ended and not self._closing:
            self._end_after_turn_at = now
        return []

    def request_end(self, reason: str, now: float) -> list[Action]:
        """The device wants to end (button, control API, shutdown)."""
        if self.ended:
            return []
        return self._close(NORMAL_CLOSE, reason)

    def tick(self, now: float) -> list[Action]:
        """Time passed; checks the timers. Call it every ~100 ms."""
        if self.ended or self._closing or self._opened_at is None:
            return []
        if self.metadata is None:
            if now - self._opened_at >= self.settings.metadata_timeout_s:
                return self._close(
                    NORMAL_CLOSE,
                    "no conversation_initiation_metadata",
                    error=f"the agent sent no conversation metadata within "
                    f"{self.settings.metadata_timeout_s:g} s",
                )
            return []
        if self._server_error is not None:
            if now - self._server_error_at >= self.settings.error_close_grace_s:
                return self._close(NORMAL_CLOSE, "server reported an error")
            return []
        if self._pending_tools or self._playing:
            return []
        if self._end_after_turn_at is not None and self._turn_over_since_end_asked(now):
            return self._close(NORMAL_CLOSE, "device ended the conversation")
        quiet_since = self._agent_turn_done_at(now)
        if quiet_since is not None:
            quiet_since = max(quiet_since, self._drained_at, self._last_speech_at)
            if now - quiet_since >= self.settings.silence_close_s:
                return self._close(NORMAL_CLOSE, "user silent after the agent's turn")
        if now - self._last_activity_at >= self.settings.idle_close_s:
            return self._close(NORMAL_CLOSE, "nothing happened in the conversation")
        return []

    def connection_closed(self, code: int | None, reason: str, now: float) -> list[Action]:
        """The socket is closed (either side), or was lost (code None)."""
        if self.ended:
            return []
        self.ended = True
        closed_by = "client" if self._closing else "server"
        error = self._local_error
        if self._server_error is not None:
            err = self._server_error
            error = f"{err.error_type or 'error'}: {err.message or err.reason or 'no message'}"
        elif error is None and closed_by == "server" and code != NORMAL_CLOSE:
            error = (
                f"connection lost: {reason}"
                if code is None
                else f"server closed the connection with {code}"
                + (f" ({reason})" if reason else "")
            )
        actions: list[Action] = []
        if self._playing and error is not None:
            self._playing = False
            actions.append(FlushPlayback())
        actions.append(
            Notify("disconnected", {"code": code, "reason": reason, "closed_by": closed_by})
        )
        actions.append(ConversationEnded(code, reason, closed_by, error))
        self._set_state(DeviceState.ERROR if error else DeviceState.IDLE, actions)
        return actions

    # ------------------------------------------------------------------ internals

    def _on_metadata(self, event: ConversationInitiationMetadata, now: float) -> list[Action]:
        if self.metadata is not None:
            return [Notify("protocol_error", {"message": "duplicate conversation metadata"})]
        try:
            input_format = AudioFormat.parse(event.user_input_audio_format)
            output_format = AudioFormat.parse(event.agent_output_audio_format)
        except ValueError as exc:
            return self._close(NORMAL_CLOSE, "unsupported audio format", error=str(exc))
        self.metadata = event
        self.input_format = input_format
        self.output_format = output_format
        self._last_activity_at = now
        actions: list[Action] = [
            Notify(
                "conversation_started",
                {
                    "conversation_id": event.conversation_id,
                    "user_input_audio_format": event.user_input_audio_format,
                    "agent_output_audio_format": event.agent_output_audio_format,
                },
            )
        ]
        self._set_state(DeviceState.LISTENING, actions)
        held_back, self._held_back = self._held_back, []
        for message in held_back:
            actions += self._send_from_device(message, now)
        return actions

    def _on_error(self, event: ErrorEvent, now: float) -> list[Action]:
        self._server_error = event
        self._server_error_at = now
        actions: list[Action] = [
            Notify(
                "server_error",
                {"code": event.code, "error_type": event.error_type, "message": event.message},
            )
        ]
        if self._playing:
            self._playing = False
            actions.append(FlushPlayback())
        return actions

    def _dispatch(self, event: ServerEvent, now: float) -> list[Action]:
        actions: list[Action] = []
        if isinstance(event, Audio):
            if self.last_interrupt_id is not None and event.event_id <= self.last_interrupt_id:
                self.dropped_audio_chunks += 1
                return []
            if self._closing:
                return []
            self._agent_active(now)
            self._last_agent_audio_at = now
            if not self._playing:
                self._playing = True
                self._set_state(DeviceState.SPEAKING, actions)
            actions.append(PlayAudio(event.audio, event.event_id))
        elif isinstance(event, Interruption):
            if self.last_interrupt_id is None or event.event_id > self.last_interrupt_id:
                self.last_interrupt_id = event.event_id
            self._playing = False
            self._drained_at = now
            self._last_activity_at = now
            actions.append(FlushPlayback())
            actions.append(Notify("interruption", {"event_id": event.event_id}))
            if self.state is DeviceState.SPEAKING:
                next_state = (
                    DeviceState.USER_SPEAKING if self._user_speaking else DeviceState.LISTENING
                )
                self._set_state(next_state, actions)
        elif isinstance(event, AgentResponse):
            self._agent_active(now)
            self._response_at = now
            self.turns += 1
            actions.append(
                Notify("agent_response", {"text": event.text, "event_id": event.event_id})
            )
        elif isinstance(event, AgentResponseComplete):
            self._complete_at = now
            self._last_activity_at = now
            actions.append(Notify("agent_response_complete", {"event_id": event.event_id}))
        elif isinstance(event, UserTranscript):
            # A finished user turn: an agent reply is now due, so no close until it has come.
            self._complete_at = None
            self._response_at = None
            self._last_activity_at = now
            actions.append(
                Notify("user_transcript", {"text": event.text, "event_id": event.event_id})
            )
            if self.state in (DeviceState.LISTENING, DeviceState.USER_SPEAKING):
                self._set_state(DeviceState.THINKING, actions)
        elif isinstance(event, TentativeUserTranscript):
            self._last_activity_at = now
            actions.append(Notify("tentative_user_transcript", {"text": event.text}))
        elif isinstance(event, AgentResponseCorrection):
            actions.append(
                Notify(
                    "agent_response_correction",
                    {
                        "original": event.original,
                        "corrected": event.corrected,
                        "event_id": event.event_id,
                    },
                )
            )
        elif isinstance(event, ClientToolCall):
            self._agent_active(now)
            self._pending_tools.add(event.tool_call_id)
            actions.append(
                Notify(
                    "tool_call",
                    {
                        "tool_name": event.tool_name,
                        "tool_call_id": event.tool_call_id,
                        "parameters": event.parameters,
                    },
                )
            )
            actions.append(RunTool(event))
        elif isinstance(event, VadScore):
            actions.append(Notify("vad_score", {"score": event.score}))
        elif isinstance(event, InternalTentativeAgentResponse):
            actions.append(Notify("tentative_agent_response", {"text": event.text}))
        elif isinstance(event, AgentChatResponsePart):
            actions.append(
                Notify("agent_chat_response_part", {"text": event.text, "part": event.part_type})
            )
        elif isinstance(event, AgentToolResponse):
            actions.append(
                Notify(
                    "agent_tool_response",
                    {
                        "tool_name": event.tool_name,
                        "tool_type": event.tool_type,
                        "is_error": event.is_error,
                    },
                )
            )
            if event.tool_name == "end_call":
                # Let the goodbye play out; the server usually closes first anyway.
                if self._playing:
                    self._hangup_after_playback = True
                else:
                    actions += self._close(NORMAL_CLOSE, "agent ended the call")
        elif isinstance(event, ContextualUpdate):
            actions.append(Notify("contextual_update", {"text": event.text}))
        elif isinstance(event, UnknownEvent):
            actions.append(Notify("unknown_event", {"type": event.type}))
        return actions

    def _from_device(self, message: UserMessage | ContextualUpdate, now: float) -> list[Action]:
        if not self.accepts_input:
            return []
        if self.metadata is None:
            self._held_back.append(message)  # the server takes nothing before its metadata
            return []
        return self._send_from_device(message, now)

    def _send_from_device(
        self, message: UserMessage | ContextualUpdate, now: float
    ) -> list[Action]:
        actions: list[Action] = [Send(message)]
        if isinstance(message, ContextualUpdate):
            actions.append(Notify(CONTEXT_SENT_EVENT, {"text": message.text}))
            return actions
        # a typed user turn: the agent owes a reply, so no close until it has come
        self._complete_at = None
        self._response_at = None
        self._last_activity_at = now
        actions.append(Notify("user_message", {"text": message.text}))
        if self.state in (DeviceState.LISTENING, DeviceState.USER_SPEAKING):
            self._set_state(DeviceState.THINKING, actions)
        return actions

    def _turn_over_since_end_asked(self, now: float) -> bool:
        asked = self._end_after_turn_at
        assert asked is not None
        if self._complete_at is not None and self._complete_at >= asked:
            return True
        # an agent that says nothing more: end once it has been quiet as long as a user would be
        quiet_since = max(asked, self._last_agent_audio_at, self._drained_at)
        return now - quiet_since >= self.settings.silence_close_s

    def _agent_active(self, now: float) -> None:
        self._complete_at = None
        self._last_activity_at = now

    def _agent_turn_done_at(self, now: float) -> float | None:
        """When the agent's current turn was finished, or None while it is still going."""
        if self._complete_at is not None:
            return self._complete_at
        if self._response_at is not None:
            audio_idle_since = max(self._response_at, self._last_agent_audio_at)
            if now - audio_idle_since >= self.settings.response_audio_idle_s:
                return audio_idle_since
        return None

    def _close(self, code: int, reason: str, error: str | None = None) -> list[Action]:
        if self._closing or self.ended:
            return []
        self._closing = True
        self._local_error = error
        actions: list[Action] = []
        self._set_state(DeviceState.ENDING, actions)
        actions.append(CloseConnection(code, reason))
        return actions

    def _set_state(self, new: DeviceState, actions: list[Action]) -> None:
        if new is self.state:
            return
        check_transition(self.state, new)
        self.state = new
        actions.append(SetState(new))
