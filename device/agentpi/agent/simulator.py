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
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agentpi.agent.script import SimulatorScript, TurnScript
from agentpi.agent.voice import synthesize_speech
from agentpi.audio.convert import decode_wire, encode_wire
from agentpi.audio.formats import AudioFormat
from agentpi.audio.vad import EnergyVad
from agentpi.protocol.messages import (
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentToolResponse,
    Audio,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    Interruption,
    Ping,
    Pong,
    ProtocolError,
    ServerEvent,
    TentativeUserTranscript,
    UserAudioChunk,
    UserMessage,
    UserTranscript,
    VadScore,
    decode_client,
    encode,
)

log = logging.getLogger(__name__)

INIT_WAIT_S = 5.0
"""How long the server waits for conversation_initiation_client_data before going on without."""
VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
CONVERSATION_PATH = "/v1/convai/conversation"
SIGNED_URL_PATH = "/v1/convai/conversation/get-signed-url"


@dataclass
class AgentTurnRecord:
    event_id: int
    text: str
    audio_samples: int = 0
    samples_sent: int = 0
    started_at: float = 0.0
    first_audio_at: float | None = None
    last_audio_at: float | None = None
    interrupted_at: float | None = None
    completed_at: float | None = None


@dataclass
class ConversationRecord:
    """Everything one conversation did, as the server saw it."""

    conversation_id: str
    agent_id: str
    path: str
    opened_at: float
    init: ConversationInitiationClientData | None = None
    received: list[tuple[float, str]] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)
    messages: list[tuple[float, ClientMessage]] = field(default_factory=list)
    user_audio: bytearray = field(default_factory=bytearray)
    user_audio_arrivals: list[tuple[float, int]] = field(default_factory=list)
    """(arrival time, byte offset in user_audio of the chunk's end) for each chunk."""
    turns: list[AgentTurnRecord] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)
    """Protocol observations: speech start/end, missing pongs, violations."""
    tool_results: dict[str, ClientToolResult] = field(default_factory=dict)
    pings_sent: int = 0
    pongs_received: int = 0
    missing_pongs: int = 0
    close_code: int | None = None
    close_reason: str = ""
    closed_by: str = ""
    closed_at: float | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def note(self, text: str) -> None:
        self.notes.append((time.monotonic(), text))
        log.info("[%s] %s", self.conversation_id, text)

    def of_type(self, cls: type[Any]) -> list[Any]:
        return [message for _, message in self.messages if isinstance(message, cls)]


class _Conversation:
    """The server side of one socket."""

    def __init__(self, sim: AgentSimulator, ws: ServerConnection, record: ConversationRecord):
        self.sim = sim
        self.ws = ws
        self.record = record
        self.settings = sim.script.simulator
        self.input_format = AudioFormat.parse(self.settings.user_input_audio_format)
        self.output_format = AudioFormat.parse(self.settings.agent_output_audio_format)
        self.vad = EnergyVad(
            self.input_format.sample_rate,
            threshold_dbfs=self.settings.vad_threshold_dbfs,
            hangover_s=self.settings.end_of_speech_s,
        )
        self.next_event_id = 1
        self.user_turns = 0
        self.speech_started_at = 0.0
        self.user_event_id = 0
        self.last_vad_score_at = 0.0
        self.last_tentative_at = 0.0
        self.last_input_at = time.monotonic()
        self.turn_queue: asyncio.Queue[tuple[TurnScript, str | None]] = asyncio.Queue()
        self.current_turn: AgentTurnRecord | None = None
        self.playback_ends_at = 0.0
        self.interrupt_now = asyncio.Event()
        self.pending_pings: dict[int, float] = {}
        self.last_rtt_ms: int | None = None
        self.tool_waiters: dict[str, asyncio.Future[ClientToolResult]] = {}
        self.closing = False
        self.init_seen = asyncio.Event()

    # ------------------------------------------------------------------ sending

    async def send(self, message: ServerEvent) -> None:
        await self.send_raw(encode(message))

    async def send_raw(self, frame: str) -> None:
        if self.closing:
            return
        self.record.sent.append((time.monotonic(), frame))
        await self.ws.send(frame)

    async def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.record.closed_by = "server"
        await self.ws.close(code, reason)

    async def fail(self, code: int, error_type: str, message: str) -> None:
        await self.send(ErrorEvent(message=message, code=code, error_type=error_type))
        await self.close(code, error_type)

    # ------------------------------------------------------------------ main loop

    async def run(self) -> None:
        settings = self.settings
        if settings.silent:
            await self.receive_loop()
            return
        receiving = asyncio.create_task(self.receive_loop(), name="sim-receive")
        tasks = [receiving]
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.init_seen.wait(), INIT_WAIT_S)
            if receiving.done():
                return
            if not self.init_seen.is_set():
                self.record.note(f"no conversation_initiation_client_data in {INIT_WAIT_S:g} s")
            await self.send(
                ConversationInitiationMetadata(
                    conversation_id=self.record.conversation_id,
                    agent_output_audio_format=self.output_format.name,
                    user_input_audio_format=self.input_format.name,
                )
            )
            greeting = self.greeting()
            if greeting is not None:
                self.turn_queue.put_nowait((greeting, None))
            tasks.append(asyncio.create_task(self.ping_loop(), name="sim-ping"))
            tasks.append(asyncio.create_task(self.turn_loop(), name="sim-turns"))
            await receiving
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    def greeting(self) -> TurnScript | None:
        """The first turn, with the client's first_message override if it sent one."""
        first_turn = self.sim.script.first_turn
        init = self.record.init
        agent = init.conversation_config_override.get("agent") if init else None
        if isinstance(agent, dict) and isinstance(agent.get("first_message"), str):
            if not agent["first_message"]:
                return None  # an empty first message: the agent waits for the user
            return replace(first_turn, response=agent["first_message"], silent=False)
        return None if first_turn.silent else first_turn

    def fill_variables(self, text: str) -> tuple[str, list[str]]:
        """``{{name}}`` replaced from the client's dynamic_variables; the names it lacks."""
        values = self.record.init.dynamic_variables if self.record.init else {}
        missing: list[str] = []

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in values:
                missing.append(name)
                return match.group(0)
            found = values[name]
            return str(found).lower() if isinstance(found, bool) else str(found)

        return VARIABLE.sub(value, text), missing

    async def receive_loop(self) -> None:
        first = True
        async for frame in self.ws:
            now = time.monotonic()
            text = frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            self.record.received.append((now, text))
            self.last_input_at = now
            try:
                message = decode_client(text)
            except ProtocolError as exc:
                self.record.note(f"invalid client message: {exc}")
                await self.fail(1008, "invalid_message", f"Invalid message received: {exc}")
                continue
            self.record.messages.append((now, message))
            if first and not isinstance(message, ConversationInitiationClientData):
                self.record.note(f"first client message was {type(message).__name__}, not init")
            first = False
            await self.on_message(message, now)

    async def on_message(self, message: ClientMessage, now: float) -> None:
        if isinstance(message, ConversationInitiationClientData):
            if self.record.init is not None:
                self.record.note("conversation_initiation_client_data sent twice")
            self.record.init = message
            self.init_seen.set()
        elif isinstance(message, UserAudioChunk):
            self.record.user_audio += message.audio
            self.record.user_audio_arrivals.append((now, len(self.record.user_audio)))
            await self.on_user_audio(message.audio, now)
        elif isinstance(message, Pong):
            sent_at = self.pending_pings.pop(message.event_id, None)
            if sent_at is None:
                self.record.note(f"pong for unknown ping {message.event_id}")
            else:
                self.record.pongs_received += 1
                self.last_rtt_ms = round((now - sent_at) * 1000)
        elif isinstance(message, ClientToolResult):
            self.record.tool_results[message.tool_call_id] = message
            waiter = self.tool_waiters.pop(message.tool_call_id, None)
            if waiter is None:
                self.record.note(f"client_tool_result for unknown call {message.tool_call_id}")
            elif not waiter.done():
                waiter.set_result(message)
        elif isinstance(message, UserMessage):
            self.barge_in(now)
            self.queue_user_turn(message.text or "", now)

    # ------------------------------------------------------------------ listening

    async def on_user_audio(self, audio: bytes, now: float) -> None:
        samples = decode_wire(audio, self.input_format)
        was_speaking = self.vad.speaking
        speaking = self.vad.process(samples)
        if speaking and not was_speaking:
            self.speech_started_at = now
            self.user_event_id = self.take_event_id()
            self.record.note("user speech started")
            self.barge_in(now)
        if speaking and now - self.last_vad_score_at >= self.settings.vad_score_interval_s:
            self.last_vad_score_at = now
            await self.send(VadScore(round(self.vad.score, 3)))
        if speaking and now - self.last_tentative_at >= 0.5:
            self.last_tentative_at = now
            await self.send(
                TentativeUserTranscript(self.transcript_so_far(now), self.user_event_id)
            )
        if was_speaking and not speaking:
            self.record.note("user speech ended")
            await self.send(VadScore(round(self.vad.score, 3)))
            transcript = self.scripted_transcript(now)
            await self.send(UserTranscript(transcript, self.user_event_id))
            self.queue_user_turn(transcript, now)

    def upcoming_turn(self) -> TurnScript:
        turns = self.sim.script.turns
        return turns[self.user_turns] if self.user_turns < len(turns) else TurnScript()

    def scripted_transcript(self, now: float) -> str:
        return self.upcoming_turn().transcript or (
            f"(user spoke for {now - self.speech_started_at:.1f} s)"
        )

    def transcript_so_far(self, now: float) -> str:
        words = self.scripted_transcript(now).split()
        return " ".join(words[: max(1, int((now - self.speech_started_at) * 3))])

    def queue_user_turn(self, transcript: str, now: float) -> None:
        turn = self.upcoming_turn()
        self.user_turns += 1
        self.turn_queue.put_nowait((turn, transcript))

    def take_event_id(self) -> int:
        event_id = self.next_event_id
        self.next_event_id += 1
        return event_id

    def barge_in(self, now: float) -> None:
        turn = self.current_turn
        if turn is not None and turn.interrupted_at is None and now < self.playback_ends_at:
            self.record.note(f"barge-in during agent turn {turn.event_id}")
            self.interrupt_now.set()

    # ------------------------------------------------------------------ speaking

    async def turn_loop(self) -> None:
        while True:
            script, transcript = await self.turn_queue.get()
            await self.play_turn(script, transcript)

    async def play_turn(self, script: TurnScript, transcript: str | None) -> None:
        if script.silent:
            return
        await asyncio.sleep(script.delay_s)
        for frame in script.malformed:
            await self.send_raw(frame)
        if script.error is not None:
            err = script.error
            await self.fail(err.code, err.error_type, err.message)
            return
        if script.close is not None:
            await self.close(script.close.code, script.close.reason)
            return
        event_id = self.take_event_id()
        result_text = ""
        if script.tool_call is not None:
            result_text = await self.call_tool(script, event_id)
        text = script.response or (f"You said: {transcript}" if transcript else "I am listening.")
        text, missing = self.fill_variables(text.replace("{result}", result_text))
        if missing:
            await self.fail(
                1008,
                "missing_dynamic_variable",
                f"Missing required dynamic variables: {', '.join(sorted(set(missing)))}",
            )
            return
        await self.speak(text, event_id, script)
        if script.end_call:
            await self.send(
                AgentToolResponse("end_call", f"end_{event_id}", "system", False, True, event_id)
            )
            await asyncio.sleep(max(0.0, self.playback_ends_at - time.monotonic()) + 0.2)
            await self.close(1000, "end_call")

    async def call_tool(self, script: TurnScript, event_id: int) -> str:
        assert script.tool_call is not None
        call_id = f"call_{event_id}_{secrets.token_hex(3)}"
        waiter: asyncio.Future[ClientToolResult] = asyncio.get_running_loop().create_future()
        self.tool_waiters[call_id] = waiter
        await self.send(
            ClientToolCall(
                script.tool_call.name, call_id, dict(script.tool_call.parameters), event_id
            )
        )
        try:
            result = await asyncio.wait_for(waiter, script.tool_call.timeout_s)
        except TimeoutError:
            self.record.note(f"no client_tool_result for {call_id}")
            return "(the tool did not answer)"
        return result.result

    async def speak(self, text: str, event_id: int, script: TurnScript) -> None:
        settings = self.settings
        rate = self.output_format.sample_rate
        samples = synthesize_speech(text, rate)
        turn = AgentTurnRecord(event_id, text, len(samples), started_at=time.monotonic())
        self.record.turns.append(turn)
        self.current_turn = turn
        self.interrupt_now.clear()
        await self.send(AgentResponse(text, event_id))
        chunk = max(1, rate * settings.audio_chunk_ms // 1000)
        pace = settings.audio_pace if script.audio_pace is None else script.audio_pace
        for start in range(0, len(samples), chunk):
            now = time.monotonic()
            if self.should_interrupt(turn, script, now):
                await self.interrupt(turn, now)
                return
            piece = samples[start : start + chunk]
            await self.send(Audio(encode_wire(piece, self.output_format), event_id))
            now = time.monotonic()
            if turn.first_audio_at is None:
                turn.first_audio_at = now
                self.playback_ends_at = now + len(samples) / rate
            turn.last_audio_at = now
            turn.samples_sent += len(piece)
            if pace > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.interrupt_now.wait(), len(piece) / rate / pace)
        if script.interrupt_after_s is not None and turn.first_audio_at is not None:
            delay = turn.first_audio_at + script.interrupt_after_s - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.interrupt_now.wait(), max(0.0, delay))
            await self.interrupt(turn, time.monotonic())
            return
        if self.interrupt_now.is_set():
            await self.interrupt(turn, time.monotonic())
            return
        turn.completed_at = time.monotonic()
        if settings.send_agent_response_complete:
            await self.send(AgentResponseComplete(event_id))

    def should_interrupt(self, turn: AgentTurnRecord, script: TurnScript, now: float) -> bool:
        if self.interrupt_now.is_set():
            return True
        return (
            script.interrupt_after_s is not None
            and turn.first_audio_at is not None
            and now - turn.first_audio_at >= script.interrupt_after_s
        )

    async def interrupt(self, turn: AgentTurnRecord, now: float) -> None:
        turn.interrupted_at = now
        self.playback_ends_at = now
        self.interrupt_now.clear()
        await self.send(Interruption(turn.event_id))
        heard = 0.0 if turn.first_audio_at is None else now - turn.first_audio_at
        rate = self.output_format.sample_rate
        words = turn.text.split()
        kept = round(len(words) * min(1.0, heard * rate / max(1, turn.audio_samples)))
        await self.send(AgentResponseCorrection(turn.text, " ".join(words[:kept]), turn.event_id))
        self.record.note(f"interrupted agent turn {turn.event_id} after {heard:.2f} s")

    # ------------------------------------------------------------------ keep-alive

    async def ping_loop(self) -> None:
        settings = self.settings
        event_id = 0
        while True:
            await asyncio.sleep(settings.ping_interval_s)
            now = time.monotonic()
            for ping_id, sent_at in list(self.pending_pings.items()):
                if now - sent_at >= settings.pong_timeout_s:
                    del self.pending_pings[ping_id]
                    self.record.missing_pongs += 1
                    self.record.note(f"no pong for ping {ping_id}")
                    if settings.close_on_missing_pong:
                        await self.fail(1002, "websocket_disconnect", "Client missed a ping")
                        return
            if now - self.last_input_at >= settings.input_timeout_s:
                await self.fail(1002, "transport_receive_timeout", "No user input received")
                return
            event_id += 1
            self.pending_pings[event_id] = now
            self.record.pings_sent += 1
            await self.send(Ping(event_id, self.last_rtt_ms))


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
        conversation = _Conversation(self, ws, record)
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
