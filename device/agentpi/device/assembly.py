"""Building a device from its config: microphone, speaker, cues, LEDs, triggers, the Device."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from agentpi.audio.backend import AudioSink, CaptureStream
from agentpi.audio.capture import Microphone
from agentpi.audio.cues import Cues
from agentpi.audio.devices import open_source
from agentpi.config.document import (
    AudioConfig,
    Config,
)
from agentpi.device.app import Device, Peripherals
from agentpi.events import EventBus
from agentpi.leds.driver import LedController, open_leds
from agentpi.leds.patterns import LedAnimator
from agentpi.leds.settings import LedSettings
from agentpi.settings.credentials import (
    NO_CREDENTIALS,
    AgentCredentials,
    read_api_key,
    read_endpoint_token,
    read_ha_token,
)
from agentpi.settings.typed import SettingsError
from agentpi.system.systemd_notify import SystemdNotifier
from agentpi.tools.custom import build_tools
from agentpi.tools.home_assistant import HomeAssistant, register_home_tools
from agentpi.triggers.button import ButtonInput
from agentpi.wake.listener import open_listener


def build_leds(settings: LedSettings, sink: AudioSink | None) -> LedController | None:
    output = open_leds(settings)
    if output is None:
        return None
    return LedController(
        output,
        LedAnimator(settings.pattern_table()),
        fps=settings.fps,
        level_source=(lambda: sink.output_level) if sink is not None else None,
    )


def open_microphone(audio: AudioConfig) -> Microphone:
    """The configured microphone, opened once now so a bad name fails at start; reopened (with
    PortAudio restarted, to see a replugged USB device) after it goes away."""

    def reopen_stream() -> CaptureStream:
        if not audio.input.startswith("file:"):
            from agentpi.audio.portaudio import PortAudio

            PortAudio.restart()
        return open_source(audio.input, audio.chunk_ms)

    mic = Microphone(reopen_stream, preroll_s=audio.preroll_s)
    mic.prepare(open_source(audio.input, audio.chunk_ms))
    return mic


def open_cues(audio: AudioConfig) -> Cues:
    return Cues(volume=audio.cue_volume, enabled=audio.cues)


def assemble_device(
    config: Config,
    events: EventBus,
    mic: Microphone,
    sink: AudioSink,
    with_credentials: bool = True,
) -> Device:
    """The device ``agentpi run`` runs, around a microphone and a speaker already open
    (``with_credentials=False``: the demo's simulator, which must not get the real key)."""
    modes = config.trigger.modes
    tools = build_tools(config.tools)
    if config.home_assistant.url:
        token = read_ha_token()
        if token is None:
            raise SettingsError(
                "home_assistant.url is set, but there is no token: set AGENTPI_HA_TOKEN or the "
                "systemd credential agentpi_ha_token to a long-lived access token (your Home "
                "Assistant profile > Security)"
            )
        register_home_tools(tools, HomeAssistant(config.home_assistant, token))
    return Device(
        config,
        mic,
        sink,
        events=events,
        peripherals=Peripherals(
            leds=build_leds(config.leds, sink),
            wake=open_listener(config.wake, mic.sample_rate) if "wake" in modes else None,
            button=ButtonInput(config.button) if "button" in modes else None,
            cues=open_cues(config.audio),
        ),
        credentials=AgentCredentials(read_api_key(), read_endpoint_token())
        if with_credentials
        else NO_CREDENTIALS,
        tools=tools,
        notifier=SystemdNotifier(),
    )


def bundled(name: str) -> Path:
    return Path(str(resources.files("agentpi") / "data" / name))
