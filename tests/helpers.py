"""Running the real device against the real simulator, on files, inside one test."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from agentpi.agent.definition import JsonDict, default_document, everything_enabled
from agentpi.agent.script import SimulatorScript
from agentpi.agent.sim_records import ConversationRecord
from agentpi.agent.simulator import AgentSimulator
from agentpi.audio.capture import Microphone
from agentpi.audio.convert import write_wav
from agentpi.audio.cues import Cues
from agentpi.audio.file import FileSink, FileSource
from agentpi.audio.playback_log import Room
from agentpi.config.document import (
    AgentConfig,
    AudioConfig,
    Config,
    ConversationConfig,
    TriggerConfig,
)
from agentpi.device.app import Device, Peripherals
from agentpi.device.assembly import bundled
from agentpi.events import EventBus, EventRecord, as_records
from agentpi.leds.driver import LedController
from agentpi.settings.credentials import AgentCredentials, Secret
from agentpi.tools.registry import ToolRegistry
from agentpi.triggers.button import ButtonInput
from agentpi.wake.listener import WakeListener

HELLO_WAV = bundled("hello.wav")
AGENTPI = [sys.executable, "-m", "agentpi"]


@dataclass
class Run:
    exit_code: int
    events: list[EventRecord]
    simulator: AgentSimulator
    output: Path
    sink: FileSink
    source: FileSource
    mic: Microphone
    cues: Cues | None = None
    device: Device | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def record(self) -> ConversationRecord:
        return self.simulator.conversations[0]

    def kinds(self) -> list[str]:
        return [event["event"] for event in self.events]

    def of_kind(self, kind: str) -> list[EventRecord]:
        return [event for event in self.events if event["event"] == kind]

    def states(self) -> list[str]:
        return [event["state"] for event in self.of_kind("state")]


def enabled_agent(script: SimulatorScript | None = None) -> JsonDict:
    """An agent that sends every event, allows every override and declares the client tools
    ``script`` calls: what the simulator was before it modelled the platform's defaults. Most of
    the suite runs against it; ``tests/test_default_agent.py`` runs against the defaults."""
    return everything_enabled(default_document(), (script or SimulatorScript()).tools_called())


def silence_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    write_wav(path, np.zeros(int(rate * seconds), dtype=np.int16), rate)
    return path


def run_conversation(
    tmp_path: Path,
    script: SimulatorScript | None = None,
    input_wav: Path = HELLO_WAV,
    api_key: str | None = None,
    simulator_api_key: str | None = None,
    silence_close_s: float = 1.0,
    metadata_timeout_s: float = 10.0,
    chunk_ms: int = 40,
    timeout: float = 60.0,
    leds: Callable[[FileSink], LedController] | None = None,
    trigger: TriggerConfig | None = None,
    wake: WakeListener | None = None,
    button: ButtonInput | None = None,
    once: bool = True,
    on_event: Callable[[EventRecord], None] | None = None,
    audio: dict[str, Any] | None = None,
    room: Room | None = None,
    cues: bool = False,
    reopen: Callable[[], FileSource] | None = None,
    fail_at_s: float | None = None,
    agent_options: Callable[[str], dict[str, Any]] | None = None,
    endpoint_token: str | None = None,
    conversation: dict[str, Any] | None = None,
    sections: dict[str, Any] | None = None,
    during: Callable[[Device], Awaitable[None]] | None = None,
    agent: JsonDict | None = None,
    tools: ToolRegistry | None = None,
) -> Run:
    """``audio`` overrides [audio] settings (echo is off and cues are quiet unless asked for, so
        what the agent hears is the input file exactly); ``room`` puts the speaker's sound back into
        the microphone; ``fail_at_s`` unplugs the microphone that far in, ``reopen`` makes it
        again. ``agent_options(simulator_url)`` adds [agent] settings, ``conversation`` more
    [conversation] ones; ``sections`` replaces whole sections (context=ContextConfig(...)).
    ``during(device)`` runs alongside the device (a control-socket client, say); the run ends when
    the device does. ``agent`` is the simulated agent's document (default: ``enabled_agent``)."""
    output = tmp_path / "speaker.wav"

    async def scenario() -> Run:
        document = agent if agent is not None else enabled_agent(script)
        async with AgentSimulator(script, api_key=simulator_api_key, agent=document) as sim:
            config = Config(
                agent=AgentConfig(
                    **{
                        "agent_id": "test-agent",
                        "url": sim.url,
                        "connect_timeout_s": 5,
                        **(agent_options(sim.url) if agent_options else {}),
                    }
                ),
                trigger=trigger or TriggerConfig(mode="immediate"),
                audio=AudioConfig(
                    **{
                        "input": f"file:{input_wav}",
                        "output": f"file:{output}",
                        "chunk_ms": chunk_ms,
                        "echo": "off",
                        "cues": cues,
                        **(audio or {}),
                    }
                ),
                conversation=ConversationConfig(
                    **{
                        "silence_close_s": silence_close_s,
                        "metadata_timeout_s": metadata_timeout_s,
                        **(conversation or {}),
                    }
                ),
            )
            config = replace(config, **(sections or {}))
            events: list[EventRecord] = []
            bus = EventBus()
            bus.subscribe(as_records(events.append))
            if on_event is not None:
                bus.subscribe(as_records(on_event))
            source = FileSource(input_wav, chunk_ms=chunk_ms, room=room)
            source.fail_at_s = fail_at_s
            sink = FileSink(output)
            if room is not None:
                sink.playback_log = room.log
            mic = Microphone(reopen or (lambda: source), preroll_s=config.audio.preroll_s)
            mic.prepare(source)
            sounds = Cues(volume=config.audio.cue_volume, enabled=cues)
            device = Device(
                config,
                mic,
                sink,
                events=bus,
                peripherals=Peripherals(
                    leds=leds(sink) if leds else None, wake=wake, button=button, cues=sounds
                ),
                credentials=AgentCredentials(
                    Secret(api_key) if api_key else None,
                    Secret(endpoint_token) if endpoint_token else None,
                ),
                tools=tools,
            )
            side = asyncio.ensure_future(during(device)) if during is not None else None
            try:
                code = await asyncio.wait_for(device.run(once=once), timeout)
                if side is not None:
                    await asyncio.wait_for(side, 10)
            finally:
                if side is not None and not side.done():
                    side.cancel()
            if sim.conversations:
                await sim.wait_for_conversations(len(sim.conversations), timeout=10)
            return Run(code, events, sim, output, sink, source, mic, sounds, device=device)

    return asyncio.run(scenario())


def device_toml(
    url: str,
    wav: object,
    out: object,
    agent: str = "",
    trigger: str = 'mode = "immediate"',
    audio: str = "",
    conversation: str = "",
    control: str = "enabled = false",
    extra: str = "",
) -> str:
    """A config for `agentpi run` in a child process: the agent at ``url``, a WAV as the
    microphone, a WAV as the speaker, echo and cues off; each argument adds to its section."""
    return f"""
[agent]
agent_id = "agent_test"
url = "{url}"
{agent}
[trigger]
{trigger}
[audio]
input = "file:{wav}"
output = "file:{out}"
echo = "off"
cues = false
{audio}
[conversation]
{conversation}
[control]
{control}
{extra}
"""
