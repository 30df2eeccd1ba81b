"""The headline table of ``make bench``, and the JSON and PNG it leaves in benchmarks/results/."""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.versus_sdk import ClientRuns, Figures
from benchmarks.wake import WakeFigures

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Row:
    figure: str
    peer: str
    ours: float
    theirs: float
    digits: int = 1

    @property
    def ratio(self) -> float | None:
        return self.ours / self.theirs if self.theirs else None


def client_rows(runs: ClientRuns) -> list[Row]:
    def median(client: str, pick: Callable[[Figures], float]) -> float:
        return statistics.median(pick(f) for f in runs.figures if f.client == client)

    def row(figure: str, pick: Callable[[Figures], float], digits: int = 1) -> Row:
        return Row(figure, "SDK", median("agentpi", pick), median("sdk", pick), digits)

    rows = [
        row("mic to wire, ms (p50)", lambda f: float(np.percentile(f.mic_to_wire_ms, 50))),
        row("mic to wire, ms (p95)", lambda f: float(np.percentile(f.mic_to_wire_ms, 95))),
        row("trigger to first audio at the agent, ms", lambda f: f.trigger_to_first_chunk_ms),
        row("mic samples lost after the trigger", lambda f: f.samples_lost, 0),
        row(
            "mic samples duplicated or altered",
            lambda f: f.samples_duplicated + f.samples_altered,
            0,
        ),
        row("last agent audio on the wire to speaker, ms", lambda f: f.playback_ms),
        row("trigger to the greeting at the speaker, ms", lambda f: f.trigger_to_greeting_ms),
        row(
            "end of the question to the answer at the speaker, ms",
            lambda f: f.speech_end_to_answer_ms,
        ),
        row("interruption to silence at the speaker, ms", lambda f: f.interruption_to_silence_ms),
        row("CPU s per minute of conversation", lambda f: f.cpu_s_per_minute, 2),
        row(
            "CPU s per minute above the shared audio rig",
            lambda f: f.cpu_s_per_minute - runs.rig_cpu_s_per_minute,
            2,
        ),
        row("peak RSS, MB", lambda f: f.peak_rss_mb),
        row("peak RSS above the shared audio rig, MB", lambda f: f.peak_rss_mb - runs.rig_rss_mb),
    ]
    if any(f.client == "agentpi-no-wake" for f in runs.figures):
        for figure, pick, digits in (
            ("CPU s per minute of conversation", lambda f: f.cpu_s_per_minute, 2),
            ("peak RSS, MB", lambda f: f.peak_rss_mb, 1),
        ):
            ours, theirs = median("agentpi-no-wake", pick), median("sdk", pick)
            rows.append(Row(f"{figure}, no wake model", "SDK", ours, theirs, digits))
    return rows


def wake_rows(wake: WakeFigures) -> list[Row]:
    def row(figure: str, variant: str, pick: str, digits: int, peer: str = "bare oww") -> Row:
        ours, theirs = wake.median(variant, pick), wake.median(peer, pick)
        return Row(figure, "bare oww", ours, theirs, digits)

    micro = "agentpi, microWakeWord"
    return [
        row("idle, CPU ms per s of audio (real time)", "agentpi", "cpu_ms_per_s", 2),
        row("idle, CPU ms per s, generic LED board", "agentpi, generic LEDs", "cpu_ms_per_s", 2),
        row("idle, CPU ms per s, microWakeWord engine", micro, "cpu_ms_per_s", 2),
        row(
            "idle in a loud room, CPU ms per s",
            "agentpi, loud room",
            "cpu_ms_per_s",
            2,
            peer="bare oww, loud room",
        ),
        row(
            "idle in a loud room, microWakeWord engine",
            "agentpi, microWakeWord, loud room",
            "cpu_ms_per_s",
            2,
            peer="bare oww, loud room",
        ),
        row("idle, peak RSS with the wake model, MB", "agentpi", "rss_mb", 1),
        row("idle, peak RSS, microWakeWord engine, MB", micro, "rss_mb", 1),
        row("process start to listening, s", "agentpi", "start_s", 2),
    ]


def budget_rows(runs: ClientRuns, wake: WakeFigures | None) -> list[Row]:
    """The small board budget: what a Pi Zero 2 W (512 MB, four A53 cores) has to carry."""
    rows = [row for row in client_rows(runs) if row.figure.startswith(("CPU s per", "peak RSS,"))]
    rows = [row for row in rows if "no wake" not in row.figure]
    if wake is not None:
        rows = wake_rows(wake) + rows
    return rows


def import_table(wake: WakeFigures) -> str:
    lines = [f"{'memory of each big import (peak RSS over python + numpy)':58} {'MB':>6}"]
    lines += [f"{name:58} {mb:6.1f}" for name, mb in wake.imports_mb.items()]
    return "\n".join(lines)


def table(rows: list[Row]) -> str:
    lines = [f"{'figure':50} {'agentpi':>9} {'peer':>9} {'':9} {'ratio':>6}"]
    for row in rows:
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"{row.figure:50} {row.ours:9.{row.digits}f} {row.theirs:9.{row.digits}f} "
            f"{row.peer:9} {ratio:>6}"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("model name", "Model")):
            cpu = line.split(":", 1)[1].strip()
            break
    memory_kb = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kb = int(line.split()[1])

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "not installed"

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "architecture": platform.machine(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {
            name: version(name)
            for name in ("agentpi", "elevenlabs", "websockets", "numpy", "openwakeword")
        },
    }


def describe(info: dict[str, Any]) -> str:
    packages = ", ".join(f"{name} {v}" for name, v in info["packages"].items())
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB, {info['architecture']}, "
        f"Linux {info['kernel']}, Python {info['python']}; {packages}"
    )


def write_results(
    rows: list[Row], runs: ClientRuns, wake: WakeFigures | None, info: dict[str, Any]
) -> tuple[Path, Path]:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d-%H%M%S")
    data = {
        "when_utc": stamp,
        "machine": info,
        "rounds": runs.rounds,
        "table": [{**row.__dict__, "ratio": row.ratio} for row in rows],
        "conversations": [figures.summary() for figures in runs.figures],
        "rig_alone_rss_mb": runs.rig_rss_mb,
        "rig_alone_cpu_s_per_minute": runs.rig_cpu_s_per_minute,
        "wake": None
        if wake is None
        else {
            "audio_s": wake.audio_s,
            "samples": {k: [s.__dict__ for s in v] for k, v in wake.samples.items()},
            "imports_mb": wake.imports_mb,
        },
    }
    json_path = RESULTS / f"bench-{stamp}.json"
    json_path.write_text(json.dumps(data, indent=1))
    png_path = RESULTS / f"bench-{stamp}.png"
    plot(runs, png_path, describe(info))
    return json_path, png_path


def plot(runs: ClientRuns, path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"agentpi": "tab:green", "sdk": "tab:blue"}
    names = {"agentpi": "agentpi", "sdk": "elevenlabs SDK"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))
    for client in ("agentpi", "sdk"):
        pooled = np.concatenate([f.mic_to_wire_ms for f in runs.figures if f.client == client])
        left.hist(
            pooled,
            bins=np.linspace(0, max(300.0, float(pooled.max())), 120),
            density=True,
            histtype="step",
            linewidth=1.5,
            color=colours[client],
            label=f"{names[client]} (p50 {np.percentile(pooled, 50):.0f} ms, "
            f"p95 {np.percentile(pooled, 95):.0f} ms)",
        )
    left.set_xlabel("mic to wire: a sample's capture to its arrival at the agent (ms)")
    left.set_ylabel("share of samples (density)")
    left.set_title(f"every sample of {runs.rounds} conversations each")
    left.legend()
    kinds: list[tuple[str, Callable[[Figures], float]]] = [
        ("trigger to\nfirst audio", lambda f: f.trigger_to_first_chunk_ms),
        ("last audio on the\nwire to speaker", lambda f: f.playback_ms),
        ("interruption to\nsilence", lambda f: f.interruption_to_silence_ms),
    ]
    for index, (_, pick) in enumerate(kinds):
        for shift, client in ((-0.12, "agentpi"), (0.12, "sdk")):
            values = [pick(f) for f in runs.figures if f.client == client]
            right.scatter(
                [index + shift] * len(values),
                values,
                color=colours[client],
                label=names[client] if index == 0 else None,
                alpha=0.8,
            )
    right.set_xticks(range(len(kinds)), [label for label, _ in kinds])
    right.set_ylabel("ms, one dot per conversation")
    right.axhline(0, color="grey", linewidth=0.5)
    right.legend()
    figure.suptitle(
        f"agentpi vs the elevenlabs SDK, same simulator and audio\n{subtitle}", fontsize=9
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
