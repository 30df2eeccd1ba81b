"""What the device says on MQTT and what it takes from it, with no I/O.

Topics under the base (``agentpi/<device id>`` unless configured):

    availability        online / offline (retained; offline is the broker's last will)
    state               idle, listening, speaking, ... (retained)
    conversation_id     the running conversation's id, "" between (retained)
    volume, wake        the volume in percent, the wake word ON / OFF (retained)
    status              a JSON document for fleet dashboards (retained)
    events              the event lines of ``--events``, rate-limited
    transcript/user, transcript/agent   the last ones, only with ``transcripts = true``
    command             a control-socket request as JSON ({"command": "say", "text": ...})
    say, start, stop, volume/set, wake/set    Home Assistant's entities' commands
    approve, deny       answer the MCP tool waiting for approval (any payload)
    mic/set, wake_word/set    the microphone mute (ON / OFF), the active wake word (or "all")
    announce            the agent says this sentence (Home Assistant's notify entity)
    start               with a JSON object: {"first_message": ..., "instructions": ...}
    feedback            like / dislike: rate the agent's last answer
    reply               the answer to every command: {"ok": true} or {"ok": false, "error": ...}

Home Assistant discovery configs go to ``<prefix>/<component>/<node>/<object>/config``.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agentpi import bounded_json
from agentpi import events as ev
from agentpi.control.requests import (
    MAX_REQUEST_BYTES,
    ControlRequest,
    ControlRequestError,
    parse_request,
)
from agentpi.errors import AgentpiError
from agentpi.events import DeviceEvent, EventRecord, shortened, shortened_record
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol.failures import ALL_FAILURES
from agentpi.tools.device import MAX_VOLUME_PERCENT

ERROR_EVENTS: tuple[type[DeviceEvent], ...] = (
    ev.ServerError,
    ev.ProtocolErrorSeen,
    ev.AudioError,
    ev.ConnectFailed,
    ev.ControlError,
)
PRIVATE_EVENTS: tuple[type[DeviceEvent], ...] = (
    ev.UserTranscript,
    ev.TentativeUserTranscript,
    ev.AgentResponse,
    ev.TentativeAgentResponse,
    ev.AgentResponseCorrection,
    ev.AgentChatResponsePart,
    ev.AgentReasoning,
    ev.AgentWords,
    ev.UserMessageSent,
    ev.ContextualUpdateSent,
    ev.ContextualUpdateReceived,
    ev.ToolCall,
)
"""Lines that carry what was said, typed or passed to a tool: on the events topic only with
``transcripts = true``."""
BUTTON_GESTURES = {"end": "single", "approve": "single", "double": "double", "decline": "long"}
"""Button lines as Home Assistant's event entity names the gestures (a press that starts a
conversation is a single one too)."""
OUTCOMES = ("ok", *(row.name for row in ALL_FAILURES))
"""How a conversation ended, as its event entity reports it: ok, or its failure row."""

ESSENTIAL_EVENTS: tuple[type[DeviceEvent], ...] = (
    ev.TriggerFired,
    ev.StateChanged,
    ev.ConversationStarted,
    ev.ConversationEnded,
    ev.Turn,
    ev.VolumeChanged,
    ev.McpApproval,
    ev.McpToolCall,
    *ERROR_EVENTS,
)
"""Lines never held back by the rate limit: the rest (vad_score, latency, led, ...) are."""


@dataclass(frozen=True)
class Publish:
    topic: str
    payload: str
    retain: bool = False


@dataclass(frozen=True)
class Command:
    """A command that passed every check; the adapter carries it out."""

    request: ControlRequest | None = None
    volume_percent: float | None = None
    wake_on: bool | None = None


class MqttCommandError(AgentpiError, ValueError):
    """A command from the broker that cannot be carried out; the reply says why."""


class MqttBridge:
    def __init__(
        self,
        config: MqttConfig,
        device_id: str,
        version: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.base = config.base_topic or f"agentpi/{device_id}"
        self.device_id = device_id
        self.version = version
        self.node = re.sub(r"[^A-Za-z0-9_-]", "_", device_id)
        self._clock = clock
        self._tokens = max(1.0, config.events_per_s)
        self._refilled_at = clock()
        self.events_dropped = 0
        self._unreported_drops = 0
        self.errors: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        """Conversations (and connects) that failed, by their row of the failure table."""
        self.last_outcome: dict[str, Any] | None = None

    def topic(self, name: str) -> str:
        return f"{self.base}/{name}"

    # ------------------------------------------------------------------ what the device says

    def will(self) -> Publish:
        return Publish(self.topic("availability"), "offline", retain=True)

    def on_connect(self, status: dict[str, Any]) -> list[Publish]:
        """Everything a fresh subscriber (or a broker that lost its retained messages) needs."""
        out = self.discovery(status.get("wake_words") or []) if self.config.discovery else []
        out += [
            Publish(self.topic("availability"), "online", retain=True),
            Publish(self.topic("state"), str(status.get("state", "")), retain=True),
            Publish(self.topic("conversation_id"), status.get("conversation_id") or "", True),
            Publish(self.topic("volume"), _number(status.get("volume_percent", 100)), True),
            self.wake_changed(bool(status.get("wake_enabled", True))),
            Publish(self.topic("mic"), "ON" if status.get("muted") else "OFF", True),
            self.status_document(status),
        ]
        if status.get("wake_word"):
            out.append(Publish(self.topic("wake_word"), str(status["wake_word"]), True))
        return out

    def subscriptions(self) -> list[str]:
        names = ("command", "say", "start", "stop", "approve", "deny", "feedback", "announce")
        return [self.topic(name) for name in names] + [
            self.topic("volume/set"),
            self.topic("wake/set"),
            self.topic("mic/set"),
            self.topic("wake_word/set"),
        ]

    def on_event(self, event: DeviceEvent, status: Callable[[], dict[str, Any]]) -> list[Publish]:
        out: list[Publish] = []
        match event:
            case ev.StateChanged(state=state):
                out.append(Publish(self.topic("state"), state, retain=True))
            case ev.ConversationStarted(conversation_id=conversation_id):
                out.append(Publish(self.topic("conversation_id"), conversation_id, True))
            case ev.ConversationEnded():
                self.last_outcome = {
                    "reason": event.reason,
                    "error": event.error,
                    "failure": event.failure,
                    "closed_by": event.closed_by,
                    "duration_s": event.duration_s,
                }
                if event.failure is not None:
                    self.failures[event.failure] += 1
                out += [
                    Publish(self.topic("conversation_id"), "", True),
                    self.status_document(status()),
                    self._fired(
                        "conversation",
                        event.failure or "ok",
                        reason=event.reason,
                        duration_s=event.duration_s,
                    ),
                ]
            case ev.VolumeChanged(percent=percent):
                out.append(Publish(self.topic("volume"), _number(percent), True))
            case ev.MicMuted(muted=muted):
                out.append(Publish(self.topic("mic"), "ON" if muted else "OFF", True))
            case ev.WakeWordChosen(model=model):
                out.append(Publish(self.topic("wake_word"), model, True))
            case ev.ButtonAction(action=action) if action in BUTTON_GESTURES:
                out.append(self._fired("button", BUTTON_GESTURES[action]))
            case ev.TriggerFired(source="button"):
                out.append(self._fired("button", "single"))
            case ev.ConnectFailed(failure=failure):
                self.errors[event.kind] += 1
                self.failures[failure] += 1
            case _ if isinstance(event, ERROR_EVENTS):
                self.errors[event.kind] += 1
        if self.config.transcripts and isinstance(event, ev.UserTranscript | ev.AgentResponse):
            who = "user" if isinstance(event, ev.UserTranscript) else "agent"
            text = shortened(event.text)
            out.append(Publish(self.topic(f"transcript/{who}"), text, True))
        if not isinstance(event, PRIVATE_EVENTS) or self.config.transcripts:
            record = shortened_record(event.record())  # 256 queued answers of 8 MB each
            out += self._event_line(record, essential=isinstance(event, ESSENTIAL_EVENTS))
        return out

    def _fired(self, entity: str, event_type: str, **attributes: Any) -> Publish:
        """One firing of a Home Assistant event entity (not retained: it happened once)."""
        payload = {"event_type": event_type, **attributes}
        return Publish(self.topic(f"event/{entity}"), json.dumps(payload))

    def wake_changed(self, on: bool) -> Publish:
        return Publish(self.topic("wake"), "ON" if on else "OFF", retain=True)

    def status_document(self, status: dict[str, Any]) -> Publish:
        document = {
            "device_id": self.device_id,
            "version": self.version,
            "uptime_s": status.get("uptime_s"),
            "state": status.get("state"),
            "conversations": status.get("conversations"),
            "last_outcome": self.last_outcome,
            "errors": dict(self.errors),
            "failures": dict(self.failures),
            "turn_latency": status.get("turn_latency"),
            "context_usage": status.get("context_usage"),
            "approvals_waiting": status.get("approvals_waiting") or {},
            "events_dropped": self.events_dropped,
        }
        return Publish(self.topic("status"), json.dumps(document), retain=True)

    def _event_line(self, record: EventRecord, essential: bool) -> list[Publish]:
        """One event line, if the rate allows (a token bucket: ``events_per_s``, 1 s of burst;
        the essential kinds always pass, and are counted against the rest)."""
        line = Publish(self.topic("events"), json.dumps(record, ensure_ascii=False, default=str))
        now = self._clock()
        rate = self.config.events_per_s
        self._tokens = min(max(1.0, rate), self._tokens + (now - self._refilled_at) * rate)
        self._refilled_at = now
        if essential:
            self._tokens = max(0.0, self._tokens - 1)
            return [line]
        if self._tokens < 1:
            self.events_dropped += 1
            self._unreported_drops += 1
            return []
        self._tokens -= 1
        out = []
        if self._unreported_drops:
            dropped = {"event": "events_dropped", "count": self._unreported_drops}
            out.append(Publish(self.topic("events"), json.dumps(dropped)))
            self._unreported_drops = 0
        out.append(line)
        return out

    # ------------------------------------------------------------------ what it takes

    def command(self, topic: str, payload: bytes) -> Command:
        """A command from ``topic``, checked as the control socket checks its requests."""
        if len(payload) > MAX_REQUEST_BYTES:
            raise MqttCommandError(
                f"{len(payload)} bytes; a command is at most {MAX_REQUEST_BYTES}"
            )
        name = topic.removeprefix(self.base + "/")
        try:
            text = payload.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise MqttCommandError("not UTF-8 text") from None
        try:
            if name == "command":
                request = parse_request(payload)
                if request.command == "events":
                    raise MqttCommandError("events are on the events topic, not a command")
                return Command(request=request)
            if name == "say":
                return Command(
                    request=parse_request(_json({"command": "say", "text": text, "start": True}))
                )
            if name == "start" and text.startswith("{"):  # an opening: first_message, ...
                opening = bounded_json.load_object(payload, MAX_REQUEST_BYTES)
                return Command(request=parse_request(_json({**opening, "command": "start"})))
            if name in ("start", "stop", "approve", "deny"):
                return Command(request=ControlRequest(name))
            if name == "announce":
                return Command(request=parse_request(_json({"command": name, "text": text})))
            if name == "wake_word/set":
                return Command(
                    request=parse_request(_json({"command": "wake_word", "model": text}))
                )
            if name == "feedback":
                return Command(
                    request=parse_request(_json({"command": "feedback", "score": text.lower()}))
                )
        except (ControlRequestError, bounded_json.JsonRefused) as exc:
            raise MqttCommandError(str(exc)) from None
        if name == "volume/set":
            try:
                percent = float(text)
            except ValueError:
                raise MqttCommandError(f"volume {text[:40]!r}: a number of percent") from None
            if not 0 <= percent <= MAX_VOLUME_PERCENT:
                raise MqttCommandError(f"volume {percent:g}: use 0 to {MAX_VOLUME_PERCENT:g}")
            return Command(volume_percent=percent)
        if name == "wake/set":
            return Command(wake_on=_on_off(text, "wake"))
        if name == "mic/set":
            return Command(request=ControlRequest("mute", on=_on_off(text, "mute")))
        raise MqttCommandError(f"no command on {topic}")

    def reply(self, answer: dict[str, Any]) -> Publish:
        return Publish(self.topic("reply"), json.dumps(answer, ensure_ascii=False, default=str))

    # ------------------------------------------------------------------ Home Assistant

    def discovery(self, wake_words: list[str] | None = None) -> list[Publish]:
        volume = {"min": 0, "max": MAX_VOLUME_PERCENT, "step": 5, "unit_of_measurement": "%"}
        entities: list[tuple[str, str, str, dict[str, Any]]] = [
            (
                "sensor",
                "state",
                "State",
                {"state_topic": self.topic("state"), "icon": "mdi:account-voice"},
            ),
            (
                "sensor",
                "conversation",
                "Conversation",
                {"state_topic": self.topic("conversation_id"), "icon": "mdi:message-text"},
            ),
            (
                "number",
                "volume",
                "Volume",
                {
                    "command_topic": self.topic("volume/set"),
                    "state_topic": self.topic("volume"),
                    **volume,
                },
            ),
            (
                "switch",
                "wake_word",
                "Wake word",
                {
                    "command_topic": self.topic("wake/set"),
                    "state_topic": self.topic("wake"),
                    "payload_on": "ON",
                    "payload_off": "OFF",
                },
            ),
            (
                "button",
                "start",
                "Start conversation",
                {"command_topic": self.topic("start"), "payload_press": "PRESS"},
            ),
            (
                "button",
                "stop",
                "Stop conversation",
                {"command_topic": self.topic("stop"), "payload_press": "PRESS"},
            ),
            ("text", "say", "Say", {"command_topic": self.topic("say"), "max": 255}),
            ("notify", "announce", "Announce", {"command_topic": self.topic("announce")}),
            (
                "switch",
                "mute",
                "Microphone mute",
                {
                    "command_topic": self.topic("mic/set"),
                    "state_topic": self.topic("mic"),
                    "payload_on": "ON",
                    "payload_off": "OFF",
                    "icon": "mdi:microphone-off",
                },
            ),
            (
                "event",
                "button",
                "Button",
                {
                    "state_topic": self.topic("event/button"),
                    "event_types": sorted(set(BUTTON_GESTURES.values())),
                    "device_class": "button",
                },
            ),
            (
                "event",
                "conversation",
                "Conversation ended",
                {"state_topic": self.topic("event/conversation"), "event_types": list(OUTCOMES)},
            ),
            (
                "sensor",
                "turn_latency",
                "Answer time",
                {
                    "state_topic": self.topic("status"),
                    "value_template": "{{ (value_json.turn_latency or {}).turn_ms_median }}",
                    "unit_of_measurement": "ms",
                },
            ),
            (
                "sensor",
                "last_error",
                "Last error",
                {
                    "state_topic": self.topic("status"),
                    "value_template": "{{ (value_json.last_outcome or {}).failure or 'none' }}",
                },
            ),
            (
                "button",
                "approve",
                "Approve tool",
                {"command_topic": self.topic("approve"), "payload_press": "PRESS"},
            ),
            (
                "button",
                "deny",
                "Decline tool",
                {"command_topic": self.topic("deny"), "payload_press": "PRESS"},
            ),
        ]
        if wake_words:
            select = {
                "command_topic": self.topic("wake_word/set"),
                "state_topic": self.topic("wake_word"),
                "options": ["all", *wake_words],
            }
            entities.append(("select", "wake_word_choice", "Active wake word", select))
        if self.config.transcripts:
            entities += [
                (
                    "sensor",
                    "last_user",
                    "Last user transcript",
                    {"state_topic": self.topic("transcript/user")},
                ),
                (
                    "sensor",
                    "last_agent",
                    "Last agent reply",
                    {"state_topic": self.topic("transcript/agent")},
                ),
            ]
        device = {
            "identifiers": [f"agentpi_{self.node}"],
            "name": f"agentpi {self.device_id}",
            "manufacturer": "agentpi",
            "model": "voice terminal",
            "sw_version": self.version,
        }
        out = []
        for component, object_id, name, extra in entities:
            config = {
                "name": name,
                "unique_id": f"agentpi_{self.node}_{object_id}",
                "availability_topic": self.topic("availability"),
                "device": device,
                **extra,
            }
            topic = f"{self.config.discovery_prefix}/{component}/agentpi_{self.node}/{object_id}"
            out.append(Publish(f"{topic}/config", json.dumps(config), retain=True))
        return out


def _on_off(text: str, what: str) -> bool:
    """A switch's payload: ON or OFF (any case)."""
    if text.upper() not in ("ON", "OFF"):
        raise MqttCommandError(f"{what} {text[:40]!r}: ON or OFF")
    return text.upper() == "ON"


def _number(value: Any) -> str:
    return f"{float(value):g}"


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()
