"""A small energy voice-activity detector with onset and hangover.

Good enough to tell "someone is talking into the mic" from room silence, which is all the device
needs locally (``user_activity``, the silence that ends a conversation); the agent's own VAD
decides turns. The simulator uses it as its end-of-speech detector.
"""

from __future__ import annotations

import math

import numpy as np

from agentpi.audio.convert import Int16Array


def rms_dbfs(samples: Int16Array) -> float:
    if len(samples) == 0:
        return -120.0
    wide = samples.astype(np.float64)
    rms = math.sqrt(float(np.dot(wide, wide)) / len(wide))  # a quarter of mean(square(...))'s cost
    return 20.0 * math.log10(max(rms, 1e-3) / 32768.0)


def loudness(samples: Int16Array, floor_dbfs: float = -50.0, full_dbfs: float = -10.0) -> float:
    """How loud a block is, 0..1 on a dB scale: what a level meter (or an LED) should show."""
    return min(1.0, max(0.0, (rms_dbfs(samples) - floor_dbfs) / (full_dbfs - floor_dbfs)))


class EnergyVad:
    """Speech once the level stays above the threshold for ``onset_s``; silence again after it
    stays below for ``hangover_s``. Feed consecutive chunks of one stream."""

    def __init__(
        self,
        sample_rate: int,
        threshold_dbfs: float = -40.0,
        onset_s: float = 0.06,
        hangover_s: float = 0.3,
    ) -> None:
        self.sample_rate = sample_rate
        self.threshold_dbfs = threshold_dbfs
        self.onset_s = onset_s
        self.hangover_s = hangover_s
        self.speaking = False
        self.level_dbfs = -120.0
        self._loud_s = 0.0
        self._quiet_s = 0.0

    def process(self, samples: Int16Array) -> bool:
        duration = len(samples) / self.sample_rate
        self.level_dbfs = rms_dbfs(samples)
        if self.level_dbfs >= self.threshold_dbfs:
            self._loud_s += duration
            self._quiet_s = 0.0
            if not self.speaking and self._loud_s >= self.onset_s:
                self.speaking = True
        else:
            self._quiet_s += duration
            self._loud_s = 0.0
            if self.speaking and self._quiet_s >= self.hangover_s:
                self.speaking = False
        return self.speaking

    @property
    def score(self) -> float:
        """The level mapped onto 0..1 (threshold = 0.5), like a VAD probability."""
        return 1.0 / (1.0 + math.exp(-(self.level_dbfs - self.threshold_dbfs) / 4.0))

    def reset(self) -> None:
        self.speaking = False
        self._loud_s = 0.0
        self._quiet_s = 0.0
