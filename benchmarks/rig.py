"""The file-backed audio both clients of the SDK comparison run on, and what it records.

The microphone is agentpi's own ``FileSource`` over a room: a long WAV of quiet noise (a real
microphone's noise floor, about -75 dBFS, which also makes every stretch of samples unique, so a
chunk the agent received can be found in the room exactly) that runs on the clock from the
moment the client process starts, whether or not its microphone is open. ``say`` speaks the
bundled question into the room from the next sample on. Sample ``i`` of the room is captured at
``origin + (i + 1) / RATE``; that is the capture time the mic-to-wire latency starts from.

The speaker is agentpi's own ``FileSink``; ``SpeakerLog`` notes, for every block it plays, when
the block began and how many of the agent's samples the speaker had played by its end (a block
plays the queued samples first, then silence), so the moment any of the agent's samples came out
of the speaker is known exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from agentpi.audio.convert import Int16Array, read_wav, write_wav
from agentpi.audio.file import FileSink, FileSource
from agentpi.audio.playback_log import PlaybackLog

RATE = 16000
ROOM_S = 180.0
NOISE_LSB = 4.0  # standard deviation: about -78 dBFS, under every VAD threshold in play
LEAD_IN_S = 0.2  # the question starts this long after `say`, as a person draws breath


def write_room(folder: Path, spoken: Int16Array) -> tuple[Path, Path]:
    """The room's noise, and the ``spoken`` question with noise under it, as WAVs."""
    rng = np.random.default_rng(20261125)

    def noise(samples: int) -> Int16Array:
        return np.round(rng.normal(0.0, NOISE_LSB, samples)).astype(np.int16)

    lead = np.zeros(int(LEAD_IN_S * RATE), dtype=np.int16)
    question = np.concatenate([lead, spoken])
    speech = np.clip(question.astype(np.int32) + noise(len(question)), -32768, 32767)
    room, said = folder / "room.wav", folder / "question.wav"
    write_wav(room, noise(int(ROOM_S * RATE)), RATE)
    write_wav(said, speech.astype(np.int16), RATE)
    return room, said


def room_with_question(room: Int16Array, question: Int16Array, at: int) -> Int16Array:
    """The room's samples with the question spoken from sample ``at`` on."""
    out = room.copy()
    out[at : at + len(question)] = question[: max(0, len(room) - at)]
    return out


class RoomMicrophone(FileSource):
    """A microphone in the room: it hears the room from when it is opened."""

    def __init__(self, room: Path, question: Path, chunk_ms: int, origin: float) -> None:
        super().__init__(room, chunk_ms=chunk_ms, origin=origin)
        self.question, _ = read_wav(question)
        self.question_at: int | None = None

    def say(self) -> int:
        """Speak the question into the room from the chunk after the next one (the capture thread
        may be slicing the next one right now); where in the room it starts."""
        at = self.position_samples + self.chunk_samples
        # the capture thread slices self.samples: a whole new array, swapped in one step
        self.samples = room_with_question(self.samples, self.question, at)
        self.question_at = at
        return at


class SpeakerLog(PlaybackLog):
    """Every block ``sink`` plays (it becomes the sink's playback log): (start time, samples,
    agent samples played by its end)."""

    def __init__(self, sink: FileSink) -> None:
        super().__init__(RATE)
        self.sink = sink
        sink.playback_log = self
        self.blocks: list[tuple[float, int, int]] = []
        self.agent_audio_until = float("-inf")
        """When the last of the agent's samples the speaker played finished playing."""
        self._changed = threading.Condition()

    def played(self, block: Int16Array, rate: int, started_at: float) -> None:
        super().played(block, rate, started_at)
        with self._changed:
            before = self.blocks[-1][2] if self.blocks else 0
            played = self.sink.played_samples
            if played > before:
                self.agent_audio_until = started_at + (played - before) / rate
            self.blocks.append((started_at, len(block), played))
            self._changed.notify_all()

    def wait_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Block (another thread than the speaker's) until ``condition`` holds after a block."""
        with self._changed:
            return self._changed.wait_for(condition, timeout)
