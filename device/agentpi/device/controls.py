"""What the control socket, MQTT and the device's own tools may do to the device, and the status
document they all read: one surface, on the event loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agentpi import __version__
from agentpi import events as ev
from agentpi.config.document import Config
from agentpi.control.requests import Opening
from agentpi.device.display import StateDisplay
from agentpi.device.retry import RetryPolicy
from agentpi.device.runner import ConversationRunner
from agentpi.device.trigger_loop import TriggerLoop
from agentpi.device.volume import Volume
from agentpi.events import EventBus
from agentpi.states import DeviceState

ANNOUNCE_REQUEST = "Read this announcement out to me now, word for word, then stop: {text}"
"""What an announcement becomes in a conversation that is already running."""


class ControlSurface:
    def __init__(
        self,
        config: Config,
        device_id: str,
        events: EventBus,
        runner: ConversationRunner,
        display: StateDisplay,
        retry: RetryPolicy,
        volume: Volume,
        triggers: TriggerLoop,
        ready: asyncio.Event,
    ) -> None:
        self.config = config
        self.device_id = device_id
        self.events = events
        self._runner = runner
        self._display = display
        self._retry = retry
        self._volume = volume
        self._triggers = triggers
        self._ready = ready
        self._started_at = time.monotonic()

    def status(self) -> dict[str, Any]:
        run = self._runner.run
        turns = run.turn_timer if run is not None else self._runner.last_turns  # or the last's
        wake = self._triggers.wake
        return {
            "state": self._display.state.value,
            "in_conversation": run is not None,
            "conversation_id": run.session.conversation_id if run is not None else None,
            "conversations": self._runner.conversations,
            "uptime_s": round(time.monotonic() - self._started_at, 1),
            "volume_percent": self._volume.percent,
            "triggers": list(self.config.trigger.modes),
            "ready": self._ready.is_set(),
            "audio_ok": self._runner.mic_ok.is_set(),
            "device_id": self.device_id,
            "version": __version__,
            "turn_latency": turns.figures() if turns is not None else None,
            "wake_enabled": wake is not None and wake.enabled,
            "muted": self._display.muted,
            "wake_word": (wake.chosen or "all") if wake is not None else None,
            "wake_words": list(wake.labels) if wake is not None else [],
            "approvals_waiting": run.session.approvals_waiting if run is not None else {},
            "context_usage": self._runner.context_usage(),
        }

    @property
    def volume_percent(self) -> float:
        return self._volume.percent

    def set_volume_percent(self, percent: float) -> None:
        self._volume.set_percent(percent)

    def set_wake_enabled(self, on: bool) -> str | None:
        if self._triggers.wake is None:
            return "this device does not listen for a wake word (trigger.mode)"
        self._triggers.wake.set_enabled(on)
        return None

    def set_muted(self, muted: bool) -> str | None:
        """The microphone off or on: the wake word, and what a running conversation hears
        (a conversation the button started keeps it: the press was deliberate)."""
        self._display.set_muted(muted)
        if self._triggers.wake is not None:
            self._triggers.wake.set_muted(muted)
        self.events.publish(ev.MicMuted(muted))
        return None

    def choose_wake_word(self, model: str) -> str | None:
        wake = self._triggers.wake
        if wake is None:
            return "this device does not listen for a wake word (trigger.mode)"
        if model != "all" and model not in wake.labels:
            return f"no wake word {model!r}; this device listens for {', '.join(wake.labels)}"
        wake.choose(None if model == "all" else model)
        self.events.publish(ev.WakeWordChosen(model))
        return None

    def start_conversation(
        self, user_message: str | None = None, opening: Opening | None = None
    ) -> str | None:
        """Start one now, as a press would (``opening``: its first words and background); the
        reason it cannot, or None."""
        if self._runner.run is not None:
            return "a conversation is already running"
        if not self._ready.is_set():
            return "the device is still starting; try again in a moment"
        if not self._runner.mic_ok.is_set():
            return "the microphone is not working; the device is trying to get it back"
        if self._display.state not in (DeviceState.IDLE, DeviceState.MUTED):
            return f"the device is busy ({self._display.state.value}); try again in a moment"
        refusal = self._retry.refusal()
        if refusal is not None:
            return refusal
        self._triggers.control.request(user_message, opening)
        return None

    def announce(self, text: str) -> str | None:
        """The agent says ``text``: a conversation that opens with it and ends after it; while
        one runs, the agent is asked to read it out (a typed turn)."""
        run = self._runner.run
        if run is not None:
            return run.from_device(ANNOUNCE_REQUEST.format(text=text), typed=True)
        return self.start_conversation(opening=Opening(first_message=text, announcement=True))

    def stop_conversation(self) -> str | None:
        run = self._runner.run
        if run is None:
            stopped = self._runner.cancel_connect("stopped while connecting")
            return None if stopped else "no conversation is running"
        run.request_end("stopped over the control socket")
        return None

    def end_conversation(self) -> bool:
        """After the agent's next turn (the end_conversation tool)."""
        run = self._runner.run
        if run is None:
            return False
        run.end_after_turn()
        return True

    def send_user_message(self, text: str) -> str | None:
        run = self._runner.run
        if run is None:
            return "no conversation is running"
        return run.from_device(text, typed=True)

    def send_contextual_update(self, text: str, context_id: str | None = None) -> str | None:
        run = self._runner.run
        if run is None:
            return "no conversation is running"
        return run.from_device(text, typed=False, context_id=context_id)

    def answer_approval(
        self, approved: bool, by: str, tool_call_id: str | None = None
    ) -> str | None:
        run = self._runner.run
        if run is None:
            return "no conversation is running"
        return run.answer_approval(approved, by, tool_call_id)

    def send_feedback(self, score: str) -> str | None:
        run = self._runner.run
        if run is None:
            return "no conversation is running"
        return run.feedback(score)
