"""The PyAudio path, end to end, against the least code that holds the same conversation.

Both clients run as child processes on the same virtual ALSA card (tests/alsa.py: named pipes
paced in real time) against the same scripted simulator: a long greeting the agent interrupts
after 1.5 s, then the user's question, then the agent's goodbye and hang-up. Rounds alternate
between agentpi (``agentpi run``, echo canceller on, as shipped) and the bare client
(benchmarks/bare_client.py). Figures:

- capture to send: from the moment a microphone sample is written into the card to the moment
  the simulator has the chunk that carries it (every chunk of the conversation, p50 and p95);
- interruption to silence: from the simulator sending ``interruption`` to the last audible
  sample coming out of the card, less what the card's own pipe held at that moment (a real
  card's hardware buffer; this one's is a 4 KiB pipe);
- CPU per second of conversation: the client process's CPU time while the conversation is open;
- wake-ups per second of conversation: its threads' context switches in the same span (CPU
  follows them more than the work done per chunk).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tests.alsa import VirtualSoundCard
from tests.helpers import AGENTPI, HELLO_WAV

from agentpi.agent.script import CloseScript, SimulatorScript, TurnScript
from agentpi.agent.sim_records import ConversationRecord
from agentpi.agent.simulator import AgentSimulator
from agentpi.audio.convert import read_wav
from benchmarks.proc import context_switches, cpu_seconds

ROUNDS = 3
GREETING = " ".join(["This greeting goes on so that there is something to interrupt."] * 3)
SCRIPT = SimulatorScript(
    first_turn=TurnScript(response=GREETING, interrupt_after_s=1.5),
    turns=(TurnScript(response="Goodbye then.", close=CloseScript(1000, "done")),),
)


@dataclass
class Figures:
    latencies_ms: list[float] = field(default_factory=list)
    silence_ms: list[float] = field(default_factory=list)
    cpu_ms_per_s: list[float] = field(default_factory=list)
    switches_per_s: list[float] = field(default_factory=list)


KINDS = {
    "agentpi": 'echo = "aec"',
    "agentpi, echo off": 'echo = "off"',
    "bare": "",
    "bare + canceller": "",
}
PEER_OF = {"agentpi": "bare + canceller", "agentpi, echo off": "bare"}
"""Each agentpi client against the bare client that does the same work: the echo canceller on
every chunk, or none."""


def client_command(kind: str, url: str, folder: Path) -> list[str]:
    if kind not in PEER_OF:
        target = f"{url}/v1/convai/conversation?agent_id=bench"
        aec = ["--aec"] if kind == "bare + canceller" else []
        return [sys.executable, "-m", "benchmarks.bare_client", *aec, target]
    config = folder / "agentpi.toml"
    config.write_text(
        f'[agent]\nagent_id = "bench"\nurl = "{url}"\n[trigger]\nmode = "immediate"\n'
        '[audio]\ninput = "agentpi_in"\noutput = "agentpi_out"\ncues = false\n'
        f"{KINDS[kind]}\n"
        "[conversation]\nsilence_close_s = 5.0\n"
    )
    return [*AGENTPI, "run", "--once", "--config", str(config)]


async def one_round(kind: str, folder: Path, figures: Figures) -> None:
    spoken, _ = read_wav(HELLO_WAV)
    with VirtualSoundCard(folder) as card:
        async with AgentSimulator(SCRIPT) as sim:
            process = await asyncio.create_subprocess_exec(
                *client_command(kind, sim.url, folder),
                env=card.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            cpu: list[tuple[float, float]] = []
            switches: list[tuple[float, float]] = []
            while process.returncode is None:
                used, woken = cpu_seconds(process.pid), context_switches(process.pid)
                if used is not None and woken is not None:
                    cpu.append((time.monotonic(), used))
                    switches.append((time.monotonic(), woken))
                if sim.conversations and not card.fed_at and not card._queue:
                    card.say(np.concatenate([np.zeros(48000, np.int16), spoken]))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 0.02)
            await sim.wait_for_conversations(1, timeout=10)
            record = sim.conversations[0]
    measure(record, card, cpu, switches, figures)


def measure(
    record: ConversationRecord,
    card: VirtualSoundCard,
    cpu: list[tuple[float, float]],
    switches: list[tuple[float, float]],
    figures: Figures,
) -> None:
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2")
    spoken, _ = read_wav(HELLO_WAV)
    # where the question starts in what the agent got (the echo canceller may change a few
    # samples, so by correlation), and in the microphone's own stream
    at_agent = align(received, spoken)
    at_mic = card.fed_at[0][1] + 48000
    offset = at_mic - at_agent
    written_totals = [total for _, total in card.written]
    for arrived, end in record.user_audio_arrivals:
        sample = end // 2 - 1 + offset
        index = bisect.bisect_right(written_totals, sample)
        if sample >= 0 and index < len(card.written):
            figures.latencies_ms.append((arrived - card.written[index][0]) * 1e3)
    turn = record.turns[0]
    assert turn.interrupted_at is not None
    figures.silence_ms.append(interruption_to_silence_ms(card, turn.interrupted_at))
    closed = record.closed_at or time.monotonic()
    for samples, rates, scale in (
        (cpu, figures.cpu_ms_per_s, 1e3),
        (switches, figures.switches_per_s, 1.0),
    ):
        during = [(t, value) for t, value in samples if record.opened_at <= t <= closed]
        if len(during) >= 2:
            (t0, v0), (t1, v1) = during[0], during[-1]
            rates.append((v1 - v0) / (t1 - t0) * scale)


def interruption_to_silence_ms(card: VirtualSoundCard, interrupted_at: float) -> float:
    """From the interruption to the last audible sample out of the card, less what the card's
    pipe already held then: the pipe is the virtual card's own, beyond any client's reach (a
    real card's buffer is dropped with the stream)."""
    audible = [t for t, block in card.played if t > interrupted_at and block.any()]
    if not audible:
        return 0.0
    held_before = [held for t, held in card.pipe_held if t <= interrupted_at]
    in_pipe_s = (held_before[-1] if held_before else 0) / card.rate
    return max(0.0, max(audible) - interrupted_at - in_pipe_s) * 1e3


def align(longer: npt.NDArray[np.int16], clip: npt.NDArray[np.int16]) -> int:
    """Where ``clip`` starts inside ``longer`` (cross-correlation by FFT)."""
    size = 1 << (len(longer) + len(clip)).bit_length()
    a = np.fft.rfft(longer.astype(np.float64), size)
    b = np.fft.rfft(clip.astype(np.float64)[::-1], size)
    correlation = np.fft.irfft(a * b, size)[len(clip) - 1 : len(longer)]
    return int(np.argmax(correlation))


def main() -> None:
    results = {kind: Figures() for kind in KINDS}
    with tempfile.TemporaryDirectory() as name:
        for round_ in range(ROUNDS):
            for number, kind in enumerate(KINDS):
                folder = Path(name) / f"{round_}-{number}"
                folder.mkdir()
                asyncio.run(one_round(kind, folder, results[kind]))
    print(f"virtual ALSA card (named pipes, real time), {ROUNDS} rounds each, alternating")
    print(f"{'figure':40} {'client':>18} {'value':>8} {'peer':>16} {'value':>8} {'ratio':>6}")

    def rows(label: str, pick: Callable[[Figures], float]) -> None:
        for kind, peer in PEER_OF.items():
            ours, theirs = pick(results[kind]), pick(results[peer])
            ratio = ours / theirs if theirs else float("nan")
            print(f"{label:40} {kind:>18} {ours:8.1f} {peer:>16} {theirs:8.1f} {ratio:6.2f}")

    for q in (50, 95):

        def percentile(figures: Figures, q: int = q) -> float:
            return float(np.percentile(figures.latencies_ms, q))

        rows(f"capture to send, ms (p{q})", percentile)
    rows("interruption to silence, ms (median)", lambda f: statistics.median(f.silence_ms))
    rows("CPU ms per s of conversation (median)", lambda f: statistics.median(f.cpu_ms_per_s))
    rows("wake-ups per s of conversation (median)", lambda f: statistics.median(f.switches_per_s))
    cpu = {kind: statistics.median(results[kind].cpu_ms_per_s) for kind in KINDS}
    print(
        f"the canceller's own CPU, ms per s: {cpu['bare + canceller'] - cpu['bare']:.1f} in the "
        f"bare client, {cpu['agentpi'] - cpu['agentpi, echo off']:.1f} in agentpi"
    )


if __name__ == "__main__":
    main()
