"""``agentpi run | simulate | demo | say | status | events | ...``: argument parsing and the
process edge.

Bad input (config, files, arguments) ends with one line naming the problem and exit code 2,
never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from typing import NoReturn

from agentpi import __version__
from agentpi.cli.agent_setup import agent_setup
from agentpi.cli.control import add_control_commands
from agentpi.cli.hardware import devices_command, leds_command, models_command
from agentpi.cli.run import EXIT_INTERRUPTED, demo_command, run_command, simulate_command
from agentpi.cli.service import doctor_command, install_service_command
from agentpi.control.client import ControlClientError
from agentpi.errors import AgentpiError

EXIT_USAGE = 2


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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


def build_parser() -> argparse.ArgumentParser:
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
    run.set_defaults(handler=run_command)

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
    sim.set_defaults(handler=simulate_command)

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
    demo.set_defaults(handler=demo_command)

    leds = commands.add_parser("leds", help="cycle through every state's LED pattern")
    leds.add_argument("--config", help="TOML config whose [hardware] and [leds] to use")
    leds.add_argument("--profile", help="a hardware profile name, instead of a config")
    leds.add_argument("--seconds", type=_seconds, default=3.0, help="time per state")
    leds.set_defaults(handler=leds_command)

    models = commands.add_parser("models", help="wake-word models: what is here, or fetch them")
    models.add_argument("action", choices=["list", "download"], nargs="?", default="list")
    models.add_argument("names", nargs="*", help="models to download (default: all)")
    models.add_argument("--dir", help="where to put them (default: the user's data folder)")
    models.add_argument("--config", help="TOML config whose [wake] to check")
    models.set_defaults(handler=models_command)

    devices = commands.add_parser(
        "devices", help="sound cards: inputs and outputs, and the formats they really open with"
    )
    devices.set_defaults(handler=devices_command)

    doctor = commands.add_parser(
        "doctor", help="check everything the device needs, say what to fix"
    )
    doctor.add_argument("--config", default="/etc/agentpi/config.toml")
    doctor.set_defaults(handler=doctor_command)

    setup = commands.add_parser(
        "agent-setup",
        help="show the change to the agent's settings this config needs (events, overrides, "
        "client tools); --apply makes it",
    )
    setup.add_argument("--config", default="/etc/agentpi/config.toml")
    setup.add_argument("--apply", action="store_true", help="change the agent, after showing it")
    setup.set_defaults(handler=agent_setup)

    add_control_commands(commands.add_parser)

    install = commands.add_parser(
        "install-service", help="install, enable and start the boot service (as root)"
    )
    install.add_argument("--uninstall", action="store_true", help="stop and remove the service")
    install.add_argument("--root", default="/", help="stage the files under this directory")
    install.add_argument("--venv", help="install agentpi into this venv (e.g. /opt/agentpi)")
    install.add_argument("--no-start", action="store_true", help="enable, but do not start now")
    install.set_defaults(handler=install_service_command)
    return parser
