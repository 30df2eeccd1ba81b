"""A TCP hop between the device and the simulator that fails the way networks fail.

``reset()`` kills every connection at once (a router reboot: the device gets an error from the
socket). ``blackhole()`` keeps the sockets open and silently drops everything in both directions
(Wi-Fi gone, a cable pulled somewhere upstream: no error, no close, just nothing). ``restore()``
carries traffic again. It runs its own event loop on a thread so a test can cut the line from
any callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from urllib.parse import urlsplit, urlunsplit

PASS, BLACKHOLE = "pass", "blackhole"


class FlakyNetwork:
    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._parts = parts
        self.mode = PASS
        self.cut_at: float | None = None
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="flaky-network", daemon=True
        )
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("the relay did not start")

    @property
    def url(self) -> str:
        """The target URL, reached through this relay."""
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return urlunsplit(self._parts._replace(netloc=f"127.0.0.1:{port}"))

    def reset(self) -> None:
        self.cut_at = time.monotonic()
        self._loop.call_soon_threadsafe(self._abort_all)

    def blackhole(self) -> None:
        self.cut_at = time.monotonic()
        self.mode = BLACKHOLE

    def restore(self) -> None:
        self.mode = PASS

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._relay, "127.0.0.1", 0)
        )
        started.set()
        self._loop.run_forever()
        self._abort_all()
        self._server.close()
        self._loop.close()

    def _abort_all(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, down_reader: asyncio.StreamReader, down: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up = await asyncio.open_connection(*self._target)
        except OSError:
            down.transport.abort()
            return
        self._writers |= {down, up}
        await asyncio.gather(
            self._pump(down_reader, up), self._pump(up_reader, down), return_exceptions=True
        )
        for writer in (down, up):
            self._writers.discard(writer)
            writer.transport.abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # one side hanging up ends both: a blackholed peer would only find out by its own
        # timeouts, and the simulator's are a minute long
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.mode == PASS:
                    writer.write(data)
                    await writer.drain()
        writer.transport.abort()
