"""File-backed audio that keeps a sound card's time.

``FileSource`` plays a WAV into the device as if it were being spoken into a microphone: a thread
delivers chunk k once its last sample would have been captured, so everything downstream (the
wake word detector, the socket, the simulator's VAD, latency figures) sees real-time audio. After
the file ends it delivers silence, as a quiet room would. Given a ``Room``, it also hears the
speaker. Given an ``origin``, the file is a room that runs on the clock from then on, whether the
microphone is open or not: a stream started late begins with what is being said at that moment.

``FileSink`` is a speaker that records what it plays: every ``period_s`` it hands the "card" the
samples real-time playback will consume up to a period from now, silence when it has nothing
queued, and writes them into a WAV. So a flush on interruption cuts what would have been heard
(after the period already handed over, as on a real card, never before), and the WAV's length
is the time the speaker was on.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agentpi.audio.backend import DEFAULT_CHUNK_MS, AudioDeviceError, Deliver, Failed
from agentpi.audio.convert import Int16Array, read_wav
from agentpi.audio.playback_log import PlaybackLog, Room
from agentpi.audio.sample_queue import DEFAULT_MAX_BACKLOG_S, SampleQueue
from agentpi.audio.vad import loudness


class FileSource:
    def __init__(
        self,
        path: str | Path,
        chunk_ms: int = DEFAULT_CHUNK_MS,
        room: Room | None = None,
        clock: Callable[[], float] = time.monotonic,
        origin: float | None = None,
    ) -> None:
        try:
            self.samples, self._rate = read_wav(path)
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"audio input file:{path}: {exc}") from None
        self.path = Path(path)
        self._chunk_samples = max(1, self._rate * chunk_ms // 1000)
        self.room = room
        self._clock = clock
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._next_sample = 0
        self.origin = origin
        self.started_at: float | None = None
        """The clock time of the file's first sample in the current run: sample ``i`` is
        captured (delivered) at ``started_at + (i + 1) / sample_rate``."""
        self.fail_at_s: float | None = None
        """Fail like an unplugged USB device once this much audio has been delivered."""

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def chunk_samples(self) -> int:
        return self._chunk_samples

    @property
    def exhausted(self) -> bool:
        return self._next_sample >= len(self.samples)

    @property
    def position_samples(self) -> int:
        """Where in the file the next chunk starts (past its end: silence)."""
        return self._next_sample

    def start(self, deliver: Deliver, failed: Failed) -> None:
        self._stopping.clear()
        self._next_sample = 0
        if self.origin is not None:
            # what was said before the stream opened is gone, as it would be for a microphone
            late = (self._clock() - self.origin) * self._rate
            self._next_sample = max(0, math.ceil(late))
        self._thread = threading.Thread(
            target=self._run, args=(deliver, failed), name="file-source", daemon=True
        )
        self._thread.start()

    def _run(self, deliver: Deliver, failed: Failed) -> None:
        started = self.started_at = self._clock() if self.origin is None else self.origin
        size = self._chunk_samples
        silence = np.zeros(size, dtype=np.int16)
        while True:
            begin = self._next_sample
            ready_at = started + (begin + size) / self._rate
            if self._stopping.wait(max(0.0, ready_at - self._clock())):
                return
            if self.fail_at_s is not None and begin >= self.fail_at_s * self._rate:
                failed(AudioDeviceError(f"audio input file:{self.path}: device went away"))
                return
            chunk = self.samples[begin : begin + size]
            if len(chunk) < size:
                chunk = np.concatenate([chunk, silence[: size - len(chunk)]])
            if self.room is not None:
                chunk = self.room.mix(chunk, ready_at)
            self._next_sample = begin + size
            deliver(chunk, ready_at)

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class FileSink:
    def __init__(
        self,
        path: str | Path,
        period_s: float = 0.01,
        clock: Callable[[], float] = time.monotonic,
        max_backlog_s: float = DEFAULT_MAX_BACKLOG_S,
    ) -> None:
        self.path = Path(path)
        _check_writable(self.path)
        self.period_s = period_s
        self._clock = clock
        self._rate = 0
        self._wav: wave.Wave_write | None = None
        self._queue = SampleQueue(max_backlog_s)
        self._task: asyncio.Task[None] | None = None
        self._on_drained: Callable[[], None] = lambda: None
        self.played_samples = 0  # real audio written, silence not counted
        self.written_samples = 0
        self.output_level = 0.0  # loudness of the block played last, 0..1
        self.playback_log: PlaybackLog | None = None
        """Told every block as it plays (the echo canceller's reference, the test room)."""
        self.on_failure: Failed | None = None  # a file does not go away while it is written

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def buffered_samples(self) -> int:
        return len(self._queue)

    @property
    def refused_samples(self) -> int:
        return self._queue.refused_samples

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
        self._queue.set_rates(preferred_rate, self._rate)
        self._on_drained = on_drained
        if self._task is None:
            self._task = asyncio.create_task(self._play(), name="file-sink")
        return preferred_rate

    def write(self, samples: Int16Array) -> None:
        self._queue.put(samples)

    def flush(self) -> int:
        return self._queue.clear()

    async def _play(self) -> None:
        assert self._wav is not None
        started = self._clock()
        written_at_start = self.written_samples
        ahead = round(self.period_s * self._rate)
        drains_at: float | None = None  # when the last queued sample will have played
        ticks = 0
        while True:
            # The card is kept a period ahead of the clock, as a real one holds a period in its
            # buffer: what is handed over here plays after what was handed over before, so a
            # flush is heard only once that has played - never before the flush happened.
            played_so_far = self.written_samples - written_at_start
            due = int((self._clock() - started) * self._rate) + ahead - played_so_far
            if due > 0:
                out = np.zeros(due, dtype=np.int16)
                taken = self._queue.take_into(out)
                self.played_samples += taken
                self.written_samples += due
                self._wav.writeframes(out.astype("<i2").tobytes())
                block_at = started + played_so_far / self._rate
                if self.playback_log is not None:
                    self.playback_log.played(out, self._rate, block_at)
                self.output_level = loudness(out)
                if taken and not self._queue:
                    drains_at = block_at + taken / self._rate
            if self._queue:
                drains_at = None
            elif drains_at is not None and self._clock() >= drains_at:
                drains_at = None
                self._on_drained()
            # wake on the period grid, not a period after this one's work: the time spent here
            # would otherwise add up, each period, to a gap the card runs dry in
            ticks += 1
            await asyncio.sleep(max(0.0, started + ticks * self.period_s - self._clock()))

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


def _check_writable(path: Path) -> None:
    """Fail at start, once, not inside every conversation: the folder can be made and written,
    and the file (if it is there) replaced."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AudioDeviceError(f"audio output file:{path}: {exc.strerror or exc}") from None
    target = path if path.exists() else path.parent
    if path.is_dir() or not os.access(target, os.W_OK):
        raise AudioDeviceError(f"audio output file:{path}: cannot write there")
