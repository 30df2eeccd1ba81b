"""No false wake-up from the detector's warm-up, after a start or after any reset.

openWakeWord starts (and resets) with a history of embeddings of loud random noise (+-1000, about
-36 dBFS) and mel rows of 1.0; for the first two seconds the models score that, not the room. On
a quiet room that made alexa score 0.67 here. The device's engine starts from the state two
seconds of a quiet room (-60 dBFS) leave instead (``features.quiet_room``).
"""

from __future__ import annotations

import numpy as np
import pytest

from agentpi.audio.convert import Int16Array
from agentpi.wake.features import FRAME, StreamingScorer, warmup_noise
from agentpi.wake.interpreters import interpreter_factory
from agentpi.wake.models import resolve
from tests.test_wake_scores import bundled_models

pytestmark = pytest.mark.heavy  # 15,000 inferences: seconds here, a quarter hour under qemu

CYCLES = 100
FRAMES = 30  # 2.4 s after each start or reset: all of the warm-up and then some
THRESHOLD = 0.5


def room(cycle: int) -> Int16Array:
    noise = np.random.RandomState(cycle).randn(FRAMES * FRAME) * 32768 * 10 ** (-50 / 20)
    return np.round(noise).astype(np.int16)


def worst_score(scorer: StreamingScorer, model: str, cycles: int) -> float:
    worst = 0.0
    for cycle in range(cycles):
        scorer.reset()
        for frame in room(cycle).reshape(-1, FRAME):
            worst = max(worst, scorer.predict(frame)[model])
    return worst


@pytest.mark.parametrize("model", bundled_models())
def test_a_hundred_resets_on_a_quiet_room_never_come_near_a_trigger(model: str) -> None:
    scorer = StreamingScorer("tflite", resolve((model,)), interpreter_factory("tflite-c"))
    assert worst_score(scorer, model, CYCLES) < THRESHOLD / 5


def test_openwakewords_own_warmup_does_fire_on_the_same_room() -> None:
    """The same pipeline with openWakeWord's warm-up (the one its Model.predict scores equal, see
    test_wake_scores): what the quiet start replaces."""
    files = resolve(("alexa",))
    theirs = StreamingScorer("tflite", files, interpreter_factory("tflite-c"), warmup_noise(3))
    assert worst_score(theirs, "alexa", CYCLES) > THRESHOLD


def test_a_fresh_engine_starts_where_a_reset_does() -> None:
    files = resolve(("hey_jarvis",))
    scorer = StreamingScorer("tflite", files, interpreter_factory("tflite-c"))
    frames = room(0).reshape(-1, FRAME)[:10]
    first = [scorer.predict(frame)["hey_jarvis"] for frame in frames]
    scorer.reset()
    assert [scorer.predict(frame)["hey_jarvis"] for frame in frames] == first
