"""File-backed audio that keeps a sound card's time.

``FileSource`` plays a WAV into the device as if it were being spoken into a microphone: chunk k
becomes readable only once its last sample would have been captured, so everything downstream
(the socket, the simulator's VAD, latency figures) sees real-time audio. After the file ends it
delivers silence, as a quiet room would.

``FileSink`` is a speaker that records what it plays: every ``period_s`` it writes exactly the
samples that real-time playback would have consumed, silence when it has nothing queued, into a
WAV. So a flush on interruption really cuts what would have been heard, and the WAV's length is
the time the speaker was on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import wave
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agentpi.audio.backend import DEFAULT_CHUNK_MS, AudioDeviceError
from agentpi.audio.convert import Int16Array, Resampler, read_wav
from agentpi.audio.vad import loudness


class FileSource:
    def __init__(
        self,
        path: str | Path,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        try:
            self.samples, self.sample_rate = read_wav(path)
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"audio input file:{path}: {exc}") from None
        self.path = Path(path)
        self.chunk_samples = max(1, self.sample_rate * chunk_ms // 1000)
        self._clock = clock
        self._started_at: float | None = None
        self._next_chunk = 0
        self._silence = np.zeros(self.chunk_samples, dtype=np.int16)

    @property
    def exhausted(self) -> bool:
        return self._next_chunk * self.chunk_samples >= len(self.samples)

    @property
    def position_samples(self) -> int:
        """Samples delivered so far (the file's own samples first, then silence)."""
        return self._next_chunk * self.chunk_samples

    async def start(self) -> None:
        self._started_at = self._clock()
        self._next_chunk = 0

    def _chunk_ready_at(self, index: int) -> float:
        assert self._started_at is not None
        return self._started_at + (index + 1) * self.chunk_samples / self.sample_rate

    async def read(self) -> Int16Array:
        if self._started_at is None:
            raise AudioDeviceError("audio input read before start")
        index = self._next_chunk
        delay = self._chunk_ready_at(index) - self._clock()
        if delay > 0:
            await asyncio.sleep(delay)
        self._next_chunk += 1
        begin = index * self.chunk_samples
        chunk = self.samples[begin : begin + self.chunk_samples]
        if len(chunk) < self.chunk_samples:
            chunk = np.concatenate([chunk, self._silence[: self.chunk_samples - len(chunk)]])
        return chunk

    def discard_buffered(self) -> int:
        if self._started_at is None:
            return 0
        captured = int((self._clock() - self._started_at) * self.sample_rate) // self.chunk_samples
        dropped = max(0, captured - self._next_chunk)
        self._next_chunk += dropped
        return dropped * self.chunk_samples

    async def close(self) -> None:
        self._started_at = None


class FileSink:
    def __init__(
        self,
        path: str | Path,
        period_s: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self.period_s = period_s
        self._clock = clock
        self._rate = 0
        self._wav: wave.Wave_write | None = None
        self._queue: deque[Int16Array] = deque()
        self._queued = 0
        self._task: asyncio.Task[None] | None = None
        self._on_drained: Callable[[], None] = lambda: None
        self._resampler: Resampler | None = None
        self.played_samples = 0  # real audio written, silence not counted
        self.written_samples = 0
        self.output_level = 0.0  # loudness of the block played last, 0..1

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def buffered_samples(self) -> int:
        return self._queued

    async def start(self, preferred_rate: int, on_drained: Callable[[], None]) -> int:
        if self._wav is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._wav = wave.open(str(self.path), "wb")  # noqa: SIM115 - open until close()
            except OSError as exc:
                raise AudioDeviceError(f"audio output file:{self.path}: {exc}") from None
            self._wav.setnchannels(1)
            self._wav.setsampwidth(2)
            self._wav.setframerate(preferred_rate)
            self._rate = preferred_rate
        # The WAV's rate is fixed by the first conversation; a later one at another rate is
        # resampled to it, as a sound card would require.
        self._resampler = (
            Resampler(preferred_rate, self._rate) if preferred_rate != self._rate else None
        )
        self._on_drained = on_drained
        if self._task is None:
            self._task = asyncio.create_task(self._play(), name="file-sink")
        return preferred_rate

    def write(self, samples: Int16Array) -> None:
        if self._resampler is not None:
            samples = self._resampler.process(samples)
        if len(samples):
            self._queue.append(samples)
            self._queued += len(samples)

    def flush(self) -> int:
        dropped = self._queued
        self._queue.clear()
        self._queued = 0
        return dropped

    async def _play(self) -> None:
        assert self._wav is not None
        started = self._clock()
        written_at_start = self.written_samples
        while True:
            await asyncio.sleep(self.period_s)
            due = int((self._clock() - started) * self._rate) - (
                self.written_samples - written_at_start
            )
            if due <= 0:
                continue
            had_audio = self._queued > 0
            out = np.zeros(due, dtype=np.int16)
            filled = 0
            while filled < due and self._queue:
                head = self._queue[0]
                take = min(len(head), due - filled)
                out[filled : filled + take] = head[:take]
                filled += take
                if take == len(head):
                    self._queue.popleft()
                else:
                    self._queue[0] = head[take:]
            self._queued -= filled
            self.played_samples += filled
            self.written_samples += due
            self._wav.writeframes(out.astype("<i2").tobytes())
            self.output_level = loudness(out)
            if had_audio and self._queued == 0:
                self._on_drained()

    async def stop(self) -> None:
        self.flush()
        self.output_level = 0.0
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def close(self) -> None:
        await self.stop()
        if self._wav is not None:
            self._wav.close()
            self._wav = None
