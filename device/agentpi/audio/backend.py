"""The two small interfaces every audio backend implements.

A capture stream is a microphone: from its own thread it delivers fixed-size chunks of mono int16
PCM at its own rate, in capture order (``Microphone`` keeps them for whoever reads).
A sink is a speaker: it takes PCM at the rate it chose, plays it at real-time pace, plays silence
when it runs dry, and can drop everything queued at once (``flush``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from agentpi.audio.convert import Int16Array
from agentpi.audio.playback_log import PlaybackLog
from agentpi.errors import AgentpiError

DEFAULT_CHUNK_MS = 40


Deliver = Callable[[Int16Array, float], None]
"""(chunk, the monotonic time its last sample was captured)"""
Failed = Callable[[Exception], None]


class CaptureStream(Protocol):
    """A microphone device: once started, calls ``deliver`` from its own thread with each chunk
    of mono int16 PCM at ``sample_rate``, in capture order, and ``failed`` if the device fails."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def chunk_samples(self) -> int: ...

    @property
    def exhausted(self) -> bool:
        """True once a finite input (a file) has delivered its last real sample."""

    def start(self, deliver: Deliver, failed: Failed) -> None: ...

    def stop(self) -> None:
        """Stop delivering (returns once no more ``deliver`` calls can come)."""


class AudioSink(Protocol):
    playback_log: PlaybackLog | None
    """Told every block as it plays (the echo canceller's reference)."""
    on_failure: Failed | None
    """Called (from any thread) when the speaker fails while playing."""

    @property
    def sample_rate(self) -> int: ...

    @property
    def buffered_samples(self) -> int: ...

    @property
    def refused_samples(self) -> int:
        """Samples dropped since the sink was made because its backlog was full."""

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


class AudioDeviceError(AgentpiError):
    """An audio device could not be opened or went away."""
