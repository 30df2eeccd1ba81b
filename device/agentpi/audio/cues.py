"""Earcons: a short rising chime on the wake word, a falling one when a conversation ends, a low
double tone on an error, so a device with no screen (and LEDs out of sight) still says what it
is doing. Bundled as 16 kHz WAVs in ``agentpi/data/cues``; a folder of WAVs with the same names
replaces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from pathlib import Path

import numpy as np

from agentpi.audio.backend import AudioDeviceError, AudioSink
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.convert import Int16Array, apply_gain, read_wav
from agentpi.audio.vad import rms_dbfs

CUE_NAMES = ("wake", "end", "error")
RECENT_S = 0.16
"""Speech in this much of the latest microphone audio means the user is talking already."""
WATCH_AFTER_S = 0.1
"""The watch for the user's voice lasts the cue and this much more (the room's echo of it)."""
ECHO_CHUNKS = 2
"""The first chunks while the cue plays: their level is the cue's own echo."""
OVER_ECHO_DB = 6.0
"""How much louder than the cue's own echo a chunk must be to be the user speaking."""
CHUNK_BEFORE_OPEN = 640
"""Samples read at a time (40 ms at 16 kHz) from a microphone that has not said its chunk yet."""
BUNDLED = Path(__file__).resolve().parent.parent / "data" / "cues"


QUESTION_CUE = "question"
QUESTION_TONES_HZ = (660.0, 880.0)
QUESTION_TONE_S = 0.09


def question_tones(sample_rate: int) -> Int16Array:
    """Two short rising tones: the device asks something (an MCP tool waits for a yes or a
    no). Made at the speaker's rate, so it goes into a conversation's playback as it is."""
    count = round(QUESTION_TONE_S * sample_rate)
    fade = np.minimum(
        1.0, np.minimum(np.arange(count), np.arange(count)[::-1]) / (0.01 * sample_rate)
    )
    t = np.arange(count) / sample_rate
    gap = np.zeros(round(0.03 * sample_rate))
    parts = [np.sin(2 * np.pi * hz * t) * fade for hz in QUESTION_TONES_HZ]
    wave = np.concatenate([parts[0], gap, parts[1]]) * 0.6 * 32767
    tones: Int16Array = wave.astype(np.int16)
    return tones


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
        self.yielded = 0
        """Wake cues left out or cut short because the user was already talking."""
        self._watch: asyncio.Task[None] | None = None

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

    async def play_unless_speech(
        self, name: str, sink: AudioSink, mic: Microphone, threshold_dbfs: float
    ) -> None:
        """The wake cue, yielding to the user: not played if they are talking already (the last
        ``RECENT_S`` of the microphone), stopped at once if they start while it plays. A cue
        over the question reaches the agent through the echo canceller, which mangles both
        (measured: the question at -3 to 4 dB SNR against its clean self)."""
        reader = mic.reader(max(mic.oldest, mic.position - round(RECENT_S * mic.sample_rate)))
        if rms_dbfs(reader.read_nowait()) >= threshold_dbfs:
            reader.close()
            self.yielded += 1
            return
        if self._watch is not None:  # one watcher at a time: the last cue's is over by now
            self._watch.cancel()
        log = sink.playback_log
        if log is not None:
            log.chime_started()
        try:
            await self.play(name, sink, wait=False)
        except BaseException:
            reader.close()
            if log is not None:
                log.chime_over()
            raise
        self._watch = asyncio.ensure_future(
            self._stop_on_speech(name, sink, reader, threshold_dbfs)
        )

    async def _stop_on_speech(
        self, name: str, sink: AudioSink, reader: MicReader, threshold_dbfs: float
    ) -> None:
        """The cue's own echo is loud in the microphone too: the first ``ECHO_CHUNKS`` chunks
        give its level, and only a chunk ``OVER_ECHO_DB`` louder than that is the user."""
        echo_dbfs = float("-inf")
        try:
            async with asyncio.timeout(self.duration_s(name) + WATCH_AFTER_S):
                for index in itertools.count():
                    level = rms_dbfs(
                        await reader.read(reader.mic.chunk_samples or CHUNK_BEFORE_OPEN)
                    )
                    if index < ECHO_CHUNKS:
                        echo_dbfs = max(echo_dbfs, level)
                    elif level >= max(threshold_dbfs, echo_dbfs + OVER_ECHO_DB):
                        sink.flush()
                        self.yielded += 1
                        return
        except (TimeoutError, AudioDeviceError):
            pass  # the cue is over (or the microphone is: its recovery says so)
        finally:
            reader.close()
            if sink.playback_log is not None:
                sink.playback_log.chime_over()
