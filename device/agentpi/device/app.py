"""The device: its parts put together, and the loop trigger -> conversation -> idle, again.

Each part has one job: the trigger loop (``trigger_loop``) says when to start, the runner
(``runner``) carries one conversation from its trigger to idle again, the retry policy
(``retry``) spaces out conversations that fail, the display (``display``) shows and sounds the
state, the control surface (``controls``) is what the socket, MQTT and the built-in tools may
do, and the microphone's recovery (``mic_recovery``) gets it back when it goes away. ``Device``
opens the sound devices, starts the parts, runs the loop and stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from agentpi import events as ev
from agentpi.audio.backend import AudioSink
from agentpi.audio.capture import Microphone
from agentpi.audio.cues import Cues
from agentpi.audio.gating import OpenMic, PushToTalk, set_up_echo
from agentpi.audio.speech_vad import load_detector
from agentpi.config.document import Config
from agentpi.device.controls import ControlSurface
from agentpi.device.display import StateDisplay
from agentpi.device.mic_recovery import MicRecovery
from agentpi.device.retry import RetryPolicy
from agentpi.device.runner import ConversationRunner
from agentpi.device.trigger_loop import TriggerLoop
from agentpi.device.volume import Volume
from agentpi.events import EventBus
from agentpi.leds.driver import LedController
from agentpi.protocol.actions import ConversationEnded
from agentpi.settings.credentials import NO_CREDENTIALS, AgentCredentials
from agentpi.states import DeviceState
from agentpi.system.collector import freeze_start_up
from agentpi.system.identity import device_id
from agentpi.system.systemd_notify import SystemdNotifier
from agentpi.tools.custom import build_tools
from agentpi.tools.device import register_device_tools
from agentpi.tools.registry import ToolRegistry
from agentpi.triggers.button import ButtonInput
from agentpi.triggers.sources import Trigger
from agentpi.wake.listener import WakeListener


@dataclass(frozen=True)
class Peripherals:
    """What the device drives besides its sound card, each optional; the triggers the config
    names need theirs (a wake listener, a button)."""

    leds: LedController | None = None
    wake: WakeListener | None = None
    button: ButtonInput | None = None
    cues: Cues | None = None


class Device:
    def __init__(
        self,
        config: Config,
        mic: Microphone,
        sink: AudioSink,
        events: EventBus | None = None,
        peripherals: Peripherals = Peripherals(),
        credentials: AgentCredentials = NO_CREDENTIALS,
        tools: ToolRegistry | None = None,
        notifier: SystemdNotifier | None = None,
    ) -> None:
        self.config = config
        self.mic = mic
        self.sink = sink
        self.events = events or EventBus()
        self.device_id = device_id()
        self.leds = peripherals.leds
        if self.leds is not None:
            self.leds.attach(self.events)
        self.notifier = notifier or SystemdNotifier({})
        self.ready = asyncio.Event()
        """Set once the microphone is open and the models are loaded: requests are taken."""
        self.triggers = TriggerLoop(config, mic, peripherals.wake, peripherals.button)
        self.display = StateDisplay(
            self.events, self.notifier, peripherals.cues, sink, mic, config.audio.vad_threshold_dbfs
        )
        self.retry = RetryPolicy(self.events, config.trigger.restart_pause_s)
        self.volume = Volume(config.audio.volume, self.events)
        self.tools = tools or build_tools(config.tools)
        self.runner = ConversationRunner(
            config,
            self.device_id,
            mic,
            sink,
            self.events,
            self.tools,
            self.display,
            self.retry,
            self.volume,
            self.triggers,
            credentials,
        )
        self.mic_recovery = MicRecovery(
            mic,
            self.events,
            self.runner.no_run,
            self.display.show_mic_lost,
            lambda: self.display.show(DeviceState.IDLE),
            ok=self.runner.mic_ok,
        )
        self.controls = ControlSurface(
            config,
            self.device_id,
            self.events,
            self.runner,
            self.display,
            self.retry,
            self.volume,
            self.triggers,
            self.ready,
        )
        register_device_tools(self.tools, self.controls, config.tools.builtin)
        self._stop_asked = asyncio.Event()

    @property
    def state(self) -> DeviceState:
        return self.display.state

    async def run(self, once: bool = False) -> int:
        """Run until done: after one conversation with ``once``, or when a file input ends."""
        loop = asyncio.get_running_loop()

        def mic_failed(exc: Exception) -> None:
            loop.call_soon_threadsafe(self._mic_failed, exc)

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
            # before the microphone opens: from its first sample to listening is kept short
            await loop.run_in_executor(None, load_detector)
            await loop.run_in_executor(None, self.mic.open)
            self.runner.mic_ok.set()
            self._set_up_mic_gate()
            if self.leds is not None:
                self.leds.start()
                stack.callback(self.leds.stop)
            self.triggers.start(loop, stack)
            stack.callback(self.mic_recovery.cancel)
            self._announce_ready()
            watchdog = asyncio.create_task(self.notifier.watchdog(), name="watchdog")
            stack.callback(watchdog.cancel)
            while True:
                trigger = await self._next_trigger()
                if trigger is None:
                    break
                self.events.publish(ev.TriggerFired(trigger.source, **trigger.detail))
                outcome = await self.runner.converse(trigger)
                if once or self.runner.stopping is not None:
                    break
                pause = self.retry.next_pause()  # the kiosk's, and when `agentpi start` may
                if self.triggers.immediate is not None and self.mic.at_end(self.mic.position):
                    break
                self.triggers.conversation_over(pause)
        return 0 if outcome.ok else 1

    def shutdown(self, reason: str = "device stopping") -> None:
        """Stop (a signal, a service stop): end the conversation with a close frame, then return
        from ``run``. Safe to call more than once; the first reason is kept."""
        if self.runner.stopping is not None:
            return
        self.runner.stop(reason)
        self.triggers.stop()
        self._stop_asked.set()

    def _set_up_mic_gate(self) -> None:
        """How the microphone is heard in each conversation: push-to-talk with a held button
        (held or not as the conversation starts), else as the echo set-up has it."""
        audio = self.config.audio
        half_duplex = set_up_echo(audio.echo, audio.echo_tail_ms, self.mic, self.sink)
        button = self.triggers.button
        if button is not None and self.config.trigger.button_mode == "hold":
            pushed = button.button
            self.runner.choose_gate = lambda: PushToTalk(held=pushed.is_held)
        else:
            gate = half_duplex or OpenMic()
            self.runner.choose_gate = lambda: gate

    def _announce_ready(self) -> None:
        """Microphone open, models loaded: from here on the device does its job."""
        self.display.announce()
        if self.triggers.wake is not None:
            self.events.publish(ev.ListeningForWakeWord(self.triggers.wake.engine_name))
        self.notifier.ready(f"listening ({', '.join(self.config.trigger.modes)})")
        audio = self.config.audio
        self.events.publish(ev.Ready(self.triggers.describe(), audio.input, audio.output))
        freeze_start_up()
        self.ready.set()

    async def _next_trigger(self) -> Trigger | None:
        """The next trigger, once the microphone works (or None: stopped, or the input ended)."""
        if not self.runner.mic_ok.is_set():  # a stop must not wait for the microphone
            waits = {
                asyncio.ensure_future(self.runner.mic_ok.wait()),
                asyncio.ensure_future(self._stop_asked.wait()),
            }
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            for wait in waits:
                wait.cancel()
        return await self.triggers.next()

    def _mic_failed(self, exc: Exception) -> None:
        """The microphone went away (on the loop): end what runs, show it, get it back."""
        if self.mic_recovery.lost(exc) and self.runner.run is not None:
            self.runner.run.fail(str(exc))

    def _speaker_failed(self, exc: Exception) -> None:
        """The speaker went away mid-conversation: end it; the next one opens the speaker anew."""
        message = str(exc)
        self.events.publish(ev.AudioError(message))
        if self.runner.run is not None:
            self.runner.run.fail(message)
