"""What the simulator saw and did in each conversation, for tests and benchmarks to check."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from agentpi.protocol.messages import (
    ClientMessage,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    McpToolApprovalResult,
)

log = logging.getLogger("agentpi.agent.simulator")


@dataclass
class AgentTurnRecord:
    event_id: int
    text: str
    audio_samples: int = 0
    samples_sent: int = 0
    started_at: float = 0.0
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    interrupted_at: float | None = None
    completed_at: float | None = None


@dataclass
class ConversationRecord:
    """Everything one conversation did, as the server saw it."""

    conversation_id: str
    agent_id: str
    path: str
    opened_at: float
    init: ConversationInitiationClientData | None = None
    received: list[tuple[float, str]] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)
    messages: list[tuple[float, ClientMessage]] = field(default_factory=list)
    user_audio: bytearray = field(default_factory=bytearray)
    user_audio_arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(arrival time, byte offset in user_audio of the chunk's end) for each chunk."""
    turns: list[AgentTurnRecord] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)
    """Protocol observations: speech start/end, missing pongs, violations."""
    tool_results: dict[str, ClientToolResult] = field(default_factory=dict)
    approvals: list[tuple[float, McpToolApprovalResult]] = field(default_factory=list)
    """Every mcp_tool_approval_result, with when it came."""
    context: dict[str, str] = field(default_factory=dict)
    """The background the agent keeps: an update with a context_id replaces the last of that
    id (the platform keeps the latest), one without is kept beside the others."""
    withheld: dict[str, int] = field(default_factory=dict)
    """Server messages not sent, by type, because the agent's client_events leave them out."""
    pings_sent: int = 0
    pongs_received: int = 0
    missing_pongs: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""
    closed_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, text: str) -> None:
        self.notes.append((time.monotonic(), text))
        log.info("[%s] %s", self.conversation_id, text)

    def keep_context(self, update: ContextualUpdate) -> None:
        key = update.context_id if update.context_id is not None else f"#{len(self.context)}"
        self.context.pop(key, None)  # the latest goes last, as the agent reads it
        self.context[key] = update.text

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [message for _, message in self.messages if isinstance(message, cls)]
