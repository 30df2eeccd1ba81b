"""One HTTP request that carries a credential, bounded: no redirect followed (the credential
would go along, even to plain http://), the answer read to a size cap and within one deadline
(checked between reads), its JSON parsed with a depth bound. The signed-URL fetch and the agent
API share it."""

from __future__ import annotations

import ssl
import time
import urllib.request
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agentpi import bounded_json

READ_BLOCK = 16 * 1024


def http_url(base_url: str, path: str, query: str = "") -> str:
    """The HTTP(S) URL of ``path`` on the agent's host: ``wss://host`` -> ``https://host``."""
    parts = urlsplit(base_url.rstrip("/"))
    scheme = {"wss": "https", "ws": "http"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path + path, query, ""))


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the answer is then an HTTPError with the 3xx status


class AnswerRefused(ValueError):
    """An answer too large, too slow or not JSON within bounds; the message says which."""


def open_url(request: urllib.request.Request, timeout_s: float) -> Any:
    """``urlopen`` without redirects, with the system's certificates: an ``HTTPError`` for any
    status but 2xx (3xx included), ``URLError`` / ``OSError`` when nothing answered."""
    opener = urllib.request.build_opener(
        _NoRedirect, urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    return opener.open(request, timeout=timeout_s)


def read_json(response: Any, max_bytes: int, deadline: float) -> Any:
    """The answer's JSON, read a block at a time up to ``max_bytes`` and ``deadline``
    (``time.monotonic``), or ``AnswerRefused``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        if time.monotonic() > deadline:
            raise AnswerRefused("the answer did not arrive in time")
        block = response.read1(READ_BLOCK)
        if not block:
            break
        size += len(block)
        if size > max_bytes:
            raise AnswerRefused(f"the answer is larger than {max_bytes} bytes")
        chunks.append(block)
    try:
        return bounded_json.loads(b"".join(chunks), max_bytes)
    except bounded_json.JsonRefused as exc:
        raise AnswerRefused(f"the answer is {exc}") from None
