"""Where the wake phrase ended, found after the detector fired.

The detector fires 10-500 ms after the phrase ends (more for fast speakers), by which time the
question may have begun: starting the upload at the firing frame loses its first words, and
starting a fixed time earlier sends a variable piece of the wake phrase. ``PhraseEndFinder.find``
answers in three steps, from what the listener already has:

1. the model: the earliest cut of the audio that, followed by quiet room, scores like the
   detection (the phrase is complete there);
2. the sound just before that cut: a fricative's end (the "s" of "jarvis") the model had heard
   some of the phrase by, for the voices the model finds complete only once the next word began;
3. else the sound after it: the walk to the first pause or fricative's end, over the dips on the
   way, taking a later one only where the model heard clearly more of the phrase.

The answer leans early by ``MARGIN_S``. The constants were chosen with ``benchmarks/phrase_end.py``
(its docstring says on what speech, and the figure to trust: speech the tuning never saw); where a
constant has a reason beyond that, it says so.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import Int16Array
from agentpi.wake.features import quiet_room
from agentpi.wake.framer import FRAME_SAMPLES, MODEL_RATE

SEARCH_FRAMES = 10
"""Frames before the firing one that may hold the phrase's end (800 ms): the detector fires up
to about 500 ms after it, with room to spare."""
LEVEL_FRAMES = 25
"""Frames whose energy gives the room's floor (2 s: the phrase, and quiet before it)."""
GRID = 320
"""20 ms: the spacing of the cuts tried; each cut costs 4-5 inferences (a Pi Zero 2 W is several
times slower than a PC), and the sound's edge is found to 10 ms after it anyway."""
QUIET_FRAMES = 4
"""Frames of quiet room after a cut: a complete phrase scores within 320 ms of its end."""
COMPLETE_SHARE = 0.85
"""A cut counts as complete at this share of the best score: the detection's, or the best of the
cuts every ``BEST_STEP`` from the firing point back (where the whole phrase is in; the cuts
right at the firing point may hold the question's start and score lower)."""
BEST_STEP = 4 * GRID
"""The coarse cuts (80 ms, one model frame) that set the bar and say where to try the fine ones."""
FINE_STEPS_BACK = 2
"""The 20 ms cuts are tried from this many coarse steps before the first coarse cut that
completes: half the inferences of trying them all, and a lone early peak further back (the model
on half the phrase) is not taken."""
LATER_LOGIT = 2.5
"""How much higher (log-odds) the cut at a later dip or pause must score to be the phrase's end:
some voices complete the phrase for the model a syllable early ("hey jarv")."""
MAX_DIPS = 3
"""Dips the walk passes before it gives up on a pause or a fricative's end."""
WINDOW = 160
"""10 ms at 16 kHz: the resolution the sound's edges are found to."""
FLOOR_PERCENTILE = 10
"""The room's floor: this percentile of the window levels over ``LEVEL_FRAMES``."""
PAUSE_DB = 4.0
"""A 10 ms window within this of the floor is a pause."""
RISE_DB = 6.0
"""A rise this far above the lowest level since the cut is the next syllable starting..."""
DECAY_DB = 3.0
"""...once the level fell this far below the loudest of the ``BEFORE_WINDOWS`` before the cut."""
BEFORE_WINDOWS = 2
"""The windows just before the cut whose loudest level a dip is measured from."""
FRICATIVE_HZ = 3500.0
"""Above this lies most of the energy of "s", "sh", "f" and little of a vowel's (whose main
formants lie lower)."""
FRICATIVE_SHARE_DB = -3.0
"""A window with at least half its energy above ``FRICATIVE_HZ``..."""
FRICATIVE_ABOVE_DB = 6.0
"""...and this far above the floor is a fricative's..."""
FRICATIVE_WINDOWS = 3
"""...in a stretch of at least this many (30 ms; a stop's burst is shorter)."""
BURST_DB = 3.0
"""A rise this far above the stretch's quietest window, held for ``BURST_WINDOWS``, is the next
sound beginning in it (a "t", or a second "s")."""
BURST_WINDOWS = 2
"""20 ms: one loud window is only the noise of a hiss's level; a burst holds."""
LOOK_BACK_S = 0.2
"""How far before the earliest complete cut a fricative's end may be the phrase's."""
HEARD_SOME = 0.05
"""A fricative's end before the earliest complete cut counts only where the model scores the
phrase cut there at least this. The "h" of "hey" is a fricative too, and cut there the phrase
scores about 0.00; cut after the "s" of "jarvis" it scores 0.15 or more, even on the voices
whose phrase the model only finds complete once the next word has begun."""
MARGIN_S = 0.01
"""The answer leans early by this: a little of the wake phrase costs nothing, a lost syllable
of the question costs the answer."""


class Boundary(NamedTuple):
    at: int
    """Sample index in the searched audio."""
    fricative_end: bool


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
        return SEARCH_FRAMES * FRAME_SAMPLES + round(MARGIN_S * MODEL_RATE)

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
        base = len(audio) - searched  # the searched frames' start in ``audio``
        kept = self.engine.snapshot()
        try:
            cut = self._first_complete_cut(model, score, searched)
            if cut is None:
                return None
            sound = Sound.of(audio)
            end = self._fricative_end_heard_before(sound, base, cut, model)
            if end is None:
                end = self._walk(sound.boundaries(base + cut), base, model)
        finally:
            self.engine.restore(kept)
        start = max(0, end - round(MARGIN_S * MODEL_RATE))
        return len(audio) - start

    def _first_complete_cut(self, model: str, score: float, searched: int) -> int | None:
        """Step 1: the earliest 20 ms cut (in the searched frames) that scores as complete. The
        coarse cuts set the bar with the detection's score; the fine ones are tried only near
        the first coarse cut that reaches it."""
        scored = {c: self._score(c, model) for c in range(searched - GRID, -1, -BEST_STEP)}
        complete_at = COMPLETE_SHARE * max([score, *scored.values()])
        coarse = min((c for c, value in scored.items() if value >= complete_at), default=None)
        first = 0 if coarse is None else max(0, coarse - FINE_STEPS_BACK * BEST_STEP + GRID)
        for cut in range(first, searched, GRID):
            known = scored.get(cut)
            value = self._score(cut, model, complete_at) if known is None else known
            if value >= complete_at:
                return cut
        return None

    def _fricative_end_heard_before(
        self, sound: Sound, base: int, cut: int, model: str
    ) -> int | None:
        """Step 2: a fricative's end shortly before the complete cut, where the model had heard
        some of the phrase (``HEARD_SOME``)."""
        before = sound.fricative_end_before(base + cut)
        if before is None or before < base:
            return None
        return before if self._score(before - base, model, HEARD_SOME) >= HEARD_SOME else None

    def _walk(self, boundaries: list[Boundary], base: int, model: str) -> int:
        """Step 3: the nearest boundary after the cut, or a later one where the model heard
        clearly more of the phrase (``LATER_LOGIT``); a fricative's end is taken over the dips
        before it. Only the last boundary can be a fricative's end (the walk stops there), so
        every boundary scored lies within the searched frames."""
        nearest, *later = boundaries
        end = nearest.at
        end_logit: float | None = None  # scored only if a dip or pause follows
        for boundary in later:
            if boundary.fricative_end:
                end = boundary.at
                continue
            if end_logit is None:
                end_logit = _logit(self._score(end - base, model))
            boundary_logit = _logit(self._score(boundary.at - base, model))
            if boundary_logit > end_logit + LATER_LOGIT:
                end, end_logit = boundary.at, boundary_logit
        return end

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


def _windows(audio: Int16Array) -> npt.NDArray[np.float64]:
    windows: npt.NDArray[np.float64] = (
        audio[: len(audio) // WINDOW * WINDOW].astype(np.float64).reshape(-1, WINDOW)
    )
    return windows


def _levels(audio: Int16Array) -> npt.NDArray[np.float64]:
    windows = _windows(audio)
    power = np.maximum(np.mean(windows * windows, axis=1), 1e-6)
    levels: npt.NDArray[np.float64] = 10 * np.log10(power / 32768.0**2)
    return levels


def _treble_shares(audio: Int16Array) -> npt.NDArray[np.float64]:
    """Per window, the share of its energy above ``FRICATIVE_HZ``, in dB."""
    power = np.abs(np.fft.rfft(_windows(audio) * np.hanning(WINDOW), axis=1)) ** 2
    treble = power[:, np.fft.rfftfreq(WINDOW, 1 / MODEL_RATE) >= FRICATIVE_HZ].sum(axis=1)
    shares: npt.NDArray[np.float64] = 10 * np.log10(
        np.maximum(treble, 1e-12) / np.maximum(power.sum(axis=1), 1e-12)
    )
    return shares


def _fricative_ends(
    levels: npt.NDArray[np.float64], shares: npt.NDArray[np.float64], floor: float
) -> list[int]:
    """The windows just after each fricative stretch (or a burst inside one)."""
    fricative = (shares >= FRICATIVE_SHARE_DB) & (levels >= floor + FRICATIVE_ABOVE_DB)
    # one loud window is only the noise of a hiss's level: a burst holds
    held = levels.copy()
    for later in range(1, BURST_WINDOWS):
        held[:-later] = np.minimum(
            held[:-later], np.where(fricative[later:], levels[later:], -np.inf)
        )
    ends: list[int] = []
    length, quietest = 0, 0.0
    for window, level in enumerate(levels):
        if (
            fricative[window]
            and length >= FRICATIVE_WINDOWS
            and held[window] >= quietest + BURST_DB
        ):
            ends.append(window)
            length = 0
        elif fricative[window]:
            quietest = level if length == 0 else min(quietest, level)
            length += 1
        else:
            if length >= FRICATIVE_WINDOWS:
                ends.append(window)
            length = 0
    if length >= FRICATIVE_WINDOWS:
        ends.append(len(levels))
    return ends


class Sound(NamedTuple):
    """What the boundaries are read from, per 10 ms window of the searched audio."""

    levels: npt.NDArray[np.float64]
    floor: float
    fricative_ends: list[int]

    @classmethod
    def of(cls, audio: Int16Array) -> Sound:
        levels = _levels(audio)
        floor = float(np.percentile(levels, FLOOR_PERCENTILE))
        return cls(levels, floor, _fricative_ends(levels, _treble_shares(audio), floor))

    def fricative_end_before(self, cut: int) -> int | None:
        """The earliest fricative's end up to ``LOOK_BACK_S`` before ``cut`` (a sample index)."""
        window = min(cut // WINDOW, len(self.levels) - 1)
        look_back = round(LOOK_BACK_S * MODEL_RATE) // WINDOW
        before = [end for end in self.fricative_ends if window - look_back <= end < window]
        return before[0] * WINDOW if before else None

    def boundaries(self, cut: int) -> list[Boundary]:
        """Where the phrase may end from ``cut`` on (sample indexes): the dips on the way (up to
        ``MAX_DIPS``) and the first pause or fricative's end after them."""
        levels, floor = self.levels, self.floor
        window = min(cut // WINDOW, len(levels) - 1)
        after = {end for end in self.fricative_ends if end >= window}
        reference = float(np.max(levels[max(0, window - BEFORE_WINDOWS) : window + 1]))
        lowest, lowest_at = levels[window], window
        found: list[Boundary] = []
        while window < len(levels):
            level = levels[window]
            if window in after:
                return [*found, Boundary(window * WINDOW, True)]
            if level <= floor + PAUSE_DB:
                return [*found, Boundary(window * WINDOW, False)]
            if level < lowest:
                lowest, lowest_at = level, window
            if level >= lowest + RISE_DB and lowest <= reference - DECAY_DB:
                if len(found) == MAX_DIPS:
                    return found
                found.append(Boundary(lowest_at * WINDOW, False))
                while window + 1 < len(levels) and levels[window + 1] >= levels[window]:
                    window += 1
                reference = lowest = levels[window]
                lowest_at = window
            window += 1
        if len(levels) in after:
            return [*found, Boundary(len(levels) * WINDOW, True)]
        return found or [Boundary(lowest_at * WINDOW, False)]
