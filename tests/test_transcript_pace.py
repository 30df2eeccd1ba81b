"""The agent's words as the speaker plays them: from the audio's alignment, not at arrival."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentpi.agent.script import SimulatorScript, SimulatorSettings, TurnScript
from tests.helpers import run_conversation
from tests.speech import save, silence

pytestmark = pytest.mark.realtime

GREETING = "Hello there, this greeting takes a few seconds to say out loud."


def test_words_follow_the_speaker_not_the_network(tmp_path: Path) -> None:
    """The simulator sends audio at twice real time: it has all arrived by half-way through,
    but the words keep coming until the speaker has played the last of them."""
    script = SimulatorScript(
        simulator=SimulatorSettings(alignment=True, audio_pace=2.0),
        first_turn=TurnScript(response=GREETING),
    )
    run = run_conversation(
        tmp_path, script, input_wav=save(tmp_path / "quiet.wav", silence(12.0)), silence_close_s=1
    )
    words = run.of_kind("agent_words")
    turn = run.record.turns[0]
    assert "".join(w["text"] for w in words) == GREETING
    assert {w["event_id"] for w in words} == {turn.event_id}
    assert turn.first_audio_at is not None and turn.last_audio_at is not None
    arrival_s = turn.last_audio_at - turn.first_audio_at
    spoken_s = words[-1]["t"] - words[0]["t"]
    assert spoken_s > arrival_s * 1.6, (spoken_s, arrival_s)
    # the first words come when the audio reaches the speaker, with the answer's first audio
    first_turn_line = run.of_kind("turn")[0]
    assert abs(words[0]["t"] - first_turn_line["t"]) < 0.6


def test_words_cut_off_by_an_interruption_are_not_shown(tmp_path: Path) -> None:
    script = SimulatorScript(
        simulator=SimulatorSettings(alignment=True, audio_pace=0),  # all the audio at once
        first_turn=TurnScript(response=GREETING, interrupt_after_s=1.0),
    )
    run = run_conversation(
        tmp_path, script, input_wav=save(tmp_path / "quiet.wav", silence(8.0)), silence_close_s=1
    )
    shown = "".join(w["text"] for w in run.of_kind("agent_words"))
    assert run.of_kind("interruption")
    assert shown and GREETING.startswith(shown) and len(shown) < len(GREETING) * 0.6
    assert all(
        w["t"] <= run.of_kind("interruption")[0]["t"] + 0.05 for w in run.of_kind("agent_words")
    )
