"""One open conversation: the tasks that move data between the adapters and one session.

All conversation rules live in ``ConversationSession``; a run only feeds it (socket frames, mic
chunks, the clock, tool results, the speaker running dry) and carries out its actions in order.
It is given what it needs (``RunContext``), not the whole device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np

from agentpi import events as ev
from agentpi.agent.client import AgentConnection, Closed
from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.convert import WireDecoder, WireEncoder, apply_gain
from agentpi.audio.formats import AudioFormat
from agentpi.audio.gating import MicGate, PushToTalk
from agentpi.audio.speech_vad import SpeechVad
from agentpi.config.document import Config
from agentpi.control.requests import Opening
from agentpi.device.initiation import auto_keywords, initiation_data, start_context
from agentpi.events import EventBus
from agentpi.protocol import actions as act
from agentpi.protocol.failures import failure_of
from agentpi.protocol.messages import ClientToolCall, ProtocolError
from agentpi.protocol.reports import aligned_words
from agentpi.protocol.session import NORMAL_CLOSE, ConversationSession
from agentpi.protocol.timers import ApprovalPolicy, SessionSettings
from agentpi.protocol.turns import TurnTimer
from agentpi.states import DeviceState
from agentpi.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

TICK_S = 0.05
"""The session's timers are checked this often before audio flows; after, with each microphone
chunk (the mic loop is awake then anyway)."""
FALLBACK_TICK_S = 0.25
"""While chunks flow, the timer only wakes this often, in case the microphone stalls."""
MAX_WORDS_DUE = 256
"""Aligned words waiting for the speaker to reach them (a chunk's each); past it, they are
shown at once."""
GOODBYE_S = 2.0
"""How long a close frame after a device failure may take: the link may be what failed."""


@dataclass(frozen=True)
class RunContext:
    """What a conversation needs from the device around it."""

    config: Config
    device_id: str
    events: EventBus
    mic: Microphone
    sink: AudioSink
    tools: ToolRegistry
    gate: MicGate
    show: Callable[[DeviceState], None]
    ask: Callable[[], None]
    """The question cue (an MCP tool waits for a yes or no), into the open speaker."""
    muted: Callable[[], bool]
    """The microphone is muted (the display owns it; the control surface sets it)."""
    volume_gain: Callable[[], float]
    mic_ok: Callable[[], bool]
    """False while the microphone is being recovered (which reports its own failure)."""


class ConversationRun:
    """The tasks of one open conversation, feeding one session."""

    def __init__(
        self,
        context: RunContext,
        connection: AgentConnection,
        reader: MicReader,
        user_message: str | None = None,
        triggered_at: float | None = None,
        opening: Opening | None = None,
        started_by: str = "",
    ) -> None:
        self.context = context
        self.connection = connection
        self.reader = reader
        self.user_message = user_message
        self.opening = opening
        self.started_by = started_by
        """What started it (wake, button, immediate, control)."""
        self.turn_timer = TurnTimer(triggered_at)
        config = context.config
        conv = config.conversation
        init = initiation_data(conv, context.device_id, auto_keywords(config))
        mcp = config.tools.mcp
        approvals = ApprovalPolicy(mcp.approve, mcp.deny, mcp.approval_margin_s)
        self.session = ConversationSession(SessionSettings.within(conv, init, approvals))
        self.ended: asyncio.Future[act.ConversationEnded] = (
            asyncio.get_running_loop().create_future()
        )
        self.audio_ready = asyncio.Event()
        self.decoder: WireDecoder | None = None
        self.input_format: AudioFormat | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed = False
        tools = context.config.tools
        self._tool_slots = asyncio.Semaphore(tools.max_running)
        self._tools_in_flight = 0
        """Tool calls running or waiting for a slot (bounded: max_running + max_waiting)."""
        self._refused_before = context.sink.refused_samples
        self._backlog_reported = False
        self._ticked_at = 0.0
        self._pressed_at = 0.0
        self._press_answers_approval = False
        self._words_due: set[asyncio.TimerHandle] = set()
        self._rating_asked_for: int | None = None
        self._first_of_two: asyncio.TimerHandle | None = None
        """A press that ends the conversation unless a second comes (``button.double_press``)."""

    @property
    def mic_muted(self) -> bool:
        """Send silence: the microphone is muted, and no deliberate press started this one."""
        return self.context.muted() and self.started_by != "button"

    async def run(self) -> act.ConversationEnded:
        now = time.monotonic()
        await self.execute(self.session.connection_opened(now))
        # held by the session until the server's metadata, then sent in this order
        context = start_context(self.context.config.context, self.context.device_id)
        if context:
            await self.execute(self.session.contextual_update(context, now))
        opening = self.opening
        if opening is not None and opening.instructions:
            await self.execute(self.session.contextual_update(opening.instructions, now))
        if opening is not None and opening.announcement:
            await self.execute(self.session.end_after_turn(now))  # said it: that is all
        if self.user_message:
            await self.execute(self.session.user_message(self.user_message, now))
        for coro in (self.receive_loop(), self.mic_loop(), self.tick_loop()):
            self.spawn(coro)
        try:
            return await self.ended
        finally:
            if self._first_of_two is not None:
                self._first_of_two.cancel()
            self._forget_words()
            for task in list(self.tasks):
                task.cancel()
            for task in list(self.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self.failed:
                # said goodbye here, not in a task: the tasks were all just cancelled
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.connection.close(NORMAL_CLOSE, "device failure"), GOODBYE_S
                    )
            await self.context.sink.stop()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def step_soon(self, step: Callable[[], list[act.Action]]) -> None:
        """Feed the session from a task of its own: ``step`` runs when the task does, so its
        actions follow whatever happened meanwhile (a close, a drain), never an older view."""

        async def run_step() -> None:
            await self.execute(step())

        self.spawn(run_step())

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        if isinstance(exc, AudioDeviceError):
            if self.context.mic_ok():  # not the microphone, whose recovery reports it
                self.context.events.publish(ev.AudioError(str(exc)))
            self.fail(str(exc))
            return
        log.error("conversation task failed: %r", exc)
        self.fail(f"internal error: {exc}")

    def fail(self, error: str) -> None:
        """End the conversation now because the device failed (the agent is told)."""
        if not self.ended.done():
            self.failed = True
            self.ended.set_result(act.ConversationEnded(None, "device failure", "client", error))

    async def receive_loop(self) -> None:
        while not self.ended.done():
            item = await self.connection.receive()
            now = time.monotonic()
            if isinstance(item, Closed):
                closed = self.session.connection_closed(item.code, item.reason, now, item.by_device)
                await self.execute(closed)
                return
            if isinstance(item, ProtocolError):
                await self.execute(self.session.receive_invalid(item, now))
                continue
            await self.execute(self.session.receive(item, now))

    async def start_audio(self, formats: act.StartAudio) -> None:
        loop = asyncio.get_running_loop()

        def drained() -> None:
            loop.call_soon(self._on_drained)

        rate = await self.context.sink.start(formats.output_format.sample_rate, drained)
        self.decoder = WireDecoder(formats.output_format, rate)
        self.input_format = formats.input_format
        self.audio_ready.set()

    def _on_drained(self) -> None:
        self.step_soon(lambda: self.session.playback_drained(time.monotonic()))

    async def mic_loop(self) -> None:
        await self.audio_ready.wait()
        assert self.input_format is not None
        mic = self.context.mic
        encoder = WireEncoder(mic.sample_rate, self.input_format)
        with SpeechVad(mic.sample_rate) as vad:
            await self._stream_mic(encoder, vad)

    async def _stream_mic(self, encoder: WireEncoder, vad: SpeechVad) -> None:
        mic = self.context.mic
        reader = self.reader
        gate = self.context.gate
        lost = 0
        while not self.ended.done():
            chunk = await reader.read(mic.chunk_samples)
            if reader.lost != lost:
                self.context.events.publish(ev.AudioDropped(reader.lost - lost))
                lost = reader.lost
            if self.mic_muted:
                chunk = np.zeros_like(chunk)  # nothing heard leaves the device
            chunk, speaking = gate.gate(chunk, vad.process(chunk))
            wire = encoder.encode(chunk)
            now = time.monotonic()
            self.turn_timer.user_speech(speaking, now, vad.hangover_s)
            if wire:
                score = vad.score if np.count_nonzero(chunk) else 0.0  # 0: the gate muted it
                await self.execute(self.session.mic_audio(wire, speaking, now, score))
            await self._tick(now)

    def from_device(self, text: str, typed: bool, context_id: str | None = None) -> str | None:
        """A user_message (typed) or contextual_update (with ``context_id``, one that replaces
        the last of that id) into this conversation."""
        if self.ended.done() or not self.session.accepts_input:
            return "the conversation is ending"
        if typed:
            self.step_soon(lambda: self.session.user_message(text, time.monotonic()))
        else:
            self.step_soon(
                lambda: self.session.contextual_update(text, time.monotonic(), context_id)
            )
        return None

    def answer_approval(
        self, approved: bool, by: str, tool_call_id: str | None = None
    ) -> str | None:
        """Yes or no to the MCP tool waiting for approval (the oldest, or ``tool_call_id``)."""
        waiting = self.session.approvals_waiting
        if self.ended.done() or not waiting:
            return "no tool is waiting for approval"
        if tool_call_id is not None and tool_call_id not in waiting:
            return f"no tool call {tool_call_id!r} is waiting; waiting: {', '.join(waiting)}"
        self.step_soon(
            lambda: self.session.answer_approval(approved, time.monotonic(), by, tool_call_id)
        )
        return None

    def feedback(self, score: str) -> str | None:
        """Like or dislike the agent's last answer."""
        if self.ended.done() or not self.session.accepts_input:
            return "the conversation is ending"
        event_id = self.session.rateable_event_id
        if event_id is None or event_id == self._rating_asked_for:
            return "no answer to rate (none yet, or the last one is rated already)"
        self._rating_asked_for = event_id  # a second request before the first ran is refused
        self.step_soon(lambda: self.session.feedback(score, time.monotonic()))
        return None

    def end_after_turn(self) -> None:
        self.step_soon(lambda: self.session.end_after_turn(time.monotonic()))

    def request_end(self, reason: str) -> None:
        self.step_soon(lambda: self.session.request_end(reason, time.monotonic()))

    def button_pressed(self) -> None:
        """While a tool waits for approval the press answers it (its release says which);
        otherwise push-to-talk talks, and toggle ends (or, with ``double_press``, waits to see
        whether a second press rates the answer instead)."""
        self._pressed_at = time.monotonic()
        if self.session.approvals_waiting:
            self._press_answers_approval = True
            return
        gate = self.context.gate
        if isinstance(gate, PushToTalk):
            gate.held = True
            self.context.events.publish(ev.ButtonAction("talk"))
            return
        button = self.context.config.button
        if not button.double_press:
            self._single_press()
        elif self._first_of_two is not None:
            self._first_of_two.cancel()
            self._first_of_two = None
            self.context.events.publish(ev.ButtonAction("double"))
            refused = self.feedback(button.double_press)
            if refused is not None:
                self.context.events.publish(ev.ControlError(f"feedback: {refused}"))
        else:
            loop = asyncio.get_running_loop()
            self._first_of_two = loop.call_later(button.double_press_s, self._single_press)

    def _single_press(self) -> None:
        self._first_of_two = None
        self.context.events.publish(ev.ButtonAction("end"))
        self.request_end("button pressed")

    def button_released(self) -> None:
        if self._press_answers_approval:
            self._press_answers_approval = False
            held_s = time.monotonic() - self._pressed_at
            approved = held_s < self.context.config.button.long_press_s
            self.context.events.publish(ev.ButtonAction("approve" if approved else "decline"))
            self.answer_approval(approved, "button")
            return
        gate = self.context.gate
        if isinstance(gate, PushToTalk) and gate.held:
            gate.held = False
            self.context.events.publish(ev.ButtonAction("released"))

    async def tick_loop(self) -> None:
        while not self.ended.done():
            await asyncio.sleep(FALLBACK_TICK_S if self.audio_ready.is_set() else TICK_S)
            now = time.monotonic()
            if now - self._ticked_at >= TICK_S:
                await self._tick(now)

    async def _tick(self, now: float) -> None:
        self._ticked_at = now
        await self.execute(self.session.tick(now))

    async def take_tool_call(self, call: ClientToolCall) -> None:
        """Admit a tool call (a task of its own) or, past the bound, answer it at once from here:
        a server that floods calls then waits on its own answers, and no task piles up."""
        limits = self.context.config.tools
        if self._tools_in_flight >= limits.max_running + limits.max_waiting:
            busy = (
                f"The device is busy: {self._tools_in_flight} tool calls are already running "
                f"or waiting, so {call.tool_name} was not run. Try again in a moment."
            )
            await self.tool_done(call, busy, True)
            return
        self._tools_in_flight += 1  # counted now, before the task first runs
        self.spawn(self.run_tool(call))

    async def run_tool(self, call: ClientToolCall) -> None:
        try:
            async with self._tool_slots:
                result, is_error = await self.context.tools.run(call.tool_name, call.parameters)
        finally:
            self._tools_in_flight -= 1
        await self.tool_done(call, result, is_error)

    async def tool_done(self, call: ClientToolCall, result: str, is_error: bool) -> None:
        now = time.monotonic()
        await self.execute(self.session.tool_finished(call.tool_call_id, result, is_error, now))

    def summary(
        self, ended: act.ConversationEnded, duration_s: float, agent_id: str | None
    ) -> ev.ConversationEnded:
        """The conversation_ended line (the journal's summary)."""
        timer = self.turn_timer
        return ev.ConversationEnded(
            conversation_id=self.session.conversation_id,
            reason=ended.reason,
            code=ended.code,
            closed_by=ended.closed_by,
            error=ended.error,
            duration_s=round(duration_s, 3),
            turns=self.session.turns,
            ping_ms=self.session.median_ping_ms(),
            greeting_ms=timer.greeting_ms,
            turn_ms_median=timer.median_ms,
            turn_ms_worst=timer.worst_ms,
            agent_id=agent_id,
            failure=failure.name if (failure := failure_of(ended)) is not None else None,
        )

    def _time_turn(self) -> float:
        """Before agent audio is queued: it reaches the speaker after what is queued already
        (returned, in seconds)."""
        sink = self.context.sink
        if sink.playback_log is not None:
            sink.playback_log.chime_over()
        queued_s = sink.buffered_samples / sink.sample_rate if sink.sample_rate else 0.0
        turn = self.turn_timer.agent_audio(time.monotonic() + queued_s)
        if turn is not None:
            self.context.events.publish(turn)
        return queued_s

    def _pace_words(self, play: act.PlayAudio, queued_s: float) -> None:
        """The chunk's words go out when the speaker reaches them, not when they arrive."""
        aligned = aligned_words(play.alignment)
        if aligned is None:
            return
        text, start_s = aligned
        words = ev.AgentWords(text, play.event_id)
        if len(self._words_due) >= MAX_WORDS_DUE:
            self.context.events.publish(words)
            return

        def due() -> None:
            self._words_due.discard(handle)
            self.context.events.publish(words)

        handle = asyncio.get_running_loop().call_later(queued_s + start_s, due)
        self._words_due.add(handle)

    def _forget_words(self) -> None:
        """Words the speaker will not play now (an interruption) are not shown."""
        for handle in self._words_due:
            handle.cancel()
        self._words_due.clear()

    def _report_backlog(self) -> None:
        """Once a conversation: the server sent more audio than the speaker may hold."""
        refused = self.context.sink.refused_samples - self._refused_before
        if refused and not self._backlog_reported:
            self._backlog_reported = True
            backlog_s = self.context.config.audio.max_backlog_s
            self.context.events.publish(ev.PlaybackOverflow(refused, backlog_s))

    async def execute(self, actions: list[act.Action]) -> None:
        events = self.context.events
        for action in actions:
            if isinstance(action, act.Send):
                await self.connection.send(action.message)
            elif isinstance(action, act.PlayAudio):
                if self.decoder is not None:
                    audio = self.decoder.decode(action.audio)
                    self._pace_words(action, self._time_turn())
                    self.context.sink.write(apply_gain(audio, self.context.volume_gain()))
                    self._report_backlog()
            elif isinstance(action, act.FlushPlayback):
                self._forget_words()
                events.publish(ev.PlaybackFlushed(self.context.sink.flush()))
            elif isinstance(action, act.SetState):
                self.context.show(action.state)
            elif isinstance(action, act.Notify):
                events.publish(action.event)
            elif isinstance(action, act.StartAudio):
                await self.start_audio(action)
            elif isinstance(action, act.RunTool):
                await self.take_tool_call(action.call)
            elif isinstance(action, act.AskApproval):
                self.context.ask()
            elif isinstance(action, act.CloseConnection):
                self.spawn(self.connection.close(action.code, action.reason))
            elif isinstance(action, act.ConversationEnded) and not self.ended.done():
                self.ended.set_result(action)
