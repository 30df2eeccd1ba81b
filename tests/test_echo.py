"""The agent must not interrupt itself: a simulated room puts the speaker's sound back into the
microphone (40 ms later, 6 dB quieter), and the simulator's own VAD judges what reaches it."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentpi.agent.script import CloseScript, SimulatorScript, TurnScript
from agentpi.audio.playback_log import PlaybackLog, Room
from tests.helpers import HELLO_WAV, Run, run_conversation, silence_wav

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

LONG_GREETING = " ".join(["This greeting goes on and on so that there is a lot of echo."] * 3)


def in_a_room(tmp_path: Path, echo: str, input_wav: Path | None = None) -> Run:
    room = Room(PlaybackLog(16000), delay_s=0.04, gain_db=-6.0)
    # the agent hangs up after answering one user turn: an agent that keeps answering its own
    # echo would otherwise talk to itself for ever
    script = SimulatorScript(
        first_turn=TurnScript(response=LONG_GREETING),
        turns=(TurnScript(response="Goodbye.", close=CloseScript(1000, "done")),),
    )
    return run_conversation(
        tmp_path,
        script,
        input_wav=input_wav or silence_wav(tmp_path / "quiet.wav", 4.0),
        audio={"echo": echo},
        room=room,
    )


def barge_ins(run: Run) -> list[str]:
    return [note for _, note in run.record.notes if "barge-in" in note]


def test_without_echo_handling_the_agent_interrupts_itself(tmp_path: Path) -> None:
    run = in_a_room(tmp_path, "off")
    assert barge_ins(run), "the room is meant to be echoey enough to matter"


@pytest.mark.parametrize("echo", ["aec", "half_duplex"])
def test_echo_handling_keeps_the_agent_from_hearing_itself(tmp_path: Path, echo: str) -> None:
    run = in_a_room(tmp_path, echo)
    assert not barge_ins(run)
    assert run.record.turns[0].interrupted_at is None
    speech = [note for _, note in run.record.notes if note == "user speech started"]
    assert not speech


def test_with_the_canceller_a_real_user_can_still_barge_in(tmp_path: Path) -> None:
    # the user starts talking 2.5 s in, while the greeting (and its echo) is playing
    run = in_a_room(tmp_path, "aec", HELLO_WAV)
    assert barge_ins(run)
    assert run.record.turns[0].interrupted_at is not None
