"""The wake word with the real openWakeWord models and real inference, on synthesized speech."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentpi.agent.script import SimulatorScript, SimulatorSettings
from agentpi.audio.convert import Int16Array
from agentpi.config.document import TriggerConfig, load_config
from agentpi.wake.decider import Detection, WakeDecider
from agentpi.wake.engines import ENGINES, open_engine
from agentpi.wake.framer import FRAME_SAMPLES, Framer
from agentpi.wake.listener import WakeListener, open_listener
from agentpi.wake.models import ModelError, resolve
from agentpi.wake.settings import WakeAgentConfig, WakeConfig
from tests.helpers import HELLO_WAV, Run, run_conversation
from tests.speech import (
    NEGATIVES,
    POSITIVE,
    RATE,
    SPEEDS,
    VOICES,
    join,
    save,
    silence,
    speak,
)
from tests.test_cli import agentpi, write_config

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

C_LIBRARY_ENGINES = ("tflite", "pyopen-wakeword")  # one TFLite library, safe in one process
RUNTIME_ENGINES = ("tflite-runtime", "openwakeword")  # tflite-runtime: Python 3.11 and older
ENGINE_NAMES = [name for name in ENGINES if name in C_LIBRARY_ENGINES or sys.version_info < (3, 12)]
CHUNK = RATE * 40 // 1000  # the device's 40 ms microphone chunks


def listener_for(engine: str, **rules: float) -> WakeListener:
    config = WakeConfig(engine=engine)  # type: ignore[arg-type]
    files = resolve(config.models)
    decider = WakeDecider(
        threshold=rules.get("threshold", 0.5),
        patience=int(rules.get("patience", 1)),
        refractory_s=rules.get("refractory_s", 2.0),
    )
    return WakeListener(open_engine(config.engine, files), decider, RATE)


def in_engine_process(engine: str, check: Callable[[str], None]) -> None:
    """Run ``check(engine)`` here, or in a fresh interpreter for the engines on tflite-runtime:
    the two TFLite libraries cannot share a process."""
    if engine in C_LIBRARY_ENGINES:
        check(engine)
        return
    code = f"from tests.test_wake import {check.__name__} as check; check({engine!r})"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


def detections(listener: WakeListener, audio: Int16Array) -> list[Detection]:
    found = []
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        detection = listener.feed(audio[start : start + CHUNK])
        if detection is not None:
            found.append(detection)
    return found


# -- decision rules, no model ------------------------------------------------------------------


def test_decider_fires_once_per_utterance() -> None:
    decider = WakeDecider(threshold=0.5, patience=1, refractory_s=1.0)
    scores = [0.0, 0.2, 0.7, 0.9, 0.95, 0.6, 0.1, 0.0]
    fired = [decider.update({"hey_jarvis": s}, i * 0.08) for i, s in enumerate(scores)]
    assert [f is not None for f in fired] == [False, False, True] + [False] * 5
    assert fired[2] == Detection("hey_jarvis", 0.7, pytest.approx(0.16))  # type: ignore[arg-type]
    # after the refractory time, the next utterance fires again
    assert decider.update({"hey_jarvis": 0.9}, 1.2) is not None


def test_decider_patience_needs_frames_in_a_row() -> None:
    decider = WakeDecider(threshold=0.5, patience=3, refractory_s=0.0)
    assert decider.update({"m": 0.9}, 0.0) is None
    assert decider.update({"m": 0.9}, 0.08) is None
    assert decider.update({"m": 0.1}, 0.16) is None  # the run is broken
    assert decider.update({"m": 0.9}, 0.24) is None
    assert decider.update({"m": 0.9}, 0.32) is None
    assert decider.update({"m": 0.9}, 0.40) == Detection("m", 0.9, 0.40)


def test_decider_names_the_best_of_several_models() -> None:
    decider = WakeDecider()
    fired = decider.update({"alexa": 0.6, "hey_jarvis": 0.97, "okay_nabu": 0.1}, 1.0)
    assert fired == Detection("hey_jarvis", 0.97, 1.0)
    assert decider.update({"alexa": 0.99}, 1.5) is None  # refractory covers every model


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"threshold": 1.5}, "wake.threshold = 1.5"),
        ({"patience": 0}, "wake.patience = 0"),
        ({"refractory_s": -1.0}, "wake.refractory_s"),
    ],
)
def test_bad_rules_are_named(rules: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WakeDecider(**rules)  # type: ignore[arg-type]


def test_framer_turns_any_chunking_and_rate_into_80ms_16k_frames() -> None:
    framer = Framer(48000)
    chunk = np.zeros(48000 * 40 // 1000, dtype=np.int16)
    frames = [frame for _ in range(50) for frame in framer.push(chunk)]  # 2 s
    assert all(len(frame) == FRAME_SAMPLES for frame in frames)
    assert 23 <= len(frames) <= 25  # 2 s is 25 frames, less what the resampler holds back


# -- real models, real inference ---------------------------------------------------------------


def test_auto_picks_an_engine_that_runs_here() -> None:
    listener = open_listener(WakeConfig(), RATE)
    assert listener.engine_name == "tflite"


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_the_wake_phrase_triggers_in_every_voice_and_speed(engine: str) -> None:
    in_engine_process(engine, check_the_wake_phrase_triggers_in_every_voice_and_speed)


def check_the_wake_phrase_triggers_in_every_voice_and_speed(engine: str) -> None:
    listener = listener_for(engine)
    for voice in VOICES:
        for speed in SPEEDS:
            listener.reset()
            clip = join(silence(1.0), speak(POSITIVE, voice, speed), silence(1.0))
            found = detections(listener, clip)
            assert len(found) == 1, (voice, speed, found)
            assert found[0].model == "hey_jarvis" and found[0].score >= 0.5


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_other_sentences_do_not_trigger(engine: str) -> None:
    in_engine_process(engine, check_other_sentences_do_not_trigger)


def check_other_sentences_do_not_trigger(engine: str) -> None:
    listener = listener_for(engine)
    for voice in VOICES[:2]:
        for sentence in NEGATIVES:
            listener.reset()
            clip = join(silence(0.5), speak(sentence, voice), silence(0.5))
            assert detections(listener, clip) == [], (voice, sentence)


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_trigger_fires_within_300_ms_of_the_end_of_the_wake_word(engine: str) -> None:
    in_engine_process(engine, check_trigger_fires_within_300_ms_of_the_end_of_the_wake_word)


def check_trigger_fires_within_300_ms_of_the_end_of_the_wake_word(engine: str) -> None:
    listener = listener_for(engine)
    lags = []
    for voice in VOICES:
        listener.reset()
        lead = 1.0
        phrase = speak(POSITIVE, voice)
        clip = join(silence(lead), phrase, silence(1.5))
        start_s = listener.audio_s
        found = detections(listener, clip)
        assert found, voice
        word_end_s = lead + len(phrase) / RATE
        lags.append(found[0].audio_s - start_s - word_end_s)
    assert max(lags) <= 0.3, lags


@pytest.mark.parametrize("engine", ENGINE_NAMES)
def test_reset_forgets_a_wake_word_in_the_buffers(engine: str) -> None:
    in_engine_process(engine, check_reset_forgets_a_wake_word_in_the_buffers)


def check_reset_forgets_a_wake_word_in_the_buffers(engine: str) -> None:
    """After a conversation the detector must not fire on audio from before it."""
    clip = join(silence(1.0), speak(POSITIVE), silence(1.0))
    probe = listener_for(engine)
    fired_at = detections(probe, clip)[0].audio_s
    cut = int((fired_at - 0.16) * RATE) // CHUNK * CHUNK  # two frames before it would fire

    kept = listener_for(engine)
    assert detections(kept, clip[:cut]) == []
    assert detections(kept, silence(1.0)), "control: the buffered wake word fires on its own"

    cleared = listener_for(engine)
    assert detections(cleared, clip[:cut]) == []
    cleared.reset()
    assert detections(cleared, silence(1.0)) == []


def test_several_models_at_once_name_the_one_that_fired() -> None:
    listener = open_listener(WakeConfig(models=("alexa", "hey_jarvis", "okay_nabu")), RATE)
    clip = join(silence(1.0), speak(POSITIVE), silence(1.0))
    found = detections(listener, clip)
    assert [d.model for d in found] == ["hey_jarvis"]


def test_models_by_path_and_clear_errors(tmp_path: Path) -> None:
    files = resolve(("hey_jarvis",))
    by_path = resolve((str(files.wake["hey_jarvis"]),))
    assert list(by_path.wake) == ["hey_jarvis"]
    with pytest.raises(ModelError, match=r"wake model 'hey_bob' not found in .*models download"):
        resolve(("hey_bob",))
    with pytest.raises(ModelError, match="no such file"):
        resolve((str(tmp_path / "mine.tflite"),))
    broken = tmp_path / "broken.tflite"
    broken.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        resolve((str(broken),))


def test_a_model_that_is_not_a_wake_model_is_named_in_one_line(tmp_path: Path) -> None:
    """A TFLite file of another kind (here the embedding model) loads, but cannot score."""
    embedding = resolve(("hey_jarvis",)).embedding
    other = tmp_path / "not_a_wake_model.tflite"
    other.write_bytes(embedding.read_bytes())
    with pytest.raises(ModelError, match="not an openWakeWord model") as caught:
        open_listener(WakeConfig(models=(str(other),), engine="tflite"), RATE)
    assert "\n" not in str(caught.value)


def test_a_damaged_model_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """TensorFlow Lite segfaults on a cut-short file; the device must live to report it."""
    whole = resolve(("hey_jarvis",)).wake["hey_jarvis"].read_bytes()
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(whole[: len(whole) // 20])
    with pytest.raises(ModelError, match="damaged"):
        open_listener(WakeConfig(models=(str(cut),)), RATE)


def test_models_command_names_the_engine(tmp_path: Path) -> None:
    result = agentpi("models")
    assert result.returncode == 0, result.stderr
    assert "wake model hey_jarvis:" in result.stdout
    assert "engine: tflite" in result.stdout
    config = write_config(tmp_path, "[agent]\nagent_id = 'a'\n[wake]\nengine = 'pyopen-wakeword'\n")
    result = agentpi("models", "--config", str(config))
    assert "engine: pyopen-wakeword" in result.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[wake]\nmodels = ['hey_bob']\n", "wake model 'hey_bob' not found"),
        ("[wake]\nthreshold = 2\n", "wake.threshold = 2.0"),
        ("[trigger]\nmode = 'button'\n", "no button pin: set [button] pin = N"),
        ("[trigger]\nmode = ['wake', 'wake']\n", "name each trigger once"),
        ("[wake.agents.alexa]\nagent_id = 'b'\n", "wake.agents.alexa: not one of wake.models"),
        (
            "[wake.agents.hey_jarvis]\nlanguage = 'xx'\n",
            "wake.agents.hey_jarvis: conversation.overrides.language",
        ),
        ("[wake.agents.hey_jarvis]\nagent_id = 'b c'\n", "wake.agents.hey_jarvis: agent.agent_id"),
    ],
)
def test_bad_wake_and_trigger_config_is_one_line(tmp_path: Path, body: str, expected: str) -> None:
    audio = f"[audio]\ninput = 'file:{HELLO_WAV}'\noutput = 'file:{tmp_path}/o.wav'\n"
    config = write_config(tmp_path, f"[agent]\nagent_id = 'a'\n{audio}{body}")
    result = agentpi("run", "--config", str(config), "--once")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_trigger_mode_takes_one_or_several(tmp_path: Path) -> None:
    one = load_config(write_config(tmp_path, "[agent]\nagent_id = 'a'\n"))
    assert one.trigger.modes == ("wake",)
    several = load_config(
        write_config(
            tmp_path,
            "[agent]\nagent_id = 'a'\n[trigger]\nmode = ['wake', 'button']\n[button]\npin = 5\n",
        )
    )
    assert several.trigger.modes == ("wake", "button")


# -- the device, listening ---------------------------------------------------------------------


def start_in(audio: Int16Array, received: Int16Array, head_s: float = 0.2) -> int:
    """Where in ``audio`` the uploaded ``received`` begins (its first ``head_s`` exactly)."""
    head = received[: round(RATE * head_s)]
    view = np.lib.stride_tricks.sliding_window_view(audio, len(head))
    matches = np.flatnonzero((view == head).all(axis=1))
    assert len(matches) == 1, "the upload is not one exact piece of the microphone's audio"
    return int(matches[0])


def listen_for_wake_word(tmp_path: Path, mic_audio: Int16Array, **options: Any) -> Run:
    """The device in wake mode on ``mic_audio`` as its microphone, against the simulator."""
    return run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "mic.wav", mic_audio),
        trigger=TriggerConfig(mode="wake"),
        wake=open_listener(WakeConfig(), RATE),
        **options,
    )


def test_wake_word_starts_a_conversation_and_nothing_after_it_is_lost(tmp_path: Path) -> None:
    question = speak("what time is it in london", "en-us")
    audio = join(silence(1.0), speak(POSITIVE), silence(0.4), question, silence(6.0))
    run = listen_for_wake_word(tmp_path, audio)
    assert run.exit_code == 0
    trigger = run.of_kind("trigger")[0]
    assert trigger["source"] == "wake" and trigger["model"] == "hey_jarvis"
    assert run.states()[:4] == ["idle", "wake_detected", "connecting", "listening"]
    # The agent hears everything from the end of the wake phrase on, sample for sample.
    phrase_end = 1.0 * RATE + len(speak(POSITIVE))
    received = np.frombuffer(bytes(run.record.user_audio), dtype="<i2")
    start = start_in(audio, received)
    assert phrase_end - 0.35 * RATE <= start <= phrase_end + 0.4 * RATE
    assert len(received) > len(question)
    assert run.record.notes and any(note == "user speech started" for _, note in run.record.notes)


def test_listening_resumes_after_a_conversation(tmp_path: Path) -> None:
    turn = join(speak(POSITIVE), silence(0.4), speak("tell me a joke"), silence(7.0))
    audio = join(silence(1.0), turn, turn, silence(1.0))
    run = listen_for_wake_word(tmp_path, audio, once=False, timeout=90)
    triggers = run.of_kind("trigger")
    assert [t["source"] for t in triggers] == ["wake", "wake"]
    assert len(run.simulator.conversations) == 2
    assert triggers[1]["audio_s"] > triggers[0]["audio_s"]
    assert run.states().count("wake_detected") == 2 and run.states()[-1] == "idle"


@pytest.mark.parametrize("send_wake_word", [False, True])
def test_preroll_carries_speech_over_a_slow_handshake(tmp_path: Path, send_wake_word: bool) -> None:
    # The user does not wait for the socket: the question starts 0.1 s after the wake word while
    # the handshake takes 1.2 s more. All of it reaches the agent, in order, sample for sample.
    question = speak("what time is it in london", "en-us")
    audio = join(silence(1.0), speak(POSITIVE), silence(0.1), question, silence(6.0))
    script = SimulatorScript(simulator=SimulatorSettings(handshake_delay_s=1.2))
    run = listen_for_wake_word(
        tmp_path, audio, script=script, audio={"send_wake_word": send_wake_word}
    )
    assert run.exit_code == 0
    trigger = run.of_kind("trigger")[0]
    connected = run.of_kind("connected")[0]["t"]
    assert connected - trigger["t"] >= 1.2  # the handshake really was slow
    fired_at = round(trigger["audio_s"] * RATE)
    received = np.frombuffer(bytes(run.record.user_audio), dtype="<i2")
    if send_wake_word:
        start = fired_at - int(1.5 * RATE)
    else:  # from the end of the wake phrase, before the question
        start = start_in(audio, received)
        phrase_end = 1.0 * RATE + len(speak(POSITIVE))
        assert phrase_end - 0.35 * RATE <= start <= phrase_end + 0.1 * RATE
    assert len(received) > fired_at - start + len(question)
    heard = min(len(received), len(audio) - start)
    assert np.array_equal(received[:heard], audio[start : start + heard]), (
        f"the upload starts at sample {start_in(audio, received)}, not {start} (fired at "
        f"{fired_at}); events: {[e for e in run.events if e['event'] != 'vad_score'][:12]}"
    )
    assert not received[heard:].any()  # then the quiet room after the file's end
    assert "audio_dropped" not in run.kinds()


def test_each_wake_word_opens_its_own_agent(tmp_path: Path) -> None:
    # one listener, two phrases: hey jarvis for the house agent ([agent]), alexa for a story
    # agent with its own first message and language
    wake = WakeConfig(
        models=("hey_jarvis", "alexa"),
        agents={
            "alexa": WakeAgentConfig(
                agent_id="agent_stories", first_message="Once upon a time", language="de"
            )
        },
    )
    turn_one = join(speak(POSITIVE), silence(0.3), speak("turn on the lights"), silence(7.0))
    turn_two = join(speak("alexa"), silence(0.3), speak("tell me a story"), silence(7.0))
    audio = join(silence(1.0), turn_one, turn_two, silence(1.0))
    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "mic.wav", audio),
        trigger=TriggerConfig(mode="wake"),
        wake=open_listener(wake, RATE),
        sections={"wake": wake},
        once=False,
        timeout=90,
    )
    triggers = run.of_kind("trigger")
    assert [(t["model"], t.get("agent_id")) for t in triggers] == [
        ("hey_jarvis", None),
        ("alexa", "agent_stories"),
    ]
    house, stories = run.simulator.conversations
    assert (house.agent_id, stories.agent_id) == ("test-agent", "agent_stories")
    assert house.init is not None and stories.init is not None
    assert "agent" not in house.init.conversation_config_override
    agent = stories.init.conversation_config_override["agent"]
    assert (agent["first_message"], agent["language"]) == ("Once upon a time", "de")
    ended = run.of_kind("conversation_ended")
    assert [e.get("agent_id") for e in ended] == [None, "agent_stories"]
