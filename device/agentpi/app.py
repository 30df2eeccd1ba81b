"""The orchestrator: trigger -> connect -> converse -> close -> idle, and again.

All conversation rules live in ``ConversationSession``; this module only moves data between it
and the adapters (microphone, speaker, socket, tools, event stream) and carries out its actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentpi.agent.client import (
    AgentConnectError,
    AgentConnection,
    Closed,
    conversation_url,
    fetch_signed_url,
    redact_url,
)
from agentpi.audio.backend import AudioDeviceError, AudioSink, AudioSource
from agentpi.audio.convert import Int16Array, WireDecoder, WireEncoder
from agentpi.audio.vad import EnergyVad
from agentpi.config import Config, Secret
from agentpi.events import EventBus
from agentpi.leds.driver import LedController
from agentpi.protocol.messages import ProtocolError
from agentpi.protocol.session import (
    Action,
    CloseConnection,
    ConversationEnded,
    ConversationSession,
    FlushPlayback,
    Notify,
    PlayAudio,
    RunTool,
    Send,
    SessionSettings,
    SetState,
)
from agentpi.protocol.states import DeviceState, check_transition
from agentpi.tools import ToolRegistry
from agentpi.triggers.button import ButtonInput
from agentpi.wake.listener import WakeListener

log = logging.getLogger(__name__)

TICK_S = 0.05
ERROR_HOLD_S = 1.0


@dataclass(frozen=True)
class Trigger:
    """What started a conversation."""

    source: str  # "wake" | "button" | "immediate"
    detail: dict[str, Any] = field(default_factory=dict)
    lead_in: Int16Array | None = None
    """Audio already read past the trigger point (after the wake word): sent first."""


@dataclass(frozen=True)
class Outcome:
    """How one conversation ended."""

    ok: bool
    reason: str
    code: int | None = None
    error: str | None = None


class Device:
    def __init__(
        self,
        config: Config,
        source: AudioSource,
        sink: AudioSink,
        events: EventBus | None = None,
        api_key: Secret | None = None,
        tools: ToolRegistry | None = None,
        leds: LedController | None = None,
        wake: WakeListener | None = None,
        button: ButtonInput | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.sink = sink
        self.events = events or EventBus()
        self.api_key = api_key
        self.tools = tools or ToolRegistry()
        self.leds = leds
        if leds is not None:
            leds.attach(self.events)
        self.wake = wake
        self.button = button
        modes = config.trigger.modes
        if "wake" in modes and wake is None:
            raise ValueError('trigger "wake" needs a WakeListener')
        if "button" in modes and button is None:
            raise ValueError('trigger "button" needs a ButtonInput')
        self.state = DeviceState.IDLE
        self.conversations = 0
        self._triggers: asyncio.Queue[Trigger | None] = asyncio.Queue()
        self._run: _ConversationRun | None = None
        self._immediate: asyncio.TimerHandle | None = None
        # one worker: wake-word inference, in order, off the event loop
        self._inference = ThreadPoolExecutor(1, thread_name_prefix="wake")

    def set_state(self, new: DeviceState) -> None:
        if new is self.state:
            return
        check_transition(self.state, new)
        self.state = new
        self.events.emit("state", state=new.value)

    async def run(self, once: bool = False) -> int:
        """Run until done: after one conversation with ``once``, or when a file input ends."""
        modes = self.config.trigger.modes
        loop = asyncio.get_running_loop()
        if self.button is not None:
            self.button.attach(loop, self._button_pressed, self._button_released)
        await self.source.start()
        if self.leds is not None:
            self.leds.start()
        self.events.emit("state", state=self.state.value)
        if "wake" in modes and self.wake is not None:
            self.events.emit("listening_for_wake_word", engine=self.wake.engine_name)
        if "immediate" in modes:
            self._triggers.put_nowait(Trigger("immediate"))
        outcome = Outcome(True, "not started")
        try:
            while True:
                trigger = await self._next_trigger()
                if trigger is None:
                    break
                self.events.emit("trigger", source=trigger.source, **trigger.detail)
                outcome = await self.converse(trigger)
                if once:
                    break
                if "immediate" in modes:
                    if self.source.exhausted:
                        break
                    self._immediate = loop.call_later(
                        self.config.trigger.restart_pause_s,
                        self._triggers.put_nowait,
                        Trigger("immediate"),
                    )
        finally:
            if self._immediate is not None:
                self._immediate.cancel()
            if self.button is not None:
                self.button.close()
            if self.leds is not None:
                self.leds.stop()
            self._inference.shutdown(wait=False, cancel_futures=True)
            await self.sink.close()
            await self.source.close()
        return 0 if outcome.ok else 1

    async def _next_trigger(self) -> Trigger | None:
        """Wait, listening for the wake word if it is on, until something starts a
        conversation; None when a file input has ended with nothing left to do."""
        listening = asyncio.create_task(self._listen()) if self.wake is not None else None
        try:
            return await self._triggers.get()
        finally:
            if listening is not None:
                listening.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listening

    async def _listen(self) -> None:
        assert self.wake is not None
        wake = self.wake
        loop = asyncio.get_running_loop()
        if self.conversations:
            await loop.run_in_executor(self._inference, wake.reset)
            self.source.discard_buffered()  # the end of the last conversation is not wake material
        while True:
            if self.source.exhausted:
                self._triggers.put_nowait(None)
                return
            chunk = await self.source.read()
            if not wake.accept(chunk):
                continue
            detection = await loop.run_in_executor(self._inference, wake.detect)
            if detection is not None:
                detail = {
                    "model": detection.model,
                    "score": round(detection.score, 3),
                    "audio_s": round(detection.audio_s, 3),
                }
                self._triggers.put_nowait(Trigger("wake", detail, wake.after_detection()))
                return

    def _button_pressed(self) -> None:
        if self._run is not None:
            self._run.button_pressed()
        elif self.state is DeviceState.IDLE:
            self._triggers.put_nowait(Trigger("button"))
        # connecting or showing an error: a press there would only queue a stale conversation

    def _button_released(self) -> None:
        if self._run is not None:
            self._run.button_released()

    async def converse(self, trigger: Trigger | None = None) -> Outcome:
        """One whole conversation, from the trigger to idle again."""
        trigger = trigger or Trigger("immediate")
        self.conversations += 1
        if trigger.source == "wake":
            # the listener read up to the wake word; the rest is still in the source
            self.set_state(DeviceState.WAKE_DETECTED)
        else:
            self.source.discard_buffered()  # only what is said from the trigger on
        self.set_state(DeviceState.CONNECTING)
        started = time.monotonic()
        try:
            url = await self._resolve_url()
            self.events.emit("connecting", url=redact_url(url))
            connection = await AgentConnection.open(url, self.config.agent.connect_timeout_s)
        except AgentConnectError as exc:
            self.events.emit("connect_failed", message=str(exc))
            await self._show_error()
            return Outcome(False, "connect failed", error=str(exc))
        self.events.emit("connected")
        run = _ConversationRun(self, connection, trigger)
        self._run = run
        try:
            ended = await run.run()
        finally:
            self._run = None
        self.events.emit(
            "conversation_ended",
            conversation_id=run.session.metadata.conversation_id if run.session.metadata else None,
            reason=ended.reason,
            code=ended.code,
            closed_by=ended.closed_by,
            error=ended.error,
            duration_s=round(time.monotonic() - started, 3),
            turns=run.session.turns,
        )
        if ended.error:
            await self._show_error()
        return Outcome(ended.error is None, ended.reason, ended.code, ended.error)

    async def _resolve_url(self) -> str:
        agent = self.config.agent
        if self.api_key is None:
            return conversation_url(agent.url, agent.agent_id)
        return await fetch_signed_url(
            agent.url, agent.agent_id, self.api_key.reveal(), agent.connect_timeout_s
        )

    async def _show_error(self) -> None:
        self.set_state(DeviceState.ERROR)
        await asyncio.sleep(ERROR_HOLD_S)
        self.set_state(DeviceState.IDLE)


class _ConversationRun:
    """The tasks of one open conversation, feeding one session."""

    def __init__(self, device: Device, connection: AgentConnection, trigger: Trigger) -> None:
        self.device = device
        self.connection = connection
        self.trigger = trigger
        self.push_to_talk = device.button is not None and (
            device.config.trigger.button_mode == "hold"
        )
        self.held = self.push_to_talk and device.button is not None and device.button.is_held
        conv = device.config.conversation
        self.session = ConversationSession(
            SessionSettings(
                silence_close_s=conv.silence_close_s,
                metadata_timeout_s=conv.metadata_timeout_s,
                idle_close_s=conv.idle_close_s,
            )
        )
        self.ended: asyncio.Future[ConversationEnded] = asyncio.get_running_loop().create_future()
        self.audio_ready = asyncio.Event()
        self.decoder: WireDecoder | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> ConversationEnded:
        await self.execute(self.session.connection_opened(time.monotonic()))
        for coro in (self.receive_loop(), self.mic_loop(), self.tick_loop()):
            self.spawn(coro)
        try:
            return await self.ended
        finally:
            for task in list(self.tasks):
                task.cancel()
            for task in list(self.tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.device.sink.stop()

    def spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.create_task(coro)  # type: ignore[arg-type]
        self.tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        exc = task.exception()
        log.error("conversation task failed: %r", exc)
        if not self.ended.done():
            error = f"internal error: {exc}"
            if isinstance(exc, AudioDeviceError):
                error = str(exc)
                self.device.events.emit("audio_error", message=error)
            self.ended.set_result(ConversationEnded(None, "device failure", "client", error))
            self.spawn(self.connection.close(1000, "device failure"))

    async def receive_loop(self) -> None:
        while not self.ended.done():
            item = await self.connection.receive()
            now = time.monotonic()
            if isinstance(item, Closed):
                await self.execute(self.session.connection_closed(item.code, item.reason, now))
                return
            if isinstance(item, ProtocolError):
                await self.execute(self.session.receive_invalid(item, now))
                continue
            had_metadata = self.session.metadata is not None
            actions = self.session.receive(item, now)
            if not had_metadata and self.session.metadata is not None:
                await self.start_audio()
            await self.execute(actions)

    async def start_audio(self) -> None:
        assert self.session.output_format is not None
        loop = asyncio.get_running_loop()

        def drained() -> None:
            loop.call_soon(self._on_drained)

        rate = await self.device.sink.start(self.session.output_format.sample_rate, drained)
        self.decoder = WireDecoder(self.session.output_format, rate)
        self.audio_ready.set()

    def _on_drained(self) -> None:
        self.spawn(self.execute(self.session.playback_drained(time.monotonic())))

    async def mic_loop(self) -> None:
        await self.audio_ready.wait()
        assert self.session.input_format is not None
        source = self.device.source
        encoder = WireEncoder(source.sample_rate, self.session.input_format)
        vad = EnergyVad(
            source.sample_rate, threshold_dbfs=self.device.config.audio.vad_threshold_dbfs
        )
        lead_in = self.trigger.lead_in
        while not self.ended.done():
            if lead_in is not None:
                chunk, lead_in = lead_in, None
                if not len(chunk):
                    continue
            else:
                chunk = await source.read()
            speaking = vad.process(chunk)
            if self.push_to_talk:
                # push-to-talk: the button, not the room, says when the user is talking
                speaking = self.held
                if not self.held:
                    chunk = np.zeros_like(chunk)
            wire = encoder.encode(chunk)
            if wire:
                await self.execute(self.session.mic_audio(wire, speaking, time.monotonic()))

    def button_pressed(self) -> None:
        if self.push_to_talk:
            self.held = True
            self.device.events.emit("button", action="talk")
        else:
            self.device.events.emit("button", action="end")
            self.spawn(self.execute(self.session.request_end("button pressed", time.monotonic())))

    def button_released(self) -> None:
        if self.push_to_talk and self.held:
            self.held = False
            self.device.events.emit("button", action="released")

    async def tick_loop(self) -> None:
        while not self.ended.done():
            await asyncio.sleep(TICK_S)
            await self.execute(self.session.tick(time.monotonic()))

    async def run_tool(self, action: RunTool) -> None:
        call = action.call
        result, is_error = await self.device.tools.run(call.tool_name, call.parameters)
        await self.execute(
            self.session.tool_finished(call.tool_call_id, result, is_error, time.monotonic())
        )

    async def execute(self, actions: list[Action]) -> None:
        events = self.device.events
        for action in actions:
            if isinstance(action, Send):
                await self.connection.send(action.message)
            elif isinstance(action, PlayAudio):
                if self.decoder is not None:
                    self.device.sink.write(self.decoder.decode(action.audio))
            elif isinstance(action, FlushPlayback):
                dropped = self.device.sink.flush()
                events.emit("playback_flushed", dropped_samples=dropped)
            elif isinstance(action, SetState):
                self.device.set_state(action.state)
            elif isinstance(action, Notify):
                events.emit(action.kind, **action.fields)
            elif isinstance(action, RunTool):
                self.spawn(self.run_tool(action))
            elif isinstance(action, CloseConnection):
                self.spawn(self.connection.close(action.code, action.reason))
            elif isinstance(action, ConversationEnded) and not self.ended.done():
                self.ended.set_result(action)
