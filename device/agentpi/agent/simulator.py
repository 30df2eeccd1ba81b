"""A local agent that speaks the Agent WebSocket protocol, for tests, the demo and benchmarks.

A real ``websockets`` server on loopback at ``/v1/convai/conversation?agent_id=...`` that behaves
like the service: metadata once the client's initiation data is in (its first_message override
and {{dynamic_variables}} honoured; a missing variable is refused with 1008), periodic pings
(noticing missing pongs), end-of-speech detection on the audio it receives, user transcripts,
agent text and streamed agent audio in the negotiated format, ``agent_response_complete``,
``vad_score`` while the user speaks, barge-in interruptions; and, when a script says so,
interruptions, client tool calls, errors with close codes, malformed frames, slow or silent
behaviour. What the agent sends, allows and declares comes from its agent document
(``agent/definition.py``), by default an agent made with the platform's defaults.

On the same port, behind an ``xi-api-key`` check, it serves the REST calls the device makes:
``GET /v1/convai/conversation/get-signed-url``, ``GET`` and ``PATCH /v1/convai/agents/{id}``.
Every agent id is an agent, made from the simulator's document on first use. Everything it
receives and sends is recorded per conversation.
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

from agentpi import bounded_json
from agentpi.agent.definition import (
    AgentDefinition,
    JsonDict,
    client_events,
    default_document,
    merged,
)
from agentpi.agent.script import SimulatorScript
from agentpi.agent.sim_conversation import SimulatedConversation
from agentpi.agent.sim_http import MAX_BODY_BYTES, RestAwareConnection
from agentpi.agent.sim_records import ConversationRecord
from agentpi.settings.typed import SettingsError

log = logging.getLogger(__name__)

CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"
AGENTS_PATH = "/v1/convai/agents/"


class AgentSimulator:
    """``async with AgentSimulator(script) as sim:`` serves on ``sim.url`` until the block ends."""

    def __init__(
        self,
        script: SimulatorScript | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        agent: JsonDict | None = None,
    ) -> None:
        self.script = script or SimulatorScript()
        self.template = merged(agent or default_document(), self.script.agent)
        """The agent document every agent id starts from (the script's [agent] merged in)."""
        self.agents: dict[str, JsonDict] = {}
        self.agent_patches: list[tuple[str, JsonDict]] = []
        self.host = host
        self.port = port
        self.api_key = api_key
        """The ``xi-api-key`` the REST endpoints accept; None accepts any non-empty key."""
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

    def agent_document(self, agent_id: str) -> JsonDict:
        """The agent's settings as they stand (made from the template on first use)."""
        if agent_id not in self.agents:
            self.agents[agent_id] = merged(self.template, {"agent_id": agent_id})
        return self.agents[agent_id]

    async def start(self) -> None:
        answer = self._answer_rest

        class Connection(RestAwareConnection):
            async def answer_rest(
                self, method: str, path: str, headers: dict[str, str], body: bytes
            ) -> tuple[int, Any]:
                return await answer(method, path, headers, body)

        self._server = await serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._process_request,
            max_size=16 * 1024 * 1024,
            ping_interval=None,  # the protocol has its own pings
            create_connection=Connection,
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
        if url.path.startswith(AGENTS_PATH):
            status, body = self._agent_rest("GET", url.path, request.headers.get("xi-api-key", ""))
            return _json_response(connection, http.HTTPStatus(status), body)
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
        if not self._key_ok(request.headers.get("xi-api-key", "")):
            return _json_response(connection, http.HTTPStatus.UNAUTHORIZED, INVALID_KEY)
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

    def _key_ok(self, key: str) -> bool:
        return bool(key) and (self.api_key is None or key == self.api_key)

    async def _answer_rest(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """A request websockets does not parse (not a GET)."""
        route = urlsplit(path).path
        if not route.startswith(AGENTS_PATH):
            return 404, {"detail": "Not found"}
        return self._agent_rest(method, route, headers.get("xi-api-key", ""), body)

    def _agent_rest(self, method: str, route: str, key: str, body: bytes = b"") -> tuple[int, Any]:
        agent_id = route.removeprefix(AGENTS_PATH)
        if not agent_id or "/" in agent_id:
            return 404, {"detail": "Not found"}
        if not self._key_ok(key):
            return 401, INVALID_KEY
        if method == "GET":
            return 200, self.agent_document(agent_id)
        if method != "PATCH":
            return 405, {"detail": "Method not allowed"}
        try:
            change = bounded_json.loads(body, MAX_BODY_BYTES)
        except bounded_json.JsonRefused as exc:
            return 400, {"detail": f"the body is {exc}"}
        if not isinstance(change, dict) or set(change) - PATCHABLE:
            return 422, {"detail": f"a JSON object with any of {', '.join(sorted(PATCHABLE))}"}
        updated = merged(self.agent_document(agent_id), change)
        try:
            client_events(updated)
        except SettingsError as exc:
            return 422, {"detail": str(exc)}
        updated["metadata"] = {**updated["metadata"], "updated_at_unix_secs": int(time.time())}
        self.agents[agent_id] = updated
        self.agent_patches.append((agent_id, change))
        return 200, updated

    # ------------------------------------------------------------------ WebSocket side

    async def _converse(
        self, ws: ServerConnection, record: ConversationRecord, agent_id: str
    ) -> None:
        try:
            definition = AgentDefinition.from_document(self.agent_document(agent_id or "-"))
        except SettingsError as exc:  # a setting the platform has and the simulator cannot play
            record.note(f"cannot play this agent: {exc}")
            record.closed_by = "server"
            await ws.close(1011, "simulator: unsupported agent setting")
            return
        conversation = SimulatedConversation(self.script, definition, ws, record)
        try:
            if not agent_id:
                await conversation.fail(1008, "missing_fields", "agent_id is required")
            else:
                await conversation.run()
        finally:
            conversation.release()

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
        try:
            await self._converse(ws, record, agent_id)
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


INVALID_KEY = {"detail": {"status": "invalid_api_key", "message": "Invalid API key"}}
PATCHABLE = {"name", "conversation_config", "platform_settings", "tags"}
"""What ``PATCH /v1/convai/agents/{id}`` takes here (the platform takes a few more)."""


def _json_response(
    connection: ServerConnection, status: http.HTTPStatus, body: dict[str, Any]
) -> Response:
    response = connection.respond(status, json.dumps(body))
    headers = Headers(response.headers)
    del headers["Content-Type"]
    headers["Content-Type"] = "application/json"
    return Response(response.status_code, response.reason_phrase, headers, response.body)
