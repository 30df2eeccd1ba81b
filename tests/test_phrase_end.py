"""The upload starts where the wake phrase ended, not where the detector fired (real models)."""

from __future__ import annotations

import numpy as np
import pytest
from benchmarks import phrase_end

from agentpi.audio.convert import Int16Array
from agentpi.wake.decider import Detection, WakeDecider
from agentpi.wake.listener import FALLBACK_PHRASE_END_S, WakeListener, open_listener
from agentpi.wake.settings import WakeConfig
from tests.speech import POSITIVE, RATE, join, silence, speak

pytestmark = pytest.mark.heavy  # a few thousand inferences: seconds here, minutes under qemu


@pytest.mark.parametrize("clip_set", phrase_end.SETS, ids=lambda clip_set: clip_set.name)
def test_the_question_is_uploaded_whole_and_little_of_the_wake_phrase(
    clip_set: phrase_end.ClipSet,
) -> None:
    results = phrase_end.measure(clip_set)
    fired = [r for r in results if r.fired]
    print("\n" + phrase_end.summary(results))
    # the model does not fire on some espeak voices (half the unseen set): enough remain
    assert len(fired) >= 50
    # measured: all 67 and 124 of two tuned sets, 166 of 167 of the third; 151 of the 155
    # unseen: "take a note" run on with no pause lost 1.9 %, and three clips of one slow voice
    # sent 380-394 ms of the phrase because the detector fired 263-304 ms before it ended. The
    # energy-only search before this one met both goals on 93 % of either set.
    assert sum(r.meets_goals for r in fired) >= 0.95 * len(fired), [
        r for r in fired if not r.meets_goals
    ]
    assert max(r.question_lost for r in fired) <= 0.05
    # beyond what the firing point forces
    assert max(r.tail_ms - r.tail_at_firing_ms for r in fired) <= 300
    # what it replaces: starting at the frame that fired lost words from most questions
    assert sum(r.lost_at_firing > 0.01 for r in fired) > len(fired) / 2


def test_the_search_leaves_the_detector_as_it_was() -> None:
    clip = join(silence(1.0), speak(POSITIVE), silence(0.1), speak("why is the sky blue"))
    after = join(speak("and what about mars"), silence(1.0))

    def scores_after(search: bool) -> list[float]:
        listener = open_listener(WakeConfig(models=("hey_jarvis",)), RATE)
        listener.decider = WakeDecider(threshold=0.999999, patience=50)  # never fires
        listener.feed(clip)
        if search:
            listener.phrase_end(phrase_end_detection(listener))
        return [listener.engine.predict(frame)["hey_jarvis"] for frame in frames(after)]

    assert np.allclose(scores_after(True), scores_after(False), atol=1e-6)


def test_engines_that_cannot_search_start_a_fixed_time_before_the_firing_point() -> None:
    class NoSnapshots:
        name = "plain"

        def predict(self, frame: Int16Array) -> dict[str, float]:
            return {"hey_jarvis": 0.0}

        def reset(self) -> None:
            pass

    listener = WakeListener(NoSnapshots(), WakeDecider(), RATE)
    listener.feed(silence(2.0))
    expected = listener.consumed_samples - round(FALLBACK_PHRASE_END_S * RATE)
    assert listener.phrase_end(phrase_end_detection(listener)) == expected


def frames(audio: Int16Array) -> list[Int16Array]:
    return [audio[i : i + 1280] for i in range(0, len(audio) - 1279, 1280)]


def phrase_end_detection(listener: WakeListener) -> Detection:
    return Detection("hey_jarvis", 0.99, listener.audio_s)


def test_a_failing_search_falls_back_to_a_fixed_time_before_the_firing_point() -> None:
    listener = open_listener(WakeConfig(models=("hey_jarvis",)), RATE)
    listener.feed(silence(2.0))
    assert listener._finder is not None

    def broken(model: str, score: float) -> int | None:
        raise RuntimeError("the interpreter went away")

    listener._finder.find = broken  # type: ignore[method-assign]
    expected = listener.consumed_samples - round(FALLBACK_PHRASE_END_S * RATE)
    assert listener.phrase_end(phrase_end_detection(listener)) == expected
