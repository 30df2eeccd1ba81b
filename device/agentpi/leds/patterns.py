"""What the lights show, with no I/O: the state -> pattern table and the animator.

``LedAnimator.frame(now)`` returns the colour (r, g, b in 0..1) the lights should have at time
``now``, from the device state, the server's ``vad_score`` and the level of the audio being played.
Levels are smoothed with separate attack and release times, so a jumpy VAD score becomes a light
that breathes instead of one that flickers.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Literal

from agentpi.states import DeviceState

Color = tuple[float, float, float]

NAMED_COLORS: dict[str, Color] = {
    "white": (1.0, 1.0, 1.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "purple": (0.6, 0.0, 1.0),
    "yellow": (1.0, 0.8, 0.0),
    "orange": (1.0, 0.4, 0.0),
}

Effect = Literal["off", "on", "blink", "pulse", "vad", "envelope"]

SETTLED = 1 / 510
"""A level this close to where it is heading looks the same (half of the 1/255 steps written)."""


def parse_color(spec: str) -> Color:
    """A colour name from NAMED_COLORS or ``#rrggbb``."""
    if spec in NAMED_COLORS:
        return NAMED_COLORS[spec]
    if len(spec) == 7 and spec.startswith("#"):
        try:
            return (
                int(spec[1:3], 16) / 255,
                int(spec[3:5], 16) / 255,
                int(spec[5:7], 16) / 255,
            )
        except ValueError:
            pass
    raise ValueError(f"colour {spec!r}: use #rrggbb or one of {', '.join(NAMED_COLORS)}")


@dataclass(frozen=True)
class Pattern:
    """How the lights look in one state.

    off, on: steady. blink: on for half of ``period_s``, then off. pulse: a smooth breath between
    ``floor`` and ``brightness`` every ``period_s``. vad: brightness follows the server's
    vad_score. envelope: brightness follows the audio being played."""

    effect: Effect = "on"
    color: str = "white"
    period_s: float = 1.0
    brightness: float = 1.0
    floor: float = 0.1

    rgb: Color = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rgb", parse_color(self.color))
        if self.period_s <= 0:
            raise ValueError(f"period_s must be more than 0, got {self.period_s}")
        if not 0 <= self.floor <= self.brightness <= 1:
            raise ValueError("need 0 <= floor <= brightness <= 1")


DEFAULT_PATTERNS: dict[DeviceState, Pattern] = {
    DeviceState.IDLE: Pattern("off"),
    DeviceState.MUTED: Pattern("on", "red", brightness=0.15),
    DeviceState.WAKE_DETECTED: Pattern("on", "white"),
    DeviceState.CONNECTING: Pattern("blink", "blue", period_s=0.5),
    DeviceState.LISTENING: Pattern("vad", "blue", floor=0.15),
    DeviceState.USER_SPEAKING: Pattern("vad", "cyan", floor=0.3),
    DeviceState.THINKING: Pattern("pulse", "purple", period_s=1.2, floor=0.1),
    DeviceState.SPEAKING: Pattern("envelope", "green", floor=0.2),
    DeviceState.WORKING: Pattern("pulse", "yellow", period_s=0.6, floor=0.1),
    DeviceState.AWAITING_APPROVAL: Pattern("blink", "yellow", period_s=1.0),
    DeviceState.ENDING: Pattern("on", "blue", brightness=0.3),
    DeviceState.ERROR: Pattern("blink", "red", period_s=0.3),
    DeviceState.OFFLINE: Pattern("pulse", "orange", period_s=3.0, floor=0.05),
}


@dataclass
class _Smoothed:
    """A first-order follower with a fast attack and a slow release."""

    attack_s: float
    release_s: float
    value: float = 0.0
    target: float = 0.0
    updated_at: float | None = None

    def advance(self, now: float) -> float:
        if self.updated_at is not None and now > self.updated_at:
            tau = self.attack_s if self.target > self.value else self.release_s
            self.value += (self.target - self.value) * (
                1 - math.exp(-(now - self.updated_at) / tau)
            )
        self.updated_at = now
        return self.value


@dataclass
class LedAnimator:
    patterns: dict[DeviceState, Pattern] = field(default_factory=lambda: dict(DEFAULT_PATTERNS))
    attack_s: float = 0.05
    release_s: float = 0.3

    def __post_init__(self) -> None:
        self.state = DeviceState.IDLE
        self._since = 0.0
        self._vad = _Smoothed(self.attack_s, self.release_s)
        self._envelope = _Smoothed(self.attack_s, self.release_s)
        # Written from the event loop, read by the render thread: held for microseconds only.
        self._lock = threading.Lock()

    @property
    def pattern(self) -> Pattern:
        return self.patterns.get(self.state, DEFAULT_PATTERNS[self.state])

    def set_state(self, state: DeviceState, now: float) -> None:
        with self._lock:
            if state is not self.state:
                self.state = state
                self._since = now  # blink and pulse start at the top of their cycle

    def set_vad(self, score: float, now: float) -> None:
        with self._lock:
            self._vad.advance(now)
            self._vad.target = min(1.0, max(0.0, score))

    def set_envelope(self, level: float, now: float) -> None:
        with self._lock:
            self._envelope.advance(now)
            self._envelope.target = min(1.0, max(0.0, level))

    def level(self, now: float) -> float:
        """The pattern's brightness at ``now``, 0..1."""
        with self._lock:
            pattern = self.pattern
            vad = self._vad.advance(now)
            envelope = self._envelope.advance(now)
            phase = ((now - self._since) / pattern.period_s) % 1.0
        span = pattern.brightness - pattern.floor
        if pattern.effect == "off":
            return 0.0
        if pattern.effect == "on":
            return pattern.brightness
        if pattern.effect == "blink":
            return pattern.brightness if phase < 0.5 else 0.0
        if pattern.effect == "pulse":
            return pattern.floor + span * (0.5 + 0.5 * math.cos(2 * math.pi * phase))
        if pattern.effect == "vad":
            return pattern.floor + span * vad
        return pattern.floor + span * envelope

    def until_change(self, now: float) -> float | None:
        """How long the lights may stay as they are now: None while nothing but an input (a new
        state, a VAD score) can change them, 0 while they move every frame."""
        with self._lock:
            pattern = self.pattern
            vad = self._vad.advance(now)
            target = self._vad.target
            phase = ((now - self._since) / pattern.period_s) % 1.0
        if pattern.effect in ("off", "on"):
            return None
        if pattern.effect == "blink":
            return ((0.5 if phase < 0.5 else 1.0) - phase) * pattern.period_s
        if pattern.effect == "vad":
            span = pattern.brightness - pattern.floor
            return None if abs(target - vad) * span < SETTLED else 0.0
        return 0.0  # pulse and the speaker's envelope move all the time

    def frame(self, now: float) -> Color:
        level = self.level(now)
        red, green, blue = self.pattern.rgb
        return (red * level, green * level, blue * level)
