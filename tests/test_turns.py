"""Per-turn latency: from the end of the user's speech (or the trigger) to the agent's audio."""

from __future__ import annotations

from pathlib import Path

from agentpi.agent.script import SimulatorScript, SimulatorSettings
from agentpi.protocol.turns import TurnTimer
from tests.helpers import run_conversation

HANGOVER_S = 0.3


def test_the_greeting_is_timed_from_the_trigger() -> None:
    timer = TurnTimer(triggered_at=10.0)
    turn = timer.agent_audio(10.8)
    assert turn is not None and (turn.after, turn.turn, turn.latency_ms) == ("trigger", 0, 800)
    assert timer.agent_audio(10.9) is None  # the rest of the greeting
    assert timer.greeting_ms == 800 and timer.turn_ms == []


def test_a_turn_runs_from_where_the_speech_fell_silent_to_the_first_answer_audio() -> None:
    timer = TurnTimer(triggered_at=None)
    assert timer.agent_audio(1.0) is None  # no trigger time: no greeting figure
    timer.user_speech(True, 2.0, HANGOVER_S)
    timer.user_speech(False, 3.3, HANGOVER_S)  # the VAD says so after its hangover
    turn = timer.agent_audio(3.7)
    assert turn is not None and (turn.after, turn.turn, turn.latency_ms) == ("speech", 1, 700)


def test_speaking_again_before_the_answer_restarts_the_wait() -> None:
    timer = TurnTimer(triggered_at=0.0)
    timer.user_speech(True, 0.1, HANGOVER_S)  # talks over the greeting's wait
    assert timer.agent_audio(0.5) is None
    timer.user_speech(False, 1.3, HANGOVER_S)
    timer.user_speech(True, 1.5, HANGOVER_S)
    assert timer.agent_audio(1.6) is None  # the old answer while the user talks: no turn
    timer.user_speech(False, 2.5, HANGOVER_S)
    for at in (3.0, 3.4):
        timer.agent_audio(at)
    timer.user_speech(True, 4.0, HANGOVER_S)
    timer.user_speech(False, 5.3, HANGOVER_S)
    timer.agent_audio(6.5)
    assert timer.turn_ms == [800, 1500]
    assert timer.figures() == {"greeting_ms": None, "turn_ms_median": 1150, "turn_ms_worst": 1500}


def test_turn_lines_and_the_summary_follow_the_agents_end_of_speech_wait(tmp_path: Path) -> None:
    # The simulator answers after 0.8 s of silence: every turn must take at least that long,
    # and not much longer (its voice starts streaming at once).
    script = SimulatorScript(simulator=SimulatorSettings(end_of_speech_s=0.8))
    run = run_conversation(tmp_path, script=script)
    assert run.exit_code == 0
    turns = run.of_kind("turn")
    greeting = [t for t in turns if t["after"] == "trigger"]
    answers = [t["latency_ms"] for t in turns if t["after"] == "speech"]
    assert len(greeting) == 1 and 0 < greeting[0]["latency_ms"] < 1500
    assert answers and all(750 <= ms <= 1800 for ms in answers), answers
    ended = run.of_kind("conversation_ended")[0]
    assert ended["greeting_ms"] == greeting[0]["latency_ms"]
    assert ended["turn_ms_worst"] == max(answers)
    assert min(answers) <= ended["turn_ms_median"] <= max(answers)
