"""JSON and HTTP from every door, bounded: a deeply nested value, a number past Python's digit
limit, a huge or redirected answer are the sender's error (a clear message, back-off), never a
crash of the device, an "internal error", or a credential sent onwards."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection

from agentpi import bounded_json
from agentpi.control.requests import ControlRequestError, parse_request
from agentpi.mqtt.bridge import MqttBridge, MqttCommandError
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol import messages as m
from tests.helpers import AGENTPI, device_toml, run_conversation, silence_wav
from tests.test_cli import write_config
from tests.test_hostile import opening, records, rss_mb, run_device

NESTED = "[" * 50_000 + "]" * 50_000
HUGE_NUMBER = "1" * 5_000


def test_the_json_reader_refuses_depth_digits_and_size_with_a_value_error() -> None:
    for raw, said in (
        (NESTED, "nested deeper than 64"),
        ("[" * 70 + "]" * 70, "nested deeper than 64"),  # under json's own limit, over ours
        (f'{{"n": {HUGE_NUMBER}}}', "not valid JSON"),
        ("x" * 2000, "2000 bytes"),
    ):
        with pytest.raises(bounded_json.JsonRefused, match=said):
            bounded_json.loads(raw, 1000 if raw.startswith("x") else 10**6)
    assert bounded_json.loads('{"a": [[1], {"b": "[[[["}]}', 100) == {"a": [[1], {"b": "[[[["}]}


@pytest.mark.parametrize(
    "raw", [NESTED, f'{{"type": "ping", "ping_event": {{"event_id": {HUGE_NUMBER}}}}}']
)
def test_a_server_frame_past_the_bounds_is_a_protocol_error(raw: str) -> None:
    with pytest.raises(m.ProtocolError):
        m.decode_server(raw)


def test_commands_past_the_bounds_are_refused_in_one_line() -> None:
    with pytest.raises(ControlRequestError, match="nested deeper"):
        parse_request(("[" * 3000 + "]" * 3000).encode())
    bridge = MqttBridge(MqttConfig(enabled=True), device_id="agentpi-test", version="0")
    with pytest.raises(MqttCommandError, match="nested deeper"):
        bridge.command(bridge.topic("command"), b'{"command": ' + b"[" * 1000 + b"]" * 1000 + b"}")


@pytest.mark.realtime
def test_a_deeply_nested_frame_does_not_end_the_conversation(tmp_path: Path) -> None:
    async def nested(ws: ServerConnection) -> None:
        await opening(ws)
        await ws.send(NESTED)
        await ws.send(json.dumps({"type": "ping", "ping_event": {"event_id": 7}}))
        await asyncio.sleep(1.0)
        await ws.close(1000, "bye")

    code, _, stderr, events = asyncio.run(run_device(tmp_path, nested))
    assert "Traceback" not in stderr
    lines = records(events)
    errors = [r["message"] for r in lines if r["event"] == "protocol_error"]
    assert errors and "nested deeper than 64" in errors[0]
    ended = next(r for r in lines if r["event"] == "conversation_ended")
    assert ended["reason"] == "bye" and ended["closed_by"] == "server"  # not an internal error
    assert code == 0


# ------------------------------------------------------------------ the signed-URL endpoint


class Endpoint(http.server.BaseHTTPRequestHandler):
    """An owner's signed-URL endpoint that answers as ``answer`` says, and counts requests."""

    answer: Any = None
    requests: list[tuple[str, dict[str, str]]]

    def do_GET(self) -> None:
        self.requests.append((self.path, dict(self.headers)))
        type(self).answer(self)

    def log_message(self, *args: Any) -> None:
        pass


def serve_endpoint(answer: Any) -> tuple[http.server.ThreadingHTTPServer, list[Any]]:
    seen: list[Any] = []
    handler = type("Handler", (Endpoint,), {"answer": answer, "requests": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


@pytest.fixture
def endpoints() -> Iterator[list[http.server.ThreadingHTTPServer]]:
    servers: list[http.server.ThreadingHTTPServer] = []
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def fetch_from(tmp_path: Path, port: int) -> tuple[Any, float]:
    started = time.monotonic()
    run = run_conversation(
        tmp_path,
        input_wav=silence_wav(tmp_path / "quiet.wav", 3.0),
        endpoint_token="token-xyz",
        agent_options=lambda _url: {"signed_url_endpoint": f"http://127.0.0.1:{port}/signed"},
        timeout=30,
    )
    return run, time.monotonic() - started


def reply(handler: Endpoint, body: bytes, status: int = 200, **headers: str) -> None:
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", **headers}.items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_a_nested_signed_url_answer_is_a_connect_failure(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    nested = "[" * 10_000 + "]" * 10_000  # 20 KB: under the size cap, far past the depth one
    server, seen = serve_endpoint(lambda h: reply(h, nested.encode()))
    endpoints.append(server)
    run, _ = fetch_from(tmp_path, server.server_address[1])
    assert run.exit_code == 1 and len(seen) == 1
    [failed] = run.of_kind("connect_failed")
    assert "nested deeper than 64" in failed["message"]


def test_a_huge_signed_url_answer_is_not_read(tmp_path: Path, endpoints: list[Any]) -> None:
    sent: list[int] = []

    def huge(handler: Endpoint) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(100 * 1024 * 1024))
        handler.end_headers()
        block = b" " * 65536
        try:
            for _ in range(1600):
                handler.wfile.write(block)
                sent.append(len(block))
        except OSError:
            pass  # the device hung up

    server, _ = serve_endpoint(huge)
    endpoints.append(server)
    run, took = fetch_from(tmp_path, server.server_address[1])
    [failed] = run.of_kind("connect_failed")
    assert "larger than 65536 bytes" in failed["message"]
    assert sum(sent) < 20 * 1024 * 1024  # the rest was never asked for
    assert took < 20


def test_a_redirect_is_not_followed_with_the_credential(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    elsewhere, stolen = serve_endpoint(lambda h: reply(h, b'{"signed_url": "ws://127.0.0.1:9"}'))
    endpoints.append(elsewhere)
    target = f"http://127.0.0.1:{elsewhere.server_address[1]}/steal"
    server, seen = serve_endpoint(lambda h: reply(h, b"", status=302, Location=target))
    endpoints.append(server)
    run, _ = fetch_from(tmp_path, server.server_address[1])
    assert len(seen) == 1 and seen[0][1].get("Authorization") == "Bearer token-xyz"
    assert stolen == []  # the token never went further
    [failed] = run.of_kind("connect_failed")
    assert "HTTP 302" in failed["message"] and "not followed" in failed["message"]
    assert "token-xyz" not in json.dumps(run.events)


def test_an_answer_sent_a_byte_a_second_ends_at_the_deadline(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    """The fetch has one deadline (connect_timeout_s, 5 s in these tests), not one per read."""

    server, _ = serve_endpoint(dripping)
    endpoints.append(server)
    run, took = fetch_from(tmp_path, server.server_address[1])
    [failed] = run.of_kind("connect_failed")
    assert "no whole answer within 5 s" in failed["message"]
    assert took < 5 + 3


def dripping(handler: Endpoint) -> None:
    """Headers at once, then a byte every half second: a fetch that goes on and on."""
    handler.send_response(200)
    handler.send_header("Content-Length", "1000")
    handler.end_headers()
    try:
        for _ in range(60):
            handler.wfile.write(b" ")
            handler.wfile.flush()
            time.sleep(0.5)
    except OSError:
        pass


def test_stop_ends_a_conversation_still_fetching_its_url(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    server, _ = serve_endpoint(dripping)
    endpoints.append(server)
    asked: list[float] = []
    answers: list[str | None] = []

    async def stop_while_fetching(device: Any) -> None:
        while "fetching_signed_url" not in seen:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        asked.append(time.monotonic())
        answers.append(device.controls.stop_conversation())

    seen: list[str] = []
    port = server.server_address[1]
    run = run_conversation(
        tmp_path,
        input_wav=silence_wav(tmp_path / "quiet.wav", 3.0),
        agent_options=lambda _url: {
            "signed_url_endpoint": f"http://127.0.0.1:{port}/signed",
            "connect_timeout_s": 30,
        },
        during=stop_while_fetching,
        on_event=lambda record: seen.append(record["event"]),
        timeout=30,
    )
    assert answers == [None]  # `stop` took it: no "no conversation is running"
    assert not run.of_kind("connect_failed")
    done = [e["t"] for e in run.events if e["event"] == "state" and e["state"] == "idle"][-1]
    assert done - asked[0] < 1.0


@pytest.mark.realtime
def test_a_signal_during_a_slow_fetch_stops_the_device_at_once(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    server, seen = serve_endpoint(dripping)
    endpoints.append(server)
    port = server.server_address[1]
    wav = silence_wav(tmp_path / "quiet.wav", 30.0)
    body = device_toml(
        "ws://127.0.0.1:9",
        wav,
        tmp_path / "out.wav",
        agent=f'signed_url_endpoint = "http://127.0.0.1:{port}/signed"\nconnect_timeout_s = 60',
    )
    config = write_config(tmp_path, body)
    process = subprocess.Popen(
        [*AGENTPI, "run", "--config", str(config)], stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen, "the device never asked for its URL"
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    try:
        process.wait(10)
    finally:
        process.kill()
    assert time.monotonic() - stopped < 3.0
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""


def test_a_head_sent_a_byte_at_a_time_ends_at_the_same_deadline(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    """The deadline covers the answer's head too: urllib's per-read timeout let a server that
    drips its headers hold the fetch for as long as it liked."""

    def dripping_head(handler: Endpoint) -> None:
        try:
            handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(60):
                handler.wfile.write(b"z")
                handler.wfile.flush()
                time.sleep(0.5)
        except OSError:
            pass

    server, _ = serve_endpoint(dripping_head)
    endpoints.append(server)
    run, took = fetch_from(tmp_path, server.server_address[1])
    [failed] = run.of_kind("connect_failed")
    assert "no whole answer within 5 s" in failed["message"]
    assert took < 5 + 3


def test_an_answer_that_is_not_http_is_a_connect_failure(
    tmp_path: Path, endpoints: list[Any]
) -> None:
    def garbage(handler: Endpoint) -> None:
        handler.wfile.write(b"SSH-2.0-OpenSSH_9.2\r\n" + b"x" * 40_000)

    server, _ = serve_endpoint(garbage)
    endpoints.append(server)
    run, _ = fetch_from(tmp_path, server.server_address[1])
    [failed] = run.of_kind("connect_failed")
    assert "not HTTP" in failed["message"]


# ------------------------------------------------------------------ event lines, in bytes

FRAMES = 40
TEXT_FLOOD_RSS_MB = 160.0
"""The bound the audio flood keeps (test_hostile): a flood of text is held to it too."""


@pytest.mark.realtime
def test_huge_agent_responses_to_a_subscriber_that_never_reads_keep_memory_bounded(
    tmp_path: Path,
) -> None:
    """40 agent_response frames of 8 MB each while a control-socket subscriber reads nothing:
    the lines waiting for it are bounded in bytes and their text is shortened, the record in
    `--events` keeps every word of what it writes, and counts what it could not keep."""
    sock = tmp_path / "c.sock"
    subscribed = asyncio.Event()
    text = "word " * (8 * 1024 * 1024 // 5)
    peak = {"mb": 0.0}

    async def huge(ws: ServerConnection) -> None:
        await opening(ws)
        await asyncio.wait_for(subscribed.wait(), 30)
        for _ in range(FRAMES):
            await ws.send(
                json.dumps(
                    {"type": "agent_response", "agent_response_event": {"agent_response": text}}
                )
            )
        await ws.send(json.dumps({"type": "ping", "ping_event": {"event_id": 1}}))
        await asyncio.sleep(2.0)
        await ws.close(1000, "bye")

    async def subscribe_and_never_read(pid: int) -> None:
        while not sock.exists():
            await asyncio.sleep(0.05)
        reader, writer = await asyncio.open_unix_connection(str(sock))
        writer.write(b'{"command": "events"}\n')
        await writer.drain()
        assert json.loads(await reader.readline()) == {"ok": True}
        subscribed.set()
        try:
            while True:
                peak["mb"] = max(peak["mb"], rss_mb(pid))
                await asyncio.sleep(0.05)
        except OSError:
            writer.close()

    code, stdout, stderr, events = asyncio.run(
        run_device(
            tmp_path,
            huge,
            control=f'socket = "{sock}"',
            watch=subscribe_and_never_read,
            timeout=120,
        )
    )
    assert code == 0 and "Traceback" not in stderr, stderr[-2000:]
    lines = records(events)
    said = [r["text"] for r in lines if r["event"] == "agent_response"]
    dropped = sum(r["count"] for r in lines if r["event"] == "events_dropped")
    # the record's own backlog is bounded in bytes too: what it keeps is whole, what it
    # could not keep in the flood is counted in the record
    assert said and set(said) == {text} and len(said) + dropped >= FRAMES, (len(said), dropped)
    shown = [
        line for line in stdout.splitlines() if line.lstrip("[ .0123456789]").startswith("agent:")
    ]
    assert len(shown) == FRAMES and all(len(line) < 10_000 for line in shown), shown[:1]
    assert 0 < peak["mb"] < TEXT_FLOOD_RSS_MB, f"peak RSS {peak['mb']:.0f} MB"
