"""The quiet-room gate: no inference while the room is quiet, and not one score or detection
different where it matters.

- wherever the gate is open, the gated pipeline scores what openWakeWord's own ``Model.predict``
  does (1e-4; where openwakeword does not install, Python 3.12 and later, what the ungated
  pipeline does, which tests/test_wake_scores.py holds to openWakeWord's);
- wherever it is shut, openWakeWord's own score stays under 0.05;
- every positive clip fires on the same frame, gated or not, and no negative fires either way;
- a quiet room shuts it for most frames; a loud room (speech all the time, or music-like tones)
  never does, so it costs what it did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agentpi.audio.convert import Int16Array
from agentpi.wake.decider import WakeDecider
from agentpi.wake.features import FRAME, StreamingScorer
from agentpi.wake.interpreters import interpreter_factory
from agentpi.wake.models import resolve
from tests.speech import NEGATIVES, POSITIVE, VOICES, join, speak
from tests.test_wake_scores import (
    HAS_OPENWAKEWORD,
    bundled_models,
    noise,
    scores_in_child,
    shut_in_child,
)

TOLERANCE = 1e-4
SHUT_SCORE = 0.05
ROOM_DBFS = -50.0


def in_room(audio: Int16Array, seed: int, dbfs: float = ROOM_DBFS) -> Int16Array:
    room = noise(len(audio) / 16000 + 1, dbfs, seed)[: len(audio)]
    mixed = audio.astype(np.int32) + room
    return np.clip(mixed, -32768, 32767).astype(np.int16)


def whole_frames(audio: Int16Array) -> Int16Array:
    return audio[: len(audio) // FRAME * FRAME]


def quiet_room_clip() -> Int16Array:
    """Long quiet stretches (the gate shuts) between phrases, questions and a loud noise."""
    return whole_frames(
        join(
            noise(4.0, ROOM_DBFS, 11),
            in_room(speak(POSITIVE), 12),
            noise(3.5, ROOM_DBFS, 13),
            in_room(speak("alexa what time is it", "en-gb+m3"), 14),
            noise(5.0, ROOM_DBFS, 15),
            in_room(speak("hey mycroft", "en-us+f2", 170), 16),
            noise(3.0, -60.0, 17),
            in_room(speak(NEGATIVES[0]), 18),
            noise(0.3, -20.0, 19),
            noise(4.0, ROOM_DBFS, 20),
            in_room(speak(POSITIVE, "en+m1"), 21),
            noise(2.5, ROOM_DBFS, 22),
        )
    )


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gate") / "clip.npy"
    np.save(path, quiet_room_clip())
    return path


@pytest.mark.parametrize("model", bundled_models())
def test_gated_scores_are_openwakewords_where_open_and_a_quiet_rooms_where_shut(
    model: str, clip_file: Path, tmp_path: Path
) -> None:
    reference_engine = "openwakeword" if HAS_OPENWAKEWORD else "tflite"
    reference = scores_in_child(reference_engine, model, clip_file, tmp_path)
    gated = scores_in_child("tflite+gate", model, clip_file, tmp_path)
    shut = shut_in_child("tflite+gate", model, tmp_path)
    assert len(gated) == len(reference) == len(shut)
    assert 0.15 < shut.mean() < 0.8, f"shut for {shut.mean():.0%} of the frames"
    open_error = np.abs(gated - reference)[~shut]
    worst = int(np.argmax(open_error))
    assert open_error[worst] <= TOLERANCE, f"{model}: open frame off by {open_error[worst]:.6f}"
    assert reference[shut].max() < SHUT_SCORE, (
        f"{model}: {reference_engine} scored {reference[shut].max():.3f} where the gate was shut"
    )
    assert np.all(gated[shut] == 0.0)


def detections(frames: Int16Array, gate: bool) -> list[tuple[int, str]]:
    files = resolve(("hey_jarvis", "alexa", "hey_mycroft"))
    scorer = StreamingScorer("tflite", files, interpreter_factory("tflite-c"), quiet_gate=gate)
    decider = WakeDecider()
    fired = []
    for index, frame in enumerate(frames.reshape(-1, FRAME)):
        detection = decider.update(scorer.predict(frame), (index + 1) * FRAME / 16000)
        if detection is not None:
            fired.append((index, detection.model))
    return fired


def test_every_positive_fires_on_the_same_frame_gated_or_not() -> None:
    parts: list[Int16Array] = []
    for voice in VOICES:
        for speed in (120, 140, 170):
            parts += [noise(3.0, ROOM_DBFS, speed), in_room(speak(POSITIVE, voice, speed), speed)]
    for sentence in NEGATIVES:
        parts += [noise(3.0, ROOM_DBFS, 5), in_room(speak(sentence), 6)]
    audio = whole_frames(join(*parts, noise(3.0, ROOM_DBFS, 7)))
    ungated, gated = detections(audio, gate=False), detections(audio, gate=True)
    assert gated == ungated
    assert len(ungated) >= len(VOICES) * 3 * 0.75, f"only {len(ungated)} fired: {ungated}"


def frames_scored(audio: Int16Array) -> tuple[int, int]:
    scorer = StreamingScorer(
        "tflite", resolve(("hey_jarvis",)), interpreter_factory("tflite-c"), quiet_gate=True
    )
    frames = whole_frames(audio).reshape(-1, FRAME)
    for frame in frames:
        scorer.predict(frame)
    return scorer.frames_scored, len(frames)


def test_a_quiet_room_is_scored_only_until_the_gate_shuts() -> None:
    scored, total = frames_scored(noise(30.0, ROOM_DBFS, 1))
    assert total == 375 and scored == 26  # the reach: the models' whole view is quiet room


def test_a_loud_room_is_scored_in_full() -> None:
    talk = join(*(speak(sentence, voice) for sentence in NEGATIVES for voice in VOICES[:2]))
    seconds = np.arange(len(talk)) / 16000
    chords = sum(np.sin(2 * np.pi * f * seconds) for f in (220.0, 277.2, 329.6)) * 1500
    for room in (in_room(talk, 3, -45.0), in_room(chords.astype(np.int16), 4, -60.0)):
        scored, total = frames_scored(room)
        assert scored == total
