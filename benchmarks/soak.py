"""Soak: 200 conversations back to back in one device process, against the simulator in another.

The device runs in the kiosk loop (``immediate``) on a silent microphone; each conversation is a
short greeting and a hang-up after 0.3 s of silence. After a warm-up of 10 conversations the
process's open file descriptors, threads and RSS are taken, and again after the last: the goal is
no descriptor or thread left behind and RSS growth under 5 MB.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np
from tests.helpers import AGENTPI

from agentpi.app import Device
from agentpi.audio.backend import Deliver, Failed
from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSink
from agentpi.config import AgentConfig, AudioConfig, Config, ConversationConfig, TriggerConfig
from agentpi.events import EventBus, EventRecord, as_records

CONVERSATIONS = int(os.environ.get("SOAK_CONVERSATIONS", "200"))
WARM_UP = 10
SCRIPT = """
[simulator]
audio_pace = 0.0
ping_interval_s = 0.2
[first_turn]
response = "Hi."
delay_s = 0.0
"""


class QuietRoom:
    """A microphone in a silent room, for as long as it is left on (a CaptureStream)."""

    sample_rate = 16000
    chunk_samples = 640
    exhausted = False

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, deliver: Deliver, failed: Failed) -> None:
        self._stop.clear()

        def run() -> None:
            import time

            silence = np.zeros(self.chunk_samples, dtype=np.int16)
            while not self._stop.wait(0.04):
                deliver(silence, time.monotonic())

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def footprint() -> tuple[int, int, float]:
    """Open descriptors, threads, RSS in MB of this process."""
    status = Path("/proc/self/status").read_text()
    values = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss_mb = int(values["VmRSS"].split()[0]) / 1024
    return len(os.listdir("/proc/self/fd")), int(values["Threads"]), rss_mb


async def soak(url: str, folder: Path) -> tuple[tuple[int, int, float], tuple[int, int, float]]:
    config = Config(
        agent=AgentConfig(agent_id="soak", url=url),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.05),
        audio=AudioConfig(echo="aec", cues=False),
        conversation=ConversationConfig(silence_close_s=0.3),
    )
    bus = EventBus()
    ended = 0
    marks: list[tuple[int, int, float]] = []
    done = asyncio.Event()

    def count(event: EventRecord) -> None:
        nonlocal ended
        if event["event"] == "conversation_ended":
            ended += 1
            if ended in (WARM_UP, CONVERSATIONS):
                marks.append(footprint())
            if ended == CONVERSATIONS:
                done.set()

    bus.subscribe(as_records(count))
    room = QuietRoom()
    mic = Microphone(lambda: room)
    mic.prepare(room)
    device = Device(config, mic, FileSink(folder / "speaker.wav"), events=bus)
    task = asyncio.create_task(device.run())
    await done.wait()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return marks[0], marks[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        script = folder / "script.toml"
        script.write_text(SCRIPT)
        simulator = subprocess.Popen(
            [*AGENTPI, "simulate", "--port", "0", "--script", str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert simulator.stdout is not None
            url = simulator.stdout.readline().split()[-1]
            before, after = asyncio.run(soak(url, folder))
        finally:
            simulator.terminate()
            simulator.wait(10)
    print(f"{CONVERSATIONS} conversations, one process; after {WARM_UP} -> after {CONVERSATIONS}:")
    print(f"{'figure':28} {'after warm-up':>14} {'at the end':>12} {'growth':>8}")
    for label, a, b in zip(
        ("open file descriptors", "threads", "RSS MB"), before, after, strict=True
    ):
        print(f"{label:28} {a:14.1f} {b:12.1f} {b - a:+8.1f}")
    print(f"{'RSS ratio end / warm-up':28} {after[2] / before[2]:35.3f}  (goal: growth < 5 MB)")


if __name__ == "__main__":
    main()
