"""The local control socket: a kiosk's own software, or a person at a shell, drives the device.

One JSON object per line each way, on a UNIX socket only the owner and one group can open
(mode 0660). Requests:

    {"command": "status"}                      -> {"ok": true, "status": {...}}
    {"command": "start"}                       -> start a conversation, as a button press would
    {"command": "stop"}                        -> end the running one
    {"command": "say", "text": "...", "start": true}
                                               -> a user_message into the running conversation
                                                  (or, with start, a new one that opens with it)
    {"command": "context", "text": "..."}      -> a contextual_update into the running one
    {"command": "events"}                      -> {"ok": true}, then every event line, as --events

Every answer is {"ok": true, ...} or {"ok": false, "error": "what went wrong"}; a bad request
never closes the connection, let alone the device.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import json
import logging
import os
import socket
import stat
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from agentpi import bounded_json
from agentpi.config import ConfigError, ControlConfig
from agentpi.errors import AgentpiError
from agentpi.events import DeviceEvent, EventBus, dropped_line, event_line, shortened_record
from agentpi.line_backlog import WaitingLines

log = logging.getLogger(__name__)

SOCKET_NAME = "control.sock"
SOCKET_MODE = 0o660
SYSTEM_SOCKET = Path("/run/agentpi") / SOCKET_NAME
MAX_REQUEST_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000
MAX_CLIENTS = 16
"""Control-socket connections served at once (event followers included); more are refused."""
REQUEST_IDLE_S = 10.0
"""A connection that has not completed a request line this long after it opened (or after its
last answer) is hung up on: half-sent requests cannot hold the slots."""
SUBSCRIBER_BACKLOG = 1000
SUBSCRIBER_BACKLOG_BYTES = 1024 * 1024
"""Event lines (and their bytes) kept for a subscriber that reads slowly; beyond either bound
they are counted as dropped. Their texts are shortened (``events.MAX_SHOWN_CHARS``)."""
HANG_UP_S = 2.0
"""How long a client that is hung up on has to take what was written to it, before the
connection is cut: one that never reads would otherwise hold the device's exit for ever."""
COMMANDS = ("status", "start", "stop", "say", "context", "events")


# --------------------------------------------------------------------------- requests


class ControlRequestError(AgentpiError, ValueError):
    """A request that cannot be carried out as sent; the message says why."""


@dataclass(frozen=True)
class ControlRequest:
    command: str
    text: str = ""
    start: bool = False


def parse_request(line: bytes) -> ControlRequest:
    try:
        data = bounded_json.loads(line, MAX_REQUEST_BYTES)
    except bounded_json.JsonRefused as exc:
        raise ControlRequestError(f"not a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ControlRequestError("not a JSON object")
    command = data.get("command")
    if command not in COMMANDS:
        raise ControlRequestError(f"unknown command {command!r}; use one of {', '.join(COMMANDS)}")
    text = data.get("text", "")
    if command in ("say", "context"):
        if not isinstance(text, str) or not text.strip():
            raise ControlRequestError(f'{command} needs "text": a non-empty string')
        if len(text) > MAX_TEXT_CHARS:
            raise ControlRequestError(
                f"text is {len(text)} characters; at most {MAX_TEXT_CHARS} at a time"
            )
        if not text.isascii() and not _encodable(text):
            # JSON may spell a lone surrogate ("\ud800"); no UTF-8 frame can carry it
            raise ControlRequestError("text is not valid Unicode (a lone surrogate)")
    start = data.get("start", False)
    if not isinstance(start, bool):
        raise ControlRequestError('"start" must be true or false')
    return ControlRequest(command, text.strip() if isinstance(text, str) else "", start)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ControlledDevice(Protocol):
    events: EventBus

    def status(self) -> dict[str, Any]: ...

    def start_conversation(self, user_message: str | None = None) -> str | None: ...

    def stop_conversation(self) -> str | None: ...

    def send_user_message(self, text: str) -> str | None: ...

    def send_contextual_update(self, text: str) -> str | None: ...


def carry_out(request: ControlRequest, device: ControlledDevice) -> dict[str, Any]:
    """Everything but ``events`` (which turns the connection into a stream)."""
    command = request.command
    if command == "status":
        return {"ok": True, "status": device.status()}
    error: str | None
    if command == "start":
        error = device.start_conversation()
    elif command == "stop":
        error = device.stop_conversation()
    elif command == "context":
        error = device.send_contextual_update(request.text)
    else:
        error = device.send_user_message(request.text)
        if error is not None and request.start and device.status()["in_conversation"] is False:
            error = device.start_conversation(user_message=request.text)
            if error is None:
                return {"ok": True, "started": True}
    return {"ok": True} if error is None else {"ok": False, "error": error}


def _answer(reply: dict[str, Any]) -> bytes:
    return (json.dumps(reply, ensure_ascii=False, default=str) + "\n").encode()


# --------------------------------------------------------------------------- the socket


def socket_path(control: ControlConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Where the device listens: the configured path, else its runtime directory."""
    env = os.environ if environ is None else environ
    if control.socket:
        return Path(control.socket)
    if env.get("RUNTIME_DIRECTORY"):  # systemd's RuntimeDirectory=agentpi
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME
    return user_socket_path(env)


def user_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "agentpi" / SOCKET_NAME
    if os.geteuid() == 0:
        return SYSTEM_SOCKET
    return Path(f"/tmp/agentpi-{os.geteuid()}") / SOCKET_NAME


def check_private_directory(directory: Path) -> None:
    """The socket's directory must be a real directory that no one else could have made or may
    write in: another local user who created /tmp/agentpi-<uid> first (mode 0777) could swap in
    a socket of their own and read what `agentpi say` sends."""
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"control socket directory {directory}: not a directory (a symlink?)")
    if info.st_uid not in (os.geteuid(), 0):
        raise ConfigError(
            f"control socket directory {directory} belongs to uid {info.st_uid}, not to this "
            f"user: remove it (sudo rm -r {directory}) or set [control] socket"
        )
    if info.st_mode & 0o022:
        raise ConfigError(
            f"control socket directory {directory} is writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 700 {directory}"
        )


class ControlServer:
    def __init__(self, device: ControlledDevice, path: Path, group: str = "") -> None:
        self.device = device
        self.path = path
        self.group = group
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    def prepare(self) -> None:
        """Everything that can be wrong with the config, checked before the device starts."""
        if self.group:
            _group_id(self.group)
        self._make_room()

    async def start(self) -> None:
        gid = _group_id(self.group) if self.group else None
        self._make_room()
        # created with its final mode: no moment in which anyone else could connect
        old_umask = os.umask(0o777 & ~SOCKET_MODE)
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, path=str(self.path), limit=MAX_REQUEST_BYTES
            )
        except OSError as exc:
            raise ConfigError(f"control socket {self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        if gid is not None:
            try:
                os.chown(self.path, -1, gid)
            except OSError as exc:
                await self.close()
                raise ConfigError(
                    f"control.group = {self.group!r}: cannot give the socket to it "
                    f"({exc.strerror}); the service must be a member of that group"
                ) from None

    def _make_room(self) -> None:
        directory = self.path.parent
        try:
            # private unless it is the service's runtime directory, which systemd made for us
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                f"control socket {self.path}: cannot create {directory}: {exc.strerror}"
            ) from None
        check_private_directory(directory)
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise ConfigError(f"control socket {self.path}: something else is already there")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # left behind by a device that did not stop cleanly
                return
        raise ConfigError(f"control socket {self.path}: another agentpi is already running there")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            # hang up on every client: each handler then sees the end of its input and returns
            for writer in list(self._connections.values()):
                writer.close()
            if self._connections:
                await asyncio.wait(list(self._connections), timeout=HANG_UP_S)
            for writer in list(self._connections.values()):
                writer.transport.abort()  # a client that takes nothing written to it
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            if len(self._connections) > MAX_CLIENTS:
                busy = f"too many clients at once (at most {MAX_CLIENTS}); try again"
                writer.write(_answer({"ok": False, "error": busy}))
                await writer.drain()
                return
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to tell anyone
        finally:
            self._connections.pop(task, None)
            await _hang_up(writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), REQUEST_IDLE_S)
            except TimeoutError:
                idle = f"no complete request within {REQUEST_IDLE_S:g} s; hanging up"
                writer.write(_answer({"ok": False, "error": idle}))
                await writer.drain()
                return
            except asyncio.LimitOverrunError:
                writer.write(_answer({"ok": False, "error": "request too long"}))
                await writer.drain()
                return
            except asyncio.IncompleteReadError as exc:
                if not exc.partial.strip():
                    return
                line = exc.partial
            if not line.strip():
                continue
            try:
                request = parse_request(line)
            except ControlRequestError as exc:
                writer.write(_answer({"ok": False, "error": str(exc)}))
                await writer.drain()
                continue
            if request.command == "events":
                await self._stream_events(reader, writer)
                return
            writer.write(_answer(carry_out(request, self.device)))
            await writer.drain()

    async def _stream_events(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        lines: deque[bytes] = deque()
        waiting = WaitingLines(SUBSCRIBER_BACKLOG, SUBSCRIBER_BACKLOG_BYTES)
        ready = asyncio.Event()
        dropped = 0

        def offer(line: bytes) -> None:
            nonlocal dropped
            if waiting.admit(len(line)):
                lines.append(line)
                ready.set()
            else:
                dropped += 1

        def listener(event: DeviceEvent) -> None:
            line = event_line(shortened_record(event.record())).encode()
            # events may come from any thread; the backlog lives on the loop
            loop.call_soon_threadsafe(offer, line)

        self.device.events.subscribe(listener)
        hung_up = asyncio.ensure_future(_until_eof(reader))  # the subscriber is gone
        try:
            writer.write(_answer({"ok": True}))
            await writer.drain()
            while not hung_up.done():
                if not lines:
                    ready.clear()
                    next_line = asyncio.ensure_future(ready.wait())
                    await asyncio.wait({next_line, hung_up}, return_when=asyncio.FIRST_COMPLETED)
                    next_line.cancel()
                    continue
                if dropped:
                    writer.write(dropped_line(dropped).encode())
                    dropped = 0
                line = lines.popleft()
                waiting.release(len(line))
                writer.write(line)
                await writer.drain()
        finally:
            self.device.events.unsubscribe(listener)
            hung_up.cancel()


async def _hang_up(writer: asyncio.StreamWriter) -> None:
    """Close the connection, giving the client ``HANG_UP_S`` to take what is still being
    written to it; then cut it (a client that never reads held the device's exit for ever)."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), HANG_UP_S)
    except Exception:
        pass
    finally:
        writer.transport.abort()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Read a subscriber's input to its end, keeping none of it (it has nothing more to say:
    400 MB sent after `events` were all kept in memory)."""
    while await reader.read(65536):
        pass


def _group_id(name: str) -> int:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError(f"control.group = {name!r}: no such group on this machine") from None
