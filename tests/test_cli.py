"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from agentpi.audio.convert import read_wav
from agentpi.config.document import load_config
from agentpi.device.assembly import bundled
from agentpi.settings.credentials import read_api_key
from tests.helpers import AGENTPI, HELLO_WAV

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation


def agentpi(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AGENTPI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def write_config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(body)
    return path


GOOD = """
[agent]
agent_id = "agent_123"
url = "{url}"
[trigger]
mode = "immediate"
[audio]
input = "file:{wav}"
output = "file:{out}"
[conversation]
silence_close_s = 1.0
"""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[trigger]\nmode = 'immediate'\n", "missing [agent] section"),
        ("[agent]\nurl = 'wss://api.elevenlabs.io'\n", "missing agent.agent_id"),
        ("[agent]\nagent_id = 'a'\n[audio]\ninptu = 'x'\n", "unknown key audio.inptu"),
        ("[agent]\nagent_id = 'a'\nurl = 'https://api.elevenlabs.io'\n", "use wss://HOST"),
        ("[agent]\nagent_id = 'a'\nurl = 'ws://api.example.com'\n", "only allowed to this machine"),
        (
            "[agent]\nagent_id = 'a'\n[trigger]\nmode = 'clap'\n",
            "trigger.mode = 'clap' is not allowed",
        ),
        (
            "[agent]\nagent_id = 'a'\n[conversation]\nsilence_close_s = 'long'\n",
            "conversation.silence_close_s must be a number",
        ),
        ("[agent\nagent_id = 'a'\n", "is not valid TOML"),
        ("[agent]\nagent_id = 'a'\n[audio]\nchunk_ms = 1000\n", "audio.chunk_ms = 1000"),
        (
            "[agent]\nagent_id = 'a'\nsigned_url_endpoint = 'http://owner.example/s'\n",
            "plain http:// only to this machine",
        ),
        ("[agent]\nagent_id = 'a'\n[audio]\necho = 'loud'\n", "audio.echo = 'loud'"),
        ("[agent]\nagent_id = 'a'\n[audio]\nvolume = 9\n", "audio.volume = 9"),
    ],
)
def test_bad_config_is_one_line_and_exit_2(tmp_path: Path, body: str, expected: str) -> None:
    result = agentpi("run", "--config", str(write_config(tmp_path, body)), "--once")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_unreadable_config_file(tmp_path: Path) -> None:
    result = agentpi("run", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"agentpi: cannot read {tmp_path / 'nope.toml'}: No such file or directory"
    )


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        GOOD.format(url="ws://127.0.0.1:9", wav=tmp_path / "no.wav", out=tmp_path / "o.wav"),
    )
    result = agentpi("run", "--config", str(config))
    assert result.returncode == 2 and "no.wav" in result.stderr and "Traceback" not in result.stderr


def test_run_against_a_simulator_process_writes_event_lines(
    tmp_path: Path, simulator_process: str
) -> None:
    out = tmp_path / "reply.wav"
    config = write_config(tmp_path, GOOD.format(url=simulator_process, wav=HELLO_WAV, out=out))
    secret = "sk_never_printed_123"
    result = agentpi(
        "-v",
        "run",
        "--config",
        str(config),
        "--once",
        "--events",
        "-",
        env={"ELEVENLABS_API_KEY": secret},
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    kinds = [event["event"] for event in events]
    assert kinds[0] == "state" and kinds[-1] == "conversation_ended"
    assert all(isinstance(event["t"], float) for event in events)
    times = [event["t"] for event in events]
    assert times == sorted(times)  # monotonic
    assert {"user_transcript", "agent_response", "connecting", "disconnected"} <= set(kinds)
    assert secret not in result.stdout + result.stderr  # not in events, not in debug logs
    heard, _ = read_wav(out)
    assert np.count_nonzero(heard) > 16000


def test_the_api_key_is_in_no_argv_and_no_output(tmp_path: Path, simulator_process: str) -> None:
    secret = "sk_grep_for_me_4242"
    env = {**os.environ, "ELEVENLABS_API_KEY": secret}
    config = write_config(
        tmp_path, GOOD.format(url=simulator_process, wav=HELLO_WAV, out=tmp_path / "o.wav")
    )
    running = subprocess.Popen(
        [*AGENTPI, "-v", "run", "--config", str(config), "--once", "--events", "-"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert running.stdout is not None
        seen: list[str] = []
        # /proc/<pid>/cmdline is what `ps` shows every user on the machine
        while not any('"connected"' in line for line in seen):
            line = running.stdout.readline()
            assert line, "agentpi exited before connecting"
            seen.append(line)
        argv = Path(f"/proc/{running.pid}/cmdline").read_bytes()
        out, err = running.communicate(timeout=60)
    finally:
        running.kill()
    assert running.returncode == 0, err
    assert secret.encode() not in argv
    outputs = ["".join(seen) + out, err]

    doctor = agentpi("doctor", "--config", str(config), env={"ELEVENLABS_API_KEY": secret})
    outputs += [doctor.stdout, doctor.stderr]
    in_config = write_config(tmp_path, f'[agent]\nagent_id = "a"\napi_key = "{secret}"\n')
    refused = agentpi("run", "--config", str(in_config))
    assert refused.returncode == 2 and "ELEVENLABS_API_KEY" in refused.stderr, refused.stderr
    outputs += [refused.stdout, refused.stderr]
    for text in outputs:
        assert secret not in text


@pytest.mark.parametrize("everything", [False, True])
def test_demo_runs_a_whole_conversation(tmp_path: Path, everything: bool) -> None:
    env = {"ELEVENLABS_API_KEY": "", "ELEVENLABS_AGENT_ID": ""}
    events = tmp_path / "events.jsonl"
    flags = ["--everything"] if everything else []
    result = agentpi("demo", "--out", str(tmp_path), "--events", str(events), *flags, env=env)
    assert result.returncode == 0, result.stderr
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    # the default agent sends no agent_response_complete; the one with everything on does
    assert ("agent_response_complete" in kinds) is everything
    assert "bundled agent simulator" in result.stdout
    assert "you:   Hello! What can you tell me about the Raspberry Pi?" in result.stdout
    assert "agent: The Raspberry Pi is a small, cheap computer." in result.stdout
    # one summary line per conversation, no timestamps of its own (journald adds them)
    summary = [line for line in result.stdout.splitlines() if "ended after" in line]
    assert len(summary) == 1
    assert re.search(r"conversation conv_\w+ ended after [\d.]+ s, \d+ turns", summary[0])
    heard, rate = read_wav(tmp_path / "agent-reply.wav")
    assert rate == 16000 and np.count_nonzero(heard) > 3 * rate


def test_api_key_from_environment_or_systemd_credential(tmp_path: Path) -> None:
    assert read_api_key({}) is None
    key = read_api_key({"ELEVENLABS_API_KEY": " sk_env \n"})
    assert key is not None and key.reveal() == "sk_env"
    assert "sk_env" not in repr(key) and "sk_env" not in f"{key}"
    (tmp_path / "elevenlabs_api_key").write_text("sk_cred\n")
    from_credential = read_api_key({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert from_credential is not None and from_credential.reveal() == "sk_cred"


def test_there_is_no_way_to_pass_the_key_in_argv() -> None:
    result = agentpi("run", "--api-key", "sk_x", "--config", "x.toml")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_the_documented_config_and_the_installed_template_both_load(tmp_path: Path) -> None:
    reference = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"
    documented = reference.read_text().split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(write_config(tmp_path, documented))
    assert config.tools.custom["open_door"].command[0] == "/usr/local/bin/open-door"
    assert config.context.on_event["button"].startswith("The visitor")
    template = (
        bundled("config-template.toml").read_text().replace('agent_id = ""', 'agent_id = "a"')
    )
    assert load_config(write_config(tmp_path, template)).control.enabled


def test_a_config_anyone_may_write_is_refused_in_one_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[agent]\nagent_id = "a"\n')
    path.chmod(0o666)
    result = agentpi("run", "--config", str(path))
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert f"config {path} is writable by anyone: chmod o-w {path}" in line
    doctor = agentpi("doctor", "--config", str(path))
    assert "writable by anyone" in doctor.stdout and doctor.returncode == 1


@pytest.mark.realtime
@pytest.mark.parametrize("target", ["full disk", "fifo nobody reads"])
def test_event_lines_nobody_can_take_never_hold_the_device(
    tmp_path: Path, simulator_process: str, target: str
) -> None:
    """--events to /dev/full: reported once, the conversation and its exit code as without;
    --events to a FIFO with no reader: the start does not wait for one."""
    if target == "full disk":
        events = Path("/dev/full")
    else:
        events = tmp_path / "events.fifo"
        os.mkfifo(events)
    body = GOOD.format(url=simulator_process, wav=HELLO_WAV, out=tmp_path / "out.wav")
    path = write_config(tmp_path, body)
    result = agentpi("run", "--config", str(path), "--once", "--events", str(events), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "conversation" in result.stdout and "ended after" in result.stdout
    if target == "full disk":
        [line] = result.stderr.strip().splitlines()
        assert "--events /dev/full: No space left on device" in line
