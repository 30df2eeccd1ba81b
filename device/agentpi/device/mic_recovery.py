"""Getting back a microphone that went away (a USB device unplugged, a stream that stalled).

Once the running conversation has ended, the device shows and sounds the error, closes the
microphone, and reopens it with growing pauses (the microphone's own reopen restarts PortAudio,
so a replugged device is found). ``ok`` is set while the microphone works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from agentpi import events as ev
from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.capture import Microphone
from agentpi.events import EventBus

AUDIO_RETRY_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
"""Waits between attempts to reopen a microphone that went away; the last one repeats."""


class MicRecovery:
    def __init__(
        self,
        mic: Microphone,
        events: EventBus,
        no_conversation: asyncio.Event,
        show_error: Callable[[], Awaitable[None]],
        restored: Callable[[], None],
        ok: asyncio.Event,
    ) -> None:
        self.mic = mic
        self.events = events
        self.ok = ok
        """Set while the microphone works; cleared here when it fails, set again when back."""
        self._no_conversation = no_conversation
        self._show_error = show_error
        self._restored = restored
        self._task: asyncio.Task[None] | None = None

    def lost(self, exc: Exception) -> bool:
        """The microphone failed (on the loop); False when a recovery is already under way."""
        if not self.ok.is_set():
            return False
        self.ok.clear()
        self.events.publish(ev.AudioError(str(exc)))
        self._task = asyncio.get_running_loop().create_task(self._recover())
        return True

    def cancel(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def _recover(self) -> None:
        loop = asyncio.get_running_loop()
        await self._no_conversation.wait()  # let the conversation finish ending first
        await self._show_error()
        await loop.run_in_executor(None, self.mic.close)
        attempt = 0
        while True:
            await asyncio.sleep(AUDIO_RETRY_S[min(attempt, len(AUDIO_RETRY_S) - 1)])
            attempt += 1
            try:
                await loop.run_in_executor(None, self.mic.open)
            except AudioDeviceError as exc:
                self.events.publish(ev.AudioRetry(attempt, str(exc)))
                continue
            break
        self.events.publish(ev.AudioRestored(attempt))
        self._restored()
        self.ok.set()
