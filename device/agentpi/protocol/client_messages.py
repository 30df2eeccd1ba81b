"""What a client sends the agent: one frozen dataclass per message type."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar

from agentpi.protocol.fields import (
    JsonDict,
    ProtocolError,
    encode_base64,
    read_base64,
    read_bool,
    read_int,
    read_optional_object,
    read_optional_str,
    read_str,
    without_none,
)

CLIENT_MESSAGE_TYPES: dict[str, Callable[[JsonDict], ClientMessage]] = {}
"""Each typed client message's parser, by its ``type`` (filled by ``@client_message``)."""

_M = TypeVar("_M")


def client_message(cls: _M) -> _M:
    CLIENT_MESSAGE_TYPES[cls.type] = cls.from_json  # type: ignore[attr-defined]
    return cls


@dataclass(frozen=True)
class UserAudioChunk:
    """Microphone audio in the agent's ``user_input_audio_format``; the one message with no type."""

    audio: bytes

    def to_json(self) -> JsonDict:
        return {"user_audio_chunk": encode_base64(self.audio)}

    @classmethod
    def from_json(cls, data: JsonDict) -> UserAudioChunk:
        return cls(read_base64(data, "user_audio_chunk", "user_audio_chunk"))


@client_message
@dataclass(frozen=True)
class Pong:
    type: ClassVar[str] = "pong"
    event_id: int

    def to_json(self) -> JsonDict:
        return {"type": self.type, "event_id": self.event_id}

    @classmethod
    def from_json(cls, data: JsonDict) -> Pong:
        return cls(read_int(data, "event_id", cls.type))


@client_message
@dataclass(frozen=True)
class ConversationInitiationClientData:
    type: ClassVar[str] = "conversation_initiation_client_data"
    conversation_config_override: JsonDict = field(default_factory=dict)
    custom_llm_extra_body: JsonDict = field(default_factory=dict)
    dynamic_variables: JsonDict = field(default_factory=dict)
    user_id: str | None = None
    source_info: JsonDict | None = None
    tool_mock_config: JsonDict | None = None
    branch_id: str | None = None
    environment: str | None = None
    starting_workflow_node_id: str | None = None

    def to_json(self) -> JsonDict:
        return without_none(
            {
                "type": self.type,
                "conversation_config_override": self.conversation_config_override,
                "custom_llm_extra_body": self.custom_llm_extra_body,
                "dynamic_variables": self.dynamic_variables,
                "user_id": self.user_id,
                "source_info": self.source_info,
                "tool_mock_config": self.tool_mock_config,
                "branch_id": self.branch_id,
                "environment": self.environment,
                "starting_workflow_node_id": self.starting_workflow_node_id,
            }
        )

    @classmethod
    def from_json(cls, data: JsonDict) -> ConversationInitiationClientData:
        path = cls.type
        return cls(
            conversation_config_override=read_optional_object(
                data, "conversation_config_override", path
            )
            or {},
            custom_llm_extra_body=read_optional_object(data, "custom_llm_extra_body", path) or {},
            dynamic_variables=read_optional_object(data, "dynamic_variables", path) or {},
            user_id=read_optional_str(data, "user_id", path),
            source_info=read_optional_object(data, "source_info", path),
            tool_mock_config=read_optional_object(data, "tool_mock_config", path),
            branch_id=read_optional_str(data, "branch_id", path),
            environment=read_optional_str(data, "environment", path),
            starting_workflow_node_id=read_optional_str(data, "starting_workflow_node_id", path),
        )


@client_message
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
            tool_call_id=read_str(data, "tool_call_id", path),
            result=read_str(data, "result", path),
            is_error=read_bool(data, "is_error", path, default=False),
        )


@client_message
@dataclass(frozen=True)
class McpToolApprovalResult:
    """The user's answer to an MCP tool call that waits for approval."""

    type: ClassVar[str] = "mcp_tool_approval_result"
    tool_call_id: str
    is_approved: bool

    def to_json(self) -> JsonDict:
        return {
            "type": self.type,
            "tool_call_id": self.tool_call_id,
            "is_approved": self.is_approved,
        }

    @classmethod
    def from_json(cls, data: JsonDict) -> McpToolApprovalResult:
        return cls(
            read_str(data, "tool_call_id", cls.type), read_bool(data, "is_approved", cls.type)
        )


@client_message
@dataclass(frozen=True)
class ContextualUpdate:
    """Background information for the agent. Client -> server; possibly echoed by the server."""

    type: ClassVar[str] = "contextual_update"
    text: str
    context_id: str | None = None

    def to_json(self) -> JsonDict:
        return without_none({"type": self.type, "text": self.text, "context_id": self.context_id})

    @classmethod
    def from_json(cls, data: JsonDict) -> ContextualUpdate:
        # UNCONFIRMED server shape: accept the flat form and a wrapped `*_event` form.
        body = data
        for key, value in data.items():
            if key.endswith("_event") and isinstance(value, dict):
                body = value
        return cls(
            read_str(body, "text", cls.type), read_optional_str(body, "context_id", cls.type)
        )


@client_message
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
        return cls(
            read_optional_str(data, "text", cls.type),
            read_optional_str(data, "rich_content_id", cls.type),
        )


@client_message
@dataclass(frozen=True)
class UserActivity:
    type: ClassVar[str] = "user_activity"

    def to_json(self) -> JsonDict:
        return {"type": self.type}

    @classmethod
    def from_json(cls, data: JsonDict) -> UserActivity:
        return cls()


@client_message
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
        text_part = read_optional_object(data, "text", path)
        file_part = read_optional_object(data, "file", path)
        return cls(
            text=read_optional_str(text_part, "text", f"{path}.text") if text_part else None,
            file_id=read_str(file_part, "file_id", f"{path}.file") if file_part else None,
        )


@client_message
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
        return cls(read_int(data, "event_id", cls.type), read_optional_str(data, "score", cls.type))


ClientMessage = (
    UserAudioChunk
    | Pong
    | ConversationInitiationClientData
    | ClientToolResult
    | McpToolApprovalResult
    | ContextualUpdate
    | UserMessage
    | UserActivity
    | MultimodalMessage
    | Feedback
)
