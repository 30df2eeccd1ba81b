"""Microphone chunks of any size and rate -> the 80 ms, 16 kHz frames wake models take."""

from __future__ import annotations

import numpy as np

from agentpi.audio.convert import Int16Array, Resampler

MODEL_RATE = 16000
FRAME_SAMPLES = 1280  # 80 ms at 16 kHz: what openWakeWord's feature model steps by


class Framer:
    def __init__(self, source_rate: int) -> None:
        self.source_rate = source_rate
        self._resampler = Resampler(source_rate, MODEL_RATE)
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, chunk: Int16Array) -> list[Int16Array]:
        audio = self._resampler.process(chunk)
        pending = np.concatenate([self._pending, audio]) if len(self._pending) else audio
        count = len(pending) // FRAME_SAMPLES
        frames = [pending[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(count)]
        self._pending = pending[count * FRAME_SAMPLES :].copy()
        return frames
