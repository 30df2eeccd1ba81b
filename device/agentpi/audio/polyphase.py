"""A streaming polyphase resampler with a fixed, one-millisecond delay and even output.

soxr works in blocks: streaming 16 kHz to 8 kHz it returned 0 and 470 samples for alternate 40 ms
chunks (its LQ setting; HQ holds back up to 128 ms), so every other chunk went out late by a whole
chunk. Here each output sample is computed as soon as the input samples its filter spans are in:
a 40 ms chunk in gives 40 ms out (the first one short by the delay), at any pair of rates.

The filter is a Kaiser-windowed sinc, cut off at 0.45 of the lower rate (0.9 of its Nyquist),
spanning ``ZERO_CROSSINGS`` zero crossings each side: about 1 ms of delay at the lower rate, and
some 60 dB of attenuation past the cutoff: ample for speech, and nothing folds back audibly.
"""

from __future__ import annotations

from math import ceil, gcd

import numpy as np
import numpy.typing as npt

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float32]

ZERO_CROSSINGS = 8
CUTOFF = 0.9
"""Of the lower rate's Nyquist frequency."""
KAISER_BETA = 7.0
PHASES_BY_CONVOLUTION = 8
"""Up to this many output phases (16 -> 48 kHz has 3), one convolution each; more (16 -> 44.1
kHz has 441) gather every output's window instead."""


def _phase_table(up: int, down: int) -> tuple[int, FloatArray]:
    """``half`` and the taps for each of the ``up`` output phases (rows sum to 1)."""
    scale = CUTOFF * min(1.0, up / down)  # the cutoff, as a fraction of the input's Nyquist
    half = ceil(ZERO_CROSSINGS / scale)
    # row p, column k: the tap for input sample (i - half + 1 + k) of an output at i + p/up
    offsets = np.arange(up)[:, None] / up + (half - 1 - np.arange(2 * half))[None, :]
    window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (offsets / half) ** 2, 0, None)))
    taps = np.sinc(scale * offsets) * window
    taps /= taps.sum(axis=1, keepdims=True)
    return half, taps.astype(np.float32)


class PolyphaseResampler:
    def __init__(self, in_rate: int, out_rate: int) -> None:
        common = gcd(in_rate, out_rate)
        self._up, self._down = out_rate // common, in_rate // common
        self._half, self._taps = _phase_table(self._up, self._down)
        self._reversed = np.ascontiguousarray(self._taps[:, ::-1])
        # output n has phase (n * down) % up; the first n of each phase:
        inverse = pow(self._down, -1, self._up) if self._up > 1 else 0
        self._first_of_phase = [(phase * inverse) % self._up for phase in range(self._up)]
        self._buffer: FloatArray = np.zeros(self._half, dtype=np.float32)
        self._base = -self._half
        """Stream index of ``_buffer[0]``: the stream starts after ``half`` zeros."""
        self._received = 0
        self._produced = 0

    def process(self, samples: Int16Array, last: bool = False) -> Int16Array:
        self._buffer = np.concatenate((self._buffer, samples.astype(np.float32)))
        self._received += len(samples)
        if last:
            wanted = -(-self._received * self._up // self._down)  # every input sample's output
            self._buffer = np.concatenate((self._buffer, np.zeros(self._half, np.float32)))
        else:  # the outputs whose last tap is a sample already received
            wanted = ((self._received - self._half) * self._up - 1) // self._down + 1
        count = max(0, wanted - self._produced)
        if count == 0:
            return np.zeros(0, dtype=np.int16)
        out = self._by_phase(count) if self._up <= PHASES_BY_CONVOLUTION else self._gathered(count)
        self._produced += count
        keep_from = (self._produced * self._down) // self._up - self._half + 1 - self._base
        if keep_from > 0:
            self._buffer = self._buffer[keep_from:]
            self._base += keep_from
        result: Int16Array = np.clip(np.rint(out), -32768, 32767).astype(np.int16)
        return result

    def _by_phase(self, count: int) -> FloatArray:
        """Outputs of one phase are evenly spaced, ``down`` input samples apart: one C-speed
        convolution per phase (np.convolve is about 5x quicker than gathering windows)."""
        up, down, width = self._up, self._down, 2 * self._half
        first = self._produced
        out = np.empty(count, dtype=np.float32)
        for phase in range(up):
            n = first + (self._first_of_phase[phase] - first) % up
            if n >= first + count:
                continue
            outputs = (first + count - 1 - n) // up + 1
            start = (n * down) // up - self._half + 1 - self._base
            segment = self._buffer[start : start + (outputs - 1) * down + width]
            out[n - first :: up] = np.convolve(segment, self._reversed[phase], "valid")[::down]
        return out

    def _gathered(self, count: int) -> FloatArray:
        positions = (self._produced + np.arange(count, dtype=np.int64)) * self._down
        first_tap = positions // self._up - self._half + 1 - self._base
        window = first_tap[:, None] + np.arange(2 * self._half)[None, :]
        out: FloatArray = np.einsum(
            "ij,ij->i", self._buffer[window], self._taps[positions % self._up]
        )
        return out
