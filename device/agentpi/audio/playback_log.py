"""What the speaker played, and when: a short timeline that the microphone side can look up.

The speaker's thread (or task) adds each block as it goes out with the time its first sample
plays; the capture side asks "what was playing during these samples?". The echo canceller uses it
as its far-end reference, and the simulated room of the tests uses it to put the speaker's sound
back into the microphone, delayed and attenuated, like air does.
"""

from __future__ import annotations

import threading
from collections import deque

import numpy as np

from agentpi.audio.convert import Int16Array, Resampler

KEEP_S = 2.0


class PlaybackLog:
    def __init__(self, rate: int, keep_s: float = KEEP_S) -> None:
        self.rate = rate
        self.keep = int(keep_s * rate)
        self._lock = threading.Lock()
        self._blocks: deque[tuple[int, Int16Array]] = deque()  # (start sample on our clock, audio)
        self._resampler: Resampler | None = None
        self._origin: float | None = None
        self.last_sound_at = float("-inf")
        """When the last audible sample that counts finished playing (monotonic seconds): the
        echo canceller runs from the first such sample until it has been quiet for a while."""
        self._sound_counts = True
        # not while the wake cue plays: a short chime that yields to the user's voice is not
        # worth waking the canceller for, whose processing alters every sample of the question

    def chime_started(self) -> None:
        """What plays from now on is the wake cue: it does not wake the echo canceller."""
        self._sound_counts = False

    def chime_over(self) -> None:
        """What plays from now on wakes the echo canceller (the agent's voice always does)."""
        self._sound_counts = True

    def _sample_at(self, when: float) -> int:
        assert self._origin is not None
        return round((when - self._origin) * self.rate)

    def played(self, block: Int16Array, rate: int, started_at: float) -> None:
        """The speaker began playing ``block`` (at ``rate``) at ``started_at``."""
        if rate != self.rate:
            if self._resampler is None or self._resampler.in_rate != rate:
                self._resampler = Resampler(rate, self.rate)
            block = self._resampler.process(block)
        with self._lock:
            if self._origin is None:
                self._origin = started_at
            start = self._sample_at(started_at)
            self._blocks.append((start, block))
            if self._sound_counts and np.count_nonzero(block):
                self.last_sound_at = started_at + len(block) / self.rate
            newest = start + len(block)
            while (
                self._blocks and self._blocks[0][0] + len(self._blocks[0][1]) < newest - self.keep
            ):
                self._blocks.popleft()

    def window(self, ended_at: float, samples: int) -> Int16Array:
        """What played during the ``samples`` samples that ended at ``ended_at`` (silence where
        nothing did)."""
        out = np.zeros(samples, dtype=np.int16)
        with self._lock:
            if self._origin is None:
                return out
            end = self._sample_at(ended_at)
            begin = end - samples
            for start, block in self._blocks:
                lo, hi = max(begin, start), min(end, start + len(block))
                if lo < hi:
                    out[lo - begin : hi - begin] = block[lo - start : hi - start]
        return out


class Room:
    """The air between the speaker and the microphone, for tests and the demo: the microphone
    hears what the speaker played ``delay_s`` ago, ``gain_db`` quieter."""

    def __init__(self, log: PlaybackLog, delay_s: float = 0.04, gain_db: float = -6.0) -> None:
        self.log = log
        self.delay_s = delay_s
        self.gain = 10 ** (gain_db / 20)

    def mix(self, chunk: Int16Array, captured_until: float) -> Int16Array:
        echo = self.log.window(captured_until - self.delay_s, len(chunk))
        mixed = chunk.astype(np.float32) + echo.astype(np.float32) * self.gain
        out: Int16Array = np.clip(mixed, -32768, 32767).astype(np.int16)
        return out
