"""`make bench`: every figure against a peer measured in the same run, as a ratio.

    python -m benchmarks [clients] [idle] [deflate] [protocol] [soundcard] [soak] [phrase_end]
                         [engines] [board]
    (default: all but idle, which clients includes, and board, which repeats parts of both)

``clients`` is the headline: agentpi against the official elevenlabs SDK (and the idle wake
listener against openWakeWord's bare loop), a table, and JSON + PNG in benchmarks/results/.
``idle`` is the idle part of it alone (the listener at real time against openWakeWord's loop).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import (
    board,
    deflate,
    engines,
    phrase_end,
    protocol,
    report,
    soundcard,
    versus_sdk,
    wake,
)

PARTS = (
    "clients",
    "idle",
    "deflate",
    "protocol",
    "soundcard",
    "soak",
    "phrase_end",
    "engines",
    "board",
)


def clients() -> int:
    info = report.machine()
    with tempfile.TemporaryDirectory(prefix="agentpi-bench-") as name:
        try:
            runs = versus_sdk.run(Path(name))
        except versus_sdk.Incomplete as exc:
            print(f"not reporting: a conversation was not complete: {exc}", file=sys.stderr)
            return 1
    idle = wake.measure()
    rows = report.client_rows(runs) + (report.wake_rows(idle) if idle is not None else [])
    print(
        f"agentpi vs the elevenlabs SDK: one simulator, the same WAV and file-backed audio, "
        f"{runs.rounds} conversations each, alternating; medians"
    )
    print(f"machine: {report.describe(info)}")
    print(report.table(rows))
    print("\nsmall board budget (the rows above a Pi Zero 2 W cares about most)")
    print(report.table(report.budget_rows(runs, idle)))
    if idle is not None:
        print(report.import_table(idle))
    json_path, png_path = report.write_results(rows, runs, idle, info)
    print(f"results: {json_path}\n         {png_path}")
    return 0


def idle() -> int:
    figures = wake.measure()
    if figures is None:
        print("no peer: openwakeword does not install on this Python", file=sys.stderr)
        return 1
    print(f"machine: {report.describe(report.machine())}")
    print(report.table(report.wake_rows(figures)))
    print(report.import_table(figures))
    return 0


def main(argv: list[str]) -> int:
    parts = argv or [part for part in PARTS if part not in ("idle", "board")]
    unknown = [part for part in parts if part not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]!r}: choose from {', '.join(PARTS)}", file=sys.stderr)
        return 2
    failed = 0
    if "clients" in parts:
        print("== agentpi and the official SDK, side by side ==")
        failed |= clients()
    if "idle" in parts:
        print("== the idle device at real time, against openWakeWord's bare loop ==")
        failed |= idle()
    if "deflate" in parts:
        print("\n== permessage-deflate on the Agent WebSocket, off and on ==")
        deflate.main()
    if "protocol" in parts:
        print("\n== protocol layer ==")
        protocol.main()
    if "soundcard" in parts:
        print("\n== conversation through a sound card (PyAudio) ==")
        soundcard.main()
    if "phrase_end" in parts:
        print("\n== where the upload starts after the wake phrase (clip set) ==")
        failed |= phrase_end.main()
    if "board" in parts:
        print("== this board, in one line ==")
        failed |= board.main()
    if "engines" in parts:
        print("\n== the wake engines on the clip sets ==")
        failed |= engines.main()
    if "soak" in parts:
        print("\n== soak: 2,000 conversations in one process ==", flush=True)
        # a process of its own: the parts before leave memory and threads behind in this one
        failed |= subprocess.run([sys.executable, "-m", "benchmarks.soak"]).returncode != 0
    return failed


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
