"""The simulator's one port serves WebSocket upgrades and the REST calls that are not GET.

``websockets`` parses only GET requests (an upgrade, or a plain GET its ``process_request``
answers); the agent API also takes ``PATCH /v1/convai/agents/{id}``. ``RestAwareConnection``
reads the request head first: a GET goes on to ``websockets`` untouched, anything else is
answered here (one JSON response, then the connection closes). Head and body are bounded.
"""

from __future__ import annotations

import asyncio
import http
import json
from typing import Any

from websockets.asyncio.server import ServerConnection

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024


class RestAwareConnection(ServerConnection):
    """A ``websockets`` server connection that answers non-GET requests itself (a subclass
    says how, in ``answer_rest``)."""

    _head: bytes | None = b""
    """What came before the request is routed; None once it went to ``websockets``."""
    _task: asyncio.Task[None] | None = None

    def data_received(self, data: bytes) -> None:
        if self._head is None:
            super().data_received(data)
            return
        if self._task is not None:  # the request is being answered; a body's tail is read there
            self._head += data
            return
        self._head += data
        end = self._head.find(b"\r\n\r\n")
        if end < 0:
            if len(self._head) > MAX_HEAD_BYTES:
                self._reply(431, {"detail": "request head too large"})
            return
        method = self._head.split(b" ", 1)[0]
        if method == b"GET":
            buffered, self._head = self._head, None
            super().data_received(buffered)
            return
        self._task = asyncio.get_running_loop().create_task(self._answer_rest(end))

    async def _answer_rest(self, end: int) -> None:
        assert self._head is not None
        head = self._head[:end].decode("latin-1")
        request_line, *lines = head.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3:
            self._reply(400, {"detail": "bad request line"})
            return
        method, path, _version = parts
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._reply(413, {"detail": f"a body of 0 to {MAX_BODY_BYTES} bytes"})
            return
        deadline = asyncio.get_running_loop().time() + 10.0
        while len(self._head) - end - 4 < length:
            if asyncio.get_running_loop().time() > deadline or self.transport.is_closing():
                self._reply(408, {"detail": "request body not received in time"})
                return
            await asyncio.sleep(0.01)
        body = self._head[end + 4 : end + 4 + length]
        try:
            status, answer = await self.answer_rest(method, path, headers, body)
        except Exception as exc:  # the simulator's own fault: say so, as a server would
            status, answer = 500, {"detail": f"simulator error: {exc!r}"}
        self._reply(status, answer)

    async def answer_rest(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """(method, path with query, headers by lower-case name, body) -> (status, JSON)."""
        return 404, {"detail": "Not found"}

    def _reply(self, status: int, body: Any) -> None:
        payload = json.dumps(body).encode()
        phrase = http.HTTPStatus(status).phrase
        head = (
            f"HTTP/1.1 {status} {phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + payload)
        self.transport.close()
