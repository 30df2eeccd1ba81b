"""Stopping the device (systemctl stop, Ctrl-C): a clean close, a complete record, quickly."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from agentpi.agent.script import SimulatorScript, SimulatorSettings
from agentpi.agent.simulator import AgentSimulator
from tests.helpers import AGENTPI, device_toml, enabled_agent, silence_wav
from tests.test_cli import write_config

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

LONG = "silence_close_s = 60.0\nidle_close_s = 60.0"


async def wait_for_line(path: Path, kind: str, timeout: float) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            for line in path.read_text().splitlines():
                record = json.loads(line)
                if record["event"] == kind:
                    return dict(record)
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {kind} line within {timeout} s")


async def start_device(tmp_path: Path, url: str) -> tuple[asyncio.subprocess.Process, Path]:
    wav = silence_wav(tmp_path / "quiet.wav", 60)
    body = device_toml(url, wav, tmp_path / "out.wav", conversation=LONG)
    config = write_config(tmp_path, body)
    events = tmp_path / "events.jsonl"
    process = await asyncio.create_subprocess_exec(
        *AGENTPI,
        "run",
        "--config",
        str(config),
        "--events",
        str(events),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    return process, events


@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)])
def test_a_stop_signal_closes_the_conversation_with_1000_and_records_its_end(
    tmp_path: Path, sig: int, exit_code: int
) -> None:
    async def scenario() -> None:
        async with AgentSimulator(SimulatorScript(), agent=enabled_agent()) as sim:
            process, events = await start_device(tmp_path, sim.url)
            await wait_for_line(events, "conversation_started", 30)
            signalled = time.monotonic()
            process.send_signal(sig)
            stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
            took = time.monotonic() - signalled
            assert process.returncode == exit_code, stderr.decode()
            assert took < 2.5, f"stopped after {took:.2f} s"
            assert b"Traceback" not in stderr
            summary = [line for line in stdout.decode().splitlines() if "ended after" in line]
            assert len(summary) == 1 and "device stopping" in summary[0], stdout.decode()
            await sim.wait_for_conversations(1, timeout=5)
            record = sim.conversations[0]
            assert (record.closed_by, record.close_code, record.close_reason) == (
                "client",
                1000,
                "device stopping",
            )
            ended = [
                json.loads(line)
                for line in events.read_text().splitlines()
                if json.loads(line)["event"] == "conversation_ended"
            ]
            assert len(ended) == 1
            assert ended[0]["reason"] == "device stopping" and ended[0]["error"] is None
            assert ended[0]["conversation_id"] == record.conversation_id

    asyncio.run(scenario())


def test_a_signal_while_the_handshake_hangs_stops_at_once(tmp_path: Path) -> None:
    """A server that never finishes its handshake: the signal ends the connect at once (it used
    to wait for it, up to the grace time, unless a second signal came)."""

    async def scenario() -> None:
        script = SimulatorScript(simulator=SimulatorSettings(handshake_delay_s=30.0))
        async with AgentSimulator(script, agent=enabled_agent(script)) as sim:
            process, events = await start_device(tmp_path, sim.url)
            await wait_for_line(events, "connecting", 30)
            await asyncio.sleep(0.3)
            sent = time.monotonic()
            process.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(process.communicate(), 10)
            assert time.monotonic() - sent < 1.5
            assert process.returncode == 0 and b"Traceback" not in stderr

    asyncio.run(scenario())
