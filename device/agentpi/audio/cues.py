"""Earcons: a short rising chime on the wake word, a falling one when a conversation ends, a low
double tone on an error, so a device with no screen (and LEDs out of sight) still says what it
is doing. Bundled as 16 kHz WAVs in ``agentpi/data/cues``; a folder of WAVs with the same names
replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.convert import Int16Array, apply_gain, read_wav

CUE_NAMES = ("wake", "end", "error")
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "cues"


class Cues:
    def __init__(
        self, volume: float = 0.5, enabled: bool = True, folder: Path | None = None
    ) -> None:
        self.enabled = enabled
        self.volume = volume
        self.sounds: dict[str, tuple[Int16Array, int]] = {}
        for name in CUE_NAMES:
            path = (folder or BUNDLED) / f"{name}.wav"
            try:
                self.sounds[name] = read_wav(path)
            except (OSError, ValueError) as exc:
                raise AudioDeviceError(f"sound cue {name!r}: {exc}") from None
        self.played: list[str] = []

    def duration_s(self, name: str) -> float:
        samples, rate = self.sounds[name]
        return len(samples) / rate

    async def play(self, name: str, sink: AudioSink, wait: bool = True) -> None:
        """Queue the cue on the speaker; with ``wait``, return once it has been heard (and the
        speaker is stopped again)."""
        samples, rate = self.sounds[name]
        drained = asyncio.Event()
        await sink.start(rate, drained.set)
        sink.write(apply_gain(samples, self.volume))
        self.played.append(name)
        if not wait:
            return
        # a stuck speaker must not hold the device: stop it anyway
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drained.wait(), self.duration_s(name) + 1.0)
        await sink.stop()
