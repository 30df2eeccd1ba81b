"""The device config: TOML -> typed settings, validated once at start.

    [agent]
    agent_id = "agent_..."                  # required
    url = "wss://api.elevenlabs.io"         # or ws://127.0.0.1:PORT for the simulator

    [trigger]
    mode = ["wake", "button"]               # any of "wake", "button", "immediate", "control"
    button_mode = "toggle"                  # or "hold": push-to-talk

    [audio]
    input = "USB PnP"                       # a sound card (index, name, part of it) or file:PATH
    output = "default"
    echo = "aec"                            # or "half_duplex" / "off"

    [wake]
    models = ["hey_jarvis"]                 # names or .tflite/.onnx paths
    threshold = 0.5

    [hardware]
    profile = "respeaker-2mic"              # a board profile from hardware/profiles/

    [leds]                                  # any key here overrides the profile's
    type = "board"                          # none | led | pwmled | rgbled | board | apa102
    pins = [17, 27, 22]
    colors = ["green", "blue", "red"]

    [leds.patterns.listening]
    effect = "vad"                          # off | on | blink | pulse | vad | envelope
    color = "blue"

The API key is never in this file: it comes from ``ELEVENLABS_API_KEY`` or the systemd
credential ``elevenlabs_api_key``.
"""

from __future__ import annotations

import dataclasses
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from agentpi.audio.backend import DEFAULT_CHUNK_MS
from agentpi.config.profiles import with_profile
from agentpi.config.ranges import NUMBER_RANGES
from agentpi.config.urls import check_agent_url, check_endpoint_url, check_home_assistant
from agentpi.control.settings import ControlConfig
from agentpi.events import CONTEXT_SENT_EVENT
from agentpi.leds.settings import LedSettings
from agentpi.mqtt.settings import MqttConfig, check_mqtt
from agentpi.protocol.languages import AGENT_LANGUAGES
from agentpi.protocol.messages import client_event_types
from agentpi.protocol.overrides import CONFIG_PATHS
from agentpi.protocol.timers import ConversationLimits
from agentpi.settings.credentials import API_KEY_CREDENTIAL
from agentpi.settings.file_trust import check_trusted_file
from agentpi.settings.typed import SettingsError, build_dataclass, check_ranges, load_toml
from agentpi.tools.settings import HomeAssistantConfig, ToolsConfig, validate_tools
from agentpi.wake.settings import WakeAgentConfig, WakeConfig, check_wake_agents

ConfigError = SettingsError


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str = ""
    url: str = "wss://api.elevenlabs.io"
    connect_timeout_s: float = 10.0
    keepalive_s: float = 1.0
    """A WebSocket ping this often; a link that leaves one unanswered for 1.5 times as long is
    dead (a cut cable or Wi-Fi that vanished sends nothing, not even a close). 0: off."""
    compression: Literal["none", "deflate"] = "none"
    """permessage-deflate on the Agent WebSocket. Off by default: the audio is base64, which
    deflate shrinks by only a quarter, for CPU on both ends (see `make bench BENCH=deflate`)."""
    signed_url_endpoint: str = ""
    """The owner's backend that hands out signed URLs (https://...), so no API key needs to be on
    the device; its bearer token, if it wants one, comes from AGENTPI_ENDPOINT_TOKEN or the
    systemd credential agentpi_endpoint_token."""


TriggerMode = Literal["wake", "button", "immediate", "control"]


@dataclass(frozen=True)
class TriggerConfig:
    mode: TriggerMode | tuple[TriggerMode, ...] = "wake"
    """One trigger or several together: "wake", ["wake", "button"], "immediate"; "control"
    alone: only the control socket starts conversations (`agentpi start`, `agentpi say`)."""
    restart_pause_s: float = 2.0
    """With "immediate": the pause before the next conversation starts."""
    button_mode: Literal["toggle", "hold"] = "toggle"
    """toggle: a press starts a conversation and a press ends it. hold: push-to-talk, the mic
    streams only while the button is held."""

    @property
    def modes(self) -> tuple[TriggerMode, ...]:
        return (self.mode,) if isinstance(self.mode, str) else self.mode


@dataclass(frozen=True)
class AudioConfig:
    input: str = "default"
    """A sound card by index, exact name or part of its name ("USB PnP"), or "default";
    "file:PATH" plays a WAV in as the microphone (tests, the demo)."""
    output: str = "default"
    chunk_ms: int = DEFAULT_CHUNK_MS
    """Microphone chunk: one user_audio_chunk per chunk (see the README for why 40)."""
    vad_threshold_dbfs: float = -40.0
    preroll_s: float = 1.5
    """Audio kept from before now: what is said right after the wake word, while the socket
    opens, is sent in order and whole."""
    send_wake_word: bool = False
    """Send the pre-roll (with the wake word in it) ahead of what follows."""
    echo: Literal["aec", "half_duplex", "off"] = "aec"
    """aec: cancel the speaker's sound in the microphone; half_duplex: send silence while the
    agent speaks (no voice barge-in); off: a headset or a far-away speaker."""
    echo_tail_ms: int = 200
    """half_duplex: keep muting this long after the speaker goes quiet (room reverb)."""
    jitter_ms: int = 60
    """Speaker jitter buffer: agent audio starts once this much is queued."""
    volume: float = 1.0
    """Software gain on the agent's voice (clipped, never wrapped)."""
    cues: bool = True
    """Earcons on the wake word, the end of a conversation and errors."""
    cue_volume: float = 0.3
    max_backlog_s: float = 120.0
    """Agent audio the speaker may hold unplayed; a server that sends more is cut off there."""


@dataclass(frozen=True)
class OverridesConfig:
    """Per-device changes to the agent, sent at the start of each conversation; the agent's
    Security settings must allow each one, or the server refuses the conversation (1008)."""

    first_message: str | None = None
    """What the agent says first ("" = it waits for the user)."""
    language: str = ""
    """A language code the agent accepts: en, de, fr, pt-br, ..."""
    prompt: str = ""
    """The agent's system prompt, in full."""
    llm: str = ""
    """The language model the agent uses (gemini-2.0-flash, gpt-4o-mini, ...)."""
    voice_id: str = ""
    speed: float | None = None
    """Speech speed, 0.7 to 1.2 (1 = as recorded)."""
    stability: float | None = None
    """Voice stability 0..1: lower is livelier."""
    similarity_boost: float | None = None
    """How close to the original voice, 0..1."""
    keywords: tuple[str, ...] = ()
    """Words the speech recogniser should expect (room and device names); "auto" stands for the
    wake phrases and [context] location."""
    text_only: bool | None = None
    """true: no audio either way (a typed kiosk)."""

    def sent(self) -> dict[str, str | float | bool | list[str]]:
        """These overrides by their path in ``conversation_config_override``: first_message
        even when empty (the agent then waits for the user), the others when set."""
        values = dataclasses.asdict(self)
        return {
            CONFIG_PATHS[key]: list(value) if isinstance(value, tuple) else value
            for key, value in values.items()
            if value is not None and (value not in ("", ()) or key == "first_message")
        }


DynamicValue = str | int | float | bool


@dataclass(frozen=True)
class ConversationConfig(ConversationLimits):
    user_id: str = ""
    """Who the agent's history files this device's conversations under (default: a stable id
    derived from this machine, the same across reboots and reinstalls)."""
    dynamic_variables: dict[str, DynamicValue] = field(default_factory=dict)
    """Values for the agent's {{variables}}: strings, numbers or true/false."""
    overrides: OverridesConfig = field(default_factory=OverridesConfig)
    request_client_events: bool = False
    """Also ask for the events the device uses in each conversation's initiation data (an
    override of client_events). Off: few agents allow it, and one that does not refuses the
    conversation; set the events in the agent instead (`agentpi agent-setup`)."""
    client_events: tuple[str, ...] = ()
    """Or name the events to ask for yourself (the same override; the agent must allow it)."""
    branch_id: str = ""
    """The agent branch to talk to (default: its main one)."""
    environment: str = ""
    """The environment the agent resolves its environment variables in (default: production)."""
    starting_workflow_node_id: str = ""
    """Start the agent's workflow at this node (the agent must allow it: Security > Overrides >
    Starting workflow node)."""


DEFAULT_START_CONTEXT = "Local time at the device: {local_time}. Location: {location}."
START_CONTEXT_FIELDS = ("local_time", "location", "device_id", "hostname")


@dataclass(frozen=True)
class ContextConfig:
    """Background the agent is given (contextual_update): it informs, it does not make the agent
    speak."""

    location: str = "unknown"
    at_start: str = DEFAULT_START_CONTEXT
    """Sent as each conversation starts; {local_time} {location} {device_id} {hostname}. ""=none."""
    on_event: dict[str, str] = field(default_factory=dict)
    """Event kind -> text sent when that event happens during a conversation, with the event's
    fields: button = "The visitor pressed the button." (see `--events` for the kinds)."""


@dataclass(frozen=True)
class ButtonConfig:
    pin: int | None = None
    """GPIO (BCM) of the button, wired to ground (pull-up on)."""
    pull_up: bool = True
    bounce_s: float = 0.05
    long_press_s: float = 1.0
    """A press held this long is a long press: no to a tool that asks for approval (a short
    press is yes)."""
    double_press: Literal["", "like", "dislike"] = ""
    """Two presses in quick succession during a conversation rate the agent's last answer. Set,
    a single press (toggle mode) ends the conversation only once the second did not come."""
    double_press_s: float = 0.4


@dataclass(frozen=True)
class HardwareConfig:
    profile: str = ""
    """A profile name from hardware/profiles/ (or a path to a .toml); its keys are defaults."""


@dataclass(frozen=True)
class Config:
    agent: AgentConfig = field(default_factory=AgentConfig)
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    wake: WakeConfig = field(default_factory=WakeConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    conversation: ConversationConfig = field(default_factory=ConversationConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    leds: LedSettings = field(default_factory=LedSettings)
    button: ButtonConfig = field(default_factory=ButtonConfig)
    context: ContextConfig = field(default_factory=ContextConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    home_assistant: HomeAssistantConfig = field(default_factory=HomeAssistantConfig)


def load_config(path: str | Path) -> Config:
    check_trusted_file(Path(path), "config")
    data = load_toml(path)
    if "agent" not in data:
        raise ConfigError('missing [agent] section: add [agent] with agent_id = "<your agent id>"')
    agent_table = data["agent"]
    if isinstance(agent_table, dict) and {"api_key", "xi_api_key"} & set(agent_table):
        # a config file is readable by more than the service; the key stays in a credential
        raise ConfigError(
            "the API key does not belong in the config file: remove it and set"
            f" ELEVENLABS_API_KEY or the systemd credential {API_KEY_CREDENTIAL}"
        )
    config = build_dataclass(Config, with_profile(data), "")
    validate(config)
    return config


def validate(config: Config) -> None:
    agent = config.agent
    if not agent.agent_id.strip():
        raise ConfigError(
            "missing agent.agent_id: set it to your agent's id (ElevenLabs dashboard, Agents)"
        )
    if any(ch.isspace() for ch in agent.agent_id):
        raise ConfigError(f"agent.agent_id {agent.agent_id!r} contains white space")
    check_agent_url(agent.url)
    if agent.signed_url_endpoint:
        check_endpoint_url(agent.signed_url_endpoint)
    if not (agent.keepalive_s == 0 or 0.2 <= agent.keepalive_s <= 60):
        raise ConfigError(
            f"agent.keepalive_s = {agent.keepalive_s}: use 0.2 to 60 (seconds), or 0 for off"
        )
    check_ranges(config, NUMBER_RANGES)
    audio = config.audio
    if audio.echo == "aec" and audio.chunk_ms % 10:
        raise ConfigError(
            f"audio.chunk_ms = {audio.chunk_ms}: the echo canceller works in 10 ms blocks; "
            "use a multiple of 10"
        )
    for name in ("input", "output"):
        spec = getattr(config.audio, name)
        if spec.startswith("file:") and not spec.removeprefix("file:"):
            raise ConfigError(f"audio.{name} = {spec!r}: give a path after file:")
    modes = config.trigger.modes
    if not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"trigger.mode = {list(modes)}: name each trigger once")
    if "button" in modes and config.button.pin is None:
        raise ConfigError(
            'trigger.mode includes "button" but no button pin: set [button] pin = N '
            "or a [hardware] profile"
        )
    if "wake" in modes and not config.wake.models:
        raise ConfigError('wake.models is empty: name at least one model, e.g. ["hey_jarvis"]')
    check_wake_agents(config.wake)
    check_mqtt(config.mqtt)
    check_home_assistant(config.home_assistant)
    override_ranges = {
        key.rsplit(".", 1)[1]: bounds
        for key, bounds in NUMBER_RANGES.items()
        if key.startswith("conversation.overrides.")
    }
    for label, entry in config.wake.agents.items():
        check_ranges(entry, override_ranges, f"wake.agents.{label}")
    for label in config.wake.agents:
        try:
            validate(for_wake_word(config, label))
        except ConfigError as exc:
            raise ConfigError(f"wake.agents.{label}: {exc}") from None
    _validate_conversation(config.conversation)
    _validate_context(config.context)
    validate_tools(config.tools)


CLIENT_EVENTS = client_event_types()
"""What ``client_events`` may name: every server event a conversation may be asked to send."""

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def with_first_message(config: Config, first_message: str) -> Config:
    """The configuration of a conversation that opens with ``first_message`` (an announcement,
    Home Assistant's start_conversation): a first_message override, which the agent must allow."""
    overrides = dataclasses.replace(config.conversation.overrides, first_message=first_message)
    conversation = dataclasses.replace(config.conversation, overrides=overrides)
    return dataclasses.replace(config, conversation=conversation)


def for_wake_word(config: Config, label: str) -> Config:
    """The configuration of a conversation the wake word ``label`` opens: its [wake.agents]
    entry over [agent] and [conversation.overrides]."""
    chosen = config.wake.agents.get(label)
    if chosen is None:
        return config
    agent = dataclasses.replace(
        config.agent,
        agent_id=chosen.agent_id or config.agent.agent_id,
        signed_url_endpoint=chosen.signed_url_endpoint or config.agent.signed_url_endpoint,
    )
    overrides = _chosen_over(config.conversation.overrides, chosen)
    conversation = _chosen_over(config.conversation, chosen)
    conversation = dataclasses.replace(conversation, overrides=overrides)
    wake = dataclasses.replace(config.wake, agents={})  # one level deep
    return dataclasses.replace(config, agent=agent, conversation=conversation, wake=wake)


_T = TypeVar("_T", OverridesConfig, ConversationConfig)


def _chosen_over(base: _T, chosen: WakeAgentConfig) -> _T:
    """``base`` with every field the wake word's entry sets (an unset one: None, "", ())."""
    names = {item.name for item in dataclasses.fields(base)}
    changes = {
        item.name: getattr(chosen, item.name)
        for item in dataclasses.fields(chosen)
        if item.name in names and getattr(chosen, item.name) not in (None, "", ())
    }
    if chosen.first_message == "":  # "" is a choice: the agent waits for the user
        changes["first_message"] = ""
    return dataclasses.replace(base, **changes)


def _validate_conversation(conversation: ConversationConfig) -> None:
    for name in conversation.dynamic_variables:
        if not VARIABLE_NAME.fullmatch(name):
            raise ConfigError(
                f"conversation.dynamic_variables.{name}: use letters, digits and _ "
                "(the agent refers to it as {{name}})"
            )
        if name.startswith("system__"):
            raise ConfigError(
                f"conversation.dynamic_variables.{name}: system__ variables are set by "
                "ElevenLabs, not by the device"
            )
    unknown_events = set(conversation.client_events) - set(CLIENT_EVENTS)
    if unknown_events:
        raise ConfigError(
            f"conversation.client_events: {sorted(unknown_events)[0]!r} is not an event the agent "
            f"sends; use {', '.join(CLIENT_EVENTS)}"
        )
    language = conversation.overrides.language
    if language and language not in AGENT_LANGUAGES:
        raise ConfigError(
            f"conversation.overrides.language = {language!r} is not a language the agent "
            f"accepts; use a code such as {', '.join(AGENT_LANGUAGES[:8])}, ..."
        )


def _template_fields(text: str, key: str) -> set[str]:
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise ConfigError(f"{key}: {exc} (write {{{{ and }}}} for literal braces)") from None


def _validate_context(context: ContextConfig) -> None:
    unknown = _template_fields(context.at_start, "context.at_start") - set(START_CONTEXT_FIELDS)
    if unknown:
        raise ConfigError(
            f"context.at_start: unknown field {{{sorted(unknown)[0]}}}; "
            f"use {', '.join('{' + name + '}' for name in START_CONTEXT_FIELDS)}"
        )
    for kind, text in context.on_event.items():
        _template_fields(text, f"context.on_event.{kind}")
        if kind == CONTEXT_SENT_EVENT:
            raise ConfigError(
                f"context.on_event.{kind}: that event is the update itself; pick another"
            )
