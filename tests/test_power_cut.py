"""A power cut in the middle of a write leaves the old file or the new one, never a torn one.

A process killed at a random moment stands in for the cut (it leaves what the kernel was given;
`fsync` before the rename is what carries that to the card), and every file the device writes
goes through the one writer tested here.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

DEVICE = Path(__file__).parents[1] / "device" / "agentpi"
SIZE = 4 * 1024 * 1024
"""Large enough that a plain rewrite is caught half done by a kill at a random moment."""

WRITER = f"""
import sys
from pathlib import Path
from agentpi.system.atomic_file import write_atomically

target, how = Path(sys.argv[1]), sys.argv[2]
n = 0
while True:
    text = ("AB"[n % 2]) * {SIZE}
    if how == "atomic":
        write_atomically(target, text, 0o640)
    else:
        target.write_text(text)
    n += 1
"""


def torn_files(tmp_path: Path, how: str, rounds: int) -> int:
    """Kill a writer that rewrites one file without end, ``rounds`` times at random moments;
    how many times the file was found torn (not all A or all B, or short)."""
    target = tmp_path / "config.toml"
    target.write_text("A" * SIZE)
    torn = 0
    rng = random.Random(7)
    for _ in range(rounds):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), how])
        time.sleep(0.3 + rng.random() * 0.3)
        writer.send_signal(signal.SIGKILL)
        writer.wait(10)
        text = target.read_text()
        if len(text) != SIZE or len(set(text)) != 1:
            torn += 1
    return torn


@pytest.mark.realtime
def test_a_file_rewritten_when_the_power_goes_is_always_whole(tmp_path: Path) -> None:
    assert torn_files(tmp_path, "atomic", rounds=12) == 0
    assert not [
        p for p in tmp_path.iterdir() if p.name != "config.toml" and not p.name.endswith(".tmp")
    ]


@pytest.mark.realtime
def test_the_kill_is_sharp_enough_to_tear_a_plain_rewrite(tmp_path: Path) -> None:
    """The same cuts tear a file rewritten in place: the test above could fail."""
    assert torn_files(tmp_path, "plain", rounds=12) > 0


def test_every_file_the_device_writes_goes_through_the_atomic_writer() -> None:
    """Everything the device writes as its own state is whole or not at all. Appended logs (the
    ``--events`` file), audio output and /dev/null are not state."""
    writes = re.compile(r"\.write_text\(|\.write_bytes\(|copyfile\(|open\([^)]*[\"'][wa]b?[\"']")
    found = [
        str(path.relative_to(DEVICE))
        for path in DEVICE.rglob("*.py")
        for line in path.read_text().splitlines()
        if writes.search(line) and path.name != "atomic_file.py"
    ]
    appended_or_discarded = ["cli/console.py", "cli/console.py", "audio/portaudio.py"]
    assert sorted(found) == sorted(appended_or_discarded), found
