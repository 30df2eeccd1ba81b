"""The wake cue must not spoil the question: with the default settings (echo canceller on, cues
on) and a room that puts the speaker back into the microphone, the question the agent receives
is measured against the clean one."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from agentpi.agent.script import CloseScript, SimulatorScript, TurnScript
from agentpi.audio.convert import Int16Array
from agentpi.audio.playback_log import PlaybackLog, Room
from agentpi.config.document import AudioConfig, TriggerConfig
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from tests.helpers import Run, run_conversation
from tests.speech import POSITIVE, RATE, join, save, silence, speak
from tests.test_wake import start_in

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

LEAD_S = 1.0
QUESTION = "what time is it in london"
# the agent waits for the user (no greeting over the question) and hangs up after one answer
SCRIPT = SimulatorScript(
    first_turn=TurnScript(silent=True),
    turns=(TurnScript(response="Bye.", close=CloseScript(1000, "done")),),
)


def ask(tmp_path: Path, voice: str, gap_s: float) -> tuple[Run, Int16Array, int, int]:
    """Wake word, a pause, the question, in a room (speaker 40 ms later, 6 dB down, in the
    microphone) with every audio setting at its default."""
    phrase, question = speak(POSITIVE, voice), speak(QUESTION, voice)
    clean = join(silence(LEAD_S), phrase, silence(gap_s), question, silence(6.0))
    noise = np.random.default_rng(0).normal(0, 32768 * 10 ** (-60 / 20), len(clean))
    mic = np.clip(np.round(clean + noise), -32768, 32767).astype(np.int16)
    defaults = AudioConfig()
    run = run_conversation(
        tmp_path,
        SCRIPT,
        input_wav=save(tmp_path / "mic.wav", mic),
        trigger=TriggerConfig(mode="wake"),
        wake=open_listener(WakeConfig(), RATE),
        audio={"echo": defaults.echo, "cue_volume": defaults.cue_volume},
        cues=defaults.cues,
        room=Room(PlaybackLog(RATE), delay_s=0.04, gain_db=-6.0),
    )
    question_at = round(LEAD_S * RATE) + len(phrase) + round(gap_s * RATE)
    return run, mic, question_at, len(question)


def question_snr_db(run: Run, mic: Int16Array, question_at: int, length: int) -> float:
    received = np.frombuffer(bytes(run.record.user_audio), dtype="<i2")
    # the upload starts ~10 ms before the phrase's end, the cue's echo ~150 ms after it: until
    # then the upload is the microphone exactly
    start = start_in(mic, received, head_s=0.1)
    got = received[question_at - start : question_at - start + length].astype(np.float64)
    clean = mic[question_at : question_at + length].astype(np.float64)
    error = float(np.sum((got - clean) ** 2))
    return math.inf if error == 0 else 10 * math.log10(float(np.sum(clean**2)) / error)


@pytest.mark.parametrize("voice", ["en-us", "en-gb+m3"])
@pytest.mark.parametrize("gap_s", [0.05, 0.2, 0.3])
def test_the_question_survives_the_wake_cue(tmp_path: Path, voice: str, gap_s: float) -> None:
    run, mic, question_at, length = ask(tmp_path, voice, gap_s)
    assert run.exit_code == 0
    assert run.cues is not None
    snr = question_snr_db(run, mic, question_at, length)
    print(f"{voice} gap {gap_s}: question SNR {snr:.1f} dB, cues {run.cues.played}")
    assert snr >= 20, snr


def test_the_cue_is_left_out_when_the_user_is_already_talking(tmp_path: Path) -> None:
    # no pause at all after the wake word: the question is under way when the detector fires
    run, *_ = ask(tmp_path, "en-us", 0.0)
    assert run.cues is not None
    assert "wake" not in run.cues.played and run.cues.yielded == 1


def test_the_cue_plays_in_a_quiet_room_and_does_not_wake_the_canceller(tmp_path: Path) -> None:
    run, mic, question_at, length = ask(tmp_path, "en-us", 0.6)  # the user waits for it
    assert run.cues is not None and run.cues.played[0] == "wake" and run.cues.yielded == 0
    # the canceller stayed at rest: the question arrives sample for sample
    assert question_snr_db(run, mic, question_at, length) == math.inf
