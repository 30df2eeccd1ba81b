"""agentpi against the official ``elevenlabs`` Python SDK, side by side, in one run.

Both clients run as child processes against one simulator (in this process), on the same
file-backed audio (benchmarks/rig.py: agentpi's own ``FileSource`` and ``FileSink``, paced like a
sound card) and hold the same conversation; rounds alternate which goes first:

1. the harness triggers the client (a ``start`` line: agentpi's ``Device.start_conversation``,
   the SDK's ``Conversation.start_session``); agentpi runs as shipped (wake listener loaded),
   with its echo canceller off so the agent hears exactly what the microphone captured, the
   SDK with its own ``DefaultAudioInterface`` over the same devices;
2. the agent greets; a second into the greeting the user asks the question (hello.wav) over
   it, the simulator hears the speech and interrupts its greeting;
3. the agent answers, streaming its audio in real time (the greeting came at twice that, so the
   client held some of it when it was interrupted); the client hangs up a second after the
   answer has played (agentpi: ``silence_close_s = 1``; the SDK user: the same rule, by hand).

Nothing is reported unless the simulator's recording shows the conversation was complete: the
client's init, a barge-in that interrupted the greeting, the whole question received, the answer
sent in full and played in full (sample for sample, from the speaker's own record), pongs for
the pings, and a normal hang-up (1000) by the client.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tests.speech import speech_bounds

from agentpi.agent.script import SimulatorScript, SimulatorSettings, TurnScript
from agentpi.agent.sim_records import ConversationRecord
from agentpi.agent.simulator import AgentSimulator
from agentpi.audio.convert import Int16Array, read_wav
from agentpi.device.assembly import bundled
from benchmarks.proc import cpu_seconds, peak_rss_mb
from benchmarks.rig import RATE, room_with_question, write_room

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
CLIENTS = ("agentpi", "sdk", "agentpi-no-wake")
"""agentpi as shipped (wake listener loaded), the SDK, and agentpi triggered only over the control
socket, so without the wake model in memory: the client alone."""
GREETING = (
    "Hello! This is the bench agent. I know a lot about small computers, the sensors you can "
    "attach to them, and the many ways to wire them together."
)
TRANSCRIPT = "Hello! What can you tell me about the Raspberry Pi?"
ANSWER = "It is a small computer, about the size of a credit card."
# The greeting streams ahead of the speaker (twice real time), so at the interruption the client
# holds a second of it; the answer streams in real time, so what follows its last frame on the
# wire is the client's own playback path, not a queue the agent filled.
SCRIPT = SimulatorScript(
    simulator=SimulatorSettings(ping_interval_s=1.0, audio_pace=2.0),
    first_turn=TurnScript(response=GREETING),
    turns=(TurnScript(transcript=TRANSCRIPT, response=ANSWER, audio_pace=1.0),),
)
SPEAK_AFTER_S = 1.0
"""How far into the greeting the user starts asking."""
TRIGGER_AFTER_S = (0.3, 0.8)
"""The trigger comes this long after the client is ready (a seeded draw per round, the same for
every client), so it does not always fall at the same point of the microphone's chunk clock."""
SILENCE_CLOSE_S = 1.0


class Incomplete(RuntimeError):
    """A conversation the harness will not report numbers for, and why."""


@dataclass
class Figures:
    """One client's numbers from one conversation."""

    client: str
    round: int
    mic_to_wire_ms: npt.NDArray[np.float64] = field(repr=False)
    """Capture to arrival at the simulator, for every sample the agent received."""
    trigger_to_first_chunk_ms: float
    samples_lost: int
    samples_duplicated: int
    samples_altered: int
    playback_ms: float
    """The answer's last sample: on the wire (sent) to out of the speaker."""
    trigger_to_greeting_ms: float
    """The trigger to the greeting's first sample out of the speaker."""
    speech_end_to_answer_ms: float
    """The end of the question's speech in the room to the answer's first sample out of the
    speaker: what the user waits (the ``turn`` line's figure, measured from outside)."""
    interruption_to_silence_ms: float
    cpu_s_per_minute: float
    peak_rss_mb: float
    conversation_s: float

    def summary(self) -> dict[str, Any]:
        values = {key: value for key, value in self.__dict__.items() if key != "mic_to_wire_ms"}
        values["mic_to_wire_p50_ms"] = float(np.percentile(self.mic_to_wire_ms, 50))
        values["mic_to_wire_p95_ms"] = float(np.percentile(self.mic_to_wire_ms, 95))
        return values


@dataclass
class RoomFiles:
    room: Path
    question: Path
    room_samples: Int16Array
    question_samples: Int16Array


# ---------------------------------------------------------------------------- the clients


def client_command(client: str, sim: AgentSimulator, files: RoomFiles, folder: Path) -> list[str]:
    record, output = folder / "record.json", folder / "speaker.wav"
    if client == "sdk":
        return [
            sys.executable,
            "-m",
            "benchmarks.sdk_client",
            sim.http_url,
            *(str(path) for path in (files.room, files.question, output, record)),
        ]
    config = folder / "agentpi.toml"
    config.write_text(
        f'[agent]\nagent_id = "bench"\nurl = "{sim.url}"\n'
        f'[trigger]\nmode = "{"control" if client == "agentpi-no-wake" else "wake"}"\n'
        f'[audio]\ninput = "file:{files.room}"\noutput = "file:{output}"\n'
        'echo = "off"\ncues = false\n'
        f"[conversation]\nsilence_close_s = {SILENCE_CLOSE_S}\n"
    )
    return [
        sys.executable,
        "-m",
        "benchmarks.agentpi_client",
        *(str(path) for path in (config, files.room, files.question, record)),
    ]


def client_peak_rss_mb(pid: int) -> float:
    rss = peak_rss_mb(pid)
    if rss is None:
        raise Incomplete(f"no VmHWM for process {pid}")
    return rss


class Child:
    """A client process and its stdout lines."""

    def __init__(self, client: str, process: asyncio.subprocess.Process, stderr: Path) -> None:
        self.client = client
        self.process = process
        self.stderr = stderr
        self.cpu: list[tuple[float, float]] = []

    def send(self, command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\n".encode())

    async def expect(self, wanted: str, timeout: float) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = await asyncio.wait_for(
                    self.process.stdout.readline(), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise self.failure(f"no {wanted!r} within {timeout:g} s") from None
            text = line.decode().strip()
            if text == wanted:
                return
            if not line or text.startswith("refused"):
                raise self.failure(text or "exited")

    def failure(self, what: str) -> Incomplete:
        tail = self.stderr.read_text(errors="replace").strip().splitlines()[-5:]
        detail = "\n    ".join(tail)
        return Incomplete(f"{self.client}: {what}" + (f"\n    {detail}" if tail else ""))

    def take_cpu_sample(self) -> None:
        used = cpu_seconds(self.process.pid)
        if used is not None:
            self.cpu.append((time.monotonic(), used))

    async def sample_cpu(self) -> None:
        while True:
            self.take_cpu_sample()
            await asyncio.sleep(0.02)


async def until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """``condition()`` once it is truthy, checked every 5 ms."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise Incomplete(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)
    return value


async def one_conversation(
    client: str,
    round_: int,
    sim: AgentSimulator,
    files: RoomFiles,
    folder: Path,
    trigger_after_s: float = 0.5,
) -> Figures:
    folder.mkdir(parents=True)
    stderr = folder / "stderr.txt"
    with stderr.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            *client_command(client, sim, files, folder),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    child = Child(client, process, stderr)
    sampling: asyncio.Task[None] | None = None
    try:
        await child.expect("ready", 120)
        await asyncio.sleep(trigger_after_s)
        sampling = asyncio.create_task(child.sample_cpu())
        before = len(sim.conversations)
        triggered_at = time.monotonic()
        child.send("start")
        record: ConversationRecord = await until(
            lambda: len(sim.conversations) > before and sim.conversations[before], 15, "a socket"
        )
        greeting = await until(
            lambda: record.turns and record.turns[0].first_audio_at, 15, "the greeting"
        )
        await asyncio.sleep(max(0.0, greeting + SPEAK_AFTER_S - time.monotonic()))
        child.send("speak")
        await child.expect("ended", 60)
        await asyncio.wait_for(record.done.wait(), 10)
        sampling.cancel()
        child.take_cpu_sample()  # one from after the close
        rss = client_peak_rss_mb(process.pid)
        child.send("exit")
        code = await asyncio.wait_for(process.wait(), 30)
        if code != 0:
            raise child.failure(f"exited with {code}")
    finally:
        if sampling is not None:
            sampling.cancel()
        if process.returncode is None:
            process.kill()
            await process.wait()
    left = json.loads((folder / "record.json").read_text())
    output, _ = read_wav(folder / "speaker.wav")
    try:
        return measure(client, round_, record, left, output, files, triggered_at, child.cpu, rss)
    except Incomplete as exc:
        raise Incomplete(f"{client}, round {round_ + 1}: {exc}") from None


# ---------------------------------------------------------------------------- measuring


def measure(
    client: str,
    round_: int,
    record: ConversationRecord,
    left: dict[str, Any],
    output: Int16Array,
    files: RoomFiles,
    triggered_at: float,
    cpu: list[tuple[float, float]],
    rss: float,
) -> Figures:
    check_conversation(record)
    if left["question_at"] is None or left["origin"] is None:
        raise Incomplete("the question was never spoken into the microphone")
    origin: float = left["origin"]
    room = room_with_question(files.room_samples, files.question_samples, left["question_at"])
    mic = follow_microphone(record, room, origin)
    question = (left["question_at"], left["question_at"] + len(files.question_samples))
    if not (mic.first <= question[0] and mic.last >= question[1]):
        raise Incomplete(
            f"the agent received room samples {mic.first}..{mic.last}, "
            f"not the whole question {question[0]}..{question[1]}"
        )
    trigger_sample = math.ceil((triggered_at - origin) * RATE)
    speech_ended_at = origin + (question[0] + speech_bounds(files.question_samples)[1]) / RATE
    lost_before_first = max(0, mic.first - trigger_sample)
    speaker = follow_speaker(record, left["blocks"], output)
    greeting, answer = record.turns
    assert greeting.interrupted_at is not None and answer.last_audio_at is not None
    closed_at = record.closed_at or time.monotonic()
    return Figures(
        client=client,
        round=round_,
        mic_to_wire_ms=mic.latencies_s * 1e3,
        trigger_to_first_chunk_ms=(record.user_audio_arrivals[0][0] - triggered_at) * 1e3,
        samples_lost=lost_before_first + mic.lost,
        samples_duplicated=mic.duplicated,
        samples_altered=mic.altered,
        playback_ms=(speaker.answer_ended_at - answer.last_audio_at) * 1e3,
        trigger_to_greeting_ms=(speaker.greeting_started_at - triggered_at) * 1e3,
        speech_end_to_answer_ms=(speaker.answer_started_at - speech_ended_at) * 1e3,
        interruption_to_silence_ms=(speaker.greeting_ended_at - greeting.interrupted_at) * 1e3,
        cpu_s_per_minute=cpu_per_minute(cpu, record.opened_at, closed_at),
        peak_rss_mb=rss,
        conversation_s=closed_at - record.opened_at,
    )


def check_conversation(record: ConversationRecord) -> None:
    problems = []
    if record.init is None:
        problems.append("no conversation_initiation_client_data")
    bad = [note for _, note in record.notes if "invalid" in note or "not init" in note]
    problems += bad
    if len(record.turns) != 2:
        problems.append(f"{len(record.turns)} agent turns, not the greeting and the answer")
    else:
        greeting, answer = record.turns
        if greeting.interrupted_at is None:
            problems.append("the user's question did not interrupt the greeting")
        if answer.interrupted_at is not None or answer.completed_at is None:
            problems.append("the answer was not sent in full")
    if not any(note == "user speech ended" for _, note in record.notes):
        problems.append("the simulator never heard the question end")
    if record.pongs_received == 0 or record.missing_pongs:
        problems.append(f"pongs: {record.pongs_received} received, {record.missing_pongs} missed")
    if (record.closed_by, record.close_code) != ("client", 1000):
        problems.append(f"closed by {record.closed_by or '?'} with {record.close_code}")
    if problems:
        raise Incomplete("; ".join(problems))


@dataclass
class MicrophonePath:
    first: int
    """Where in the room the first sample the agent received was captured."""
    last: int
    """Where in the room the last one ended."""
    latencies_s: npt.NDArray[np.float64]
    lost: int
    duplicated: int
    altered: int


def locate(room: Int16Array, chunk: Int16Array) -> int | None:
    """Where ``chunk`` is in ``room`` (exactly), or None."""
    probe = min(len(chunk), 24)
    candidates = np.flatnonzero(room[: len(room) - len(chunk) + 1] == chunk[0])
    for offset in range(1, probe):
        candidates = candidates[room[candidates + offset] == chunk[offset]]
    for start in candidates:
        if np.array_equal(room[start : start + len(chunk)], chunk):
            return int(start)
    return None


def follow_microphone(
    record: ConversationRecord, room: Int16Array, origin: float
) -> MicrophonePath:
    """Every chunk the agent received, found in the room: when each of its samples was captured,
    and what went missing, came twice or changed on the way."""
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2").astype(np.int16)
    latencies: list[npt.NDArray[np.float64]] = []
    lost = duplicated = altered = 0
    first: int | None = None
    expected: int | None = None
    begin = 0
    for arrived, end_byte in record.user_audio_arrivals:
        chunk = received[begin : end_byte // 2]
        begin = end_byte // 2
        if not len(chunk):
            continue
        if expected is not None and np.array_equal(room[expected : expected + len(chunk)], chunk):
            at: int | None = expected
        else:
            at = locate(room, chunk)
        if at is None:
            altered += len(chunk)
            continue
        if expected is not None:
            lost += max(0, at - expected)
            duplicated += max(0, expected - at)
        first = at if first is None else first
        captured = origin + (np.arange(at, at + len(chunk)) + 1) / RATE
        latencies.append(arrived - captured)
        expected = at + len(chunk)
    if first is None or expected is None:
        raise Incomplete("none of the audio the agent received came from the microphone")
    return MicrophonePath(first, expected, np.concatenate(latencies), lost, duplicated, altered)


@dataclass
class SpeakerPath:
    greeting_started_at: float
    """When the greeting's first sample finished playing."""
    greeting_ended_at: float
    """When the last sample of the greeting the speaker played finished playing."""
    answer_started_at: float
    answer_ended_at: float


def sent_audio(record: ConversationRecord, event_id: int) -> Int16Array:
    pieces = []
    for _, raw in record.sent:
        frame = json.loads(raw)
        if frame.get("type") == "audio" and frame["audio_event"]["event_id"] == event_id:
            pieces.append(base64.b64decode(frame["audio_event"]["audio_base_64"]))
    return np.frombuffer(b"".join(pieces), dtype="<i2").astype(np.int16)


def follow_speaker(
    record: ConversationRecord, blocks: list[list[float]], output: Int16Array
) -> SpeakerPath:
    """What the speaker played of the agent's audio, in order, and when each sample finished."""
    starts = np.array([block[0] for block in blocks])
    offsets = np.cumsum([0] + [int(block[1]) for block in blocks])
    totals = np.array([int(block[2]) for block in blocks])
    before = np.concatenate([[0], totals[:-1]])
    # a block plays what was queued first, then silence
    played = np.concatenate(
        [np.zeros(0, np.int16)]
        + [output[at : at + n] for at, n in zip(offsets[:-1], totals - before, strict=True)]
    )

    def finished_at(sample: int) -> float:
        """When the speaker finished playing the agent's ``sample``-th sample."""
        block = int(np.searchsorted(totals, sample, side="right"))
        return float(starts[block] + (sample - before[block] + 1) / RATE)

    greeting_turn, answer_turn = record.turns
    greeting = sent_audio(record, greeting_turn.event_id)
    answer = sent_audio(record, answer_turn.event_id)
    if len(answer) != answer_turn.audio_samples:
        raise Incomplete(
            f"the answer sent was {len(answer)} samples of {answer_turn.audio_samples}"
        )
    greeting_played = len(played) - len(answer)
    if greeting_played <= 0 or not np.array_equal(played[greeting_played:], answer):
        raise Incomplete("the speaker did not play the whole answer, exactly")
    if not np.array_equal(played[:greeting_played], greeting[:greeting_played]):
        raise Incomplete("what the speaker played of the greeting is not what the agent sent")
    return SpeakerPath(
        finished_at(0),
        finished_at(greeting_played - 1),
        finished_at(greeting_played),
        finished_at(len(played) - 1),
    )


def cpu_per_minute(cpu: list[tuple[float, float]], opened_at: float, closed_at: float) -> float:
    """CPU seconds per minute over the conversation, from the samples around it."""
    before = [sample for sample in cpu if sample[0] <= opened_at]
    after = [sample for sample in cpu if sample[0] >= closed_at]
    if not before or not after:
        raise Incomplete("the CPU samples do not cover the conversation")
    (t0, c0), (t1, c1) = before[-1], after[0]
    return (c1 - c0) / (t1 - t0) * 60


# ---------------------------------------------------------------------------- the run


RIG_ALONE = """
import time
import benchmarks.rig
time.sleep(0.3)
print("ready", flush=True)
input()
"""

RIG_RUNNING = """
import asyncio, sys, time
from pathlib import Path
from agentpi.audio.capture import Microphone
from benchmarks.rig import RoomMicrophone, SpeakerLog
from agentpi.audio.file import FileSink

async def main(room, question, output):
    stream = RoomMicrophone(Path(room), Path(question), 40, origin=time.monotonic())
    mic = Microphone(lambda: stream)
    mic.prepare(stream)
    mic.open()
    sink = FileSink(output)
    SpeakerLog(sink)
    await sink.start(16000, lambda: None)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, input)
    await sink.stop()
    mic.close()

asyncio.run(main(*sys.argv[1:4]))
"""
RIG_CPU_S = 15.0


async def rig_alone_rss_mb() -> float:
    """Peak RSS of a process holding only what both clients' processes share: Python, numpy and
    the file-backed audio."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RIG_ALONE,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None and process.stdin is not None
    await asyncio.wait_for(process.stdout.readline(), 60)
    rss = client_peak_rss_mb(process.pid)
    process.stdin.write(b"\n")
    await process.wait()
    return rss


async def rig_alone_cpu_s_per_minute(files: RoomFiles, folder: Path) -> float:
    """CPU of the shared audio rig running on its own, as during a conversation: the room
    microphone's capture thread into a microphone ring, the speaker's FileSink on a loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", RIG_RUNNING, str(files.room), str(files.question),
        str(folder / "rig-speaker.wav"),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None and process.stdin is not None
    await asyncio.wait_for(process.stdout.readline(), 60)
    await asyncio.sleep(1.0)
    start, started = cpu_seconds(process.pid), time.monotonic()
    await asyncio.sleep(RIG_CPU_S)
    end, ended = cpu_seconds(process.pid), time.monotonic()
    process.stdin.write(b"\n")
    await process.wait()
    if start is None or end is None:
        raise Incomplete("the rig alone ended early")
    return (end - start) / (ended - started) * 60


@dataclass
class ClientRuns:
    figures: list[Figures]
    rig_rss_mb: float
    rounds: int
    rig_cpu_s_per_minute: float = 0.0


async def run_all(
    folder: Path, rounds: int = ROUNDS, clients: tuple[str, ...] = CLIENTS
) -> ClientRuns:
    folder.mkdir(parents=True, exist_ok=True)
    spoken, rate = read_wav(bundled("hello.wav"))
    assert rate == RATE
    room_path, question_path = write_room(folder, spoken)
    files = RoomFiles(room_path, question_path, read_wav(room_path)[0], read_wav(question_path)[0])
    figures = []
    draw = random.Random(20261125)
    async with AgentSimulator(SCRIPT) as sim:
        for round_ in range(rounds):
            trigger_after_s = draw.uniform(*TRIGGER_AFTER_S)
            shift = round_ % len(clients)
            for client in clients[shift:] + clients[:shift]:
                where = folder / f"round{round_ + 1}-{client}"
                figures.append(
                    await one_conversation(client, round_, sim, files, where, trigger_after_s)
                )
    rig_cpu = await rig_alone_cpu_s_per_minute(files, folder)
    return ClientRuns(figures, await rig_alone_rss_mb(), rounds, rig_cpu)


def run(folder: Path, rounds: int = ROUNDS, clients: tuple[str, ...] = CLIENTS) -> ClientRuns:
    return asyncio.run(run_all(folder, rounds, clients))
