"""The idle listener against openWakeWord's own bare ``Model.predict`` loop, same audio, same run.

Ours is the device's real idle path (``Device.run`` waiting for the wake word: a capture thread
fills the microphone ring, the wake thread reads 80 ms frames from it and runs inference) fed by
a stream that runs faster than real time, so the CPU it burns per second of audio can be measured
quickly. The peer is the least any openWakeWord user writes: ``Model.predict`` on every
1280-sample frame. Rounds alternate. Peak RSS compares an idle ``agentpi run`` process with a
process running the bare loop. ``make bench`` shows the medians in its table.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tests.speech import NEGATIVES, RATE, SPEEDS, VOICES, join, save, silence, speak

from agentpi.app import Device
from agentpi.audio.backend import Deliver, Failed
from agentpi.audio.capture import Microphone
from agentpi.audio.convert import Int16Array
from agentpi.audio.file import FileSink
from agentpi.config import AgentConfig, AudioConfig, Config, TriggerConfig, WakeConfig
from agentpi.events import TriggerFired
from agentpi.wake.framer import FRAME_SAMPLES
from agentpi.wake.listener import open_listener
from agentpi.wake.models import resolve
from benchmarks import proc

ROUNDS = 3
# Paced like a microphone, faster than real time so a round takes seconds, not minutes: both sides
# wait for each frame, as a device does. (Not flat out: a sound card never runs ahead of the clock,
# and the capture thread would only spin.)
SPEEDUPS = (8.0, 16.0)
CHUNK = RATE * 40 // 1000


class MemoryStream:
    """A microphone running ``speed`` times faster than real time, on its own thread like a
    sound card's callback."""

    sample_rate = RATE
    chunk_samples = CHUNK

    def __init__(self, audio: Int16Array, speed: float = 0.0) -> None:
        self.audio = audio
        self.position = 0
        self.speed = speed
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def exhausted(self) -> bool:
        return self.position >= len(self.audio)

    def start(self, deliver: Deliver, failed: Failed) -> None:
        self._thread = threading.Thread(target=self._run, args=(deliver,), daemon=True)
        self._thread.start()

    def _run(self, deliver: Deliver) -> None:
        started = time.monotonic()
        silence = np.zeros(CHUNK, dtype=np.int16)
        while not self._stop.is_set():
            due = started + (self.position + CHUNK) / RATE / self.speed
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            chunk = self.audio[self.position : self.position + CHUNK]
            self.position += CHUNK
            deliver(chunk if len(chunk) == CHUNK else silence, time.monotonic())

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def negative_audio() -> Int16Array:
    parts = []
    for voice in VOICES:
        for speed in SPEEDS:
            for sentence in NEGATIVES:
                parts += [speak(sentence, voice, speed), silence(0.5)]
    return join(*parts)


def ours(audio: Int16Array, folder: Path, speed: float) -> tuple[float, int]:
    """CPU seconds for the device's idle path over ``audio``, and the triggers it fired."""
    stream = MemoryStream(audio, speed)
    mic = Microphone(lambda: stream)
    mic.prepare(stream)
    config = Config(
        agent=AgentConfig(agent_id="bench", url="ws://127.0.0.1:9", connect_timeout_s=0.5),
        trigger=TriggerConfig(mode="wake"),
        audio=AudioConfig(echo="off", cues=False),
    )
    device = Device(
        config, mic, FileSink(folder / "out.wav"), wake=open_listener(WakeConfig(), RATE)
    )
    fired = []
    device.events.subscribe(
        lambda event: fired.append(event) if isinstance(event, TriggerFired) else None
    )
    start = time.process_time()
    asyncio.run(device.run())
    return time.process_time() - start, len(fired)


def peer(audio: Int16Array, speed: float) -> tuple[float, int]:
    from openwakeword.model import Model

    files = resolve(("hey_jarvis",))
    model = Model(
        wakeword_models=[str(files.wake["hey_jarvis"])],
        melspec_model_path=str(files.melspectrogram),
        embedding_model_path=str(files.embedding),
        inference_framework="tflite",
    )
    fired = 0
    start, started = time.process_time(), time.monotonic()
    for offset in range(0, len(audio) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        # the frame is there once it has been "captured"
        due = started + (offset + FRAME_SAMPLES) / RATE / speed
        time.sleep(max(0.0, due - time.monotonic()))
        fired += model.predict(audio[offset : offset + FRAME_SAMPLES])["hey_jarvis"] >= 0.5
    return time.process_time() - start, int(fired)


PEER_PROCESS = """
import sys, time, wave, numpy as np
from openwakeword.model import Model
from agentpi.wake.models import resolve
files = resolve(("hey_jarvis",))
model = Model(wakeword_models=[str(files.wake["hey_jarvis"])],
              melspec_model_path=str(files.melspectrogram),
              embedding_model_path=str(files.embedding), inference_framework="tflite")
with wave.open(sys.argv[1]) as w:
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
for i in range(0, len(audio) - 1279, 1280):
    model.predict(audio[i:i + 1280])
time.sleep(0.5)  # time for the parent to read the final VmHWM
"""


def peak_rss_mb(command: list[str]) -> float:
    """Peak RSS of a child process: its VmHWM, read while it runs."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, proc.peak_rss_mb(process.pid) or 0.0)
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{command[:3]} exited with {process.returncode}")
    return peak


@dataclass
class WakeFigures:
    audio_s: float
    clips: int
    cpu_ms_per_s: dict[float, tuple[list[float], list[float]]]
    """Per speed-up: (agentpi's idle path, the bare predict loop), one value per round."""
    rss_mb: tuple[float, float]
    false_triggers: tuple[int, int]


def measure() -> WakeFigures | None:
    """None where openwakeword does not install (Python 3.12 and later)."""
    if sys.version_info >= (3, 12):
        return None
    audio = negative_audio()
    seconds = len(audio) / RATE
    ours_fired = peer_fired = 0
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        cpu: dict[float, tuple[list[float], list[float]]] = {}
        for speed in SPEEDUPS:
            ours_cpu, peer_cpu = cpu.setdefault(speed, ([], []))
            for _ in range(ROUNDS):
                used, ours_fired = ours(audio, folder, speed)
                ours_cpu.append(used / seconds * 1e3)
                used, peer_fired = peer(audio, speed)
                peer_cpu.append(used / seconds * 1e3)
        idle = save(folder / "idle.wav", silence(20.0))
        config = folder / "idle.toml"
        config.write_text(
            f'[agent]\nagent_id = "bench"\n[trigger]\nmode = "wake"\n'
            f'[audio]\ninput = "file:{idle}"\noutput = "file:{folder / "o.wav"}"\n'
        )
        ours_rss = peak_rss_mb([sys.executable, "-m", "agentpi", "run", "--config", str(config)])
        peer_rss = peak_rss_mb([sys.executable, "-c", PEER_PROCESS, str(idle)])
    clips = len(VOICES) * len(SPEEDS) * len(NEGATIVES)
    return WakeFigures(seconds, clips, cpu, (ours_rss, peer_rss), (ours_fired, peer_fired))
