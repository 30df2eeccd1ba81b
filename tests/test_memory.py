"""Memory is a budget on a 512 MB board: an idle device with its wake model stays under a ceiling.

Memory is deterministic enough for a test (time is not: timings live in benchmarks/). The ceiling
is today's figure with a margin, to catch a regression at once (an import of openwakeword, scipy
or onnxruntime on the idle path would add over 100 MB).
"""

from __future__ import annotations

import asyncio
import gc
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from agentpi.device.app import Device
from tests.helpers import AGENTPI, device_toml, run_conversation
from tests.speech import save, silence
from tests.test_cli import write_config

pytestmark = pytest.mark.realtime  # loads the real wake model: slow under emulation

IDLE_CEILING_MB = 72.0
"""Peak RSS of `agentpi run` listening for the wake word (measured here: 61 MB; the goal is 64 MB,
kept in `make bench`). It was 202 MB while the engine imported openwakeword."""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_an_idle_device_with_its_wake_model_stays_under_the_memory_ceiling(
    tmp_path: Path,
) -> None:
    wav = save(tmp_path / "room.wav", silence(30.0))
    body = device_toml("ws://127.0.0.1:9", wav, tmp_path / "out.wav", trigger='mode = "wake"')
    config = write_config(tmp_path, body)
    events = tmp_path / "events.jsonl"
    process = subprocess.Popen(
        [*AGENTPI, "run", "--config", str(config), "--events", str(events)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 120
        while not (events.exists() and '"event": "ready"' in events.read_text()):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
        time.sleep(3.0)  # listen a while: the model's buffers fill, frames are scored
        peak = peak_rss_mb(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(20)
    ready = [json.loads(line) for line in events.read_text().splitlines()]
    assert any(line["event"] == "listening_for_wake_word" for line in ready)
    assert peak < IDLE_CEILING_MB, f"idle peak RSS {peak:.0f} MB"


def test_what_start_up_made_is_kept_out_of_the_collectors_way(tmp_path: Path) -> None:
    """Once ready, the process's long-lived objects are frozen: a full collection does not walk
    them again each time a conversation's messages fill the young generation."""
    gc.unfreeze()
    frozen: list[int] = []

    async def look(device: Device) -> None:
        await asyncio.wait_for(device.ready.wait(), 20)
        frozen.append(gc.get_freeze_count())

    run_conversation(tmp_path, during=look)
    assert frozen and frozen[0] > 10_000, frozen
