"""``agentpi run | demo | simulate``: the device (or the simulator) as a process: its event
outputs, its control socket and MQTT link, and how signals stop it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from agentpi import __version__
from agentpi import events as ev
from agentpi.audio.devices import open_sink
from agentpi.cli.console import ConsolePrinter, JsonLinesWriter, LineWriter, file_lines
from agentpi.config.document import (
    AgentConfig,
    AudioConfig,
    Config,
    ConfigError,
    TriggerConfig,
    load_config,
)
from agentpi.control.paths import socket_path
from agentpi.control.server import ControlServer
from agentpi.control.settings import ControlConfig
from agentpi.device.app import Device
from agentpi.device.assembly import assemble_device, bundled, open_microphone
from agentpi.events import EventBus
from agentpi.mqtt.settings import MqttConfig
from agentpi.settings.credentials import read_api_key, read_mqtt_password
from agentpi.system.heap import return_large_blocks
from agentpi.system.loop_errors import report_loop_errors_in_one_line

if TYPE_CHECKING:
    from agentpi.mqtt.client import MqttLink

EXIT_INTERRUPTED = 130
STOP_GRACE_S = 2.0
"""After a stop signal, how long the device may take to close the conversation and let go."""


def event_outputs(path: str | None, stack: contextlib.ExitStack) -> EventBus:
    """The event bus, with JSON lines to ``path`` (``-``: stdout) and, when stdout is free, the
    human transcript there. Writers run on threads of their own and are flushed on exit."""
    bus = EventBus()
    stdout = LineWriter(sys.stdout)
    stack.callback(release_stdout, stdout)
    if path is None or path != "-":
        bus.subscribe(ConsolePrinter.on_stdout(stdout))
    if path is None:
        return bus
    if path == "-":
        bus.subscribe(JsonLinesWriter(stdout))
        return bus
    lines = file_lines(path)
    stack.callback(lines.close)
    bus.subscribe(JsonLinesWriter(lines))
    return bus


def release_stdout(lines: LineWriter) -> None:
    lines.close()
    if lines.broken:
        # the reader went away: Python's own flush at exit must not print a BrokenPipeError
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def run_device(config: Config, events: EventBus, once: bool) -> int:
    report_loop_errors_in_one_line(asyncio.get_running_loop())
    mic = open_microphone(config.audio)
    sink = open_sink(config.audio.output, config.audio.jitter_ms, config.audio.max_backlog_s)
    device = assemble_device(config, events, mic, sink)
    async with contextlib.AsyncExitStack() as stack:
        if config.mqtt.enabled:
            link = open_mqtt_link(device, config.mqtt)  # one line if the extra is missing
            from agentpi.mqtt.client import stopped

            stack.push_async_callback(stopped, asyncio.ensure_future(link.run()))
        if config.control.enabled:
            serve_control(device, config.control, stack)
        return await until_signalled(device, once)


def serve_control(device: Device, config: ControlConfig, stack: contextlib.AsyncExitStack) -> None:
    """The control socket, from when the device is ready until ``stack`` closes."""
    control = ControlServer(device.controls, socket_path(config), config.group)
    control.prepare()

    async def serve_once_ready() -> None:
        # the socket appears when the device can take requests: a script may wait for the file
        await device.ready.wait()
        try:
            await control.start()
        except ConfigError as exc:
            device.events.publish(ev.ControlError(str(exc)))

    stack.push_async_callback(control.close)
    stack.callback(asyncio.ensure_future(serve_once_ready()).cancel)


def open_mqtt_link(device: Device, config: MqttConfig) -> MqttLink:
    """The MQTT link (the optional extra: a one-line error if it is not installed)."""
    try:
        from agentpi.mqtt.client import MqttLink
    except ImportError as exc:
        raise ConfigError(
            f'[mqtt] needs the mqtt extra ({exc.name}): pip install "agentpi[mqtt]"'
        ) from None
    return MqttLink(device.controls, config, read_mqtt_password(), __version__)


def on_signals(callback: Callable[[int], None]) -> None:
    """SIGINT and SIGTERM call ``callback(signal number)`` on the running loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback, sig)


async def until_signalled(device: Device, once: bool) -> int:
    """Run the device; the first SIGTERM or SIGINT ends the conversation with a close frame and
    stops it (at most ``STOP_GRACE_S`` later, whatever it was doing), a second one at once.
    Exit 0 after SIGTERM (a clean service stop), 130 after SIGINT (Ctrl-C)."""
    task = asyncio.ensure_future(device.run(once=once))
    signals: list[int] = []

    def stop(sig: int) -> None:
        signals.append(sig)
        if len(signals) == 1:
            device.shutdown("device stopping")
            asyncio.get_running_loop().call_later(STOP_GRACE_S, task.cancel)
        else:
            task.cancel()

    on_signals(stop)
    try:
        code = await task
    except asyncio.CancelledError:
        code = 0
    if signals:
        return EXIT_INTERRUPTED if signals[0] == signal.SIGINT else 0
    return code


def run_command(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return_large_blocks()
    with contextlib.ExitStack() as stack:
        events = event_outputs(args.events, stack)
        return asyncio.run(run_device(config, events, args.once))


def simulate_command(args: argparse.Namespace) -> int:
    # The simulator (its server, voice and script) loads only for the commands that use it: a
    # device running all day does not carry it.
    from agentpi.agent.definition import default_document, everything_enabled, load_document
    from agentpi.agent.script import SimulatorScript, load_script
    from agentpi.agent.simulator import AgentSimulator

    script = load_script(args.script) if args.script else SimulatorScript()
    agent = load_document(args.agent) if args.agent else default_document()
    if args.everything:
        agent = everything_enabled(agent, script.tools_called())
    logging.getLogger("agentpi.agent.simulator").setLevel(logging.INFO)

    async def serve() -> None:
        async with AgentSimulator(script, host=args.host, port=args.port, agent=agent) as sim:
            print(f"agentpi simulator listening on {sim.url}", flush=True)
            stop = asyncio.Event()
            on_signals(lambda _sig: stop.set())
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def demo_command(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: {exc.strerror}") from None
    reply = out / "agent-reply.wav"
    with contextlib.suppress(FileNotFoundError):
        reply.unlink()
    config = Config(
        agent=AgentConfig(agent_id="agentpi-demo"),
        trigger=TriggerConfig(mode="immediate"),
        audio=AudioConfig(input=f"file:{bundled('hello.wav')}", output=f"file:{reply}"),
    )
    real_agent = os.environ.get("ELEVENLABS_AGENT_ID", "").strip()
    with contextlib.ExitStack() as stack:
        events = event_outputs(args.events, stack)
        if real_agent and read_api_key() is not None:
            print(f"agentpi demo: talking to your agent {real_agent} (credentials found)")
            config = replace(config, agent=AgentConfig(agent_id=real_agent))
            code = asyncio.run(run_device(config, events, once=True))
        else:
            print("agentpi demo: no credentials set, so talking to the bundled agent simulator")
            code = asyncio.run(demo_with_simulator(config, events, args.everything))
    print(f"agentpi demo: the agent's audio, as the speaker played it, is in {reply}")
    return code


async def demo_with_simulator(config: Config, events: EventBus, everything: bool) -> int:
    from agentpi.agent.definition import default_document, everything_enabled
    from agentpi.agent.script import load_script
    from agentpi.agent.simulator import AgentSimulator

    script = load_script(bundled("demo-script.toml"))
    agent = default_document()
    if everything:
        agent = everything_enabled(agent, script.tools_called())
    async with AgentSimulator(script, agent=agent) as sim:
        config = replace(config, agent=replace(config.agent, url=sim.url))
        mic = open_microphone(config.audio)
        sink = open_sink(config.audio.output, config.audio.jitter_ms, config.audio.max_backlog_s)
        device = assemble_device(config, events, mic, sink, with_credentials=False)
        return await device.run(once=True)
