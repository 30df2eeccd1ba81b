"""The conversation rules, driven with no I/O: events in, actions asserted."""

from __future__ import annotations

import pytest

from agentpi import events as ev
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
from agentpi.protocol.session import MAX_HELD_BACK, ConversationSession
from agentpi.protocol.timers import SessionSettings
from agentpi.states import DeviceState, InvalidTransition, check_transition

METADATA = m.ConversationInitiationMetadata("conv_1", "pcm_16000", "pcm_16000")
CHUNK = b"\x00\x00" * 640


def sent(actions: list[Action]) -> list[m.ClientMessage]:
    return [a.message for a in actions if isinstance(a, Send)]


def states(actions: list[Action]) -> list[DeviceState]:
    return [a.state for a in actions if isinstance(a, SetState)]


def closes(actions: list[Action]) -> list[CloseConnection]:
    return [a for a in actions if isinstance(a, CloseConnection)]


def started(settings: SessionSettings | None = None, at: float = 0.0) -> ConversationSession:
    session = ConversationSession(settings)
    session.connection_opened(at)
    session.receive(METADATA, at)
    return session


def run_silence(session: ConversationSession, start: float, end: float) -> list[Action]:
    """Feed silent mic chunks every 40 ms and tick, from start to end; all actions."""
    actions: list[Action] = []
    t = start
    while t <= end and not session.ended:
        actions += session.mic_audio(CHUNK, speaking=False, now=t)
        actions += session.tick(t)
        t = round(t + 0.04, 6)
    return actions


# ------------------------------------------------------------------ opening


def test_init_message_is_the_first_thing_sent() -> None:
    init = m.ConversationInitiationClientData(user_id="kiosk-7")
    session = ConversationSession(SessionSettings(init=init))
    assert session.connection_opened(0.0) == [Send(init)]


def test_metadata_sets_formats_and_starts_listening() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    actions = session.receive(
        m.ConversationInitiationMetadata("conv_9", "ulaw_8000", "pcm_44100"), 0.1
    )
    assert states(actions) == [DeviceState.LISTENING]
    assert session.output_format is not None and session.output_format.encoding == "ulaw"
    assert session.input_format is not None and session.input_format.sample_rate == 44100
    assert any(isinstance(a, Notify) and a.kind == "conversation_started" for a in actions)
    # the adapters are told the formats as an action, not by reading the session
    assert actions[0] == StartAudio(session.input_format, session.output_format)


def test_mic_audio_before_metadata_is_a_usage_error() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    with pytest.raises(LocalProtocolError):
        session.mic_audio(CHUNK, False, 0.1)


def test_unsupported_audio_format_closes_with_an_error() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    actions = session.receive(m.ConversationInitiationMetadata("c", "mp3_44100", "pcm_16000"), 0)
    assert closes(actions)
    ended = session.connection_closed(1000, "", 0.2)
    assert any(isinstance(a, ConversationEnded) and "mp3_44100" in (a.error or "") for a in ended)


def test_missing_metadata_times_out() -> None:
    session = ConversationSession(SessionSettings(metadata_timeout_s=5))
    session.connection_opened(0.0)
    assert session.tick(4.9) == []
    actions = session.tick(5.0)
    assert closes(actions) and states(actions) == [DeviceState.ENDING]
    end = session.connection_closed(1000, "", 5.1)
    assert [a.error for a in end if isinstance(a, ConversationEnded)] == [
        "the agent sent no conversation metadata within 5 s"
    ]


# ------------------------------------------------------------------ ping / pong


@pytest.mark.parametrize("event_id", [0, 1, 77, 2**31])
def test_every_ping_gets_a_pong_echoing_its_event_id(event_id: int) -> None:
    session = started()
    assert sent(session.receive(m.Ping(event_id, 20), 1.0)) == [m.Pong(event_id)]


def test_pings_are_answered_before_metadata_and_while_closing() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    assert sent(session.receive(m.Ping(1), 0.1)) == [m.Pong(1)]
    session.receive(METADATA, 0.2)
    session.request_end("bye", 0.3)
    assert sent(session.receive(m.Ping(2), 0.4)) == [m.Pong(2)]


# ------------------------------------------------------------------ audio and interruption


def test_agent_audio_is_played_and_shows_speaking() -> None:
    session = started()
    actions = session.receive(m.Audio(b"\x01\x00" * 10, 3), 1.0)
    assert PlayAudio(b"\x01\x00" * 10, 3) in actions
    assert states(actions) == [DeviceState.SPEAKING]
    drained = session.playback_drained(2.0)
    assert states(drained) == [DeviceState.LISTENING]


def test_interruption_flushes_and_drops_audio_up_to_its_event_id() -> None:
    session = started()
    session.receive(m.Audio(b"a", 5), 1.0)
    actions = session.receive(m.Interruption(5), 1.1)
    assert FlushPlayback() in actions
    assert states(actions) == [DeviceState.LISTENING]
    assert session.receive(m.Audio(b"late", 5), 1.2) == []
    assert session.receive(m.Audio(b"older", 4), 1.2) == []
    assert PlayAudio(b"next", 6) in session.receive(m.Audio(b"next", 6), 1.3)
    assert session.dropped_audio_chunks == 2


def test_an_older_interruption_does_not_lower_the_cut_off() -> None:
    session = started()
    session.receive(m.Interruption(9), 1.0)
    session.receive(m.Interruption(3), 1.1)
    assert session.receive(m.Audio(b"x", 8), 1.2) == []


# ------------------------------------------------------------------ user activity


def test_user_activity_at_speech_onset_and_then_every_interval() -> None:
    session = started(SessionSettings(user_activity_interval_s=1.0))
    activity_times = []
    t = 1.0
    while t < 3.5:
        if any(isinstance(msg, m.UserActivity) for msg in sent(session.mic_audio(CHUNK, True, t))):
            activity_times.append(round(t, 2))
        t = round(t + 0.04, 6)
    assert activity_times == [1.0, 2.0, 3.0]
    quiet = session.mic_audio(CHUNK, False, 3.6)
    assert not any(isinstance(msg, m.UserActivity) for msg in sent(quiet))


def test_every_mic_chunk_is_sent_and_speech_shows_user_speaking() -> None:
    session = started()
    actions = session.mic_audio(b"\x05\x00", True, 1.0)
    assert sent(actions)[-1] == m.UserAudioChunk(b"\x05\x00")
    assert states(actions) == [DeviceState.USER_SPEAKING]
    assert states(session.mic_audio(b"\x00\x00", False, 1.5)) == [DeviceState.LISTENING]


# ------------------------------------------------------------------ the close policy


def agent_turn(session: ConversationSession, at: float, complete: bool = True) -> None:
    session.receive(m.AgentResponse("hello", 2), at)
    session.receive(m.Audio(b"\x01\x00" * 100, 2), at)
    if complete:
        session.receive(m.AgentResponseComplete(2), at + 0.1)


def test_closes_after_complete_and_the_configured_silence() -> None:
    session = started(SessionSettings(silence_close_s=4.0))
    agent_turn(session, 1.0)
    session.playback_drained(2.0)  # the silence starts once the reply has been heard
    assert not closes(run_silence(session, 2.0, 5.96))
    actions = session.tick(6.0)
    assert closes(actions) == [CloseConnection(1000, "user silent after the agent's turn")]
    end = session.connection_closed(1000, "user silent after the agent's turn", 6.1)
    finished = [a for a in end if isinstance(a, ConversationEnded)]
    assert finished == [ConversationEnded(1000, "user silent after the agent's turn", "client")]
    assert states(end) == [DeviceState.IDLE]


def test_no_close_while_the_agent_is_still_playing() -> None:
    session = started(SessionSettings(silence_close_s=1.0))
    agent_turn(session, 1.0)
    assert not closes(run_silence(session, 1.2, 10.0))  # never drained: still speaking
    session.playback_drained(10.0)
    assert closes(run_silence(session, 10.0, 11.1))


def test_user_speech_postpones_the_close() -> None:
    session = started(SessionSettings(silence_close_s=4.0))
    agent_turn(session, 1.0)
    session.playback_drained(1.5)
    run_silence(session, 1.5, 4.0)
    session.mic_audio(CHUNK, True, 4.04)
    assert not closes(run_silence(session, 4.08, 8.0))
    assert closes(run_silence(session, 8.04, 8.2))


def test_no_close_before_the_agent_completes_its_turn() -> None:
    session = started(SessionSettings(silence_close_s=1.0, idle_close_s=100))
    session.receive(m.Audio(b"\x01\x00", 2), 1.0)
    session.playback_drained(1.2)
    assert not closes(run_silence(session, 1.2, 20.0))  # no agent_response, no complete


def test_fallback_agent_response_and_drained_audio_count_as_complete() -> None:
    session = started(SessionSettings(silence_close_s=2.0, response_audio_idle_s=1.0))
    agent_turn(session, 1.0, complete=False)
    session.playback_drained(3.0)
    assert not closes(run_silence(session, 3.0, 4.96))
    assert closes(session.tick(5.0))


def test_a_user_transcript_cancels_the_pending_close() -> None:
    session = started(SessionSettings(silence_close_s=2.0, idle_close_s=100))
    agent_turn(session, 1.0)
    session.playback_drained(1.5)
    session.receive(m.UserTranscript("one more thing", 3), 3.0)
    assert not closes(run_silence(session, 3.0, 20.0))  # the agent owes a reply


def test_pending_tool_call_blocks_the_close() -> None:
    session = started(SessionSettings(silence_close_s=1.0))
    agent_turn(session, 1.0)
    session.playback_drained(1.2)
    actions = session.receive(m.ClientToolCall("get_time", "c1", {}, 3), 1.3)
    session.receive(m.AgentResponseComplete(3), 1.31)
    assert [a.call.tool_call_id for a in actions if isinstance(a, RunTool)] == ["c1"]
    assert not closes(run_silence(session, 1.3, 5.0))
    result = session.tool_finished("c1", "12:00", False, 5.0)
    assert sent(result) == [m.ClientToolResult("c1", "12:00", False)]
    assert closes(run_silence(session, 5.0, 6.1))


def test_idle_conversation_closes_after_idle_close_s() -> None:
    session = started(SessionSettings(idle_close_s=10.0))
    assert not closes(run_silence(session, 0.0, 9.9))
    assert closes(run_silence(session, 10.0, 10.1))


def test_end_call_closes_once_the_goodbye_has_played() -> None:
    session = started()
    session.receive(m.Audio(b"\x01\x00", 4), 1.0)
    actions = session.receive(m.AgentToolResponse("end_call", "t", "system", False), 1.1)
    assert not closes(actions)
    assert closes(session.playback_drained(2.0)) == [CloseConnection(1000, "agent ended the call")]


def test_text_from_the_device_waits_for_the_metadata_then_goes_out_in_order() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    assert session.contextual_update("Lobby, 9:00", 0.1) == []
    assert session.user_message("open the door", 0.2) == []
    actions = session.receive(METADATA, 0.5)
    assert sent(actions) == [m.ContextualUpdate("Lobby, 9:00"), m.UserMessage("open the door")]
    # the typed message is a user turn: the agent is now thinking about a reply
    assert states(actions) == [DeviceState.LISTENING, DeviceState.THINKING]


def test_text_held_for_the_metadata_is_bounded_and_the_excess_reported() -> None:
    session = ConversationSession()
    session.connection_opened(0.0)
    for n in range(MAX_HELD_BACK):
        assert session.contextual_update(f"note {n}", 0.1) == []
    refused = session.user_message("one too many", 0.2)
    assert [a.event for a in refused if isinstance(a, Notify)] == [
        ev.Ignored(f"user_message: {MAX_HELD_BACK} already held back", "awaiting_metadata")
    ]
    assert len(sent(session.receive(METADATA, 0.5))) == MAX_HELD_BACK


def test_a_user_message_is_a_turn_the_agent_owes_a_reply_to() -> None:
    session = started(SessionSettings(silence_close_s=1.0, idle_close_s=100))
    agent_turn(session, 1.0)
    session.playback_drained(1.5)
    actions = session.user_message("and tomorrow?", 2.0)
    assert sent(actions) == [m.UserMessage("and tomorrow?")]
    assert not closes(run_silence(session, 2.0, 20.0))


def test_a_contextual_update_is_sent_without_changing_the_turn() -> None:
    session = started(SessionSettings(silence_close_s=1.0))
    agent_turn(session, 1.0)
    session.playback_drained(1.5)
    actions = session.contextual_update("The visitor pressed the button.", 2.0)
    assert sent(actions) == [m.ContextualUpdate("The visitor pressed the button.")]
    assert not states(actions)
    assert closes(run_silence(session, 2.0, 2.6))  # silence since 1.5 s: the close still comes


def test_nothing_from_the_device_once_closing() -> None:
    session = started()
    assert session.accepts_input
    session.request_end("button pressed", 1.0)
    assert not session.accepts_input
    assert session.user_message("hello?", 1.1) == []
    assert session.contextual_update("late", 1.1) == []


def test_end_after_turn_lets_the_goodbye_play_then_closes_without_the_silence() -> None:
    session = started(SessionSettings(silence_close_s=30.0, idle_close_s=100))
    session.receive(m.UserTranscript("bye", 1), 0.5)
    session.receive(m.ClientToolCall("end_conversation", "c1", {}, 2), 1.0)
    session.end_after_turn(1.1)
    session.tool_finished("c1", "Ending the conversation.", False, 1.1)
    session.receive(m.AgentResponse("Goodbye!", 2), 1.5)
    session.receive(m.Audio(b"\x01\x00" * 100, 2), 1.5)
    session.receive(m.AgentResponseComplete(2), 1.6)
    assert not closes(run_silence(session, 1.6, 3.0))  # the goodbye is still playing
    session.playback_drained(3.0)
    assert closes(session.tick(3.05)) == [CloseConnection(1000, "device ended the conversation")]


def test_end_after_turn_with_an_agent_that_says_nothing_more() -> None:
    session = started(SessionSettings(silence_close_s=2.0, idle_close_s=100))
    session.end_after_turn(1.0)
    assert not closes(run_silence(session, 1.0, 2.96))
    assert closes(session.tick(3.0))


# ------------------------------------------------------------------ ending by the server


def test_server_error_then_close_keeps_the_reason() -> None:
    session = started()
    session.receive(m.Audio(b"\x01\x00", 2), 0.5)
    actions = session.receive(m.ErrorEvent("LLM timed out", 1002, "llm_timeout"), 1.0)
    assert FlushPlayback() in actions
    end = session.connection_closed(1002, "llm_timeout", 1.1)
    ended = [a for a in end if isinstance(a, ConversationEnded)]
    error = "llm_timeout: LLM timed out"
    assert ended == [ConversationEnded(1002, "llm_timeout", "server", error, "llm_timeout")]
    assert states(end) == [DeviceState.ERROR]


def test_server_error_without_close_is_closed_after_a_grace_period() -> None:
    session = started(SessionSettings(error_close_grace_s=2.0))
    session.receive(m.ErrorEvent("odd", None, "unknown"), 1.0)
    assert session.tick(2.9) == []
    assert closes(session.tick(3.0))


@pytest.mark.parametrize("code", [1002, 1008, 1011])
def test_abnormal_server_close_is_an_error(code: int) -> None:
    session = started()
    end = session.connection_closed(code, "bad", 1.0)
    ended = next(a for a in end if isinstance(a, ConversationEnded))
    assert (
        ended.closed_by == "server"
        and ended.error == f"server closed the connection with {code} (bad)"
    )


def test_normal_server_close_is_not_an_error() -> None:
    session = started()
    end = session.connection_closed(1000, "agent hung up", 1.0)
    assert [a.error for a in end if isinstance(a, ConversationEnded)] == [None]
    assert states(end) == [DeviceState.IDLE]


def test_lost_connection_is_an_error() -> None:
    session = started()
    end = session.connection_closed(None, "connection lost without a close frame", 1.0)
    assert [a.error for a in end if isinstance(a, ConversationEnded)] == [
        "connection lost: connection lost without a close frame"
    ]


def test_nothing_happens_after_the_end() -> None:
    session = started()
    session.connection_closed(1000, "", 1.0)
    assert session.receive(m.Ping(1), 2.0) == []
    assert session.tick(50.0) == []
    assert session.connection_closed(1000, "", 3.0) == []


# ------------------------------------------------------------------ bad input, states


def test_invalid_frames_are_reported_and_do_not_end_the_conversation() -> None:
    session = started()
    actions = session.receive_invalid(m.ProtocolError("ping.ping_event: missing"), 1.0)
    assert actions == [Notify(ev.ProtocolErrorSeen("ping.ping_event: missing"))]
    assert not session.ended
    assert sent(session.receive(m.Ping(4), 1.1)) == [m.Pong(4)]


def test_unknown_events_are_reported_not_fatal() -> None:
    session = started()
    actions = session.receive(m.UnknownEvent("context_usage", {"type": "context_usage"}), 1.0)
    assert actions == [Notify(ev.UnknownEventSeen("context_usage"))]


def test_every_observable_event_becomes_a_notification() -> None:
    session = started()
    kinds = []
    events: list[m.ServerEvent] = [
        m.UserTranscript("hi", 1),
        m.TentativeUserTranscript("h", 1),
        m.AgentResponse("yo", 2),
        m.AgentResponseCorrection("yo there", "yo", 2),
        m.VadScore(0.4),
        m.InternalTentativeAgentResponse("y"),
        m.AgentChatResponsePart("y", "delta", 2),
        m.AgentToolResponse("lookup", "t", "webhook", False),
        m.ContextualUpdate("ctx"),
        m.AgentResponseComplete(2),
        m.Interruption(2),
    ]
    for event in events:
        kinds += [a.kind for a in session.receive(event, 1.0) if isinstance(a, Notify)]
    assert kinds == [
        "user_transcript",
        "tentative_user_transcript",
        "agent_response",
        "agent_response_correction",
        "vad_score",
        "tentative_agent_response",
        "agent_chat_response_part",
        "agent_tool_response",
        "contextual_update",
        "agent_response_complete",
        "interruption",
    ]


def test_state_table_refuses_impossible_transitions() -> None:
    with pytest.raises(InvalidTransition, match="idle to speaking"):
        check_transition(DeviceState.IDLE, DeviceState.SPEAKING)
    with pytest.raises(InvalidTransition):
        check_transition(DeviceState.ENDING, DeviceState.LISTENING)
    check_transition(DeviceState.SPEAKING, DeviceState.USER_SPEAKING)


# ------------------------------------------------------------------ limits a server cannot beat


def test_a_conversation_never_outlives_its_maximum_length() -> None:
    session = started(SessionSettings(max_duration_s=30.0, idle_close_s=1000))
    session.receive(m.Audio(b"\x01\x00" * 10, 1), 1.0)  # still playing: no ordinary close
    assert not closes(session.tick(29.9))
    assert closes(session.tick(30.0)) == [
        CloseConnection(1000, "conversation reached its maximum length (30 s)")
    ]


def test_a_server_that_keeps_talking_after_its_turn_is_ended() -> None:
    session = started(SessionSettings(max_after_complete_s=5.0, idle_close_s=1000))
    session.receive(m.AgentResponse("done", 1), 1.0)
    session.receive(m.AgentResponseComplete(1), 1.0)
    t = 1.0
    while t < 5.9:  # audio keeps coming; each chunk would otherwise reopen the turn
        t = round(t + 0.1, 6)
        assert not closes(session.receive(m.Audio(b"\x01\x00", 1), t))
        assert not closes(session.tick(t))
    assert closes(session.tick(6.0)) == [
        CloseConnection(1000, "the agent kept its turn going 5 s after completing it")
    ]


def test_the_user_taking_the_floor_lifts_the_after_complete_limit() -> None:
    session = started(SessionSettings(max_after_complete_s=5.0, idle_close_s=1000))
    session.receive(m.AgentResponseComplete(1), 1.0)
    session.mic_audio(CHUNK, True, 4.0)
    session.receive(m.Audio(b"\x01\x00", 2), 4.5)
    assert not closes(session.tick(7.0))


def test_a_ping_flood_is_answered_in_full_and_reported_once_a_second() -> None:
    session = started()
    actions: list[Action] = []
    for n in range(1, 201):
        actions += session.receive(m.Ping(n, 40 + n % 3), 1.0 + n / 1000)
    assert sent(actions) == [m.Pong(n) for n in range(1, 201)]
    assert [a.kind for a in actions if isinstance(a, Notify)] == ["latency"]
    assert session.median_ping_ms() == 41


def test_user_turns_count_what_the_user_said_or_typed() -> None:
    session = started()
    session.receive(m.UserTranscript("hi", 1), 1.0)
    session.user_message("and this", 2.0)
    session.contextual_update("not a turn", 2.1)
    assert session.user_turns == 2


# ------------------------------------------------------------------ the 2026 events


def asking(
    tool_call_id: str = "m1", name: str = "turn_on", timeout: int | None = 60
) -> m.McpToolCall:
    return m.McpToolCall(
        "svc", tool_call_id, name, "awaiting_approval", "", approval_timeout_secs=timeout
    )


def approvals_sent(actions: list[Action]) -> list[tuple[str, bool]]:
    return [
        (msg.tool_call_id, msg.is_approved)
        for msg in sent(actions)
        if isinstance(msg, m.McpToolApprovalResult)
    ]


def test_an_approval_waits_for_the_user_and_is_declined_before_the_server_gives_up() -> None:
    session = started()
    asked = session.receive(asking(timeout=60), 1.0)
    assert states(asked) == [DeviceState.AWAITING_APPROVAL]
    assert session.approvals_waiting == {"m1": "turn_on"}
    assert approvals_sent(run_silence(session, 1.0, 55.9)) == []  # 60 s less the 5 s margin
    declined = session.tick(56.0)
    assert approvals_sent(declined) == [("m1", False)]
    said = [a.event for a in declined if isinstance(a, Notify)]
    assert said == [ev.McpApproval("turn_on", "m1", False, "no answer")]
    assert states(declined) == [DeviceState.LISTENING] and session.approvals_waiting == {}


def test_the_user_answers_the_oldest_approval_or_the_one_named() -> None:
    session = started()
    session.receive(asking("m1"), 1.0)
    session.receive(asking("m2", "open_door"), 1.1)
    assert approvals_sent(session.answer_approval(True, 2.0, "control", "m2")) == [("m2", True)]
    assert approvals_sent(session.answer_approval(False, 2.1, "button")) == [("m1", False)]
    nothing = session.answer_approval(True, 2.2, "button")
    assert sent(nothing) == [] and isinstance(nothing[0], Notify)


def test_the_lists_answer_at_once_and_more_than_four_waiting_are_declined() -> None:
    from agentpi.protocol.timers import ApprovalPolicy

    policy = ApprovalPolicy(approve=("get_*",), deny=("get_secrets",))
    session = started(SessionSettings(approvals=policy))
    assert approvals_sent(session.receive(asking("a", "get_time"), 1.0)) == [("a", True)]
    assert approvals_sent(session.receive(asking("b", "get_secrets"), 1.0)) == [("b", False)]
    for index in range(4):
        assert approvals_sent(session.receive(asking(f"w{index}"), 1.0)) == []
    assert approvals_sent(session.receive(asking("w4"), 1.0)) == [("w4", False)]
    assert len(session.approvals_waiting) == 4


def test_an_approval_blocks_the_close_while_the_user_decides() -> None:
    session = started(SessionSettings(silence_close_s=1.0))
    session.receive(m.AgentResponse("Shall I?", 3), 0.5)
    session.receive(m.AgentResponseComplete(3), 0.6)
    session.receive(asking(timeout=30), 0.7)
    assert closes(run_silence(session, 0.7, 20.0)) == []
    session.answer_approval(True, 20.0, "button")
    assert closes(run_silence(session, 20.0, 23.0))


def test_a_tool_at_work_shows_working_until_its_response_or_at_most_a_minute() -> None:
    session = started(SessionSettings(silence_close_s=1.0, idle_close_s=300))
    request = session.receive(m.AgentToolRequest("lookup", "t1", "webhook", 2), 1.0)
    assert states(request) == [DeviceState.WORKING]
    response = session.receive(m.AgentToolResponse("lookup", "t1", "webhook", False), 2.0)
    assert states(response) == [DeviceState.LISTENING]
    session.receive(m.AgentToolRequest("lookup", "t2", "webhook", 3), 3.0)  # never answered
    session.receive(m.AgentResponse("One moment.", 3), 3.1)
    session.receive(m.AgentResponseComplete(3), 3.2)
    quiet = run_silence(session, 3.2, 70.0)
    assert DeviceState.LISTENING in states(quiet)  # the lights gave up on it after 60 s
    assert closes(quiet)  # and the conversation could end


def test_feedback_rates_the_last_answer_once() -> None:
    session = started()
    assert session.rateable_event_id is None
    session.receive(m.AgentResponse("Noon.", 7), 1.0)
    session.receive(m.Audio(b"\x00\x00", 7), 1.1)
    liked = session.feedback("like", 2.0)
    assert sent(liked) == [m.Feedback(7, "like")]
    assert session.rateable_event_id is None and sent(session.feedback("dislike", 2.1)) == []
    session.receive(m.AgentResponse("Anything else?", 9), 3.0)
    assert sent(session.feedback("dislike", 3.1)) == [m.Feedback(9, "dislike")]


def test_a_context_with_an_id_goes_out_with_it() -> None:
    session = started()
    update = session.contextual_update("The light is off.", 1.0, "kitchen_light")
    assert sent(update) == [m.ContextualUpdate("The light is off.", "kitchen_light")]
