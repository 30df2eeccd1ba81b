"""The wake engines side by side on the project's clip sets: openWakeWord's pipeline (the
default ``tflite`` engine, quiet-room gate on) and microWakeWord.

For each engine and clip set (espeak-ng voices, see benchmarks/phrase_end.py): clips fired and
missed, the detection delay (phrase end to the end of the 80 ms frame that fired), how much of
the question the upload loses and how much of the phrase it sends (microWakeWord has no
phrase-end search: its upload starts a fixed 300 ms before the firing point), and false
triggers on speech without the phrase (every question of every set, in four voices, under room
noise), per hour of that speech. Its CPU at idle is in ``make bench BENCH=idle``.

espeak's voices are far from the ones either engine was trained on, microWakeWord's especially
(its hey_jarvis hears almost none of them): read the rates as a floor, and compare engines, not
models.

    python -m benchmarks engines
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import numpy as np
from tests.speech import RATE, join, speak

from agentpi.audio.convert import Int16Array
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from benchmarks.phrase_end import ALEXA, CHUNK, SETS, UNSEEN, ClipResult, ClipSet, measure_clip

ENGINES = {"openWakeWord (tflite)": "tflite", "microWakeWord": "microwakeword"}
CLIP_SETS = (UNSEEN, ALEXA)
NEGATIVE_VOICES = ("en-us", "en-gb+m3", "en-us+f2", "en+m1")
NOISE_DBFS = -48.0


@dataclass(frozen=True)
class EngineRow:
    engine: str
    clip_set: str
    clips: int
    fired: int
    delay_ms: float
    delay_p95_ms: float
    kept_question: int
    """Clips whose upload kept at least 99 % of the question."""
    tail_ms: float


def clip_rows(engine: str, clip_set: ClipSet) -> EngineRow:
    listener = open_listener(WakeConfig(models=(clip_set.model,), engine=engine), RATE)  # type: ignore[arg-type]
    results: list[ClipResult] = [
        measure_clip(listener, clip_set.phrase, *clip) for clip in clip_set.clips()
    ]
    fired = [r for r in results if r.fired]
    delays = sorted(r.delay_ms for r in fired) or [float("nan")]
    return EngineRow(
        engine,
        clip_set.name,
        len(results),
        len(fired),
        statistics.median(delays),
        delays[min(len(delays) - 1, round(0.95 * (len(delays) - 1)))],
        sum(r.question_lost <= 0.01 for r in fired),
        statistics.median([r.tail_ms for r in fired]) if fired else float("nan"),
    )


def negatives() -> Int16Array:
    questions = sorted({q for clip_set in (*SETS, ALEXA) for q in clip_set.questions})
    speech = join(*(speak(q, voice) for voice in NEGATIVE_VOICES for q in questions))
    rng = np.random.default_rng(0)
    noisy = speech + rng.normal(0, 32768 * 10 ** (NOISE_DBFS / 20), len(speech))
    return np.clip(np.round(noisy), -32768, 32767).astype(np.int16)


def false_triggers(engine: str, audio: Int16Array) -> int:
    models = tuple(clip_set.model for clip_set in CLIP_SETS)
    listener = open_listener(WakeConfig(models=models, engine=engine), RATE)  # type: ignore[arg-type]
    fired = 0
    for start in range(0, len(audio) - CHUNK + 1, CHUNK):
        if listener.feed(audio[start : start + CHUNK]) is not None:
            fired += 1
    return fired


def main() -> int:
    talk = negatives()
    hours = len(talk) / RATE / 3600
    print(
        f"{'engine':22} {'clip set':8} {'fired':>9} {'delay ms':>9} {'p95':>6} "
        f"{'kept q.':>8} {'tail ms':>8}"
    )
    for label, engine in ENGINES.items():
        for clip_set in CLIP_SETS:
            row = clip_rows(engine, clip_set)
            print(
                f"{label:22} {row.clip_set:8} {row.fired:4}/{row.clips:<4} {row.delay_ms:9.0f} "
                f"{row.delay_p95_ms:6.0f} {row.kept_question:4}/{row.fired:<3} {row.tail_ms:8.0f}"
            )
    for label, engine in ENGINES.items():
        count = false_triggers(engine, talk)
        print(
            f"{label}: {count} false triggers in {len(talk) / RATE / 60:.1f} min of other "
            f"speech ({count / hours:.1f} per hour; models {', '.join(s.model for s in CLIP_SETS)})"
        )
    return 0


if __name__ == "__main__":
    main()
