"""The device's audio as a whole: a microphone that goes away and comes back, sound cues."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentpi.agent.script import SimulatorScript, SimulatorSettings
from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.convert import read_wav
from agentpi.audio.cues import Cues
from agentpi.audio.file import FileSource
from agentpi.config.document import AudioConfig, TriggerConfig
from tests.helpers import HELLO_WAV, run_conversation, silence_wav

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation


def test_an_unplugged_microphone_is_reported_retried_and_used_again(tmp_path: Path) -> None:
    attempts: list[int] = []

    def replug() -> FileSource:
        attempts.append(1)
        if len(attempts) == 1:
            raise AudioDeviceError("audio input 'USB PnP' not found; inputs present: none")
        return FileSource(HELLO_WAV)

    run = run_conversation(
        tmp_path,
        input_wav=silence_wav(tmp_path / "quiet.wav", 5.0),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.2),
        once=False,
        fail_at_s=1.0,
        reopen=replug,
        timeout=60,
    )
    kinds = run.kinds()
    # the conversation that was running ends with the reason, the state shows it, retries follow
    first_end = run.of_kind("conversation_ended")[0]
    assert "went away" in first_end["error"]
    assert kinds.index("audio_error") < kinds.index("audio_retry") < kinds.index("audio_restored")
    states = run.states()
    error_at = states.index("error")
    assert states[error_at + 1] == "idle"
    assert run.of_kind("audio_restored")[0]["attempts"] == 2
    # and once it is back, the next conversation hears the new device
    assert len(run.simulator.conversations) == 2
    assert run.simulator.conversations[0].closed_by == "client"
    second = run.simulator.conversations[1]
    spoken, _ = read_wav(HELLO_WAV)
    received = np.frombuffer(bytes(second.user_audio), dtype="<i2")
    assert np.array_equal(received[: len(spoken)], spoken)
    assert run.exit_code == 0


def test_cues_play_at_the_end_and_on_an_error(tmp_path: Path) -> None:
    run = run_conversation(tmp_path, cues=True)
    assert run.cues is not None and run.cues.played == ["end"]  # immediate: no wake cue
    heard, rate = read_wav(run.output)
    end_cue, cue_rate = run.cues.sounds["end"]
    assert cue_rate == rate
    tail = heard[-len(end_cue) - rate :]  # the end cue is the last sound, at cue_volume
    level = np.abs(tail).max() / np.abs(end_cue).max()
    assert abs(level - AudioConfig().cue_volume) <= 0.1

    # a private agent reached without credentials: the connection is refused, the error cue plays
    private = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    refused = run_conversation(
        tmp_path / "refused", private, cues=True, simulator_api_key="sk-private"
    )
    assert "connect_failed" in refused.kinds()
    assert refused.cues is not None and refused.cues.played == ["error"]


def test_cue_volume_is_clipped_not_wrapped() -> None:
    cues = Cues(volume=4.0)
    samples, _ = cues.sounds["wake"]
    from agentpi.audio.convert import apply_gain

    loud = apply_gain(samples, 4.0)
    assert loud.max() == 32767 and loud.min() == -32768
    assert np.all(np.sign(loud[samples != 0]) == np.sign(samples[samples != 0]))
