"""One microphone, many listeners: the capture stream's audio kept in a numbered ring.

The sound card's thread hands every chunk to ``Microphone``, which numbers its samples (the first
sample ever captured is 0) and keeps them in a ring: always the last ``preroll_s`` seconds (plus
``DETECTION_LAG_S``, so "``preroll_s`` before the wake word" is still held when the detector
fires late, as a slower engine or a busy board makes it), and
everything a reader has not read yet (up to ``max_pending_s``). Readers start at any sample number
still held, so a conversation can begin exactly where the wake word ended, or with the wake word
itself, while the socket is still opening, and reads on in order with no gap and no duplicate.

Readers come in two kinds on one class: a worker thread blocks in ``read_blocking`` (the wake word
detector, so idle listening never wakes the event loop), and a coroutine awaits ``read`` (the
conversation). The capture thread wakes a reader only when what it waits for has arrived.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque
from collections.abc import Callable

import numpy as np

from agentpi.audio.backend import AudioDeviceError, CaptureStream, Failed
from agentpi.audio.convert import Int16Array

log = logging.getLogger(__name__)

DETECTION_LAG_S = 1.0
"""How late, at most, a wake detection may come after the audio that fired it and still get
its whole pre-roll (seen: up to about 0.4 s with pyopen-wakeword on Python 3.13)."""

ALL_SAMPLES = 1 << 30
"""As many samples as a read may take: more than any ring holds (hours of audio)."""

ChunkProcessor = Callable[[Int16Array, float], Int16Array]


class Microphone:
    def __init__(
        self,
        open_stream: Callable[[], CaptureStream],
        preroll_s: float = 1.5,
        max_pending_s: float = 60.0,
        detection_lag_s: float = DETECTION_LAG_S,
    ) -> None:
        self._open_stream = open_stream
        self.preroll_s = preroll_s
        self.detection_lag_s = detection_lag_s
        self.max_pending_s = max_pending_s
        self.processor: ChunkProcessor | None = None
        """Runs on every chunk on the capture thread before anyone sees it (echo cancelling)."""
        self.on_failure: Failed | None = None
        """Called on the capture thread when the device fails."""
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._chunks: deque[tuple[int, Int16Array]] = deque()
        self._held = 0
        self._position = 0
        self._readers: set[MicReader] = set()
        self._stream: CaptureStream | None = None
        self._prepared: CaptureStream | None = None
        self._rate = 0
        self._chunk_samples = 0
        self._end: int | None = None
        self.failure: Exception | None = None

    @classmethod
    def of(
        cls, stream: CaptureStream, preroll_s: float = 1.5, detection_lag_s: float = DETECTION_LAG_S
    ) -> Microphone:
        """A microphone on an already-made stream (reopening starts the same one again)."""
        mic = cls(lambda: stream, preroll_s, detection_lag_s=detection_lag_s)
        mic.prepare(stream)
        return mic

    def prepare(self, stream: CaptureStream) -> None:
        """Use ``stream`` (made already, not started) at the next ``open``: a device that is
        not there fails when the program starts, and the rate is known before then."""
        self._prepared = stream
        self._rate = stream.sample_rate
        self._chunk_samples = stream.chunk_samples

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def chunk_samples(self) -> int:
        return self._chunk_samples

    @property
    def position(self) -> int:
        """The number of the next sample to be captured."""
        with self._lock:
            return self._position

    @property
    def oldest(self) -> int:
        """The number of the oldest sample still held."""
        with self._lock:
            return self._chunks[0][0] if self._chunks else self._position

    def open(self) -> None:
        """Open and start the device; raises AudioDeviceError if it cannot be."""
        # open and close exclude each other: a close that comes while an open is under way
        # (a stop during start-up) waits for it, then closes what it opened
        with self._open_lock:
            self._open()

    def _open(self) -> None:
        if self._stream is not None:
            return
        stream, self._prepared = self._prepared or self._open_stream(), None
        if self._rate and stream.sample_rate != self._rate:
            # numbering stays continuous only at one rate; a device back at another rate starts
            # a new count (nobody can be reading across the gap anyway)
            with self._lock:
                self._chunks.clear()
                self._held = 0
        self._rate = stream.sample_rate
        self._chunk_samples = stream.chunk_samples
        self.failure = None
        self._end = None
        self._stream = stream
        stream.start(self._deliver, self._failed)

    def close(self) -> None:
        with self._open_lock:
            stream, self._stream = self._stream, None
            if stream is not None:
                stream.stop()

    def at_end(self, position: int) -> bool:
        """True once a finite input has ended and everything up to ``position`` is its last."""
        if self._end is None and self._stream is not None and self._stream.exhausted:
            with self._lock:
                self._end = self._position
        return self._end is not None and position >= self._end

    def reader(self, start: int | None = None) -> MicReader:
        """A reader from sample ``start`` (default: from now on). Close it when done."""
        with self._lock:
            reader = MicReader(self, self._position if start is None else start)
            self._readers.add(reader)
            return reader

    def _deliver(self, chunk: Int16Array, captured_until: float) -> None:
        if self.processor is not None:
            chunk = self.processor(chunk, captured_until)
        with self._lock:
            self._chunks.append((self._position, chunk))
            self._position += len(chunk)
            self._held += len(chunk)
            self._evict()
            wakes = self._wakes()
        # the event loop's thread wakes at once and wants the GIL: hand it over last thing, so
        # that it does not wake only to wait for this thread to finish
        for wake in wakes:
            wake()

    def _wakes(self) -> list[Callable[[], None]]:
        """Lock held: tell each reader what has come; what wakes those waiting on the event loop
        (call each once the lock is let go)."""
        return [wake for reader in self._readers if (wake := reader.captured(self._position))]

    def _evict(self) -> None:
        keep = int((self.preroll_s + self.detection_lag_s) * self._rate)
        cap = int(self.max_pending_s * self._rate)
        pinned = min((r.cursor for r in self._readers), default=self._position)
        while self._chunks:
            start, chunk = self._chunks[0]
            if self._held - len(chunk) < keep:
                break
            if start + len(chunk) > pinned and self._held <= cap:
                break  # a reader still needs it
            self._chunks.popleft()
            self._held -= len(chunk)

    def _failed(self, exc: Exception) -> None:
        self.failure = exc
        with self._lock:
            wakes = self._wakes()
        for wake in wakes:
            wake()
        if self.on_failure is not None:
            self.on_failure(exc)

    # what readers ask of the microphone: each takes the lock once, so a reader's cursor and
    # what it waits for change together with what the capture thread sees

    def move_reader(self, reader: MicReader, sample: int) -> None:
        with self._lock:
            reader.cursor = max(reader.cursor, sample)

    def take(self, reader: MicReader, max_samples: int = ALL_SAMPLES) -> Int16Array:
        """Everything held from ``reader.cursor`` on (at most ``max_samples``); no waiting."""
        with self._lock:
            return self._take(reader, max_samples)

    def take_at_least(self, reader: MicReader, min_samples: int) -> Int16Array | None:
        """Everything held from the cursor on if ``min_samples`` are there (or the input
        failed: then it raises); else None, with the reader marked as waiting for them."""
        with self._lock:
            reader.check()
            if self._position - reader.cursor >= min_samples:
                return self._take(reader, ALL_SAMPLES)
            reader.expect(min_samples)
            return None

    def stop_waiting(self, reader: MicReader) -> None:
        with self._lock:
            reader.expect(0)

    def take_or_wake_later(
        self, reader: MicReader, max_samples: int, loop: asyncio.AbstractEventLoop
    ) -> Int16Array | asyncio.Future[None]:
        """Audio from the cursor on; when there is none yet, a future on ``loop`` resolved
        once some has come (or the input fails)."""
        with self._lock:
            reader.check()
            chunk = self._take(reader, max_samples)
            return chunk if len(chunk) else reader.wake_later(loop)

    def forget(self, reader: MicReader) -> None:
        with self._lock:
            self._readers.discard(reader)

    def _take(self, reader: MicReader, max_samples: int) -> Int16Array:
        """Lock held."""
        if not self._chunks or reader.cursor >= self._position:
            return _EMPTY
        oldest = self._chunks[0][0]
        if reader.cursor < oldest:
            reader.lost += oldest - reader.cursor
            reader.cursor = oldest
        parts: list[Int16Array] = []
        want = max_samples
        index = _index_of(self._chunks, reader.cursor)
        while want > 0 and index < len(self._chunks):
            start, chunk = self._chunks[index]
            piece = chunk[reader.cursor - start :][:want]
            parts.append(piece)
            reader.cursor += len(piece)
            want -= len(piece)
            index += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _index_of(chunks: deque[tuple[int, Int16Array]], sample: int) -> int:
    """The index of the chunk holding ``sample``: readers are near the newest end, so look
    from there."""
    for index in range(len(chunks) - 1, -1, -1):
        if chunks[index][0] <= sample:
            return index
    return 0


_EMPTY = np.zeros(0, dtype=np.int16)


class MicReader:
    def __init__(self, mic: Microphone, start: int) -> None:
        self.mic = mic
        self.start = start
        self.cursor = start
        self.lost = 0
        """Samples that were dropped before this reader got to them (it fell too far behind)."""
        self._want = 0
        self._ready = threading.Event()
        self._waiter: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    def captured(self, position: int) -> Callable[[], None] | None:
        """Capture thread, the microphone's lock held: wake a worker thread that waits, if what
        it waits for is there; for a coroutine that waits, what wakes it (to be called once the
        lock is let go)."""
        available = position - self.cursor
        if self._want and (available >= self._want or self.mic.failure is not None):
            self._want = 0
            self._ready.set()
        waiter, loop = self._waiter, self._loop
        if waiter is None or loop is None:
            return None
        self._waiter = None

        def wake() -> None:
            loop.call_soon_threadsafe(_resolve, waiter)

        return wake

    def check(self) -> None:
        if self.mic.failure is not None:
            raise AudioDeviceError(f"audio input failed: {self.mic.failure}")
        if self.closed:
            raise AudioDeviceError("audio input reader is closed")

    def expect(self, min_samples: int) -> None:
        """The microphone's lock held: a worker thread waits for ``min_samples`` (0: no more)."""
        self._want = min_samples
        if min_samples:
            self._ready.clear()

    def wake_later(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """The microphone's lock held: a coroutine on ``loop`` waits for what comes next."""
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter, self._loop = waiter, loop
        return waiter

    def skip_to(self, sample: int) -> None:
        """Move on to ``sample`` (never back): the audio before it is not read."""
        self.mic.move_reader(self, sample)

    def read_nowait(self, max_samples: int = ALL_SAMPLES) -> Int16Array:
        return self.mic.take(self, max_samples)

    def read_blocking(self, min_samples: int, timeout: float | None = None) -> Int16Array | None:
        """Wait (on a worker thread) until ``min_samples`` are there, then take all there is;
        None on timeout."""
        chunk = self.mic.take_at_least(self, min_samples)
        if chunk is not None:
            return chunk
        if not self._ready.wait(timeout):
            self.mic.stop_waiting(self)
            return None
        return self.mic.take_at_least(self, 0)

    async def read(self, max_samples: int) -> Int16Array:
        """The next audio from the cursor on (1..``max_samples`` samples), waiting if need be."""
        loop = asyncio.get_running_loop()
        while True:
            # a future only when there is nothing to read yet: not one per chunk
            taken = self.mic.take_or_wake_later(self, max_samples, loop)
            if not isinstance(taken, asyncio.Future):
                return taken
            try:
                await taken
            finally:
                self._waiter = None

    def close(self) -> None:
        self.closed = True
        self.mic.forget(self)
        self._ready.set()
        waiter = self._waiter
        if waiter is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(_resolve, waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
