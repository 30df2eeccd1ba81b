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
    read_str,
    without_none,
)

SERVER_EVENT_TYPES: dict[str, type[WrappedEvent]] = {}
"""Every event whose body sits under a wrapper key, by its ``type`` (``@server_event``)."""

_E = TypeVar("_E")


def server_event(cls: _E) -> _E:
    SERVER_EVENT_TYPES[cls.type] = cls  # type: ignore[attr-defined,assignment]
    return cls


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
        part_type = read_str(body, "type", path)
        if part_type not in ("start", "delta", "stop"):
            raise ProtocolError(f"{path}.type: expected start, delta or stop, got {part_type!r}")
        return cls(
            read_optional_str(body, "text", path) or "",
            part_type,
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
    | AgentToolResponse
    | ErrorEvent
)

ServerEvent = WrappedEvent | ContextualUpdate | UnknownEvent

Message = ClientMessage | ServerEvent
