"""The whole device on a read-only root, as kiosk builders run it (Raspberry Pi OS's overlay file
system, or systemd's ReadOnlyPaths=/): a wake word, a conversation, the control socket and MQTT,
with nothing writable but the runtime directory (here a bind mount of its own, as /run is).

A mount namespace of the test's own makes the root read-only for the device alone; the simulator
and the broker run outside it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import AGENTPI
from tests.mqtt_broker import PASSWORD, USER, Broker
from tests.speech import POSITIVE, join, save, silence, speak
from tests.test_mqtt import broker, subscribed  # noqa: F401 (the broker fixture)

pytestmark = pytest.mark.realtime


def can_make_the_root_read_only() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--",
         "mount", "-o", "remount,bind,ro", "/"],
        capture_output=True, timeout=10,
    )  # fmt: skip
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not can_make_the_root_read_only(), reason="needs root and mount namespaces"
)


@needs_namespaces
def test_the_whole_device_runs_on_a_read_only_root(
    tmp_path: Path,
    broker: Broker,  # noqa: F811
    simulator_process: str,
) -> None:
    runtime = tmp_path / "run"  # the one writable place, as /run is
    runtime.mkdir()
    mic = save(
        tmp_path / "mic.wav",
        join(silence(1.0), speak(POSITIVE), silence(0.4), speak("what time is it"), silence(12.0)),
    )
    url = simulator_process
    config = tmp_path / "config.toml"
    config.write_text(
        f'[agent]\nagent_id = "a"\nurl = "{url}"\n'
        '[trigger]\nmode = ["wake", "control"]\n'
        f'[audio]\ninput = "file:{mic}"\noutput = "file:{runtime}/out.wav"\n'
        f'[control]\nsocket = "{runtime}/control.sock"\n'
        f'[mqtt]\nenabled = true\nurl = "mqtt://127.0.0.1:{broker.port}"\nusername = "{USER}"\n'
        'base_topic = "agentpi/ro"\ndiscovery = false\n'
    )
    config.chmod(0o600)
    read_only = (
        f"mount --bind {runtime} {runtime} && mount -o remount,bind,ro / && "
        f"exec {' '.join(AGENTPI)} run --once --config {config} --events {runtime}/events.jsonl"
    )
    device = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", read_only],
        env={**os.environ, "AGENTPI_MQTT_PASSWORD": PASSWORD, "XDG_RUNTIME_DIR": str(runtime)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

    async def watch_from_outside() -> tuple[list[str], str]:
        async with subscribed(broker, "agentpi/ro/#") as (heard, _):
            await heard.until(lambda: heard.last("agentpi/ro/availability") == "online", 30)
            status = subprocess.run(
                [*AGENTPI, "status", "--socket", str(runtime / "control.sock")],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
            await heard.until(lambda: heard.last("agentpi/ro/conversation_id"), 30)
            await heard.until(lambda: "listening" in heard.all("agentpi/ro/state"), 30)
            return heard.all("agentpi/ro/state"), status.stdout + status.stderr

    try:
        states, status = asyncio.run(watch_from_outside())
        _, stderr = device.communicate(timeout=60)
    finally:
        device.kill()
    assert device.returncode == 0, stderr
    assert "Read-only" not in stderr and "Traceback" not in stderr, stderr
    assert status.startswith("state"), status
    assert "listening" in states
    events = [json.loads(line) for line in (runtime / "events.jsonl").read_text().splitlines()]
    kinds = [e["event"] for e in events]
    assert [e["source"] for e in events if e["event"] == "trigger"] == ["wake"]
    ended = [e for e in events if e["event"] == "conversation_ended"]
    assert "conversation_started" in kinds and ended and ended[0]["turns"] >= 1, kinds
    written = {p.name for p in runtime.iterdir()}
    assert written <= {"out.wav", "events.jsonl", "control.sock"}, written
