"""The boot service: the unit's sandbox score, install-service, and systemd's notify protocol."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from agentpi.agent.definition import default_document, merged
from agentpi.agent.fit import setup_change
from agentpi.config.document import Config
from agentpi.settings.credentials import CREDENTIALS
from agentpi.system.systemd_notify import SystemdNotifier
from tests.helpers import AGENTPI
from tests.speech import save, silence
from tests.test_cli import agentpi, write_config

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation


def install(
    root: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    result = agentpi("install-service", "--root", str(root), *extra, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_install_service_stages_everything_and_twice_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    first = install(root)
    unit = root / "etc/systemd/system/agentpi.service"
    config = root / "etc/agentpi/config.toml"
    assert "ExecStart=" in unit.read_text() and "/usr/local/bin" not in unit.read_text()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert "written from the template" in first.stdout
    assert 'agent_id = ""' in config.read_text()
    config.write_text(config.read_text().replace('agent_id = ""', 'agent_id = "mine"'))
    second = install(root)
    assert "kept as it is" in second.stdout and "up to date" in second.stdout
    assert 'agent_id = "mine"' in config.read_text()  # the user's edits survive
    gone = install(root, "--uninstall")
    assert not unit.exists() and config.exists()
    assert "kept" in gone.stdout


def test_install_service_writes_the_key_from_the_environment_privately(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = agentpi(
        "install-service", "--root", str(root), env={"ELEVENLABS_API_KEY": "sk-test-secret"}
    )
    assert result.returncode == 0, result.stderr
    key = root / "etc/agentpi/api_key"
    assert key.read_text().strip() == "sk-test-secret"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "sk-test-secret" not in result.stdout + result.stderr


def test_install_service_refuses_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentpi.config.document import ConfigError
    from agentpi.service.install import Installer

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match="install-service needs root: run it with sudo"):
        Installer(root=Path("/")).install()


def unreadable_parent(path: Path) -> Path | None:
    """The first folder above ``path`` that other users cannot enter (a 0700 home or temp dir)."""
    for folder in path.resolve().parents:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return folder
    return None


def test_install_service_without_root_says_so(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is needed to drop root")
    closed = unreadable_parent(Path(__file__))
    if closed is not None:  # the unprivileged user could not even import agentpi from here
        pytest.skip(f"{closed} is closed to other users; the in-process test covers it")
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         *agentpi_argv(), "install-service"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "needs root" in result.stderr


def agentpi_argv() -> list[str]:
    from tests.helpers import AGENTPI

    return AGENTPI


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_sandbox_exposure_is_at_most_1_5(tmp_path: Path) -> None:
    install(tmp_path / "root")
    unit = tmp_path / "root/etc/systemd/system/agentpi.service"
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    found = re.search(r"Overall exposure level for agentpi\.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= 1.5


def test_ready_after_the_models_load_then_watchdog_pings(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(0.1)
    mic = save(tmp_path / "quiet.wav", silence(3.0))
    config = write_config(
        tmp_path,
        '[agent]\nagent_id = "a"\nurl = "ws://127.0.0.1:9"\n[trigger]\nmode = "wake"\n'
        f'[audio]\ninput = "file:{mic}"\noutput = "file:{tmp_path / "out.wav"}"\n',
    )
    process = subprocess.Popen(
        [*agentpi_argv(), "run", "--config", str(config), "--events", "-"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"},
    )
    messages: list[tuple[float, str]] = []
    while process.poll() is None:
        try:
            message = listener.recv(4096).decode()
        except TimeoutError:
            continue
        messages.append((time.monotonic(), message))
    out, _ = process.communicate()
    listener.close()
    assert process.returncode == 0
    events = [json.loads(line) for line in out.splitlines()]
    listening = next(e["t"] for e in events if e["event"] == "listening_for_wake_word")
    ready = [(t, m) for t, m in messages if m.startswith("READY=1")]
    assert len(ready) == 1 and ready[0][0] >= listening  # not before the wake model is up
    pings = [t for t, m in messages if m == "WATCHDOG=1"]
    assert len(pings) >= 15  # every 100 ms over 3 s of listening
    assert messages[-1][1] == "STOPPING=1"


def test_a_hung_event_loop_stops_the_watchdog_pings() -> None:
    notifier = SystemdNotifier({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "100000"})
    pinged: list[float] = []
    notifier.notify = lambda message: pinged.append(time.monotonic())  # type: ignore[method-assign]

    async def scenario() -> float:
        task = asyncio.create_task(notifier.watchdog())
        await asyncio.sleep(0.3)
        hung_at = time.monotonic()
        time.sleep(0.5)  # the loop is stuck: nothing else runs
        await asyncio.sleep(0.2)
        task.cancel()
        return hung_at

    hung_at = asyncio.run(scenario())
    gaps = [b - a for a, b in itertools.pairwise(pinged)]
    assert max(gaps) >= 0.45  # no ping while the loop was stuck...
    assert any(t > hung_at + 0.5 for t in pinged)  # ...and they come back once it runs again


def test_doctor_passes_a_good_setup_and_names_the_fix_for_a_bad_one(tmp_path: Path) -> None:
    mic = save(tmp_path / "mic.wav", silence(2.0))
    fitted = merged(default_document(), setup_change(Config(), default_document()))
    agent_file = tmp_path / "agent.json"
    agent_file.write_text(json.dumps(fitted))
    with subprocess.Popen(
        [*AGENTPI, "simulate", "--port", "0", "--agent", str(agent_file)],
        stdout=subprocess.PIPE,
        text=True,
    ) as simulator:
        assert simulator.stdout is not None
        url = simulator.stdout.readline().split()[-1]
        port = int(url.rsplit(":", 1)[1])
        good = write_config(
            tmp_path,
            f'[agent]\nagent_id = "a"\nurl = "{url}"\n[trigger]\nmode = "wake"\n'
            f'[audio]\ninput = "file:{mic}"\noutput = "file:{tmp_path / "out.wav"}"\n',
        )
        result = agentpi("doctor", "--config", str(good), env={"ELEVENLABS_API_KEY": "sk-hide-me"})
        simulator.terminate()
    assert result.returncode == 0, result.stdout + result.stderr
    names = ("config", "api key", "agent settings", "microphone", "speaker", "wake word")
    for name in (*names, "agent host"):
        assert re.search(rf"^ok\s+{name}", result.stdout, re.M), (name, result.stdout)
    assert "present (not shown)" in result.stdout and "sk-hide-me" not in result.stdout
    assert result.stdout.rstrip().endswith("all good")

    bad = tmp_path / "bad"
    bad.mkdir()
    broken = write_config(
        bad,
        f'[agent]\nagent_id = "a"\nurl = "ws://127.0.0.1:{port}"\n[trigger]\nmode = "wake"\n'
        f'[wake]\nmodels = ["no_such_model"]\n'
        f'[audio]\ninput = "file:{bad / "missing.wav"}"\noutput = "file:{bad / "out.wav"}"\n',
    )
    result = agentpi("doctor", "--config", str(broken))
    assert result.returncode == 1
    assert re.search(r"^FAIL\s+microphone.*missing\.wav", result.stdout, re.M)
    assert re.search(r"^FAIL\s+wake word", result.stdout, re.M)
    assert re.search(r"^FAIL\s+agent host", result.stdout, re.M)  # nobody listens now
    assert "-> agentpi models download" in result.stdout
    assert "problem(s): microphone, wake word, agent host" in result.stdout


def test_the_unit_asks_only_for_groups_this_machine_has_and_caps_memory(tmp_path: Path) -> None:
    import grp

    root = tmp_path / "root"
    install(root)
    unit = (root / "etc/systemd/system/agentpi.service").read_text()
    asked = [
        line.split("=", 1)[1].split()
        for line in unit.splitlines()
        if line.startswith("SupplementaryGroups=")
    ]
    names = {g.gr_name for g in grp.getgrall()}
    assert all(group in names for groups in asked for group in groups), asked
    if not {"gpio", "spi"} <= names:  # plain Debian, like this machine: never asked for
        assert not any({"gpio", "spi"} & set(groups) for groups in asked)
    assert len(re.findall(r"^MemoryMax=\d+M$", unit, re.M)) == 1  # once, not twice


@pytest.mark.parametrize("venv", ["/opt/agent pi", "/opt/agent%ipi", "/opt/a\nEnvironment=X=1"])
def test_install_service_refuses_a_path_systemd_would_misread(tmp_path: Path, venv: str) -> None:
    root = tmp_path / "root"
    result = agentpi("install-service", "--root", str(root), "--venv", venv)
    assert result.returncode == 2, result
    [line] = result.stderr.strip().splitlines()
    assert "cannot go into the unit's ExecStart" in line and "Traceback" not in result.stderr
    assert not (root / "etc/systemd/system/agentpi.service").exists()
    assert not Path(venv).exists()


def test_the_unit_loads_every_credential_and_install_makes_each_file(tmp_path: Path) -> None:
    """The MQTT password lived in the README and the code, never in the unit: as a boot service
    the broker login failed."""
    root = tmp_path / "root"
    install(root, env={"AGENTPI_MQTT_PASSWORD": "broker-secret"})
    unit = (root / "etc/systemd/system/agentpi.service").read_text()
    loaded = dict(
        line.split("=", 1)[1].split(":", 1)
        for line in unit.splitlines()
        if line.startswith("LoadCredential=")
    )
    root_dir = Path(__file__).parents[1]
    readme = "\n".join(p.read_text() for p in [root_dir / "README.md", *root_dir.glob("docs/*.md")])
    assert set(loaded) == {spec.credential for spec in CREDENTIALS}
    for spec in CREDENTIALS:
        assert loaded[spec.credential] == f"/etc/agentpi/{spec.file}"
        made = root / "etc/agentpi" / spec.file
        assert stat.S_IMODE(made.stat().st_mode) == 0o600, spec.file
        assert f"`{spec.credential}`" in readme and f"`{spec.variable}`" in readme
    assert (root / "etc/agentpi/mqtt_password").read_text() == "broker-secret\n"


def test_the_unit_waits_for_no_network_and_orders_itself_after_the_clock(tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root)
    unit = (root / "etc/systemd/system/agentpi.service").read_text()
    after = " ".join(
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("After=")
    )
    wants = " ".join(
        line.split("=", 1)[1] for line in unit.splitlines() if line.startswith("Wants=")
    )
    assert "time-sync.target" in after.split()
    assert "network-online.target" not in after + wants  # the wake word works before it
