"""The device against an agent as the platform makes it by default: no vad_score, no
agent_response_complete, no client_tool_call, no override allowed. What a new user's first real
agent does, end to end."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from agentpi.agent.definition import default_document
from agentpi.agent.script import SimulatorScript, SimulatorSettings
from agentpi.config.document import OverridesConfig, TriggerConfig
from agentpi.device.app import Device
from agentpi.leds.driver import GpioLeds, LedController
from agentpi.leds.patterns import LedAnimator, Pattern
from agentpi.leds.settings import LedSettings
from agentpi.protocol import messages as m
from agentpi.protocol.timers import SessionSettings
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from tests.helpers import Run, run_conversation
from tests.speech import POSITIVE, RATE, join, save, silence, speak, speech_bounds
from tests.test_triggers import button_on

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

BOARD = LedSettings(type="board", pins=(17, 27, 22), colors=("green", "blue", "red"))
SILENCE_CLOSE_S = 2.0
AUDIO_IDLE_S = SessionSettings().response_audio_idle_s
TICKS_S = 0.3
"""The session's timers are looked at every 50-250 ms: a close can come that much late."""


class RecordingAnimator(LedAnimator):
    """The animator, keeping every frame it rendered: (time, pattern, brightness)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.frames: list[tuple[float, Pattern, float]] = []

    def frame(self, now: float) -> tuple[float, float, float]:
        self.frames.append((now, self.pattern, self.level(now)))
        return super().frame(now)

    def vad_curve(self) -> list[tuple[float, float]]:
        """(time, how far the vad effect is lit between its floor and its top, 0..1)."""
        return [
            (t, (level - p.floor) / (p.brightness - p.floor))
            for t, p, level in self.frames
            if p.effect == "vad"
        ]


def fan_noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray[Any, Any]:
    """Brown-ish noise (a fan, an air conditioner) at ``dbfs`` RMS."""
    rng = np.random.default_rng(seed)
    noise = np.cumsum(rng.standard_normal(int(RATE * seconds)))
    noise -= np.convolve(noise, np.ones(400) / 400, mode="same")  # no DC drift
    noise *= 32768 * 10 ** (dbfs / 20) / np.sqrt(np.mean(noise**2))
    return np.clip(noise, -32768, 32767).astype(np.int16)


def run_with_leds(tmp_path: Path, factory: MockFactory, **kwargs: Any) -> tuple[Run, Any]:
    animator = RecordingAnimator(BOARD.pattern_table())

    def leds(sink: Any) -> LedController:
        return LedController(GpioLeds(BOARD, factory), animator)

    run = run_conversation(
        tmp_path,
        agent=default_document(),
        leds=leds,
        silence_close_s=SILENCE_CLOSE_S,
        **kwargs,
    )
    return run, animator


def spoken_at(run: Run, sample: int) -> float:
    """When the microphone heard ``sample`` of the audio the agent received."""
    offset = 2 * sample
    for arrived, end in run.record.user_audio_arrivals:
        if end > offset:
            return arrived - (end - offset) / 2 / RATE
    raise AssertionError("that sample never reached the agent")


def ended_by_itself_after_the_reply(run: Run) -> None:
    """The conversation ended on the device's silence rule, within silence_close_s plus the
    fallback's audio idle time of the speaker playing the last reply out (no
    agent_response_complete came)."""
    ended = run.of_kind("conversation_ended")[-1]
    assert ended["reason"] == "user silent after the agent's turn", ended
    assert ended["error"] is None and ended["closed_by"] == "client"
    record = run.record
    states = run.of_kind("state")
    spoke = max(i for i, event in enumerate(states) if event["state"] == "speaking")
    played_out = states[spoke + 1]["t"]  # the speaker ran dry: the floor went back to the user
    assert record.closed_at is not None
    assert record.closed_at - played_out <= SILENCE_CLOSE_S + AUDIO_IDLE_S + TICKS_S
    completed = [turn for turn in record.turns if turn.completed_at is not None]
    assert record.withheld.get("agent_response_complete", 0) == len(completed)


def test_a_conversation_with_the_default_agent(tmp_path: Path, factory: MockFactory) -> None:
    # the user speaks once the greeting (about 3 s) is over: the light shows the agent till then
    question = join(silence(4.5), speak("what is the weather like today"), silence(9.0))
    run, animator = run_with_leds(tmp_path, factory, input_wav=save(tmp_path / "q.wav", question))
    assert run.exit_code == 0
    record = run.record
    assert "vad_score" not in {m.type for m in (m.decode_server(f) for _, f in record.sent)}
    assert record.withheld.get("vad_score", 0) > 0  # the simulator would have, if asked
    assert run.of_kind("user_transcript") and len(record.turns) == 2
    ended_by_itself_after_the_reply(run)
    # the device's own VAD drove the light: up within 150 ms of the voice, down after it
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2")
    start, end = speech_bounds(received)
    onset, over = spoken_at(run, start), spoken_at(run, end)
    curve = animator.vad_curve()
    risen = next(t for t, value in curve if t >= onset - 0.05 and value >= 0.25)
    bright = next(t for t, value in curve if t >= onset - 0.05 and value >= 0.75)
    assert risen - onset <= 0.15 and bright - onset <= 0.3, (risen - onset, bright - onset)
    assert all(value < 0.2 for t, value in curve if t < onset - 0.05)
    dark = [t for t, value in curve if t > over and value < 0.2]
    assert dark and dark[0] - over <= 1.0
    scores = run.of_kind("vad_score")
    assert scores and {s["source"] for s in scores} == {"device"}
    # user_activity while the user spoke, and only then
    activity = [t for t, message in record.messages if isinstance(message, m.UserActivity)]
    assert activity and all(onset - 0.1 <= t <= over + 0.5 for t in activity)
    # context still goes out; the device's tools are never called (the agent declares none)
    assert record.of_type(m.ContextualUpdate)
    assert not record.tool_results and not run.of_kind("tool_call")


def test_fan_noise_is_no_voice(tmp_path: Path, factory: MockFactory) -> None:
    """A fan at -30 dBFS for the whole conversation: the light stays down, no user_activity
    goes out, and the conversation ends by itself after the greeting."""
    wav = save(tmp_path / "fan.wav", fan_noise(14.0, -30.0))
    run, animator = run_with_leds(tmp_path, factory, input_wav=wav)
    assert run.exit_code == 0
    record = run.record
    assert not record.of_type(m.UserActivity)
    assert not run.of_kind("user_transcript")
    ended_by_itself_after_the_reply(run)
    curve = animator.vad_curve()
    assert curve and max(value for _, value in curve) < 0.2
    assert "user_speaking" not in run.states()


def test_a_button_starts_it_and_it_ends_by_itself(tmp_path: Path, factory: MockFactory) -> None:
    pin = factory.pin(23)
    pressed: list[bool] = []

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "state" and event["state"] == "idle" and not pressed:
            pressed.append(True)
            pin.drive_low()
            pin.drive_high()

    wav = save(tmp_path / "mic.wav", join(silence(2.5), speak("what time is it"), silence(9.0)))
    run = run_conversation(
        tmp_path,
        agent=default_document(),
        input_wav=wav,
        trigger=TriggerConfig(mode="button"),
        button=button_on(factory),
        on_event=on_event,
        silence_close_s=SILENCE_CLOSE_S,
    )
    assert [t["source"] for t in run.of_kind("trigger")] == ["button"]
    ended_by_itself_after_the_reply(run)


def test_the_wake_word_starts_it_and_it_ends_by_itself(tmp_path: Path) -> None:
    audio = join(silence(1.0), speak(POSITIVE), silence(0.3), speak("good morning"), silence(9.0))
    run = run_conversation(
        tmp_path,
        agent=default_document(),
        input_wav=save(tmp_path / "mic.wav", audio),
        trigger=TriggerConfig(mode="wake"),
        wake=open_listener(WakeConfig(), RATE),
        silence_close_s=SILENCE_CLOSE_S,
    )
    assert [t["source"] for t in run.of_kind("trigger")] == ["wake"]
    assert run.of_kind("user_transcript")
    ended_by_itself_after_the_reply(run)


def test_an_override_the_agent_refuses_says_which_setting(tmp_path: Path) -> None:
    """A first_message override on a default agent: the server refuses the conversation at its
    start; the device says in one line what to turn on, and the kiosk does not hammer it."""
    retried = asyncio.Event()

    def on_event(event: dict[str, Any]) -> None:
        if event["event"] == "retry":
            retried.set()

    async def watch(device: Device) -> None:
        await asyncio.wait_for(retried.wait(), 15)
        await asyncio.sleep(3.0)  # with the kiosk's 0.2 s pause, a storm would be 10 tries in
        device.shutdown("test over")

    wav = save(tmp_path / "quiet.wav", silence(30.0))
    run = run_conversation(
        tmp_path,
        agent=default_document(),
        input_wav=wav,
        conversation={"overrides": OverridesConfig(first_message="Hi from the kiosk")},
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.2),
        once=False,
        timeout=30,
        on_event=on_event,
        during=watch,
    )
    [ended] = run.of_kind("conversation_ended")  # one try, then the longest back-off
    assert run.record.close_code == 1008
    error = ended["error"]
    assert "\n" not in error
    assert "first_message override" in error and "Security > Overrides > First message" in error
    assert "agentpi agent-setup --apply" in error
    [retry] = run.of_kind("retry")
    assert retry["delay_s"] >= 45


@pytest.mark.parametrize("allowed", [False, True])
def test_events_asked_for_per_conversation(tmp_path: Path, allowed: bool) -> None:
    """[conversation] request_client_events: where the service honours a client_events
    override the events come; where it does not, the conversation is refused with the fix."""
    script = SimulatorScript(simulator=SimulatorSettings(client_events_override=allowed))
    run = run_conversation(
        tmp_path,
        script,
        agent=default_document(),
        conversation={"request_client_events": True},
        silence_close_s=SILENCE_CLOSE_S,
    )
    ended = run.of_kind("conversation_ended")[-1]
    if allowed:
        assert run.exit_code == 0 and ended["error"] is None
        assert {s["source"] for s in run.of_kind("vad_score")} >= {"agent"}
        assert run.of_kind("agent_response_complete")
    else:
        assert run.record.close_code == 1008
        assert "request_client_events = false" in ended["error"]
