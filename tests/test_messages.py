"""Every message type round-trips through encode/decode and matches the official contract."""

from __future__ import annotations

import json

import pytest

from agentpi.protocol import messages as m
from tests.schema import contract_types, validate_frame

CLIENT_MESSAGES: list[m.ClientMessage] = [
    m.UserAudioChunk(b"\x01\x00\xff\x7f" * 8),
    m.Pong(42),
    m.ConversationInitiationClientData(
        conversation_config_override={"agent": {"first_message": "Hi", "language": "en"}},
        dynamic_variables={"room": "lobby", "floor": 3, "open": True},
        user_id="device-1",
        source_info={"source": "agentpi", "version": "0.1.0"},
    ),
    m.ConversationInitiationClientData(),
    m.ClientToolResult("call_1", "done", False),
    m.ClientToolResult("call_2", "boom", True),
    m.ContextualUpdate("the user is in the kitchen"),
    m.ContextualUpdate("it is 9 pm", context_id="clock"),
    m.UserMessage("what's the weather?"),
    m.UserMessage(None),
    m.UserMessage("tapped", rich_content_id="row-1"),
    m.UserActivity(),
    m.MultimodalMessage(text="what is this?", file_id="file_1"),
    m.MultimodalMessage(file_id="file_2"),
    m.Feedback(7, "like"),
    m.Feedback(8, None),
    m.McpToolApprovalResult("mcp_1", True),
    m.McpToolApprovalResult("mcp_2", False),
    m.ConversationInitiationClientData(
        conversation_config_override={
            "tts": {"speed": 1.1, "stability": 0.5, "similarity_boost": 0.8},
            "asr": {"keywords": ["kitchen", "hey jarvis"]},
            "agent": {"prompt": {"llm": "gemini-2.0-flash"}},
            "conversation": {"text_only": False, "client_events": ["audio", "vad_score"]},
        },
        tool_mock_config={"mocking_strategy": "none"},
    ),
]

SERVER_EVENTS: list[m.ServerEvent] = [
    m.ConversationInitiationMetadata("conv_1", "pcm_16000", "ulaw_8000"),
    m.UserTranscript("hello there", 5),
    m.TentativeUserTranscript("hel", 5),
    m.AgentResponse("Hi, how can I help?", 6),
    m.AgentResponseCorrection("Let me tell you the whole story", "Let me tell you", 6),
    m.Audio(b"\x00\x01" * 100, 6),
    m.Audio(
        b"\x00\x01",
        7,
        alignment={"chars": ["H"], "char_start_times_ms": [0], "char_durations_ms": [80]},
    ),
    m.Interruption(6),
    m.Ping(12, 50),
    m.Ping(13, None),
    m.ClientToolCall("open_door", "call_abc", {"door": "front"}, 8),
    m.VadScore(0.95),
    m.InternalTentativeAgentResponse("Sure, let me"),
    m.AgentResponseComplete(9),
    m.AgentChatResponsePart("Hel", "delta", 6),
    m.AgentToolResponse("end_call", "t1", "system", False, True, 9),
    m.ErrorEvent("Missing variable", 1008, "missing_dynamic_variable"),
    m.ContextualUpdate("server echo"),
    m.AgentReasoningResponsePart("First, the", "delta", "r-7"),
    m.RichContent("row-1", "item_card", {"title": "Lamp"}, 10),
    m.AgentToolRequest("lookup", "t2", "webhook", 11),
    m.AgentToolResponseFullPayload("lookup", "t2", "webhook", False, '{"ok": true}', event_id=11),
    m.McpToolCall(
        "svc",
        "mcp_1",
        "turn_on",
        "awaiting_approval",
        "2026-12-04T08:00:00Z",
        {"entity": "light.kitchen"},
        "Turns a light on",
        approval_timeout_secs=300,
    ),
    m.McpToolCall("svc", "mcp_1", "turn_on", "loading", "2026-12-04T08:00:01Z"),
    m.McpToolCall(
        "svc",
        "mcp_1",
        "turn_on",
        "success",
        "2026-12-04T08:00:02Z",
        result=({"type": "text", "text": "done"},),
    ),
    m.McpToolCall(
        "svc", "mcp_1", "turn_on", "failure", "2026-12-04T08:00:02Z", error_message="no light"
    ),
    m.McpConnectionStatus((m.McpIntegration("home", "mcp_server", True, 12),)),
    m.ContextUsage("gemini-2.0-flash", 3100, 1_000_000, 12),
    m.AsrInitiationMetadata({"model": "scribe"}),
    m.GuardrailTriggered(),
    m.InternalTurnProbability(0.42),
    m.AgentTyping(True, 1500),
    m.ExternalAgentConnected(),
    m.ExternalAgentDisconnected(),
]


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=lambda msg: type(msg).__name__)
def test_client_message_round_trips_and_matches_contract(message: m.ClientMessage) -> None:
    frame = m.encode(message)
    assert m.decode_client(frame) == message
    assert validate_frame(frame, "client") == json.loads(frame).get("type", "user_audio_chunk")


@pytest.mark.parametrize("event", SERVER_EVENTS, ids=lambda ev: type(ev).__name__)
def test_server_event_round_trips_and_matches_contract(event: m.ServerEvent) -> None:
    frame = m.encode(event)
    assert m.decode_server(frame) == event
    validate_frame(frame, "server")


def test_every_type_of_the_definition_is_a_class_and_is_tested_here() -> None:
    """Fails when the definition holds a type the code does not name (a new platform event)."""
    named_server = set(m.SERVER_EVENT_TYPES)
    named_client = set(m.CLIENT_MESSAGE_TYPES) | {"user_audio_chunk"}
    assert contract_types("server") - named_server == set()
    assert contract_types("client") - named_client == set()
    assert len(contract_types("server") | contract_types("client")) == 37
    tested_server = {json.loads(m.encode(ev))["type"] for ev in SERVER_EVENTS}
    tested_client = {
        json.loads(m.encode(msg)).get("type", "user_audio_chunk") for msg in CLIENT_MESSAGES
    }
    assert contract_types("server") <= tested_server
    assert contract_types("client") <= tested_client


def test_every_required_type_is_modelled() -> None:
    client_types = {
        json.loads(m.encode(msg)).get("type", "user_audio_chunk") for msg in CLIENT_MESSAGES
    }
    server_types = {json.loads(m.encode(ev))["type"] for ev in SERVER_EVENTS}
    assert client_types == {
        "user_audio_chunk",
        "pong",
        "conversation_initiation_client_data",
        "client_tool_result",
        "contextual_update",
        "user_message",
        "user_activity",
        "multimodal_message",
        "feedback",
        "mcp_tool_approval_result",
    }
    assert server_types >= {
        "conversation_initiation_metadata",
        "user_transcript",
        "tentative_user_transcript",
        "agent_response",
        "agent_response_correction",
        "audio",
        "interruption",
        "ping",
        "client_tool_call",
        "contextual_update",
        "vad_score",
        "internal_tentative_agent_response",
        "agent_response_complete",
        "agent_chat_response_part",
        "agent_tool_response",
        "error",
    }
    # The contract check itself is real: it knows these types.
    assert {"pong", "user_audio_chunk", "multimodal_message"} <= contract_types("client")


def test_exact_wire_shapes() -> None:
    assert json.loads(m.encode(m.UserAudioChunk(b"\x00\x00"))) == {"user_audio_chunk": "AAA="}
    assert json.loads(m.encode(m.Pong(3))) == {"type": "pong", "event_id": 3}
    audio = json.loads(m.encode(m.Audio(b"\x00\x00", 4)))
    assert audio == {"type": "audio", "audio_event": {"audio_base_64": "AAA=", "event_id": 4}}
    call = json.loads(m.encode(m.ClientToolCall("t", "c", {}, 1)))
    assert "client_tool_call" in call and "client_tool_call_event" not in call


def test_contract_rejects_a_broken_frame() -> None:
    with pytest.raises(AssertionError, match="breaks the contract"):
        validate_frame('{"type": "pong", "event_id": "seven"}', "client")
    with pytest.raises(AssertionError, match="not in the contract"):
        validate_frame('{"type": "made_up"}', "client")


def test_unknown_server_type_keeps_the_raw_dict() -> None:
    event = m.decode_server('{"type": "hologram", "hologram_event": {"event_id": 9}}')
    assert isinstance(event, m.UnknownEvent)
    assert event.type == "hologram"
    assert event.raw["hologram_event"] == {"event_id": 9}


def test_events_without_a_body_decode_with_or_without_their_wrapper() -> None:
    assert m.decode_server('{"type": "guardrail_triggered"}') == m.GuardrailTriggered()
    bare = m.decode_server('{"type": "external_agent_connected"}')
    assert bare == m.ExternalAgentConnected()


@pytest.mark.parametrize(
    ("frame", "names"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        ('{"no_type": 1}', "type"),
        ('{"type": "ping"}', "ping.ping_event: missing"),
        ('{"type": "ping", "ping_event": {"event_id": "x"}}', "ping.ping_event.event_id"),
        ('{"type": "ping", "ping_event": {"event_id": true}}', "ping.ping_event.event_id"),
        (
            '{"type": "audio", "audio_event": {"audio_base_64": "!!", "event_id": 1}}',
            "audio.audio_event.audio_base_64",
        ),
        (
            '{"type": "audio", "audio_event": {"audio_base_64": "AAA="}}',
            "audio.audio_event.event_id: missing",
        ),
        ('{"type": "vad_score", "vad_score_event": {"vad_score": 3}}', "vad_score"),
        ('{"type": "interruption", "interruption_event": []}', "interruption.interruption_event"),
        (
            '{"type": "client_tool_call", "client_tool_call": {"tool_name": "x"}}',
            "client_tool_call.client_tool_call.tool_call_id",
        ),
        (
            '{"type": "mcp_tool_call", "mcp_tool_call": {"service_id": "s", "tool_call_id": "t",'
            ' "tool_name": "n", "parameters": {}, "timestamp": "", "state": "asleep"}}',
            "mcp_tool_call.state",
        ),
        (
            '{"type": "internal_turn_probability", '
            '"turn_probability_internal_event": {"turn_probability": 2}}',
            "turn_probability",
        ),
        (
            '{"type": "mcp_connection_status", "mcp_connection_status": {"integrations": [1]}}',
            "mcp_connection_status.mcp_connection_status.integrations",
        ),
        (
            '{"type": "conversation_initiation_metadata", '
            '"conversation_initiation_metadata_event": {"conversation_id": 1}}',
            "conversation_id",
        ),
    ],
)
def test_malformed_server_frames_raise_protocol_error_naming_the_field(
    frame: str, names: str
) -> None:
    with pytest.raises(m.ProtocolError, match=names.replace(".", r"\.").replace("(", r"\(")):
        m.decode_server(frame)


def test_string_event_ids_are_accepted_like_the_sdks_do() -> None:
    event = m.decode_server('{"type": "interruption", "interruption_event": {"event_id": "12"}}')
    assert event == m.Interruption(12)


def test_unconfirmed_shapes_are_parsed_defensively() -> None:
    flat_error = m.decode_server('{"type": "error", "code": 1011, "message": "down"}')
    assert flat_error == m.ErrorEvent("down", 1011)
    client_error = m.decode_server(
        '{"type": "client_error", "error_event": {"code": 1002, "message": "x", '
        '"error_name": "net"}}'
    )
    assert client_error == m.ErrorEvent("x", 1002, "net")
    complete = m.decode_server(
        '{"type": "agent_response_complete", "other_event": {"event_id": "4"}}'
    )
    assert complete == m.AgentResponseComplete(4)


def test_client_decoder_refuses_unknown_types() -> None:
    with pytest.raises(m.ProtocolError, match="unknown client message type"):
        m.decode_client('{"type": "ping"}')
