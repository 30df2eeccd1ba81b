"""Typed messages of the ElevenLabs Agent WebSocket protocol.

Every message is a small frozen dataclass. ``decode_server`` / ``decode_client`` turn one JSON text
frame into a message and ``encode`` turns a message into one JSON text frame, with exactly the
wire shapes of ``shared/reference/agent.asyncapi.yaml``. Malformed input raises ``ProtocolError``,
whose message names the offending field; nothing else escapes the decoders.
"""

from __future__ import annotations

import json

from agentpi import bounded_json
from agentpi.protocol.client_messages import (
    CLIENT_MESSAGE_TYPES,
    ClientMessage,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    Feedback,
    McpToolApprovalResult,
    MultimodalMessage,
    Pong,
    UserActivity,
    UserAudioChunk,
    UserMessage,
)
from agentpi.protocol.fields import JsonDict, ProtocolError, describe_json_type, read_object
from agentpi.protocol.languages import AGENT_LANGUAGES
from agentpi.protocol.server_events import (
    SERVER_EVENT_TYPES,
    AgentChatResponsePart,
    AgentReasoningResponsePart,
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentToolRequest,
    AgentToolResponse,
    AgentToolResponseFullPayload,
    AgentTyping,
    AsrInitiationMetadata,
    Audio,
    ClientToolCall,
    ContextUsage,
    ConversationInitiationMetadata,
    ErrorEvent,
    ExternalAgentConnected,
    ExternalAgentDisconnected,
    GuardrailTriggered,
    InternalTentativeAgentResponse,
    InternalTurnProbability,
    Interruption,
    McpConnectionStatus,
    McpIntegration,
    McpToolCall,
    Message,
    Ping,
    RichContent,
    ServerEvent,
    TentativeUserTranscript,
    UnknownEvent,
    UserTranscript,
    VadScore,
    WrappedEvent,
    client_event_types,
)

__all__ = [
    "AGENT_LANGUAGES",
    "CLIENT_MESSAGE_TYPES",
    "SERVER_EVENT_TYPES",
    "AgentChatResponsePart",
    "AgentReasoningResponsePart",
    "AgentResponse",
    "AgentResponseComplete",
    "AgentResponseCorrection",
    "AgentToolRequest",
    "AgentToolResponse",
    "AgentToolResponseFullPayload",
    "AgentTyping",
    "AsrInitiationMetadata",
    "Audio",
    "ClientMessage",
    "ClientToolCall",
    "ClientToolResult",
    "ContextUsage",
    "ContextualUpdate",
    "ConversationInitiationClientData",
    "ConversationInitiationMetadata",
    "ErrorEvent",
    "ExternalAgentConnected",
    "ExternalAgentDisconnected",
    "Feedback",
    "GuardrailTriggered",
    "InternalTentativeAgentResponse",
    "InternalTurnProbability",
    "Interruption",
    "JsonDict",
    "McpConnectionStatus",
    "McpIntegration",
    "McpToolApprovalResult",
    "McpToolCall",
    "Message",
    "MultimodalMessage",
    "Ping",
    "Pong",
    "ProtocolError",
    "RichContent",
    "ServerEvent",
    "TentativeUserTranscript",
    "UnknownEvent",
    "UserActivity",
    "UserAudioChunk",
    "UserMessage",
    "UserTranscript",
    "VadScore",
    "WrappedEvent",
    "client_event_types",
    "decode_client",
    "decode_server",
    "encode",
]

# --------------------------------------------------------------------------- decode / encode


MAX_FRAME_BYTES = 16 * 1024 * 1024
"""The largest frame the socket takes (its ``max_size``)."""


def _load_object(raw: str | bytes) -> JsonDict:
    try:
        data = bounded_json.loads(raw, MAX_FRAME_BYTES)
    except bounded_json.JsonRefused as exc:
        raise ProtocolError(f"frame refused: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame: expected a JSON object, got {describe_json_type(data)}")
    return data


def _message_type(data: JsonDict) -> str:
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"type: expected a string, got {describe_json_type(kind)}")
    return kind


def _event_body(data: JsonDict, cls: type[WrappedEvent]) -> JsonDict:
    if cls.wrapper in data:
        return read_object(data, cls.wrapper, cls.type)
    # UNCONFIRMED shapes (client_error, agent_response_complete) arrive under other `*_event` keys
    # or flat; accept those instead of dropping a message the device needs.
    for key, value in data.items():
        if key.endswith("_event") and isinstance(value, dict):
            return value
    if cls.wrapper_optional:
        return data
    raise ProtocolError(f"{cls.type}.{cls.wrapper}: missing")


def decode_server(raw: str | bytes) -> ServerEvent:
    """Parse one frame the server sent. Unknown types become ``UnknownEvent``."""
    data = _load_object(raw)
    kind = _message_type(data)
    if kind == "client_error":
        kind = "error"
    if kind == ContextualUpdate.type:
        return ContextualUpdate.from_json(data)
    cls = SERVER_EVENT_TYPES.get(kind)
    if cls is None:
        return UnknownEvent(kind, data)
    return cls.from_body(_event_body(data, cls), f"{kind}.{cls.wrapper}")


def decode_client(raw: str | bytes) -> ClientMessage:
    """Parse one frame a client sent (used by the simulator). Unknown types are errors."""
    data = _load_object(raw)
    if "user_audio_chunk" in data and "type" not in data:
        return UserAudioChunk.from_json(data)
    kind = _message_type(data)
    parse = CLIENT_MESSAGE_TYPES.get(kind)
    if parse is None:
        raise ProtocolError(f"type: unknown client message type {kind!r}")
    return parse(data)


def encode(message: Message) -> str:
    """Serialise a message as one JSON text frame."""
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)
