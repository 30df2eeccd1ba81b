"""Picking a backend from the config's spelling of a device: ``file:PATH`` or a sound card.

Above both backends (which import only ``backend.py``), so no module imports in a circle.
"""

from __future__ import annotations

from agentpi.audio.backend import DEFAULT_CHUNK_MS, AudioSink, CaptureStream
from agentpi.audio.sample_queue import DEFAULT_MAX_BACKLOG_S


def open_source(spec: str, chunk_ms: int = DEFAULT_CHUNK_MS) -> CaptureStream:
    """``file:PATH`` (a WAV) or a sound-card device: index, name, part of a name, "default"."""
    if spec.startswith("file:"):
        from agentpi.audio.file import FileSource

        return FileSource(spec.removeprefix("file:"), chunk_ms=chunk_ms)
    from agentpi.audio.soundcard import SoundCardSource

    return SoundCardSource(spec, chunk_ms=chunk_ms)


def open_sink(
    spec: str, jitter_ms: int = 60, max_backlog_s: float = DEFAULT_MAX_BACKLOG_S
) -> AudioSink:
    """``file:PATH`` (a WAV written as the speaker plays) or a sound-card device; the speaker
    holds at most ``max_backlog_s`` of unplayed audio."""
    if spec.startswith("file:"):
        from agentpi.audio.file import FileSink

        return FileSink(spec.removeprefix("file:"), max_backlog_s=max_backlog_s)
    from agentpi.audio.soundcard import SoundCardSink

    return SoundCardSink(spec, jitter_ms=jitter_ms, max_backlog_s=max_backlog_s)
