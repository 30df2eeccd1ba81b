"""The microphone mute and the active wake word, as Home Assistant's switch and select (and the
control socket) set them: real wake-word inference, the simulator hearing what leaves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from agentpi.audio.convert import decode_wire
from agentpi.audio.formats import AudioFormat
from agentpi.config.document import TriggerConfig
from agentpi.device.app import Device
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from tests.helpers import run_conversation
from tests.speech import POSITIVE, RATE, join, save, silence, speak

pytestmark = pytest.mark.realtime

FIRST_PHRASE_END_S = 1.5 + len(speak(POSITIVE)) / RATE
SECOND_PHRASE_AT_S = FIRST_PHRASE_END_S + 3.0


def two_wake_phrases(tmp_path: Path) -> Path:
    audio = join(
        silence(1.5),
        speak(POSITIVE),
        silence(3.0),
        speak(POSITIVE),
        silence(0.3),
        speak("good morning"),
        silence(8.0),
    )
    return save(tmp_path / "mic.wav", audio)


@pytest.mark.parametrize("how", ["mute", "select"])
def test_a_muted_or_unchosen_wake_word_starts_nothing(tmp_path: Path, how: str) -> None:
    """Muted (or another wake word chosen) through the first phrase, back before the second:
    only the second starts a conversation; the lights said muted meanwhile."""

    async def during(device: Device) -> None:
        if how == "mute":
            assert device.controls.set_muted(True) is None
        else:
            assert device.controls.choose_wake_word("alexa") is None
        await asyncio.sleep((FIRST_PHRASE_END_S + SECOND_PHRASE_AT_S) / 2)
        if how == "mute":
            device.controls.set_muted(False)
        else:
            device.controls.choose_wake_word("all")

    models = ("hey_jarvis",) if how == "mute" else ("hey_jarvis", "alexa")
    run = run_conversation(
        tmp_path,
        input_wav=two_wake_phrases(tmp_path),
        trigger=TriggerConfig(mode="wake"),
        wake=open_listener(WakeConfig(models=models), RATE),
        during=during,
        timeout=60,
        sections={"wake": WakeConfig(models=models)},
    )
    triggers = run.of_kind("trigger")
    assert len(triggers) == 1 and triggers[0]["t"] - run.events[0]["t"] > SECOND_PHRASE_AT_S - 1
    if how == "mute":
        states = run.states()
        assert states[0] == "muted" and states.index("idle") < states.index("connecting")
        assert [e["muted"] for e in run.of_kind("mic_muted")] == [True, False]
    else:
        assert [e["model"] for e in run.of_kind("wake_word")] == ["alexa", "all"]
    assert run.device is not None and run.device.controls.status()["muted"] is False


def test_a_conversation_the_control_socket_starts_while_muted_hears_nothing(
    tmp_path: Path,
) -> None:
    async def during(device: Device) -> None:
        device.controls.set_muted(True)
        while not device.controls.status()["ready"]:
            await asyncio.sleep(0.05)
        assert device.controls.start_conversation() is None

    speech = join(silence(0.5), speak("this must not leave the room"), silence(6.0))
    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "mic.wav", speech),
        trigger=TriggerConfig(mode="control"),
        during=during,
    )
    fmt = AudioFormat.parse((run.record.init and "pcm_16000") or "pcm_16000")
    heard = decode_wire(bytes(run.record.user_audio), fmt)
    assert len(heard) > RATE and not np.any(heard)  # audio went out, all of it silence
    assert run.states()[-1] == "muted"  # idle again, as the lights say it while muted
