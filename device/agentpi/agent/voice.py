"""Speech-like audio for the simulated agent's replies.

Not intelligible speech, but it has what matters for a voice device: a voiced harmonic spectrum
with a moving pitch, a syllable rhythm, pauses between words, and a length that follows the text.
It never contains an exact zero sample, so a test can tell agent audio from played silence.
"""

from __future__ import annotations

import zlib

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import Int16Array

SYLLABLE_S = 0.16
WORD_GAP_S = 0.05


def synthesize_speech(text: str, sample_rate: int, level: float = 0.3) -> Int16Array:
    rng = np.random.default_rng(zlib.crc32(text.encode()))
    segments: list[npt.NDArray[np.float64]] = []
    for word in text.split() or ["..."]:
        syllables = max(1, sum(ch in "aeiouyAEIOUY" for ch in word))
        n = int(sample_rate * SYLLABLE_S * syllables)
        t = np.arange(n) / sample_rate
        f0 = 110 + 40 * rng.random() + 15 * np.sin(2 * np.pi * 3 * t)
        phase = 2 * np.pi * np.cumsum(f0) / sample_rate
        voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
        envelope = 0.25 + 0.75 * np.abs(np.sin(np.pi * syllables * t / (n / sample_rate)))
        segments.append(voiced * envelope)
        segments.append(0.01 * rng.standard_normal(int(sample_rate * WORD_GAP_S)))
    wave = np.concatenate(segments)
    wave = wave / max(1e-9, float(np.max(np.abs(wave)))) * level * 32767
    samples: Int16Array = np.round(wave).astype(np.int16)
    samples[samples == 0] = 1
    return samples
