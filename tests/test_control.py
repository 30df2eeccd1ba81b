"""The local control socket: driving a real device (and the agent simulator) from outside."""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from agentpi import events as ev
from agentpi.config.document import ConfigError, TriggerConfig
from agentpi.control.requests import ControlRequestError, Opening, parse_request
from agentpi.control.server import HANG_UP_S, MAX_CLIENTS, ControlServer
from agentpi.device.app import Device
from agentpi.events import EventBus
from agentpi.protocol import messages as m
from tests.helpers import AGENTPI, run_conversation, silence_wav

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

WAIT_S = 20.0


def other_group() -> grp.struct_group:
    """A group the tests' user is not primarily in, to see the socket handed to it."""
    for name in ("audio", "daemon", "nogroup", "users"):
        with_name = [g for g in grp.getgrall() if g.gr_name == name]
        if with_name and with_name[0].gr_gid != os.getegid():
            return with_name[0]
    pytest.skip("no second group on this machine")


class Client:
    """One connection to the control socket, as a kiosk program would hold it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, path: Path) -> Client:
        return cls(*await asyncio.open_unix_connection(str(path)))

    async def ask(self, payload: dict[str, Any] | bytes) -> dict[str, Any]:
        raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.writer.write(raw + b"\n")
        await self.writer.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.reader.readline(), WAIT_S))
        return reply

    async def wait_until_ready(self) -> dict[str, Any]:
        """The device answers at once, but takes requests only once its microphone is open."""
        deadline = time.monotonic() + WAIT_S
        while True:
            status: dict[str, Any] = (await self.ask({"command": "status"}))["status"]
            if status["ready"]:
                return status
            assert time.monotonic() < deadline, "the device never became ready"
            await asyncio.sleep(0.05)

    async def next_event(self, kind: str, **fields: Any) -> dict[str, Any]:
        """Read event lines until one of ``kind`` whose fields match."""
        while True:
            line = await asyncio.wait_for(self.reader.readline(), WAIT_S)
            assert line, f"the event stream ended before {kind} {fields}"
            event: dict[str, Any] = json.loads(line)
            if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                return event

    def close(self) -> None:
        self.writer.close()


def test_a_kiosk_drives_a_whole_conversation_through_the_socket(
    tmp_path: Path, runtime_dir: Path
) -> None:
    path = runtime_dir / "control.sock"
    group = other_group()
    seen: dict[str, Any] = {}

    async def kiosk(device: Device) -> None:
        server = ControlServer(device.controls, path, group.gr_name)
        await server.start()
        try:
            info = path.stat()
            seen["mode"], seen["gid"] = stat.S_IMODE(info.st_mode), info.st_gid
            events = await Client.connect(path)
            assert await events.ask({"command": "events"}) == {"ok": True}
            control = await Client.connect(path)
            status = await control.wait_until_ready()
            assert (status["state"], status["in_conversation"]) == ("idle", False)
            refused = await control.ask({"command": "say", "text": "hi", "start": False})
            assert refused == {"ok": False, "error": "no conversation is running"}
            # a typed message while idle starts a conversation that opens with it
            started = await control.ask(
                {"command": "say", "text": "what's on today", "start": True}
            )
            assert started == {"ok": True, "started": True}
            await events.next_event("agent_response", text="You said: what's on today")
            assert await control.ask({"command": "context", "text": "The door opened."}) == {
                "ok": True
            }
            assert await control.ask({"command": "say", "text": "thanks"}) == {"ok": True}
            await events.next_event("agent_response", text="You said: thanks")
            again = await control.ask({"command": "start"})
            assert again == {"ok": False, "error": "a conversation is already running"}
            # bad requests get an answer and the connection goes on
            assert "not a JSON object" in (await control.ask(b"{oops"))["error"]
            assert "unknown command 'reboot'" in (await control.ask({"command": "reboot"}))["error"]
            assert "needs" in (await control.ask({"command": "context"}))["error"]
            status = (await control.ask({"command": "status"}))["status"]
            assert status["in_conversation"] and status["conversation_id"].startswith("conv_")
            assert await control.ask({"command": "stop"}) == {"ok": True}
            # once it is ending, text is refused rather than acknowledged and dropped
            late = await control.ask({"command": "say", "text": "wait", "start": False})
            assert late["ok"] is False
            assert late["error"] in ("the conversation is ending", "no conversation is running")
            seen["ended"] = await events.next_event("conversation_ended")
            events.close()
            control.close()
        finally:
            await server.close()
        seen["socket_left"] = path.exists()

    run = run_conversation(
        tmp_path,
        input_wav=silence_wav(tmp_path / "quiet.wav", 30.0),
        trigger=TriggerConfig(mode="control"),
        silence_close_s=60.0,
        during=kiosk,
    )
    assert run.exit_code == 0
    assert seen["mode"] == 0o660 and seen["gid"] == group.gr_gid
    assert seen["socket_left"] is False
    sent = [
        message
        for _, message in run.record.messages
        if isinstance(message, m.UserMessage | m.ContextualUpdate)
    ]
    assert m.UserMessage("what's on today") in sent and m.UserMessage("thanks") in sent
    assert m.ContextualUpdate("The door opened.") in sent
    assert sent.index(m.UserMessage("what's on today")) < sent.index(m.UserMessage("thanks"))
    assert (run.record.closed_by, run.record.close_code) == ("client", 1000)
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "stopped over the control socket"
    assert seen["ended"] == json.loads(json.dumps(ended))  # the same line as --events
    assert run.of_kind("trigger")[0]["source"] == "control"


class QuietDevice:
    """Just enough of a device for the socket's own housekeeping."""

    def __init__(self) -> None:
        self.events = EventBus()

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "in_conversation": False}

    def start_conversation(
        self, user_message: str | None = None, opening: Opening | None = None
    ) -> str | None:
        return "not in this test"

    def announce(self, text: str) -> str | None:
        return "not in this test"

    def set_muted(self, muted: bool) -> str | None:
        return "not in this test"

    def choose_wake_word(self, model: str) -> str | None:
        return "not in this test"

    def stop_conversation(self) -> str | None:
        return "not in this test"

    def send_user_message(self, text: str) -> str | None:
        return "not in this test"

    def send_contextual_update(self, text: str, context_id: str | None = None) -> str | None:
        return "not in this test"

    def answer_approval(
        self, approved: bool, by: str, tool_call_id: str | None = None
    ) -> str | None:
        return "not in this test"

    def send_feedback(self, score: str) -> str | None:
        return "not in this test"


def test_a_stale_socket_is_replaced_and_a_live_one_is_not_taken_over(runtime_dir: Path) -> None:
    path = runtime_dir / "agentpi" / "control.sock"

    async def scenario() -> None:
        first = ControlServer(QuietDevice(), path)
        await first.start()
        second = ControlServer(QuietDevice(), path)
        with pytest.raises(ConfigError, match="another agentpi is already running there"):
            await second.start()
        await first.close()
        # a device killed without cleaning up leaves the file behind, with nobody listening:
        # made by hand, since closing an asyncio server removes its file on Python 3.13
        path.unlink(missing_ok=True)
        leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        leftover.bind(str(path))
        leftover.close()
        assert path.exists()
        third = ControlServer(QuietDevice(), path)
        await third.start()
        client = await Client.connect(path)
        assert (await client.ask({"command": "status"}))["ok"] is True
        client.close()
        await third.close()
        with pytest.raises(ConfigError, match="no such group"):
            await ControlServer(QuietDevice(), path, "no-such-group-here").start()

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S))


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (b"[1]", "not a JSON object"),
        (b'{"command": "say"}', 'say needs "text"'),
        (b'{"command": "say", "text": "   "}', 'say needs "text"'),
        (b'{"command": "say", "text": "' + b"x" * 5000 + b'"}', "at most 4000"),
        (b'{"command": "say", "text": "x", "start": "yes"}', '"start" must be true or false'),
        (b'{"command": "feedback"}', 'feedback needs "score": like or dislike'),
        (b'{"command": "feedback", "score": "meh"}', 'feedback needs "score"'),
        (b'{"command": "approve", "tool_call_id": 7}', '"tool_call_id" must be a non-empty string'),
        (b'{"command": "context", "text": "x", "id": ""}', '"id" must be a non-empty string'),
        (
            b'{"command": "context", "text": "x", "id": "' + b"i" * 200 + b'"}',
            "of at most 128",
        ),
    ],
)
def test_bad_requests_say_what_is_wrong(line: bytes, error: str) -> None:
    with pytest.raises(ControlRequestError, match=error):
        parse_request(line)


def wait_for_path(path: Path, process: subprocess.Popen[str], timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_agentpi_say_status_events_and_stop_from_a_shell(tmp_path: Path) -> None:
    sock = tmp_path / "c.sock"
    config = tmp_path / "config.toml"
    quiet = silence_wav(tmp_path / "quiet.wav", 30.0)
    out = tmp_path / "o.wav"

    def agentpi(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*AGENTPI, *args, "--socket", str(sock)], capture_output=True, text=True, timeout=30
        )

    nobody = agentpi("status")
    assert nobody.returncode == 1 and "no agentpi is listening on" in nobody.stderr

    with subprocess.Popen(
        [*AGENTPI, "simulate", "--port", "0", "--everything"], stdout=subprocess.PIPE, text=True
    ) as simulator:
        assert simulator.stdout is not None
        url = simulator.stdout.readline().split()[-1]
        config.write_text(
            f'[agent]\nagent_id = "a"\nurl = "{url}"\n[trigger]\nmode = "control"\n'
            f'[audio]\ninput = "file:{quiet}"\noutput = "file:{out}"\n'
            f'[conversation]\nsilence_close_s = 60\n[control]\nsocket = "{sock}"\n'
        )
        device = subprocess.Popen(
            [*AGENTPI, "run", "--config", str(config), "--once"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for_path(sock, device)
            status = agentpi("status")
            assert status.returncode == 0 and status.stdout.startswith("state            idle")
            follow = subprocess.Popen(
                [*AGENTPI, "events", "--socket", str(sock)], stdout=subprocess.PIPE, text=True
            )
            assert follow.stdout is not None
            said = agentpi("say", "hello there")
            assert said.returncode == 0 and "started a conversation" in said.stdout, said.stderr
            for line in follow.stdout:
                event = json.loads(line)
                if event["event"] == "agent_response" and "hello there" in event["text"]:
                    break
            liked = agentpi("feedback", "like")
            assert liked.returncode == 0, liked.stderr
            again = agentpi("feedback", "dislike")  # one rating per answer, as the SDKs allow
            assert again.returncode == 1 and len(again.stderr.strip().splitlines()) == 1
            assert "no answer to rate" in again.stderr
            nothing = agentpi("approve")
            assert nothing.returncode == 1 and "no tool is waiting" in nothing.stderr
            for line in follow.stdout:
                if json.loads(line)["event"] == "feedback":
                    break
            assert agentpi("stop").returncode == 0
            assert device.wait(WAIT_S) == 0, device.communicate()[1]
            # the device has gone: the follower's stream ends and it exits
            assert follow.wait(WAIT_S) == 0
        finally:
            device.kill()
            simulator.terminate()
    assert not sock.exists()


def test_more_clients_than_the_bound_are_refused_and_the_rest_served(runtime_dir: Path) -> None:
    path = runtime_dir / "agentpi" / "control.sock"

    async def scenario() -> None:
        server = ControlServer(QuietDevice(), path)
        await server.start()
        held = [await Client.connect(path) for _ in range(MAX_CLIENTS)]
        for client in held:  # each is being served
            assert (await client.ask({"command": "status"}))["ok"] is True
        extra = await Client.connect(path)
        refused = json.loads(await asyncio.wait_for(extra.reader.readline(), WAIT_S))
        assert refused == {
            "ok": False,
            "error": f"too many clients at once (at most {MAX_CLIENTS}); try again",
        }
        extra.close()
        held.pop().close()
        await asyncio.sleep(0.1)
        again = await Client.connect(path)
        assert (await again.ask({"command": "status"}))["ok"] is True
        for client in [*held, again]:
            client.close()
        await server.close()

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S))


def test_what_a_subscriber_sends_after_events_is_not_kept(runtime_dir: Path) -> None:
    """A client that subscribes and then sends 64 MB: the device reads and drops it."""
    path = runtime_dir / "agentpi" / "control.sock"

    async def scenario() -> float:
        server = ControlServer(QuietDevice(), path)
        await server.start()
        client = await Client.connect(path)
        assert (await client.ask({"command": "events"}))["ok"] is True
        before = rss_mb()
        block = b"x" * (1024 * 1024)
        for _ in range(64):
            client.writer.write(block)
            await client.writer.drain()
        await asyncio.sleep(0.2)  # the device reads what is in flight
        grown = rss_mb() - before
        client.close()
        await server.close()
        return grown

    grown = asyncio.run(asyncio.wait_for(scenario(), WAIT_S))
    assert grown < 16, f"{grown:.0f} MB kept"


def test_a_subscriber_that_never_reads_costs_a_bounded_backlog_and_does_not_hold_the_close(
    runtime_dir: Path,
) -> None:
    """Forty 8 MB answers for a subscriber that reads nothing: what waits is shortened and
    bounded, and closing the socket cuts it off rather than waiting for it for ever."""
    path = runtime_dir / "agentpi" / "control.sock"
    device = QuietDevice()
    text = "word " * (8 * 1024 * 1024 // 5)

    async def scenario() -> tuple[float, float]:
        server = ControlServer(device, path)
        await server.start()
        client = await Client.connect(path)
        assert (await client.ask({"command": "events"}))["ok"] is True
        before = rss_mb()
        for _ in range(40):
            device.events.publish(ev.AgentResponse(text=text, event_id=1))
            await asyncio.sleep(0)
        await asyncio.sleep(0.2)
        grown = rss_mb() - before
        started = time.monotonic()
        await server.close()
        closing = time.monotonic() - started
        client.close()
        return grown, closing

    grown, closing = asyncio.run(asyncio.wait_for(scenario(), WAIT_S))
    assert grown < 16, f"{grown:.0f} MB kept"
    assert closing < HANG_UP_S + 1.0, f"close took {closing:.1f} s"


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_half_sent_requests_do_not_hold_the_slots(
    runtime_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import agentpi.control.server

    monkeypatch.setattr(agentpi.control.server, "REQUEST_IDLE_S", 0.5)
    path = runtime_dir / "agentpi" / "control.sock"

    async def scenario() -> None:
        server = ControlServer(QuietDevice(), path)
        await server.start()
        stalled = [await Client.connect(path) for _ in range(MAX_CLIENTS)]
        for client in stalled:
            client.writer.write(b'{"command": "sta')  # and never the rest
        answers = [json.loads(await asyncio.wait_for(c.reader.readline(), WAIT_S)) for c in stalled]
        assert {a["error"] for a in answers} == {"no complete request within 0.5 s; hanging up"}
        fresh = await Client.connect(path)
        assert (await fresh.ask({"command": "status"}))["ok"] is True
        for client in [*stalled, fresh]:
            client.close()
        await server.close()

    asyncio.run(asyncio.wait_for(scenario(), WAIT_S))


def test_too_many_clients_reaches_the_cli_as_one_line(runtime_dir: Path) -> None:
    path = runtime_dir / "agentpi" / "control.sock"

    async def scenario() -> str:
        server = ControlServer(QuietDevice(), path)
        await server.start()
        held = [await Client.connect(path) for _ in range(MAX_CLIENTS)]
        for client in held:
            assert (await client.ask({"command": "status"}))["ok"] is True
        refused = await asyncio.to_thread(
            subprocess.run,
            [*AGENTPI, "status", "--socket", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        for client in held:
            client.close()
        await server.close()
        assert refused.returncode == 1, refused
        return refused.stderr

    stderr = asyncio.run(asyncio.wait_for(scenario(), WAIT_S * 2))
    assert "too many clients" in stderr and "Traceback" not in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_socket_directory_made_by_someone_else_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "agentpi-theirs"
    theirs.mkdir(mode=0o777)
    theirs.chmod(0o777)
    if os.geteuid() == 0:
        os.chown(theirs, 65534, 65534)  # nobody's, as another local user would leave it
    with pytest.raises(ConfigError, match=r"belongs to uid|writable by others"):
        ControlServer(QuietDevice(), theirs / "control.sock").prepare()
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    link = tmp_path / "agentpi-link"
    link.symlink_to(target)
    with pytest.raises(ConfigError, match="not a directory"):
        ControlServer(QuietDevice(), link / "control.sock").prepare()
    mine = tmp_path / "agentpi-mine"
    ControlServer(QuietDevice(), mine / "control.sock").prepare()  # made 0700 by the device
    assert stat.S_IMODE(mine.stat().st_mode) == 0o700
