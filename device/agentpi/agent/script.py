"""What the agent simulator does, turn by turn: a typed script, loadable from TOML.

[simulator]
ping_interval_s = 2.0

[agent.conversation_config.tts]   # the agent's settings, as the platform's agent document
agent_output_audio_format = "ulaw_8000"   # has them (merged over the platform's defaults)

[first_turn]                # the agent's greeting; `silent = true` for none
response = "Hello! How can I help?"   # default: the agent's first_message
interrupt_after_s = 1.0     # the server interrupts its own reply after this long
audio_pace = 1.0            # this turn's audio streams in real time (default: [simulator]'s)

[[turns]]                   # one per user turn, in order; echo replies after they run out
transcript = "what's the weather"
response = "Sunny."
tool_call = { name = "get_time", parameters = {} }
server_tool = { name = "lookup", duration_s = 1.0 }          # a webhook: request, response
mcp_call = { name = "turn_on", approval = true }             # asks the user, then runs
events = [{ type = "guardrail_triggered" }]                  # any server events, wire shape
error = { code = 1011, error_type = "unknown", message = "boom" }
malformed = ["{not json"]
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from agentpi.agent.definition import AgentDefinition, default_document, merged
from agentpi.protocol.messages import (
    ConversationInitiationClientData,
    ProtocolError,
    ServerEvent,
    UnknownEvent,
    decode_server,
)
from agentpi.settings.typed import SettingsError, build_dataclass, load_toml

CLOSE_CODES = (1000, 1002, 1008, 1011)


@dataclass(frozen=True)
class ToolCallScript:
    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = 10.0


@dataclass(frozen=True)
class ServerToolScript:
    """A tool the platform runs (a webhook, a system tool): the client sees its request and its
    response, ``duration_s`` apart."""

    name: str
    tool_type: str = "webhook"
    duration_s: float = 0.5
    is_error: bool = False


@dataclass(frozen=True)
class McpCallScript:
    """An MCP tool call; with ``approval`` it waits for the client's mcp_tool_approval_result
    (up to ``approval_timeout_s``), as a tool set to ask does."""

    name: str
    parameters: dict[str, Any] = field(default_factory=dict)
    approval: bool = True
    approval_timeout_s: int = 300
    duration_s: float = 0.2
    fails: bool = False
    service_id: str = "sim_mcp"


@dataclass(frozen=True)
class ErrorScript:
    code: int = 1011
    error_type: str = "unknown"
    message: str = "simulated server error"

    def __post_init__(self) -> None:
        if self.code not in CLOSE_CODES:
            raise SettingsError(f"error.code: {self.code} is not one of {CLOSE_CODES}")


@dataclass(frozen=True)
class CloseScript:
    code: int = 1000
    reason: str = ""

    def __post_init__(self) -> None:
        if self.code not in CLOSE_CODES:
            raise SettingsError(f"close.code: {self.code} is not one of {CLOSE_CODES}")


@dataclass(frozen=True)
class TurnScript:
    transcript: str | None = None
    """The user_transcript sent for this user turn (default: how long the user spoke)."""
    response: str | None = None
    """The agent's reply; ``{result}`` is replaced by the tool result (default: an echo)."""
    delay_s: float = 0.2
    """Thinking time before the reply (a slow agent)."""
    tool_call: ToolCallScript | None = None
    server_tool: ServerToolScript | None = None
    mcp_call: McpCallScript | None = None
    events: tuple[dict[str, Any], ...] = ()
    """Server events, in their wire shape, sent before the reply (those the agent's
    client_events leave out are withheld, as the platform does)."""
    interrupt_after_s: float | None = None
    malformed: tuple[str, ...] = ()
    """Raw frames sent before the reply."""
    error: ErrorScript | None = None
    """Send ``error`` and close with its code instead of replying."""
    close: CloseScript | None = None
    """Close the socket instead of replying."""
    end_call: bool = False
    """After the reply, report the system tool end_call and close with 1000."""
    silent: bool = False
    """Say nothing at all for this turn."""
    audio_pace: float | None = None
    """This turn's audio pace, instead of the simulator's (a TTS that keeps only just ahead)."""

    def __post_init__(self) -> None:
        if self.audio_pace is not None and self.audio_pace < 0:
            raise SettingsError(f"audio_pace: {self.audio_pace} is below 0")
        for index, event in enumerate(self.events):
            try:
                decoded = decode_server(json.dumps(event))
            except ProtocolError as exc:
                raise SettingsError(f"events[{index}]: {exc}") from None
            if isinstance(decoded, UnknownEvent):
                raise SettingsError(f"events[{index}]: {decoded.type!r} is not a server event")

    def scripted_events(self) -> list[ServerEvent]:
        return [decode_server(json.dumps(event)) for event in self.events]


@dataclass(frozen=True)
class SimulatorSettings:
    """How the simulated service behaves where no agent setting says (the agent's own settings
    are its document: ``SimulatorScript.agent``)."""

    ping_interval_s: float = 2.0
    pong_timeout_s: float = 5.0
    close_on_missing_pong: bool = False
    handshake_delay_s: float = 0.0
    silent: bool = False
    """Accept the socket and never send anything (not even metadata)."""
    audio_chunk_ms: int = 100
    audio_pace: float = 2.0
    """Agent audio leaves at this multiple of real time, as a streaming TTS would (0: at once)."""
    alignment: bool = False
    """Send each audio chunk's ``alignment`` (the characters it speaks and when), spread evenly
    over the reply's audio."""
    end_of_speech_s: float = 0.5
    vad_score_interval_s: float = 0.1
    input_timeout_s: float = 60.0
    require_signed_url: bool = False
    client_events_override: bool = False
    """Honour ``conversation_config_override.conversation.client_events``. The platform's
    security settings have no switch for it (the AsyncAPI's override schema names it): off, a
    conversation that asks is refused as any other override the agent does not allow."""


@dataclass(frozen=True)
class SimulatorScript:
    simulator: SimulatorSettings = field(default_factory=SimulatorSettings)
    agent: dict[str, Any] = field(default_factory=dict)
    """Changes to the agent's settings, in the platform's agent document shape, merged over the
    simulator's document (by default an agent with the platform's defaults)."""
    first_turn: TurnScript = TurnScript()
    """The greeting's behaviour; its text is the agent's first_message unless given here."""
    turns: tuple[TurnScript, ...] = ()

    def __post_init__(self) -> None:
        try:
            AgentDefinition.from_document(merged(default_document(), self.agent))
        except SettingsError as exc:
            raise SettingsError(f"agent.{exc}") from None

    def tools_called(self) -> dict[str, list[str]]:
        """The client tools the script's turns call, with their parameter names."""
        calls = [t.tool_call for t in (self.first_turn, *self.turns) if t.tool_call is not None]
        return {call.name: sorted(call.parameters) for call in calls}


def load_script(path: str | Path) -> SimulatorScript:
    return build_dataclass(SimulatorScript, load_toml(path), "")


VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")


def greeting(
    first_turn: TurnScript, first_message: str, init: ConversationInitiationClientData | None
) -> TurnScript | None:
    """The first turn: the client's first_message override if it sent one (the agent allowed
    it, or the conversation was refused), else the script's, else the agent's first_message."""
    agent = init.conversation_config_override.get("agent") if init else None
    if isinstance(agent, dict) and isinstance(agent.get("first_message"), str):
        if not agent["first_message"]:
            return None  # an empty first message: the agent waits for the user
        return replace(first_turn, response=agent["first_message"], silent=False)
    if first_turn.silent or not (first_turn.response or first_message):
        return None
    return replace(first_turn, response=first_turn.response or first_message)


def fill_variables(
    text: str, init: ConversationInitiationClientData | None
) -> tuple[str, list[str]]:
    """``{{name}}`` replaced from the client's dynamic_variables; the names it lacks."""
    values = init.dynamic_variables if init else {}
    missing: list[str] = []

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in values:
            missing.append(name)
            return match.group(0)
        found = values[name]
        return str(found).lower() if isinstance(found, bool) else str(found)

    return VARIABLE.sub(value, text), missing
