"""permessage-deflate on the Agent WebSocket, on and off: client CPU and bytes on the wire.

Both directions are mostly base64 audio, which deflate shrinks by little, while it costs CPU on
both ends. One conversation per round and setting, alternating: ``agentpi run --once`` (immediate
trigger; room noise at -50 dBFS as its microphone, which streams all the same) against the
simulator, the agent speaking a long answer in real time; a relay counts the bytes each way.
CPU is the client process's, from the socket's opening to the process's end, per minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tests.speech import save

from agentpi.agent.script import SimulatorScript, SimulatorSettings, TurnScript
from agentpi.agent.simulator import AgentSimulator
from benchmarks import proc

ROUNDS = int(os.environ.get("BENCH_DEFLATE_ROUNDS", "3"))
SETTINGS = ("none", "deflate")
ANSWER = " ".join(
    ["The Raspberry Pi is a small, cheap computer, and this one is talking to you right now."] * 3
)


@dataclass
class Round:
    setting: str
    cpu_s_per_minute: float
    up_bytes: int
    down_bytes: int
    seconds: float


class CountingRelay:
    """A TCP relay that counts what passes each way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.up = self.down = 0
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter, upward: bool) -> None:
            while data := await src.read(65536):
                if upward:
                    self.up += len(data)
                else:
                    self.down += len(data)
                dst.write(data)
                await dst.drain()
            dst.close()

        await asyncio.gather(
            pipe(reader, up_writer, True), pipe(up_reader, writer, False), return_exceptions=True
        )


async def one_round(setting: str, folder: Path, room: Path) -> Round:
    script = SimulatorScript(
        simulator=SimulatorSettings(audio_pace=1.0, ping_interval_s=1.0),
        first_turn=TurnScript(response=ANSWER),
    )
    async with AgentSimulator(script) as sim:
        relay = CountingRelay(sim.port)
        server = await relay.start()
        config = folder / f"{setting}.toml"
        config.write_text(
            f'[agent]\nagent_id = "bench"\nurl = "ws://127.0.0.1:{relay.port}"\n'
            f'compression = "{setting}"\n[trigger]\nmode = "immediate"\n'
            f'[audio]\ninput = "file:{room}"\noutput = "file:{folder / "out.wav"}"\n'
            'echo = "off"\ncues = false\n[conversation]\nsilence_close_s = 2\n'
            "[control]\nenabled = false\n"
        )
        events = folder / f"{setting}.jsonl"
        events.unlink(missing_ok=True)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentpi", "run", "--once", "--config", str(config),
            "--events", str(events),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        cpu = start_cpu = started = None
        while process.returncode is None:
            now_cpu = proc.cpu_seconds(process.pid)
            if now_cpu is not None:
                cpu = now_cpu
                if started is None and events.exists() and '"connected"' in events.read_text():
                    start_cpu, started = now_cpu, time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(process.wait(), 0.05)
        server.close()
        if process.returncode != 0 or started is None or cpu is None or start_cpu is None:
            raise RuntimeError(f"agentpi run ended with {process.returncode}")
        seconds = time.monotonic() - started
    return Round(setting, (cpu - start_cpu) / seconds * 60, relay.up, relay.down, seconds)


def measure() -> list[Round]:
    rounds = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        scale = 32768 * 10 ** (-50 / 20)
        noise = np.random.RandomState(0).randn(16000 * 60) * scale
        room = save(folder / "room.wav", noise.astype(np.int16))
        for _ in range(ROUNDS):
            for setting in SETTINGS:
                rounds.append(asyncio.run(one_round(setting, folder, room)))
    return rounds


def main() -> None:
    rounds = measure()

    def median(setting: str, value: Callable[[Round], float]) -> float:
        return statistics.median(value(r) for r in rounds if r.setting == setting)

    print(f"{ROUNDS} conversations per setting, alternating; medians")
    print(f"{'figure':44} {'none':>10} {'deflate':>10} {'ratio':>6}")
    figures: list[tuple[str, Callable[[Round], float], int]] = [
        ("client CPU s per minute of conversation", lambda r: r.cpu_s_per_minute, 2),
        ("kB up (device to agent) per minute", lambda r: r.up_bytes / r.seconds * 60e-3, 1),
        ("kB down (agent to device) per minute", lambda r: r.down_bytes / r.seconds * 60e-3, 1),
    ]
    for figure, value, digits in figures:
        off, on = (median(setting, value) for setting in SETTINGS)
        print(f"{figure:44} {off:10.{digits}f} {on:10.{digits}f} {on / off:6.2f}")
