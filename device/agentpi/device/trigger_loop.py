"""The trigger sources the config names, armed while the device waits, and the queue of what
they fire."""

from __future__ import annotations

import asyncio
import contextlib

from agentpi.audio.capture import Microphone
from agentpi.config.document import Config
from agentpi.triggers.button import ButtonInput
from agentpi.triggers.sources import (
    ButtonListener,
    ButtonTrigger,
    ControlTrigger,
    ImmediateTrigger,
    Trigger,
    TriggerSource,
    WakeTrigger,
)
from agentpi.wake.listener import WakeListener

TRIGGER_QUEUE = 4
"""Triggers waiting to be taken; more at once are the same request repeated, and dropped."""


class TriggerLoop:
    def __init__(
        self,
        config: Config,
        mic: Microphone,
        wake: WakeListener | None = None,
        button: ButtonInput | None = None,
    ) -> None:
        modes = config.trigger.modes
        if "wake" in modes and wake is None:
            raise ValueError('trigger "wake" needs a WakeListener')
        if "button" in modes and button is None:
            raise ValueError('trigger "button" needs a ButtonInput')
        self.control = ControlTrigger(config.control.enabled, config.mqtt.enabled)
        self.wake = WakeTrigger(wake, mic, config) if wake is not None else None
        self.button = ButtonTrigger(button, config) if button is not None else None
        self.immediate = ImmediateTrigger(config.agent.url) if "immediate" in modes else None
        sources = (self.wake, self.button, self.immediate, self.control)
        self.sources: list[TriggerSource] = [s for s in sources if s is not None]
        self._queue: asyncio.Queue[Trigger | None] = asyncio.Queue(TRIGGER_QUEUE)
        self._stopped = False

    def start(self, loop: asyncio.AbstractEventLoop, stack: contextlib.AsyncExitStack) -> None:
        """Every source running until ``stack`` closes."""
        for source in self.sources:
            stack.callback(source.close)
            source.start(loop, self.fire)

    def describe(self) -> list[str]:
        """What the user can do to start a conversation (the ready line)."""
        return [label for source in self.sources if (label := source.describe())]

    def fire(self, trigger: Trigger | None) -> None:
        if self._stopped:
            return
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(trigger)

    async def next(self) -> Trigger | None:
        """Wait, with every source armed, until one fires; None once stopped, or when a file
        input has ended with nothing left to do."""
        if self._stopped:
            return None
        for source in self.sources:
            source.arm()
        try:
            return await self._queue.get()
        finally:
            for source in self.sources:
                source.disarm()

    def in_conversation(self, conversation: ButtonListener | None) -> None:
        for source in self.sources:
            source.in_conversation(conversation)

    def conversation_over(self, delay_s: float) -> None:
        for source in self.sources:
            source.conversation_over(delay_s)

    def stop(self) -> None:
        """Nothing queued may start a conversation now, and ``next`` returns None."""
        self._stopped = True
        while not self._queue.empty():
            self._queue.get_nowait()
        self._queue.put_nowait(None)
