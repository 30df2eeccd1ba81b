"""The peer for the sound-card benchmark: the least code that holds a conversation.

PyAudio callbacks on both devices, 40 ms microphone chunks sent the moment they arrive, agent
audio appended to a byte buffer the speaker callback drains, pongs, and a cleared buffer on
interruption. No VAD, no states, no resampling, no recovery: what agentpi adds on top of this is
what the benchmark's ratios show.

With ``--aec`` it runs WebRTC's echo canceller (pywebrtc-audio, as agentpi does) on every
microphone chunk, against the newest speaker audio of the same length: what a user who wants
echo cancellation would write.

    python -m benchmarks.bare_client [--aec] ws://127.0.0.1:PORT/v1/convai/conversation?agent_id=a
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
from typing import Any

import numpy as np
import pyaudio
from websockets.asyncio.client import connect

RATE = 16000
CHUNK = RATE * 40 // 1000
PERIOD = RATE * 20 // 1000


def device_index(pa: Any, name: str) -> int:
    for index in range(pa.get_device_count()):
        if pa.get_device_info_by_index(index)["name"] == name:
            return index
    raise SystemExit(f"no device {name}")


async def main(url: str, aec: bool) -> None:
    pa = pyaudio.PyAudio()
    loop = asyncio.get_running_loop()
    mic: asyncio.Queue[bytes] = asyncio.Queue()
    speaker = bytearray()
    played = bytearray(CHUNK * 2)  # the speaker's newest output, the canceller's reference
    lock = threading.Lock()
    canceller = None
    if aec:
        from pywebrtc_audio import AudioProcessor

        canceller = AudioProcessor(sample_rate=RATE, num_channels=1, echo_cancellation=True)

    def captured(data: bytes | None, *_: Any) -> tuple[None, int]:
        if canceller is not None and data:
            near = np.frombuffer(data, dtype=np.int16)
            with lock:
                far = np.frombuffer(bytes(played), dtype=np.int16)
            data = np.asarray(canceller.process(near, far), dtype=np.int16).tobytes()
        loop.call_soon_threadsafe(mic.put_nowait, data or b"")
        return None, pyaudio.paContinue

    def play(_: Any, frames: int, *__: Any) -> tuple[bytes, int]:
        with lock:
            out = bytes(speaker[: frames * 2]).ljust(frames * 2, b"\0")
            del speaker[: frames * 2]
            played[:] = (played + out)[-CHUNK * 2 :]
        return out, pyaudio.paContinue

    async with connect(url) as ws:
        await ws.send(json.dumps({"type": "conversation_initiation_client_data"}))
        pa.open(
            rate=RATE,
            channels=1,
            format=pyaudio.paInt16,
            input=True,
            input_device_index=device_index(pa, "agentpi_in"),
            frames_per_buffer=CHUNK,
            stream_callback=captured,
        )
        pa.open(
            rate=RATE,
            channels=1,
            format=pyaudio.paInt16,
            output=True,
            output_device_index=device_index(pa, "agentpi_out"),
            frames_per_buffer=PERIOD,
            stream_callback=play,
        )

        async def send() -> None:
            while True:
                chunk = await mic.get()
                message = {"user_audio_chunk": base64.b64encode(chunk).decode()}
                await ws.send(json.dumps(message))

        sender = asyncio.create_task(send())
        async for raw in ws:
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ping":
                event_id = message["ping_event"]["event_id"]
                await ws.send(json.dumps({"type": "pong", "event_id": event_id}))
            elif kind == "audio":
                audio = base64.b64decode(message["audio_event"]["audio_base_64"])
                with lock:
                    speaker.extend(audio)
            elif kind == "interruption":
                with lock:
                    speaker.clear()
        sender.cancel()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[-1], "--aec" in sys.argv[1:-1]))
