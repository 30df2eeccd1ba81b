"""The thin edge between the session and a real WebSocket: URLs, signed URLs, frames in and out.

Nothing here knows the conversation rules; it moves typed messages between ``websockets`` and
``ConversationSession`` and turns transport failures into plain values.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from agentpi import __version__
from agentpi import events as ev
from agentpi.config.document import AgentConfig
from agentpi.errors import AgentpiError, reason_of
from agentpi.events import DeviceEvent
from agentpi.protocol.messages import (
    ClientMessage,
    ProtocolError,
    ServerEvent,
    decode_server,
    encode,
)
from agentpi.settings.credentials import Secret
from agentpi.system.clock import certificate_refusal, clock_is_the_cause
from agentpi.system.https import AnswerRefused, Unreachable, http_url, request
from agentpi.system.net import is_loopback

CONVERSATION_PATH = "/v1/convai/conversation"
CLOSE_TIMEOUT_S = 1.0
"""A closing handshake the server does not finish in this long is cut: a device must not hang
in a send to a connection that is going away."""
KEEPALIVE_GRACE = 1.5
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"


class AgentConnectError(AgentpiError):
    """The agent could not be reached; the message is safe to log (no credentials).
    ``offline``: the network or the host is unreachable (not a refusal by the server)."""

    def __init__(self, message: str, offline: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.offline = offline
        self.status = status
        """The HTTP status the handshake (or the signed-URL request) was refused with."""


def conversation_url(base_url: str, agent_id: str) -> str:
    """The public-agent URL: ``<base>/v1/convai/conversation?agent_id=...&source=...``."""
    parts = urlsplit(base_url.rstrip("/"))
    query = urlencode({"agent_id": agent_id, "source": "agentpi", "version": __version__})
    return urlunsplit((parts.scheme, parts.netloc, parts.path + CONVERSATION_PATH, query, ""))


def signed_url_endpoint(base_url: str, agent_id: str) -> str:
    return http_url(base_url, SIGNED_URL_PATH, urlencode({"agent_id": agent_id}))


def redact_url(url: str) -> str:
    """A URL fit for a log line: the host and path, and of the query only the agent id.

    A signed URL carries its credential in the query, so nothing else of it is shown."""
    parts = urlsplit(url)
    agent = [p for p in parts.query.split("&") if p.startswith("agent_id=")]
    host = parts.netloc.rpartition("@")[2]  # never a user or password
    return urlunsplit((parts.scheme, host, parts.path, "&".join(agent), ""))


MAX_SIGNED_URL_ANSWER = 64 * 1024
"""A signed URL answer is a few hundred bytes; a larger one is not read (a 100 MB body took the
device from 46 to 248 MB)."""


async def _fetch_signed_url(
    endpoint: str, headers: dict[str, str], timeout: float, hint: str
) -> str:
    try:
        answer = await request("GET", endpoint, headers, MAX_SIGNED_URL_ANSWER, timeout)
        body = answer.json() if 200 <= answer.status < 300 else None
    except Unreachable as exc:
        where = redact_url(endpoint)
        raise AgentConnectError(f"cannot reach {where}: {exc}", offline=True) from None
    except AnswerRefused as exc:
        raise AgentConnectError(f"{redact_url(endpoint)}: {exc}") from None
    if not 200 <= answer.status < 300:
        advice = f" ({hint})" if answer.status in (401, 403) else ""
        if 300 <= answer.status < 400:
            advice = " (a redirect, not followed: the credential would go with it)"
        raise AgentConnectError(
            f"signed URL request to {redact_url(endpoint)} failed: HTTP {answer.status}{advice}",
            status=answer.status,
        )
    signed = body.get("signed_url") if isinstance(body, dict) else None
    if not isinstance(signed, str) or not _usable_socket_url(signed):
        raise AgentConnectError(
            f"{redact_url(endpoint)} answered without a usable signed_url "
            "(wss://, or ws:// to this machine only)"
        )
    return signed


def _usable_socket_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "wss":
        return bool(parts.hostname)
    return parts.scheme == "ws" and is_loopback(parts.hostname or "")


async def fetch_signed_url(base_url: str, agent_id: str, api_key: str, timeout: float) -> str:
    """A signed URL from ElevenLabs itself, paid for with the API key."""
    endpoint = signed_url_endpoint(base_url, agent_id)
    return await _fetch_signed_url(
        endpoint, {"xi-api-key": api_key}, timeout, "check ELEVENLABS_API_KEY"
    )


async def fetch_signed_url_from_owner(
    endpoint: str, agent_id: str, token: str | None, timeout: float
) -> str:
    """A signed URL from the kiosk owner's own backend, so the API key never sits on the
    device: ``GET <endpoint>?agent_id=...`` answering ``{"signed_url": "wss://..."}``, with the
    device's token (if any) as a bearer credential."""
    parts = urlsplit(endpoint)
    query = "&".join(q for q in (parts.query, urlencode({"agent_id": agent_id})) if q)
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await _fetch_signed_url(url, headers, timeout, "check the device's endpoint token")


@dataclass(frozen=True)
class Closed:
    """The socket closed; ``code`` is None when it was lost without a close frame."""

    code: int | None
    reason: str
    by_device: bool = False
    """This side closed (a goodbye, or a frame the device refused), not the server."""


class AgentConnection:
    """One open Agent WebSocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws

    @classmethod
    async def open(
        cls, url: str, timeout: float, keepalive_s: float = 0.0, deflate: bool = False
    ) -> AgentConnection:
        """``keepalive_s``: ping this often and drop a link whose pong is
        ``KEEPALIVE_GRACE`` times that late (0: no pings); ``deflate``: offer permessage-deflate."""
        try:
            ws = await connect(
                url,
                open_timeout=timeout,
                close_timeout=CLOSE_TIMEOUT_S,
                ping_interval=keepalive_s or None,
                ping_timeout=keepalive_s * KEEPALIVE_GRACE or None,
                max_size=16 * 1024 * 1024,
                compression="deflate" if deflate else None,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise AgentConnectError(
                f"{redact_url(url)} refused the conversation: HTTP {status}", status=status
            ) from None
        except ssl.SSLCertVerificationError as exc:
            # a clock not yet set is like no network: the offline cue, and it tries again
            raise AgentConnectError(
                f"cannot connect to {redact_url(url)}: {certificate_refusal(exc)}",
                offline=clock_is_the_cause(exc),
            ) from None
        except ssl.SSLError as exc:
            raise AgentConnectError(
                f"cannot connect to {redact_url(url)}: the TLS handshake failed ({exc.reason}); "
                "is it a wss:// server?"
            ) from None
        except TimeoutError:
            raise AgentConnectError(
                f"cannot connect to {redact_url(url)}: no answer within {timeout:g} s",
                offline=True,
            ) from None
        except OSError as exc:
            raise AgentConnectError(
                f"cannot connect to {redact_url(url)}: {reason_of(exc)}", offline=True
            ) from None
        except InvalidHandshake as exc:
            raise AgentConnectError(
                f"cannot connect to {redact_url(url)}: {reason_of(exc)} (the server did not "
                "answer as a WebSocket server would)"
            ) from None
        return cls(ws)

    async def send(self, message: ClientMessage) -> None:
        with contextlib.suppress(ConnectionClosed):  # the receive side reports the close, once
            await self._ws.send(encode(message))

    async def receive(self) -> ServerEvent | ProtocolError | Closed:
        try:
            frame = await self._ws.recv()
        except ConnectionClosed as exc:
            return self._closed(exc)
        if isinstance(frame, bytes):
            return ProtocolError(f"a binary frame ({len(frame)} bytes); the agent sends JSON text")
        try:
            return decode_server(frame)
        except ProtocolError as exc:
            return exc

    def _closed(self, exc: ConnectionClosed) -> Closed:
        sent, rcvd = exc.sent, exc.rcvd
        if exc.rcvd_then_sent is False and sent is not None:
            return Closed(sent.code, sent.reason, by_device=True)  # we closed first
        if rcvd is not None:
            return Closed(rcvd.code, rcvd.reason)
        if sent is not None and sent.code not in (1000, 1011):
            # websockets refused what the server sent (a frame over max_size: 1009; a broken
            # frame: 1002/1007) and closed: the device's close, with the library's reason
            return Closed(sent.code, sent.reason, by_device=True)
        if sent is not None and sent.code == 1000:
            return Closed(sent.code, sent.reason, by_device=True)  # our goodbye, unanswered
        # websockets gave up on the link itself (a keepalive ping went unanswered)
        reason = sent.reason if sent is not None and sent.reason else "no close frame"
        return Closed(None, reason)

    async def close(self, code: int, reason: str) -> None:
        await self._ws.close(code, reason)


async def open_agent(
    agent: AgentConfig,
    api_key: Secret | None,
    endpoint_token: Secret | None,
    said: Callable[[DeviceEvent], object],
) -> AgentConnection:
    """The conversation's socket: a signed URL first where one is needed, then the handshake.
    Cancelling it stops at once, a fetch in flight included."""
    if agent.signed_url_endpoint or api_key is not None:
        asked = agent.signed_url_endpoint or agent.url
        said(ev.FetchingSignedUrl(urlsplit(asked).hostname or asked))
    url = await resolve_url(agent, api_key, endpoint_token)
    said(ev.Connecting(redact_url(url)))
    return await AgentConnection.open(
        url, agent.connect_timeout_s, agent.keepalive_s, agent.compression == "deflate"
    )


async def resolve_url(
    agent: AgentConfig, api_key: Secret | None, endpoint_token: Secret | None
) -> str:
    """Where to connect: a signed URL from the owner's backend or from ElevenLabs (with a key),
    or the public agent's URL."""
    if agent.signed_url_endpoint:
        token = endpoint_token.reveal() if endpoint_token else None
        return await fetch_signed_url_from_owner(
            agent.signed_url_endpoint, agent.agent_id, token, agent.connect_timeout_s
        )
    if api_key is None:
        return conversation_url(agent.url, agent.agent_id)
    return await fetch_signed_url(
        agent.url, agent.agent_id, api_key.reveal(), agent.connect_timeout_s
    )
