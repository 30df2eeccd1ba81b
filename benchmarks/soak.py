"""Soak: a year of a kiosk in minutes. 2,000 conversations back to back in one device process,
against the simulator in another, through a network that is cut every 150 conversations, with its
MQTT link to a real Mosquitto that is restarted every 100.

The device runs in the kiosk loop (``immediate``) on a silent microphone; each conversation is a
short greeting and a hang-up after 0.3 s of silence (time compressed: the simulator sends its audio
at once). After a warm-up of 10 conversations the process's open file descriptors, threads and RSS
are taken, and again after the last (with the MQTT link connected both times): the goal is no
descriptor or thread left behind, RSS growth under 5 MB, and every conversation ended with a
reason. ``SOAK_CONVERSATIONS`` sets the count.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import numpy as np
from tests.helpers import AGENTPI
from tests.mqtt_broker import PASSWORD, USER, Broker
from tests.netcut import FlakyNetwork

from agentpi.audio.backend import Deliver, Failed
from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSink
from agentpi.config.document import (
    AgentConfig,
    AudioConfig,
    Config,
    ConversationConfig,
    TriggerConfig,
)
from agentpi.device.app import Device
from agentpi.events import EventBus, EventRecord, as_records
from agentpi.mqtt.client import MqttLink, stopped
from agentpi.mqtt.settings import MqttConfig
from agentpi.settings.credentials import Secret
from agentpi.system.loop_errors import report_loop_errors_in_one_line

CONVERSATIONS = int(os.environ.get("SOAK_CONVERSATIONS", "2000"))
BROKER_RESTART_EVERY = int(os.environ.get("SOAK_BROKER_RESTART_EVERY", "100"))
STOP_S = 10.0
"""How long the device and its MQTT link may take to stop once the soak is over."""
NETWORK_CUT_EVERY = int(os.environ.get("SOAK_NETWORK_CUT_EVERY", "150"))
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


Mark = tuple[int, int, float]


async def soak(url: str, folder: Path, broker: Broker | None) -> Counter[str]:
    started = time.monotonic()
    report_loop_errors_in_one_line(asyncio.get_running_loop())  # as `agentpi run` does
    network = FlakyNetwork(url)
    config = Config(
        agent=AgentConfig(agent_id="soak", url=network.url),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.05),
        audio=AudioConfig(echo="aec", cues=False),
        conversation=ConversationConfig(silence_close_s=0.3),
    )
    bus = EventBus()
    ended = 0
    reasons: Counter[str] = Counter()
    marks: list[Mark] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    link: MqttLink | None = None
    chores: set[asyncio.Task[None]] = set()

    async def mark() -> None:
        if link is not None:
            try:
                await asyncio.wait_for(link.connected.wait(), 60)
            except TimeoutError:
                print("the MQTT link did not come back within 60 s", flush=True)
        marks.append(footprint())
        if len(marks) == 2:
            done.set()

    async def restart_broker() -> None:
        assert broker is not None
        broker.kill()
        await asyncio.to_thread(broker.start)

    def chore(coroutine: Coroutine[Any, Any, None]) -> None:
        task = loop.create_task(coroutine)
        chores.add(task)
        task.add_done_callback(finished)

    def finished(task: asyncio.Task[None]) -> None:
        chores.discard(task)
        if not task.cancelled() and task.exception() is not None:
            print(f"soak: {task.exception()!r}", flush=True)
            done.set()

    def count(event: EventRecord) -> None:
        nonlocal ended
        if os.environ.get("SOAK_TRACE"):
            print(event, flush=True)
        cut_now = ended % NETWORK_CUT_EVERY == NETWORK_CUT_EVERY // 2
        if event["event"] == "conversation_started" and cut_now:
            network.reset()  # mid-conversation, as a router reboot does it
        if event["event"] != "conversation_ended":
            return
        ended += 1
        reasons[event["reason"] or "(no reason)"] += 1
        if ended % 100 == 0:
            print(f"{ended} conversations; RSS {footprint()[2]:.1f} MB", flush=True)
        if broker is not None and ended % BROKER_RESTART_EVERY == BROKER_RESTART_EVERY // 2:
            chore(restart_broker())
        if ended in (WARM_UP, CONVERSATIONS):
            chore(mark())

    bus.subscribe(as_records(count))
    room = QuietRoom()
    mic = Microphone(lambda: room)
    mic.prepare(room)
    device = Device(config, mic, FileSink(folder / "speaker.wav"), events=bus)
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(device.run())]
    if broker is not None:
        mqtt = MqttConfig(
            enabled=True, url=f"mqtt://127.0.0.1:{broker.port}", username=USER, discovery=False
        )
        link = MqttLink(device.controls, mqtt, Secret(PASSWORD), "soak")
        tasks.append(asyncio.create_task(link.run()))
    soaked = asyncio.ensure_future(done.wait())
    await asyncio.wait({soaked, tasks[0]}, return_when=asyncio.FIRST_COMPLETED)
    if tasks[0].done():  # the device stopped before the soak was over: say how
        outcome = tasks[0].exception() or tasks[0].result()
        raise SystemExit(f"the device stopped after {ended} conversations: {outcome!r}")
    report(marks[0], marks[1], reasons, time.monotonic() - started, broker is not None)
    for task in [tasks[0], *chores]:
        task.cancel()
    if len(tasks) > 1:  # the MQTT link, stopped as `agentpi run` stops it
        chores.add(asyncio.ensure_future(stopped(tasks[1])))
    _, stuck = await asyncio.wait([*tasks, *chores], timeout=STOP_S)
    if stuck:  # say where, rather than hang
        for task in stuck:
            task.print_stack(limit=12)
        raise SystemExit(f"{len(stuck)} of the soak's tasks did not stop within {STOP_S} s")
    network.close()
    return reasons


def report(before: Mark, after: Mark, reasons: Counter[str], took: float, mqtt: bool) -> None:
    print(
        f"{CONVERSATIONS} conversations in {took / 60:.1f} min, one process; the network cut "
        f"every {NETWORK_CUT_EVERY}, "
        + (f"the MQTT broker restarted every {BROKER_RESTART_EVERY}" if mqtt else "no MQTT")
        + f"; after {WARM_UP} -> after {CONVERSATIONS}:"
    )
    print(f"{'figure':28} {'after warm-up':>14} {'at the end':>12} {'growth':>8}")
    for label, a, b in zip(
        ("open file descriptors", "threads", "RSS MB"), before, after, strict=True
    ):
        print(f"{label:28} {a:14.1f} {b:12.1f} {b - a:+8.1f}")
    print(f"{'RSS ratio end / warm-up':28} {after[2] / before[2]:35.3f}  (goal: growth < 5 MB)")
    print("how they ended:")
    for reason, count in reasons.most_common():
        print(f"  {count:5d}  {reason}", flush=True)


def main() -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        script = folder / "script.toml"
        script.write_text(SCRIPT)
        broker = Broker(folder / "broker") if shutil.which("mosquitto") else None
        if broker is not None:
            broker.start()
        simulator = subprocess.Popen(
            [*AGENTPI, "simulate", "--port", "0", "--script", str(script)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert simulator.stdout is not None
            url = simulator.stdout.readline().split()[-1]
            reasons = asyncio.run(soak(url, folder, broker))
        finally:
            simulator.terminate()
            try:
                simulator.wait(30)  # it closes each open conversation first
            except subprocess.TimeoutExpired:
                simulator.kill()
            if broker is not None:
                broker.kill()
    if "(no reason)" in reasons:
        raise SystemExit("a conversation ended without a reason")


if __name__ == "__main__":
    main()
