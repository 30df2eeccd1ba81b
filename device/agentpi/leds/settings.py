"""The LED section of the config: which lights, on which pins, showing which patterns.

Plain data with its checks, beside the sans-I/O animator, so the config never imports a driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from agentpi.leds.patterns import Pattern, parse_color
from agentpi.states import DeviceState

LedType = Literal["none", "led", "pwmled", "rgbled", "board", "apa102"]


@dataclass(frozen=True)
class LedSettings:
    type: LedType = "none"
    pins: tuple[int, ...] = ()
    """GPIO (BCM) numbers: one per LED; red, green, blue for rgbled."""
    colors: tuple[str, ...] = ()
    """The colour of each single-colour LED, so a pattern's colour lights the right one."""
    active_high: bool = True
    count: int = 3
    """apa102: number of pixels."""
    spi_bus: int = 0
    enable_pin: int | None = None
    """A pin driven high to power the LEDs (the ReSpeaker 4-Mic array needs GPIO5)."""
    fps: float = 50.0
    brightness: float = 1.0
    patterns: dict[str, Pattern] = field(default_factory=dict)
    """Per-state overrides of the default patterns, keyed by state name."""

    def __post_init__(self) -> None:
        names = {state.value for state in DeviceState}
        for key in self.patterns:
            if key not in names:
                raise ValueError(f"leds.patterns.{key}: no such state; states: {', '.join(names)}")
        needs = {"led": 1, "pwmled": 1, "rgbled": 3}
        if self.type in needs and len(self.pins) != needs[self.type]:
            raise ValueError(f"leds.type = {self.type!r} takes {needs[self.type]} pin(s) in pins")
        if self.type == "board" and not self.pins:
            raise ValueError('leds.type = "board" needs its pins')
        if self.colors and len(self.colors) != len(self.pins):
            raise ValueError("leds.colors needs one colour per pin")
        for color in self.colors:
            parse_color(color)
        if not 0 < self.brightness <= 1 or self.fps <= 0:
            raise ValueError("leds.brightness must be in (0, 1] and leds.fps more than 0")

    def pattern_table(self) -> dict[DeviceState, Pattern]:
        from agentpi.leds.patterns import DEFAULT_PATTERNS

        table = dict(DEFAULT_PATTERNS)
        table.update({DeviceState(name): pattern for name, pattern in self.patterns.items()})
        return table
