"""A local agent that speaks the Agent WebSocket protocol, for tests, the demo and benchmarks.

A real ``websockets`` server on loopback at ``/v1/convai/conversation?agent_id=...`` that behaves
like the service: metadata once the client's initiation data is in (its first_message override
and {{dynamic_variables}} honoured; a missing variable is refused with 1008), periodic pings
(noticing missing pongs), end-of-speech detection on the audio it receives, user transcripts,
agent text and streamed agent audio in the negotiated format, ``agent_response_complete``,
``vad_score`` while the user speaks, barge-in interruptions; and, when a script says so,
interruptions, client tool calls, errors with close codes, malformed frames, slow or silent
behaviour. It also serves ``GET /v1/convai/conversation/get-signed-url``. Everything it receives
and sends is recorded per conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import secrets
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentpi.agent.script import SimulatorScript
from agentpi.agent.sim_conversation import _Conversation
from agentpi.agent.sim_records import ConversationRecord

log = logging.getLogger(__name__)

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"


class AgentSimulator:
    """``async with AgentSimulator(script) as sim:`` serves on ``sim.url`` until the block ends."""

    def __init__(
        self,
        script: SimulatorScript | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
    ) -> None:
        self.script = script or SimulatorScript()
        self.host = host
        self.port = port
        self.api_key = api_key
        """The ``xi-api-key`` the signed-URL endpoint accepts; None accepts any non-empty key."""
        self.conversations: list[ConversationRecord] = []
        self.signed_url_requests = 0
        self._signatures: set[str] = set()
        self._server: Server | None = None
        self._new_conversation = asyncio.Condition()

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
            ping_interval=None,  # the protocol has its own pings
        )
        sockname = next(iter(self._server.sockets)).getsockname()
        self.port = int(sockname[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> AgentSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def wait_for_conversations(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` conversations have been opened and closed."""

        async def finished() -> None:
            async with self._new_conversation:
                await self._new_conversation.wait_for(lambda: len(self.conversations) >= count)
            for record in self.conversations[:count]:
                await record.done.wait()

        await asyncio.wait_for(finished(), timeout)

    # ------------------------------------------------------------------ HTTP side

    async def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | None:
        url = urlsplit(request.path)
        query = parse_qs(url.query)
        if url.path == SIGNED_URL_PATH:
            return self._signed_url_response(connection, request, query)
        if url.path != CONVERSATION_PATH:
            return connection.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
        if self.script.simulator.require_signed_url:
            signature = (query.get("conversation_signature") or [""])[0]
            if signature not in self._signatures:
                return connection.respond(http.HTTPStatus.FORBIDDEN, "Invalid signature\n")
            self._signatures.discard(signature)
        if self.script.simulator.handshake_delay_s > 0:
            await asyncio.sleep(self.script.simulator.handshake_delay_s)
        return None

    def _signed_url_response(
        self, connection: ServerConnection, request: Request, query: dict[str, list[str]]
    ) -> Response:
        self.signed_url_requests += 1
        key = request.headers.get("xi-api-key", "")
        if not key or (self.api_key is not None and key != self.api_key):
            return _json_response(
                connection, http.HTTPStatus.UNAUTHORIZED, {"detail": {"status": "invalid_api_key"}}
            )
        agent_id = (query.get("agent_id") or [""])[0]
        if not agent_id:
            return _json_response(
                connection, http.HTTPStatus.UNPROCESSABLE_ENTITY, {"detail": "agent_id is required"}
            )
        signature = secrets.token_urlsafe(16)
        self._signatures.add(signature)
        params = urlencode({"agent_id": agent_id, "conversation_signature": signature})
        return _json_response(
            connection,
            http.HTTPStatus.OK,
            {"signed_url": f"{self.url}{CONVERSATION_PATH}?{params}"},
        )

    # ------------------------------------------------------------------ WebSocket side

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        url = urlsplit(ws.request.path)
        agent_id = (parse_qs(url.query).get("agent_id") or [""])[0]
        record = ConversationRecord(
            conversation_id=f"conv_sim_{secrets.token_hex(6)}",
            agent_id=agent_id,
            path=ws.request.path,
            opened_at=time.monotonic(),
        )
        async with self._new_conversation:
            self.conversations.append(record)
            self._new_conversation.notify_all()
        conversation = _Conversation(self.script, ws, record)
        try:
            if not agent_id:
                await conversation.fail(1008, "missing_fields", "agent_id is required")
            else:
                await conversation.run()
        except ConnectionClosed:
            pass
        finally:
            with contextlib.suppress(Exception):
                await ws.wait_closed()
            record.closed_at = time.monotonic()
            if not record.closed_by:
                record.closed_by = "client"
            protocol = ws.protocol
            close = protocol.close_rcvd if record.closed_by == "client" else protocol.close_sent
            if close is not None:
                record.close_code, record.close_reason = close.code, close.reason
            record.note(
                f"closed by {record.closed_by} with {record.close_code} {record.close_reason!r}"
            )
            record.done.set()


def _json_response(
    connection: ServerConnection, status: http.HTTPStatus, body: dict[str, Any]
) -> Response:
    response = connection.respond(status, json.dumps(body))
    headers = Headers(response.headers)
    del headers["Content-Type"]
    headers["Content-Type"] = "application/json"
    return Response(response.status_code, response.reason_phrase, headers, response.body)
