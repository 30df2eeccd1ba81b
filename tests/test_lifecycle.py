"""The conversation's life: the phase table is total, and no order of events makes it raise.

A hypothesis state machine drives ``ConversationSession`` with every server event type, every
device call and clock jumps, in any order, and checks the invariants after every step. The default
run is 150 sequences of up to 100 steps (13,730 steps measured with the 2026 events in the
alphabet); ``AGENTPI_LONG_FUZZ=1`` runs 2,000 sequences of up to 200 (400,000).
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from agentpi import events as ev
from agentpi.errors import AgentpiError, LocalProtocolError, RemoteProtocolError
from agentpi.protocol import actions as act
from agentpi.protocol import messages as m
from agentpi.protocol.phases import (
    INPUTS,
    RULES,
    SERVER_EVENT_CLASSES,
    DeviceInput,
    Handling,
    Input,
    Phase,
)
from agentpi.protocol.session import ConversationSession
from agentpi.protocol.timers import ApprovalPolicy, SessionSettings
from agentpi.states import DeviceState, check_transition

LONG = os.environ.get("AGENTPI_LONG_FUZZ") == "1"
FORMATS = ["pcm_16000", "pcm_8000", "ulaw_8000", "pcm_48000", "mp3_44100", ""]
TOOL_IDS = ["t1", "t2", "t3"]
MCP_IDS = ["m1", "m2", "m3", "m4", "m5", "m6"]


def test_every_phase_names_every_input() -> None:
    for phase in Phase:
        assert set(RULES[phase]) == set(INPUTS), phase


def test_every_server_message_type_has_a_rule() -> None:
    registered = set(m.SERVER_EVENT_TYPES.values())
    assert registered | {m.ContextualUpdate, m.UnknownEvent} == set(SERVER_EVENT_CLASSES)
    assert len(registered) >= 27  # the 2026 definition's server events


def test_the_alphabet_below_draws_every_server_event_class() -> None:
    """Each strategy builds one class (``st.builds(cls, ...)`` or ``st.just(instance)``)."""
    built: set[type] = set()
    for strategy in event_strategies():
        wrapped: Any = getattr(strategy, "wrapped_strategy", strategy)
        target = getattr(wrapped, "target", None)
        built.add(target if target is not None else type(wrapped.value))
    assert built == set(SERVER_EVENT_CLASSES)


def test_every_error_agentpi_defines_is_one_the_command_line_prints_in_one_line() -> None:
    """The command line prints an ``AgentpiError`` as one line; any other exception that
    escaped would be a traceback. So every exception class in the package is one (the protocol
    core's two branches included), also those caught where they arise."""
    import importlib
    import inspect
    import pkgutil

    import agentpi

    defined = [
        value
        for info in pkgutil.walk_packages(agentpi.__path__, "agentpi.")
        if not info.name.endswith("__main__")
        for value in vars(importlib.import_module(info.name)).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == info.name
    ]
    assert len(defined) >= 15 and m.ProtocolError in defined
    assert [error for error in defined if not issubclass(error, AgentpiError)] == []
    assert issubclass(m.ProtocolError, RemoteProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)


def test_a_button_press_while_connecting_then_metadata_does_not_raise() -> None:
    """Reproduced on the old core: InvalidTransition 'ending to listening' on the metadata."""
    session = ConversationSession()
    session.connection_opened(0.0)
    closing = session.request_end("button pressed", 0.1)
    assert act.CloseConnection(1000, "button pressed") in closing
    late = session.receive(
        m.ConversationInitiationMetadata("conv_7", "pcm_16000", "pcm_16000"), 0.2
    )
    assert not any(isinstance(a, act.StartAudio | act.SetState) for a in late)
    assert session.state is DeviceState.ENDING
    end = session.connection_closed(1000, "button pressed", 0.3)
    assert [a for a in end if isinstance(a, act.ConversationEnded)] == [
        act.ConversationEnded(1000, "button pressed", "client")
    ]
    assert session.conversation_id == "conv_7"  # the summary still names the conversation


def event_strategies() -> list[st.SearchStrategy[m.ServerEvent]]:
    ids = st.integers(min_value=0, max_value=12)
    text = st.text(max_size=8)
    return [
        st.builds(
            m.ConversationInitiationMetadata,
            st.sampled_from(["conv_1", "conv_2"]),
            st.sampled_from(FORMATS),
            st.sampled_from(FORMATS),
        ),
        st.builds(m.Ping, ids, st.one_of(st.none(), st.integers(0, 500))),
        st.builds(m.Audio, st.just(b"\x01\x00" * 8), ids),
        st.builds(m.Interruption, ids),
        st.builds(m.UserTranscript, text, ids),
        st.builds(m.TentativeUserTranscript, text, ids),
        st.builds(m.AgentResponse, text, ids),
        st.builds(m.AgentResponseCorrection, text, text, ids),
        st.builds(m.AgentResponseComplete, st.one_of(st.none(), ids)),
        st.builds(
            m.ClientToolCall,
            st.sampled_from(["get_time", "end_conversation"]),
            st.sampled_from(TOOL_IDS),
            st.just({}),
            ids,
        ),
        st.builds(m.VadScore, st.floats(0, 1)),
        st.builds(m.InternalTentativeAgentResponse, text),
        st.builds(m.AgentChatResponsePart, text, st.sampled_from(["start", "delta", "stop"]), ids),
        st.builds(
            m.AgentToolResponse,
            st.sampled_from(["end_call", "lookup"]),
            st.just("t"),
            st.just("system"),
            st.booleans(),
        ),
        st.builds(m.ContextualUpdate, text),
        st.builds(
            m.ErrorEvent, text, st.one_of(st.none(), st.just(1011)), st.just("llm_error"), st.none()
        ),
        st.builds(m.UnknownEvent, st.sampled_from(["hologram", "smell"]), st.just({})),
        st.builds(m.AgentReasoningResponsePart, text, st.sampled_from(["start", "delta"])),
        st.builds(m.RichContent, st.just("row"), st.just("item_card")),
        st.builds(m.AgentToolRequest, st.just("lookup"), st.sampled_from(TOOL_IDS), st.just("mcp")),
        st.builds(
            m.AgentToolResponseFullPayload,
            st.just("lookup"),
            st.sampled_from(TOOL_IDS),
            st.just("webhook"),
            st.booleans(),
            text,
        ),
        st.builds(
            m.McpToolCall,
            st.just("svc"),
            st.sampled_from(MCP_IDS),
            st.sampled_from(["turn_on", "read_state", "delete_all"]),
            st.sampled_from(["loading", "awaiting_approval", "awaiting_approval", "success"]),
            st.just("2026-12-04T08:00:00Z"),
            approval_timeout_secs=st.one_of(st.none(), st.integers(-5, 60)),
        ),
        st.builds(
            m.McpToolCall,
            st.just("svc"),
            st.sampled_from(MCP_IDS),
            st.just("turn_on"),
            st.just("failure"),
            st.just(""),
            error_message=text,
        ),
        st.builds(m.McpConnectionStatus, st.just((m.McpIntegration("home", "mcp_server", True),))),
        st.builds(
            m.ContextUsage, st.just("llm"), st.integers(0, 10**6), st.integers(-1, 10**6), ids
        ),
        st.builds(m.AsrInitiationMetadata, st.just({})),
        st.just(m.GuardrailTriggered()),
        st.builds(m.InternalTurnProbability, st.floats(0, 1)),
        st.builds(m.AgentTyping, st.booleans(), st.one_of(st.none(), st.integers(0, 5000))),
        st.just(m.ExternalAgentConnected()),
        st.just(m.ExternalAgentDisconnected()),
    ]


def server_events() -> st.SearchStrategy[m.ServerEvent]:
    return st.one_of(event_strategies())


class SessionLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.session = ConversationSession(
            SessionSettings(
                silence_close_s=2.0,
                metadata_timeout_s=5.0,
                idle_close_s=20.0,
                approvals=ApprovalPolicy(approve=("read_*",), deny=("delete_*",)),
            )
        )
        self.now = 0.0
        self.shown = DeviceState.CONNECTING
        self.sent: list[m.ClientMessage] = []
        self.close_requested = False
        self.socket_closed = False
        self.ended: list[act.ConversationEnded] = []
        self.audio_started = False
        self.cut_off: int | None = None
        self.agent_vad = False
        self.pending_tools: set[str] = set()
        self.asked: set[str] = set()
        self.answered: set[str] = set()
        self.steps = 0
        self.end_from_step = 0

    @initialize(
        progress=st.sampled_from(["none", "opened", "open", "open", "open"]),
        end_from_step=st.integers(min_value=0, max_value=120),
    )
    def begin(self, progress: str, end_from_step: int) -> None:
        """Most lives start open, so the steps reach the OPEN rules; when the device or the
        socket may end the conversation is drawn too, so a life is not mostly its afterlife."""
        self.end_from_step = end_from_step
        if progress != "none":
            self.socket_opens()
        if progress == "open":
            metadata = m.ConversationInitiationMetadata("conv_0", "pcm_16000", "ulaw_8000")
            self.server_sends(metadata)

    # -------------------------------------------------------------- the call and its checks

    def call(self, key: Input, do: object, *args: object) -> list[act.Action]:
        self.steps += 1
        before = self.session.phase
        rule = RULES[before][key]
        if rule.handling is Handling.MISUSE:
            with pytest.raises(LocalProtocolError):
                do(*args)  # type: ignore[operator]
            return []
        actions: list[act.Action] = do(*args)  # type: ignore[operator]
        after = self.session.phase
        assert after is before or after in rule.goes_to, f"{key}: {before} -> {after}"
        for action in actions:
            self.check(action)
        return actions

    def check(self, action: act.Action) -> None:
        if isinstance(action, act.Send):
            assert not self.socket_closed, f"sent {action.message} after the socket closed"
            if not self.sent:
                assert isinstance(action.message, m.ConversationInitiationClientData)
            if self.close_requested:
                assert isinstance(action.message, m.Pong), f"{action.message} after the close"
            if isinstance(action.message, m.McpToolApprovalResult):
                self.answered.add(action.message.tool_call_id)
            self.sent.append(action.message)
        elif isinstance(action, act.SetState):
            check_transition(self.shown, action.state)
            self.shown = action.state
        elif isinstance(action, act.StartAudio):
            assert not self.audio_started
            self.audio_started = True
        elif isinstance(action, act.PlayAudio):
            assert self.audio_started
            assert self.cut_off is None or action.event_id > self.cut_off, "interrupted audio"
        elif isinstance(action, act.CloseConnection):
            assert not self.close_requested
            self.close_requested = True
        elif isinstance(action, act.ConversationEnded):
            self.ended.append(action)
        elif isinstance(action, act.RunTool):
            self.pending_tools.add(action.call.tool_call_id)
        elif isinstance(action, act.AskApproval):
            assert action.call.tool_call_id not in self.asked - self.answered
            self.asked.add(action.call.tool_call_id)
        elif isinstance(action, act.Notify) and isinstance(action.event, ev.VadScore):
            # the device's own score only until the agent's first: never the two mixed
            assert action.event.source == "agent" or not self.agent_vad
        else:
            assert isinstance(action, act.Notify | act.FlushPlayback)

    # -------------------------------------------------------------- the server

    @rule(event=server_events())
    def server_sends(self, event: m.ServerEvent) -> None:
        acting = RULES[self.session.phase][type(event)].handling is Handling.ACT
        actions = self.call(type(event), self.session.receive, event, self.now)
        if isinstance(event, m.Ping) and acting:
            assert act.Send(m.Pong(event.event_id)) in actions, "a ping went unanswered"
        if isinstance(event, m.Interruption) and act.FlushPlayback() in actions:
            self.cut_off = max(self.cut_off or 0, event.event_id)
        if isinstance(event, m.VadScore) and acting:
            self.agent_vad = True

    @rule(frame=st.sampled_from(["{not json", "[]", '{"type": 3}']))
    def server_sends_garbage(self, frame: str) -> None:
        try:
            m.decode_server(frame)
        except m.ProtocolError as exc:
            self.call(DeviceInput.INVALID_FRAME, self.session.receive_invalid, exc, self.now)

    @precondition(lambda self: self.steps >= self.end_from_step)
    @rule(
        code=st.sampled_from([None, 1000, 1002, 1008, 1009, 1011]),
        reason=st.text(max_size=5),
        by_device=st.booleans(),
    )
    def socket_closes(self, code: int | None, reason: str, by_device: bool = False) -> None:
        self.call(
            DeviceInput.CONNECTION_CLOSED,
            self.session.connection_closed,
            code,
            reason,
            self.now,
            by_device,
        )
        self.socket_closed = True

    # -------------------------------------------------------------- the device

    @rule()
    def socket_opens(self) -> None:
        self.call(DeviceInput.CONNECTION_OPENED, self.session.connection_opened, self.now)

    @rule(speaking=st.booleans(), score=st.none() | st.floats(0, 1))
    def mic_chunk(self, speaking: bool, score: float | None) -> None:
        chunk = b"\x00\x00" * 4
        self.call(DeviceInput.MIC_AUDIO, self.session.mic_audio, chunk, speaking, self.now, score)

    @rule()
    def speaker_drained(self) -> None:
        self.call(DeviceInput.PLAYBACK_DRAINED, self.session.playback_drained, self.now)

    @rule(tool_call_id=st.sampled_from(TOOL_IDS), is_error=st.booleans())
    def tool_finishes(self, tool_call_id: str, is_error: bool) -> None:
        self.call(
            DeviceInput.TOOL_FINISHED,
            self.session.tool_finished,
            tool_call_id,
            "ok",
            is_error,
            self.now,
        )

    @rule(
        approved=st.booleans(),
        tool_call_id=st.one_of(st.none(), st.sampled_from(MCP_IDS)),
    )
    def user_answers_approval(self, approved: bool, tool_call_id: str | None) -> None:
        self.call(
            DeviceInput.APPROVAL_ANSWERED,
            self.session.answer_approval,
            approved,
            self.now,
            "button",
            tool_call_id,
        )

    @rule(score=st.sampled_from(["like", "dislike", None]))
    def user_rates(self, score: str | None) -> None:
        self.call(DeviceInput.FEEDBACK, self.session.feedback, score, self.now)

    @rule(text=st.text(max_size=5))
    def device_says(self, text: str) -> None:
        self.call(DeviceInput.USER_MESSAGE, self.session.user_message, text, self.now)

    @rule(text=st.text(max_size=5), context_id=st.one_of(st.none(), st.just("clock")))
    def device_informs(self, text: str, context_id: str | None) -> None:
        self.call(
            DeviceInput.CONTEXTUAL_UPDATE,
            self.session.contextual_update,
            text,
            self.now,
            context_id,
        )

    @rule()
    def device_ends_after_turn(self) -> None:
        self.call(DeviceInput.END_AFTER_TURN, self.session.end_after_turn, self.now)

    @precondition(lambda self: self.steps >= self.end_from_step)
    @rule()
    def device_ends(self) -> None:
        self.call(DeviceInput.REQUEST_END, self.session.request_end, "button pressed", self.now)

    @rule(gap=st.one_of(st.floats(0, 0.5), st.floats(0, 30)))
    def time_passes(self, gap: float) -> None:
        self.now += gap
        self.call(DeviceInput.TICK, self.session.tick, self.now)

    @precondition(lambda self: self.close_requested and not self.socket_closed)
    @rule()
    def close_completes(self) -> None:
        self.socket_closes(1000, "")

    # -------------------------------------------------------------- always

    @invariant()
    def at_most_one_end(self) -> None:
        assert len(self.ended) <= 1
        assert (len(self.ended) == 1) == self.socket_closed
        assert self.session.ended == self.socket_closed

    @invariant()
    def approvals_waiting_are_bounded_and_shown(self) -> None:
        waiting = self.asked - self.answered
        assert len(waiting) <= 4  # MAX_APPROVALS_WAITING
        if self.session.phase is Phase.OPEN:
            assert (self.session.state is DeviceState.AWAITING_APPROVAL) == bool(
                self.session.approvals_waiting
            )

    @invariant()
    def shows_what_it_reported(self) -> None:
        if self.session.phase is not Phase.CONNECTING or self.shown is not DeviceState.CONNECTING:
            assert self.session.state is self.shown

    def teardown(self) -> None:
        if not self.socket_closed:
            self.socket_closes(None, "test over")
        assert len(self.ended) == 1


SessionLife.TestCase.settings = settings(
    max_examples=2000 if LONG else 150,
    stateful_step_count=200 if LONG else 100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_no_order_of_events_breaks_the_session = SessionLife.TestCase
