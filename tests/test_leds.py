"""LEDs: what each state shows over time, on gpiozero's mock pins, and what profiles wire."""

from __future__ import annotations

import importlib.util
import itertools
import json
import math
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest
from gpiozero.pins.mock import MockFactory

from agentpi import events as ev
from agentpi.config.document import ConfigError, load_config
from agentpi.config.profiles import load_profile, profile_dirs
from agentpi.leds.driver import (
    STEPS,
    Apa102Leds,
    GpioLeds,
    LedController,
)
from agentpi.leds.patterns import DEFAULT_PATTERNS, LedAnimator, Pattern
from agentpi.leds.settings import LedSettings
from agentpi.settings.typed import build_dataclass
from agentpi.states import DeviceState
from tests.helpers import HELLO_WAV, run_conversation
from tests.test_cli import GOOD, agentpi, write_config

S = DeviceState
BOARD = LedSettings(type="board", pins=(17, 27, 22), colors=("green", "blue", "red"))
MOCK_ENV = {"GPIOZERO_PIN_FACTORY": "mock", "GPIOZERO_MOCK_PIN_CLASS": "mockpwmpin"}


def pin_values(factory: MockFactory, pins: tuple[int, ...]) -> tuple[float, ...]:
    return tuple(float(factory.pin(pin).state) for pin in pins)


def controller_at(
    settings: LedSettings, factory: MockFactory, state: DeviceState, since: float = 0.0
) -> LedController:
    controller = LedController(GpioLeds(settings, factory), LedAnimator(settings.pattern_table()))
    controller.animator.set_state(state, since)
    return controller


# -- the animator: brightness over time, no pins ------------------------------------------------


def test_steady_blink_and_pulse_levels_over_time() -> None:
    animator = LedAnimator()
    animator.set_state(S.IDLE, 0.0)
    assert [animator.level(t) for t in (0.0, 0.4, 7.0)] == [0.0, 0.0, 0.0]

    animator.set_state(S.WAKE_DETECTED, 1.0)
    assert animator.level(1.0) == animator.level(9.0) == 1.0

    animator.set_state(S.CONNECTING, 10.0)  # blink, 0.5 s period, starts on
    assert animator.level(10.0) == 1.0 and animator.level(10.2) == 1.0
    assert animator.level(10.3) == 0.0 and animator.level(10.45) == 0.0
    assert animator.level(10.55) == 1.0

    thinking = DEFAULT_PATTERNS[S.THINKING]  # pulse: top at the start, floor half-way
    animator.set_state(S.THINKING, 20.0)
    assert animator.level(20.0) == pytest.approx(thinking.brightness)
    assert animator.level(20.0 + thinking.period_s / 2) == pytest.approx(thinking.floor)
    assert animator.level(20.0 + thinking.period_s) == pytest.approx(thinking.brightness)
    quarter = animator.level(20.0 + thinking.period_s / 4)
    assert quarter == pytest.approx((thinking.brightness + thinking.floor) / 2)


def test_vad_score_brightens_fast_and_fades_slowly() -> None:
    animator = LedAnimator(attack_s=0.05, release_s=0.3)
    listening = DEFAULT_PATTERNS[S.LISTENING]
    animator.set_state(S.LISTENING, 0.0)
    assert animator.level(0.0) == pytest.approx(listening.floor)  # no voice: dim, not dark

    animator.set_vad(1.0, 1.0)
    span = listening.brightness - listening.floor
    rise = [(animator.level(1.0 + i * 0.02) - listening.floor) / span for i in range(1, 16)]
    assert rise == sorted(rise)  # no overshoot, no steps back
    assert rise[1] == pytest.approx(1 - math.exp(-0.04 / 0.05), abs=1e-9)
    assert rise[-1] > 0.99

    top = (animator.level(1.3) - listening.floor) / span
    animator.set_vad(0.0, 1.3)
    after_attack_time = (animator.level(1.35) - listening.floor) / span
    assert after_attack_time == pytest.approx(top * math.exp(-0.05 / 0.3))  # slow release
    assert animator.level(4.0) == pytest.approx(listening.floor, abs=1e-3)


def test_jumpy_vad_scores_give_a_light_that_breathes_not_flickers() -> None:
    animator = LedAnimator()
    animator.set_state(S.LISTENING, 0.0)
    pattern = DEFAULT_PATTERNS[S.LISTENING]
    span = pattern.brightness - pattern.floor
    levels = []
    for frame in range(200):  # 4 s at 50 fps; the score jumps between 0.1 and 0.9 every 60 ms
        now = frame / 50
        if frame % 3 == 0:
            animator.set_vad(0.9 if (frame // 3) % 2 else 0.1, now)
        levels.append(animator.level(now))
    steps = [abs(b - a) for a, b in itertools.pairwise(levels)]
    assert max(steps) < 0.35 * 0.8 * span  # the raw score moves 0.8 of the span at once
    settled = [(level - pattern.floor) / span for level in levels[100:]]
    assert min(settled) > 0.3 and max(settled) < 0.9  # it follows the average, not each jump


def test_envelope_follows_the_audio_being_played() -> None:
    animator = LedAnimator()
    animator.set_state(S.SPEAKING, 0.0)
    speaking = DEFAULT_PATTERNS[S.SPEAKING]
    assert animator.level(0.0) == pytest.approx(speaking.floor)
    for frame in range(1, 20):
        animator.set_envelope(0.8, frame / 50)
    loud = animator.level(0.4)
    assert loud == pytest.approx(speaking.floor + (1 - speaking.floor) * 0.8, rel=0.01)
    for frame in range(20, 120):
        animator.set_envelope(0.0, frame / 50)
    assert animator.level(2.4) == pytest.approx(speaking.floor, abs=0.01)


def test_every_state_has_a_pattern_and_the_colour_is_scaled_by_level() -> None:
    assert set(DEFAULT_PATTERNS) == set(DeviceState)
    animator = LedAnimator()
    animator.set_state(S.ERROR, 0.0)
    assert animator.frame(0.0) == (1.0, 0.0, 0.0)
    assert animator.frame(0.2) == (0.0, 0.0, 0.0)


# -- gpiozero mock pins ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "times", "expected"),
    [
        # pins: green 17, blue 27, red 22
        (S.IDLE, (0.0, 1.0), [(0, 0, 0), (0, 0, 0)]),
        (S.WAKE_DETECTED, (0.0,), [(1.0, 1.0, 1.0)]),
        (S.CONNECTING, (0.0, 0.3, 0.5), [(0, 1.0, 0), (0, 0, 0), (0, 1.0, 0)]),
        (S.LISTENING, (0.0,), [(0, round(0.15 * STEPS) / STEPS, 0)]),
        (S.THINKING, (0.0, 0.6), [(0, 1.0, 0.6), (0, 0.1, 0.06)]),
        (S.SPEAKING, (0.0,), [(0.2, 0, 0)]),
        (S.ENDING, (0.0,), [(0, 0.3, 0)]),
        (S.ERROR, (0.0, 0.15, 0.3), [(0, 0, 1.0), (0, 0, 0), (0, 0, 1.0)]),
        (S.OFFLINE, (0.0, 1.5), [(0.4, 0, 1.0), (0.02, 0, 0.05)]),
    ],
)
def test_board_pins_per_state_over_time(
    factory: MockFactory,
    state: DeviceState,
    times: tuple[float, ...],
    expected: list[tuple[float, float, float]],
) -> None:
    controller = controller_at(BOARD, factory, state)
    for now, want in zip(times, expected, strict=True):
        controller.render(now)
        assert pin_values(factory, BOARD.pins) == pytest.approx(want, abs=1 / STEPS), (state, now)
    controller.stop()
    assert pin_values(factory, BOARD.pins) == (0.0, 0.0, 0.0)


def test_pwm_levels_are_quantized_and_unchanged_levels_are_not_rewritten(
    factory: MockFactory,
) -> None:
    controller = controller_at(BOARD, factory, S.THINKING)
    blue = factory.pin(27)
    for frame in range(60):  # one 1.2 s breath at 50 fps
        controller.render(frame / 50)
    written = [float(change.state) for change in blue.states[1:]]
    assert all(abs(level * STEPS - round(level * STEPS)) < 1e-9 for level in written)
    assert len(written) > 50  # a pulse changes nearly every frame...
    assert all(a != b for a, b in itertools.pairwise(written))  # ...and only then
    assert max(written) == 1.0 and min(written) == pytest.approx(0.1, abs=0.01)

    controller.animator.set_state(S.ENDING, 2.0)
    before = len(blue.states)
    for frame in range(25):
        controller.render(2.0 + frame / 50)
    assert len(blue.states) == before + 1  # steady: written once
    controller.stop()


def test_vad_score_events_drive_the_listening_light(factory: MockFactory) -> None:
    clock = {"now": 0.0}
    controller = LedController(
        GpioLeds(BOARD, factory), LedAnimator(BOARD.pattern_table()), clock=lambda: clock["now"]
    )
    controller.on_event(ev.StateChanged("listening"))
    blue = factory.pin(27)
    controller.render()
    quiet = blue.state
    for frame in range(1, 30):
        clock["now"] = frame / 50
        controller.on_event(ev.VadScore(0.95))
        controller.render()
    loud = blue.state
    assert quiet == pytest.approx(0.15, abs=1 / STEPS)
    assert loud > 0.9
    levels = [float(change.state) for change in blue.states[1:]]
    assert levels == sorted(levels)  # rises smoothly, no flicker back


def test_rgb_led_mixes_the_pattern_colour(factory: MockFactory) -> None:
    settings = LedSettings(type="rgbled", pins=(5, 6, 13))
    controller = controller_at(settings, factory, S.THINKING)
    controller.render(0.0)
    assert pin_values(factory, (5, 6, 13)) == pytest.approx((0.6, 0.0, 1.0), abs=1 / STEPS)
    controller.animator.set_state(S.OFFLINE, 1.0)
    controller.render(1.0)
    assert pin_values(factory, (5, 6, 13)) == pytest.approx((1.0, 0.4, 0.0), abs=1 / STEPS)
    controller.stop()


def test_plain_led_is_on_or_off_and_pwmled_dims(factory: MockFactory) -> None:
    plain = controller_at(LedSettings(type="led", pins=(16,)), factory, S.CONNECTING)
    plain.render(0.0)
    assert factory.pin(16).state
    plain.render(0.3)
    assert not factory.pin(16).state
    plain.animator.set_state(S.LISTENING, 1.0)
    plain.render(1.0)  # a dim 0.15 is on: a plain LED cannot dim
    assert factory.pin(16).state
    plain.animator.set_state(S.IDLE, 2.0)
    plain.render(2.0)
    assert not factory.pin(16).state

    half = LedSettings(type="pwmled", pins=(25,), brightness=0.5)
    dimmer = controller_at(half, factory, S.ENDING)
    dimmer.render(0.0)
    assert factory.pin(25).state == pytest.approx(0.15, abs=1 / STEPS)
    plain.stop()
    dimmer.stop()


def test_active_low_leds_are_inverted_on_the_pin(factory: MockFactory) -> None:
    settings = LedSettings(type="pwmled", pins=(25,), active_high=False)
    controller = controller_at(settings, factory, S.WAKE_DETECTED)
    controller.render(0.0)
    assert factory.pin(25).state == 0.0
    controller.animator.set_state(S.IDLE, 1.0)
    controller.render(1.0)
    assert factory.pin(25).state == 1.0
    controller.stop()


def test_pattern_overrides_from_config(factory: MockFactory) -> None:
    settings = build_dataclass(
        LedSettings,
        {
            "type": "board",
            "pins": [17, 27, 22],
            "colors": ["green", "blue", "red"],
            "patterns": {"idle": {"effect": "pulse", "color": "#00ff00", "period_s": 4.0}},
        },
        "leds",
    )
    assert settings.pattern_table()[S.IDLE] == Pattern("pulse", "#00ff00", period_s=4.0)
    controller = controller_at(settings, factory, S.IDLE)
    controller.render(0.0)
    assert pin_values(factory, BOARD.pins) == (1.0, 0.0, 0.0)
    controller.render(2.0)
    assert pin_values(factory, BOARD.pins) == pytest.approx((0.1, 0.0, 0.0), abs=1 / STEPS)
    controller.stop()


def test_led_updates_never_wait_for_a_slow_output() -> None:
    """A hung LED driver must not hold up the event loop that feeds it."""
    entered, release = threading.Event(), threading.Event()

    class StuckOutput:
        def show(self, color: tuple[float, float, float]) -> None:
            entered.set()
            release.wait(10)

        def close(self) -> None:
            pass

    controller = LedController(StuckOutput(), LedAnimator(), fps=100)
    controller.start()
    try:
        assert entered.wait(5)

        def feed() -> None:
            for step in range(100):
                controller.on_event(ev.StateChanged("listening"))
                controller.on_event(ev.VadScore(step / 100))

        feeder = threading.Thread(target=feed)
        feeder.start()
        feeder.join(2)
        assert not feeder.is_alive(), "feeding the LEDs blocked behind the driver"
    finally:
        release.set()
        controller.stop()


class RecordingStrip:
    def __init__(self) -> None:
        self.pixels: dict[int, tuple[int, int, int, int]] = {}
        self.shows = 0
        self.cleared = self.cleaned = False

    def set_pixel(self, index: int, red: int, green: int, blue: int, percent: int) -> None:
        self.pixels[index] = (red, green, blue, percent)

    def show(self) -> None:
        self.shows += 1

    def clear_strip(self) -> None:
        self.cleared = True

    def cleanup(self) -> None:
        self.cleaned = True


def test_apa102_ring_gets_the_colour_on_every_pixel() -> None:
    strip = RecordingStrip()
    settings = LedSettings(type="apa102", count=3, brightness=0.5)
    controller = LedController(Apa102Leds(settings, strip=strip), LedAnimator())
    controller.animator.set_state(S.THINKING, 0.0)
    controller.render(0.0)
    assert strip.pixels == {i: (76, 0, 128, 100) for i in range(3)}  # purple at half brightness
    controller.render(0.0)
    assert strip.shows == 1  # same colour: not sent again
    controller.stop()
    assert strip.pixels[0][:3] == (0, 0, 0) and strip.cleared and strip.cleaned


# -- hardware profiles -------------------------------------------------------------------------


def profile_names() -> list[str]:
    return sorted(p.stem for p in profile_dirs()[0].glob("*.toml"))


def test_the_three_builds_are_there() -> None:
    assert {"generic", "respeaker-2mic", "aiy-voicehat"} <= set(profile_names())


@pytest.mark.parametrize("name", profile_names())
def test_profile_wires_its_pins(name: str, tmp_path: Path, factory: MockFactory) -> None:
    info, data = load_profile(name)
    assert info["title"] and info["parts"]
    path = write_config(tmp_path, f'[agent]\nagent_id = "a"\n[hardware]\nprofile = "{name}"\n')
    config = load_config(path)
    assert config.leds.pins == tuple(data["leds"]["pins"])
    assert config.button.pin == data["button"]["pin"]
    if config.leds.type == "apa102":
        strip = RecordingStrip()
        Apa102Leds(config.leds, strip=strip).show((1.0, 1.0, 1.0))
        assert len(strip.pixels) == config.leds.count
        return
    leds = GpioLeds(config.leds, factory)
    leds.show((1.0, 1.0, 1.0))
    used = {info.name for info in factory.pins}
    assert used == {f"GPIO{pin}" for pin in config.leds.pins}
    assert all(factory.pin(pin).state for pin in config.leds.pins)
    leds.close()


def test_expected_wiring_of_the_builds() -> None:
    generic = load_profile("generic")[1]
    assert generic["leds"]["pins"] == [17, 27, 22] and generic["button"]["pin"] == 23
    respeaker = load_profile("respeaker-2mic")[1]
    assert respeaker["leds"]["type"] == "apa102" and respeaker["button"]["pin"] == 17
    aiy = load_profile("aiy-voicehat")[1]
    assert aiy["leds"]["pins"] == [25] and aiy["button"]["pin"] == 23


def test_config_overrides_any_profile_key(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        '[agent]\nagent_id = "a"\n[hardware]\nprofile = "generic"\n'
        "[leds]\npins = [5, 6, 13]\n[leds.patterns.idle]\neffect = 'on'\n[button]\npin = 26\n",
    )
    config = load_config(path)
    assert config.leds.type == "board" and config.leds.pins == (5, 6, 13)
    assert config.leds.colors == ("green", "blue", "red")  # kept from the profile
    assert config.leds.patterns["idle"].effect == "on"
    assert config.button.pin == 26 and config.button.pull_up is True


def test_unknown_profile_names_the_known_ones(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[agent]\nagent_id = "a"\n[hardware]\nprofile = "respeaker"\n')
    with pytest.raises(ConfigError, match=r"no such profile; known: .*respeaker-2mic"):
        load_config(path)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.realtime
def test_agentpi_leds_cycles_every_state_on_mock_pins() -> None:
    result = agentpi("leds", "--profile", "generic", "--seconds", "0.05", env=MOCK_ENV)
    assert result.returncode == 0, result.stderr
    shown = [line.split()[0] for line in result.stdout.splitlines()]
    assert shown == [state.value for state in DeviceState]


@pytest.mark.realtime
def test_agentpi_leds_without_gpio_says_what_to_install() -> None:
    env = {"GPIOZERO_PIN_FACTORY": ""}
    result = agentpi("leds", "--profile", "generic", "--seconds", "0.05", env=env)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "agentpi: LEDs on GPIO [17, 27, 22]: no GPIO library found. On Raspberry Pi OS: sudo apt"
        " install python3-lgpio (make does it). To try without a Pi: GPIOZERO_PIN_FACTORY=mock"
    ]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[leds.patterns.listening]\neffect = 'sparkle'\n", "leds.patterns.listening.effect"),
        ("[leds.patterns.listening]\ncolor = 'mauve'\n", "colour 'mauve'"),
        ("[leds.patterns.dancing]\neffect = 'on'\n", "leds.patterns.dancing: no such state"),
        ("[leds]\ntype = 'rgbled'\npins = [1, 2]\n", "takes 3 pin(s)"),
        ("[leds]\ntype = 'neon'\n", "leds.type = 'neon' is not allowed"),
    ],
)
@pytest.mark.realtime
def test_bad_led_config_is_one_line(tmp_path: Path, body: str, expected: str) -> None:
    path = write_config(tmp_path, f"[agent]\nagent_id = 'a'\n{body}")
    result = agentpi("leds", "--config", str(path), "--seconds", "0.01", env=MOCK_ENV)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


# -- a conversation ----------------------------------------------------------------------------


def led_states(events: list[dict[str, Any]]) -> list[str]:
    return [event["state"] for event in events if event["event"] == "led"]


@pytest.mark.realtime
def test_conversation_shows_its_states_on_the_leds(tmp_path: Path, factory: MockFactory) -> None:
    def leds(sink: Any) -> LedController:
        return LedController(
            GpioLeds(BOARD, factory),
            LedAnimator(BOARD.pattern_table()),
            level_source=lambda: sink.output_level,
        )

    run = run_conversation(tmp_path, leds=leds)
    assert run.exit_code == 0
    assert led_states(run.events) == run.states()
    shown = led_states(run.events)
    assert shown[:3] == ["idle", "connecting", "listening"] and shown[-2:] == ["ending", "idle"]
    assert shown.index("user_speaking") < shown.index("thinking") < len(shown) - 1
    leds_events = [e for e in run.events if e["event"] == "led"]
    assert {e["effect"] for e in leds_events} >= {"off", "blink", "vad", "pulse", "envelope"}
    # The green LED followed the agent's voice: many levels, not one steady value.
    green = {round(float(change.state), 3) for change in factory.pin(17).states}
    assert len(green) > 10
    assert pin_values(factory, BOARD.pins) == (0.0, 0.0, 0.0)  # dark once stopped


@pytest.mark.realtime
def test_run_events_show_the_led_sequence(tmp_path: Path, simulator_process: str) -> None:
    body = GOOD.format(url=simulator_process, wav=HELLO_WAV, out=tmp_path / "out.wav")
    path = write_config(tmp_path, body + '[hardware]\nprofile = "generic"\n')
    result = agentpi("run", "--config", str(path), "--once", "--events", "-", env=MOCK_ENV)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    states = [event["state"] for event in events if event["event"] == "state"]
    shown = led_states(events)
    assert shown == states
    assert shown[:3] == ["idle", "connecting", "listening"] and shown[-2:] == ["ending", "idle"]
    assert "speaking" in shown and "thinking" in shown


# -- wiring diagrams ---------------------------------------------------------------------------

HARDWARE = Path(__file__).resolve().parents[1] / "hardware"


def test_wiring_diagrams_and_hardware_readme_match_the_profiles() -> None:
    result = subprocess.run(
        [sys.executable, str(HARDWARE / "draw_wiring.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_a_diagram_draws_the_pins_of_its_profile() -> None:
    spec = importlib.util.spec_from_file_location("draw_wiring", HARDWARE / "draw_wiring.py")
    assert spec is not None and spec.loader is not None
    drawing = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = drawing  # its dataclasses look themselves up there
    spec.loader.exec_module(drawing)
    settings = {"leds": {"type": "rgbled", "pins": [5, 6, 13]}, "button": {"pin": 26}}
    svg = drawing.draw("custom", {"title": "Custom", "parts": []}, settings)
    for label in ("GPIO5 (pin 29)", "GPIO6 (pin 31)", "GPIO13 (pin 33)", "GPIO26 (pin 37)"):
        assert label in svg
    assert "GND (pin 39)" in svg  # the rail joins the nearest ground on that side
    ElementTree.fromstring(svg)  # well-formed


def test_a_steady_light_is_not_rendered_again_until_it_changes(factory: MockFactory) -> None:
    """Idle all day must not cost 50 renders a second: a steady pattern renders once, then the
    thread sleeps until an event changes what the lights should show."""
    shows: list[tuple[float, tuple[float, float, float]]] = []

    class Counting(GpioLeds):
        def show(self, color: tuple[float, float, float]) -> None:
            shows.append((time.monotonic(), color))
            super().show(color)

    controller = LedController(Counting(BOARD, factory), LedAnimator(BOARD.pattern_table()))
    controller.on_event(ev.StateChanged("idle"))
    controller.start()
    try:
        time.sleep(0.5)  # half a second of idle: 25 frames at 50 fps before
        steady = len(shows)
        changed_at = time.monotonic()
        controller.on_event(ev.StateChanged("wake_detected"))  # white, on
        deadline = changed_at + 1.0
        while not any(color != (0.0, 0.0, 0.0) for _, color in shows):
            assert time.monotonic() < deadline, "the change was never rendered"
            time.sleep(0.005)
        lit_at = next(t for t, color in shows if color != (0.0, 0.0, 0.0))
        time.sleep(0.5)  # steady again
        after = len(shows)
    finally:
        controller.stop()
    assert steady <= 2, f"{steady} renders while idle for 0.5 s"
    assert lit_at - changed_at < 0.05  # an event wakes it at once
    assert after - steady <= 3, f"{after - steady} renders for one change"
