"""Who decides that the microphone is heard: the room, a held button, or the speaker's silence.

One strategy per conversation, chosen once, instead of branches in the send loop. Each takes a
captured chunk and the local VAD's verdict and returns what the agent gets: the chunk or silence,
and whether the user counts as speaking (which drives ``user_activity``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from agentpi.audio.backend import AudioSink
from agentpi.audio.capture import Microphone
from agentpi.audio.convert import Int16Array
from agentpi.audio.echo import EchoCanceller, HalfDuplexGate
from agentpi.audio.playback_log import PlaybackLog


class MicGate(Protocol):
    def gate(self, chunk: Int16Array, speaking: bool) -> tuple[Int16Array, bool]: ...


class OpenMic:
    """The room decides (echo, if any, is cancelled on the capture thread)."""

    def gate(self, chunk: Int16Array, speaking: bool) -> tuple[Int16Array, bool]:
        return chunk, speaking


class PushToTalk:
    """The button, not the room, says when the user is talking: silence while it is up."""

    def __init__(self, held: bool) -> None:
        self.held = held

    def gate(self, chunk: Int16Array, speaking: bool) -> tuple[Int16Array, bool]:
        if self.held:
            return chunk, True
        return np.zeros_like(chunk), False


class HalfDuplex:
    """Silence while the agent speaks (and a tail after it): the agent must not hear itself."""

    def __init__(self, gate: HalfDuplexGate, queued_samples: Callable[[], int]) -> None:
        self._gate = gate
        self._queued_samples = queued_samples

    def gate(self, chunk: Int16Array, speaking: bool) -> tuple[Int16Array, bool]:
        if self._gate.muted(self._queued_samples()):
            return np.zeros_like(chunk), False
        return chunk, speaking


def set_up_echo(echo: str, tail_ms: float, mic: Microphone, sink: AudioSink) -> HalfDuplex | None:
    """Give the microphone its echo canceller (``aec``), or return the half-duplex gate that
    conversations use; the speaker reports what it plays to the same log either way."""
    log = sink.playback_log
    if log is None:
        log = PlaybackLog(mic.sample_rate)
        sink.playback_log = log
    if echo == "aec":
        mic.processor = EchoCanceller(log)
    elif echo == "half_duplex":
        return HalfDuplex(HalfDuplexGate(log, tail_ms / 1000), lambda: sink.buffered_samples)
    return None
