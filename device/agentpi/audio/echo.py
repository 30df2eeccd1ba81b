"""Keeping the agent from hearing itself: a speaker next to a microphone would barge in on its
own reply.

``aec``: WebRTC's AEC3 (the pywebrtc-audio wheels: 0.4 MB, aarch64 and x86_64, CPython 3.11 to
3.13) runs on the capture thread and subtracts what the speaker played, read from the
``PlaybackLog``, from every chunk before anyone hears it. Chosen over livekit's
AudioProcessingModule (the same AEC3 behind a 10 MB FFI library) on the same measured echo
reduction (38 vs 39 dB) and footprint; see the README's echo section for the figures.

``half_duplex``: while agent audio plays, and for a tail after it, the conversation sends silence
instead of the microphone (the user cannot interrupt by voice, but the agent never hears itself).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.convert import Int16Array
from agentpi.audio.playback_log import PlaybackLog

IDLE_BYPASS_S = 2.0
"""The canceller rests once the speaker has been silent this long: idle listening costs nothing."""
CONVERGING_S = 1.5
CONVERGING_GAIN = 10 ** (-12 / 20)
"""Until the canceller has heard this much of the speaker (once after start: it keeps what it
learnt across rests), its output is 12 dB down. Cold, AEC3 lets a burst of echo through about
0.8 s into the first sound (measured: up to -38 dBFS in 100 ms against a -40 dBFS VAD, so the
agent could hear itself on its first greeting); a user talking over it is still heard."""


def _canceller(rate: int) -> Any:
    try:
        from pywebrtc_audio import AudioProcessor
    except ImportError as exc:
        raise AudioDeviceError(
            f'[audio] echo = "aec" needs the pywebrtc-audio package ({exc}); '
            'install it or set echo = "half_duplex"'
        ) from None
    return AudioProcessor(sample_rate=rate, num_channels=1, echo_cancellation=True)


class EchoCanceller:
    """A chunk processor for ``Microphone.processor``."""

    def __init__(self, log: PlaybackLog) -> None:
        self.log = log
        self._aec = _canceller(log.rate)
        self._heard_s = 0.0  # of the speaker, since the canceller was made

    def __call__(self, chunk: Int16Array, captured_until: float) -> Int16Array:
        if captured_until - self.log.last_sound_at > IDLE_BYPASS_S:
            return chunk
        far = self.log.window(captured_until, len(chunk))
        out: Int16Array = np.asarray(self._aec.process(chunk, far), dtype=np.int16)
        if self._heard_s < CONVERGING_S:
            if far.any():
                self._heard_s += len(chunk) / self.log.rate
            out = np.round(out * CONVERGING_GAIN).astype(np.int16)
        return out


class HalfDuplexGate:
    """Says when the microphone must be muted because the speaker is (or just was) playing."""

    def __init__(self, log: PlaybackLog, tail_s: float, clock: Any = time.monotonic) -> None:
        self.log = log
        self.tail_s = tail_s
        self._clock = clock

    def muted(self, queued_samples: int) -> bool:
        return queued_samples > 0 or self._clock() - self.log.last_sound_at < self.tail_s
