"""The conversation rules, with no I/O: events in, actions out.

``ConversationSession`` is fed what happens (the socket opened, a server message arrived, a
microphone chunk was captured, playback ran dry, a tool finished, time passed) and answers with
the actions the adapters must carry out (``protocol/actions.py``). Time is always passed in, never
read, so tests drive it as fast as they like. What each input means in each phase is one table
(``protocol/phases.py``); when the conversation is over is ``protocol/timers.py``. Nothing the
server sends makes it raise.

The rules it owns: ``conversation_initiation_client_data`` first; a ``pong`` for every ``ping``
(while closing too); after ``interruption`` N, a flush and no audio with ``event_id <= N``;
``user_activity`` while the user speaks; a server close or ``error`` ends it with the reason kept;
text from the device waits for the metadata, and a typed message is a user turn.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from typing import Any

from agentpi import events as ev
from agentpi.audio.formats import AudioFormat
from agentpi.errors import LocalProtocolError
from agentpi.protocol import messages as m
from agentpi.protocol.actions import (
    Action,
    CloseConnection,
    ConversationEnded,
    FlushPlayback,
    Notify,
    PlayAudio,
    RunTool,
    Send,
    SetState,
    StartAudio,
)
from agentpi.protocol.endings import end_error
from agentpi.protocol.phases import RULES, Handling, Phase, Turn, device_state
from agentpi.protocol.reports import report
from agentpi.protocol.timers import SessionSettings, TurnTimes
from agentpi.protocol.vad_relay import VadRelay
from agentpi.states import DeviceState

NORMAL_CLOSE = 1000
PING_SAMPLES = 256
"""The latest server latency estimates kept for the conversation's median."""


def event_name(event: m.ServerEvent) -> str:
    """The name ``phases.RULES`` knows a server event by."""
    return "unknown" if isinstance(event, m.UnknownEvent) else event.type


MAX_HELD_BACK = 32
"""Device messages (user_message, contextual_update) kept until the metadata comes; more are
reported and dropped: a script that floods the control socket meanwhile cannot grow the list."""


class ConversationSession:
    """One conversation with the agent, from socket open to socket close."""

    def __init__(self, settings: SessionSettings | None = None) -> None:
        self.settings = settings or SessionSettings()
        self.phase = Phase.CONNECTING
        self.conversation_id: str | None = None
        self.input_format: AudioFormat | None = None
        self.output_format: AudioFormat | None = None
        self.last_interrupt_id: int | None = None
        self.dropped_audio_chunks = 0
        self.turns = 0
        self.user_turns = 0
        """User turns the server took (a transcript) or the device sent (a typed message)."""
        self.ping_samples: deque[int] = deque(maxlen=PING_SAMPLES)
        self._latency_reported_at = float("-inf")

        self._turn = Turn.LISTENING
        self._failed = False
        self._shown = DeviceState.CONNECTING
        self._opened_at = 0.0
        self._local_error: str | None = None
        self._server_error: m.ErrorEvent | None = None
        self._server_error_at = 0.0
        self._pending_tools: set[str] = set()
        self._hangup_after_playback = False
        self._held_back: list[m.UserMessage | m.ContextualUpdate] = []

        self._playing = False
        self._times = TurnTimes()

        self._user_speaking = False
        self._last_user_activity_sent = float("-inf")
        self._vad = VadRelay()

        self._server_rules: dict[str, Callable[[Any, float], list[Action]]] = {
            "conversation_initiation_metadata": self._on_metadata,
            "ping": self._on_ping,
            "audio": self._on_audio,
            "interruption": self._on_interruption,
            "user_transcript": self._on_user_transcript,
            "agent_response": self._on_agent_response,
            "agent_response_complete": self._on_complete,
            "client_tool_call": self._on_tool_call,
            "agent_tool_response": self._on_agent_tool_response,
            "vad_score": self._on_vad_score,
            "error": self._on_error,
        }

    # ------------------------------------------------------------------ what it shows

    @property
    def state(self) -> DeviceState:
        return device_state(self.phase, self._turn, self._failed)

    @property
    def ended(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def accepts_input(self) -> bool:
        """Whether text from the device would still be sent (not once closing has begun)."""
        return RULES[self.phase]["user_message"] in (Handling.ACT, Handling.HOLD)

    # ------------------------------------------------------------------ the table

    def _handling(self, name: str) -> Handling:
        handling = RULES[self.phase][name]
        if handling is Handling.MISUSE:
            raise LocalProtocolError(
                f"{name} is not allowed while the conversation is {self.phase.value}"
            )
        return handling

    def _passed_over(self, name: str, handling: Handling) -> list[Action]:
        if handling is Handling.IGNORE:
            return [Notify(ev.Ignored(name, self.phase.value))]
        if handling is Handling.REJECT:
            phase = self.phase.value.replace("_", " ")
            return [Notify(ev.ProtocolErrorSeen(f"{name} while {phase}; ignored"))]
        return []

    # ------------------------------------------------------------------ inputs from the device

    def connection_opened(self, now: float) -> list[Action]:
        self._handling("connection_opened")
        self.phase = Phase.AWAITING_METADATA
        self._opened_at = now
        self._times.last_activity_at = now
        return [Send(self.settings.init)]

    def receive(self, event: m.ServerEvent, now: float) -> list[Action]:
        """A message from the server."""
        name = event_name(event)
        handling = self._handling(name)
        if handling is Handling.ACT:
            return self._server_rules.get(name, self._report_only)(event, now)
        if handling is Handling.NOTE and isinstance(event, m.ConversationInitiationMetadata):
            self.conversation_id = event.conversation_id  # the record names the conversation
            return []
        return self._passed_over(name, handling)

    def receive_invalid(self, error: m.ProtocolError, now: float) -> list[Action]:
        """A frame that could not be decoded: reported once, otherwise ignored."""
        handling = self._handling("invalid_frame")
        if handling is not Handling.ACT:
            return self._passed_over("invalid_frame", handling)
        return [Notify(ev.ProtocolErrorSeen(str(error)))]

    def mic_audio(
        self, chunk: bytes, speaking: bool, now: float, speech_score: float | None = None
    ) -> list[Action]:
        """A captured chunk, already in the agent's input format, and the local VAD's verdict
        and score (0..1): the score is shown as ``vad_score`` until the agent sends its own."""
        handling = self._handling("mic_audio")
        if handling is not Handling.ACT:
            return self._passed_over("mic_audio", handling)
        actions: list[Action] = self._vad.device_score(speech_score, speaking, now)
        if speaking:
            self._times.user_speaks(now)
            if not self._user_speaking:
                self._user_speaking = True
                if self._turn in (Turn.LISTENING, Turn.THINKING):
                    self._set_turn(Turn.USER_SPEAKING, actions)
            if now - self._last_user_activity_sent >= self.settings.user_activity_interval_s:
                self._last_user_activity_sent = now
                actions.append(Send(m.UserActivity()))
        elif self._user_speaking:
            self._user_speaking = False
            if self._turn is Turn.USER_SPEAKING:
                self._set_turn(Turn.LISTENING, actions)
        actions.append(Send(m.UserAudioChunk(chunk)))
        return actions

    def playback_drained(self, now: float) -> list[Action]:
        """The speaker has played everything it was given."""
        handling = self._handling("playback_drained")
        if handling is not Handling.ACT or not self._playing:
            return self._passed_over("playback_drained", handling)
        self._playing = False
        self._times.drained_at = now
        self._times.last_activity_at = now
        actions: list[Action] = []
        self._floor_back_to_user(actions)
        if self._hangup_after_playback:
            actions += self._close(NORMAL_CLOSE, "agent ended the call")
        return actions

    def tool_finished(
        self, tool_call_id: str, result: str, is_error: bool, now: float
    ) -> list[Action]:
        handling = self._handling("tool_finished")
        if handling is not Handling.ACT or tool_call_id not in self._pending_tools:
            return self._passed_over("tool_finished", handling)
        self._pending_tools.discard(tool_call_id)
        self._times.last_activity_at = now
        return [
            Send(m.ClientToolResult(tool_call_id, result, is_error)),
            Notify(ev.ToolResult(tool_call_id, is_error)),
        ]

    def user_message(self, text: str, now: float) -> list[Action]:
        """Text from the device as if the user had said it: the agent replies."""
        return self._from_device("user_message", m.UserMessage(text), now)

    def contextual_update(self, text: str, now: float) -> list[Action]:
        """Background for the agent; it does not reply to it."""
        return self._from_device("contextual_update_from_device", m.ContextualUpdate(text), now)

    def end_after_turn(self, now: float) -> list[Action]:
        """End once the agent has finished its current turn (its goodbye), without waiting for
        the user's silence."""
        if self._handling("end_after_turn") is Handling.ACT:
            self._times.end_after_turn_at = now
        return []

    def request_end(self, reason: str, now: float) -> list[Action]:
        """The device wants to end (button, control API, shutdown)."""
        if self._handling("request_end") is not Handling.ACT:
            return []
        return self._close(NORMAL_CLOSE, reason)

    def tick(self, now: float) -> list[Action]:
        """Time passed; checks the timers. Call it every ~100 ms."""
        if self._handling("tick") is not Handling.ACT:
            return []
        if self._server_error is not None:
            if now - self._server_error_at >= self.settings.error_close_grace_s:
                return self._close(NORMAL_CLOSE, "server reported an error")
            return []
        overran = self._times.overran(now, self._opened_at, self.settings)
        if overran is not None:
            return self._close(NORMAL_CLOSE, overran)
        if self.phase is Phase.AWAITING_METADATA:
            if now - self._opened_at >= self.settings.metadata_timeout_s:
                return self._close(
                    NORMAL_CLOSE,
                    "no conversation_initiation_metadata",
                    error=f"the agent sent no conversation metadata within "
                    f"{self.settings.metadata_timeout_s:g} s",
                )
            return []
        if self._pending_tools or self._playing:
            return []
        reason = self._times.why_close(now, self.settings)
        return [] if reason is None else self._close(NORMAL_CLOSE, reason)

    def connection_closed(
        self, code: int | None, reason: str, now: float, by_device: bool = False
    ) -> list[Action]:
        """The socket is closed (either side), or was lost (code None); ``by_device``: this
        side's WebSocket closed it (a frame it refused), although the session did not ask."""
        if self._handling("connection_closed") is not Handling.ACT:
            return []
        closed_by = "client" if self.phase is Phase.CLOSING or by_device else "server"
        error = end_error(code, reason, closed_by, self._local_error, self._server_error)
        self.phase = Phase.CLOSED
        self._failed = error is not None
        actions: list[Action] = []
        if self._playing and error is not None:
            self._playing = False
            actions.append(FlushPlayback())
        actions.append(Notify(ev.Disconnected(code, reason, closed_by)))
        actions.append(ConversationEnded(code, reason, closed_by, error))
        self._show(actions)
        return actions

    # ------------------------------------------------------------------ server events, OPEN

    def _on_metadata(self, event: m.ConversationInitiationMetadata, now: float) -> list[Action]:
        self.conversation_id = event.conversation_id
        try:
            input_format = AudioFormat.parse(event.user_input_audio_format)
            output_format = AudioFormat.parse(event.agent_output_audio_format)
        except ValueError as exc:
            return self._close(NORMAL_CLOSE, "unsupported audio format", error=str(exc))
        self.input_format = input_format
        self.output_format = output_format
        self.phase = Phase.OPEN
        self._times.last_activity_at = now
        actions: list[Action] = [
            StartAudio(input_format, output_format),
            *self._report(event),
        ]
        self._show(actions)
        held_back, self._held_back = self._held_back, []
        for message in held_back:
            actions += self._send_from_device(message, now)
        return actions

    def _report_only(self, event: m.ServerEvent, now: float) -> list[Action]:
        if isinstance(event, m.TentativeUserTranscript):
            self._times.last_activity_at = now  # the user is still talking
        return self._report(event)

    @staticmethod
    def _report(event: m.ServerEvent) -> list[Action]:
        said = report(event)
        return [] if said is None else [Notify(said)]

    def _on_ping(self, event: m.Ping, now: float) -> list[Action]:
        pong: list[Action] = [Send(m.Pong(event.event_id))]
        if event.ping_ms is None:
            return pong
        self.ping_samples.append(event.ping_ms)
        if now - self._latency_reported_at < self.settings.latency_report_interval_s:
            return pong  # a ping flood must not become a flood of lines
        self._latency_reported_at = now
        return [*pong, *self._report(event)]

    def median_ping_ms(self) -> float | None:
        return statistics.median(self.ping_samples) if self.ping_samples else None

    def _on_vad_score(self, event: m.VadScore, now: float) -> list[Action]:
        self._vad.agent_scores = True  # the device's own score gives way to the agent's
        return self._report(event)

    def _on_error(self, event: m.ErrorEvent, now: float) -> list[Action]:
        self._server_error = event
        self._server_error_at = now
        actions = self._report(event)
        if self._playing:
            self._playing = False
            actions.append(FlushPlayback())
        return actions

    def _on_audio(self, event: m.Audio, now: float) -> list[Action]:
        if self.last_interrupt_id is not None and event.event_id <= self.last_interrupt_id:
            self.dropped_audio_chunks += 1
            return []
        self._times.agent_active(now)
        self._times.last_agent_audio_at = now
        actions: list[Action] = []
        if not self._playing:
            self._playing = True
            self._set_turn(Turn.SPEAKING, actions)
        actions.append(PlayAudio(event.audio, event.event_id))
        return actions

    def _on_interruption(self, event: m.Interruption, now: float) -> list[Action]:
        if self.last_interrupt_id is None or event.event_id > self.last_interrupt_id:
            self.last_interrupt_id = event.event_id
        self._playing = False
        self._times.drained_at = now
        self._times.last_activity_at = now
        actions: list[Action] = [FlushPlayback(), *self._report(event)]
        self._floor_back_to_user(actions)
        return actions

    def _on_agent_response(self, event: m.AgentResponse, now: float) -> list[Action]:
        self._times.agent_active(now)
        self._times.response_at = now
        self.turns += 1
        return self._report(event)

    def _on_complete(self, event: m.AgentResponseComplete, now: float) -> list[Action]:
        self._times.agent_turn_complete(now)
        return self._report(event)

    def _on_user_transcript(self, event: m.UserTranscript, now: float) -> list[Action]:
        actions = self._report(event)
        self._user_turn_over(now, actions)
        return actions

    def _on_tool_call(self, event: m.ClientToolCall, now: float) -> list[Action]:
        self._times.agent_active(now)
        self._pending_tools.add(event.tool_call_id)
        return [*self._report(event), RunTool(event)]

    def _on_agent_tool_response(self, event: m.AgentToolResponse, now: float) -> list[Action]:
        actions = self._report(event)
        if event.tool_name == "end_call":
            # Let the goodbye play out; the server usually closes first anyway.
            if self._playing:
                self._hangup_after_playback = True
            else:
                actions += self._close(NORMAL_CLOSE, "agent ended the call")
        return actions

    # ------------------------------------------------------------------ internals

    def _from_device(
        self, name: str, message: m.UserMessage | m.ContextualUpdate, now: float
    ) -> list[Action]:
        handling = self._handling(name)
        if handling is Handling.HOLD:
            if len(self._held_back) >= MAX_HELD_BACK:
                held = f"{name}: {MAX_HELD_BACK} already held back"
                return [Notify(ev.Ignored(held, self.phase.value))]
            self._held_back.append(message)  # the server takes nothing before its metadata
            return []
        if handling is Handling.ACT:
            return self._send_from_device(message, now)
        return self._passed_over(name, handling)

    def _send_from_device(
        self, message: m.UserMessage | m.ContextualUpdate, now: float
    ) -> list[Action]:
        actions: list[Action] = [Send(message)]
        if isinstance(message, m.ContextualUpdate):
            actions.append(Notify(ev.ContextualUpdateSent(message.text)))
            return actions
        actions.append(Notify(ev.UserMessageSent(message.text)))
        self._user_turn_over(now, actions)
        return actions

    def _user_turn_over(self, now: float, actions: list[Action]) -> None:
        """A finished user turn (spoken or typed): the agent owes a reply, so no close until it
        has come."""
        self._times.user_turn_over(now)
        self.user_turns += 1
        if self._turn in (Turn.LISTENING, Turn.USER_SPEAKING):
            self._set_turn(Turn.THINKING, actions)

    def _floor_back_to_user(self, actions: list[Action]) -> None:
        """The agent stopped speaking (played out or interrupted)."""
        if self._turn is Turn.SPEAKING:
            turn = Turn.USER_SPEAKING if self._user_speaking else Turn.LISTENING
            self._set_turn(turn, actions)

    def _close(self, code: int, reason: str, error: str | None = None) -> list[Action]:
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            return []
        self.phase = Phase.CLOSING
        self._local_error = error
        actions: list[Action] = []
        self._show(actions)
        actions.append(CloseConnection(code, reason))
        return actions

    def _set_turn(self, turn: Turn, actions: list[Action]) -> None:
        self._turn = turn
        self._show(actions)

    def _show(self, actions: list[Action]) -> None:
        """Report the derived state when it changed."""
        state = self.state
        if state is not self._shown:
            self._shown = state
            actions.append(SetState(state))
