"""Every subcommand against careless and hostile input: exit 2, one line naming the problem, and
never a traceback."""

from __future__ import annotations

import contextlib
import json
import re
import wave
from pathlib import Path

import pytest

from tests.helpers import HELLO_WAV, device_toml
from tests.test_cli import agentpi, write_config


def wav_claiming(path: Path, rate: int) -> Path:
    """A WAV whose header says ``rate`` Hz (wave refuses to write 0, so the bytes are patched)."""
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(b"\x00\x00" * 800)
    data = bytearray(path.read_bytes())
    data[24:28] = rate.to_bytes(4, "little")
    data[28:32] = (rate * 2).to_bytes(4, "little")
    path.write_bytes(bytes(data))
    return path


SECTIONS = ("agent", "trigger", "audio", "conversation", "control")


def run_config(tmp_path: Path, url: str = "ws://127.0.0.1:9", extra: str = "", **files: str):
    """``extra``: "[section]\nkey = value", into that section of the base config."""
    header, _, lines = extra.partition("\n")
    name = header.strip("[]")
    sections = {name: lines} if name in SECTIONS else {"extra": extra}
    wav, out = files.get("wav", HELLO_WAV), files.get("out", tmp_path / "out.wav")
    body = device_toml(url, wav, out, **sections)
    return agentpi("run", "--once", "--config", str(write_config(tmp_path, body)))


def one_line_exit_2(result, expected: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and expected in lines[0], result.stderr


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ws://127.0.0.1:99999", "port"),
        ("wss://host:abc", "not a valid URL"),
        ("wss://[::1", "not a valid URL"),
        ("ws://127.0.0.1:0", "port 0 is not one of 1 to 65535"),
        ("wss://user:secret@api.elevenlabs.io", "a user or password in the URL"),
        ("wss://", "use wss://HOST"),
        ("wss://api.elevenlabs.io#x", "fragment"),
    ],
)
def test_bad_agent_urls(tmp_path: Path, url: str, expected: str) -> None:
    result = run_config(tmp_path, url=url)
    one_line_exit_2(result, expected)
    assert "secret" not in result.stderr


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("[conversation]\nsilence_close_s = nan", "conversation.silence_close_s = nan"),
        ("[conversation]\nmetadata_timeout_s = inf", "metadata_timeout_s = inf"),
        ("[conversation]\nidle_close_s = -5", "conversation.idle_close_s = -5.0: use 1 to"),
        ("[conversation]\nmax_duration_s = 1e9", "conversation.max_duration_s"),
        ("[trigger]\nrestart_pause_s = -1", "trigger.restart_pause_s = -1.0: use 0 to"),
        ("[audio]\nvad_threshold_dbfs = 50", "audio.vad_threshold_dbfs = 50.0: use -90 to 0"),
        ("[audio]\nmax_backlog_s = 0", "audio.max_backlog_s"),
        ("[wake]\nrefractory_s = -1", "wake.refractory_s = -1.0"),
        ("[tools]\nmax_running = 0", "tools.max_running = 0: use 1 to 16"),
        ("[agent2]\nx = 1", "unknown key agent2"),
    ],
)
def test_numbers_out_of_range(tmp_path: Path, extra: str, expected: str) -> None:
    one_line_exit_2(run_config(tmp_path, extra=extra), expected)


def test_connect_timeout_nan(tmp_path: Path) -> None:
    body = device_toml(
        "ws://127.0.0.1:9", HELLO_WAV, tmp_path / "o.wav", agent="connect_timeout_s = nan"
    )
    result = agentpi("run", "--config", str(write_config(tmp_path, body)))
    one_line_exit_2(result, "agent.connect_timeout_s = nan: must be a finite number")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (
            lambda p: ((p / "empty.wav").write_bytes(b"") and p / "empty.wav") or p / "empty.wav",
            "not a PCM WAV file",
        ),
        (lambda p: wav_claiming(p / "zero.wav", 0), "says 0 Hz"),
        (lambda p: wav_claiming(p / "one.wav", 1), "says 1 Hz"),
        (lambda p: p, "Is a directory"),
    ],
)
def test_bad_input_wavs(tmp_path: Path, make, expected: str) -> None:
    one_line_exit_2(run_config(tmp_path, wav=str(make(tmp_path))), expected)


@pytest.mark.parametrize("where", ["a folder", "under a file"])
def test_an_output_that_cannot_be_written_is_found_at_start(tmp_path: Path, where: str) -> None:
    """Cases that stop root too (the tests run as root in CI): the path is a folder, or its
    folder would have to be made where a file is."""
    if where == "a folder":
        out = tmp_path
    else:
        (tmp_path / "a-file").write_text("")
        out = tmp_path / "a-file" / "reply.wav"
    one_line_exit_2(run_config(tmp_path, out=str(out)), "audio output file:")


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("simulate", "--port", "80000"), "--port: 80000: use 1 to 65535"),
        (("simulate", "--port", "-1"), "--port: -1: use 1 to 65535"),
        (("simulate", "--port", "abc"), "'abc' is not a port number"),
        (("simulate", "--script", "/nonexistent.toml"), "cannot read /nonexistent.toml"),
        (("leds", "--profile", "generic", "--seconds", "nan"), "--seconds: nan: use 0.01 to 600"),
        (("leds", "--profile", "no-such-board"), "no-such-board"),
        (("run",), "the following arguments are required: --config"),
        (("run", "--config", "/nonexistent.toml"), "cannot read /nonexistent.toml"),
        (("models", "delete"), "invalid choice: 'delete'"),
        (("frobnicate",), "invalid choice: 'frobnicate'"),
    ],
)
def test_hostile_arguments(args: tuple[str, ...], expected: str) -> None:
    result = agentpi(*args, timeout=30)
    one_line_exit_2(result, expected)


def test_events_file_in_a_missing_folder(tmp_path: Path) -> None:
    config = write_config(tmp_path, device_toml("ws://127.0.0.1:9", HELLO_WAV, tmp_path / "o.wav"))
    result = agentpi("run", "--config", str(config), "--events", "/nonexistent/dir/events.jsonl")
    one_line_exit_2(result, "--events /nonexistent/dir/events.jsonl")


def test_doctor_without_a_config_says_how_to_get_one() -> None:
    result = agentpi("doctor", "--config", "/nonexistent/config.toml", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr + result.stdout
    assert "install-service writes one" in result.stdout
    assert "edit /nonexistent" not in result.stdout


def test_status_without_a_device_names_each_place_once(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path), "AGENTPI_CONTROL_SOCKET": ""}
    result = agentpi("status", env=env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and "no agentpi is running" in line
    places = re.findall(r"/\S+\.sock", line)
    assert places and len(places) == len(set(places)), line


def test_wss_to_a_plain_server_says_why_and_is_not_offline(tmp_path: Path) -> None:
    """A TLS failure is the server's or the config's problem, not a network that is down."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def plain_http() -> None:
        with contextlib.suppress(OSError):
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            conn.close()

    threading.Thread(target=plain_http, daemon=True).start()
    body = device_toml(f"wss://127.0.0.1:{port}", HELLO_WAV, tmp_path / "o.wav")
    events = tmp_path / "events.jsonl"
    config = write_config(tmp_path, body)
    result = agentpi("run", "--once", "--config", str(config), "--events", str(events))
    listener.close()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failed = [
        json.loads(line)
        for line in events.read_text().splitlines()
        if json.loads(line)["event"] == "connect_failed"
    ]
    assert failed and failed[0]["offline"] is False
    assert "TLS handshake failed" in failed[0]["message"], failed[0]["message"]


def test_a_pin_failure_without_a_message_still_says_what_failed() -> None:
    from gpiozero.exc import PinInvalidPin

    from agentpi.system.gpio import GpioError, gpio_errors

    with pytest.raises(GpioError) as caught, gpio_errors("LEDs on GPIO [99]"):
        raise PinInvalidPin()  # gpiozero raises some errors with no text at all
    assert str(caught.value) == "LEDs on GPIO [99]: PinInvalidPin"
