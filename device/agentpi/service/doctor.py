"""``agentpi doctor``: every thing the device needs, checked once, in one table that says what to
fix. Nothing secret is printed: the API key is reported as present or absent, never shown."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.convert import Int16Array
from agentpi.audio.devices import open_sink, open_source
from agentpi.audio.vad import rms_dbfs
from agentpi.config.document import Config, ConfigError, load_config
from agentpi.errors import reason_of
from agentpi.settings.credentials import read_api_key, read_ha_token, read_mqtt_password
from agentpi.system.clock import describe_clock
from agentpi.system.gpio import GpioError
from agentpi.tools.home_assistant import HomeAssistant
from agentpi.tools.registry import ToolError
from agentpi.wake.models import ModelError

REACH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: not applicable here
    detail: str
    fix: str = ""


def diagnose(config_path: str | Path) -> list[Check]:
    checks: list[Check] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        fix = (
            f"edit {config_path}"
            if Path(config_path).is_file()
            else f"no config at {config_path}: sudo agentpi install-service writes one from the "
            "template, or pass --config PATH"
        )
        return [Check("config", False, reason_of(exc), fix)]
    checks.append(Check("config", True, f"{config_path}: valid"))
    checks.append(_api_key())
    checks.append(_clock())
    checks += _agent_settings(config)
    for name, check in (
        ("microphone", lambda: _microphone(config)),
        ("speaker", lambda: _speaker(config)),
        ("button", lambda: _button(config)),
        ("leds", lambda: _leds(config)),
        ("wake word", lambda: _wake(config)),
        ("agent host", lambda: _reach(config)),
        ("mqtt broker", lambda: _mqtt(config)),
        ("home assistant", lambda: _home_assistant(config)),
    ):
        checks.append(_guarded(name, check))
    return checks


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as exc:  # a doctor reports what it finds; it does not crash on it
        return Check(name, False, f"{type(exc).__name__}: {reason_of(exc)}")


def _agent_settings(config: Config) -> list[Check]:
    """The agent's own settings against this configuration (needs the API key to read them)."""
    from agentpi.agent.fit import findings
    from agentpi.agent.rest import AgentApiError, read_agent

    key = read_api_key()
    if key is None:
        return [
            Check(
                "agent settings",
                None,
                "not checked without an API key: client events, allowed overrides, client tools, "
                "audio formats and timeouts",
                "set ELEVENLABS_API_KEY to check them, or compare them by hand (README: "
                "'With a real agent')",
            )
        ]
    try:
        document = read_agent(
            config.agent.url, config.agent.agent_id, key.reveal(), REACH_TIMEOUT_S
        )
    except AgentApiError as exc:
        return [Check("agent settings", False, reason_of(exc), "check the network and the key")]
    found = findings(config, document)
    checks = [Check(f.name, f.ok, f.detail, f.fix) for f in found]
    if not any(f.ok is False for f in found):
        checks.insert(0, Check("agent settings", True, f"{config.agent.agent_id} fits this config"))
    return checks


def _api_key() -> Check:
    if read_api_key() is None:
        return Check(
            "api key",
            None,
            "none: only public agents can be reached",
            "private agent: set ELEVENLABS_API_KEY or /etc/agentpi/api_key",
        )
    return Check("api key", True, "present (not shown)")


def _microphone(config: Config) -> Check:
    try:
        source = open_source(config.audio.input, config.audio.chunk_ms)
    except AudioDeviceError as exc:
        return Check(
            "microphone", False, reason_of(exc), "see `agentpi devices`; set [audio] input"
        )
    captured: list[Int16Array] = []
    failures: list[Exception] = []
    source.start(lambda chunk, _at: captured.append(chunk), failures.append)
    deadline = time.monotonic() + 1.0
    enough = source.sample_rate // 2
    while time.monotonic() < deadline and len(captured) * source.chunk_samples < enough:
        time.sleep(0.02)
    source.stop()
    if failures or not captured:
        reason = str(failures[0]) if failures else "no audio within 1 s"
        return Check("microphone", False, reason, "check the cable; see `agentpi devices`")
    level = rms_dbfs(np.concatenate(captured))
    return Check(
        "microphone", True, f"{config.audio.input}: {source.sample_rate} Hz, level {level:.0f} dBFS"
    )


def _speaker(config: Config) -> Check:
    if config.audio.output.startswith("file:"):
        folder = Path(config.audio.output.removeprefix("file:")).parent
        ok = folder.is_dir()
        return Check("speaker", ok, f"{config.audio.output}", "" if ok else f"create {folder}")
    from agentpi.audio.portaudio import choose_format
    from agentpi.audio.soundcard import SoundCardSink

    try:
        sink = open_sink(config.audio.output)
        assert isinstance(sink, SoundCardSink)
        rate, channels = choose_format(sink.device, "output", 16000)
    except AudioDeviceError as exc:
        return Check("speaker", False, reason_of(exc), "see `agentpi devices`; set [audio] output")
    return Check("speaker", True, f"{config.audio.output}: opens at {rate} Hz, {channels} ch")


def _button(config: Config) -> Check:
    if "button" not in config.trigger.modes:
        return Check("button", None, "not used")
    from agentpi.triggers.button import ButtonInput

    try:
        ButtonInput(config.button).close()
    except GpioError as exc:
        return Check("button", False, reason_of(exc), "check [button] pin and the gpio group")
    return Check("button", True, f"GPIO{config.button.pin}")


def _leds(config: Config) -> Check:
    if config.leds.type == "none":
        return Check("leds", None, "none configured")
    from agentpi.leds.driver import open_leds

    try:
        output = open_leds(config.leds)
    except GpioError as exc:
        return Check("leds", False, reason_of(exc), "check [leds] pins and the gpio/spi groups")
    if output is not None:
        output.close()
    return Check("leds", True, f"{config.leds.type}")


def _wake(config: Config) -> Check:
    if "wake" not in config.trigger.modes:
        return Check("wake word", None, "not used")
    from agentpi.wake.listener import open_models

    try:
        paths, engine = open_models(config.wake)
    except ModelError as exc:
        return Check("wake word", False, reason_of(exc), "agentpi models download")
    return Check("wake word", True, f"{', '.join(paths)} on {engine.name}")


def _clock() -> Check:
    ok, detail = describe_clock()
    fix = "" if ok else "connect the network: systemd-timesyncd sets it (see `timedatectl status`)"
    return Check("clock", ok, detail, fix)


def _reach(config: Config) -> Check:
    parts = urlsplit(config.agent.url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    try:
        address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except OSError as exc:
        return Check(
            "agent host", False, f"DNS for {host}: {reason_of(exc)}", "check the network and DNS"
        )
    try:
        with socket.create_connection((host, port), REACH_TIMEOUT_S) as raw:
            if parts.scheme == "wss":
                context = ssl.create_default_context()
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    detail = f"{host}:{port} ({address[0]}), {tls.version()}"
                    return Check("agent host", True, detail)
    except ssl.SSLError as exc:
        fix = "check the clock and the CA certificates"
        return Check("agent host", False, f"TLS to {host}: {reason_of(exc)}", fix)
    except OSError as exc:
        return Check("agent host", False, f"{host}:{port}: {reason_of(exc)}", "check the network")
    return Check("agent host", True, f"{host}:{port} ({address[0]}) reachable")


def _mqtt(config: Config) -> Check:
    if not config.mqtt.enabled:
        return Check("mqtt broker", None, "not used")
    try:
        from agentpi.mqtt.doctor import check_broker
    except ImportError as exc:
        return Check(
            "mqtt broker", False, f"not installed ({exc.name})", 'pip install "agentpi[mqtt]"'
        )
    ok, detail, fix = check_broker(config.mqtt, read_mqtt_password())
    return Check("mqtt broker", ok, detail, fix)


def _home_assistant(config: Config) -> Check:
    home = config.home_assistant
    if not home.url:
        return Check("home assistant", None, "not used")
    token = read_ha_token()
    if token is None:
        return Check(
            "home assistant",
            False,
            "no token",
            "set AGENTPI_HA_TOKEN or the credential agentpi_ha_token (a long-lived access token: "
            "your Home Assistant profile > Security)",
        )
    try:
        detail = asyncio.run(HomeAssistant(home, token).check())
    except ToolError as exc:
        return Check("home assistant", False, str(exc), "check [home_assistant] url and the token")
    return Check("home assistant", True, f"{home.url}: {detail}")


def render(checks: list[Check]) -> str:
    marks = {True: "ok", False: "FAIL", None: "-"}
    width = max(len(check.name) for check in checks)
    lines = []
    for check in checks:
        line = f"{marks[check.ok]:4}  {check.name:{width}}  {check.detail}"
        if check.fix and check.ok is not True:
            line += f"\n{'':4}  {'':{width}}  -> {check.fix}"
        lines.append(line)
    return "\n".join(lines)
