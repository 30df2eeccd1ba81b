"""Where the wake phrase ended, found after the detector fired.

The detector fires 10-500 ms after the phrase ends (more for fast speakers), by which time the
question may have begun; starting the upload at the firing frame loses its first words, and
starting a fixed time earlier sends a variable piece of the wake phrase. Two things the listener
already has tell where the phrase ended:

- the model itself: the phrase cut at a point and followed by quiet room scores like the
  detection only once the phrase is (nearly) complete there, so the earliest such cut on a 20 ms
  grid is where the phrase is about to end (never later than its end, on our clip set);
- the energy from there on: the phrase ends where the level falls to the room's floor (a pause) or
  where a dip is followed by a rise (the question starting straight away).

The answer leans early by ``MARGIN_S``: a little of the wake phrase's tail costs nothing, a lost
syllable of the question costs the answer. ``tests/test_phrase_end.py`` measures it on speech
the tuning never saw.
"""

from __future__ import annotations

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
PLATEAU = 0.9
"""A cut counts as complete at this score (or 95 % of the detection's, if that was lower)."""
WINDOW = 160
FLOOR_PERCENTILE = 10
PAUSE_DB = 6.0
"""A 10 ms window within this of the floor is a pause."""
RISE_DB = 9.0
"""A rise this far above the lowest level since the cut is the next words starting."""
DECAY_DB = 3.0
MARGIN_S = 0.02


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
        complete_at = min(PLATEAU, 0.95 * score)
        kept = self.engine.snapshot()
        try:
            cut = next(
                (c for c in range(0, searched, GRID) if self._completes(c, model, complete_at)),
                None,
            )
        finally:
            self.engine.restore(kept)
        if cut is None:
            return None
        end = _end_of_speech(audio, base + cut)
        start = max(0, end - round(MARGIN_S * 16000))
        return len(audio) - start

    def _completes(self, cut: int, model: str, complete_at: float) -> bool:
        """Whether ``model`` scores ``complete_at`` on the audio up to ``cut`` followed by quiet
        room."""
        index, offset = divmod(cut, FRAME_SAMPLES)
        self.engine.restore(self._states[index])
        head = self._frames[len(self._frames) - len(self._states) + index][:offset]
        audio = np.concatenate((head, self._quiet))
        frames = QUIET_FRAMES + (1 if offset else 0)
        for start in range(0, frames * FRAME_SAMPLES, FRAME_SAMPLES):
            if self.engine.predict(audio[start : start + FRAME_SAMPLES])[model] >= complete_at:
                return True
        return False


def _levels(audio: Int16Array) -> npt.NDArray[np.float64]:
    windows = audio[: len(audio) // WINDOW * WINDOW].astype(np.float64).reshape(-1, WINDOW)
    power = np.maximum(np.mean(windows * windows, axis=1), 1e-6)
    levels: npt.NDArray[np.float64] = 10 * np.log10(power / 32768.0**2)
    return levels


def _end_of_speech(audio: Int16Array, cut: int) -> int:
    """The first pause, or the dip before the next rise, from ``cut`` on (sample index)."""
    levels = _levels(audio)
    floor = float(np.percentile(levels, FLOOR_PERCENTILE))
    first = min(cut // WINDOW, len(levels) - 1)
    lowest, lowest_at, at_cut = levels[first], first, levels[first]
    for window in range(first, len(levels)):
        level = levels[window]
        if level <= floor + PAUSE_DB:
            return window * WINDOW
        if level < lowest:
            lowest, lowest_at = level, window
        if level >= lowest + RISE_DB and lowest <= at_cut - DECAY_DB:
            return lowest_at * WINDOW
    return lowest_at * WINDOW
