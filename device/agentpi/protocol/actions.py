"""What the conversation core asks the adapters to do: one frozen dataclass per action.

The orchestrator carries these out in order and never looks inside the session to decide
anything: everything it must know arrives as an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agentpi.audio.formats import AudioFormat
from agentpi.events import DeviceEvent
from agentpi.protocol.messages import ClientMessage, ClientToolCall, JsonDict, McpToolCall
from agentpi.states import DeviceState


@dataclass(frozen=True)
class Send:
    message: ClientMessage


@dataclass(frozen=True)
class StartAudio:
    """The server's metadata fixed the formats: open the speaker, start sending the mic."""

    input_format: AudioFormat
    output_format: AudioFormat


@dataclass(frozen=True)
class PlayAudio:
    """Agent audio, still in the agent's output format, to queue for the speaker."""

    audio: bytes = field(repr=False)
    event_id: int
    alignment: JsonDict | None = field(default=None, repr=False)
    """Which characters the audio speaks, and when (``audio.alignment``), when the agent says."""


@dataclass(frozen=True)
class FlushPlayback:
    """Stop sound now and drop everything queued (an interruption)."""


@dataclass(frozen=True)
class SetState:
    state: DeviceState


@dataclass(frozen=True)
class Notify:
    """Something observable happened: a typed event for the bus."""

    event: DeviceEvent

    @property
    def kind(self) -> str:
        return self.event.kind


@dataclass(frozen=True)
class RunTool:
    call: ClientToolCall


@dataclass(frozen=True)
class AskApproval:
    """An MCP tool waits for the user's yes or no: the cue plays (the lights follow the state);
    the answer comes back through ``ConversationSession.answer_approval``."""

    call: McpToolCall


@dataclass(frozen=True)
class CloseConnection:
    code: int
    reason: str


@dataclass(frozen=True)
class ConversationEnded:
    """How a conversation ended (also how one that never opened did: ``closed_by`` client)."""

    code: int | None
    reason: str
    closed_by: str  # "client" or "server"
    error: str | None = None
    error_type: str | None = None
    """The server's ``error`` event's error_type, when it sent one."""

    @property
    def ok(self) -> bool:
        return self.error is None


Action = (
    Send
    | StartAudio
    | PlayAudio
    | FlushPlayback
    | SetState
    | Notify
    | RunTool
    | AskApproval
    | CloseConnection
    | ConversationEnded
)
