"""LED hardware behind one interface, and the render thread that drives it.

``GpioLeds`` uses gpiozero (LED, PWMLED, RGBLED, LEDBoard; its mock pin factory in tests);
``Apa102Leds`` drives an APA102 ring (ReSpeaker HATs) through the ``apa102-pi`` driver. Both only
``show(color)``. ``LedController`` renders the animator on its own thread at a fixed rate and
listens to the event stream; the event loop only ever sets a few numbers under a short lock, so
the lights can never hold up audio.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from agentpi import events as ev
from agentpi.errors import reason_of
from agentpi.events import DeviceEvent, EventBus
from agentpi.leds.patterns import Color, LedAnimator, parse_color
from agentpi.leds.settings import LedSettings
from agentpi.states import DeviceState
from agentpi.system.gpio import GpioError, gpio_errors

STEPS = 255  # brightness resolution written to the hardware; smaller changes are not written


class LedSetupError(GpioError):
    """The configured LEDs cannot be driven (no GPIO, pins in use, driver missing)."""


class LedOutput(Protocol):
    def show(self, color: Color) -> None: ...

    def close(self) -> None: ...


def _quantize(level: float) -> float:
    return round(min(1.0, max(0.0, level)) * STEPS) / STEPS


def _brightness_for(led_color: Color, color: Color) -> float:
    """How bright a single-colour LED should be to stand for ``color``."""
    norm = sum(channel * channel for channel in led_color)
    return sum(a * b for a, b in zip(led_color, color, strict=True)) / norm if norm else 0.0


class GpioLeds:
    def __init__(self, settings: LedSettings, pin_factory: Any = None) -> None:
        from gpiozero import LED, PWMLED, RGBLED, DigitalOutputDevice, LEDBoard

        self.settings = settings
        self._last: tuple[float, ...] | None = None
        kwargs: dict[str, Any] = {"active_high": settings.active_high, "pin_factory": pin_factory}
        self._led_colors = [parse_color(c) for c in settings.colors]
        self._enable: Any = None
        with gpio_errors(f"LEDs on GPIO {list(settings.pins)}"):
            if settings.enable_pin is not None:
                self._enable = DigitalOutputDevice(
                    settings.enable_pin, initial_value=True, pin_factory=pin_factory
                )
            if settings.type == "led":
                self.device: Any = LED(settings.pins[0], **kwargs)
            elif settings.type == "pwmled":
                self.device = PWMLED(settings.pins[0], **kwargs)
            elif settings.type == "rgbled":
                self.device = RGBLED(*settings.pins, pwm=True, **kwargs)
            elif settings.type == "board":
                self.device = LEDBoard(*settings.pins, pwm=True, **kwargs)
            else:
                raise LedSetupError(f"leds.type = {settings.type!r} is not a gpiozero device")

    def levels(self, color: Color) -> tuple[float, ...]:
        scale = self.settings.brightness
        kind = self.settings.type
        if kind == "rgbled":
            return tuple(_quantize(channel * scale) for channel in color)
        if self.settings.colors:
            levels = [_quantize(_brightness_for(led, color) * scale) for led in self._led_colors]
        else:  # LEDs of unknown colour show the pattern's brightness
            levels = [_quantize(max(color) * scale)] * len(self.settings.pins)
        if kind == "led":
            # A plain LED cannot dim: lit whenever the pattern is, so it still tells a conversation
            # (on), connecting or an error (blinking) and idle (off) apart.
            return (1.0 if levels[0] > 0 else 0.0,)
        return tuple(levels)

    def show(self, color: Color) -> None:
        levels = self.levels(color)
        if levels == self._last:
            return
        self._last = levels
        kind = self.settings.type
        if kind == "rgbled":
            self.device.color = levels
        elif kind == "board":
            self.device.value = levels
        else:
            self.device.value = levels[0]

    def close(self) -> None:
        self.device.close()
        if self._enable is not None:
            self._enable.close()


class Apa102Leds:
    """An APA102 strip or ring; ``strip`` is an ``apa102_pi`` APA102 (made here by default)."""

    def __init__(self, settings: LedSettings, strip: Any = None) -> None:
        self.settings = settings
        self._last: tuple[int, int, int] | None = None
        self._enable: Any = None
        if strip is None:
            try:
                from apa102_pi.driver import apa102
            except ImportError:
                raise LedSetupError(
                    'leds.type = "apa102" needs the driver: pip install "agentpi[apa102]"'
                ) from None
            try:
                strip = apa102.APA102(
                    num_led=settings.count, order="rgb", bus_method="spi", spi_bus=settings.spi_bus
                )
            except Exception as exc:  # the driver raises plain errors for a missing SPI bus
                raise LedSetupError(
                    f"APA102 LEDs on SPI bus {settings.spi_bus}: {reason_of(exc)}"
                ) from None
            if settings.enable_pin is not None:
                from gpiozero import DigitalOutputDevice

                with gpio_errors(f"LED enable pin GPIO{settings.enable_pin}"):
                    self._enable = DigitalOutputDevice(settings.enable_pin, initial_value=True)
        self.strip = strip

    def show(self, color: Color) -> None:
        scale = self.settings.brightness * 255
        rgb = (round(color[0] * scale), round(color[1] * scale), round(color[2] * scale))
        if rgb == self._last:
            return
        self._last = rgb
        for index in range(self.settings.count):
            self.strip.set_pixel(index, *rgb, 100)
        self.strip.show()

    def close(self) -> None:
        self.strip.clear_strip()
        self.strip.cleanup()
        if self._enable is not None:
            self._enable.close()


def open_leds(settings: LedSettings, pin_factory: Any = None) -> LedOutput | None:
    if settings.type == "none":
        return None
    if settings.type == "apa102":
        return Apa102Leds(settings)
    return GpioLeds(settings, pin_factory)


class LedController:
    """Renders the animator onto an output, on a thread of its own."""

    def __init__(
        self,
        output: LedOutput,
        animator: LedAnimator,
        fps: float = 50.0,
        level_source: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.output = output
        self.animator = animator
        self.period_s = 1.0 / fps
        self.level_source = level_source
        self._clock = clock
        self._bus: EventBus | None = None
        self._stop = threading.Event()
        self._changed = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, bus: EventBus) -> None:
        """Follow the device's event stream, and report pattern changes on it."""
        self._bus = bus
        bus.subscribe(self.on_event)

    def on_event(self, event: DeviceEvent) -> None:
        if isinstance(event, ev.StateChanged):
            state = DeviceState(event.state)
            self.animator.set_state(state, self._clock())
            pattern = self.animator.pattern
            if self._bus is not None:
                self._bus.publish(ev.LedShown(state.value, pattern.effect, pattern.color))
            self._changed.set()
        elif isinstance(event, ev.VadScore):
            self.animator.set_vad(event.score, self._clock())
            self._changed.set()

    def render(self, now: float | None = None) -> Color:
        now = self._clock() if now is None else now
        if self.level_source is not None:
            self.animator.set_envelope(self.level_source(), now)
        color = self.animator.frame(now)
        self.output.show(color)
        return color

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="leds", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        # Renders only while the lights move: a steady pattern (idle, a settled VAD light) sleeps
        # until an event changes it, a blink wakes at its edges, the rest at the frame rate.
        while not self._stop.is_set():
            self._changed.clear()
            now = self._clock()
            self.render(now)
            until = self.animator.until_change(now)
            self._changed.wait(None if until is None else max(self.period_s, until))

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None
        self.output.show((0.0, 0.0, 0.0))
        self.output.close()
