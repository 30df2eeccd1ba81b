"""The local control socket: a kiosk's own software, or a person at a shell, drives the device
through the requests of ``control.requests``, one JSON object per line each way, on a UNIX socket
only the owner and one group can open (mode 0660)."""

from __future__ import annotations

import asyncio
import contextlib
import grp
import logging
import os
import socket
import stat
from collections import deque
from pathlib import Path

from agentpi.control.paths import check_private_directory
from agentpi.control.requests import (
    MAX_REQUEST_BYTES,
    ControlledDevice,
    ControlRequestError,
    carry_out,
    encode_answer,
    parse_request,
)
from agentpi.events import DeviceEvent, dropped_line, event_line, shortened_record
from agentpi.line_backlog import WaitingLines
from agentpi.settings.typed import SettingsError

log = logging.getLogger(__name__)

SOCKET_MODE = 0o660
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
            raise SettingsError(f"control socket {self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        os.chmod(self.path, SOCKET_MODE)
        if gid is not None:
            try:
                os.chown(self.path, -1, gid)
            except OSError as exc:
                await self.close()
                raise SettingsError(
                    f"control.group = {self.group!r}: cannot give the socket to it "
                    f"({exc.strerror}); the service must be a member of that group"
                ) from None

    def _make_room(self) -> None:
        directory = self.path.parent
        try:
            # private unless it is the service's runtime directory, which systemd made for us
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise SettingsError(
                f"control socket {self.path}: cannot create {directory}: {exc.strerror}"
            ) from None
        check_private_directory(directory)
        try:
            mode = self.path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise SettingsError(f"control socket {self.path}: something else is already there")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.path))
            except OSError:
                self.path.unlink()  # left behind by a device that did not stop cleanly
                return
        raise SettingsError(f"control socket {self.path}: another agentpi is already running there")

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
                writer.write(encode_answer({"ok": False, "error": busy}))
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
                writer.write(encode_answer({"ok": False, "error": idle}))
                await writer.drain()
                return
            except asyncio.LimitOverrunError:
                writer.write(encode_answer({"ok": False, "error": "request too long"}))
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
                writer.write(encode_answer({"ok": False, "error": str(exc)}))
                await writer.drain()
                continue
            if request.command == "events":
                await self._stream_events(reader, writer)
                return
            writer.write(encode_answer(carry_out(request, self.device)))
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
            writer.write(encode_answer({"ok": True}))
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
        raise SettingsError(f"control.group = {name!r}: no such group on this machine") from None
