"""A server that floods, never finishes, or calls tools without end: the device stays bounded.

Each test runs a real ``agentpi run`` process against a raw websockets server written here, which
does what the simulator never would, and measures the device from outside.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import fcntl
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from tests.helpers import AGENTPI, device_toml, silence_wav
from tests.test_cli import write_config

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

METADATA = {
    "type": "conversation_initiation_metadata",
    "conversation_initiation_metadata_event": {
        "conversation_id": "conv_hostile",
        "user_input_audio_format": "pcm_16000",
        "agent_output_audio_format": "pcm_16000",
    },
}
AUDIO_100MS = base64.b64encode(b"\x10\x00" * 1600).decode()

LONG = "silence_close_s = 60.0\nidle_close_s = 60.0\n"

F_SETPIPE_SZ = 1031  # Linux: fcntl.F_SETPIPE_SZ, named only from Python 3.10 on some builds

Handler = Callable[[ServerConnection], Awaitable[None]]


def frame(kind: str, body: dict[str, Any], wrapper: str | None = None) -> str:
    return json.dumps({"type": kind, wrapper or f"{kind}_event": body})


async def opening(ws: ServerConnection, drain: bool = True) -> None:
    """Take the client's initiation data, answer with the metadata; with ``drain``, read and
    drop whatever else the client sends (a server that stops reading stalls its own close)."""
    await ws.recv()
    await ws.send(json.dumps(METADATA))
    if drain:
        DRAINS.add(asyncio.ensure_future(_drain(ws)))


DRAINS: set[asyncio.Future[None]] = set()


async def _drain(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def run_device(
    tmp_path: Path,
    handler: Handler,
    conversation: str = "",
    extra: str = "",
    agent: str = "",
    events: str | None = None,
    control: str = "enabled = false",
    timeout: float = 60,
    watch: Callable[[int], Awaitable[None]] | None = None,
) -> tuple[int, str, str, Path]:
    """Serve ``handler``, run ``agentpi run --once`` against it; (exit code, stdout, stderr,
    events file). ``watch(pid)`` runs beside the process."""
    async with serve(handler, "127.0.0.1", 0, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        wav = silence_wav(tmp_path / "quiet.wav", 120)
        body = device_toml(
            f"ws://127.0.0.1:{port}",
            wav,
            tmp_path / "out.wav",
            agent=agent,
            conversation=LONG + conversation,
            extra=extra,
            control=control,
        )
        config = write_config(tmp_path, body)
        events_path = tmp_path / "events.jsonl"
        process = await asyncio.create_subprocess_exec(
            *AGENTPI,
            "run",
            "--once",
            "--config",
            str(config),
            "--events",
            events or str(events_path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        watcher = asyncio.ensure_future(watch(process.pid)) if watch else None
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        finally:
            if process.returncode is None:
                process.kill()
            if watcher is not None:
                watcher.cancel()
        assert process.returncode is not None
        return process.returncode, stdout.decode(), stderr.decode(), events_path


def events_to_stdout(tmp_path: Path, port: int) -> subprocess.Popen[bytes]:
    """`agentpi run --once --events -` against the server on ``port``, stdout a pipe."""
    wav = silence_wav(tmp_path / "quiet.wav", 120)
    body = device_toml(f"ws://127.0.0.1:{port}", wav, tmp_path / "out.wav", conversation=LONG)
    config = write_config(tmp_path, body)
    return subprocess.Popen(
        [*AGENTPI, "run", "--once", "--config", str(config), "--events", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ------------------------------------------------------------------ a flood of audio

RSS_BOUND_MB = 160.0
"""What `agentpi run` may reach while flooded (no wake model; about 60 MB when calm). Before the
backlog was bounded, the same flood grew it past 1.6 GB in a minute."""


def test_a_flood_of_agent_audio_keeps_memory_bounded_and_the_run_ends_by_itself(
    tmp_path: Path,
) -> None:
    sent = {"frames": 0}

    async def flood(ws: ServerConnection) -> None:
        await opening(ws)
        await ws.send(frame("agent_response", {"agent_response": "Listen to this."}))
        await ws.send(frame("agent_response_complete", {}))
        deadline = time.monotonic() + 30
        try:
            while time.monotonic() < deadline:
                body = {"audio_base_64": AUDIO_100MS, "event_id": 1}
                await ws.send(frame("audio", body))
                sent["frames"] += 1
                if sent["frames"] % 100 == 0:
                    await asyncio.sleep(0)  # hear the client's pings, or it rightly gives up
        except ConnectionClosed:
            pass

    peak = {"mb": 0.0}

    async def watch(pid: int) -> None:
        while True:
            try:
                peak["mb"] = max(peak["mb"], rss_mb(pid))
            except OSError:
                return
            await asyncio.sleep(0.05)

    # keepalive off, so the flood lasts: with it on, a flood that buries the server's pongs
    # behind megabytes of audio ends the conversation sooner still (the link looks dead)
    code, _, stderr, events = asyncio.run(
        run_device(
            tmp_path,
            flood,
            conversation="max_after_complete_s = 8.0",
            agent="keepalive_s = 0",
            watch=watch,
            timeout=60,
        )
    )
    assert code == 0 and "Traceback" not in stderr
    assert sent["frames"] > 1200 * 3, "the server did not flood faster than real time"
    kinds = [r["event"] for r in records(events)]
    overflow = [r for r in records(events) if r["event"] == "playback_overflow"]
    assert len(overflow) == 1 and overflow[0]["max_backlog_s"] == 120.0, kinds
    ended = [r for r in records(events) if r["event"] == "conversation_ended"]
    assert ended and "kept its turn going" in ended[0]["reason"]
    assert 0 < peak["mb"] < RSS_BOUND_MB, f"peak RSS {peak['mb']:.0f} MB"


FLOOD_OVER_CALM = 1.5
"""Peak RSS in a flood of audio, over the same process's RSS in the conversation just before."""


@pytest.mark.parametrize("seconds_per_frame", [1.0, 94.0])
def test_a_flood_of_large_audio_frames_stays_within_half_again_the_calm_figure(
    tmp_path: Path, seconds_per_frame: float
) -> None:
    """Frames of 1 s and of 94 s (4 MB of base64 each), as fast as the socket takes them, for
    20 s. The speaker's backlog keeps 120 s; it once kept a view of each frame it took a few
    samples of, so the whole decoded frame stayed alive with it (1 s frames: 161 MB; 4 MB
    frames: 3 GB), and glibc kept the freed frames in its heap (90 MB)."""
    audio = base64.b64encode(b"\x10\x00" * int(16000 * seconds_per_frame)).decode()
    calm: list[float] = []
    peak = {"mb": 0.0}
    rss: list[float] = []

    async def flood(ws: ServerConnection) -> None:
        await opening(ws)
        await asyncio.sleep(2.0)  # the conversation, calm
        calm.append(max(rss))
        await ws.send(frame("agent_response", {"agent_response": "Listen to this."}))
        deadline = time.monotonic() + 20
        with contextlib.suppress(ConnectionClosed):
            while time.monotonic() < deadline:
                await ws.send(frame("audio", {"audio_base_64": audio, "event_id": 1}))
                await asyncio.sleep(0)
        await ws.close(1000, "enough")

    async def watch(pid: int) -> None:
        while True:
            try:
                rss.append(rss_mb(pid))
            except OSError:
                return
            peak["mb"] = max(peak["mb"], rss[-1])
            await asyncio.sleep(0.05)

    code, _, stderr, events = asyncio.run(
        run_device(tmp_path, flood, agent="keepalive_s = 0", watch=watch, timeout=90)
    )
    assert code == 0 and "Traceback" not in stderr
    assert [r for r in records(events) if r["event"] == "playback_overflow"]  # it did flood
    assert peak["mb"] <= FLOOD_OVER_CALM * calm[0], f"{peak['mb']:.0f} MB, calm {calm[0]:.0f}"


# ------------------------------------------------------------------ a flood of tool calls

TOOL = """
import os, sys, time

folder = sys.argv[1]
marker = os.path.join(folder, f"{os.getpid()}.running")
open(marker, "w").close()
running = sum(name.endswith(".running") for name in os.listdir(folder))
with open(os.path.join(folder, "log"), "a") as log:
    log.write(f"{running}\\n")
time.sleep(0.15)
os.remove(marker)
print("done")
"""


def test_a_flood_of_tool_calls_runs_a_few_at_once_and_answers_every_call(tmp_path: Path) -> None:
    folder = tmp_path / "runs"
    folder.mkdir()
    script = tmp_path / "tool.py"
    script.write_text(TOOL)
    results: dict[str, dict[str, Any]] = {}

    async def caller(ws: ServerConnection) -> None:
        await opening(ws, drain=False)
        for n in range(200):
            call = {"tool_name": "slow", "tool_call_id": f"c{n}", "parameters": {}}
            await ws.send(frame("client_tool_call", call, wrapper="client_tool_call"))
        deadline = time.monotonic() + 45
        while len(results) < 200 and time.monotonic() < deadline:
            message = json.loads(await asyncio.wait_for(ws.recv(), 45))
            if message.get("type") == "client_tool_result":
                results[message["tool_call_id"]] = message
        await ws.close(1000, "done")

    tool = f'[tools.custom.slow]\ncommand = ["{sys.executable}", "{script}", "{folder}"]'
    code, _, stderr, _ = asyncio.run(run_device(tmp_path, caller, extra=tool))
    assert "Traceback" not in stderr
    assert sorted(results) == sorted(f"c{n}" for n in range(200)), "a call went unanswered"
    ran = [int(line) for line in (folder / "log").read_text().split()]
    busy = [r for r in results.values() if r["is_error"] and "busy" in r["result"]]
    assert max(ran) <= 2, f"{max(ran)} tool processes at once"
    assert len(ran) >= 18 and len(ran) + len(busy) == 200
    assert code == 0


# ------------------------------------------------------------------ a reader that never reads


def test_pongs_keep_flowing_while_the_event_reader_reads_nothing(tmp_path: Path) -> None:
    sent: dict[int, float] = {}
    answered: dict[int, float] = {}

    async def pinger(ws: ServerConnection) -> None:
        await opening(ws, drain=False)

        async def read() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message.get("type") == "pong":
                    answered.setdefault(message["event_id"], time.monotonic())

        reading = asyncio.ensure_future(read())
        for n in range(1, 751):  # 15 s: a ping and two lines' worth of events every 20 ms
            sent[n] = time.monotonic()
            await ws.send(frame("ping", {"event_id": n, "ping_ms": 30}))
            await ws.send(frame("vad_score", {"vad_score": 0.5}))
            await ws.send(
                frame(
                    "tentative_user_transcript",
                    {"user_transcript": "x" * 200},
                    wrapper="tentative_user_transcription_event",
                )
            )
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.5)
        reading.cancel()
        await ws.close(1000, "done")

    async def scenario() -> tuple[int, bytes, bytes]:
        async with serve(pinger, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            process = events_to_stdout(tmp_path, port)
            assert process.stdout is not None and process.stderr is not None
            fcntl.fcntl(process.stdout.fileno(), F_SETPIPE_SZ, 4096)  # a small pipe, soon full
            await asyncio.sleep(16)  # nobody reads stdout: the pipe fills, then stays full
            loop = asyncio.get_running_loop()
            out = await loop.run_in_executor(None, process.stdout.read)
            err = await loop.run_in_executor(None, process.stderr.read)
            code = await loop.run_in_executor(None, process.wait, 10)
            return code, out, err

    code, out, err = asyncio.run(scenario())
    assert b"Traceback" not in err and code == 0, err.decode()
    on_time = [n for n in sent if n in answered and answered[n] - sent[n] <= 1.0]
    assert len(on_time) >= 0.9 * len(sent), f"{len(on_time)} of {len(sent)} pongs within 1 s"
    lines = [json.loads(line) for line in out.decode().splitlines()]
    assert any(line["event"] == "events_dropped" for line in lines)
    assert sum(line["event"] == "latency" for line in lines) <= 20  # folded, not one per ping


def test_a_reader_that_goes_away_leaves_no_traceback(tmp_path: Path) -> None:
    async def brief(ws: ServerConnection) -> None:
        await opening(ws)
        for n in range(50):
            await ws.send(frame("vad_score", {"vad_score": n / 50}))
            await asyncio.sleep(0.02)
        await ws.close(1000, "done")

    async def scenario() -> tuple[int, bytes]:
        async with serve(brief, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            process = events_to_stdout(tmp_path, port)
            assert process.stdout is not None and process.stderr is not None
            process.stdout.close()  # `agentpi run --events - | head -0`
            loop = asyncio.get_running_loop()
            err = await loop.run_in_executor(None, process.stderr.read)
            return await loop.run_in_executor(None, process.wait, 20), err

    code, err = asyncio.run(scenario())
    assert code == 0 and b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()


def test_binary_and_oversized_frames_are_reported_as_what_they_are(tmp_path: Path) -> None:
    async def odd(ws: ServerConnection) -> None:
        await opening(ws)
        await ws.send(b"\x00\x01\x02\x03")
        await asyncio.sleep(0.3)
        with contextlib.suppress(ConnectionClosed):
            await ws.send("x" * (17 * 1024 * 1024))  # over the device's 16 MiB frame limit
            await ws.wait_closed()

    code, _, stderr, events = asyncio.run(run_device(tmp_path, odd))
    assert code == 1 and "Traceback" not in stderr
    errors = [r["message"] for r in records(events) if r["event"] == "protocol_error"]
    assert errors == ["a binary frame (4 bytes); the agent sends JSON text"]
    ended = next(r for r in records(events) if r["event"] == "conversation_ended")
    assert (ended["closed_by"], ended["code"]) == ("client", 1009), ended
    assert ended["error"].startswith("the device closed the connection with 1009")
