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
from dataclasses import dataclass
from typing import Any

from agentpi import events as ev
from agentpi.audio.formats import AudioFormat
from agentpi.errors import LocalProtocolError
from agentpi.protocol import messages as m
from agentpi.protocol.actions import (
    Action,
    AskApproval,
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
from agentpi.protocol.failures import failure_of
from agentpi.protocol.phases import (
    RULES,
    DeviceInput,
    Handling,
    Input,
    Phase,
    Turn,
    TurnCue,
    device_state,
    input_name,
    next_turn,
)
from agentpi.protocol.reports import report
from agentpi.protocol.timers import SessionSettings, TurnTimes
from agentpi.protocol.vad_relay import VadRelay
from agentpi.states import DeviceState

NORMAL_CLOSE = 1000
PING_SAMPLES = 256
"""The latest server latency estimates kept for the conversation's median."""


MAX_HELD_BACK = 32
"""Device messages (user_message, contextual_update) kept until the metadata comes; more are
reported and dropped: a script that floods the control socket meanwhile cannot grow the list."""
MAX_TOOLS_SHOWN = 32
"""Tools tracked as working at once; a server that starts more is not tracked for them (the
lights already say working)."""
MAX_APPROVALS_WAITING = 4
"""MCP approvals asked of the user at once; a further one is declined at once, with a line."""


@dataclass(frozen=True)
class WaitingApproval:
    call: m.McpToolCall
    deadline: float


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
        self._closed_shows = DeviceState.IDLE
        self._shown = DeviceState.CONNECTING
        self._opened_at = 0.0
        self._local_error: str | None = None
        self._server_error: m.ErrorEvent | None = None
        self._server_error_at = 0.0
        self._pending_tools: set[str] = set()
        """Client tool calls the device runs and owes a result for (bounded by the runner)."""
        self._working: dict[str, float] = {}
        """Tools the agent started (any kind), by call id: since when (at most MAX_TOOLS_SHOWN)."""
        self._approvals: dict[str, WaitingApproval] = {}
        """MCP calls waiting for the user's answer, oldest first (at most MAX_APPROVALS_WAITING)."""
        self._rateable_event_id: int | None = None
        self._rated_event_id: int | None = None
        self.context_usage: m.ContextUsage | None = None
        """The agent's latest report of how full its LLM context is."""
        self._hangup_after_playback = False
        self._held_back: list[m.UserMessage | m.ContextualUpdate] = []

        self._times = TurnTimes()

        self._user_speaking = False
        self._last_user_activity_sent = float("-inf")
        self._vad = VadRelay()

        self._server_rules: dict[type[m.ServerEvent], Callable[[Any, float], list[Action]]] = {
            m.ConversationInitiationMetadata: self._on_metadata,
            m.Ping: self._on_ping,
            m.Audio: self._on_audio,
            m.Interruption: self._on_interruption,
            m.UserTranscript: self._on_user_transcript,
            m.TentativeUserTranscript: self._on_tentative_transcript,
            m.AgentResponse: self._on_agent_response,
            m.AgentResponseComplete: self._on_complete,
            m.ClientToolCall: self._on_tool_call,
            m.AgentToolRequest: self._on_agent_tool_request,
            m.AgentToolResponse: self._on_agent_tool_response,
            m.McpToolCall: self._on_mcp_tool_call,
            m.ContextUsage: self._on_context_usage,
            m.VadScore: self._on_vad_score,
            m.ErrorEvent: self._on_error,
        }
        """The server events with a rule of their own; the rest are reported (``report``)."""

    # ------------------------------------------------------------------ what it shows

    @property
    def state(self) -> DeviceState:
        working = bool(self._working or self._pending_tools)
        asking = bool(self._approvals)
        return device_state(self.phase, self._turn, self._closed_shows, asking, working)

    @property
    def _playing(self) -> bool:
        return self._turn is Turn.SPEAKING

    @property
    def approvals_waiting(self) -> dict[str, str]:
        """The MCP calls waiting for the user's answer, oldest first: call id -> tool name."""
        return {key: waiting.call.tool_name for key, waiting in self._approvals.items()}

    @property
    def rateable_event_id(self) -> int | None:
        """The agent's last answer, if it has not been rated yet (what ``feedback`` rates)."""
        if self._rateable_event_id == self._rated_event_id:
            return None
        return self._rateable_event_id

    @property
    def ended(self) -> bool:
        return self.phase is Phase.CLOSED

    @property
    def accepts_input(self) -> bool:
        """Whether text from the device would still be sent (not once closing has begun)."""
        rule = RULES[self.phase][DeviceInput.USER_MESSAGE]
        return rule.handling in (Handling.ACT, Handling.HOLD)

    # ------------------------------------------------------------------ the table

    def _handling(self, key: Input) -> Handling:
        handling = RULES[self.phase][key].handling
        if handling is Handling.MISUSE:
            raise LocalProtocolError(
                f"{input_name(key)} is not allowed while the conversation is {self.phase.value}"
            )
        return handling

    def _passed_over(self, key: Input, handling: Handling) -> list[Action]:
        name = input_name(key)
        if handling is Handling.IGNORE:
            return [Notify(ev.Ignored(name, self.phase.value))]
        if handling is Handling.REJECT:
            phase = self.phase.value.replace("_", " ")
            return [Notify(ev.ProtocolErrorSeen(f"{name} while {phase}; ignored"))]
        return []

    # ------------------------------------------------------------------ inputs from the device

    def connection_opened(self, now: float) -> list[Action]:
        self._handling(DeviceInput.CONNECTION_OPENED)
        self.phase = Phase.AWAITING_METADATA
        self._opened_at = now
        self._times.last_activity_at = now
        return [Send(self.settings.init)]

    def receive(self, event: m.ServerEvent, now: float) -> list[Action]:
        """A message from the server."""
        key = type(event)
        handling = self._handling(key)
        if handling is Handling.ACT:
            return self._server_rules.get(key, self._report_only)(event, now)
        if handling is Handling.NOTE and isinstance(event, m.ConversationInitiationMetadata):
            self.conversation_id = event.conversation_id  # the record names the conversation
            return []
        return self._passed_over(key, handling)

    def receive_invalid(self, error: m.ProtocolError, now: float) -> list[Action]:
        """A frame that could not be decoded: reported once, otherwise ignored."""
        handling = self._handling(DeviceInput.INVALID_FRAME)
        if handling is not Handling.ACT:
            return self._passed_over(DeviceInput.INVALID_FRAME, handling)
        return [Notify(ev.ProtocolErrorSeen(str(error)))]

    def mic_audio(
        self, chunk: bytes, speaking: bool, now: float, speech_score: float | None = None
    ) -> list[Action]:
        """A captured chunk, already in the agent's input format, and the local VAD's verdict
        and score (0..1): the score is shown as ``vad_score`` until the agent sends its own."""
        handling = self._handling(DeviceInput.MIC_AUDIO)
        if handling is not Handling.ACT:
            return self._passed_over(DeviceInput.MIC_AUDIO, handling)
        actions: list[Action] = self._vad.device_score(speech_score, speaking, now)
        if speaking:
            self._times.user_speaks(now)
            if not self._user_speaking:
                self._user_speaking = True
                self._move_turn(TurnCue.SPEECH_STARTED, actions)
            if now - self._last_user_activity_sent >= self.settings.user_activity_interval_s:
                self._last_user_activity_sent = now
                actions.append(Send(m.UserActivity()))
        elif self._user_speaking:
            self._user_speaking = False
            self._move_turn(TurnCue.SPEECH_ENDED, actions)
        actions.append(Send(m.UserAudioChunk(chunk)))
        return actions

    def playback_drained(self, now: float) -> list[Action]:
        """The speaker has played everything it was given."""
        handling = self._handling(DeviceInput.PLAYBACK_DRAINED)
        if handling is not Handling.ACT or not self._playing:
            return self._passed_over(DeviceInput.PLAYBACK_DRAINED, handling)
        self._times.drained_at = now
        self._times.last_activity_at = now
        actions: list[Action] = []
        self._agent_stopped(actions)
        if self._hangup_after_playback:
            actions += self._close(NORMAL_CLOSE, "agent ended the call")
        return actions

    def tool_finished(
        self, tool_call_id: str, result: str, is_error: bool, now: float
    ) -> list[Action]:
        handling = self._handling(DeviceInput.TOOL_FINISHED)
        if handling is not Handling.ACT or tool_call_id not in self._pending_tools:
            return self._passed_over(DeviceInput.TOOL_FINISHED, handling)
        self._pending_tools.discard(tool_call_id)
        self._times.last_activity_at = now
        actions: list[Action] = [
            Send(m.ClientToolResult(tool_call_id, result, is_error)),
            Notify(ev.ToolResult(tool_call_id, is_error)),
        ]
        self._show(actions)
        return actions

    def answer_approval(
        self, approved: bool, now: float, by: str, tool_call_id: str | None = None
    ) -> list[Action]:
        """The user's answer (``by``: button, control, mqtt) to the MCP call ``tool_call_id``,
        or to the oldest one waiting. Nothing waiting: nothing is sent."""
        handling = self._handling(DeviceInput.APPROVAL_ANSWERED)
        if handling is not Handling.ACT:
            return self._passed_over(DeviceInput.APPROVAL_ANSWERED, handling)
        if tool_call_id is None:
            tool_call_id = next(iter(self._approvals), None)
        waiting = self._approvals.pop(tool_call_id, None) if tool_call_id else None
        if waiting is None:
            return [Notify(ev.Ignored("approval: no MCP tool call is waiting", self.phase.value))]
        self._times.last_activity_at = now
        actions = self._send_approval(waiting.call, approved, by)
        self._show(actions)
        return actions

    def feedback(self, score: str | None, now: float) -> list[Action]:
        """Rate the agent's last answer (``like``, ``dislike``); each answer once, as the
        official clients do."""
        handling = self._handling(DeviceInput.FEEDBACK)
        if handling is not Handling.ACT:
            return self._passed_over(DeviceInput.FEEDBACK, handling)
        event_id = self.rateable_event_id
        if event_id is None:
            return [Notify(ev.Ignored("feedback: no answer to rate", self.phase.value))]
        self._rated_event_id = event_id
        return [Send(m.Feedback(event_id, score)), Notify(ev.FeedbackSent(score, event_id))]

    def user_message(self, text: str, now: float) -> list[Action]:
        """Text from the device as if the user had said it: the agent replies."""
        return self._from_device(DeviceInput.USER_MESSAGE, m.UserMessage(text), now)

    def contextual_update(
        self, text: str, now: float, context_id: str | None = None
    ) -> list[Action]:
        """Background for the agent; it does not reply to it. With ``context_id``, the agent
        keeps only the latest update of that id."""
        update = m.ContextualUpdate(text, context_id)
        return self._from_device(DeviceInput.CONTEXTUAL_UPDATE, update, now)

    def end_after_turn(self, now: float) -> list[Action]:
        """End once the agent has finished its current turn (its goodbye), without waiting for
        the user's silence."""
        if self._handling(DeviceInput.END_AFTER_TURN) is Handling.ACT:
            self._times.end_after_turn_at = now
        return []

    def request_end(self, reason: str, now: float) -> list[Action]:
        """The device wants to end (button, control API, shutdown)."""
        if self._handling(DeviceInput.REQUEST_END) is not Handling.ACT:
            return []
        return self._close(NORMAL_CLOSE, reason)

    def tick(self, now: float) -> list[Action]:
        """Time passed; checks the timers. Call it every ~100 ms."""
        if self._handling(DeviceInput.TICK) is not Handling.ACT:
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
        actions = self._expire(now)
        if self._pending_tools or self._playing or self._approvals or self._working:
            return actions
        reason = self._times.why_close(now, self.settings)
        return actions if reason is None else actions + self._close(NORMAL_CLOSE, reason)

    def connection_closed(
        self, code: int | None, reason: str, now: float, by_device: bool = False
    ) -> list[Action]:
        """The socket is closed (either side), or was lost (code None); ``by_device``: this
        side's WebSocket closed it (a frame it refused), although the session did not ask."""
        if self._handling(DeviceInput.CONNECTION_CLOSED) is not Handling.ACT:
            return []
        closed_by = "client" if self.phase is Phase.CLOSING or by_device else "server"
        error = end_error(code, reason, closed_by, self._local_error, self._server_error)
        actions: list[Action] = []
        if self._playing and error is not None:
            actions.append(FlushPlayback())
        self.phase = Phase.CLOSED
        actions.append(Notify(ev.Disconnected(code, reason, closed_by)))
        error_type = self._server_error.error_type if self._server_error else None
        ended = ConversationEnded(code, reason, closed_by, error, error_type)
        failure = failure_of(ended)
        self._closed_shows = DeviceState.IDLE if failure is None else failure.shows
        actions.append(ended)
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

    def _on_context_usage(self, event: m.ContextUsage, now: float) -> list[Action]:
        self.context_usage = event
        return self._report(event)

    def _on_error(self, event: m.ErrorEvent, now: float) -> list[Action]:
        self._server_error = event
        self._server_error_at = now
        actions = self._report(event)
        if self._playing:
            actions.append(FlushPlayback())
            self._agent_stopped(actions)
        return actions

    def _on_tentative_transcript(
        self, event: m.TentativeUserTranscript, now: float
    ) -> list[Action]:
        self._times.last_activity_at = now  # the user is still talking
        return self._report(event)

    def _on_audio(self, event: m.Audio, now: float) -> list[Action]:
        if self.last_interrupt_id is not None and event.event_id <= self.last_interrupt_id:
            self.dropped_audio_chunks += 1
            return []
        self._times.agent_active(now)
        self._times.last_agent_audio_at = now
        if self._rateable_event_id is None or event.event_id > self._rateable_event_id:
            self._rateable_event_id = event.event_id
        actions: list[Action] = []
        self._move_turn(TurnCue.AGENT_AUDIO, actions)
        actions.append(PlayAudio(event.audio, event.event_id, event.alignment))
        return actions

    def _on_interruption(self, event: m.Interruption, now: float) -> list[Action]:
        if self.last_interrupt_id is None or event.event_id > self.last_interrupt_id:
            self.last_interrupt_id = event.event_id
        self._times.drained_at = now
        self._times.last_activity_at = now
        actions: list[Action] = [FlushPlayback(), *self._report(event)]
        self._agent_stopped(actions)
        return actions

    def _on_agent_response(self, event: m.AgentResponse, now: float) -> list[Action]:
        self._times.agent_active(now)
        self._times.response_at = now
        self.turns += 1
        if event.event_id is not None:
            self._rateable_event_id = event.event_id
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
        actions: list[Action] = [*self._report(event), RunTool(event)]
        self._show(actions)
        return actions

    def _on_agent_tool_request(self, event: m.AgentToolRequest, now: float) -> list[Action]:
        self._times.agent_active(now)
        actions = self._report(event)
        self._tool_started(event.tool_call_id, now, actions)
        return actions

    def _on_agent_tool_response(self, event: m.AgentToolResponse, now: float) -> list[Action]:
        self._times.last_activity_at = now
        actions = self._report(event)
        self._tool_stopped(event.tool_call_id, actions)
        if event.tool_name == "end_call":
            # Let the goodbye play out; the server usually closes first anyway.
            if self._playing:
                self._hangup_after_playback = True
            else:
                actions += self._close(NORMAL_CLOSE, "agent ended the call")
        return actions

    def _on_mcp_tool_call(self, event: m.McpToolCall, now: float) -> list[Action]:
        self._times.last_activity_at = now
        actions = self._report(event)
        if event.state == "loading":
            self._tool_started(event.tool_call_id, now, actions)
        elif event.state in ("success", "failure"):
            self._approvals.pop(event.tool_call_id, None)  # answered elsewhere, or it gave up
            self._tool_stopped(event.tool_call_id, actions)
        elif event.tool_call_id not in self._approvals:
            actions += self._approval_asked(event, now)
        return actions

    # ------------------------------------------------------------------ internals

    def _approval_asked(self, call: m.McpToolCall, now: float) -> list[Action]:
        answer = self.settings.approvals.answer(call.tool_name)
        if answer is not None:
            return self._send_approval(call, answer, "config")
        if len(self._approvals) >= MAX_APPROVALS_WAITING:
            return self._send_approval(call, False, "too many waiting")
        deadline = now + self.settings.approvals.wait_s(call.approval_timeout_secs)
        self._approvals[call.tool_call_id] = WaitingApproval(call, deadline)
        actions: list[Action] = [AskApproval(call)]
        self._show(actions)
        return actions

    def _send_approval(self, call: m.McpToolCall, approved: bool, by: str) -> list[Action]:
        return [
            Send(m.McpToolApprovalResult(call.tool_call_id, approved)),
            Notify(ev.McpApproval(call.tool_name, call.tool_call_id, approved, by)),
        ]

    def _expire(self, now: float) -> list[Action]:
        """Decline the approvals nobody answered in time; forget tools never reported done."""
        actions: list[Action] = []
        for tool_call_id, waiting in list(self._approvals.items()):
            if now >= waiting.deadline:
                del self._approvals[tool_call_id]
                self._times.last_activity_at = now  # the agent answers the no: not idle
                actions += self._send_approval(waiting.call, False, "no answer")
        for tool_call_id, since in list(self._working.items()):
            if now - since >= self.settings.tool_shown_max_s:
                del self._working[tool_call_id]
        self._show(actions)
        return actions

    def _tool_started(self, tool_call_id: str, now: float, actions: list[Action]) -> None:
        if len(self._working) < MAX_TOOLS_SHOWN:
            self._working.setdefault(tool_call_id, now)
        self._show(actions)

    def _tool_stopped(self, tool_call_id: str, actions: list[Action]) -> None:
        self._working.pop(tool_call_id, None)
        self._show(actions)

    def _from_device(
        self, key: DeviceInput, message: m.UserMessage | m.ContextualUpdate, now: float
    ) -> list[Action]:
        handling = self._handling(key)
        if handling is Handling.HOLD:
            if len(self._held_back) >= MAX_HELD_BACK:
                held = f"{key.value}: {MAX_HELD_BACK} already held back"
                return [Notify(ev.Ignored(held, self.phase.value))]
            self._held_back.append(message)  # the server takes nothing before its metadata
            return []
        if handling is Handling.ACT:
            return self._send_from_device(message, now)
        return self._passed_over(key, handling)

    def _send_from_device(
        self, message: m.UserMessage | m.ContextualUpdate, now: float
    ) -> list[Action]:
        actions: list[Action] = [Send(message)]
        if isinstance(message, m.ContextualUpdate):
            actions.append(Notify(ev.ContextualUpdateSent(message.text, message.context_id)))
            return actions
        actions.append(Notify(ev.UserMessageSent(message.text)))
        self._user_turn_over(now, actions)
        return actions

    def _user_turn_over(self, now: float, actions: list[Action]) -> None:
        """A finished user turn (spoken or typed): the agent owes a reply, so no close until it
        has come."""
        self._times.user_turn_over(now)
        self.user_turns += 1
        self._move_turn(TurnCue.USER_TURN_OVER, actions)

    def _agent_stopped(self, actions: list[Action]) -> None:
        """The agent stopped speaking (played out, interrupted, or cut by an error)."""
        over_speech = TurnCue.AGENT_STOPPED_OVER_SPEECH
        self._move_turn(over_speech if self._user_speaking else TurnCue.AGENT_STOPPED, actions)

    def _close(self, code: int, reason: str, error: str | None = None) -> list[Action]:
        if self.phase in (Phase.CLOSING, Phase.CLOSED):
            return []
        self.phase = Phase.CLOSING
        self._local_error = error
        actions: list[Action] = []
        self._show(actions)
        actions.append(CloseConnection(code, reason))
        return actions

    def _move_turn(self, cue: TurnCue, actions: list[Action]) -> None:
        self._turn = next_turn(self._turn, cue)
        self._show(actions)

    def _show(self, actions: list[Action]) -> None:
        """Report the derived state when it changed."""
        state = self.state
        if state is not self._shown:
            self._shown = state
            actions.append(SetState(state))
