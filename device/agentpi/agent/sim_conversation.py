"""The simulator's server side of one socket: the agent's turns, its audio, pings, barge-in.

What reaches the client, which overrides are refused, which client tools exist and the agent's
own timers (turn timeout, soft timeout, silence hang-up, maximum duration) follow the agent's
definition, as the platform's do.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from agentpi.agent.definition import CLIENT_EVENTS, AgentDefinition, refused_override
from agentpi.agent.script import (
    McpCallScript,
    ServerToolScript,
    SimulatorScript,
    TurnScript,
    fill_variables,
    greeting,
)
from agentpi.agent.sim_records import AgentTurnRecord, ConversationRecord
from agentpi.agent.sim_timers import agent_timers
from agentpi.agent.voice import synthesize_speech
from agentpi.audio.convert import decode_wire, encode_wire
from agentpi.audio.formats import AudioFormat
from agentpi.audio.speech_vad import SpeechVad
from agentpi.protocol.messages import (
    AgentResponse,
    AgentResponseComplete,
    AgentResponseCorrection,
    AgentToolRequest,
    AgentToolResponse,
    Audio,
    ClientMessage,
    ClientToolCall,
    ClientToolResult,
    ContextualUpdate,
    ConversationInitiationClientData,
    ConversationInitiationMetadata,
    ErrorEvent,
    Feedback,
    Interruption,
    McpToolApprovalResult,
    McpToolCall,
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

INIT_WAIT_S = 5.0
"""How long the server waits for conversation_initiation_client_data before going on without."""


class SimulatedConversation:
    """The server side of one socket."""

    def __init__(
        self,
        script: SimulatorScript,
        definition: AgentDefinition,
        ws: ServerConnection,
        record: ConversationRecord,
    ):
        self.script = script
        self.definition = definition
        self.client_events = definition.client_events
        self.ws = ws
        self.record = record
        self.settings = script.simulator
        self.input_format = AudioFormat.parse(definition.input_format)
        self.output_format = AudioFormat.parse(definition.output_format)
        # a speech VAD, as the platform's is: a fan is not a voice, and does not barge in
        self.vad = SpeechVad(
            self.input_format.sample_rate, hangover_s=self.settings.end_of_speech_s
        )
        self.next_event_id = 1
        self.user_turns = 0
        self.speech_started_at = 0.0
        self.user_event_id = 0
        self.last_vad_score_at = 0.0
        self.last_tentative_at = 0.0
        self.last_input_at = time.monotonic()
        self.user_quiet_since = time.monotonic()
        self.reprompted = False
        self.turn_busy = False
        self.turn_queue: asyncio.Queue[tuple[TurnScript, str | None]] = asyncio.Queue()
        self.current_turn: AgentTurnRecord | None = None
        self.playback_ends_at = 0.0
        self.interrupt_now = asyncio.Event()
        self.pending_pings: dict[int, float] = {}
        self.last_rtt_ms: int | None = None
        self.tool_waiters: dict[str, asyncio.Future[ClientToolResult]] = {}
        self.approval_waiters: dict[str, asyncio.Future[bool]] = {}
        self.closing = False
        self.init_seen = asyncio.Event()

    # ------------------------------------------------------------------ sending

    async def send(self, message: ServerEvent) -> None:
        kind = message.type
        if kind in CLIENT_EVENTS and kind not in self.client_events:
            self.record.withheld[kind] = self.record.withheld.get(kind, 0) + 1
            return
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
            if not await self.accept_overrides():
                await receiving
                return
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
            tasks.append(asyncio.create_task(agent_timers(self), name="sim-timers"))
            await receiving
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await task

    def release(self) -> None:
        """Give back what the conversation borrowed (its VAD's detector)."""
        self.vad.close()

    async def accept_overrides(self) -> bool:
        """An override the agent does not allow ends the conversation before it starts, as the
        platform does; an allowed client_events override changes what is sent."""
        override = self.record.init.conversation_config_override if self.record.init else {}
        refused = refused_override(
            override, self.definition.allowed_overrides, self.settings.client_events_override
        )
        if refused is not None:
            message = f"Override for field '{refused}' is not allowed by config"
            self.record.note(f"refused: {message}")
            await self.fail(1008, "override_error", message)
            return False
        events = override.get("conversation", {}).get("client_events")
        if isinstance(events, list):
            self.client_events = frozenset(str(e) for e in events)
        return True

    def greeting(self) -> TurnScript | None:
        return greeting(self.script.first_turn, self.definition.first_message, self.record.init)

    def fill_variables(self, text: str) -> tuple[str, list[str]]:
        return fill_variables(text, self.record.init)

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
            self.user_took_the_floor(now)
            self.barge_in(now)
            self.queue_user_turn(message.text or "", now)
        elif isinstance(message, McpToolApprovalResult):
            self.record.approvals.append((now, message))
            answer = self.approval_waiters.pop(message.tool_call_id, None)
            if answer is None:
                self.record.note(f"approval for unknown or answered call {message.tool_call_id}")
            elif not answer.done():
                answer.set_result(message.is_approved)
        elif isinstance(message, ContextualUpdate):
            self.record.keep_context(message)
        elif isinstance(message, Feedback):
            rated = {turn.event_id for turn in self.record.turns}
            if message.event_id not in rated:
                self.record.note(f"feedback on {message.event_id}, which is no agent turn")

    # ------------------------------------------------------------------ listening

    async def on_user_audio(self, audio: bytes, now: float) -> None:
        samples = decode_wire(audio, self.input_format)
        was_speaking = self.vad.speaking
        speaking = self.vad.process(samples)
        if speaking:
            self.user_took_the_floor(now)
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

    def user_took_the_floor(self, now: float) -> None:
        """The agent's silence timers start again from here (a turn timeout may re-prompt)."""
        self.user_quiet_since = now
        self.reprompted = False

    def upcoming_turn(self) -> TurnScript:
        turns = self.script.turns
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
            self.turn_busy = True
            try:
                await self.play_turn(script, transcript)
            finally:
                self.turn_busy = False

    async def play_turn(self, script: TurnScript, transcript: str | None) -> None:
        if script.silent:
            return
        soft = self.definition.soft_timeout_s
        if 0 < soft < script.delay_s and self.definition.soft_timeout_message:
            await asyncio.sleep(soft)
            await self.speak(self.definition.soft_timeout_message, self.take_event_id(), script)
            await asyncio.sleep(script.delay_s - soft)  # the reply comes when it is ready
        else:
            await asyncio.sleep(script.delay_s)
        for frame in script.malformed:
            await self.send_raw(frame)
        for event in script.scripted_events():
            await self.send(event)
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
        if script.server_tool is not None:
            result_text = await self.run_server_tool(script.server_tool, event_id)
        if script.mcp_call is not None:
            result_text = await self.call_mcp(script.mcp_call, event_id)
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
        declared = self.definition.client_tools.get(script.tool_call.name)
        if declared is None:
            self.record.note(f"the agent declares no client tool {script.tool_call.name}")
            return "(the agent has no such tool)"
        call_id = f"call_{event_id}_{secrets.token_hex(3)}"
        waiter: asyncio.Future[ClientToolResult] = asyncio.get_running_loop().create_future()
        self.tool_waiters[call_id] = waiter
        await self.send(
            ClientToolCall(
                script.tool_call.name, call_id, dict(script.tool_call.parameters), event_id
            )
        )
        try:
            timeout = min(script.tool_call.timeout_s, declared.timeout_s)
            result = await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            self.record.note(f"no client_tool_result for {call_id}")
            return "(the tool did not answer)"
        return result.result

    async def run_server_tool(self, tool: ServerToolScript, event_id: int) -> str:
        call_id = f"tool_{event_id}_{secrets.token_hex(3)}"
        await self.send(AgentToolRequest(tool.name, call_id, tool.tool_type, event_id))
        await asyncio.sleep(tool.duration_s)
        await self.send(
            AgentToolResponse(tool.name, call_id, tool.tool_type, tool.is_error, True, event_id)
        )
        return "failed" if tool.is_error else "done"

    async def call_mcp(self, call: McpCallScript, event_id: int) -> str:
        """The platform's MCP flow: the request, the approval it waits for (declined when
        none comes in time), then loading and its outcome, and the tool response."""
        call_id = f"mcp_{event_id}_{secrets.token_hex(3)}"
        await self.send(AgentToolRequest(call.name, call_id, "mcp", event_id))

        def state(name: str, **extra: Any) -> McpToolCall:
            stamp = datetime.now(UTC).isoformat()
            base = (call.service_id, call_id, call.name, name, stamp, dict(call.parameters))
            return McpToolCall(*base, **extra)

        outcome = "done"
        if call.approval:
            answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
            self.approval_waiters[call_id] = answer
            await self.send(
                state("awaiting_approval", approval_timeout_secs=call.approval_timeout_s)
            )
            try:
                approved = await asyncio.wait_for(answer, call.approval_timeout_s)
            except TimeoutError:
                self.approval_waiters.pop(call_id, None)
                self.record.note(f"no approval for {call_id} in {call.approval_timeout_s} s")
                approved, outcome = False, "no answer"
            if not approved:
                outcome = "declined" if outcome == "done" else outcome
                await self.send(state("failure", error_message=f"the user {outcome}"))
                await self.send(AgentToolResponse(call.name, call_id, "mcp", True, False, event_id))
                return outcome
        await self.send(state("loading"))
        await asyncio.sleep(call.duration_s)
        if call.fails:
            await self.send(state("failure", error_message="the tool failed"))
            outcome = "failed"
        else:
            await self.send(state("success", result=({"type": "text", "text": "ok"},)))
        await self.send(AgentToolResponse(call.name, call_id, "mcp", call.fails, True, event_id))
        return outcome

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
            alignment = (
                self.alignment(text, start, len(piece), len(samples))
                if settings.alignment
                else None
            )
            await self.send(Audio(encode_wire(piece, self.output_format), event_id, alignment))
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
        await self.send(AgentResponseComplete(event_id))

    def alignment(self, text: str, start: int, count: int, total: int) -> dict[str, Any] | None:
        """The characters of ``text`` that samples ``start`` to ``start + count`` speak, each
        given an even share of the reply's time (the simulated voice has no phonemes)."""
        rate = self.output_format.sample_rate
        first = -(-len(text) * start // total)  # the characters that start in the chunk
        last = -(-len(text) * (start + count) // total)
        if last <= first:
            return None
        share_ms = 1000 * total / rate / len(text)
        offset_ms = 1000 * start / rate
        return {
            "chars": list(text[first:last]),
            "char_start_times_ms": [round(i * share_ms - offset_ms) for i in range(first, last)],
            "char_durations_ms": [round(share_ms)] * (last - first),
        }

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
