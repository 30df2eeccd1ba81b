"""Button (toggle and push-to-talk) on gpiozero's mock pins, the kiosk loop, triggers together."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from gpiozero.pins.mock import MockFactory

from agentpi.config.document import ButtonConfig, TriggerConfig
from agentpi.events import EventRecord
from agentpi.protocol import messages as m
from agentpi.triggers.button import ButtonInput
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from tests.helpers import run_conversation
from tests.speech import POSITIVE, RATE, join, save, silence, speak

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

PIN = 23


def button_on(factory: MockFactory) -> ButtonInput:
    return ButtonInput(ButtonConfig(pin=PIN, bounce_s=0.0), pin_factory=factory)


def test_button_press_starts_and_a_second_press_ends(tmp_path: Path, factory: MockFactory) -> None:
    pin = factory.pin(PIN)
    pressed = {"start": False, "end": False}

    def press() -> None:
        pin.drive_low()
        pin.drive_high()

    def on_event(event: EventRecord) -> None:
        if event["event"] == "state" and event["state"] == "idle" and not pressed["start"]:
            pressed["start"] = True
            press()
        elif event["event"] == "conversation_started" and not pressed["end"]:
            pressed["end"] = True
            press()

    wav = save(tmp_path / "quiet.wav", silence(20.0))
    run = run_conversation(
        tmp_path,
        input_wav=wav,
        trigger=TriggerConfig(mode="button"),
        button=button_on(factory),
        on_event=on_event,
    )
    assert [t["source"] for t in run.of_kind("trigger")] == ["button"]
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "button pressed" and ended["closed_by"] == "client"
    assert run.record.close_code == 1000
    assert [e["action"] for e in run.of_kind("button")] == ["end"]


def test_push_to_talk_streams_the_mic_only_while_held(tmp_path: Path, factory: MockFactory) -> None:
    pin = factory.pin(PIN)
    spoken = speak("what is the weather like today")
    gap = 1.0
    audio = join(silence(1.0), spoken, silence(gap), spoken, silence(8.0))  # said twice
    wav = save(tmp_path / "mic.wav", audio)
    first_sentence_end_s = 1.0 + len(spoken) / RATE
    released: list[float] = []

    def release() -> None:
        released.append(time.monotonic())
        pin.drive_high()

    def on_event(event: EventRecord) -> None:
        if event["event"] == "state" and event["state"] == "idle" and not released:
            pin.drive_low()  # held from the start, released between the two sentences
            asyncio.get_running_loop().call_later(first_sentence_end_s + gap / 2, release)

    run = run_conversation(
        tmp_path,
        input_wav=wav,
        trigger=TriggerConfig(mode="button", button_mode="hold"),
        button=button_on(factory),
        on_event=on_event,
        silence_close_s=1.5,
    )
    assert run.exit_code == 0
    assert [e["action"] for e in run.of_kind("button")] == ["released"]
    record = run.record
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2")
    # Everything after the release reached the agent as silence, though the room kept talking.
    loud = np.flatnonzero(np.abs(received) > 500)
    assert len(loud) > len(spoken) // 2  # the first sentence, held
    assert loud[-1] < first_sentence_end_s * RATE  # the second one never went out
    assert len(received) > (first_sentence_end_s + gap + len(spoken) / RATE) * RATE
    # user_activity only while the button was held
    activity = [t for t, msg in record.messages if isinstance(msg, m.UserActivity)]
    assert activity and max(activity) <= released[0] + 0.1


def test_immediate_mode_starts_again_after_each_conversation(tmp_path: Path) -> None:
    wav = save(
        tmp_path / "two.wav",
        join(speak("tell me a story"), silence(6.0), speak("tell me another one"), silence(6.0)),
    )
    run = run_conversation(
        tmp_path,
        input_wav=wav,
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.3),
        once=False,
        timeout=90,
    )
    sources = [t["source"] for t in run.of_kind("trigger")]
    assert len(sources) >= 2 and set(sources) == {"immediate"}
    assert len(run.simulator.conversations) == len(sources)
    ends = [e["t"] for e in run.of_kind("conversation_ended")]
    starts = [e["t"] for e in run.of_kind("trigger")]
    assert all(start - end >= 0.3 for start, end in zip(starts[1:], ends, strict=False))


def test_wake_word_and_button_together(tmp_path: Path, factory: MockFactory) -> None:
    pin = factory.pin(PIN)
    audio = join(
        silence(1.0),
        speak(POSITIVE),
        silence(0.3),
        speak("good morning"),
        silence(6.0),
        silence(10.0),
    )
    wav = save(tmp_path / "mic.wav", audio)
    ended = []

    def on_event(event: EventRecord) -> None:
        # after the wake-word conversation the button starts the next one, and ends it
        if event["event"] == "conversation_ended":
            ended.append(event)
            if len(ended) == 1:
                pin.drive_low()
                pin.drive_high()
        elif event["event"] == "conversation_started" and len(ended) == 1:
            pin.drive_low()
            pin.drive_high()

    run = run_conversation(
        tmp_path,
        input_wav=wav,
        trigger=TriggerConfig(mode=("wake", "button")),
        wake=open_listener(WakeConfig(), RATE),
        button=button_on(factory),
        on_event=on_event,
        once=False,
        timeout=90,
    )
    assert [t["source"] for t in run.of_kind("trigger")] == ["wake", "button"]
    assert run.of_kind("conversation_ended")[1]["reason"] == "button pressed"


def test_a_gpio_less_machine_gets_a_clear_button_error() -> None:
    from agentpi.system.gpio import GpioError

    with pytest.raises(GpioError, match="button on GPIO23: no GPIO library found"):
        ButtonInput(ButtonConfig(pin=PIN))
