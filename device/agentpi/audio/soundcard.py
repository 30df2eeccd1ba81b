"""Sound cards through PyAudio (PortAudio): the microphone and the speaker of a real device.

Both streams are callback-driven: PortAudio's own thread calls us once per buffer, and nothing
here blocks the event loop. A USB microphone that only does 48 kHz stereo is opened as such and
mixed down to mono here; rates are converted later, where the agent's formats are known.

A device is named by index (``"2"``), exact name, a piece of its name (``"USB PnP"``), or
``"default"``. PortAudio learns which devices exist only when it starts, so after a device went
away ``PortAudio.restart`` is what lets it be found again.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from agentpi.audio.backend import DEFAULT_CHUNK_MS, AudioDeviceError, Deliver, Failed
from agentpi.audio.callback_thread import CallbackThreadState
from agentpi.audio.convert import Int16Array, to_mono_int16
from agentpi.audio.playback_log import PlaybackLog
from agentpi.audio.portaudio import (
    PortAudio,
    choose_format,
    find_device,
    load_pyaudio,
    quiet_stderr,
)
from agentpi.audio.sample_queue import DEFAULT_MAX_BACKLOG_S, SampleQueue
from agentpi.audio.vad import loudness

log = logging.getLogger(__name__)

STALL_S = 2.0
"""A capture stream that has not called back for this long has lost its device."""


CARD_HOLDS_S = 0.5
"""Sound handed to PortAudio this recently may still be in the card's buffer (a few periods; more
when its thread was held up), so a flush aborts the stream to drop it."""
RESTART_WAIT_S = 0.5
"""How long a flush's restart, or a close, waits for the callback that aborts the stream (one
period)."""
RESTART_POLL_S = 0.002
REST_AFTER_S = 1.0
"""A speaker that has had nothing to play for this long ends its stream, and the next audio
starts it again (within the jitter buffer's wait): while the user speaks and the agent thinks,
its 100 callbacks a second cost more than the rest of the speaker's work."""
PERIOD_MS = 10
"""The speaker's PortAudio buffer: what the card holds beyond it is about two of these, so a
flush goes silent within about 25 ms even where an abort does not drop the card's buffer
(measured through the virtual card: 28 ms at 10 ms, 56 ms at 20 ms)."""


class StallWatch:
    """PortAudio stops calling back, without a word, when a USB device goes away: a thread that
    notices (no callback for ``STALL_S``, or the stream no longer active) and says so once."""

    def __init__(self, what: str, failed: Failed) -> None:
        self.what = what
        self.failed = failed
        self.lost = threading.Event()
        self.last_callback_at = time.monotonic()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._resting = 0
        self.stream_rests = False
        """The stream ended itself, to rest while it has nothing to play: not a loss."""

    def called_back(self) -> None:
        self.last_callback_at = time.monotonic()

    @contextlib.contextmanager
    def resting(self) -> Iterator[None]:
        """The stream is stopped and started again on purpose: not a device that went away."""
        self._resting += 1
        try:
            yield
        finally:
            self.last_callback_at = time.monotonic()
            self._resting -= 1

    def start(self, stream: Any) -> None:
        self.last_callback_at = time.monotonic()
        self._thread = threading.Thread(
            target=self._watch, args=(stream,), name=f"{self.what}-watchdog", daemon=True
        )
        self._thread.start()

    def _watch(self, stream: Any) -> None:
        while not self._stopping.wait(STALL_S / 4):
            if self._resting or self.stream_rests:
                self.last_callback_at = time.monotonic()
                continue
            silent_for = time.monotonic() - self.last_callback_at
            if silent_for > STALL_S or not stream.is_active():
                self.lost.set()
                self.failed(
                    AudioDeviceError(
                        f"{self.what} stopped delivering audio (unplugged?) after "
                        f"{silent_for:.1f} s of silence from the device"
                    )
                )
                return

    def stop(self) -> None:
        self._stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join()


class SoundCardSource:
    """A capture stream on a sound card (a CaptureStream)."""

    def __init__(
        self, spec: str, chunk_ms: int = DEFAULT_CHUNK_MS, preferred_rate: int = 16000
    ) -> None:
        self.spec = spec
        self.device = find_device(spec, "input")
        self._rate, self.channels = choose_format(self.device, "input", preferred_rate)
        self._chunk_samples = self._rate * chunk_ms // 1000
        self._stream: Any = None
        self._watch: StallWatch | None = None
        self._ending = False
        self._thread_state = CallbackThreadState()

    @property
    def label(self) -> str:
        return "default" if self.device is None else self.device.name

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def chunk_samples(self) -> int:
        return self._chunk_samples

    @property
    def exhausted(self) -> bool:
        return False

    def start(self, deliver: Deliver, failed: Failed) -> None:
        pyaudio = load_pyaudio()
        channels = self.channels
        watch = self._watch = StallWatch(f"audio input {self.label!r}", failed)

        go_on, abort = (None, pyaudio.paContinue), (None, pyaudio.paAbort)
        thread_state = self._thread_state
        self._ending = False

        def callback(data: bytes | None, frames: int, timing: Any, status: int) -> tuple[None, int]:
            thread_state.hold()
            watch.called_back()
            if self._ending or watch.lost.is_set() or data is None:
                thread_state.let_go()
                return abort
            try:
                deliver(to_mono_int16(data, 2, channels), time.monotonic())
            except Exception as exc:  # never let an exception die inside PortAudio's thread
                log.exception("capture callback failed")
                watch.lost.set()
                failed(exc)
                thread_state.let_go()
                return abort
            return go_on

        try:
            with quiet_stderr():
                self._stream = PortAudio.get().open(
                    rate=self._rate,
                    channels=channels,
                    format=pyaudio.paInt16,
                    input=True,
                    input_device_index=None if self.device is None else self.device.index,
                    frames_per_buffer=self._chunk_samples,
                    stream_callback=callback,
                )
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"audio input {self.label!r} failed to open: {exc}") from None
        watch.start(self._stream)

    def stop(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        stream, self._stream = self._stream, None
        if stream is not None:
            _end_stream(stream, self._end_next_callback)

    def _end_next_callback(self) -> None:
        self._ending = True


class SoundCardSink:
    """A speaker on a sound card (an AudioSink).

    A small jitter buffer: a new stretch of agent audio starts playing once ``jitter_ms`` of it
    is queued (or it has waited that long), so network jitter becomes a short delay instead of
    crackles; when the queue runs dry the callback plays silence. ``flush`` empties the queue and,
    if the card may still hold sound, aborts the stream (which drops what PortAudio and the card
    hold: ALSA's snd_pcm_drop) and starts it again, on a worker thread."""

    def __init__(
        self,
        spec: str,
        period_ms: int = PERIOD_MS,
        jitter_ms: int = 60,
        max_backlog_s: float = DEFAULT_MAX_BACKLOG_S,
    ) -> None:
        self.spec = spec
        self.device = find_device(spec, "output")
        self.period_ms = period_ms
        self.jitter_ms = jitter_ms
        self._rate = 0
        self._channels = 1
        self._stream: Any = None
        self._lock = threading.Lock()
        self._queue = SampleQueue(max_backlog_s)
        self._waiting_since: float | None = None  # queued audio not yet playing, since when
        self._playing = False
        self._on_drained: Callable[[], None] = lambda: None
        self.output_level = 0.0
        self.playback_log: PlaybackLog | None = None
        self.failure: Exception | None = None
        self.on_failure: Failed | None = None
        """Called (on PortAudio's or the watchdog's thread) when the speaker fails."""
        self._watch: StallWatch | None = None
        self._open_lock = threading.Lock()
        self._silent_block = b""
        self._latency_s = 0.0
        self._sounded_at = float("-inf")  # when the last audible block was handed to PortAudio
        self._dropping = False  # a stream restart is under way (at most one)
        self._abort_next = False
        self._complete_next = False
        self._quiet_callbacks = 0  # callbacks in a row with nothing to play
        self._rested = False  # the stream ended itself to rest; the next write starts it
        self._waking = False  # a worker is starting it again
        self._loop: Any = None
        self._thread_state = CallbackThreadState()

    @property
    def label(self) -> str:
        return "default" if self.device is None else self.device.name

    @property
    def sample_rate(self) -> int:
        return self._rate

    @property
    def buffered_samples(self) -> int:
        return len(self._queue)

    @property
    def refused_samples(self) -> int:
        return self._queue.refused_samples

    @property
    def output_latency_s(self) -> float:
        return self._latency_s if self._stream is not None else 0.0

    async def start(self, preferred_rate: int, on_drained: Callable[[], None]) -> int:
        import asyncio

        loop = self._loop = asyncio.get_running_loop()

        def drained() -> None:
            loop.call_soon_threadsafe(on_drained)

        self._on_drained = drained
        if self._stream is None:
            await loop.run_in_executor(None, self._open, preferred_rate)
        with self._lock:
            self._queue.set_rates(preferred_rate, self._rate)
        return preferred_rate

    def _open(self, preferred_rate: int) -> None:
        # open and close exclude each other: a stop that comes while the speaker is being
        # opened (on a worker thread) waits for it, then closes what it opened
        with self._open_lock:
            if self._stream is None:
                self._open_locked(preferred_rate)

    def _open_locked(self, preferred_rate: int) -> None:
        pyaudio = load_pyaudio()
        self._rate, self._channels = choose_format(self.device, "output", preferred_rate)
        frames = self._rate * self.period_ms // 1000
        self.failure = None
        self._rested = False
        self._quiet_callbacks = 0
        try:
            with quiet_stderr():
                self._stream = PortAudio.get().open(
                    rate=self._rate,
                    channels=self._channels,
                    format=pyaudio.paInt16,
                    output=True,
                    output_device_index=None if self.device is None else self.device.index,
                    frames_per_buffer=frames,
                    stream_callback=self._callback,
                )
        except (OSError, ValueError) as exc:
            raise AudioDeviceError(f"audio output {self.label!r} failed to open: {exc}") from None
        self._latency_s = float(self._stream.get_output_latency())
        self._watch = StallWatch(f"audio output {self.label!r}", self._failed)
        self._watch.start(self._stream)

    def _failed(self, exc: Exception) -> None:
        self.failure = exc
        if self.on_failure is not None:
            self.on_failure(exc)

    def _callback(self, _data: Any, frames: int, _timing: Any, _status: int) -> tuple[bytes, int]:
        self._thread_state.hold()
        pyaudio = load_pyaudio()
        if self._watch is not None:
            self._watch.called_back()
        if self._abort_next or self._complete_next:
            # the stream's last callback: a flush drops what the card holds, a close plays it out
            end = pyaudio.paAbort if self._abort_next else pyaudio.paComplete
            self._abort_next = self._complete_next = False
            self._thread_state.let_go()
            return self._silence(frames), end
        if not self._playing and not self._queue and not self.output_level:
            # nothing to play: no lock, no arrays, no log entry (the log reads a gap as silence)
            # until it is time to rest
            self._quiet_callbacks += 1
            if self._quiet_callbacks * frames >= REST_AFTER_S * self._rate and self._rest():
                return self._silence(frames), pyaudio.paComplete
            return self._silence(frames), pyaudio.paContinue
        self._quiet_callbacks = 0
        now = time.monotonic()
        out = np.zeros(frames, dtype=np.int16)
        drained = False
        try:
            with self._lock:
                if not self._playing and self._queue:
                    jitter = self.jitter_ms / 1000
                    waited = now - (self._waiting_since or now)
                    self._playing = len(self._queue) >= jitter * self._rate or waited >= jitter
                if self._playing:
                    self._queue.take_into(out)
                    if not self._queue:
                        self._playing = False
                        self._waiting_since = None
                        drained = True
            if self.playback_log is not None:
                self.playback_log.played(out, self._rate, now + self._latency_s)
            self.output_level = loudness(out)
            if self.output_level:
                self._sounded_at = now
            if drained:
                self._on_drained()
        except Exception as exc:  # never let an exception die inside PortAudio's thread
            log.exception("playback callback failed")
            if self._watch is not None:
                self._watch.lost.set()
            self._failed(exc)
            self._thread_state.let_go()
            return self._silence(frames), pyaudio.paAbort
        if self._channels > 1:
            out = np.repeat(out, self._channels)
        return out.tobytes(), pyaudio.paContinue

    def _rest(self) -> bool:
        """In the callback: end the stream unless audio came meanwhile."""
        with self._lock:
            if self._queue or self._dropping or self._watch is None:
                return False
            self._rested = True
            self._watch.stream_rests = True
        self._quiet_callbacks = 0
        self._thread_state.let_go()
        return True

    @property
    def resting(self) -> bool:
        """The stream ended itself for lack of anything to play (the next write starts it)."""
        return self._rested

    def _silence(self, frames: int) -> bytes:
        size = frames * 2 * self._channels
        if len(self._silent_block) != size:
            self._silent_block = bytes(size)
        return self._silent_block

    def write(self, samples: Int16Array) -> None:
        if not len(samples):
            return
        with self._lock:
            self._queue.put(samples)
            if self._waiting_since is None and not self._playing:
                self._waiting_since = time.monotonic()
            wake = self._rested and not self._waking and self._loop is not None
            self._waking = self._waking or wake
        if wake:
            try:
                self._loop.run_in_executor(None, self._wake_stream)
            except RuntimeError:  # the loop is closing: the stream is about to close too
                self._waking = False

    def _wake_stream(self) -> None:
        """On a worker thread: start the rested stream again (once its last callback's buffer
        has played, PortAudio calls it inactive)."""
        try:
            with self._open_lock:
                stream, watch = self._stream, self._watch
                if stream is None or watch is None:
                    return
                _wait_until_inactive(stream)
                stream.stop_stream()
                stream.start_stream()
                watch.called_back()
                watch.stream_rests = False
        except OSError as exc:
            self._failed(AudioDeviceError(f"audio output {self.label!r} failed to restart: {exc}"))
        finally:
            self._rested = self._waking = False

    def flush(self) -> int:
        dropped = self._clear()
        if time.monotonic() - self._sounded_at < CARD_HOLDS_S:
            self._drop_card_buffer()
        return dropped

    def _clear(self) -> int:
        with self._lock:
            dropped = self._queue.clear()
            self._playing = False
            self._waiting_since = None
        return dropped

    def _drop_card_buffer(self) -> None:
        """The next callback aborts the stream (ALSA drops what the card holds) and a worker
        thread starts it again: a stream a callback ended must be stopped before it restarts."""
        if self._dropping or self._stream is None or self._loop is None:
            return
        self._dropping = True
        self._abort_next = True
        try:
            self._loop.run_in_executor(None, self._restart_stream)
        except RuntimeError:  # the loop is closing: the stream is about to close too
            self._abort_next = self._dropping = False

    def _restart_stream(self) -> None:
        try:
            with self._open_lock:
                stream, watch = self._stream, self._watch
                if stream is None or watch is None:
                    return
                with watch.resting():
                    self._sounded_at = float("-inf")
                    if not _wait_until_inactive(stream):
                        return  # no callback came: the stall watch has this device now
                    stream.stop_stream()
                    stream.start_stream()
        except OSError as exc:
            self._failed(AudioDeviceError(f"audio output {self.label!r} failed to restart: {exc}"))
        finally:
            self._abort_next = False
            self._dropping = False

    async def stop(self) -> None:
        import asyncio

        self._clear()
        self.output_level = 0.0
        await asyncio.get_running_loop().run_in_executor(None, self._close)

    def _close(self) -> None:
        with self._open_lock:
            watch, self._watch = self._watch, None
            stream, self._stream = self._stream, None
        if watch is not None:
            watch.stop()
        if stream is not None:
            _end_stream(stream, self._complete_next_callback)

    def _complete_next_callback(self) -> None:
        self._complete_next = True

    async def close(self) -> None:
        await self.stop()


def _end_stream(stream: Any, end_next_callback: Callable[[], None]) -> None:
    """Have the stream's next callback end it, so that its thread lets go of its Python thread
    state (``audio.callback_thread``); wait for that (one period), then stop and close it."""
    end_next_callback()
    with contextlib.suppress(OSError):
        _wait_until_inactive(stream)
    _close_stream(stream)


def _wait_until_inactive(stream: Any) -> bool:
    """Wait (at most ``RESTART_WAIT_S``) for the callback that ends ``stream``; whether it
    came."""
    deadline = time.monotonic() + RESTART_WAIT_S
    while stream.is_active():
        if time.monotonic() >= deadline:
            return False
        time.sleep(RESTART_POLL_S)
    return True


def _close_stream(stream: Any) -> None:
    with contextlib.suppress(OSError):
        stream.stop_stream()
    with contextlib.suppress(OSError):
        stream.close()
