"""A Pi without a real-time clock: at boot the wall clock reads the past until NTP sets it.

The device runs under libfaketime (the wall clock only; the monotonic clock, which every timer
uses, stays true), against a wss:// server whose certificate starts today.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from agentpi.system.clock import NOT_SET, describe_clock
from tests.helpers import AGENTPI, device_toml, silence_wav
from tests.mqtt_broker import certificates, free_port
from tests.test_cli import write_config
from tests.test_hostile import opening

pytestmark = pytest.mark.realtime

LIBFAKETIME = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
needs_faketime = pytest.mark.skipif(
    not LIBFAKETIME, reason="no libfaketime: `make test` installs it"
)
IN_2020 = "@2020-01-01 00:00:00"
NOW = "+0"


def events_so_far(path: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


async def until(path: Path, check: Any, timeout: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [record for record in events_so_far(path) if check(record)]
        if found:
            return found
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen in {timeout} s: {[r['event'] for r in events_so_far(path)]}")


@needs_faketime
def test_a_clock_not_yet_set_is_named_and_the_device_connects_once_it_is(tmp_path: Path) -> None:
    folder = certificates()
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(folder / "server.crt", folder / "server.key")
    clock_file = tmp_path / "clock"
    clock_file.write_text(IN_2020)
    events = tmp_path / "events.jsonl"

    async def agent(ws: ServerConnection) -> None:
        await opening(ws)
        await ws.wait_closed()

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        async with serve(agent, "127.0.0.1", 0, ssl=tls) as server:
            port = server.sockets[0].getsockname()[1]
            body = device_toml(
                f"wss://localhost:{port}",
                silence_wav(tmp_path / "quiet.wav", 60),
                tmp_path / "out.wav",
                trigger='mode = "immediate"\nrestart_pause_s = 0.5',
                conversation="silence_close_s = 60.0\nidle_close_s = 60.0",
            )
            environment = {
                **os.environ,
                "SSL_CERT_FILE": str(folder / "ca.crt"),
                "LD_PRELOAD": LIBFAKETIME[-1],
                "FAKETIME_TIMESTAMP_FILE": str(clock_file),
                "FAKETIME_CACHE_DURATION": "1",
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            }
            process = await asyncio.create_subprocess_exec(
                *AGENTPI, "run", "--config", str(write_config(tmp_path, body)),
                "--events", str(events), env=environment,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            try:
                failed = await until(events, lambda r: r["event"] == "connect_failed")
                clock_file.write_text(NOW)  # NTP has set the clock
                started = await until(events, lambda r: r["event"] == "conversation_started")
            finally:
                process.terminate()
                await process.wait()
        return failed, started

    failed, started = asyncio.run(scenario())
    assert NOT_SET in failed[0]["message"] and "certificate" not in failed[0]["message"]
    assert started  # by itself, no restart
    states = [r.get("state") for r in events_so_far(events) if r["event"] == "state"]
    assert "offline" in states  # the offline cue, as without a network


@needs_faketime
def test_the_doctor_reads_the_clock() -> None:
    behind = subprocess.run(
        [
            sys.executable,
            "-c",
            "from agentpi.system.clock import describe_clock; print(describe_clock())",
        ],
        env={**os.environ, "LD_PRELOAD": LIBFAKETIME[-1], "FAKETIME": IN_2020},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert f"(False, 'reads 2020-01-01 00:00 UTC: {NOT_SET}')" in behind.stdout, behind
    ok, detail = describe_clock()
    assert ok is not False and detail.startswith("reads 20")


def jump_clock(clock_file: Path, offsets_at: list[tuple[float, str]]) -> None:
    """Write each offset (libfaketime's "+400d" form) to the clock file at its time."""
    started = time.monotonic()
    for at, offset in offsets_at:
        time.sleep(max(0.0, started + at - time.monotonic()))
        clock_file.write_text(offset)


def faked_wall_clock(clock_file: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LD_PRELOAD": LIBFAKETIME[-1],
        "FAKETIME_TIMESTAMP_FILE": str(clock_file),
        "FAKETIME_CACHE_DURATION": "1",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
    }


@needs_faketime
def test_the_wall_clock_jumping_mid_conversation_changes_nothing(
    tmp_path: Path, simulator_process: str
) -> None:
    """NTP setting the clock a year forward, then two back, while the user speaks and the agent
    answers: the conversation's timers, turn times and duration run on the monotonic clock."""
    clock_file = tmp_path / "clock"
    clock_file.write_text(NOW)
    mic = silence_wav(tmp_path / "quiet.wav", 30)
    events = tmp_path / "events.jsonl"
    body = device_toml(
        simulator_process, mic, tmp_path / "out.wav", conversation="silence_close_s = 6.0"
    )
    jumper = threading.Thread(
        target=jump_clock, args=(clock_file, [(2.0, "+400d"), (4.0, "-400d")]), daemon=True
    )
    jumper.start()
    started = time.monotonic()
    run = subprocess.run(
        [*AGENTPI, "run", "--once", "--config", str(write_config(tmp_path, body)),
         "--events", str(events)],
        env=faked_wall_clock(clock_file), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    took = time.monotonic() - started
    assert run.returncode == 0, run.stderr
    assert clock_file.read_text() == "-400d"  # both jumps happened while it ran
    [ended] = [r for r in events_so_far(events) if r["event"] == "conversation_ended"]
    assert "silent" in ended["reason"], ended
    assert 5.0 < ended["duration_s"] < took, (ended, took)
    assert all(0 <= r["latency_ms"] < 5000 for r in events_so_far(events) if r["event"] == "turn")


@needs_faketime
def test_the_wall_clock_jumping_during_the_back_off_changes_nothing(tmp_path: Path) -> None:
    """Connects fail (nobody listens), the kiosk waits longer each time; a day's jump forward
    and back while it waits neither cuts a wait short nor makes one last for ever."""
    clock_file = tmp_path / "clock"
    clock_file.write_text(NOW)
    events = tmp_path / "events.jsonl"
    body = device_toml(
        f"ws://127.0.0.1:{free_port()}",
        silence_wav(tmp_path / "quiet.wav", 60),
        tmp_path / "out.wav",
        trigger='mode = "immediate"\nrestart_pause_s = 1.0',
    )
    jumper = threading.Thread(
        target=jump_clock, args=(clock_file, [(1.5, "+1d"), (4.0, "-1d")]), daemon=True
    )
    device = subprocess.Popen(
        [*AGENTPI, "run", "--config", str(write_config(tmp_path, body)), "--events", str(events)],
        env=faked_wall_clock(clock_file), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    jumper.start()
    try:
        asyncio.run(until(events, lambda r: r["event"] == "retry" and r["failures"] >= 4, 40))
    finally:
        device.terminate()
        device.wait(10)
    lines = events_so_far(events)
    failed_at = [r["t"] for r in lines if r["event"] == "connect_failed"]
    waits = [r["delay_s"] for r in lines if r["event"] == "retry"]
    for n in range(3):  # each attempt came when its wait, on the monotonic clock, was over
        gap = failed_at[n + 1] - failed_at[n]
        assert waits[n] <= gap < waits[n] + 1.5, (n, gap, waits)


def test_no_timer_of_the_device_reads_the_wall_clock() -> None:
    """The wake word's refractory time, the MQTT link's back-off and every other timer use the
    monotonic clock (asyncio's, threading's and time.monotonic); the wall clock is read only
    for dates the platform stores (an agent's timestamps, an MCP call's) and by the clock check
    itself."""
    device = Path(__file__).parents[1] / "device" / "agentpi"
    wall = ("time.time()", "time.time_ns()", "datetime.now(", "datetime.utcnow(")
    readers = sorted(
        str(path.relative_to(device))
        for path in device.rglob("*.py")
        if any(call in path.read_text() for call in wall)
    )
    assert readers == [
        "agent/definition.py",
        "agent/sim_conversation.py",
        "agent/simulator.py",
        "device/initiation.py",
        "system/clock.py",
    ]
