"""One HTTP request that carries a credential, bounded in every way: the whole exchange
(connecting, TLS, the answer's head and body) within one deadline, the head and the body to a
size cap, no redirect followed (the credential would go along, even to plain http://), its JSON
parsed with a depth bound. The signed-URL fetch and the agent API share it.

asyncio carries the bytes and h11 parses HTTP, so the deadline is one ``asyncio.timeout`` and
a stop or a signal cancels a request in flight like any task (urllib's timeout was per read: a
server dripping its head a byte at a time held a fetch for as long as it liked).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import h11

from agentpi import __version__, bounded_json
from agentpi.errors import AgentpiError
from agentpi.system.clock import certificate_refusal
from agentpi.system.net import DEFAULT_PORTS

READ_BLOCK = 16 * 1024
MAX_HEAD_BYTES = 16 * 1024
"""An answer's status line and headers; a longer head is refused."""


def http_url(base_url: str, path: str, query: str = "") -> str:
    """The HTTP(S) URL of ``path`` on the agent's host: ``wss://host`` -> ``https://host``."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + path, query, ""))


class Unreachable(AgentpiError, OSError):
    """Nothing answered: no such host, refused, TLS failed, or the connection went before the
    answer was whole; the message says which."""


class AnswerRefused(AgentpiError, ValueError):
    """An answer too large, too slow, not HTTP or not JSON within bounds; the message says which."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body's JSON (64 deep at most), or ``AnswerRefused``."""
        try:
            return bounded_json.loads(self.body, max(len(self.body), 1))
        except bounded_json.JsonRefused as exc:
            raise AnswerRefused(f"the answer is {exc}") from None


async def request(
    method: str,
    url: str,
    headers: Mapping[str, str],
    max_bytes: int,
    timeout_s: float,
    body: bytes | None = None,
) -> Answer:
    """``method url`` and its whole answer (any status: a 3xx is not followed) within
    ``timeout_s``, the body at most ``max_bytes``; ``Unreachable`` or ``AnswerRefused``."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unreachable(f"{url!r} is not an http(s) URL")
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            try:
                reader, writer = await asyncio.open_connection(
                    parts.hostname,
                    parts.port or DEFAULT_PORTS[parts.scheme],
                    ssl=ssl.create_default_context() if parts.scheme == "https" else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise Unreachable(certificate_refusal(exc)) from None
            except OSError as exc:
                raise Unreachable(str(getattr(exc, "reason", None) or exc)) from None
            head = _head(method, parts.netloc.rpartition("@")[2], headers, body)
            target = parts.path or "/"
            if parts.query:
                target += f"?{parts.query}"
            return await _exchange(reader, writer, method, target, head, body, max_bytes)
    except TimeoutError:
        if writer is None:
            raise Unreachable(f"no connection within {timeout_s:g} s") from None
        raise AnswerRefused(f"no whole answer within {timeout_s:g} s") from None
    finally:
        if writer is not None:
            writer.transport.abort()  # "Connection: close": nothing more to say or wait for


def _head(
    method: str, host: str, headers: Mapping[str, str], body: bytes | None
) -> list[tuple[str, str]]:
    head = [
        ("Host", host),
        ("User-Agent", f"agentpi/{__version__}"),
        ("Accept", "application/json"),
        ("Connection", "close"),
        *headers.items(),
    ]
    if body is not None:
        head.append(("Content-Length", str(len(body))))
    return head


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    method: str,
    target: str,
    head: list[tuple[str, str]],
    body: bytes | None,
    max_bytes: int,
) -> Answer:
    http = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD_BYTES)
    writer.write(http.send(h11.Request(method=method, target=target, headers=head)) or b"")
    if body:
        writer.write(http.send(h11.Data(data=body)) or b"")
    writer.write(http.send(h11.EndOfMessage()) or b"")
    await writer.drain()
    status = 0
    chunks: list[bytes] = []
    size = 0
    ended = False
    while True:
        try:
            event = http.next_event()
        except h11.RemoteProtocolError as exc:
            if ended:
                raise Unreachable("the connection closed before the whole answer") from None
            raise AnswerRefused(f"the answer is not HTTP within bounds ({exc})") from None
        if event is h11.NEED_DATA:
            data = await reader.read(READ_BLOCK)
            ended = not data
            http.receive_data(data)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_bytes:
                raise AnswerRefused(f"the answer is larger than {max_bytes} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return Answer(status, b"".join(chunks))
        elif isinstance(event, h11.ConnectionClosed):
            raise Unreachable("the connection closed before the answer")
