"""The orchestrator: trigger -> connect -> converse -> close -> idle, and again.

The device composes: trigger sources (``triggers/sources.py``) say when to start, a conversation
run (``conversation.py``) feeds one ``ConversationSession`` and carries out its actions, and the
device in between shows the state, connects, and gets the microphone back when it goes away.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from agentpi import __version__
from agentpi import events as ev
from agentpi.agent.client import AgentConnectError, AgentConnection, open_agent
from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.cues import Cues
from agentpi.audio.gating import HalfDuplex, MicGate, OpenMic, PushToTalk, set_up_echo
from agentpi.backoff import reconnect_delay
from agentpi.config.document import Config, for_wake_word
from agentpi.device.conversation import ConversationRun, RunContext
from agentpi.device.initiation import event_context
from agentpi.device.mic_recovery import MicRecovery
from agentpi.events import DeviceEvent, EventBus
from agentpi.leds.driver import LedController
from agentpi.protocol.actions import ConversationEnded
from agentpi.protocol.turns import TurnTimer
from agentpi.settings.credentials import Secret
from agentpi.states import DeviceState, check_transition
from agentpi.system.identity import device_id
from agentpi.system.systemd_notify import SystemdNotifier
from agentpi.tools.custom import build_tools
from agentpi.tools.device import MAX_VOLUME_PERCENT, register_device_tools
from agentpi.tools.registry import ToolRegistry
from agentpi.triggers.button import ButtonInput
from agentpi.triggers.sources import (
    ButtonTrigger,
    ControlTrigger,
    ImmediateTrigger,
    Trigger,
    TriggerSource,
    WakeTrigger,
    failures_after,
    skip_wake_phrase,
)
from agentpi.wake.listener import WakeListener

__all__ = ["Device", "Trigger"]

ERROR_HOLD_S = 1.0
"""How long the error (or offline) state shows, its cue included, before listening again."""
PHRASE_END_WAIT_S = 2.0
"""How long the first audio waits for the wake thread's answer (tens of ms, usually)."""
TRIGGER_QUEUE = 4
"""Triggers waiting to be taken; more at once are the same request repeated, and dropped."""


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
        self.last_turns: TurnTimer | None = None  # the last conversation's, for status
        self._control = ControlTrigger()
        self._wake = WakeTrigger(wake, mic, config) if wake is not None else None
        self._button = ButtonTrigger(button, config) if button is not None else None
        self._immediate = ImmediateTrigger(config.agent.url) if "immediate" in modes else None
        sources = (self._wake, self._button, self._immediate, self._control)
        self._sources: list[TriggerSource] = [s for s in sources if s is not None]
        self._triggers: asyncio.Queue[Trigger | None] = asyncio.Queue(TRIGGER_QUEUE)
        self._run: ConversationRun | None = None
        self._no_run = asyncio.Event()
        self._no_run.set()
        self._mic_recovery = MicRecovery(
            mic, self.events, self._no_run, self._mic_lost, lambda: self.set_state(DeviceState.IDLE)
        )
        self._audio_ok = self._mic_recovery.ok
        self._half_duplex: HalfDuplex | None = None
        self._failures = 0
        """Conversations in a row that failed before reaching a user turn (connects included)."""
        self._retry_at = 0.0
        self._stopping: str | None = None
        self._connecting: asyncio.Future[AgentConnection] | None = None
        self._stop_asked = asyncio.Event()
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

    def set_wake_enabled(self, on: bool) -> str | None:
        if self._wake is None:
            return "this device does not listen for a wake word (trigger.mode)"
        self._wake.set_enabled(on)
        return None

    def status(self) -> dict[str, Any]:
        run = self._run
        turns = run.turn_timer if run is not None else self.last_turns  # running, or the last
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
            "turn_latency": turns.figures() if turns is not None else None,
            "wake_enabled": self._wake is not None and self._wake.enabled,
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
        wait = self._retry_at - time.monotonic()
        if self._failures and wait > 0:
            return (
                f"the last {self._failures} conversation(s) failed; backing off, "
                f"try again in {wait:.0f} s"
            )
        self._control.request(user_message)
        return None

    def stop_conversation(self) -> str | None:
        if self._run is None:
            stopped = self._cancel_connect("stopped while connecting")
            return None if stopped else "no conversation is running"
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
        loop = asyncio.get_running_loop()

        def mic_failed(exc: Exception) -> None:
            loop.call_soon_threadsafe(self._audio_failed, exc)

        def speaker_failed(exc: Exception) -> None:
            loop.call_soon_threadsafe(self._speaker_failed, exc)

        self.mic.on_failure = mic_failed
        self.sink.on_failure = speaker_failed
        outcome = ConversationEnded(None, "not started", "client")
        async with contextlib.AsyncExitStack() as stack:
            # unwound in reverse, also when a stop comes while the device is still opening
            stack.callback(self.notifier.stopping)
            stack.push_async_callback(loop.run_in_executor, None, self.mic.close)
            stack.push_async_callback(self.sink.close)
            await loop.run_in_executor(None, self.mic.open)
            self._audio_ok.set()
            audio = self.config.audio
            self._half_duplex = set_up_echo(audio.echo, audio.echo_tail_ms, self.mic, self.sink)
            if self.leds is not None:
                self.leds.start()
                stack.callback(self.leds.stop)
            for source in self._sources:
                stack.callback(source.close)
                source.start(loop, self._fire)
            stack.callback(self._mic_recovery.cancel)
            self.events.publish(ev.StateChanged(self.state.value))
            if self._wake is not None:
                self.events.publish(ev.ListeningForWakeWord(self._wake.engine_name))
            # microphone open, models loaded: from here on the device does its job
            self.notifier.ready(f"listening ({', '.join(modes)})")
            waiting_for = [source.describe() for source in self._sources]
            self.events.publish(ev.Ready(waiting_for, audio.input, audio.output))
            self.ready.set()
            watchdog = asyncio.create_task(self.notifier.watchdog(), name="watchdog")
            stack.callback(watchdog.cancel)
            while True:
                trigger = await self._next_trigger()
                if trigger is None:
                    break
                self.events.publish(ev.TriggerFired(trigger.source, **trigger.detail))
                outcome = await self.converse(trigger)
                if once or self._stopping is not None:
                    break
                delay = self._retry_delay()  # the kiosk's pause, and when `agentpi start` may
                if self._immediate is not None:
                    if self.mic.at_end(self.mic.position):
                        break
                    self._immediate.conversation_over(delay)
        return 0 if outcome.ok else 1

    def shutdown(self, reason: str = "device stopping") -> None:
        """Stop (a signal, a service stop): end the conversation with a close frame, then return
        from ``run``. Safe to call more than once; the first reason is kept."""
        if self._stopping is not None:
            return
        self._stopping = reason
        if self._run is not None:
            self._run.request_end(reason)
        self._cancel_connect(reason)
        while not self._triggers.empty():  # nothing queued may start a conversation now
            self._triggers.get_nowait()
        self._triggers.put_nowait(None)
        self._stop_asked.set()

    def _cancel_connect(self, reason: str) -> bool:
        """A conversation still connecting (a signed-URL fetch, the handshake) ends now."""
        return self._connecting is not None and self._connecting.cancel(reason)

    def _retry_delay(self) -> float:
        """The pause before the next conversation the device starts itself (the kiosk) or is
        asked for over the control socket: doubling after failures (a server that fails every
        conversation is not hammered), announced with a ``retry`` event."""
        delay = reconnect_delay(self._failures, self.config.trigger.restart_pause_s)
        self._retry_at = time.monotonic() + delay
        if self._failures:
            self.events.publish(ev.RetryScheduled(round(delay, 3), self._failures))
        return delay

    def _fire(self, trigger: Trigger | None) -> None:
        if self._stopping is not None:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._triggers.put_nowait(trigger)

    def _mic_gate(self) -> MicGate:
        """How the microphone is heard in the conversation about to start."""
        if self._button is not None and self.config.trigger.button_mode == "hold":
            return PushToTalk(held=self._button.button.is_held)
        return self._half_duplex or OpenMic()

    async def _next_trigger(self) -> Trigger | None:
        """Wait, with every source armed, until something starts a conversation; None when a
        file input has ended with nothing left to do."""
        if not self._audio_ok.is_set():  # a stop must not wait for the microphone to come back
            waits = {
                asyncio.ensure_future(self._audio_ok.wait()),
                asyncio.ensure_future(self._stop_asked.wait()),
            }
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        if self._stopping is not None:
            return None
        for source in self._sources:
            source.arm()
        try:
            return await self._triggers.get()
        finally:
            for source in self._sources:
                source.disarm()

    def _audio_failed(self, exc: Exception) -> None:
        """The microphone went away (on the loop): end what runs, show it, get it back."""
        if self._mic_recovery.lost(exc) and self._run is not None:
            self._run.fail(str(exc))

    def _speaker_failed(self, exc: Exception) -> None:
        """The speaker went away mid-conversation: end it; the next one opens the speaker anew."""
        message = str(exc)
        self.events.publish(ev.AudioError(message))
        if self._run is not None:
            self._run.fail(message)

    async def _mic_lost(self) -> None:
        self.set_state(DeviceState.ERROR)
        await self._cue("error")

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
        config = self.config
        if trigger.source == "wake" and "model" in trigger.detail:
            config = for_wake_word(config, trigger.detail["model"])
        opening = open_agent(config.agent, self.api_key, self.endpoint_token, self.events.publish)
        self._connecting = asyncio.ensure_future(opening)
        try:
            connection = await self._connecting
        except asyncio.CancelledError as stopped:  # by `stop` or a signal, with its reason
            if asyncio.current_task().cancelling() or not stopped.args:  # type: ignore[union-attr]
                raise
            return ConversationEnded(None, str(stopped.args[0]), "client")
        except AgentConnectError as exc:
            self._failures += 1
            self.events.publish(ev.ConnectFailed(str(exc), exc.offline, self._failures))
            await self._show_error(offline=exc.offline)
            return ConversationEnded(None, "connect failed", "client", str(exc))
        finally:
            self._connecting = None
        self.events.publish(ev.Connected())
        if self._stopping is not None:  # stopped while the socket opened: say goodbye at once
            await connection.close(1000, self._stopping)
            return ConversationEnded(1000, self._stopping, "client")
        if trigger.phrase_end is not None:
            await skip_wake_phrase(trigger.phrase_end, reader, PHRASE_END_WAIT_S)
        run = ConversationRun(
            self._run_context(config), connection, reader, trigger.user_message, trigger.at
        )
        self._run = run
        self._no_run.clear()
        if self._button is not None:
            self._button.on_press, self._button.on_release = run.button_pressed, run.button_released
        try:
            ended = await run.run()
        finally:
            self._run = None
            self._no_run.set()
            if self._button is not None:
                self._button.on_press = self._button.on_release = None
        self.events.publish(
            run.summary(ended, time.monotonic() - started, trigger.detail.get("agent_id"))
        )
        self.last_turns = run.turn_timer
        self._failures = failures_after(self._failures, run.session.user_turns, ended)
        if self._stopping is not None:
            return ended  # no cue, no hold: a stop must be quick
        if ended.error:
            if self._audio_ok.is_set():
                await self._show_error()
        else:
            await self._cue("end")
        return ended

    def _run_context(self, config: Config) -> RunContext:
        return RunContext(
            config=config,
            device_id=self.device_id,
            events=self.events,
            mic=self.mic,
            sink=self.sink,
            tools=self.tools,
            gate=self._mic_gate(),
            show=self.set_state,
            volume_gain=lambda: self.volume_gain,
            mic_ok=self._audio_ok.is_set,
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
            if name == "wake":  # while the socket opens, and never over the user's words
                threshold = self.config.audio.vad_threshold_dbfs
                await self.cues.play_unless_speech(name, self.sink, self.mic, threshold)
            else:
                await self.cues.play(name, self.sink)
        except AudioDeviceError as exc:
            self.events.publish(ev.AudioError(str(exc)))
