"""What the agent sends a client: one frozen dataclass per event type."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self, TypeVar

from agentpi.protocol.client_messages import ClientMessage, ContextualUpdate
from agentpi.protocol.fields import (
    JsonDict,
    ProtocolError,
    encode_base64,
    read_base64,
    read_bool,
    read_int,
    read_number,
    read_optional_int,
    read_optional_object,
    read_optional_str,
    read_required,
    read_str,
    without_none,
)

SERVER_EVENT_TYPES: dict[str, type[WrappedEvent]] = {}
"""Every event whose body sits under a wrapper key, by its ``type`` (``@server_event``)."""

_E = TypeVar("_E")


def server_event(cls: _E) -> _E:
    SERVER_EVENT_TYPES[cls.type] = cls  # type: ignore[attr-defined,assignment]
    return cls


def read_part_type(body: JsonDict, path: str) -> str:
    part_type = read_str(body, "type", path)
    if part_type not in ("start", "delta", "stop"):
        raise ProtocolError(f"{path}.type: expected start, delta or stop, got {part_type!r}")
    return part_type


def read_object_list(data: JsonDict, key: str, path: str) -> tuple[JsonDict, ...]:
    value = read_required(data, key, path)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ProtocolError(f"{path}.{key}: expected a list of objects")
    return tuple(value)


@server_event
@dataclass(frozen=True)
class ConversationInitiationMetadata:
    type: ClassVar[str] = "conversation_initiation_metadata"
    wrapper: ClassVar[str] = "conversation_initiation_metadata_event"
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str

    def to_json(self) -> JsonDict:
        return {
            "type": self.type,
            self.wrapper: {
                "conversation_id": self.conversation_id,
                "agent_output_audio_format": self.agent_output_audio_format,
                "user_input_audio_format": self.user_input_audio_format,
            },
        }

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ConversationInitiationMetadata:
        return cls(
            conversation_id=read_str(body, "conversation_id", path),
            agent_output_audio_format=read_str(body, "agent_output_audio_format", path),
            user_input_audio_format=read_str(body, "user_input_audio_format", path),
        )


@dataclass(frozen=True)
class _TextEvent:
    """The shape shared by the transcript and response events: a text and a turn's event_id."""

    type: ClassVar[str]
    wrapper: ClassVar[str]
    text_key: ClassVar[str]
    text: str
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none({self.text_key: self.text, "event_id": self.event_id})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Self:
        return cls(read_str(body, cls.text_key, path), read_optional_int(body, "event_id", path))


@server_event
@dataclass(frozen=True)
class UserTranscript(_TextEvent):
    type: ClassVar[str] = "user_transcript"
    wrapper: ClassVar[str] = "user_transcription_event"
    text_key: ClassVar[str] = "user_transcript"


@server_event
@dataclass(frozen=True)
class TentativeUserTranscript(_TextEvent):
    type: ClassVar[str] = "tentative_user_transcript"
    wrapper: ClassVar[str] = "tentative_user_transcription_event"
    text_key: ClassVar[str] = "user_transcript"


@server_event
@dataclass(frozen=True)
class AgentResponse(_TextEvent):
    type: ClassVar[str] = "agent_response"
    wrapper: ClassVar[str] = "agent_response_event"
    text_key: ClassVar[str] = "agent_response"


@server_event
@dataclass(frozen=True)
class AgentResponseCorrection:
    type: ClassVar[str] = "agent_response_correction"
    wrapper: ClassVar[str] = "agent_response_correction_event"
    original: str
    corrected: str
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "original_agent_response": self.original,
                "corrected_agent_response": self.corrected,
                "event_id": self.event_id,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentResponseCorrection:
        return cls(
            original=read_str(body, "original_agent_response", path),
            corrected=read_str(body, "corrected_agent_response", path),
            event_id=read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class Audio:
    type: ClassVar[str] = "audio"
    wrapper: ClassVar[str] = "audio_event"
    audio: bytes = field(repr=False)
    event_id: int
    alignment: JsonDict | None = None

    def to_json(self) -> JsonDict:
        body: JsonDict = {"audio_base_64": encode_base64(self.audio), "event_id": self.event_id}
        if self.alignment is not None:
            body["alignment"] = self.alignment
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Audio:
        return cls(
            audio=read_base64(body, "audio_base_64", path),
            event_id=read_int(body, "event_id", path),
            alignment=read_optional_object(body, "alignment", path),
        )


@server_event
@dataclass(frozen=True)
class Interruption:
    type: ClassVar[str] = "interruption"
    wrapper: ClassVar[str] = "interruption_event"
    event_id: int
    reason: str | None = None  # UNCONFIRMED field, modelled by an open SDK PR

    def to_json(self) -> JsonDict:
        body = without_none({"event_id": self.event_id, "reason": self.reason})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Interruption:
        return cls(read_int(body, "event_id", path), read_optional_str(body, "reason", path))


@server_event
@dataclass(frozen=True)
class Ping:
    type: ClassVar[str] = "ping"
    wrapper: ClassVar[str] = "ping_event"
    event_id: int
    ping_ms: int | None = None

    def to_json(self) -> JsonDict:
        return {
            "type": self.type,
            self.wrapper: {"event_id": self.event_id, "ping_ms": self.ping_ms},
        }

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Ping:
        return cls(read_int(body, "event_id", path), read_optional_int(body, "ping_ms", path))


@server_event
@dataclass(frozen=True)
class ClientToolCall:
    type: ClassVar[str] = "client_tool_call"
    wrapper: ClassVar[str] = "client_tool_call"
    tool_name: str
    tool_call_id: str
    parameters: JsonDict = field(default_factory=dict)
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "tool_name": self.tool_name,
                "tool_call_id": self.tool_call_id,
                "parameters": self.parameters,
                "event_id": self.event_id,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ClientToolCall:
        return cls(
            tool_name=read_str(body, "tool_name", path),
            tool_call_id=read_str(body, "tool_call_id", path),
            parameters=read_optional_object(body, "parameters", path) or {},
            event_id=read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class VadScore:
    type: ClassVar[str] = "vad_score"
    wrapper: ClassVar[str] = "vad_score_event"
    score: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ProtocolError(f"vad_score.vad_score_event.vad_score: {self.score} is not in 0..1")

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {"vad_score": self.score}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> VadScore:
        return cls(read_number(body, "vad_score", path))


@server_event
@dataclass(frozen=True)
class InternalTentativeAgentResponse:
    type: ClassVar[str] = "internal_tentative_agent_response"
    wrapper: ClassVar[str] = "tentative_agent_response_internal_event"
    text: str

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {"tentative_agent_response": self.text}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> InternalTentativeAgentResponse:
        return cls(read_str(body, "tentative_agent_response", path))


@server_event
@dataclass(frozen=True)
class AgentResponseComplete:
    """The server finished sending an agent turn. Shape UNCONFIRMED (protocol.md 5.18)."""

    type: ClassVar[str] = "agent_response_complete"
    wrapper: ClassVar[str] = "agent_response_complete_event"
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: without_none({"event_id": self.event_id})}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentResponseComplete:
        return cls(read_optional_int(body, "event_id", path))


@server_event
@dataclass(frozen=True)
class AgentChatResponsePart:
    type: ClassVar[str] = "agent_chat_response_part"
    wrapper: ClassVar[str] = "text_response_part"
    text: str
    part_type: str  # start | delta | stop
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none({"text": self.text, "type": self.part_type, "event_id": self.event_id})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentChatResponsePart:
        return cls(
            read_optional_str(body, "text", path) or "",
            read_part_type(body, path),
            read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class AgentReasoningResponsePart:
    """The agent's reasoning as it streams (its event_id is a string in the definition)."""

    type: ClassVar[str] = "agent_reasoning_response_part"
    wrapper: ClassVar[str] = "reasoning_response_part"
    text: str
    part_type: str  # start | delta | stop
    event_id: str | None = None

    def to_json(self) -> JsonDict:
        body = without_none({"text": self.text, "type": self.part_type, "event_id": self.event_id})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentReasoningResponsePart:
        event_id = body.get("event_id")
        return cls(
            read_optional_str(body, "text", path) or "",
            read_part_type(body, path),
            None if event_id is None else str(event_id),
        )


@server_event
@dataclass(frozen=True)
class RichContent:
    """A component for a screen to draw (an item card ...); a speaker can only name it."""

    type: ClassVar[str] = "rich_content"
    wrapper: ClassVar[str] = "rich_content"
    rich_content_id: str
    component: str
    props: JsonDict = field(default_factory=dict)
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "rich_content_id": self.rich_content_id,
                "component": self.component,
                "props": self.props,
                "event_id": self.event_id,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> RichContent:
        return cls(
            read_str(body, "rich_content_id", path),
            read_str(body, "component", path),
            read_optional_object(body, "props", path) or {},
            read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class AgentToolRequest:
    """The agent started a tool (client, webhook, system or MCP): the device shows it working."""

    type: ClassVar[str] = "agent_tool_request"
    wrapper: ClassVar[str] = "agent_tool_request"
    tool_name: str
    tool_call_id: str
    tool_type: str
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "tool_name": self.tool_name,
                "tool_call_id": self.tool_call_id,
                "tool_type": self.tool_type,
                "event_id": self.event_id,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentToolRequest:
        return cls(
            read_str(body, "tool_name", path),
            read_str(body, "tool_call_id", path),
            read_str(body, "tool_type", path),
            read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class AgentToolResponse:
    type: ClassVar[str] = "agent_tool_response"
    wrapper: ClassVar[str] = "agent_tool_response"
    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool = True
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "tool_name": self.tool_name,
                "tool_call_id": self.tool_call_id,
                "tool_type": self.tool_type,
                "is_error": self.is_error,
                "is_called": self.is_called,
                "event_id": self.event_id,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentToolResponse:
        return cls(
            tool_name=read_str(body, "tool_name", path),
            tool_call_id=read_str(body, "tool_call_id", path),
            tool_type=read_str(body, "tool_type", path),
            is_error=read_bool(body, "is_error", path),
            is_called=read_bool(body, "is_called", path, default=True),
            event_id=read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class AgentToolResponseFullPayload:
    """A tool's whole result, as the agent got it (kept out of the event lines: it may be big
    and private; its size is reported)."""

    type: ClassVar[str] = "agent_tool_response_full_payload"
    wrapper: ClassVar[str] = "agent_tool_response_full_payload"
    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    full_tool_result: str = field(repr=False)
    is_called: bool = True
    is_blocked: bool = False
    truncated: bool = False
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "tool_name": self.tool_name,
                "tool_call_id": self.tool_call_id,
                "tool_type": self.tool_type,
                "is_error": self.is_error,
                "is_called": self.is_called,
                "is_blocked": self.is_blocked,
                "truncated": self.truncated,
                "event_id": self.event_id,
                "full_tool_result": self.full_tool_result,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentToolResponseFullPayload:
        return cls(
            tool_name=read_str(body, "tool_name", path),
            tool_call_id=read_str(body, "tool_call_id", path),
            tool_type=read_str(body, "tool_type", path),
            is_error=read_bool(body, "is_error", path),
            full_tool_result=read_str(body, "full_tool_result", path),
            is_called=read_bool(body, "is_called", path, default=True),
            is_blocked=read_bool(body, "is_blocked", path, default=False),
            truncated=read_bool(body, "truncated", path, default=False),
            event_id=read_optional_int(body, "event_id", path),
        )


MCP_STATES = ("loading", "awaiting_approval", "success", "failure")


@server_event
@dataclass(frozen=True)
class McpToolCall:
    """An MCP tool call in one of its states; ``awaiting_approval`` waits for the device's
    ``mcp_tool_approval_result``."""

    type: ClassVar[str] = "mcp_tool_call"
    wrapper: ClassVar[str] = "mcp_tool_call"
    service_id: str
    tool_call_id: str
    tool_name: str
    state: str
    timestamp: str
    parameters: JsonDict = field(default_factory=dict)
    tool_description: str | None = None
    approval_timeout_secs: int | None = None
    result: tuple[JsonDict, ...] | None = None
    error_message: str | None = None

    def __post_init__(self) -> None:
        if self.state not in MCP_STATES:
            raise ProtocolError(
                f"mcp_tool_call.state: expected one of {', '.join(MCP_STATES)}, got {self.state!r}"
            )

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "service_id": self.service_id,
                "tool_call_id": self.tool_call_id,
                "tool_name": self.tool_name,
                "tool_description": self.tool_description,
                "parameters": self.parameters,
                "timestamp": self.timestamp,
                "state": self.state,
                "approval_timeout_secs": self.approval_timeout_secs,
                "result": None if self.result is None else list(self.result),
                "error_message": self.error_message,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> McpToolCall:
        state = read_str(body, "state", path)
        return cls(
            service_id=read_str(body, "service_id", path),
            tool_call_id=read_str(body, "tool_call_id", path),
            tool_name=read_str(body, "tool_name", path),
            state=state,
            timestamp=read_optional_str(body, "timestamp", path) or "",
            parameters=read_optional_object(body, "parameters", path) or {},
            tool_description=read_optional_str(body, "tool_description", path),
            approval_timeout_secs=read_optional_int(body, "approval_timeout_secs", path),
            result=read_object_list(body, "result", path) if state == "success" else None,
            error_message=read_optional_str(body, "error_message", path),
        )


@dataclass(frozen=True)
class McpIntegration:
    integration_id: str
    integration_type: str
    is_connected: bool
    tool_count: int = 0

    def to_json(self) -> JsonDict:
        return {
            "integration_id": self.integration_id,
            "integration_type": self.integration_type,
            "is_connected": self.is_connected,
            "tool_count": self.tool_count,
        }


@server_event
@dataclass(frozen=True)
class McpConnectionStatus:
    type: ClassVar[str] = "mcp_connection_status"
    wrapper: ClassVar[str] = "mcp_connection_status"
    integrations: tuple[McpIntegration, ...] = ()

    def to_json(self) -> JsonDict:
        body = {"integrations": [item.to_json() for item in self.integrations]}
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> McpConnectionStatus:
        items = read_object_list(body, "integrations", path)
        return cls(
            tuple(
                McpIntegration(
                    read_str(item, "integration_id", f"{path}.integrations"),
                    read_str(item, "integration_type", f"{path}.integrations"),
                    read_bool(item, "is_connected", f"{path}.integrations"),
                    read_optional_int(item, "tool_count", f"{path}.integrations") or 0,
                )
                for item in items
            )
        )


@server_event
@dataclass(frozen=True)
class ContextUsage:
    """How full the LLM's context window is after a turn."""

    type: ClassVar[str] = "context_usage"
    wrapper: ClassVar[str] = "context_usage_event"
    model: str
    context_tokens: int
    context_limit_tokens: int
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "event_id": self.event_id,
                "model": self.model,
                "context_tokens": self.context_tokens,
                "context_limit_tokens": self.context_limit_tokens,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ContextUsage:
        return cls(
            read_str(body, "model", path),
            read_int(body, "context_tokens", path),
            read_int(body, "context_limit_tokens", path),
            read_optional_int(body, "event_id", path),
        )


@server_event
@dataclass(frozen=True)
class AsrInitiationMetadata:
    """The speech recogniser's start-up facts; the definition leaves the body open."""

    type: ClassVar[str] = "asr_initiation_metadata"
    wrapper: ClassVar[str] = "asr_initiation_metadata_event"
    metadata: JsonDict = field(default_factory=dict)

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: dict(self.metadata)}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AsrInitiationMetadata:
        return cls(dict(body))


@server_event
@dataclass(frozen=True)
class GuardrailTriggered:
    """A guardrail stopped the agent's answer; the definition gives it no body."""

    type: ClassVar[str] = "guardrail_triggered"
    wrapper: ClassVar[str] = "guardrail_triggered_event"
    wrapper_optional: ClassVar[bool] = True

    def to_json(self) -> JsonDict:
        return {"type": self.type}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> GuardrailTriggered:
        return cls()


@server_event
@dataclass(frozen=True)
class InternalTurnProbability:
    type: ClassVar[str] = "internal_turn_probability"
    wrapper: ClassVar[str] = "turn_probability_internal_event"
    turn_probability: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.turn_probability <= 1.0:
            raise ProtocolError(
                f"internal_turn_probability.turn_probability: {self.turn_probability} is not "
                "in 0..1"
            )

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {"turn_probability": self.turn_probability}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> InternalTurnProbability:
        return cls(read_number(body, "turn_probability", path))


@server_event
@dataclass(frozen=True)
class AgentTyping:
    type: ClassVar[str] = "agent_typing"
    wrapper: ClassVar[str] = "agent_typing_event"
    is_typing: bool
    duration_ms: int | None = None

    def to_json(self) -> JsonDict:
        body = without_none({"is_typing": self.is_typing, "duration_ms": self.duration_ms})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentTyping:
        return cls(read_bool(body, "is_typing", path), read_optional_int(body, "duration_ms", path))


@server_event
@dataclass(frozen=True)
class ExternalAgentConnected:
    """A person (e.g. a Genesys agent) took over the conversation from the AI agent."""

    type: ClassVar[str] = "external_agent_connected"
    wrapper: ClassVar[str] = "external_agent_connected_event"
    wrapper_optional: ClassVar[bool] = True

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ExternalAgentConnected:
        return cls()


@server_event
@dataclass(frozen=True)
class ExternalAgentDisconnected:
    """The person left; the AI agent has the conversation again."""

    type: ClassVar[str] = "external_agent_disconnected"
    wrapper: ClassVar[str] = "external_agent_disconnected_event"
    wrapper_optional: ClassVar[bool] = True

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ExternalAgentDisconnected:
        return cls()


@server_event
@dataclass(frozen=True)
class ErrorEvent:
    """A server error, sent just before the server closes. Also parsed from ``client_error``."""

    type: ClassVar[str] = "error"
    wrapper: ClassVar[str] = "error_event"
    message: str
    code: int | None = None
    error_type: str | None = None
    reason: str | None = None

    def to_json(self) -> JsonDict:
        body = without_none(
            {
                "code": self.code,
                "message": self.message,
                "error_type": self.error_type,
                "reason": self.reason,
            }
        )
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ErrorEvent:
        return cls(
            message=read_optional_str(body, "message", path) or "",
            code=read_optional_int(body, "code", path),
            error_type=read_optional_str(body, "error_type", path)
            or read_optional_str(body, "error_name", path),
            reason=read_optional_str(body, "reason", path),
        )


@dataclass(frozen=True)
class UnknownEvent:
    """A server message of a type this client does not model; the raw dict is kept."""

    type: str
    raw: JsonDict

    def to_json(self) -> JsonDict:
        return dict(self.raw)


WrappedEvent = (  # the events whose body sits under a wrapper key
    ConversationInitiationMetadata
    | UserTranscript
    | TentativeUserTranscript
    | AgentResponse
    | AgentResponseCorrection
    | Audio
    | Interruption
    | Ping
    | ClientToolCall
    | VadScore
    | InternalTentativeAgentResponse
    | AgentResponseComplete
    | AgentChatResponsePart
    | AgentReasoningResponsePart
    | RichContent
    | AgentToolRequest
    | AgentToolResponse
    | AgentToolResponseFullPayload
    | McpToolCall
    | McpConnectionStatus
    | ContextUsage
    | AsrInitiationMetadata
    | GuardrailTriggered
    | InternalTurnProbability
    | AgentTyping
    | ExternalAgentConnected
    | ExternalAgentDisconnected
    | ErrorEvent
)

ServerEvent = WrappedEvent | ContextualUpdate | UnknownEvent

Message = ClientMessage | ServerEvent
