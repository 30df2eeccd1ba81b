"""The owner's client tools from the config: programs and Python functions.

A program is started directly (no shell, so parameters can never become commands), gets the
call's parameters as one JSON object on stdin, and answers with what it prints. It runs in a
session of its own so a timeout kills it and anything it started, even once the program itself
has exited; its environment is an allow-list (no agentpi secret can reach it, nor anything the
service was started with by chance). What it prints is read only up to the output cap.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from agentpi.settings.file_trust import check_trusted_file
from agentpi.settings.typed import SettingsError
from agentpi.tools.registry import ToolError, ToolFunction, ToolRegistry
from agentpi.tools.settings import CustomToolConfig, ToolsConfig

TOOL_ENVIRONMENT = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "XDG_RUNTIME_DIR",
)
"""What a tool program is given of the device's environment, and nothing else."""
PIPE_DRAIN_S = 2.0
STDERR_KEPT = 400
"""Characters of a failing program's stderr passed on to the agent (its last line or so)."""


def build_tools(tools: ToolsConfig) -> ToolRegistry:
    """A registry with the configured custom tools; each is checked now, so a missing program or
    a bad import fails at start with its config key, not at the agent's first call."""
    registry = ToolRegistry(tools.timeout_s, tools.max_output_bytes)
    for name, tool in tools.custom.items():
        key = f"tools.custom.{name}"
        if tool.command:
            function = program_tool(name, _resolve_program(tool, key), tools.max_output_bytes)
        else:
            function = load_entry_point(tool.entry_point, f"{key}.entry_point")
        registry.register(name, function, tool.timeout_s)
    return registry


def _resolve_program(tool: CustomToolConfig, key: str) -> tuple[str, ...]:
    program = tool.command[0]
    found = shutil.which(program)
    if found is None:
        raise SettingsError(
            f"{key}.command: program {program!r} not found or not executable"
            + ("" if os.sep in program else " (give its full path)")
        )
    check_trusted_file(Path(found).resolve(), f"{key}.command: the program")
    return (found, *tool.command[1:])


def tool_environment() -> dict[str, str]:
    return {name: os.environ[name] for name in TOOL_ENVIRONMENT if name in os.environ}


def program_tool(name: str, command: tuple[str, ...], max_output_bytes: int) -> ToolFunction:
    async def run(parameters: dict[str, Any]) -> str:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**tool_environment(), "AGENTPI_TOOL": name},
            start_new_session=True,
        )
        answered = False
        try:
            output = await _talk_to(process, parameters, max_output_bytes)
            answered = True
            return output
        finally:
            if not answered or process.returncode is None:
                # timed out or printed too much: the whole session goes, also what the program
                # left behind after it exited (a child still holding its output open)
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
            # read the pipes to their end so they close with the process, not at exit
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.communicate(), PIPE_DRAIN_S)

    return run


async def _talk_to(
    process: asyncio.subprocess.Process, parameters: dict[str, Any], max_output_bytes: int
) -> str:
    assert process.stdin and process.stdout and process.stderr
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        # a program that ignores its input may exit before reading it
        process.stdin.write(json.dumps(parameters).encode())
        await process.stdin.drain()
        process.stdin.close()
    errors = asyncio.create_task(_read_tail(process.stderr, STDERR_KEPT * 4))
    try:
        output = await _read_capped(process.stdout, max_output_bytes)
        if len(output) > max_output_bytes:
            # too much: no point waiting for the rest (the caller kills the program)
            return output.decode(errors="replace")
        code = await process.wait()
        error_text = (await errors).decode(errors="replace").strip()
    finally:
        errors.cancel()
    if code != 0:
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        detail = f": {error_text[-STDERR_KEPT:]}" if error_text else ""
        raise ToolError(f"{how}{detail}")
    return output.decode(errors="replace").strip()


async def _read_capped(stream: asyncio.StreamReader, max_output_bytes: int) -> bytes:
    """Everything up to the cap, and then one byte more to show it went over (the registry
    turns that into an error); never an unbounded read."""
    data = bytearray()
    while len(data) <= max_output_bytes:
        chunk = await stream.read(max_output_bytes + 1 - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """Read to the end (so the program never blocks on a full pipe), keeping the last bytes."""
    tail = b""
    while chunk := await stream.read(65536):
        tail = (tail + chunk)[-keep:]
    return tail


def load_entry_point(spec: str, key: str) -> ToolFunction:
    """``package.module:function`` or ``/path/to/file.py:function``."""
    where, _, attribute = spec.rpartition(":")
    try:
        if where.endswith(".py"):
            check_trusted_file(Path(where), f"{key}: the file")
            module = _module_from_file(Path(where))
        else:
            found = importlib.util.find_spec(where)
            if found is not None and found.origin:  # looked at before the module itself runs
                check_trusted_file(Path(found.origin), f"{key}: the module")
            module = importlib.import_module(where)
    except SettingsError:
        raise
    except Exception as exc:
        raise SettingsError(f"{key}: cannot load {where!r}: {exc}") from None
    target: Any = module
    for part in attribute.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise SettingsError(f"{key}: {where!r} has no {attribute!r}")
    if not callable(target):
        raise SettingsError(f"{key}: {attribute!r} in {where!r} is not a function")
    function: ToolFunction = target
    return function


def _module_from_file(path: Path) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"no such file {path}")
    name = f"agentpi_tool_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"{path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
