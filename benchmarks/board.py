"""One line a user can paste from a real board: ``make bench BENCH=board`` (a few minutes, no
sound card, no network, no elevenlabs SDK).

The board (from /proc/device-tree/model on a Raspberry Pi), then for each wake engine the idle
device's CPU per second of audio at real time and its peak RSS (``agentpi run`` on a file
microphone in a quiet room, as ``make bench BENCH=idle`` runs it), the process start to
listening, and a conversation's CPU per minute against the bundled simulator (the SDK
comparison's conversation, agentpi alone), above what the shared audio rig costs by itself.
Medians of ``BOARD_ROUNDS`` runs (2). The README keeps the table of boards reported.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

from benchmarks import report, versus_sdk, wake

ROUNDS = int(os.environ.get("BOARD_ROUNDS", "2"))
ENGINES = ("tflite", "microwakeword")
HEADER = (
    "| board | Python | idle CPU ms/s: openWakeWord | microWakeWord | idle RSS MB: openWakeWord "
    "| microWakeWord | start to listening, s | conversation CPU s/min above the rig |"
)


def board_name() -> str:
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text(errors="replace").strip("\0 \n")
    cpu = report.machine()["cpu"]
    return f"{cpu}, {os.cpu_count()} cores ({platform.machine()})"


def idle(folder: Path) -> dict[str, list[wake.Sample]]:
    room = wake.quiet_room(folder)
    samples: dict[str, list[wake.Sample]] = {engine: [] for engine in ENGINES}
    for round_ in range(ROUNDS):
        for engine in ENGINES:
            ready = folder / f"events-{round_}-{engine}.jsonl"
            command = wake.idle_command(wake.config_for(folder, room, False, engine), ready)
            samples[engine].append(wake.watch(command, ready, dict(os.environ)))
    return samples


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="agentpi-board-") as name:
        folder = Path(name)
        samples = idle(folder)
        runs = versus_sdk.run(folder / "conversation", ROUNDS, ("agentpi",))

    def median(engine: str, pick: str) -> float:
        return statistics.median(getattr(s, pick) for s in samples[engine])

    conversation = statistics.median(f.cpu_s_per_minute for f in runs.figures)
    python = platform.python_version()
    row = (
        f"| {board_name()} | {python} | {median('tflite', 'cpu_ms_per_s'):.1f} | "
        f"{median('microwakeword', 'cpu_ms_per_s'):.1f} | {median('tflite', 'rss_mb'):.0f} | "
        f"{median('microwakeword', 'rss_mb'):.0f} | {median('tflite', 'start_s'):.2f} | "
        f"{conversation - runs.rig_cpu_s_per_minute:.2f} |"
    )
    print(f"{ROUNDS} rounds each, medians; paste the last line into the README's board table")
    print(HEADER)
    print("|---|---|--:|--:|--:|--:|--:|--:|")
    print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
