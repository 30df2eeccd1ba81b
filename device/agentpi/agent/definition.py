"""The agent the simulator plays, as the platform describes an agent.

The definition is the document ``GET /v1/convai/agents/{agent_id}`` answers (the official SDK's
``GetAgentResponseModel``), its defaults those of an agent made with the platform's defaults:
only the default client events (no ``vad_score``, no ``client_tool_call``, no
``agent_response_complete``), no override allowed, no client tool declared, PCM at 16 kHz both
ways, a 7 s turn timeout, no soft timeout, no silence hang-up, 600 s at most. A user can save
their real agent's document (``curl .../v1/convai/agents/ID``) and give it to the simulator.

``AgentDefinition`` is what the simulator reads from a document; ``merged`` applies a change the
way ``PATCH /v1/convai/agents/{agent_id}`` does (tables merged key by key, lists replaced).
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentpi.audio.formats import WIRE_FORMATS
from agentpi.protocol.messages import client_event_types
from agentpi.protocol.overrides import ALLOWED_ROOT, OVERRIDES
from agentpi.settings.typed import SettingsError

JsonDict = dict[str, Any]

DEFAULT_CLIENT_EVENTS = (
    "audio",
    "interruption",
    "agent_response",
    "user_transcript",
    "tentative_user_transcript",
    "conversation_initiation_metadata",
    "ping",
)
"""What a conversation receives when the agent names no ``client_events`` (the 2026 AsyncAPI
definition's ``ConversationConfig.client_events``)."""

CLIENT_EVENTS = (
    *DEFAULT_CLIENT_EVENTS,
    *(kind for kind in client_event_types() if kind not in DEFAULT_CLIENT_EVENTS),
)
"""Every event an agent can be set to send: the AsyncAPI's ``ClientEvent`` list, and
``agent_response_complete``, which only the official SDK's ``ClientEvent`` names."""

SIMULATOR_GREETING = "Hello! This is the agentpi simulator. How can I help?"


def default_document(agent_id: str = "agent_simulated") -> JsonDict:
    """An agent as the platform makes it with every setting left at its default."""
    now = int(time.time())
    return {
        "agent_id": agent_id,
        "name": "agentpi simulator",
        "conversation_config": {
            "asr": {"user_input_audio_format": "pcm_16000"},
            "turn": {
                "turn_timeout": 7.0,
                "silence_end_call_timeout": -1.0,
                "soft_timeout_config": {"timeout_seconds": -1.0, "message": "Hhmmmm...yeah."},
            },
            "tts": {"agent_output_audio_format": "pcm_16000"},
            "conversation": {
                "max_duration_seconds": 600,
                "client_events": list(DEFAULT_CLIENT_EVENTS),
            },
            "agent": {
                "first_message": SIMULATOR_GREETING,
                "language": "en",
                "prompt": {"prompt": "You are a helpful voice assistant.", "tools": []},
            },
        },
        "metadata": {"created_at_unix_secs": now, "updated_at_unix_secs": now},
        "platform_settings": {
            "overrides": {
                "conversation_config_override": {
                    "agent": {
                        "first_message": False,
                        "language": False,
                        "prompt": {"prompt": False},
                    },
                    "tts": {"voice_id": False},
                    "conversation": {"text_only": False},
                }
            }
        },
    }


def merged(document: JsonDict, change: JsonDict) -> JsonDict:
    """``document`` with ``change`` applied as a PATCH is: tables merged, anything else replaced."""
    result = copy.deepcopy(document)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = merged(result[key], value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def at(document: Any, path: str) -> Any:
    """The value at a dotted path, or None where any part is missing."""
    node = document
    for part in path.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def listed(document: Any, path: str) -> list[Any]:
    """The list at a dotted path, or [] where there is none (or something else)."""
    value = at(document, path)
    return value if isinstance(value, list) else []


def put(document: JsonDict, path: str, value: Any) -> None:
    """Set the value at a dotted path, making the tables on the way."""
    node = document
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def client_tool_declaration(
    name: str, description: str, properties: JsonDict, required: list[str], timeout_s: int = 20
) -> JsonDict:
    """A client tool as the agent's ``prompt.tools`` lists it."""
    return {
        "type": "client",
        "name": name,
        "description": description,
        "expects_response": True,
        "response_timeout_secs": timeout_s,
        "parameters": {"type": "object", "properties": properties, "required": required},
    }


def everything_enabled(document: JsonDict, tools: dict[str, list[str]] | None = None) -> JsonDict:
    """``document`` with every client event sent, every override allowed and ``tools`` (name ->
    its string parameters) declared: the simulator as it behaved before it modelled defaults."""
    declared = [
        client_tool_declaration(
            name,
            f"the simulator's {name}",
            {p: {"type": "string", "description": p} for p in params},
            [],
        )
        for name, params in sorted((tools or {}).items())
    ]
    allowed = {
        "agent": {"first_message": True, "language": True, "prompt": {"prompt": True}},
        "tts": {"voice_id": True, "speed": True, "stability": True, "similarity_boost": True},
        "conversation": {"text_only": True},
    }
    change: JsonDict = {
        "conversation_config": {
            "conversation": {"client_events": list(CLIENT_EVENTS)},
            "agent": {"prompt": {"tools": declared}},
        },
        "platform_settings": {"overrides": {"conversation_config_override": allowed}},
    }
    return merged(document, change)


@dataclass(frozen=True)
class ClientToolSpec:
    name: str
    timeout_s: float


@dataclass(frozen=True)
class AgentDefinition:
    """What the simulator reads from an agent document."""

    client_events: frozenset[str]
    allowed_overrides: frozenset[str]
    client_tools: dict[str, ClientToolSpec]
    input_format: str
    output_format: str
    first_message: str
    turn_timeout_s: float
    """Silence after the agent's turn before it speaks again (-1: never)."""
    soft_timeout_s: float
    """A slow reply is preceded by ``soft_timeout_message`` after this long (-1: off)."""
    soft_timeout_message: str
    silence_end_call_s: float
    """The agent hangs up after the user has been silent this long (-1: never)."""
    max_duration_s: float

    @classmethod
    def from_document(cls, document: JsonDict) -> AgentDefinition:
        config = document.get("conversation_config")
        if not isinstance(config, dict):
            raise SettingsError("agent document: no conversation_config table")
        events = client_events(document)
        allowed = at(document, ALLOWED_ROOT)
        tools: dict[str, ClientToolSpec] = {}
        for tool in listed(config, "agent.prompt.tools"):
            if isinstance(tool, dict) and tool.get("type") == "client":
                timeout = _number(tool.get("response_timeout_secs"), 20.0)
                tools[str(tool.get("name"))] = ClientToolSpec(str(tool.get("name")), timeout)
        return cls(
            client_events=frozenset(events),
            allowed_overrides=frozenset(p for p in OVERRIDES if at(allowed, p) is True),
            client_tools=tools,
            input_format=_format(config, "asr.user_input_audio_format"),
            output_format=_format(config, "tts.agent_output_audio_format"),
            first_message=str(at(config, "agent.first_message") or ""),
            turn_timeout_s=_number(at(config, "turn.turn_timeout"), 7.0),
            soft_timeout_s=_number(at(config, "turn.soft_timeout_config.timeout_seconds"), -1.0),
            soft_timeout_message=str(at(config, "turn.soft_timeout_config.message") or ""),
            silence_end_call_s=_number(at(config, "turn.silence_end_call_timeout"), -1.0),
            max_duration_s=_number(at(config, "conversation.max_duration_seconds"), 600.0),
        )


def listed_events(document: JsonDict) -> list[str]:
    """The events the agent's settings list (the platform's default list where they list
    none), as they are: a real agent may name an event newer than ``CLIENT_EVENTS``."""
    events = at(document, "conversation_config.conversation.client_events")
    return [str(e) for e in events] if isinstance(events, list) else list(DEFAULT_CLIENT_EVENTS)


def client_events(document: JsonDict) -> list[str]:
    """The events the agent sends, each one the simulator knows."""
    listed = at(document, "conversation_config.conversation.client_events")
    known = isinstance(listed, list) and all(event in CLIENT_EVENTS for event in listed)
    if listed is not None and not known:
        raise SettingsError(
            "conversation_config.conversation.client_events: a list of " + ", ".join(CLIENT_EVENTS)
        )
    return listed_events(document)


def refused_override(
    override: JsonDict, allowed: frozenset[str], client_events_allowed: bool
) -> str | None:
    """The field of ``conversation_config_override`` the agent does not allow, or None."""
    for path, (field_name, _setting) in OVERRIDES.items():
        if at(override, path) is not None and path not in allowed:
            return field_name
    if at(override, "conversation.client_events") is not None and not client_events_allowed:
        return "client_events"
    return None


def load_document(path: str | Path) -> JsonDict:
    """An agent document from a JSON file (as the platform's API answers it)."""
    try:
        document = json.loads(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise SettingsError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: an agent document is a JSON object")
    AgentDefinition.from_document(document)  # one line naming the key, now, not mid-run
    return document


def _format(config: JsonDict, path: str) -> str:
    value = at(config, path) or "pcm_16000"
    if value not in WIRE_FORMATS:
        raise SettingsError(
            f"conversation_config.{path} = {value!r}: use one of {', '.join(WIRE_FORMATS)}"
        )
    return str(value)


def _number(value: Any, default: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return default
    return float(value)
