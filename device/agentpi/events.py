"""The device's observable surface: one typed event per thing that happens.

Inside the process every event is a frozen dataclass (one per kind), so a listener matches on a
type and a typo is a type error. Only where an event leaves the process (the ``--events`` JSON
lines, the control socket, tests that compare lines) does it become a record: a dict with ``t``
(monotonic seconds, stamped by the bus), ``event`` (the kind) and the fields in declaration order.

This module imports nothing from agentpi: every layer may publish and listen.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

EventRecord = dict[str, Any]

EVENT_KINDS: dict[str, type[DeviceEvent]] = {}
"""Every kind of event, by the name its lines carry."""


@dataclass(frozen=True)
class DeviceEvent:
    kind: ClassVar[str] = ""
    omit_if_none: ClassVar[frozenset[str]] = frozenset()
    """Fields left out of the record when they are None (as today's lines leave them out)."""

    t: float = field(default=0.0, kw_only=True, compare=False)

    def __init_subclass__(cls, kind: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if kind:
            cls.kind = kind
            EVENT_KINDS[kind] = cls

    def fields(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for spec in dataclasses.fields(self):
            if spec.name == "t":
                continue
            value = getattr(self, spec.name)
            if value is None and spec.name in self.omit_if_none:
                continue
            values[spec.name] = value
        return values

    def record(self) -> EventRecord:
        return {"t": round(self.t, 6), "event": self.kind, **self.fields()}


# --------------------------------------------------------------------------- the device


@dataclass(frozen=True)
class StateChanged(DeviceEvent, kind="state"):
    state: str


@dataclass(frozen=True)
class LedShown(DeviceEvent, kind="led"):
    state: str
    effect: str
    color: str


@dataclass(frozen=True)
class TriggerFired(DeviceEvent, kind="trigger"):
    omit_if_none = frozenset({"model", "score", "audio_s", "agent_id"})
    source: str
    model: str | None = None
    score: float | None = None
    audio_s: float | None = None
    agent_id: str | None = None
    """The agent this wake word opens, when [wake.agents] names one for it."""


@dataclass(frozen=True)
class ListeningForWakeWord(DeviceEvent, kind="listening_for_wake_word"):
    engine: str


@dataclass(frozen=True)
class Ready(DeviceEvent, kind="ready"):
    """The device is up: what starts a conversation, and the audio devices it uses."""

    waiting_for: list[str]
    microphone: str
    speaker: str


@dataclass(frozen=True)
class ButtonAction(DeviceEvent, kind="button"):
    action: str  # end | talk | released


@dataclass(frozen=True)
class VolumeChanged(DeviceEvent, kind="volume"):
    percent: float


@dataclass(frozen=True)
class MicMuted(DeviceEvent, kind="mic_muted"):
    """The microphone was muted (no wake word, no audio out but in a conversation the button
    started) or unmuted."""

    muted: bool


@dataclass(frozen=True)
class WakeWordChosen(DeviceEvent, kind="wake_word"):
    """Which of the wake words starts a conversation now: one model's name, or all."""

    model: str


@dataclass(frozen=True)
class ControlError(DeviceEvent, kind="control_error"):
    message: str


@dataclass(frozen=True)
class MqttTakenOver(DeviceEvent, kind="mqtt_taken_over"):
    """Another MQTT client logged in with the device's client id (the broker said so, or the
    sessions it keeps ending suggest it); the link waits the longest back-off, then tries."""

    client_id: str
    reason: str
    retry_in_s: float


@dataclass(frozen=True)
class AudioError(DeviceEvent, kind="audio_error"):
    message: str


@dataclass(frozen=True)
class AudioRetry(DeviceEvent, kind="audio_retry"):
    attempt: int
    message: str


@dataclass(frozen=True)
class AudioRestored(DeviceEvent, kind="audio_restored"):
    attempts: int


@dataclass(frozen=True)
class AudioDropped(DeviceEvent, kind="audio_dropped"):
    samples: int


@dataclass(frozen=True)
class PlaybackFlushed(DeviceEvent, kind="playback_flushed"):
    dropped_samples: int


@dataclass(frozen=True)
class PlaybackOverflow(DeviceEvent, kind="playback_overflow"):
    """The server sent more agent audio than the speaker may hold; the rest was dropped."""

    refused_samples: int
    max_backlog_s: float


# --------------------------------------------------------------------------- the connection


@dataclass(frozen=True)
class FetchingSignedUrl(DeviceEvent, kind="fetching_signed_url"):
    """A private agent: the device first asks for a signed URL (ElevenLabs', or the owner's)."""

    host: str


@dataclass(frozen=True)
class Connecting(DeviceEvent, kind="connecting"):
    url: str


@dataclass(frozen=True)
class Connected(DeviceEvent, kind="connected"):
    pass


@dataclass(frozen=True)
class ConnectFailed(DeviceEvent, kind="connect_failed"):
    message: str
    offline: bool
    failures: int
    failure: str = "connect"
    """Its row of the failure table: auth, quota, offline, connect."""


@dataclass(frozen=True)
class RetryScheduled(DeviceEvent, kind="retry"):
    """After failures, the next kiosk or control-socket conversation waits this long (doubling,
    jittered; a press or the wake word still tries at once)."""

    delay_s: float
    failures: int


@dataclass(frozen=True)
class ConversationStarted(DeviceEvent, kind="conversation_started"):
    conversation_id: str
    user_input_audio_format: str
    agent_output_audio_format: str


@dataclass(frozen=True)
class Disconnected(DeviceEvent, kind="disconnected"):
    code: int | None
    reason: str
    closed_by: str


@dataclass(frozen=True)
class ConversationEnded(DeviceEvent, kind="conversation_ended"):
    omit_if_none = frozenset(
        {"greeting_ms", "turn_ms_median", "turn_ms_worst", "agent_id", "failure"}
    )

    conversation_id: str | None
    reason: str
    code: int | None
    closed_by: str
    error: str | None
    duration_s: float
    turns: int
    ping_ms: float | None
    greeting_ms: int | None = None
    turn_ms_median: int | None = None
    turn_ms_worst: int | None = None
    agent_id: str | None = None
    """Set when a wake word chose the agent ([wake.agents])."""
    failure: str | None = None
    """When it ended in error: its row of the failure table (service, settings, network, ...)."""


@dataclass(frozen=True)
class Turn(DeviceEvent, kind="turn"):
    """The agent's first audio of an answer reached the speaker: ``latency_ms`` after the end
    of the user's speech (``after`` = "speech"; ``turn`` counts them) or after the trigger
    (``after`` = "trigger": the greeting, ``turn`` 0)."""

    turn: int
    after: str
    latency_ms: int


@dataclass(frozen=True)
class Latency(DeviceEvent, kind="latency"):
    ping_ms: int


@dataclass(frozen=True)
class ServerError(DeviceEvent, kind="server_error"):
    code: int | None
    error_type: str | None
    message: str


@dataclass(frozen=True)
class ProtocolErrorSeen(DeviceEvent, kind="protocol_error"):
    message: str


@dataclass(frozen=True)
class UnknownEventSeen(DeviceEvent, kind="unknown_event"):
    type: str


@dataclass(frozen=True)
class Ignored(DeviceEvent, kind="ignored"):
    """A server event with no meaning in the conversation's phase (debug; not a failure)."""

    type: str
    phase: str


# --------------------------------------------------------------------------- what was said


@dataclass(frozen=True)
class UserTranscript(DeviceEvent, kind="user_transcript"):
    text: str
    event_id: int | None


@dataclass(frozen=True)
class TentativeUserTranscript(DeviceEvent, kind="tentative_user_transcript"):
    text: str


@dataclass(frozen=True)
class AgentResponse(DeviceEvent, kind="agent_response"):
    text: str
    event_id: int | None


@dataclass(frozen=True)
class AgentResponseCorrection(DeviceEvent, kind="agent_response_correction"):
    original: str
    corrected: str
    event_id: int | None


@dataclass(frozen=True)
class TentativeAgentResponse(DeviceEvent, kind="tentative_agent_response"):
    text: str


@dataclass(frozen=True)
class AgentChatResponsePart(DeviceEvent, kind="agent_chat_response_part"):
    text: str
    part: str


@dataclass(frozen=True)
class AgentResponseComplete(DeviceEvent, kind="agent_response_complete"):
    event_id: int | None


@dataclass(frozen=True)
class Interruption(DeviceEvent, kind="interruption"):
    event_id: int | None


@dataclass(frozen=True)
class VadScore(DeviceEvent, kind="vad_score"):
    """How sure a VAD is that the user speaks, 0..1: the agent's (``source`` "agent"), or the
    device's own until the agent's first arrives (an agent sends none by default)."""

    score: float
    source: str = "agent"


@dataclass(frozen=True)
class ToolCall(DeviceEvent, kind="tool_call"):
    tool_name: str
    tool_call_id: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolResult(DeviceEvent, kind="tool_result"):
    tool_call_id: str
    is_error: bool


@dataclass(frozen=True)
class AgentToolResponse(DeviceEvent, kind="agent_tool_response"):
    tool_name: str
    tool_type: str
    is_error: bool


@dataclass(frozen=True)
class UserMessageSent(DeviceEvent, kind="user_message"):
    text: str | None


@dataclass(frozen=True)
class ContextualUpdateSent(DeviceEvent, kind="contextual_update_sent"):
    omit_if_none = frozenset({"context_id"})
    text: str
    context_id: str | None = None
    """The agent keeps only the latest update of an id."""


@dataclass(frozen=True)
class ContextualUpdateReceived(DeviceEvent, kind="contextual_update"):
    text: str


CONTEXT_SENT_EVENT = ContextualUpdateSent.kind


@dataclass(frozen=True)
class AgentWords(DeviceEvent, kind="agent_words"):
    """Words of the agent's answer, as the speaker starts to play them (from the audio's
    alignment; an agent that sends none has only its agent_response, at arrival)."""

    text: str
    event_id: int


@dataclass(frozen=True)
class AgentReasoning(DeviceEvent, kind="agent_reasoning"):
    """A part of the agent's reasoning as it streams (``part``: start, delta, stop)."""

    text: str
    part: str


@dataclass(frozen=True)
class RichContentShown(DeviceEvent, kind="rich_content"):
    """A component the agent would draw on a screen; a speaker names it only."""

    rich_content_id: str
    component: str


# --------------------------------------------------------------------------- tools at work


@dataclass(frozen=True)
class AgentToolRequest(DeviceEvent, kind="agent_tool_request"):
    tool_name: str
    tool_call_id: str
    tool_type: str


@dataclass(frozen=True)
class AgentToolResult(DeviceEvent, kind="agent_tool_result"):
    """A tool's full result reached the agent (its size only: it may be big and private)."""

    tool_name: str
    tool_call_id: str
    is_error: bool
    is_blocked: bool
    truncated: bool
    result_chars: int


@dataclass(frozen=True)
class McpToolCall(DeviceEvent, kind="mcp_tool_call"):
    omit_if_none = frozenset({"error_message", "approval_timeout_s"})
    tool_name: str
    tool_call_id: str
    state: str
    service_id: str
    error_message: str | None = None
    approval_timeout_s: int | None = None


@dataclass(frozen=True)
class McpApproval(DeviceEvent, kind="mcp_approval"):
    """The device's answer to an MCP tool's approval request, and who gave it: button, control,
    mqtt, config (the approve / deny lists), no answer (the time ran out), too many waiting."""

    tool_name: str
    tool_call_id: str
    approved: bool
    by: str


@dataclass(frozen=True)
class McpConnectionStatus(DeviceEvent, kind="mcp_connection_status"):
    integrations: list[dict[str, Any]]


# --------------------------------------------------------------------------- the agent's state


@dataclass(frozen=True)
class ContextUsage(DeviceEvent, kind="context_usage"):
    model: str
    context_tokens: int
    context_limit_tokens: int
    percent: float | None


@dataclass(frozen=True)
class AsrInitiationMetadata(DeviceEvent, kind="asr_initiation_metadata"):
    metadata: dict[str, Any]


@dataclass(frozen=True)
class GuardrailTriggered(DeviceEvent, kind="guardrail_triggered"):
    """A guardrail of the agent stopped its answer."""


@dataclass(frozen=True)
class TurnProbability(DeviceEvent, kind="turn_probability"):
    probability: float


@dataclass(frozen=True)
class AgentTyping(DeviceEvent, kind="agent_typing"):
    omit_if_none = frozenset({"duration_ms"})
    is_typing: bool
    duration_ms: int | None = None


@dataclass(frozen=True)
class ExternalAgent(DeviceEvent, kind="external_agent"):
    """A person took the conversation over from the AI agent (``connected``) or gave it back."""

    connected: bool


@dataclass(frozen=True)
class FeedbackSent(DeviceEvent, kind="feedback"):
    score: str | None
    event_id: int


# --------------------------------------------------------------------------- the bus

Listener = Callable[[DeviceEvent], None]


class EventBus:
    """Stamps each event with the time and hands it to every listener, in order."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def publish(self, event: DeviceEvent) -> DeviceEvent:
        stamped = dataclasses.replace(event, t=self._clock())
        for listener in list(self._listeners):
            listener(stamped)
        return stamped


def as_records(take: Callable[[EventRecord], object]) -> Listener:
    """A listener that hands each event on as its record (for writers and tests)."""

    def listener(event: DeviceEvent) -> None:
        take(event.record())

    return listener


def dropped_line(count: int) -> str:
    """The line that stands where ``count`` lines were dropped for a reader too slow for them."""
    return event_line({"event": "events_dropped", "count": count})


MAX_SHOWN_CHARS = 4096
"""The longest text a line that is not the record carries (the transcript on the console, the
control socket's subscribers, MQTT): a server may send an answer of megabytes."""


def shortened(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` cut at ``limit`` characters, saying how much was left out."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit} more characters]"


def shortened_record(value: Any, limit: int = MAX_SHOWN_CHARS) -> Any:
    """``value`` (a record, or a part of one) with every text in it shortened."""
    if isinstance(value, str):
        return shortened(value, limit)
    if isinstance(value, dict):
        return {key: shortened_record(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [shortened_record(item, limit) for item in value]
    return value


def event_line(record: EventRecord) -> str:
    """One record as the line `--events` and the control socket's subscribers get."""
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"
