"""The device config: TOML -> typed settings, validated once at start.

    [agent]
    agent_id = "agent_..."                  # required
    url = "wss://api.elevenlabs.io"         # or ws://127.0.0.1:PORT for the simulator

    [trigger]
    mode = ["wake", "button"]               # any of "wake", "button", "immediate"
    button_mode = "toggle"                  # or "hold": push-to-talk

    [audio]
    input = "USB PnP"                       # a sound card (index, name, part of it) or file:PATH
    output = "default"
    echo = "aec"                            # or "half_duplex" / "off"

    [conversation]
    silence_close_s = 4.0

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

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from agentpi.agent.client import is_loopback
from agentpi.leds.driver import LedSettings
from agentpi.settings import SettingsError, build_dataclass, load_toml
from agentpi.wake.decider import WakeDecider

API_KEY_ENV = "ELEVENLABS_API_KEY"
API_KEY_CREDENTIAL = "elevenlabs_api_key"
ENDPOINT_TOKEN_ENV = "AGENTPI_ENDPOINT_TOKEN"
ENDPOINT_TOKEN_CREDENTIAL = "agentpi_endpoint_token"

ConfigError = SettingsError


@dataclass(frozen=True)
class AgentConfig:
    agent_id: str = ""
    url: str = "wss://api.elevenlabs.io"
    connect_timeout_s: float = 10.0
    keepalive_s: float = 1.0
    """A WebSocket ping this often; a link that leaves one unanswered for 1.5 times as long is
    dead (a cut cable or Wi-Fi that vanished sends nothing, not even a close). 0: off."""
    signed_url_endpoint: str = ""
    """The owner's backend that hands out signed URLs (https://...), so no API key needs to be on
    the device; its bearer token, if it wants one, comes from AGENTPI_ENDPOINT_TOKEN or the
    systemd credential agentpi_endpoint_token."""


TriggerMode = Literal["wake", "button", "immediate"]


@dataclass(frozen=True)
class TriggerConfig:
    mode: TriggerMode | tuple[TriggerMode, ...] = "wake"
    """One trigger or several together: "wake", ["wake", "button"], "immediate"."""
    restart_pause_s: float = 2.0
    """With "immediate": the pause before the next conversation starts."""
    button_mode: Literal["toggle", "hold"] = "toggle"
    """toggle: a press starts a conversation and a press ends it. hold: push-to-talk, the mic
    streams only while the button is held."""

    @property
    def modes(self) -> tuple[TriggerMode, ...]:
        return (self.mode,) if isinstance(self.mode, str) else self.mode


@dataclass(frozen=True)
class WakeConfig:
    models: tuple[str, ...] = ("hey_jarvis",)
    """openWakeWord model names (hey_jarvis, alexa, hey_mycroft, ...) or .tflite/.onnx paths."""
    threshold: float = 0.5
    patience: int = 1
    """Frames (80 ms each) in a row at or above the threshold before it fires."""
    refractory_s: float = 2.0
    """After a detection, no other for this long: one utterance, one trigger."""
    engine: Literal["auto", "openwakeword", "pyopen-wakeword"] = "auto"
    models_dir: str = ""


@dataclass(frozen=True)
class AudioConfig:
    input: str = "default"
    """A sound card by index, exact name or part of its name ("USB PnP"), or "default";
    "file:PATH" plays a WAV in as the microphone (tests, the demo)."""
    output: str = "default"
    chunk_ms: int = 40
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
    cue_volume: float = 0.5


@dataclass(frozen=True)
class ConversationConfig:
    silence_close_s: float = 4.0
    metadata_timeout_s: float = 10.0
    idle_close_s: float = 30.0


@dataclass(frozen=True)
class ButtonConfig:
    pin: int | None = None
    """GPIO (BCM) of the button, wired to ground (pull-up on)."""
    pull_up: bool = True
    bounce_s: float = 0.05


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


PROFILE_DIR_ENV = "AGENTPI_HARDWARE_DIR"


def profile_dirs() -> list[Path]:
    dirs = [Path(os.environ[PROFILE_DIR_ENV])] if os.environ.get(PROFILE_DIR_ENV) else []
    dirs.append(Path(__file__).resolve().parents[2] / "hardware" / "profiles")  # a checkout
    dirs.append(Path("/usr/share/agentpi/hardware/profiles"))
    return dirs


def find_profile(name: str) -> Path:
    if name.endswith(".toml"):
        return Path(name)
    for directory in profile_dirs():
        if (directory / f"{name}.toml").is_file():
            return directory / f"{name}.toml"
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(
        f"hardware.profile = {name!r}: no such profile; known: {', '.join(known) or 'none'}"
    )


def load_profile(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile's description (its [profile] table) and its settings."""
    data = load_toml(find_profile(name))
    info = data.pop("profile", {})
    for section in ("agent", "hardware"):
        if section in data:
            raise ConfigError(f"profile {name!r}: [{section}] does not belong in a profile")
    return info, data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, table by table."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_profile(data: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    """The config ``data`` on top of its hardware profile (``profile``, else its own
    ``[hardware] profile``); unchanged when it names none."""
    hardware = data.get("hardware")
    named = hardware.get("profile") if isinstance(hardware, dict) else None
    profile = profile or (named if isinstance(named, str) else None)
    return merge(load_profile(profile)[1], data) if profile else data


def load_config(path: str | Path) -> Config:
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
    if agent.connect_timeout_s <= 0:
        raise ConfigError("agent.connect_timeout_s must be more than 0")
    if not (agent.keepalive_s == 0 or 0.2 <= agent.keepalive_s <= 60):
        raise ConfigError(
            f"agent.keepalive_s = {agent.keepalive_s}: use 0.2 to 60 (seconds), or 0 for off"
        )
    if not 10 <= config.audio.chunk_ms <= 250:
        raise ConfigError(f"audio.chunk_ms = {config.audio.chunk_ms}: use 10 to 250 (ms)")
    audio = config.audio
    if audio.echo == "aec" and audio.chunk_ms % 10:
        raise ConfigError(
            f"audio.chunk_ms = {audio.chunk_ms}: the echo canceller works in 10 ms blocks; "
            "use a multiple of 10"
        )
    if not 0 <= audio.preroll_s <= 10:
        raise ConfigError(f"audio.preroll_s = {audio.preroll_s}: use 0 to 10 (seconds)")
    if not 0 <= audio.jitter_ms <= 500:
        raise ConfigError(f"audio.jitter_ms = {audio.jitter_ms}: use 0 to 500 (ms)")
    if not 0 <= audio.echo_tail_ms <= 2000:
        raise ConfigError(f"audio.echo_tail_ms = {audio.echo_tail_ms}: use 0 to 2000 (ms)")
    for name in ("volume", "cue_volume"):
        if not 0 <= getattr(audio, name) <= 4:
            raise ConfigError(f"audio.{name} = {getattr(audio, name)}: use 0 to 4 (1 = as is)")
    for name in ("input", "output"):
        spec = getattr(config.audio, name)
        if spec.startswith("file:") and not spec.removeprefix("file:"):
            raise ConfigError(f"audio.{name} = {spec!r}: give a path after file:")
    if config.conversation.silence_close_s <= 0:
        raise ConfigError("conversation.silence_close_s must be more than 0")
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
    try:
        WakeDecider(config.wake.threshold, config.wake.patience, config.wake.refractory_s)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def check_agent_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("wss", "ws") or not parts.hostname:
        raise ConfigError(
            f"agent.url = {url!r}: use wss://HOST (default wss://api.elevenlabs.io), "
            "or ws://127.0.0.1:PORT for the local simulator"
        )
    if parts.query or parts.fragment:
        raise ConfigError(f"agent.url = {url!r}: give the base URL only, without ?query")
    if parts.scheme == "ws" and not is_loopback(parts.hostname):
        raise ConfigError(
            f"agent.url = {url!r}: plain ws:// is only allowed to this machine (loopback); "
            "use wss:// for remote hosts"
        )


def check_endpoint_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    if parts.scheme == "http" and is_loopback(parts.hostname or ""):
        return
    raise ConfigError(
        f"agent.signed_url_endpoint = {url!r}: use https://HOST/... "
        "(plain http:// only to this machine)"
    )


class Secret:
    """A credential that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


def read_api_key(environ: dict[str, str] | None = None) -> Secret | None:
    """``ELEVENLABS_API_KEY``, else the systemd credential; None when neither is set."""
    return _read_secret(API_KEY_ENV, API_KEY_CREDENTIAL, environ)


def read_endpoint_token(environ: dict[str, str] | None = None) -> Secret | None:
    """The device's token for the owner's signed-URL endpoint, if it has one."""
    return _read_secret(ENDPOINT_TOKEN_ENV, ENDPOINT_TOKEN_CREDENTIAL, environ)


def _read_secret(variable: str, credential: str, environ: dict[str, str] | None) -> Secret | None:
    env = os.environ if environ is None else environ
    value = env.get(variable, "").strip()
    if not value and env.get("CREDENTIALS_DIRECTORY"):
        path = Path(env["CREDENTIALS_DIRECTORY"]) / credential
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError:
            value = ""
    return Secret(value) if value else None
