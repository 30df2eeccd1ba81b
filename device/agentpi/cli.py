"""``agentpi run | simulate | demo | say | status | events | ...``: argument parsing and the
process edge.

Bad input (config, files, arguments) ends with one line naming the problem and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from agentpi import __version__
from agentpi import events as ev
from agentpi.app import Device
from agentpi.assembly import assemble_device, bundled, open_microphone
from agentpi.audio.devices import open_sink
from agentpi.cli_agent import agent_setup
from agentpi.cli_hardware import _cmd_devices, _cmd_leds, _cmd_models
from agentpi.config import (
    AgentConfig,
    AudioConfig,
    Config,
    ConfigError,
    ControlConfig,
    TriggerConfig,
    load_config,
)
from agentpi.console import ConsolePrinter, JsonLinesWriter, LineWriter, file_lines
from agentpi.control import ControlServer, socket_path
from agentpi.control_client import ControlClientError, event_lines, find_socket, request
from agentpi.credentials import read_api_key, read_mqtt_password
from agentpi.errors import AgentpiError
from agentpi.events import EventBus
from agentpi.heap import return_large_blocks
from agentpi.loop_errors import report_loop_errors_in_one_line
from agentpi.mqtt.settings import MqttConfig

if TYPE_CHECKING:
    from agentpi.mqtt.client import MqttLink

log = logging.getLogger("agentpi")

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
STOP_GRACE_S = 2.0
"""After a stop signal, how long the device may take to close the conversation and let go."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        result: int = args.handler(args)
        return result
    except ControlClientError as exc:
        print(f"agentpi: {exc}", file=sys.stderr)
        return 1
    except AgentpiError as exc:
        # what the user can fix (config, a device, a model): one line, never a traceback
        print(f"agentpi: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (and exit 2), like every other agentpi error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port}: use 1 to 65535 (or 0 for any free port)")
    return port


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and 0.01 <= value <= 600):
        raise argparse.ArgumentTypeError(f"{text}: use 0.01 to 600 (seconds)")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agentpi", description="A voice terminal for ElevenLabs conversational agents."
    )
    parser.add_argument("--version", action="version", version=f"agentpi {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the device from a config file")
    run.add_argument("--config", required=True, help="TOML config file")
    run.add_argument("--once", action="store_true", help="exit after one conversation")
    run.add_argument(
        "--events", metavar="PATH|-", help="write one JSON line per event to PATH or stdout"
    )
    run.set_defaults(handler=_cmd_run)

    sim = commands.add_parser("simulate", help="serve the bundled agent simulator")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=_port, default=8765, help="0: any free port")
    sim.add_argument("--script", help="TOML script of what the agent does")
    sim.add_argument(
        "--agent",
        metavar="FILE",
        help="the agent's settings: a JSON agent document as GET /v1/convai/agents/ID answers "
        "(default: an agent with the platform's defaults)",
    )
    sim.add_argument(
        "--everything",
        action="store_true",
        help="an agent that sends every event, allows every override and declares the tools "
        "the script calls",
    )
    sim.set_defaults(handler=_cmd_simulate)

    demo = commands.add_parser(
        "demo", help="a whole conversation on the bundled voice clip (simulator without a key)"
    )
    demo.add_argument("--out", default="demo-out", help="folder for the agent's audio")
    demo.add_argument("--events", metavar="PATH|-", help="also write JSON event lines")
    demo.add_argument(
        "--everything",
        action="store_true",
        help="the simulated agent sends every event and allows every override (default: an "
        "agent with the platform's defaults)",
    )
    demo.set_defaults(handler=_cmd_demo)

    leds = commands.add_parser("leds", help="cycle through every state's LED pattern")
    leds.add_argument("--config", help="TOML config whose [hardware] and [leds] to use")
    leds.add_argument("--profile", help="a hardware profile name, instead of a config")
    leds.add_argument("--seconds", type=_seconds, default=3.0, help="time per state")
    leds.set_defaults(handler=_cmd_leds)

    models = commands.add_parser("models", help="wake-word models: what is here, or fetch them")
    models.add_argument("action", choices=["list", "download"], nargs="?", default="list")
    models.add_argument("names", nargs="*", help="models to download (default: all)")
    models.add_argument("--dir", help="where to put them (default: the user's data folder)")
    models.add_argument("--config", help="TOML config whose [wake] to check")
    models.set_defaults(handler=_cmd_models)

    devices = commands.add_parser(
        "devices", help="sound cards: inputs and outputs, and the formats they really open with"
    )
    devices.set_defaults(handler=_cmd_devices)

    doctor = commands.add_parser(
        "doctor", help="check everything the device needs, say what to fix"
    )
    doctor.add_argument("--config", default="/etc/agentpi/config.toml")
    doctor.set_defaults(handler=_cmd_doctor)

    setup = commands.add_parser(
        "agent-setup",
        help="show the change to the agent's settings this config needs (events, overrides, "
        "client tools); --apply makes it",
    )
    setup.add_argument("--config", default="/etc/agentpi/config.toml")
    setup.add_argument("--apply", action="store_true", help="change the agent, after showing it")
    setup.set_defaults(handler=agent_setup)

    _add_control_commands(commands)

    install = commands.add_parser(
        "install-service", help="install, enable and start the boot service (as root)"
    )
    install.add_argument("--uninstall", action="store_true", help="stop and remove the service")
    install.add_argument("--root", default="/", help="stage the files under this directory")
    install.add_argument("--venv", help="install agentpi into this venv (e.g. /opt/agentpi)")
    install.add_argument("--no-start", action="store_true", help="enable, but do not start now")
    install.set_defaults(handler=_cmd_install_service)
    return parser


def _add_control_commands(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Commands that talk to the running device over its control socket."""
    helps = {
        "say": "type to the agent: a user message (starts a conversation if none runs)",
        "context": "tell the agent something in the background (a contextual update)",
        "status": "what the running device is doing",
        "events": "follow the running device's event lines (as run --events)",
        "start": "start a conversation now, as a button press would",
        "stop": "end the running conversation",
    }
    for name, text in helps.items():
        command = commands.add_parser(name, help=text)
        if name in ("say", "context"):
            command.add_argument("text", help="what to send")
        if name == "say":
            command.add_argument(
                "--no-start", action="store_true", help="only into a running conversation"
            )
        if name == "status":
            command.add_argument("--json", action="store_true", help="the raw status object")
        command.add_argument("--socket", help="the device's control socket (default: found)")
        command.set_defaults(handler=_cmd_control)


def _cmd_control(args: argparse.Namespace) -> int:
    path = find_socket(args.socket)
    if args.command == "events":
        for line in event_lines(path):
            sys.stdout.write(line)
            sys.stdout.flush()
        return 0
    payload: dict[str, object] = {"command": args.command}
    if args.command in ("say", "context"):
        payload["text"] = args.text
    if args.command == "say":
        payload["start"] = not args.no_start
    reply = request(path, payload)
    if not reply.get("ok"):
        raise ControlClientError(str(reply.get("error", "the device said no")))
    if args.command == "status":
        status = reply["status"]
        if args.json:
            print(json.dumps(status))
        else:
            for key, value in status.items():
                if isinstance(value, dict):
                    value = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
                print(f"{key:16} {value}")
    elif reply.get("started"):
        print("started a conversation with it")
    return 0


def _event_outputs(path: str | None, stack: contextlib.ExitStack) -> EventBus:
    """The event bus, with JSON lines to ``path`` (``-``: stdout) and, when stdout is free, the
    human transcript there. Writers run on threads of their own and are flushed on exit."""
    bus = EventBus()
    stdout = LineWriter(sys.stdout)
    stack.callback(_release_stdout, stdout)
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


def _release_stdout(lines: LineWriter) -> None:
    lines.close()
    if lines.broken:
        # the reader went away: Python's own flush at exit must not print a BrokenPipeError
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def _run_device(config: Config, events: EventBus, once: bool) -> int:
    report_loop_errors_in_one_line(asyncio.get_running_loop())
    mic = open_microphone(config.audio)
    sink = open_sink(config.audio.output, config.audio.jitter_ms, config.audio.max_backlog_s)
    device = assemble_device(config, events, mic, sink)
    async with contextlib.AsyncExitStack() as stack:
        if config.mqtt.enabled:
            stack.callback(asyncio.ensure_future(open_mqtt_link(device, config.mqtt).run()).cancel)
        if config.control.enabled:
            _serve_control(device, config.control, stack)
        return await _until_signalled(device, once)


def _serve_control(device: Device, config: ControlConfig, stack: contextlib.AsyncExitStack) -> None:
    """The control socket, from when the device is ready until ``stack`` closes."""
    control = ControlServer(device, socket_path(config), config.group)
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
    return MqttLink(device, config, read_mqtt_password(), __version__)


def _on_signals(callback: Callable[[int], None]) -> None:
    """SIGINT and SIGTERM call ``callback(signal number)`` on the running loop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, callback, sig)


async def _until_signalled(device: Device, once: bool) -> int:
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

    _on_signals(stop)
    try:
        code = await task
    except asyncio.CancelledError:
        code = 0
    if signals:
        return EXIT_INTERRUPTED if signals[0] == signal.SIGINT else 0
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    return_large_blocks()
    with contextlib.ExitStack() as stack:
        events = _event_outputs(args.events, stack)
        return asyncio.run(_run_device(config, events, args.once))


def _cmd_simulate(args: argparse.Namespace) -> int:
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
            _on_signals(lambda _sig: stop.set())
            await stop.wait()

    try:
        asyncio.run(serve())
    except OSError as exc:
        raise ConfigError(f"cannot listen on {args.host}:{args.port}: {exc.strerror}") from None
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
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
        events = _event_outputs(args.events, stack)
        if real_agent and read_api_key() is not None:
            print(f"agentpi demo: talking to your agent {real_agent} (credentials found)")
            config = replace(config, agent=AgentConfig(agent_id=real_agent))
            code = asyncio.run(_run_device(config, events, once=True))
        else:
            print("agentpi demo: no credentials set, so talking to the bundled agent simulator")
            code = asyncio.run(_demo_with_simulator(config, events, args.everything))
    print(f"agentpi demo: the agent's audio, as the speaker played it, is in {reply}")
    return code


async def _demo_with_simulator(config: Config, events: EventBus, everything: bool) -> int:
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


def _cmd_install_service(args: argparse.Namespace) -> int:
    from agentpi.install import Installer

    installer = Installer(
        root=Path(args.root),
        start=not args.no_start,
        venv=Path(args.venv) if args.venv else None,
    )
    if args.uninstall:
        installer.uninstall()
    else:
        installer.install()
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from agentpi.doctor import diagnose, render

    checks = diagnose(args.config)
    print(render(checks))
    failed = [check.name for check in checks if check.ok is False]
    print(f"\n{len(failed)} problem(s): {', '.join(failed)}" if failed else "\nall good")
    return 1 if failed else 0
