"""A sound card for machines that have none: ALSA's ``file`` plugin over named pipes.

PortAudio sees two real ALSA devices, ``agentpi_in`` and ``agentpi_out`` (see
../shared/testing.md). Their files are FIFOs: a thread here writes the microphone's audio into
one at real-time pace (silence when nothing is queued), and another drains the speaker's at
real-time pace, so the whole PyAudio path runs on a clock as it would on a Pi. A process that
uses them needs ``env`` (ALSA reads its config once, when PortAudio starts).

Capture buffers must divide the 40 ms the feeder writes at a time (10, 20 or 40 ms): the
``file`` plugin does not retry a short read of its FIFO, and a 30 ms buffer comes back as wrong
audio (measured: SNR -0.6 dB against what was fed, more samples than real time gives).
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import termios
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np

from agentpi.audio.convert import Int16Array

F_SETPIPE_SZ = 1031
PERIOD_S = 0.04
SPEAKER_STEP_S = 0.005
"""The speaker is drained in 5 ms steps: the pipe then holds little more than the client's last
write, and when a sound stopped is known to 5 ms (a 40 ms step hid up to 80 ms in the pipe)."""


class VirtualSoundCard:
    def __init__(self, folder: Path, rate: int = 16000) -> None:
        self.folder = folder
        self.rate = rate
        self.mic_fifo = folder / "mic.fifo"
        self.speaker_fifo = folder / "speaker.fifo"
        for fifo in (self.mic_fifo, self.speaker_fifo):
            os.mkfifo(fifo)
        self.asoundrc = folder / "asoundrc"
        self.asoundrc.write_text(
            f'pcm.agentpi_in {{ type file slave.pcm null file "/dev/null" '
            f'infile "{self.mic_fifo}" format "raw" }}\n'
            f'pcm.agentpi_out {{ type file slave.pcm null file "{self.speaker_fifo}" '
            f'format "raw" }}\n'
        )
        self._queue: deque[list[Any]] = deque()  # [samples, samples already taken]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.mic_paused = threading.Event()
        """Set: the microphone delivers nothing (reads block), as a device that went away."""
        self.speaker_paused = threading.Event()
        """Set: the speaker takes nothing (writes into it block), as a device that went away."""
        self.written: list[tuple[float, int]] = []
        """(time, samples written so far) after each microphone write."""
        self.fed_at: list[tuple[float, int]] = []
        """(time, sample number) where each fed clip began in the microphone's stream."""
        self.played: list[tuple[float, Int16Array]] = []
        """(time read, samples) for everything the speaker played."""
        self.pipe_held: list[tuple[float, int]] = []
        """(time, samples still in the speaker's pipe after a read): the card's own buffer."""
        self._threads = [
            threading.Thread(target=self._feed_mic, daemon=True),
            threading.Thread(target=self._drain_speaker, daemon=True),
        ]

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ALSA_CONFIG_PATH": f"/usr/share/alsa/alsa.conf:{self.asoundrc}",
            "PYTHONFAULTHANDLER": "1",  # a crash in the child leaves its stacks on stderr
        }

    def __enter__(self) -> VirtualSoundCard:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def say(self, samples: Int16Array) -> None:
        """Queue audio for the microphone (it follows whatever is queued already)."""
        with self._lock:
            self._queue.append([samples.astype(np.int16), 0])

    @property
    def speaker_audio(self) -> Int16Array:
        if not self.played:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([block for _, block in self.played])

    def _next_mic_block(self, size: int, first: int) -> Int16Array:
        """The next ``size`` samples for the microphone, whose first is stream sample ``first``."""
        out = np.zeros(size, dtype=np.int16)
        filled = 0
        with self._lock:
            while filled < size and self._queue:
                head = self._queue[0]
                samples, taken = head
                if taken == 0:
                    self.fed_at.append((time.monotonic(), first + filled))
                take = min(size - filled, len(samples) - taken)
                out[filled : filled + take] = samples[taken : taken + take]
                filled += take
                head[1] = taken + take
                if head[1] == len(samples):
                    self._queue.popleft()
        return out

    def _feed_mic(self) -> None:
        size = int(self.rate * PERIOD_S)
        total = 0
        while not self._stop.is_set():
            try:
                fd = os.open(self.mic_fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: nobody has it open for reading yet
                    raise
                time.sleep(0.005)
                continue
            os.set_blocking(fd, True)
            next_at = time.monotonic()
            try:
                while not self._stop.is_set():
                    next_at += PERIOD_S
                    time.sleep(max(0.0, next_at - time.monotonic()))
                    if self.mic_paused.is_set():
                        continue
                    block = self._next_mic_block(size, total)
                    os.write(fd, block.astype("<i2").tobytes())
                    total += size
                    self.written.append((time.monotonic(), total))
            except BrokenPipeError:
                pass  # the reader closed (a probe, or the stream stopped): wait for the next
            finally:
                os.close(fd)

    def _drain_speaker(self) -> None:
        fd = os.open(self.speaker_fifo, os.O_RDONLY | os.O_NONBLOCK)
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETPIPE_SZ, 4096)  # a small pipe: little audio hides in it
        size = int(self.rate * SPEAKER_STEP_S) * 2
        pending = b""
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                next_at += SPEAKER_STEP_S
                time.sleep(max(0.0, next_at - time.monotonic()))
                if self.speaker_paused.is_set():
                    continue
                try:
                    data = os.read(fd, size)
                except BlockingIOError:
                    data = b""
                data = pending + data
                whole = len(data) - len(data) % 2
                pending = data[whole:]
                now = time.monotonic()
                if whole:
                    block = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
                    self.played.append((now, block))
                held = array.array("i", [0])
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd, termios.FIONREAD, held)
                self.pipe_held.append((now, held[0] // 2))
        finally:
            os.close(fd)
