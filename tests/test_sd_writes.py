"""What the device writes to the SD card, measured: nothing while it waits for the wake word, and
a few journal lines per conversation (a boot service's stdout is the journal, which is written to
the card). The process's own ``write_bytes`` counts every byte it hands to storage."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import AGENTPI
from tests.speech import POSITIVE, join, save, silence, speak

pytestmark = pytest.mark.realtime

IDLE_S = 10.0
JOURNAL_LINES_PER_CONVERSATION = 3


def written_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError("no write_bytes")


def test_idle_writes_nothing_and_a_conversation_a_few_journal_lines(
    tmp_path: Path, simulator_process: str
) -> None:
    mic = save(
        tmp_path / "mic.wav",
        join(silence(IDLE_S + 4), speak(POSITIVE), silence(0.4), speak("tell me a joke"),
             silence(10.0)),
    )  # fmt: skip
    url = simulator_process
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nagent_id = "a"\nurl = "{url}"\n[trigger]\nmode = "wake"\n'
        f'[audio]\ninput = "file:{mic}"\noutput = "file:/dev/null"\n[control]\nenabled = false\n'
    )
    config.chmod(0o600)
    journal = tmp_path / "journal"
    with journal.open("w") as stdout:
        info = os.fstat(stdout.fileno())
        device = subprocess.Popen(
            [*AGENTPI, "run", "--once", "--config", str(config)],
            env={**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"},
            stdout=stdout, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while "ready" not in journal.read_text():
                assert device.poll() is None and time.monotonic() < deadline, "never ready"
                time.sleep(0.1)
            time.sleep(1.0)
            before = written_bytes(device.pid)
            time.sleep(IDLE_S - 2)  # listening for the wake word, nobody speaking
            idle_writes = written_bytes(device.pid) - before
            lines_before = len(journal.read_text().splitlines())
            _, stderr = device.communicate(timeout=60)
        finally:
            device.kill()
    lines = journal.read_text().splitlines()
    assert device.returncode == 0, stderr
    assert idle_writes == 0, f"{idle_writes} bytes written while idle"
    conversation = lines[lines_before:]
    assert any("conversation" in line and "ended after" in line for line in conversation), lines
    assert len(conversation) <= JOURNAL_LINES_PER_CONVERSATION, conversation
    assert not any("joke" in line for line in lines)  # what was said stays out of the journal
