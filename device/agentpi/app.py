"""The orchestrator: trigger -> connect -> converse -> close -> idle, and again.

All conversation rules live in ``ConversationSession``; this module only moves data between it
and the adapters (microphone, speaker, socket, tools, event stream) and carries out its actions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentpi import __version__
from agentpi import events as ev
from agentpi.agent.client import (
    AgentConnectError,
    AgentConnection,
    Closed,
    conversation_url,
    fetch_signed_url,
    fetch_signed_url_from_owner,
    redact_url,
)
from agentpi.agent_setup import event_context, initiation_data, start_context
from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.convert import WireDecoder, WireEncoder, apply_gain
from agentpi.audio.cues import Cues
from agentpi.audio.echo import EchoCanceller, HalfDuplexGate
from agentpi.audio.formats import AudioFormat
from agentpi.audio.playback_log import PlaybackLog
from agentpi.audio.vad import EnergyVad
from agentpi.config import Config, Secret
from agentpi.custom_tools import build_tools
from agentpi.device_tools import MAX_VOLUME_PERCENT, register_device_tools
from agentpi.events import DeviceEvent, EventBus
from agentpi.identity import device_id
from agentpi.leds.driver import LedController
from agentpi.protocol.actions import (
    Action,
    CloseConnection,
    ConversationEnded,
    FlushPlayback,
    Notify,
    PlayAudio,
    RunTool,
    Send,
    SetState,
    StartAudio,
)
from agentpi.protocol.messages import ProtocolError
from agentpi.protocol.session import ConversationSession
from agentpi.protocol.states import DeviceState, check_transition
from agentpi.protocol.timers import SessionSettings
from agentpi.service import SystemdNotifier
from agentpi.tools import ToolRegistry
from agentpi.triggers.button import ButtonInput
from agentpi.wake.decider import Detection
from agentpi.wake.listener import WakeListener
from agentpi.wake.runner import WakeRunner

log = logging.getLogger(__name__)

TICK_S = 0.05
ERROR_HOLD_S = 1.0
"""How long the error (or offline) state shows, its cue included, before listening again."""
RECONNECT_MAX_S = 60.0
AUDIO_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between attempts to reopen a microphone that went away; the last one repeats."""


def reconnect_delay(failures: int, base_s: float, rng: random.Random | None = None) -> float:
    """How long to wait before trying again after ``failures`` failed connects in a row:
    doubling up to a minute, with +-25 % jitter so a room of devices that lost the same network
    does not come back in lockstep."""
    if failures <= 0:
        return base_s
    delay = min(RECONNECT_MAX_S, max(base_s, 1.0) * 2.0 ** (failures - 1))
    return delay * (rng or random).uniform(0.75, 1.25)


@dataclass(frozen=True)
class Trigger:
    """What started a conversation."""

    source: str  # "wake" | "button" | "immediate" | "control"
    detail: dict[str, Any] = field(default_factory=dict)
    start: int | None = None
    """The microphone sample the conversation's audio begins with (None: from the trigger on)."""
    user_message: str | None = None
    """Typed text to open the conversation with (`agentpi say` while idle)."""


class Device:
    def __init__(
        self,
        config: Config,
        mic: Microphone,
        sink: AudioSink,
        events: EventBus | None = None,
        api_key: Secret | None = None,
        tools: ToolRegistry | None = None,
        leds: LedController | None = None,
        wake: WakeListener | None = None,
        button: ButtonInput | None = None,
        cues: Cues | None = None,
        notifier: SystemdNotifier | None = None,
        endpoint_token: Secret | None = None,
    ) -> None:
        self.config = config
        self.mic = mic
        self.sink = sink
        self.events = events or EventBus()
        self.api_key = api_key
        self.tools = tools or build_tools(config.tools)
        register_device_tools(self.tools, self, config.tools.builtin)
        self.device_id = device_id()
        self.volume_gain = config.audio.volume
        self.started_at = time.monotonic()
        self.leds = leds
        if leds is not None:
            leds.attach(self.events)
        self.wake = wake
        self.button = button
        self.cues = cues
        self.notifier = notifier or SystemdNotifier({})
        self.endpoint_token = endpoint_token
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
        self._runner: WakeRunner | None = None
        self._audio_ok = asyncio.Event()
        self._recovering: asyncio.Task[None] | None = None
        self.gate: HalfDuplexGate | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_generation = 0
        self._connect_failures = 0
        self.ready = asyncio.Event()
        """Set once the microphone is open and the models are loaded: requests are taken."""
        if config.context.on_event:
            self.events.subscribe(self._context_for_event)

    def set_state(self, new: DeviceState) -> None:
        if new is self.state:
            return
        check_transition(self.state, new)
        self.state = new
        self.events.publish(ev.StateChanged(new.value))
        self.notifier.status(new.value)

    # ------------------------------------------------------------------ controls
    # What the built-in tools and the control socket may do; all on the event loop.

    @property
    def volume_percent(self) -> float:
        base = self.config.audio.volume
        return round(100 * self.volume_gain / base, 1) if base else 0.0

    def set_volume_percent(self, percent: float) -> None:
        percent = min(max(percent, 0.0), MAX_VOLUME_PERCENT)
        self.volume_gain = min(4.0, self.config.audio.volume * percent / 100)
        self.events.publish(ev.VolumeChanged(self.volume_percent))

    def status(self) -> dict[str, Any]:
        run = self._run
        return {
            "state": self.state.value,
            "in_conversation": run is not None,
            "conversation_id": run.session.conversation_id if run is not None else None,
            "conversations": self.conversations,
            "uptime_s": round(time.monotonic() - self.started_at, 1),
            "volume_percent": self.volume_percent,
            "triggers": list(self.config.trigger.modes),
            "ready": self.ready.is_set(),
            "audio_ok": self._audio_ok.is_set(),
            "device_id": self.device_id,
            "version": __version__,
        }

    def end_conversation(self) -> bool:
        if self._run is None:
            return False
        self._run.end_after_turn()
        return True

    def start_conversation(self, user_message: str | None = None) -> str | None:
        """Start one now, as a press would; the reason it cannot, or None."""
        if self._run is not None:
            return "a conversation is already running"
        if not self.ready.is_set():
            return "the device is still starting; try again in a moment"
        if not self._audio_ok.is_set():
            return "the microphone is not working; the device is trying to get it back"
        if self.state is not DeviceState.IDLE:
            return f"the device is busy ({self.state.value}); try again in a moment"
        self._triggers.put_nowait(Trigger("control", user_message=user_message))
        return None

    def stop_conversation(self) -> str | None:
        if self._run is None:
            return "no conversation is running"
        self._run.request_end("stopped over the control socket")
        return None

    def send_user_message(self, text: str) -> str | None:
        if self._run is None:
            return "no conversation is running"
        return self._run.from_device(text, typed=True)

    def send_contextual_update(self, text: str) -> str | None:
        if self._run is None:
            return "no conversation is running"
        return self._run.from_device(text, typed=False)

    def _context_for_event(self, event: DeviceEvent) -> None:
        run = self._run
        if run is None:
            return
        text = event_context(self.config.context, event.record())
        if text:
            run.from_device(text, typed=False)

    # ------------------------------------------------------------------ the loop

    async def run(self, once: bool = False) -> int:
        """Run until done: after one conversation with ``once``, or when a file input ends."""
        modes = self.config.trigger.modes
        loop = self._loop = asyncio.get_running_loop()

        def mic_failed(exc: Exception) -> None:
            loop.call_soon_threadsafe(self._audio_failed, exc)

        self.mic.on_failure = mic_failed

        def speaker_failed(exc: Exception) -> None:
            loop.call_soon_threadsafe(self._speaker_failed, exc)

        self.sink.on_failure = speaker_failed
        outcome = ConversationEnded(None, "not started", "client")
        watchdog: asyncio.Task[None] | None = None
        try:
            # inside the try: a stop while the device opens must still close it
            await loop.run_in_executor(None, self.mic.open)
            self._audio_ok.set()
            self._set_up_echo()
            if self.button is not None:
                self.button.attach(loop, self._button_pressed, self._button_released)
            if self.wake is not None:
                self._runner = WakeRunner(self.wake, self.mic, self._wake_fired, self._input_ended)
            if self.leds is not None:
                self.leds.start()
            self.events.publish(ev.StateChanged(self.state.value))
            if self._runner is not None:
                self.events.publish(ev.ListeningForWakeWord(self._runner.engine_name))
            if "immediate" in modes:
                self._triggers.put_nowait(Trigger("immediate"))
            # microphone open, models loaded: from here on the device does its job
            self.notifier.ready(f"listening ({', '.join(modes)})")
            self.ready.set()
            watchdog = asyncio.create_task(self.notifier.watchdog(), name="watchdog")
            while True:
                trigger = await self._next_trigger()
                if trigger is None:
                    break
                self.events.publish(ev.TriggerFired(trigger.source, **trigger.detail))
                outcome = await self.converse(trigger)
                if once:
                    break
                if "immediate" in modes:
                    if self.mic.at_end(self.mic.position):
                        break
                    pause = self.config.trigger.restart_pause_s
                    self._immediate = loop.call_later(
                        reconnect_delay(self._connect_failures, pause),
                        self._triggers.put_nowait,
                        Trigger("immediate"),
                    )
        finally:
            self.notifier.stopping()
            if watchdog is not None:
                watchdog.cancel()
            if self._immediate is not None:
                self._immediate.cancel()
            if self._recovering is not None:
                self._recovering.cancel()
            if self.button is not None:
                self.button.close()
            if self.leds is not None:
                self.leds.stop()
            if self._runner is not None:
                self._runner.stop()
            await self.sink.close()
            await loop.run_in_executor(None, self.mic.close)
        return 0 if outcome.ok else 1

    def _set_up_echo(self) -> None:
        audio = self.config.audio
        log = self.sink.playback_log
        if log is None:
            log = PlaybackLog(self.mic.sample_rate)
            self.sink.playback_log = log
        if audio.echo == "aec":
            self.mic.processor = EchoCanceller(log)
        elif audio.echo == "half_duplex":
            self.gate = HalfDuplexGate(log, audio.echo_tail_ms / 1000)

    async def _next_trigger(self) -> Trigger | None:
        """Wait, listening for the wake word if it is on, until something starts a
        conversation; None when a file input has ended with nothing left to do."""
        await self._audio_ok.wait()
        if self._runner is not None:
            self._runner.listen()
        try:
            return await self._triggers.get()
        finally:
            if self._runner is not None:
                self._runner.pause()
                self._wake_generation += 1  # a detection still in flight is stale now

    def _wake_fired(self, detection: Detection, start: int) -> None:
        """On the wake thread: hand the detection to the loop."""
        generation = self._wake_generation
        detail = {
            "model": detection.model,
            "score": round(detection.score, 3),
            "audio_s": round(detection.audio_s, 3),
        }
        if self.config.audio.send_wake_word:
            start = max(
                self.mic.oldest, start - int(self.config.audio.preroll_s * self.mic.sample_rate)
            )
        self._loop_put(Trigger("wake", detail, start), generation)

    def _input_ended(self) -> None:
        self._loop_put(None, self._wake_generation)

    def _loop_put(self, trigger: Trigger | None, generation: int) -> None:
        assert self._loop is not None
        with contextlib.suppress(RuntimeError):  # the loop has closed: we are shutting down
            self._loop.call_soon_threadsafe(self._wake_result, trigger, generation)

    def _wake_result(self, trigger: Trigger | None, generation: int) -> None:
        # something else (the button) started a conversation while this frame was scored
        if generation == self._wake_generation:
            self._triggers.put_nowait(trigger)

    def _button_pressed(self) -> None:
        if self._run is not None:
            self._run.button_pressed()
        elif self.state is DeviceState.IDLE and self._audio_ok.is_set():
            self._triggers.put_nowait(Trigger("button"))
        # connecting or showing an error: a press there would only queue a stale conversation

    def _button_released(self) -> None:
        if self._run is not None:
            self._run.button_released()

    def _audio_failed(self, exc: Exception) -> None:
        """The microphone went away (on the loop): end what runs, show it, get it back."""
        if not self._audio_ok.is_set():
            return
        self._audio_ok.clear()
        message = str(exc)
        self.events.publish(ev.AudioError(message))
        if self._run is not None:
            self._run.fail(message)
        self._recovering = asyncio.get_running_loop().create_task(self._recover_audio())

    def _speaker_failed(self, exc: Exception) -> None:
        """The speaker went away mid-conversation: end it; the next one opens the speaker anew."""
        message = str(exc)
        self.events.publish(ev.AudioError(message))
        if self._run is not None:
            self._run.fail(message)

    async def _recover_audio(self) -> None:
        loop = asyncio.get_running_loop()
        while self._run is not None:  # let the conversation finish ending first
            await asyncio.sleep(0.05)
        self.set_state(DeviceState.ERROR)
        await self._cue("error")
        await loop.run_in_executor(None, self.mic.close)
        attempt = 0
        while True:
            wait = AUDIO_RETRY_S[min(attempt, len(AUDIO_RETRY_S) - 1)]
            await asyncio.sleep(wait)
            attempt += 1
            try:
                await loop.run_in_executor(None, self.mic.open)
            except AudioDeviceError as exc:
                self.events.publish(ev.AudioRetry(attempt, str(exc)))
                continue
            break
        self.events.publish(ev.AudioRestored(attempt))
        self.set_state(DeviceState.IDLE)
        self._audio_ok.set()

    async def converse(self, trigger: Trigger | None = None) -> ConversationEnded:
        """One whole conversation, from the trigger to idle again."""
        trigger = trigger or Trigger("immediate")
        self.conversations += 1
        # from the trigger on (or where the wake word ended): held while the socket opens
        reader = self.mic.reader(trigger.start)
        try:
            return await self._converse(trigger, reader)
        finally:
            reader.close()

    async def _converse(self, trigger: Trigger, reader: MicReader) -> ConversationEnded:
        if trigger.source == "wake":
            self.set_state(DeviceState.WAKE_DETECTED)
            await self._cue("wake")
        self.set_state(DeviceState.CONNECTING)
        started = time.monotonic()
        try:
            url = await self._resolve_url()
            self.events.publish(ev.Connecting(redact_url(url)))
            connection = await AgentConnection.open(
                url, self.config.agent.connect_timeout_s, self.config.agent.keepalive_s
            )
        except AgentConnectError as exc:
            self._connect_failures += 1
            self.events.publish(ev.ConnectFailed(str(exc), exc.offline, self._connect_failures))
            await self._show_error(offline=exc.offline)
            return ConversationEnded(None, "connect failed", "client", str(exc))
        self._connect_failures = 0
        self.events.publish(ev.Connected())
        run = _ConversationRun(self, connection, trigger, reader)
        self._run = run
        try:
            ended = await run.run()
        finally:
            self._run = None
        self.events.publish(
            ev.ConversationEnded(
                conversation_id=run.session.conversation_id,
                reason=ended.reason,
                code=ended.code,
                closed_by=ended.closed_by,
                error=ended.error,
                duration_s=round(time.monotonic() - started, 3),
                turns=run.session.turns,
                ping_ms=statistics.median(run.pings_ms) if run.pings_ms else None,
            )
        )
        if ended.error:
            if self._audio_ok.is_set():
                await self._show_error()
        else:
            await self._cue("end")
        return ended

    async def _resolve_url(self) -> str:
        agent = self.config.agent
        if agent.signed_url_endpoint:
            token = self.endpoint_token.reveal() if self.endpoint_token else None
            return await fetch_signed_url_from_owner(
                agent.signed_url_endpoint, agent.agent_id, token, agent.connect_timeout_s
            )
        if self.api_key is None:
            return conversation_url(agent.url, agent.agent_id)
        return await fetch_signed_url(
            agent.url, agent.agent_id, self.api_key.reveal(), agent.connect_timeout_s
        )

    async def _show_error(self, offline: bool = False) -> None:
        """The error (or offline) state, its cue, a moment to see it; then listening again."""
        self.set_state(DeviceState.OFFLINE if offline else DeviceState.ERROR)
        shown = time.monotonic()
        await self._cue("error")
        await asyncio.sleep(max(0.0, ERROR_HOLD_S - (time.monotonic() - shown)))
        self.set_state(DeviceState.IDLE)

    async def _cue(self, name: str) -> None:
        """Play an earcon (if they are on) and wait until it has been heard."""
        if self.cues is None or not self.cues.enabled:
            return
        try:
            # the wake cue plays while the socket opens; the others are waited for
            await self.cues.play(name, self.sink, wait=name != "wake")
        except AudioDeviceError as exc:
            self.events.publish(ev.AudioError(str(exc)))


class _ConversationRun:
    """The tasks of one open conversation, feeding one session."""

    def __init__(
        self, device: Device, connection: AgentConnection, trigger: Trigger, reader: MicReader
    ) -> None:
        self.device = device
        self.connection = connection
        self.trigger = trigger
        self.reader = reader
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
                init=initiation_data(conv, device.device_id),
            )
        )
        self.ended: asyncio.Future[ConversationEnded] = asyncio.get_running_loop().create_future()
        self.audio_ready = asyncio.Event()
        self.decoder: WireDecoder | None = None
        self.input_format: AudioFormat | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed = False
        self.pings_ms: list[int] = []

    async def run(self) -> ConversationEnded:
        now = time.monotonic()
        await self.execute(self.session.connection_opened(now))
        # held by the session until the server's metadata, then sent in this order
        context = start_context(self.device.config.context, self.device.device_id)
        if context:
            await self.execute(self.session.contextual_update(context, now))
        if self.trigger.user_message:
            await self.execute(self.session.user_message(self.trigger.user_message, now))
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
            if self.failed:
                # said goodbye here, not in a task: the tasks were all just cancelled
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.connection.close(1000, "device failure"), 2.0)
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
        if isinstance(exc, AudioDeviceError):
            if self.device._audio_ok.is_set():  # not the microphone, whose recovery reports it
                self.device.events.publish(ev.AudioError(str(exc)))
            self.fail(str(exc))
            return
        log.error("conversation task failed: %r", exc)
        self.fail(f"internal error: {exc}")

    def fail(self, error: str) -> None:
        """End the conversation now because the device failed (the agent is told)."""
        if not self.ended.done():
            self.failed = True
            self.ended.set_result(ConversationEnded(None, "device failure", "client", error))

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
            await self.execute(self.session.receive(item, now))

    async def start_audio(self, formats: StartAudio) -> None:
        loop = asyncio.get_running_loop()

        def drained() -> None:
            loop.call_soon(self._on_drained)

        rate = await self.device.sink.start(formats.output_format.sample_rate, drained)
        self.decoder = WireDecoder(formats.output_format, rate)
        self.input_format = formats.input_format
        self.audio_ready.set()

    def _on_drained(self) -> None:
        self.spawn(self.execute(self.session.playback_drained(time.monotonic())))

    async def mic_loop(self) -> None:
        await self.audio_ready.wait()
        assert self.input_format is not None
        device = self.device
        mic = device.mic
        encoder = WireEncoder(mic.sample_rate, self.input_format)
        vad = EnergyVad(mic.sample_rate, threshold_dbfs=device.config.audio.vad_threshold_dbfs)
        reader = self.reader
        lost = 0
        while not self.ended.done():
            chunk = await reader.read(mic.chunk_samples)
            if reader.lost != lost:
                device.events.publish(ev.AudioDropped(reader.lost - lost))
                lost = reader.lost
            speaking = vad.process(chunk)
            if self.push_to_talk:
                # push-to-talk: the button, not the room, says when the user is talking
                speaking = self.held
                if not self.held:
                    chunk = np.zeros_like(chunk)
            elif device.gate is not None and device.gate.muted(device.sink.buffered_samples):
                speaking = False  # half duplex: the agent must not hear itself
                chunk = np.zeros_like(chunk)
            wire = encoder.encode(chunk)
            if wire:
                await self.execute(self.session.mic_audio(wire, speaking, time.monotonic()))

    def from_device(self, text: str, typed: bool) -> str | None:
        """A user_message (typed) or contextual_update into this conversation."""
        if self.ended.done() or not self.session.accepts_input:
            return "the conversation is ending"
        now = time.monotonic()
        if typed:
            self.spawn(self.execute(self.session.user_message(text, now)))
        else:
            self.spawn(self.execute(self.session.contextual_update(text, now)))
        return None

    def end_after_turn(self) -> None:
        self.spawn(self.execute(self.session.end_after_turn(time.monotonic())))

    def request_end(self, reason: str) -> None:
        self.spawn(self.execute(self.session.request_end(reason, time.monotonic())))

    def button_pressed(self) -> None:
        if self.push_to_talk:
            self.held = True
            self.device.events.publish(ev.ButtonAction("talk"))
        else:
            self.device.events.publish(ev.ButtonAction("end"))
            self.request_end("button pressed")

    def button_released(self) -> None:
        if self.push_to_talk and self.held:
            self.held = False
            self.device.events.publish(ev.ButtonAction("released"))

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
                    audio = self.decoder.decode(action.audio)
                    self.device.sink.write(apply_gain(audio, self.device.volume_gain))
            elif isinstance(action, FlushPlayback):
                dropped = self.device.sink.flush()
                events.publish(ev.PlaybackFlushed(dropped))
            elif isinstance(action, SetState):
                self.device.set_state(action.state)
            elif isinstance(action, Notify):
                if isinstance(action.event, ev.Latency):
                    self.pings_ms.append(action.event.ping_ms)
                events.publish(action.event)
            elif isinstance(action, StartAudio):
                await self.start_audio(action)
            elif isinstance(action, RunTool):
                self.spawn(self.run_tool(action))
            elif isinstance(action, CloseConnection):
                self.spawn(self.connection.close(action.code, action.reason))
            elif isinstance(action, ConversationEnded) and not self.ended.done():
                self.ended.set_result(action)
