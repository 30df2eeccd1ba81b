"""Does the agent, as its settings stand, fit this device's configuration? And what change would
make it fit?

Plain functions over the agent's document (``GET /v1/convai/agents/{id}``) and the config: no
I/O. ``findings`` is what ``agentpi doctor`` reports, each with its fix; ``setup_change`` is the
part of the document ``agentpi agent-setup`` sends as a PATCH: the events the device uses, the
overrides the config sets, the device's client tools. Nothing else of the agent is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentpi.agent.definition import (
    JsonDict,
    at,
    client_tool_declaration,
    listed,
    listed_events,
    put,
)
from agentpi.audio.formats import WIRE_FORMATS
from agentpi.config.document import Config, for_wake_word
from agentpi.protocol.overrides import ALLOWED_ROOT, CONFIG_PATHS, OVERRIDES
from agentpi.tools.device import DEVICE_TOOLS
from agentpi.tools.home_assistant import HOME_TOOLS

REQUIRED_EVENTS = (
    "conversation_initiation_metadata",
    "ping",
    "audio",
    "interruption",
    "agent_response",
    "user_transcript",
)
"""Without these the device cannot hold a conversation at all."""

ADVISED_EVENTS = {
    "tentative_user_transcript": "the user's words while they speak",
    "agent_response_correction": "what the user really heard of an interrupted reply",
    "agent_tool_response": "the end_call tool: the device hangs up after the goodbye",
    "agent_response_complete": "the exact end of the agent's turn (else 1 s without audio)",
    "agent_tool_request": "the lights show a tool at work (working) until its response",
    "mcp_tool_call": "an MCP tool that asks for approval is answered on the device (else it "
    "waits out its approval timeout and is declined)",
}
VAD_SCORE_USE = "the LEDs follow the agent's own VAD (else the device's)"

TOOLS = "conversation_config.agent.prompt.tools"

DEVICE_EVENTS = (*REQUIRED_EVENTS, *ADVISED_EVENTS, "client_tool_call", "vad_score")
"""Everything the device acts on: what it asks for when it asks per conversation."""


@dataclass(frozen=True)
class Finding:
    name: str
    ok: bool | None
    """None: advice, the device works either way."""
    detail: str
    fix: str = ""


def tool_declarations(config: Config) -> dict[str, JsonDict]:
    """How the device's client tools are declared to the agent: name -> declaration."""
    declared: dict[str, JsonDict] = {}
    for name in config.tools.builtin:
        description, properties, required = DEVICE_TOOLS[name]
        declared[name] = client_tool_declaration(name, description, properties, required)
    if config.home_assistant.url:
        for name, (description, properties, required) in HOME_TOOLS.items():
            declared[name] = client_tool_declaration(name, description, properties, required)
    for name, tool in config.tools.custom.items():
        properties = {
            param: {"type": spec.type, "description": spec.description or param}
            for param, spec in tool.parameters.items()
        }
        required = [param for param, spec in tool.parameters.items() if spec.required]
        description = tool.description or f"The device's {name} tool."
        declared[name] = client_tool_declaration(name, description, properties, required)
    return declared


def events_used(config: Config) -> dict[str, str]:
    """Events beyond the required ones this configuration makes use of, and what for."""
    used = dict(ADVISED_EVENTS)
    if tool_declarations(config):
        used["client_tool_call"] = "the device's client tools are called"
    patterns = config.leds.pattern_table()
    if config.leds.type != "none" and any(p.effect == "vad" for p in patterns.values()):
        used["vad_score"] = VAD_SCORE_USE
    return used


def overrides_used(config: Config) -> dict[str, str]:
    """Override path -> the config key that sets it, over [conversation.overrides] and every
    [wake.agents] entry that talks to the same agent."""
    keys = {path: key for key, path in CONFIG_PATHS.items()}
    sources = [("conversation.overrides", config)]
    for model, entry in config.wake.agents.items():
        if not entry.agent_id or entry.agent_id == config.agent.agent_id:
            sources.append((f"wake.agents.{model}", for_wake_word(config, model)))
    used: dict[str, str] = {}
    for section, chosen in sources:  # what each conversation sends, as initiation_data does
        for path in chosen.conversation.overrides.sent():
            used.setdefault(path, f"{section}.{keys[path]}")
    return used


def findings(config: Config, document: JsonDict) -> list[Finding]:
    """What does not fit, each with its fix; an empty list when everything does."""
    found: list[Finding] = []
    sent = listed_events(document)
    setup = "run `agentpi agent-setup --apply` (or the agent's Advanced > Client events)"
    missing = [event for event in REQUIRED_EVENTS if event not in sent]
    if missing:
        found.append(
            Finding("agent events", False, f"the agent does not send {', '.join(missing)}", setup)
        )
    for event, use in events_used(config).items():
        if event in sent:
            continue
        needed = False if event == "client_tool_call" else None
        found.append(Finding(f"event {event}", needed, f"not sent: {use}", setup))
    allowed = at(document, ALLOWED_ROOT)
    for path, key in overrides_used(config).items():
        if at(allowed, path) is not True:
            where = OVERRIDES[path][1]
            found.append(
                Finding(
                    f"override {path.rsplit('.', 1)[-1]}",
                    False,
                    f"{key} is set, but the agent does not allow it: every conversation would be "
                    "refused at its start",
                    f"turn on {where} ({ALLOWED_ROOT}.{path}), run `agentpi agent-setup --apply`, "
                    f"or remove {key}",
                ),
            )
    announcing = config.control.enabled or config.mqtt.enabled
    path = CONFIG_PATHS["first_message"]
    if announcing and path not in overrides_used(config) and at(allowed, path) is not True:
        found.append(
            Finding(
                "override first_message",
                None,
                "announcements and openings (agentpi announce / start --first-message, MQTT, "
                "Home Assistant's notify) need it, and the agent does not allow it: each would "
                "be refused",
                f"turn on {OVERRIDES[path][1]} ({ALLOWED_ROOT}.{path})",
            )
        )
    found += _tool_findings(config, document)
    found += _format_findings(document)
    found += _timer_findings(config, document)
    return found


def setup_change(config: Config, document: JsonDict) -> JsonDict:
    """The PATCH that makes the agent fit: only what must change, nothing else."""
    change: JsonDict = {}
    sent = listed_events(document)
    wanted = [*REQUIRED_EVENTS, *events_used(config)]
    missing = [event for event in wanted if event not in sent]
    if missing:
        put(change, "conversation_config.conversation.client_events", [*sent, *missing])
    allowed = at(document, ALLOWED_ROOT)
    for path in overrides_used(config):
        if at(allowed, path) is not True:
            put(change, f"{ALLOWED_ROOT}.{path}", True)
    tools = listed(document, TOOLS)
    declared = tool_declarations(config)
    kept = [t for t in tools if not (_is_client(t) and str(t.get("name")) in declared)]
    current = {str(t.get("name")): t for t in tools if _is_client(t)}
    if any(_tool_differs(current.get(name), tool) for name, tool in declared.items()):
        put(change, "conversation_config.agent.prompt.tools", [*kept, *declared.values()])
    return change


def describe_change(config: Config, change: JsonDict) -> list[str]:
    """The change, one line per setting, as a person reads it (of the tools, the device's own:
    the agent's others are kept as they are)."""
    lines = []
    events = at(change, "conversation_config.conversation.client_events")
    if events is not None:
        lines.append(f"client events: {', '.join(events)}")
    for path, (_field, name) in OVERRIDES.items():
        if at(change, f"{ALLOWED_ROOT}.{path}") is True:
            lines.append(f"allow the override {path} ({name})")
    if at(change, TOOLS) is not None:
        for name, tool in tool_declarations(config).items():
            params = ", ".join(_schema(tool)[0]) or "no parameters"
            lines.append(f"client tool {name} ({params})")
    return lines


def _is_client(tool: Any) -> bool:
    return isinstance(tool, dict) and tool.get("type") == "client"


def _schema(tool: JsonDict | None) -> tuple[dict[str, str], frozenset[str]]:
    properties = at(tool, "parameters.properties")
    if not isinstance(properties, dict):
        properties = {}
    types = {str(name): str(at(spec, "type")) for name, spec in properties.items()}
    return types, frozenset(str(name) for name in listed(tool, "parameters.required"))


def _tool_differs(current: JsonDict | None, wanted: JsonDict) -> bool:
    return current is None or _schema(current) != _schema(wanted)


def _tool_findings(config: Config, document: JsonDict) -> list[Finding]:
    found = []
    agent_tools = {str(t.get("name")): t for t in listed(document, TOOLS) if _is_client(t)}
    declared = tool_declarations(config)
    for name, tool in declared.items():
        if name not in agent_tools:
            found.append(
                Finding(
                    f"tool {name}",
                    False,
                    "the device has it, the agent does not declare it: it is never called",
                    "run `agentpi agent-setup --apply` (it declares it with its parameters)",
                )
            )
        elif _tool_differs(agent_tools[name], tool):
            (theirs, their_required), (ours, our_required) = (
                _schema(agent_tools[name]),
                _schema(tool),
            )
            found.append(
                Finding(
                    f"tool {name}",
                    False,
                    f"parameters differ: the agent has {_params(theirs, their_required)}, "
                    f"the device takes {_params(ours, our_required)}",
                    "run `agentpi agent-setup --apply` to declare the device's",
                )
            )
    for name in agent_tools:
        if name not in declared:
            found.append(
                Finding(
                    f"tool {name}",
                    False,
                    "the agent declares it as a client tool, the device has no such tool: "
                    "every call gets an error",
                    f"remove it from the agent's tools, or add [tools.custom.{name}]",
                )
            )
    return found


def _params(types: dict[str, str], required: frozenset[str]) -> str:
    if not types:
        return "no parameters"
    return ", ".join(
        f"{name}: {kind}{'' if name in required else ' (optional)'}"
        for name, kind in sorted(types.items())
    )


def _format_findings(document: JsonDict) -> list[Finding]:
    found = []
    for path, side in (
        ("conversation_config.asr.user_input_audio_format", "input (ASR)"),
        ("conversation_config.tts.agent_output_audio_format", "output (TTS)"),
    ):
        value = at(document, path) or "pcm_16000"
        if value not in WIRE_FORMATS:
            found.append(
                Finding(
                    f"audio {side}",
                    False,
                    f"{value} is not a format the device speaks ({', '.join(WIRE_FORMATS)})",
                    f"set {path} to pcm_16000 in the agent's settings (Voice / Advanced)",
                )
            )
    return found


def _timer_findings(config: Config, document: JsonDict) -> list[Finding]:
    found = []
    close_s = config.conversation.silence_close_s
    timeout = at(document, "conversation_config.turn.turn_timeout")
    if isinstance(timeout, int | float) and 0 < timeout <= close_s:
        found.append(
            Finding(
                "turn timeout",
                False,
                f"the agent speaks again after {timeout:g} s of silence, before the device "
                f"ends a silent conversation ({close_s:g} s): it never ends by silence",
                f"raise the agent's turn_timeout above {close_s:g} s, or lower "
                "[conversation] silence_close_s",
            )
        )
    hang_up = at(document, "conversation_config.turn.silence_end_call_timeout")
    if isinstance(hang_up, int | float) and 0 < hang_up < close_s:
        found.append(
            Finding(
                "silence hang-up",
                False,
                f"the agent hangs up after {hang_up:g} s of silence, before the device's "
                f"silence_close_s ({close_s:g} s): conversations end as the agent's close",
                f"set the agent's silence_end_call_timeout to -1 or above {close_s:g} s",
            )
        )
    longest = at(document, "conversation_config.conversation.max_duration_seconds")
    device_max = config.conversation.max_duration_s
    if isinstance(longest, int | float) and 0 < longest < device_max:
        found.append(
            Finding(
                "maximum duration",
                None,
                f"the agent ends a conversation after {longest:g} s (the device allows "
                f"{device_max:g} s)",
                "raise max_duration_seconds in the agent's settings if conversations run long",
            )
        )
    return found
