"""The push button, through gpiozero, delivered to the event loop.

gpiozero calls ``when_pressed`` / ``when_released`` on its own thread; both are handed to the
asyncio loop with ``call_soon_threadsafe`` so the device's logic stays single-threaded.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentpi.config.document import ButtonConfig
from agentpi.system.gpio import gpio_errors


class ButtonInput:
    def __init__(self, config: ButtonConfig, pin_factory: Any = None) -> None:
        from gpiozero import Button

        if config.pin is None:
            raise ValueError("a button needs [button] pin")
        with gpio_errors(f"button on GPIO{config.pin}"):
            self._button = Button(
                config.pin,
                pull_up=config.pull_up,
                bounce_time=config.bounce_s or None,
                pin_factory=pin_factory,
            )

    @property
    def is_held(self) -> bool:
        return bool(self._button.is_pressed)

    def attach(
        self,
        loop: asyncio.AbstractEventLoop,
        on_press: Callable[[], None],
        on_release: Callable[[], None],
    ) -> None:
        self._button.when_pressed = lambda: loop.call_soon_threadsafe(on_press)
        self._button.when_released = lambda: loop.call_soon_threadsafe(on_release)

    def close(self) -> None:
        self._button.when_pressed = None
        self._button.when_released = None
        self._button.close()
