"""The official ``elevenlabs`` SDK in the SDK comparison: its ``Conversation`` with its own
``DefaultAudioInterface`` (its queue, output thread and interruption handling, unchanged), whose
PyAudio is swapped for the rig's file-backed devices, the same ones agentpi runs on:

- input: a ``RoomMicrophone`` opened when the interface opens its stream, with the interface's
  own buffer (4000 frames, 250 ms), calling the stream callback from its thread as PortAudio does;
- output: ``write`` queues into the ``FileSink`` and returns once the device holds no more than
  one buffer (the interface's 1000 frames) beyond what it is playing, as a blocking PortAudio
  write into a two-period ring does.

The SDK has no rule for ending a conversation (and ignores agent_response_complete); this user
hangs up as agentpi is configured to in the comparison: once the answer has played and the
speaker has been quiet for a second.

    python -m benchmarks.sdk_client HTTP_URL ROOM QUESTION OUTPUT RECORD
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from elevenlabs.client import ElevenLabs
from elevenlabs.conversational_ai.conversation import Conversation
from elevenlabs.conversational_ai.default_audio_interface import DefaultAudioInterface

from agentpi.audio.file import FileSink
from benchmarks.child import Commands, tell, write_record
from benchmarks.rig import RATE, RoomMicrophone, SpeakerLog

QUIET_BEFORE_HANGING_UP_S = 1.0
ANSWERS = 2  # the greeting, then the answer to the question


@dataclass
class Devices:
    loop: asyncio.AbstractEventLoop
    room: Path
    question: Path
    origin: float
    sink: FileSink
    speaker: SpeakerLog
    mic: RoomMicrophone | None = None


class InputStream:
    def __init__(self, devices: Devices, frames: int, callback: Callable[..., Any]) -> None:
        self.callback = callback
        mic = RoomMicrophone(devices.room, devices.question, frames * 1000 // RATE, devices.origin)
        devices.mic = self.mic = mic
        mic.start(self._deliver, lambda exc: None)

    def _deliver(self, chunk: Any, captured_until: float) -> None:
        self.callback(chunk.astype("<i2").tobytes(), len(chunk), {}, 0)

    def stop_stream(self) -> None:
        self.mic.stop()

    def close(self) -> None:
        self.mic.stop()


class OutputStream:
    def __init__(self, devices: Devices, frames: int) -> None:
        self.devices = devices
        self.frames = frames

    def write(self, data: bytes) -> None:
        samples = np.frombuffer(data, dtype="<i2").astype(np.int16)
        sink, queued = self.devices.sink, threading.Event()

        def put() -> None:
            sink.write(samples)
            queued.set()

        self.devices.loop.call_soon_threadsafe(put)
        queued.wait()
        timeout = len(samples) / RATE + 5.0
        self.devices.speaker.wait_until(lambda: sink.buffered_samples <= self.frames, timeout)

    def close(self) -> None:
        pass


class FileBackedPyAudio:
    """The part of the ``pyaudio`` module that ``DefaultAudioInterface`` uses."""

    paInt16 = 8
    paContinue = 0

    def __init__(self, devices: Devices) -> None:
        self.devices = devices

    def PyAudio(self) -> FileBackedPyAudio:
        return self

    def open(
        self,
        *,
        frames_per_buffer: int,
        input: bool = False,
        output: bool = False,
        stream_callback: Callable[..., Any] | None = None,
        **format_: Any,
    ) -> InputStream | OutputStream:
        assert format_["rate"] == RATE and format_["channels"] == 1
        if input:
            assert stream_callback is not None
            return InputStream(self.devices, frames_per_buffer, stream_callback)
        assert output
        return OutputStream(self.devices, frames_per_buffer)

    def terminate(self) -> None:
        pass


class FileBackedAudioInterface(DefaultAudioInterface):
    def __init__(self, devices: Devices) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.pyaudio = FileBackedPyAudio(devices)


async def main(http_url: str, room: Path, question: Path, output: Path, record: Path) -> int:
    loop = asyncio.get_running_loop()
    commands = Commands(loop)
    sink = FileSink(output)
    speaker = SpeakerLog(sink)
    await sink.start(RATE, lambda: None)
    devices = Devices(loop, room, question, time.monotonic(), sink, speaker)
    interface = FileBackedAudioInterface(devices)
    answers = 0

    def hang_up(answer_at: float) -> None:
        def answered_then_quiet() -> bool:
            until = speaker.agent_audio_until
            return (
                until > answer_at
                and time.monotonic() - until >= QUIET_BEFORE_HANGING_UP_S
                and interface.output_queue.empty()
                and sink.buffered_samples == 0
            )

        speaker.wait_until(answered_then_quiet, 60.0)
        conversation.end_session()  # type: ignore[no-untyped-call]
        conversation.wait_for_session_end()
        tell("ended")

    def on_answer(text: str) -> None:
        nonlocal answers
        answers += 1
        if answers == ANSWERS:
            answer_at = time.monotonic()
            threading.Thread(target=hang_up, args=(answer_at,), daemon=True).start()

    client = ElevenLabs(base_url=http_url, api_key="unused")
    conversation = Conversation(
        client,
        "bench",
        requires_auth=False,
        audio_interface=interface,
        callback_agent_response=on_answer,
    )
    tell("ready")
    while (command := await commands.next()) != "exit":
        if command == "start":
            conversation.start_session()  # type: ignore[no-untyped-call]
        elif command == "speak":
            if devices.mic is None:
                tell("refused: the SDK has not opened the microphone")
            else:
                devices.mic.say()
    await sink.close()
    write_record(record, devices.mic, speaker)
    return 0


if __name__ == "__main__":
    url, *paths = sys.argv[1:6]
    sys.exit(asyncio.run(main(url, *(Path(path) for path in paths))))
