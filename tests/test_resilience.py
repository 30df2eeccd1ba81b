"""The network goes away: the device says so, backs off with jitter, and keeps listening."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentpi.agent.script import ErrorScript, SimulatorScript, TurnScript
from agentpi.audio.capture import Microphone
from agentpi.audio.file import FileSink, FileSource
from agentpi.backoff import reconnect_delay
from agentpi.config.document import AgentConfig, AudioConfig, Config, TriggerConfig
from agentpi.device.app import Device
from agentpi.events import EventBus, EventRecord, as_records
from tests.helpers import Run, run_conversation, silence_wav
from tests.netcut import FlakyNetwork

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation


def test_reconnect_delays_double_up_to_a_minute_with_jitter() -> None:
    rng = random.Random(7)
    delays = [reconnect_delay(n, 2.0, rng) for n in range(0, 10)]
    assert delays[0] == 2.0  # no failure: the configured pause
    for failures, delay in enumerate(delays[1:], start=1):
        nominal = min(60.0, 2.0 * 2 ** (failures - 1))
        assert 0.75 * nominal <= delay <= 1.25 * nominal
    assert len({round(d / min(60.0, 2.0 * 2**i), 3) for i, d in enumerate(delays[1:])}) > 3


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_network_down_shows_offline_backs_off_and_returns_to_idle(tmp_path: Path) -> None:
    config = Config(
        agent=AgentConfig(agent_id="a", url=f"ws://127.0.0.1:{closed_port()}", connect_timeout_s=2),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.1),
        audio=AudioConfig(echo="off", cues=False),
    )
    events: list[EventRecord] = []
    bus = EventBus()
    bus.subscribe(as_records(events.append))
    source = FileSource(silence_wav(tmp_path / "quiet.wav", 9.0))
    device = Device(config, Microphone.of(source), FileSink(tmp_path / "out.wav"), events=bus)
    code = asyncio.run(asyncio.wait_for(device.run(), 30))
    assert code == 1
    failed = [e for e in events if e["event"] == "connect_failed"]
    assert len(failed) >= 3 and all(e["offline"] for e in failed)
    assert [e["failures"] for e in failed] == list(range(1, len(failed) + 1))
    # each failure: offline shown, then idle (listening again) well within 5 s
    for event in failed:
        after = [e for e in events if e["event"] == "state" and e["t"] >= event["t"]]
        assert after[0]["state"] == "offline" and after[1]["state"] == "idle"
        assert after[1]["t"] - event["t"] < 5.0
    # and the attempts spread out: each wait is longer than the one before
    starts = [e["t"] for e in events if e["event"] == "connecting"]
    waits = [b - a for a, b in itertools.pairwise(starts)]
    assert all(later > earlier for earlier, later in itertools.pairwise(waits))


def run_through_flaky_network(tmp_path: Path, cut: Callable[[FlakyNetwork], None]) -> Run:
    """Conversations in a row through a relay; ``cut`` breaks the line once the agent speaks
    in the first, and the line is back once that conversation has ended."""
    networks: list[FlakyNetwork] = []

    def through_relay(simulator_url: str) -> dict[str, Any]:
        networks.append(FlakyNetwork(simulator_url))
        return {"url": networks[0].url}

    def on_event(event: EventRecord) -> None:
        network = networks[0]
        if event["event"] == "state" and event["state"] == "speaking" and network.cut_at is None:
            cut(network)
        elif event["event"] == "conversation_ended":
            network.restore()

    try:
        run = run_conversation(
            tmp_path,
            input_wav=silence_wav(tmp_path / "quiet.wav", 16.0),
            silence_close_s=4.0,  # the default: a dead link must not pass for a quiet user
            trigger=TriggerConfig(mode="immediate", restart_pause_s=0.2),
            agent_options=through_relay,
            on_event=on_event,
            once=False,
            cues=True,
        )
    finally:
        for network in networks:
            network.close()
    run.extra["cut_at"] = networks[0].cut_at
    return run


def assert_heard_and_listening_again(run: Run, error: str) -> None:
    cut_at = run.extra["cut_at"]
    assert cut_at is not None, "the agent never spoke, so the line was never cut"
    first = run.of_kind("conversation_ended")[0]
    assert first["code"] is None and first["closed_by"] == "server"
    assert error in first["error"]
    # the failure table's network row: offline shown and the error cue heard, then listening
    assert first["failure"] == "network"
    after = [e for e in run.events if e["t"] >= cut_at]
    states = [e["state"] for e in after if e["event"] == "state"]
    assert "error" not in states
    assert states[states.index("offline") + 1] == "idle"
    idle_again = next(e for e in after if e["event"] == "state" and e["state"] == "idle")
    assert idle_again["t"] - cut_at < 5.0
    assert run.cues is not None and run.cues.played[0] == "error"
    # and once the network is back, the next conversation is a normal one
    second = run.simulator.conversations[1]
    assert (second.closed_by, second.close_code) == ("client", 1000)
    assert run.of_kind("conversation_ended")[1]["error"] is None


def test_connection_reset_mid_conversation_ends_it_and_listens_again(tmp_path: Path) -> None:
    run = run_through_flaky_network(tmp_path, FlakyNetwork.reset)
    assert_heard_and_listening_again(run, "connection lost")
    # the agent was still talking: its sound stops with the line
    kinds = [e["event"] for e in run.events if e["t"] >= run.extra["cut_at"]]
    assert kinds.index("playback_flushed") < kinds.index("conversation_ended")


def test_a_silently_dead_link_is_noticed_by_keepalive_and_listens_again(tmp_path: Path) -> None:
    run = run_through_flaky_network(tmp_path, FlakyNetwork.blackhole)
    assert_heard_and_listening_again(run, "keepalive ping timeout")


def test_a_server_that_fails_every_conversation_after_its_metadata_is_backed_off(
    tmp_path: Path,
) -> None:
    """Connects succeed, then the server fails (1011) before anyone speaks: each such failure
    doubles the kiosk's wait, as failed connects do."""
    script = SimulatorScript(
        first_turn=TurnScript(error=ErrorScript(code=1011, error_type="llm_error")),
    )
    retries: list[EventRecord] = []

    async def stop_after_three(device: Device) -> None:
        while len(retries) < 3:
            await asyncio.sleep(0.05)
        device.shutdown("test over")

    def on_event(event: EventRecord) -> None:
        if event["event"] == "retry":
            retries.append(event)

    run = run_conversation(
        tmp_path,
        script,
        input_wav=silence_wav(tmp_path / "quiet.wav", 60),
        trigger=TriggerConfig(mode="immediate", restart_pause_s=0.5),
        once=False,
        on_event=on_event,
        during=stop_after_three,
        timeout=60,
    )
    assert [r["failures"] for r in retries] == [1, 2, 3]
    delays = [r["delay_s"] for r in retries]
    for n, delay in enumerate(delays):
        assert 0.75 * 2**n <= delay <= 1.25 * 2**n, delays  # 1, 2, 4 s, +-25 %
    # the server saw the conversations that far apart, at least
    opened = [c.opened_at for c in run.simulator.conversations]
    gaps = [b - a for a, b in itertools.pairwise(opened)]
    assert all(gap >= delay for gap, delay in zip(gaps, delays, strict=False)), (gaps, delays)


def test_the_control_socket_is_backed_off_too_after_a_failed_conversation(
    tmp_path: Path,
) -> None:
    """`agentpi start` after a conversation the server failed before anyone spoke is told to
    wait, as the kiosk waits, instead of failing against the server again at once."""
    script = SimulatorScript(
        first_turn=TurnScript(error=ErrorScript(code=1011, error_type="llm_error")),
    )
    ended: list[EventRecord] = []
    answers: list[str | None] = []

    async def start_twice(device: Device) -> None:
        await asyncio.wait_for(device.ready.wait(), 20)
        answers.append(device.controls.start_conversation())
        while not ended or device.state.value != "idle":
            await asyncio.sleep(0.02)
        answers.append(device.controls.start_conversation())
        device.shutdown("test over")

    run_conversation(
        tmp_path,
        script,
        input_wav=silence_wav(tmp_path / "quiet.wav", 60),
        trigger=TriggerConfig(mode="control", restart_pause_s=5.0),
        once=False,
        on_event=lambda e: ended.append(e) if e["event"] == "conversation_ended" else None,
        during=start_twice,
        timeout=60,
    )
    assert answers[0] is None and ended[0]["error"]
    assert answers[1] is not None and "backing off, try again in" in answers[1], answers


def test_a_clean_conversation_nobody_spoke_in_resets_the_back_off() -> None:
    """A kiosk nobody talks to: greeted, silent, hung up. One network cut before it must not
    double its pause for the rest of the year."""
    from agentpi.device.retry import failures_after
    from agentpi.protocol.actions import ConversationEnded

    cut = ConversationEnded(None, "connection lost", "network", "connection lost")
    clean = ConversationEnded(1000, "user silent", "client", None)
    assert failures_after(0, 0, cut) == 1
    assert failures_after(failures_after(0, 0, cut), 0, clean) == 0
    assert failures_after(3, 0, cut) == 4
