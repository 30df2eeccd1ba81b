"""Where the wake phrase ended, found after the detector fired.

The detector fires 10-500 ms after the phrase ends (more for fast speakers), by which time the
question may have begun; starting the upload at the firing frame loses its first words, and
starting a fixed time earlier sends a variable piece of the wake phrase. Two things the listener
already has tell where the phrase ended:

- the model itself: the phrase cut at a point and followed by quiet room scores like the
  detection only once the phrase is (nearly) complete there. "Like the detection" is measured
  against the best of the detection and cuts every 80 ms through the window, so that a detection
  that fired on a low score (early, or late with the question begun) does not accept a cut
  halfway through the phrase. The 20 ms cuts are tried only near the first 80 ms one that is
  complete (each cut costs 4-5 inferences; a Pi Zero 2 W is several times slower than a PC);
- the energy from the earliest such cut on: the phrase ends at the first pause (the level at the
  room's floor) or the dip before a rise (the next words starting straight away). Some voices
  complete the phrase for the model a syllable early ("hey jarv"), so the dip of that syllable's
  consonant comes first: when the cut at the boundary after it scores clearly higher
  (``LATER_LOGIT``), the model heard more of the phrase there and the phrase ends there instead.

The answer leans early by ``MARGIN_S``: a little of the wake phrase's tail costs nothing, a lost
syllable of the question costs the answer. ``benchmarks/phrase_end.py`` measures it on speech
the tuning never saw.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import Int16Array
from agentpi.wake.features import quiet_room
from agentpi.wake.framer import FRAME_SAMPLES

SEARCH_FRAMES = 10
"""Frames before the firing one that may hold the phrase's end (800 ms)."""
LEVEL_FRAMES = 25
"""Frames whose energy gives the room's floor (2 s)."""
GRID = 320
"""20 ms: the spacing of the cuts tried."""
QUIET_FRAMES = 4
"""Frames of quiet room after a cut: a complete phrase scores within 320 ms of its end."""
COMPLETE_SHARE = 0.85
"""A cut counts as complete at this share of the best score: the detection's, or the best of the
cuts every ``BEST_STEP`` from the firing point back (where the whole phrase is in; the cuts
right at the firing point may hold the question's start and score lower)."""
BEST_STEP = 4 * GRID
FINE_STEPS_BACK = 2
"""The 20 ms cuts are tried from this many coarse steps before the first coarse cut that
completes."""
LATER_LOGIT = 2.5
"""How much higher (log-odds) the cut at the second boundary must score to be the phrase's end."""
WINDOW = 160
FLOOR_PERCENTILE = 10
PAUSE_DB = 4.0
"""A 10 ms window within this of the floor is a pause."""
RISE_DB = 6.0
"""A rise this far above the lowest level since the cut is the next syllable starting..."""
DECAY_DB = 3.0
"""...once the level fell this far below the loudest of the ``BEFORE_WINDOWS`` before the cut."""
BEFORE_WINDOWS = 2
MARGIN_S = 0.01


@runtime_checkable
class Snapshotting(Protocol):
    """An engine whose whole state can be kept and put back (``StreamingScorer``)."""

    def predict(self, frame: Int16Array) -> dict[str, float]: ...

    def snapshot(self) -> Any: ...

    def restore(self, state: Any) -> None: ...


class PhraseEndFinder:
    """Keeps what the search needs (bounded: ``LEVEL_FRAMES`` frames of 16 kHz audio and the
    engine's state before each of the last ``SEARCH_FRAMES``) and searches once a model fired."""

    def __init__(self, engine: Snapshotting) -> None:
        self.engine = engine
        self._frames: deque[Int16Array] = deque(maxlen=LEVEL_FRAMES)
        self._states: deque[Any] = deque(maxlen=SEARCH_FRAMES)
        self._quiet = quiet_room(QUIET_FRAMES + 1)

    def before_frame(self, frame: Int16Array) -> None:
        """Call with each frame just before the engine scores it."""
        self._frames.append(frame)
        self._states.append(self.engine.snapshot())

    @property
    def reach(self) -> int:
        """The furthest back (16 kHz samples before the firing frame's end) ``find`` answers."""
        return SEARCH_FRAMES * FRAME_SAMPLES + round(MARGIN_S * 16000)

    def clear(self) -> None:
        self._frames.clear()
        self._states.clear()

    def find(self, model: str, score: float) -> int | None:
        """16 kHz samples from the phrase's end to the end of the frame that fired (0 or more),
        or None if no cut scored as complete. Leaves the engine as it found it."""
        if not self._states:
            return None
        audio = np.concatenate(self._frames)
        searched = len(self._states) * FRAME_SAMPLES
        base = len(audio) - searched
        kept = self.engine.snapshot()
        try:
            scored = {c: self._score(c, model) for c in range(searched - GRID, -1, -BEST_STEP)}
            complete_at = COMPLETE_SHARE * max([score, *scored.values()])

            def complete(cut: int) -> bool:
                known = scored.get(cut)
                return (self._score(cut, model, complete_at) if known is None else known) >= (
                    complete_at
                )

            # the fine cuts only near the first coarse one that completes: half the inferences,
            # and a lone early peak (the model on half the phrase) further back is not taken
            coarse = min((c for c, value in scored.items() if value >= complete_at), default=None)
            first = 0 if coarse is None else max(0, coarse - FINE_STEPS_BACK * BEST_STEP + GRID)
            cut = next((c for c in range(first, searched, GRID) if complete(c)), None)
            if cut is None:
                return None
            end, *later = _boundaries(audio, base + cut)
            if later and _logit(self._score(later[0] - base, model)) > (
                _logit(self._score(end - base, model)) + LATER_LOGIT
            ):
                end = later[0]
        finally:
            self.engine.restore(kept)
        start = max(0, end - round(MARGIN_S * 16000))
        return len(audio) - start

    def _score(self, cut: int, model: str, enough: float = 1.0) -> float:
        """The best score of ``model`` on the audio up to ``cut`` (within the searched frames)
        followed by quiet room; stops once it reaches ``enough``."""
        index, offset = divmod(cut, FRAME_SAMPLES)
        self.engine.restore(self._states[index])
        head = self._frames[len(self._frames) - len(self._states) + index][:offset]
        audio = np.concatenate((head, self._quiet))
        frames = QUIET_FRAMES + (1 if offset else 0)
        best = 0.0
        for start in range(0, frames * FRAME_SAMPLES, FRAME_SAMPLES):
            best = max(best, self.engine.predict(audio[start : start + FRAME_SAMPLES])[model])
            if best >= enough:
                break
        return best


def _logit(probability: float) -> float:
    clipped = min(max(probability, 1e-6), 1 - 1e-6)
    return math.log(clipped / (1 - clipped))


def _levels(audio: Int16Array) -> npt.NDArray[np.float64]:
    windows = audio[: len(audio) // WINDOW * WINDOW].astype(np.float64).reshape(-1, WINDOW)
    power = np.maximum(np.mean(windows * windows, axis=1), 1e-6)
    levels: npt.NDArray[np.float64] = 10 * np.log10(power / 32768.0**2)
    return levels


def _boundaries(audio: Int16Array, cut: int) -> list[int]:
    """Where the phrase may end from ``cut`` on (sample indexes, one or two): the first pause, or
    the dip before the next rise and, after it, the next such place."""
    levels = _levels(audio)
    floor = float(np.percentile(levels, FLOOR_PERCENTILE))
    window = min(cut // WINDOW, len(levels) - 1)
    reference = float(np.max(levels[max(0, window - BEFORE_WINDOWS) : window + 1]))
    lowest, lowest_at = levels[window], window
    found: list[int] = []
    while window < len(levels) and len(found) < 2:
        level = levels[window]
        if level <= floor + PAUSE_DB:
            return [*found, window * WINDOW]
        if level < lowest:
            lowest, lowest_at = level, window
        if level >= lowest + RISE_DB and lowest <= reference - DECAY_DB:
            found.append(lowest_at * WINDOW)
            while window + 1 < len(levels) and levels[window + 1] >= levels[window]:
                window += 1
            reference = lowest = levels[window]
            lowest_at = window
        window += 1
    return found or [lowest_at * WINDOW]
