"""The network goes away: the device says so, backs off with jitter, and keeps listening."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from pathlib import Path

from agentpi.app import Device, reconnect_delay
from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSink, FileSource
from agentpi.config import AgentConfig, AudioConfig, Config, TriggerConfig
from agentpi.events import Event, EventBus
from tests.helpers import silence_wav


def test_reconnect_delays_double_up_to_a_minute_with_jitter() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(n, 2.0, rng) for n in range(0, 10)]
    assert delays[0] == 2.0  # no failure: the configured pause
    for failures, delay in enumerate(delays[1:], start=1):
        nominal = min(60.0, 2.0 * 2 ** (failures - 1))
        assert 0.75 * nominal <= delay <= 1.25 * nominal
    assert len({round(d / min(60.0, 2.0 * 2**i), 3) for i, d in enumerate(delays[1:])}) > 3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_network_down_shows_offline_backs_off_and_returns_to_idle(tmp_path: Path) -> None:
    config = Config(
        agent=AgentConfig(agent_id="a", url=f"ws://127.0.0.1:{closed_port()}", connect_timeout_s=2),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.1),
        audio=AudioConfig(echo="off", cues=False),
    )
    events: list[Event] = []
    bus = EventBus()
    bus.subscribe(events.append)
    source = FileSource(silence_wav(tmp_path / "quiet.wav", 9.0))
    device = Device(config, Microphone.of(source), FileSink(tmp_path / "out.wav"), events=bus)
    code = asyncio.run(asyncio.wait_for(device.run(), 30))
    assert code == 1
    failed = [e for e in events if e["event"] == "connect_failed"]
    assert len(failed) >= 3 and all(e["offline"] for e in failed)
    assert [e["failures"] for e in failed] == list(range(1, len(failed) + 1))
    # each failure: offline shown, then idle (listening again) well within 5 s
    for event in failed:
        after = [e for e in events if e["event"] == "state" and e["t"] >= event["t"]]
        assert after[0]["state"] == "offline" and after[1]["state"] == "idle"
        assert after[1]["t"] - event["t"] < 5.0
    # and the attempts spread out: each wait is longer than the one before
    starts = [e["t"] for e in events if e["event"] == "connecting"]
    waits = [b - a for a, b in itertools.pairwise(starts)]
    assert all(later > earlier for earlier, later in itertools.pairwise(waits))
