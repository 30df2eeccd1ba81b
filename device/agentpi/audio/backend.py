"""The two small interfaces every audio backend implements, and the factory that picks one.

A source is a microphone: it delivers fixed-size chunks of mono int16 PCM at its own rate, in
capture order, and keeps what was captured while nobody was reading (a sound card's buffer).
A sink is a speaker: it takes PCM at the rate it chose, plays it at real-time pace, plays silence
when it runs dry, and can drop everything queued at once (``flush``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agentpi.audio.convert import Int16Array

DEFAULT_CHUNK_MS = 40


class AudioSource(Protocol):
    sample_rate: int
    chunk_samples: int

    @property
    def exhausted(self) -> bool:
        """True once a finite source (a file) has delivered its last real sample."""

    async def start(self) -> None: ...

    async def read(self) -> Int16Array:
        """The next chunk, waiting for it to be captured if need be."""

    def discard_buffered(self) -> int:
        """Drop audio captured but not yet read (before a trigger); returns samples dropped."""

    async def close(self) -> None: ...


class AudioSink(Protocol):
    @property
    def sample_rate(self) -> int: ...

    @property
    def buffered_samples(self) -> int: ...

    @property
    def output_level(self) -> float:
        """Loudness (0..1) of what is coming out of the speaker right now."""

    async def start(self, preferred_rate: int, on_drained: Callable[[], None]) -> int:
        """Begin playing (silence until written to); returns the rate actually used.
        ``on_drained`` is called on the event loop each time queued audio has all been played."""

    def write(self, samples: Int16Array) -> None:
        """Queue audio; never blocks."""

    def flush(self) -> int:
        """Stop sound now and drop everything queued; returns samples dropped."""

    async def stop(self) -> None:
        """Stop playing (what is still queued is dropped)."""

    async def close(self) -> None: ...


class AudioDeviceError(RuntimeError):
    """An audio device could not be opened or went away."""


def open_source(spec: str, chunk_ms: int = DEFAULT_CHUNK_MS) -> AudioSource:
    """``file:PATH`` (a WAV) or a sound-card device name."""
    from agentpi.audio.file import FileSource

    if spec.startswith("file:"):
        return FileSource(spec.removeprefix("file:"), chunk_ms=chunk_ms)
    raise AudioDeviceError(
        f"audio input {spec!r}: only file:PATH inputs are available in this version "
        "(sound-card capture comes with the PyAudio backend)"
    )


def open_sink(spec: str) -> AudioSink:
    from agentpi.audio.file import FileSink

    if spec.startswith("file:"):
        return FileSink(spec.removeprefix("file:"))
    raise AudioDeviceError(
        f"audio output {spec!r}: only file:PATH outputs are available in this version "
        "(sound-card playback comes with the PyAudio backend)"
    )
