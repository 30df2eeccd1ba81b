"""The network comes after the device: a boot service starts before Wi-Fi is up. The device runs
in a network namespace of the test's own whose only interface comes up 20 s after the device
started; meanwhile it says it is offline, and then it works without a restart."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import AGENTPI, device_toml, silence_wav
from tests.test_cli import write_config

pytestmark = pytest.mark.realtime

NETWORK_AFTER_S = 20
PORT = 8765  # the namespace is the test's own: no other server there


def can_make_a_network_namespace() -> bool:
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("ip"):
        return False
    return subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not can_make_a_network_namespace(), reason="needs root and `ip`")
def test_a_network_that_comes_late_is_used_without_a_restart(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    body = device_toml(
        f"ws://127.0.0.1:{PORT}",
        silence_wav(tmp_path / "quiet.wav", 120),
        tmp_path / "out.wav",
        trigger='mode = "immediate"\nrestart_pause_s = 2.0',
        conversation="silence_close_s = 4.0",
    )
    config = write_config(tmp_path, body)
    device = " ".join([*AGENTPI, "run", "--config", str(config), "--events", str(events)])
    simulator = " ".join([*AGENTPI, "simulate", "--port", str(PORT), "--everything"])
    # the agent listens (out of reach) and the device starts with the interface down; the
    # network comes later
    script = (
        f"{simulator} & s=$!; {device} & d=$!; sleep {NETWORK_AFTER_S}; ip link set lo up; "
        f"while ! grep -q conversation_ended {events}; do sleep 0.2; done; kill $d $s; wait"
    )
    result = subprocess.run(
        ["unshare", "--net", "--", "sh", "-c", script],
        capture_output=True, text=True, timeout=NETWORK_AFTER_S + 90,
    )  # fmt: skip
    lines: list[dict[str, Any]] = [json.loads(line) for line in events.read_text().splitlines()]
    kinds = [r["event"] for r in lines]
    assert "Traceback" not in result.stderr, result.stderr
    offline = [r for r in lines if r["event"] == "connect_failed"]
    assert offline and "unreachable" in offline[0]["message"].lower(), offline[:1]
    states = [r["state"] for r in lines if r["event"] == "state"]
    assert "offline" in states
    started = kinds.index("conversation_started")
    assert all(kind != "ready" for kind in kinds[started:])  # the same run, no restart
    ended = [r for r in lines if r["event"] == "conversation_ended" and r["turns"] >= 0]
    assert ended and "silent" in ended[-1]["reason"], ended
    came = lines[started]["t"] - lines[0]["t"]
    assert came < NETWORK_AFTER_S + 4  # at once, not at the end of its back-off (+14 s)
