"""What the agent sends a client: one frozen dataclass per event type.

Most events are their fields and nothing more: ``WireEvent`` reads and writes them from the
dataclass itself (each field's wire key, and its reader by its annotation), so a class is its
fields and, where the wire differs, a ``wire(...)`` note on one of them. The few with a shape of
their own (base64 audio, nested lists) write their own ``from_body`` / ``to_json``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from agentpi.protocol.client_messages import ClientMessage, ContextualUpdate
from agentpi.protocol.fields import (
    JsonDict,
    ProtocolError,
    describe_json_type,
    encode_base64,
    read_base64,
    read_bool,
    read_int,
    read_number,
    read_object,
    read_optional_object,
    read_required,
    read_str,
)

SERVER_EVENT_TYPES: dict[str, type[WrappedEvent]] = {}
"""Every event whose body sits under a wrapper key, by its ``type`` (``@server_event``)."""

_E = TypeVar("_E")

Reader = Callable[[JsonDict, str, str], Any]

READERS: dict[str, Reader] = {
    "str": read_str,
    "int": read_int,
    "float": read_number,
    "bool": read_bool,
    "JsonDict": read_object,
}
"""A field's reader by its annotation (``X | None`` reads as ``X``)."""


def server_event(cls: _E) -> _E:
    SERVER_EVENT_TYPES[cls.type] = cls  # type: ignore[attr-defined,assignment]
    return cls


def wire(key: str | None = None, read: Reader | None = None, absent: Any = None) -> Any:
    """A field's wire key (default: its name), its reader (default: by its annotation), and the
    value it takes when the server leaves it out (default: required, unless it has a default)."""
    return {"key": key, "read": read, "absent": absent}


@dataclass(frozen=True)
class WireEvent:
    """An event whose body is its fields: read and written from the dataclass itself."""

    type: ClassVar[str]
    wrapper: ClassVar[str]
    wrapper_optional: ClassVar[bool] = False
    """The body may be missing, or flat beside ``type`` (events with no fields, UNCONFIRMED
    shapes)."""

    def to_json(self) -> JsonDict:
        body = {
            _key(spec): getattr(self, spec.name)
            for spec in dataclasses.fields(self)
            if getattr(self, spec.name) is not None
        }
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Self:
        values = {spec.name: _read(spec, body, path) for spec in dataclasses.fields(cls)}
        return cls(**values)


def _key(spec: dataclasses.Field[Any]) -> str:
    return str(spec.metadata.get("key") or spec.name)


def _read(spec: dataclasses.Field[Any], body: JsonDict, path: str) -> Any:
    key = _key(spec)
    if body.get(key) is None:
        if spec.metadata.get("absent") is not None:
            return spec.metadata["absent"]
        if spec.default is not dataclasses.MISSING:
            return spec.default
        if spec.default_factory is not dataclasses.MISSING:
            return spec.default_factory()
    read = spec.metadata.get("read") or READERS[str(spec.type).removesuffix(" | None")]
    return read(body, key, path)


def _note(
    key: str | None = None, read: Reader | None = None, absent: Any = None, optional: bool = False
) -> Any:
    """A field with its ``wire`` note; ``optional``: it defaults to None."""
    if optional:
        return field(default=None, metadata=wire(key, read, absent))
    return field(metadata=wire(key, read, absent))


def read_part_type(body: JsonDict, key: str, path: str) -> str:
    part_type = read_str(body, key, path)
    if part_type not in ("start", "delta", "stop"):
        raise ProtocolError(f"{path}.{key}: expected start, delta or stop, got {part_type!r}")
    return part_type


def read_id_text(body: JsonDict, key: str, path: str) -> str:
    """An id the definition spells as a string; a number is taken as its text."""
    value = read_required(body, key, path)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ProtocolError(f"{path}.{key}: expected a string, got {describe_json_type(value)}")
    return str(value)


def read_object_list(data: JsonDict, key: str, path: str) -> tuple[JsonDict, ...]:
    value = read_required(data, key, path)
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ProtocolError(f"{path}.{key}: expected a list of objects")
    return tuple(value)


def _in_unit_range(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ProtocolError(f"{name}: {value} is not in 0..1")


# --------------------------------------------------------------------------- the conversation


@server_event
@dataclass(frozen=True)
class ConversationInitiationMetadata(WireEvent):
    type: ClassVar[str] = "conversation_initiation_metadata"
    wrapper: ClassVar[str] = "conversation_initiation_metadata_event"
    conversation_id: str
    agent_output_audio_format: str
    user_input_audio_format: str


@server_event
@dataclass(frozen=True)
class Ping(WireEvent):
    type: ClassVar[str] = "ping"
    wrapper: ClassVar[str] = "ping_event"
    event_id: int
    ping_ms: int | None = None


@server_event
@dataclass(frozen=True)
class UserTranscript(WireEvent):
    type: ClassVar[str] = "user_transcript"
    wrapper: ClassVar[str] = "user_transcription_event"
    text: str = _note("user_transcript")
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class TentativeUserTranscript(WireEvent):
    type: ClassVar[str] = "tentative_user_transcript"
    wrapper: ClassVar[str] = "tentative_user_transcription_event"
    text: str = _note("user_transcript")
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentResponse(WireEvent):
    type: ClassVar[str] = "agent_response"
    wrapper: ClassVar[str] = "agent_response_event"
    text: str = _note("agent_response")
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentResponseCorrection(WireEvent):
    type: ClassVar[str] = "agent_response_correction"
    wrapper: ClassVar[str] = "agent_response_correction_event"
    original: str = _note("original_agent_response")
    corrected: str = _note("corrected_agent_response")
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class Audio(WireEvent):
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
class Interruption(WireEvent):
    type: ClassVar[str] = "interruption"
    wrapper: ClassVar[str] = "interruption_event"
    event_id: int
    reason: str | None = None  # UNCONFIRMED field, modelled by an open SDK PR


@server_event
@dataclass(frozen=True)
class VadScore(WireEvent):
    type: ClassVar[str] = "vad_score"
    wrapper: ClassVar[str] = "vad_score_event"
    score: float = _note("vad_score")

    def __post_init__(self) -> None:
        _in_unit_range("vad_score.vad_score_event.vad_score", self.score)


@server_event
@dataclass(frozen=True)
class InternalTentativeAgentResponse(WireEvent):
    type: ClassVar[str] = "internal_tentative_agent_response"
    wrapper: ClassVar[str] = "tentative_agent_response_internal_event"
    text: str = _note("tentative_agent_response")


@server_event
@dataclass(frozen=True)
class AgentResponseComplete(WireEvent):
    """The server finished sending an agent turn. Shape UNCONFIRMED (protocol.md 5.18)."""

    type: ClassVar[str] = "agent_response_complete"
    wrapper: ClassVar[str] = "agent_response_complete_event"
    wrapper_optional: ClassVar[bool] = True
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentChatResponsePart(WireEvent):
    type: ClassVar[str] = "agent_chat_response_part"
    wrapper: ClassVar[str] = "text_response_part"
    text: str = _note(absent="")
    part_type: str = _note("type", read_part_type)  # start | delta | stop
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentReasoningResponsePart(WireEvent):
    """The agent's reasoning as it streams (its event_id is a string in the definition)."""

    type: ClassVar[str] = "agent_reasoning_response_part"
    wrapper: ClassVar[str] = "reasoning_response_part"
    text: str = _note(absent="")
    part_type: str = _note("type", read_part_type)
    event_id: str | None = _note(read=read_id_text, optional=True)


@server_event
@dataclass(frozen=True)
class RichContent(WireEvent):
    """A component for a screen to draw (an item card ...); a speaker can only name it."""

    type: ClassVar[str] = "rich_content"
    wrapper: ClassVar[str] = "rich_content"
    rich_content_id: str
    component: str
    props: JsonDict = field(default_factory=dict)
    event_id: int | None = None


# --------------------------------------------------------------------------- tools


@server_event
@dataclass(frozen=True)
class ClientToolCall(WireEvent):
    type: ClassVar[str] = "client_tool_call"
    wrapper: ClassVar[str] = "client_tool_call"
    tool_name: str
    tool_call_id: str
    parameters: JsonDict = field(default_factory=dict)
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentToolRequest(WireEvent):
    """The agent started a tool (client, webhook, system or MCP): the device shows it working."""

    type: ClassVar[str] = "agent_tool_request"
    wrapper: ClassVar[str] = "agent_tool_request"
    tool_name: str
    tool_call_id: str
    tool_type: str
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentToolResponse(WireEvent):
    type: ClassVar[str] = "agent_tool_response"
    wrapper: ClassVar[str] = "agent_tool_response"
    tool_name: str
    tool_call_id: str
    tool_type: str
    is_error: bool
    is_called: bool = True
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AgentToolResponseFullPayload(WireEvent):
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


MCP_STATES = ("loading", "awaiting_approval", "success", "failure")


@server_event
@dataclass(frozen=True)
class McpToolCall(WireEvent):
    """An MCP tool call in one of its states; ``awaiting_approval`` waits for the device's
    ``mcp_tool_approval_result``."""

    type: ClassVar[str] = "mcp_tool_call"
    wrapper: ClassVar[str] = "mcp_tool_call"
    service_id: str
    tool_call_id: str
    tool_name: str
    state: str
    timestamp: str = _note(absent="")
    parameters: JsonDict = field(default_factory=dict)
    tool_description: str | None = None
    approval_timeout_secs: int | None = None
    result: tuple[JsonDict, ...] | None = _note(read=read_object_list, optional=True)
    error_message: str | None = None

    def __post_init__(self) -> None:
        if self.state not in MCP_STATES:
            raise ProtocolError(
                f"mcp_tool_call.state: expected one of {', '.join(MCP_STATES)}, got {self.state!r}"
            )


@dataclass(frozen=True)
class McpIntegration(WireEvent):
    integration_id: str
    integration_type: str
    is_connected: bool
    tool_count: int = 0

    def to_json(self) -> JsonDict:
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}


def read_integrations(body: JsonDict, key: str, path: str) -> tuple[McpIntegration, ...]:
    items = read_object_list(body, key, path)
    return tuple(McpIntegration.from_body(item, f"{path}.{key}") for item in items)


@server_event
@dataclass(frozen=True)
class McpConnectionStatus(WireEvent):
    type: ClassVar[str] = "mcp_connection_status"
    wrapper: ClassVar[str] = "mcp_connection_status"
    integrations: tuple[McpIntegration, ...] = _note(read=read_integrations)

    def to_json(self) -> JsonDict:
        body = {"integrations": [item.to_json() for item in self.integrations]}
        return {"type": self.type, self.wrapper: body}


# --------------------------------------------------------------------------- the agent's state


@server_event
@dataclass(frozen=True)
class ContextUsage(WireEvent):
    """How full the LLM's context window is after a turn."""

    type: ClassVar[str] = "context_usage"
    wrapper: ClassVar[str] = "context_usage_event"
    model: str
    context_tokens: int
    context_limit_tokens: int
    event_id: int | None = None


@server_event
@dataclass(frozen=True)
class AsrInitiationMetadata(WireEvent):
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
class GuardrailTriggered(WireEvent):
    """A guardrail stopped the agent's answer; the definition gives it no body."""

    type: ClassVar[str] = "guardrail_triggered"
    wrapper: ClassVar[str] = "guardrail_triggered_event"
    wrapper_optional: ClassVar[bool] = True


@server_event
@dataclass(frozen=True)
class InternalTurnProbability(WireEvent):
    type: ClassVar[str] = "internal_turn_probability"
    wrapper: ClassVar[str] = "turn_probability_internal_event"
    turn_probability: float

    def __post_init__(self) -> None:
        _in_unit_range("internal_turn_probability.turn_probability", self.turn_probability)


@server_event
@dataclass(frozen=True)
class AgentTyping(WireEvent):
    type: ClassVar[str] = "agent_typing"
    wrapper: ClassVar[str] = "agent_typing_event"
    is_typing: bool
    duration_ms: int | None = None


@server_event
@dataclass(frozen=True)
class ExternalAgentConnected(WireEvent):
    """A person (e.g. a Genesys agent) took over the conversation from the AI agent."""

    type: ClassVar[str] = "external_agent_connected"
    wrapper: ClassVar[str] = "external_agent_connected_event"
    wrapper_optional: ClassVar[bool] = True


@server_event
@dataclass(frozen=True)
class ExternalAgentDisconnected(WireEvent):
    """The person left; the AI agent has the conversation again."""

    type: ClassVar[str] = "external_agent_disconnected"
    wrapper: ClassVar[str] = "external_agent_disconnected_event"
    wrapper_optional: ClassVar[bool] = True


@server_event
@dataclass(frozen=True)
class ErrorEvent(WireEvent):
    """A server error, sent just before the server closes. Also parsed from ``client_error``."""

    type: ClassVar[str] = "error"
    wrapper: ClassVar[str] = "error_event"
    wrapper_optional: ClassVar[bool] = True
    message: str = _note(absent="")
    code: int | None = None
    error_type: str | None = None
    reason: str | None = None

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> ErrorEvent:
        if body.get("error_type") is None and "error_name" in body:  # client_error's spelling
            body = {**body, "error_type": body["error_name"]}
        return super().from_body(body, path)


@dataclass(frozen=True)
class UnknownEvent:
    """A server message of a type this client does not model; the raw dict is kept."""

    type: str
    raw: JsonDict

    def to_json(self) -> JsonDict:
        return dict(self.raw)


def client_event_types() -> tuple[str, ...]:
    """What an agent's ``client_events`` may name: every server event but ``error`` (which is
    always sent)."""
    return tuple(kind for kind in SERVER_EVENT_TYPES if kind != ErrorEvent.type)


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
