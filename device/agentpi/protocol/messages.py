"""Typed messages of the ElevenLabs Agent WebSocket protocol.

Every message is a small frozen dataclass. ``decode_server`` / ``decode_client`` turn one JSON text
frame into a message and ``encode`` turns a message into one JSON text frame, with exactly the
wire shapes of ``shared/reference/agent.asyncapi.yaml``. Malformed input raises ``ProtocolError``,
whose message names the offending field; nothing else escapes the decoders.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypeVar

from agentpi.errors import RemoteProtocolError

JsonDict = dict[str, Any]


# fmt: off
AGENT_LANGUAGES: tuple[str, ...] = (
    "en", "ja", "zh", "de", "hi", "fr", "ko", "pt", "pt-br", "it", "es", "id", "nl", "tr", "pl",
    "sv", "bg", "ro", "ar", "cs", "el", "fi", "ms", "da", "ta", "uk", "ru", "hu", "hr", "sk", "no",
    "vi", "tl", "af", "hy", "as", "az", "be", "bn", "bs", "ca", "et", "gl", "ka", "gu", "ha", "he",
    "is", "ga", "jv", "kn", "kk", "ky", "lv", "lt", "lb", "mk", "ml", "mr", "ne", "ps", "fa", "pa",
    "sr", "sd", "sl", "so", "sw", "te", "th", "ur", "cy",
)
# fmt: on
"""The language codes an override may name (the contract's Language enum)."""


class ProtocolError(RemoteProtocolError):
    """A frame that is not valid JSON or does not have the shape its type requires."""


# --------------------------------------------------------------------------- field readers
# Each reader takes the dict, the key and the dotted path used in error messages.

_T = TypeVar("_T")


def _require(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ProtocolError(f"{path}.{key}: missing")
    return data[key]


def _str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = _require(data, key, path)
    if not isinstance(value, str):
        raise ProtocolError(f"{path}.{key}: expected a string, got {_describe(value)}")
    return value


def _opt_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    if data.get(key) is None:
        return None
    return _str(data, key, path)


def _int(data: Mapping[str, Any], key: str, path: str) -> int:
    value = _require(data, key, path)
    # Some server events carry numeric ids as strings; the SDKs call int() on them too.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{path}.{key}: expected an integer, got {_describe(value)}")
    return value


def _opt_int(data: Mapping[str, Any], key: str, path: str) -> int | None:
    if data.get(key) is None:
        return None
    return _int(data, key, path)


def _number(data: Mapping[str, Any], key: str, path: str) -> float:
    value = _require(data, key, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{path}.{key}: expected a number, got {_describe(value)}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str, path: str, default: bool | None = None) -> bool:
    if key not in data and default is not None:
        return default
    value = _require(data, key, path)
    if not isinstance(value, bool):
        raise ProtocolError(f"{path}.{key}: expected true or false, got {_describe(value)}")
    return value


def _obj(data: Mapping[str, Any], key: str, path: str) -> JsonDict:
    value = _require(data, key, path)
    if not isinstance(value, dict):
        raise ProtocolError(f"{path}.{key}: expected an object, got {_describe(value)}")
    return value


def _opt_obj(data: Mapping[str, Any], key: str, path: str) -> JsonDict | None:
    if data.get(key) is None:
        return None
    return _obj(data, key, path)


def _b64(data: Mapping[str, Any], key: str, path: str) -> bytes:
    text = _str(data, key, path)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{path}.{key}: not valid base64 ({exc})") from None


def _describe(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes | bytearray) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def _b64encode(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


def _without_none(data: JsonDict) -> JsonDict:
    return {key: value for key, value in data.items() if value is not None}


# --------------------------------------------------------------------------- client -> server


@dataclass(frozen=True)
class UserAudioChunk:
    """Microphone audio in the agent's ``user_input_audio_format``; the one message with no type."""

    audio: bytes

    def to_json(self) -> JsonDict:
        return {"user_audio_chunk": _b64encode(self.audio)}

    @classmethod
    def from_json(cls, data: JsonDict) -> UserAudioChunk:
        return cls(_b64(data, "user_audio_chunk", "user_audio_chunk"))


@dataclass(frozen=True)
class Pong:
    type: ClassVar[str] = "pong"
    event_id: int

    def to_json(self) -> JsonDict:
        return {"type": self.type, "event_id": self.event_id}

    @classmethod
    def from_json(cls, data: JsonDict) -> Pong:
        return cls(_int(data, "event_id", cls.type))


@dataclass(frozen=True)
class ConversationInitiationClientData:
    type: ClassVar[str] = "conversation_initiation_client_data"
    conversation_config_override: JsonDict = field(default_factory=dict)
    custom_llm_extra_body: JsonDict = field(default_factory=dict)
    dynamic_variables: JsonDict = field(default_factory=dict)
    user_id: str | None = None
    source_info: JsonDict | None = None

    def to_json(self) -> JsonDict:
        return _without_none(
            {
                "type": self.type,
                "conversation_config_override": self.conversation_config_override,
                "custom_llm_extra_body": self.custom_llm_extra_body,
                "dynamic_variables": self.dynamic_variables,
                "user_id": self.user_id,
                "source_info": self.source_info,
            }
        )

    @classmethod
    def from_json(cls, data: JsonDict) -> ConversationInitiationClientData:
        path = cls.type
        return cls(
            conversation_config_override=_opt_obj(data, "conversation_config_override", path) or {},
            custom_llm_extra_body=_opt_obj(data, "custom_llm_extra_body", path) or {},
            dynamic_variables=_opt_obj(data, "dynamic_variables", path) or {},
            user_id=_opt_str(data, "user_id", path),
            source_info=_opt_obj(data, "source_info", path),
        )


@dataclass(frozen=True)
class ClientToolResult:
    type: ClassVar[str] = "client_tool_result"
    tool_call_id: str
    result: str
    is_error: bool = False

    def to_json(self) -> JsonDict:
        return {
            "type": self.type,
            "tool_call_id": self.tool_call_id,
            "result": self.result,
            "is_error": self.is_error,
        }

    @classmethod
    def from_json(cls, data: JsonDict) -> ClientToolResult:
        path = cls.type
        return cls(
            tool_call_id=_str(data, "tool_call_id", path),
            result=_str(data, "result", path),
            is_error=_bool(data, "is_error", path, default=False),
        )


@dataclass(frozen=True)
class ContextualUpdate:
    """Background information for the agent. Client -> server; possibly echoed by the server."""

    type: ClassVar[str] = "contextual_update"
    text: str
    context_id: str | None = None

    def to_json(self) -> JsonDict:
        return _without_none({"type": self.type, "text": self.text, "context_id": self.context_id})

    @classmethod
    def from_json(cls, data: JsonDict) -> ContextualUpdate:
        # UNCONFIRMED server shape: accept the flat form and a wrapped `*_event` form.
        body = data
        for key, value in data.items():
            if key.endswith("_event") and isinstance(value, dict):
                body = value
        return cls(_str(body, "text", cls.type), _opt_str(body, "context_id", cls.type))


@dataclass(frozen=True)
class UserMessage:
    type: ClassVar[str] = "user_message"
    text: str | None
    rich_content_id: str | None = None

    def to_json(self) -> JsonDict:
        data: JsonDict = {"type": self.type, "text": self.text}
        if self.rich_content_id is not None:
            data["rich_content_id"] = self.rich_content_id
        return data

    @classmethod
    def from_json(cls, data: JsonDict) -> UserMessage:
        return cls(_opt_str(data, "text", cls.type), _opt_str(data, "rich_content_id", cls.type))


@dataclass(frozen=True)
class UserActivity:
    type: ClassVar[str] = "user_activity"

    def to_json(self) -> JsonDict:
        return {"type": self.type}

    @classmethod
    def from_json(cls, data: JsonDict) -> UserActivity:
        return cls()


@dataclass(frozen=True)
class MultimodalMessage:
    type: ClassVar[str] = "multimodal_message"
    text: str | None = None
    file_id: str | None = None

    def __post_init__(self) -> None:
        if self.text is None and self.file_id is None:
            raise ProtocolError("multimodal_message: needs text, file or both")

    def to_json(self) -> JsonDict:
        data: JsonDict = {"type": self.type}
        if self.text is not None:
            data["text"] = {"type": "user_message", "text": self.text}
        if self.file_id is not None:
            data["file"] = {"type": "file_input", "file_id": self.file_id}
        return data

    @classmethod
    def from_json(cls, data: JsonDict) -> MultimodalMessage:
        path = cls.type
        text_part = _opt_obj(data, "text", path)
        file_part = _opt_obj(data, "file", path)
        return cls(
            text=_opt_str(text_part, "text", f"{path}.text") if text_part else None,
            file_id=_str(file_part, "file_id", f"{path}.file") if file_part else None,
        )


@dataclass(frozen=True)
class Feedback:
    type: ClassVar[str] = "feedback"
    event_id: int
    score: str | None  # "like", "dislike" or None

    def __post_init__(self) -> None:
        if self.score not in ("like", "dislike", None):
            raise ProtocolError(
                f"feedback.score: expected like, dislike or null, got {self.score!r}"
            )

    def to_json(self) -> JsonDict:
        return {"type": self.type, "event_id": self.event_id, "score": self.score}

    @classmethod
    def from_json(cls, data: JsonDict) -> Feedback:
        return cls(_int(data, "event_id", cls.type), _opt_str(data, "score", cls.type))


ClientMessage = (
    UserAudioChunk
    | Pong
    | ConversationInitiationClientData
    | ClientToolResult
    | ContextualUpdate
    | UserMessage
    | UserActivity
    | MultimodalMessage
    | Feedback
)

# --------------------------------------------------------------------------- server -> client


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
            conversation_id=_str(body, "conversation_id", path),
            agent_output_audio_format=_str(body, "agent_output_audio_format", path),
            user_input_audio_format=_str(body, "user_input_audio_format", path),
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
        body = _without_none({self.text_key: self.text, "event_id": self.event_id})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Self:
        return cls(_str(body, cls.text_key, path), _opt_int(body, "event_id", path))


@dataclass(frozen=True)
class UserTranscript(_TextEvent):
    type: ClassVar[str] = "user_transcript"
    wrapper: ClassVar[str] = "user_transcription_event"
    text_key: ClassVar[str] = "user_transcript"


@dataclass(frozen=True)
class TentativeUserTranscript(_TextEvent):
    type: ClassVar[str] = "tentative_user_transcript"
    wrapper: ClassVar[str] = "tentative_user_transcription_event"
    text_key: ClassVar[str] = "user_transcript"


@dataclass(frozen=True)
class AgentResponse(_TextEvent):
    type: ClassVar[str] = "agent_response"
    wrapper: ClassVar[str] = "agent_response_event"
    text_key: ClassVar[str] = "agent_response"


@dataclass(frozen=True)
class AgentResponseCorrection:
    type: ClassVar[str] = "agent_response_correction"
    wrapper: ClassVar[str] = "agent_response_correction_event"
    original: str
    corrected: str
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = _without_none(
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
            original=_str(body, "original_agent_response", path),
            corrected=_str(body, "corrected_agent_response", path),
            event_id=_opt_int(body, "event_id", path),
        )


@dataclass(frozen=True)
class Audio:
    type: ClassVar[str] = "audio"
    wrapper: ClassVar[str] = "audio_event"
    audio: bytes = field(repr=False)
    event_id: int
    alignment: JsonDict | None = None

    def to_json(self) -> JsonDict:
        body: JsonDict = {"audio_base_64": _b64encode(self.audio), "event_id": self.event_id}
        if self.alignment is not None:
            body["alignment"] = self.alignment
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Audio:
        return cls(
            audio=_b64(body, "audio_base_64", path),
            event_id=_int(body, "event_id", path),
            alignment=_opt_obj(body, "alignment", path),
        )


@dataclass(frozen=True)
class Interruption:
    type: ClassVar[str] = "interruption"
    wrapper: ClassVar[str] = "interruption_event"
    event_id: int
    reason: str | None = None  # UNCONFIRMED field, modelled by an open SDK PR

    def to_json(self) -> JsonDict:
        body = _without_none({"event_id": self.event_id, "reason": self.reason})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> Interruption:
        return cls(_int(body, "event_id", path), _opt_str(body, "reason", path))


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
        return cls(_int(body, "event_id", path), _opt_int(body, "ping_ms", path))


@dataclass(frozen=True)
class ClientToolCall:
    type: ClassVar[str] = "client_tool_call"
    wrapper: ClassVar[str] = "client_tool_call"
    tool_name: str
    tool_call_id: str
    parameters: JsonDict = field(default_factory=dict)
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = _without_none(
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
            tool_name=_str(body, "tool_name", path),
            tool_call_id=_str(body, "tool_call_id", path),
            parameters=_opt_obj(body, "parameters", path) or {},
            event_id=_opt_int(body, "event_id", path),
        )


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
        return cls(_number(body, "vad_score", path))


@dataclass(frozen=True)
class InternalTentativeAgentResponse:
    type: ClassVar[str] = "internal_tentative_agent_response"
    wrapper: ClassVar[str] = "tentative_agent_response_internal_event"
    text: str

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: {"tentative_agent_response": self.text}}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> InternalTentativeAgentResponse:
        return cls(_str(body, "tentative_agent_response", path))


@dataclass(frozen=True)
class AgentResponseComplete:
    """The server finished sending an agent turn. Shape UNCONFIRMED (protocol.md 5.18)."""

    type: ClassVar[str] = "agent_response_complete"
    wrapper: ClassVar[str] = "agent_response_complete_event"
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        return {"type": self.type, self.wrapper: _without_none({"event_id": self.event_id})}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentResponseComplete:
        return cls(_opt_int(body, "event_id", path))


@dataclass(frozen=True)
class AgentChatResponsePart:
    type: ClassVar[str] = "agent_chat_response_part"
    wrapper: ClassVar[str] = "text_response_part"
    text: str
    part_type: str  # start | delta | stop
    event_id: int | None = None

    def to_json(self) -> JsonDict:
        body = _without_none({"text": self.text, "type": self.part_type, "event_id": self.event_id})
        return {"type": self.type, self.wrapper: body}

    @classmethod
    def from_body(cls, body: JsonDict, path: str) -> AgentChatResponsePart:
        part_type = _str(body, "type", path)
        if part_type not in ("start", "delta", "stop"):
            raise ProtocolError(f"{path}.type: expected start, delta or stop, got {part_type!r}")
        return cls(_opt_str(body, "text", path) or "", part_type, _opt_int(body, "event_id", path))


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
        body = _without_none(
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
            tool_name=_str(body, "tool_name", path),
            tool_call_id=_str(body, "tool_call_id", path),
            tool_type=_str(body, "tool_type", path),
            is_error=_bool(body, "is_error", path),
            is_called=_bool(body, "is_called", path, default=True),
            event_id=_opt_int(body, "event_id", path),
        )


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
        body = _without_none(
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
            message=_opt_str(body, "message", path) or "",
            code=_opt_int(body, "code", path),
            error_type=_opt_str(body, "error_type", path) or _opt_str(body, "error_name", path),
            reason=_opt_str(body, "reason", path),
        )


@dataclass(frozen=True)
class UnknownEvent:
    """A server message of a type this client does not model; the raw dict is kept."""

    type: str
    raw: JsonDict

    def to_json(self) -> JsonDict:
        return dict(self.raw)


_WrappedEvent = (  # the events whose body sits under a wrapper key
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

ServerEvent = _WrappedEvent | ContextualUpdate | UnknownEvent

Message = ClientMessage | ServerEvent

# --------------------------------------------------------------------------- decode / encode

_WRAPPED_EVENTS: dict[str, type[_WrappedEvent]] = {
    cls.type: cls
    for cls in (
        ConversationInitiationMetadata,
        UserTranscript,
        TentativeUserTranscript,
        AgentResponse,
        AgentResponseCorrection,
        Audio,
        Interruption,
        Ping,
        ClientToolCall,
        VadScore,
        InternalTentativeAgentResponse,
        AgentResponseComplete,
        AgentChatResponsePart,
        AgentToolResponse,
        ErrorEvent,
    )
}

_CLIENT_TYPES: dict[str, Callable[[JsonDict], ClientMessage]] = {
    cls.type: cls.from_json
    for cls in (
        Pong,
        ConversationInitiationClientData,
        ClientToolResult,
        ContextualUpdate,
        UserMessage,
        UserActivity,
        MultimodalMessage,
        Feedback,
    )
}


def _load_object(raw: str | bytes) -> JsonDict:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"frame is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"frame: expected a JSON object, got {_describe(data)}")
    return data


def _message_type(data: JsonDict) -> str:
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(f"type: expected a string, got {_describe(kind)}")
    return kind


def _event_body(data: JsonDict, cls: type[_WrappedEvent]) -> JsonDict:
    if cls.wrapper in data:
        return _obj(data, cls.wrapper, cls.type)
    # UNCONFIRMED shapes (client_error, agent_response_complete) arrive under other `*_event` keys
    # or flat; accept those instead of dropping a message the device needs.
    for key, value in data.items():
        if key.endswith("_event") and isinstance(value, dict):
            return value
    if cls in (ErrorEvent, AgentResponseComplete):
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
    cls = _WRAPPED_EVENTS.get(kind)
    if cls is None:
        return UnknownEvent(kind, data)
    return cls.from_body(_event_body(data, cls), f"{kind}.{cls.wrapper}")


def decode_client(raw: str | bytes) -> ClientMessage:
    """Parse one frame a client sent (used by the simulator). Unknown types are errors."""
    data = _load_object(raw)
    if "user_audio_chunk" in data and "type" not in data:
        return UserAudioChunk.from_json(data)
    kind = _message_type(data)
    parse = _CLIENT_TYPES.get(kind)
    if parse is None:
        raise ProtocolError(f"type: unknown client message type {kind!r}")
    return parse(data)


def encode(message: Message) -> str:
    """Serialise a message as one JSON text frame."""
    return json.dumps(message.to_json(), separators=(",", ":"), ensure_ascii=False)
