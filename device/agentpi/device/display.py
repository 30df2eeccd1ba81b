"""What the user sees and hears of the device: its state (the LEDs follow it through the events,
systemd's status line shows it), the earcons, and how long an error stays on show."""

from __future__ import annotations

import asyncio
import time

from agentpi import events as ev
from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.capture import Microphone
from agentpi.audio.convert import apply_gain
from agentpi.audio.cues import QUESTION_CUE, Cues, question_tones
from agentpi.events import EventBus
from agentpi.states import DeviceState, check_transition
from agentpi.system.systemd_notify import SystemdNotifier

ERROR_HOLD_S = 1.0
"""How long the error (or offline) state shows, its cue included, before listening again."""


class StateDisplay:
    def __init__(
        self,
        events: EventBus,
        notifier: SystemdNotifier,
        cues: Cues | None,
        sink: AudioSink,
        mic: Microphone,
        speech_dbfs: float,
    ) -> None:
        self.events = events
        self.notifier = notifier
        self.cues = cues
        self.sink = sink
        self.mic = mic
        self.speech_dbfs = speech_dbfs
        """A microphone this loud is someone speaking: the wake cue does not play over it."""
        self.state = DeviceState.IDLE
        self.muted = False

    def show(self, new: DeviceState) -> None:
        if new is DeviceState.IDLE and self.muted:
            new = DeviceState.MUTED  # idle, as the lights say it while the microphone is off
        if new is self.state:
            return
        check_transition(self.state, new)
        self.state = new
        self.events.publish(ev.StateChanged(new.value))
        self.notifier.status(new.value)

    def set_muted(self, muted: bool) -> None:
        self.muted = muted
        if self.state in (DeviceState.IDLE, DeviceState.MUTED):
            self.show(DeviceState.IDLE)

    def announce(self) -> None:
        """Say the state as it is (at start: whoever listens has seen no change yet)."""
        self.events.publish(ev.StateChanged(self.state.value))

    async def show_error(self, offline: bool = False) -> None:
        """The error (or offline) state, its cue, a moment to see it; then listening again."""
        self.show(DeviceState.OFFLINE if offline else DeviceState.ERROR)
        shown = time.monotonic()
        await self.cue("error")
        await asyncio.sleep(max(0.0, ERROR_HOLD_S - (time.monotonic() - shown)))
        self.show(DeviceState.IDLE)

    async def show_mic_lost(self) -> None:
        """The error state and its cue, held until the microphone is back."""
        self.show(DeviceState.ERROR)
        await self.cue("error")

    def ask(self) -> None:
        """The question cue, queued on the conversation's open speaker behind whatever the
        agent is saying (its question, often): two rising tones made at the speaker's rate."""
        if self.cues is None or not self.cues.enabled or not self.sink.sample_rate:
            return
        tones = question_tones(self.sink.sample_rate)
        self.sink.write(apply_gain(tones, self.cues.volume))
        self.cues.played.append(QUESTION_CUE)

    async def cue(self, name: str) -> None:
        """Play an earcon (if they are on) and wait until it has been heard."""
        if self.cues is None or not self.cues.enabled:
            return
        try:
            if name == "wake":  # while the socket opens, and never over the user's words
                await self.cues.play_unless_speech(name, self.sink, self.mic, self.speech_dbfs)
            else:
                await self.cues.play(name, self.sink)
        except AudioDeviceError as exc:
            self.events.publish(ev.AudioError(str(exc)))
