"""The device on MQTT, against a real Mosquitto broker (password file, TLS listener)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

import agentpi.mqtt.client as mqtt_client
from agentpi import events as ev
from agentpi.backoff import RECONNECT_MAX_S
from agentpi.config.document import TriggerConfig
from agentpi.control.requests import ControlRequest, Opening
from agentpi.device.app import Device
from agentpi.events import DeviceEvent, EventBus, MqttTakenOver, VolumeChanged
from agentpi.mqtt.bridge import MqttBridge
from agentpi.mqtt.client import SHORT_SESSIONS_SUSPECTED, MqttDevice, MqttLink, taken_over
from agentpi.mqtt.doctor import check_broker
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol.client_messages import UserMessage
from agentpi.settings.credentials import Secret
from tests.helpers import AGENTPI, HELLO_WAV, run_conversation, silence_wav
from tests.mqtt_broker import PASSWORD, USER, Broker, free_port
from tests.test_cli import agentpi, write_config

pytestmark = pytest.mark.realtime  # a broker and timeouts: not under emulation

# Home Assistant's MQTT discovery: the keys each entity type must have (its documentation's
# "required" options), and what every one of ours carries so HA can group and track them.
REQUIRED = {
    "sensor": {"state_topic"},
    "number": {"command_topic"},
    "switch": {"command_topic"},
    "button": {"command_topic"},
    "text": {"command_topic"},
    "notify": {"command_topic"},
    "event": {"state_topic", "event_types"},
}
COMMON = {"name", "unique_id", "availability_topic", "device"}


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    if shutil.which("mosquitto") is None:
        pytest.skip("no mosquitto here: `make test` installs it")
    running = Broker(tmp_path / "broker")
    running.start()
    yield running
    running.kill()


def mqtt_config(broker: Broker, tls: bool = True, **extra: Any) -> MqttConfig:
    url = f"mqtts://localhost:{broker.tls_port}" if tls else f"mqtt://127.0.0.1:{broker.port}"
    return MqttConfig(enabled=True, url=url, username=USER, ca_file=str(broker.ca_file), **extra)


@dataclass
class Listener:
    """A subscriber that keeps every message, by topic."""

    messages: list[tuple[str, str, bool]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def last(self, topic: str) -> str | None:
        found = [payload for name, payload, _ in self.messages if name == topic]
        return found[-1] if found else None

    def all(self, topic: str) -> list[str]:
        return [payload for name, payload, _ in self.messages if name == topic]

    async def until(self, check: Callable[[], Any], timeout: float = 15.0) -> Any:
        async with asyncio.timeout(timeout):
            while not (result := check()):
                self.changed.clear()
                await self.changed.wait()
            return result


@contextlib.asynccontextmanager
async def subscribed(broker: Broker, *topics: str) -> AsyncIterator[tuple[Listener, Any]]:
    listener = Listener()
    async with aiomqtt.Client("127.0.0.1", broker.port, username=USER, password=PASSWORD) as client:
        for topic in topics:
            await client.subscribe(topic, qos=1)

        async def collect() -> None:
            async for message in client.messages:
                payload = message.payload
                text = payload.decode() if isinstance(payload, bytes) else str(payload)
                listener.messages.append((str(message.topic), text, message.retain))
                listener.changed.set()

        task = asyncio.ensure_future(collect())
        try:
            yield listener, client
        finally:
            task.cancel()


def start_link(device: MqttDevice, config: MqttConfig) -> tuple[MqttLink, asyncio.Future[None]]:
    link = MqttLink(device, config, Secret(PASSWORD), "test")
    return link, asyncio.ensure_future(link.run())


# -------------------------------------------------------------------- a whole device


def test_home_assistant_sees_the_device_and_starts_a_conversation(
    tmp_path: Path, broker: Broker
) -> None:
    seen: dict[str, Any] = {}

    async def during(device: Device) -> None:
        base = f"agentpi/{device.device_id}"
        async with subscribed(broker, "homeassistant/#", f"{base}/#") as (heard, client):
            _, running = start_link(device.controls, mqtt_config(broker))
            try:
                await heard.until(lambda: heard.last(f"{base}/availability") == "online")
                configs = await heard.until(
                    lambda: (
                        len([m for m in heard.messages if m[0].endswith("/config")]) >= 7
                        and [m for m in heard.messages if m[0].endswith("/config")]
                    )
                )
                async with subscribed(broker, "homeassistant/#") as (late, _):
                    # a controller that connects later (or restarts) finds them retained
                    seen["configs"] = await late.until(
                        lambda: len(late.messages) >= len(configs) and late.messages
                    )
                await client.publish(f"{base}/start", "PRESS", qos=1)
                await heard.until(lambda: heard.last(f"{base}/conversation_id"))
                seen["conversation_id"] = heard.last(f"{base}/conversation_id")
                await heard.until(lambda: heard.last(f"{base}/conversation_id") == "", 30)
                await heard.until(lambda: "conversation_ended" in str(heard.all(f"{base}/events")))
                seen["status"] = json.loads(heard.last(f"{base}/status") or "{}")
                seen["states"] = heard.all(f"{base}/state")
                seen["events"] = [json.loads(line)["event"] for line in heard.all(f"{base}/events")]
                seen["reply"] = heard.all(f"{base}/reply")
            finally:
                running.cancel()

    run = run_conversation(
        tmp_path, trigger=TriggerConfig(mode="control"), once=True, during=during, timeout=60
    )
    assert run.exit_code == 0
    assert seen["conversation_id"] == run.record.conversation_id
    for topic, payload, retained in seen["configs"]:
        component = topic.split("/")[1]
        config = json.loads(payload)
        missing = (REQUIRED[component] | COMMON) - set(config)
        assert not missing and retained, (topic, missing)
        assert config["device"]["identifiers"]
    components = sorted(topic.split("/")[1] for topic, _, _ in seen["configs"])
    assert components == [
        *["button"] * 4,
        *["event"] * 2,
        "notify",
        "number",
        *["sensor"] * 4,
        *["switch"] * 2,
        "text",
    ]
    assert {"listening", "idle"} <= set(seen["states"])
    assert "conversation_ended" in seen["events"] and seen["reply"] == ['{"ok": true}']
    status = seen["status"]
    assert status["last_outcome"]["error"] is None and status["conversations"] == 1
    # privacy: what was said is not published unless asked for
    assert "conversation_started" in seen["events"]
    assert not {"user_transcript", "agent_response", "contextual_update_sent"} & set(seen["events"])


def test_bad_commands_are_answered_with_an_error_and_nothing_else(
    tmp_path: Path, broker: Broker
) -> None:
    replies: list[dict[str, Any]] = []

    async def during(device: Device) -> None:
        base = f"agentpi/{device.device_id}"
        async with subscribed(broker, f"{base}/reply", f"{base}/state") as (heard, client):
            link, running = start_link(device.controls, mqtt_config(broker, tls=False))
            await link.connected.wait()
            bad = [
                ("command", b"{not json"),
                ("command", json.dumps({"command": "say", "text": "x" * 5000}).encode()),
                ("command", json.dumps({"command": "events"}).encode()),
                ("command", b"\xff\xfe"),
                ("say", b"x" * 70000),
                ("volume/set", b"loud"),
                ("volume/set", b"900"),
                ("wake/set", b"MAYBE"),
                ("feedback", b"love"),
                ("approve", b"PRESS"),
            ]
            for name, payload in bad:
                await client.publish(f"{base}/{name}", payload, qos=1)
            await heard.until(lambda: len(heard.all(f"{base}/reply")) == len(bad))
            replies.extend(json.loads(reply) for reply in heard.all(f"{base}/reply"))
            # nothing ran: the state never left idle (a reconnect under load republishes it)
            assert set(heard.all(f"{base}/state")) == {"idle"}
            running.cancel()
            device.shutdown()

    run = run_conversation(
        tmp_path, trigger=TriggerConfig(mode="control"), once=False, during=during, timeout=60
    )
    assert run.simulator.conversations == []
    assert len(replies) == 10 and all(reply["ok"] is False for reply in replies)
    errors = " | ".join(reply["error"] for reply in replies)
    for expected in (
        "not a JSON object",
        "at most 4000",
        "events",
        "65536",
        "a number",
        "ON or",
        'feedback needs "score": like or dislike',
        "no conversation is running",
    ):
        assert expected in errors, errors


# -------------------------------------------------------------------- fleets, with stand-ins


@dataclass
class StandIn:
    """A device's control surface without a device: what the link calls, recorded."""

    device_id: str
    events: EventBus = field(default_factory=EventBus)
    calls: list[str] = field(default_factory=list)

    def status(self) -> dict[str, Any]:
        return {
            "state": "idle",
            "conversation_id": None,
            "in_conversation": False,
            "volume_percent": 100.0,
            "conversations": 0,
            "uptime_s": 1.0,
        }

    def start_conversation(
        self, user_message: str | None = None, opening: Opening | None = None
    ) -> str | None:
        self.calls.append(f"start {user_message or ''}".strip())
        return None

    def announce(self, text: str) -> str | None:
        self.calls.append(f"announce {text}")
        return None

    def set_muted(self, muted: bool) -> str | None:
        self.calls.append(f"mute {muted}")
        return None

    def choose_wake_word(self, model: str) -> str | None:
        self.calls.append(f"wake word {model}")
        return None

    def stop_conversation(self) -> str | None:
        self.calls.append("stop")
        return None

    def send_user_message(self, text: str) -> str | None:
        self.calls.append(f"say {text}")
        return None

    def send_contextual_update(self, text: str, context_id: str | None = None) -> str | None:
        self.calls.append(f"context {text}")
        return None

    def answer_approval(
        self, approved: bool, by: str, tool_call_id: str | None = None
    ) -> str | None:
        self.calls.append(f"{'approve' if approved else 'deny'} by {by}")
        return None

    def send_feedback(self, score: str) -> str | None:
        self.calls.append(f"feedback {score}")
        return None

    def set_volume_percent(self, percent: float) -> None:
        self.calls.append(f"volume {percent:g}")

    def set_wake_enabled(self, on: bool) -> str | None:
        self.calls.append(f"wake {on}")
        return None


def test_twenty_devices_on_one_broker_each_hear_only_their_own(broker: Broker) -> None:
    async def scenario() -> list[StandIn]:
        devices = [StandIn(f"kiosk-{n:02d}") for n in range(20)]
        links = [start_link(d, mqtt_config(broker, tls=False, discovery=False)) for d in devices]
        try:
            topics = ("agentpi/+/availability", "agentpi/+/reply")
            async with subscribed(broker, *topics) as (heard, client):
                await heard.until(lambda: len(heard.messages) >= 20)
                for n, device in enumerate(devices):
                    await client.publish(f"agentpi/{device.device_id}/volume/set", str(n), qos=1)
                await client.publish("agentpi/kiosk-07/start", "PRESS", qos=1)
                await client.publish("agentpi/kiosk-13/wake/set", "OFF", qos=1)
                await heard.until(lambda: devices[13].calls[-1:] == ["wake False"], 20)
                await heard.until(lambda: all(d.calls for d in devices), 20)
                await asyncio.sleep(0.5)  # anything misrouted would have arrived by now
        finally:
            for _, running in links:
                running.cancel()
        return devices

    devices = asyncio.run(scenario())
    for n, device in enumerate(devices):
        extra = {7: ["start"], 13: ["wake False"]}.get(n, [])
        assert device.calls == [f"volume {n}", *extra], (device.device_id, device.calls)


def test_the_broker_shows_a_killed_device_offline(tmp_path: Path, broker: Broker) -> None:
    # the real program, as the service runs it: `agentpi run`, the password in the environment
    body = (
        f"[agent]\nagent_id = 'a'\n[trigger]\nmode = 'control'\n[control]\nenabled = false\n"
        f"[audio]\ninput = 'file:{silence_wav(tmp_path / 'quiet.wav', 60.0)}'\n"
        f"output = 'file:{tmp_path / 'out.wav'}'\n"
        f"[mqtt]\nenabled = true\nurl = 'mqtt://127.0.0.1:{broker.port}'\nusername = '{USER}'\n"
        "base_topic = 'agentpi/doomed'\n"
    )
    config = write_config(tmp_path, body)

    async def scenario() -> tuple[list[str], str | None]:
        async with subscribed(broker, "agentpi/doomed/#") as (heard, _):
            child = subprocess.Popen(
                [*AGENTPI, "run", "--config", str(config)],
                env={**os.environ, "AGENTPI_MQTT_PASSWORD": PASSWORD},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            try:
                await heard.until(lambda: heard.last("agentpi/doomed/availability") == "online", 30)
                await heard.until(lambda: heard.last("agentpi/doomed/status"))
                child.send_signal(signal.SIGKILL)  # no goodbye: only the broker's last will
                await heard.until(lambda: heard.last("agentpi/doomed/availability") == "offline")
            finally:
                child.kill()
                _, errors = child.communicate(timeout=10)
            assert PASSWORD.encode() not in errors
            return heard.all("agentpi/doomed/availability"), heard.last("agentpi/doomed/state")

    availability, state = asyncio.run(scenario())
    assert availability[-2:] == ["online", "offline"] and state == "idle"


def test_a_broker_restart_mid_conversation_does_not_disturb_it(
    tmp_path: Path, broker: Broker
) -> None:
    seen: dict[str, Any] = {}

    async def during(device: Device) -> None:
        base = f"agentpi/{device.device_id}"
        link, running = start_link(device.controls, mqtt_config(broker))
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, f"{base}/reply") as (heard, client):
                await client.publish(f"{base}/start", "PRESS", qos=1)
                await heard.until(lambda: heard.all(f"{base}/reply"))
            await asyncio.sleep(1.0)  # the conversation is under way
            broker.kill()
            seen["in_conversation"] = device.controls.status()["in_conversation"]
            await asyncio.sleep(1.0)
            broker.start()
            async with subscribed(broker, f"{base}/#") as (heard, _):
                await heard.until(lambda: link.connects == 2 and heard.last(f"{base}/availability"))
                seen["availability"] = heard.last(f"{base}/availability")
                await heard.until(lambda: heard.last(f"{base}/conversation_id") == "", 30)
            seen["failures_seen"] = link.connects
        finally:
            running.cancel()

    run = run_conversation(
        tmp_path, trigger=TriggerConfig(mode="control"), once=True, during=during, timeout=60
    )
    assert seen["in_conversation"] is True and seen["availability"] == "online"
    assert run.exit_code == 0
    ended = run.of_kind("conversation_ended")[0]
    assert ended["error"] is None and ended["reason"] == "user silent after the agent's turn"
    assert run.record.closed_by == "client" and len(run.record.turns) == 2


def test_doctor_checks_the_broker_and_says_what_to_fix(broker: Broker) -> None:
    good = mqtt_config(broker)
    ok, detail, _ = check_broker(good, Secret(PASSWORD))
    assert ok and "logged in" in detail and "TLS" in detail
    ok, detail, fix = check_broker(good, Secret("wrong"))
    assert not ok and "login" in detail and "AGENTPI_MQTT_PASSWORD" in fix
    no_ca = MqttConfig(enabled=True, url=f"mqtts://localhost:{broker.tls_port}", username=USER)
    ok, detail, fix = check_broker(no_ca, Secret(PASSWORD))
    assert not ok and detail.startswith("TLS") and "ca_file" in fix
    closed = MqttConfig(enabled=True, url=f"mqtt://127.0.0.1:{free_port()}", username=USER)
    ok, detail, fix = check_broker(closed, Secret(PASSWORD))
    assert not ok and "broker running" in fix
    assert PASSWORD not in detail + fix


@pytest.mark.parametrize(
    ("mqtt", "expected"),
    [
        ("url = 'mqtt://broker.lan'", "plain MQTT to another machine"),
        ("url = 'http://broker.lan'", "use mqtts://HOST[:PORT]"),
        ("url = 'mqtts://me:pw@broker.lan'", "no user or password in the URL"),
        ("url = 'mqtts://broker.lan:port'", "the port is not a number"),
        ("url = 'mqtts://broker.lan'\nbase_topic = 'a/#'", "mqtt.base_topic"),
        ("url = 'mqtts://broker.lan'\nevents_per_s = 0", "mqtt.events_per_s"),
        ("url = 'mqtts://broker.lan'\nprotocol = '3'", 'use "5" or "3.1.1"'),
        ("url = 'mqtts://broker.lan'\nclient_id = 'a b'", "mqtt.client_id = 'a b': use 1 to 64"),
    ],
)
def test_bad_mqtt_config_is_one_line(tmp_path: Path, mqtt: str, expected: str) -> None:
    audio = f"[audio]\ninput = 'file:{HELLO_WAV}'\noutput = 'file:{tmp_path}/o.wav'\n"
    body = f"[agent]\nagent_id = 'a'\n{audio}[mqtt]\nenabled = true\n{mqtt}\n"
    result = agentpi("run", "--config", str(write_config(tmp_path, body)), "--once")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and expected in lines[0], result.stderr


def test_the_queue_toward_the_broker_is_bounded_while_it_is_away() -> None:
    async def scenario() -> MqttLink:
        device = StandIn("lonely")
        config = MqttConfig(enabled=True, url=f"mqtt://127.0.0.1:{free_port()}")  # nobody there
        link = MqttLink(device, config, None, "test", queue_max=50)
        running = asyncio.ensure_future(link.run())
        for n in range(1000):
            device.events.publish(VolumeChanged(float(n)))
        await asyncio.sleep(0.2)
        running.cancel()
        return link

    link = asyncio.run(scenario())
    assert len(link._queue) == 50 and link.dropped >= 950 and not link.connected.is_set()
    assert link.failures >= 1  # and it keeps trying, with back-off


def test_a_broker_down_at_boot_is_joined_when_it_comes(broker: Broker) -> None:
    async def scenario() -> tuple[int, str | None]:
        broker.kill()
        device = StandIn("early")
        link, running = start_link(device, mqtt_config(broker, tls=False, discovery=False))
        await asyncio.sleep(1.5)
        assert not link.connected.is_set()
        broker.start()
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, "agentpi/early/availability") as (heard, _):
                online = await heard.until(lambda: heard.last("agentpi/early/availability"))
        finally:
            running.cancel()
        return link.connects, online

    assert asyncio.run(scenario()) == (1, "online")


def test_say_starts_a_conversation_and_stop_ends_it(tmp_path: Path, broker: Broker) -> None:
    async def during(device: Device) -> None:
        base = f"agentpi/{device.device_id}"
        link, running = start_link(device.controls, mqtt_config(broker, tls=False))
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, f"{base}/reply", f"{base}/state") as (heard, client):
                await client.publish(f"{base}/say", "What is on the menu today?", qos=1)
                await heard.until(lambda: "speaking" in heard.all(f"{base}/state"), 20)
                await client.publish(f"{base}/stop", "PRESS", qos=1)
                await heard.until(lambda: len(heard.all(f"{base}/reply")) == 2)
                await heard.until(lambda: heard.all(f"{base}/state")[-1:] == ["idle"], 20)
        finally:
            running.cancel()

    quiet = tmp_path / "quiet.wav"
    run = run_conversation(
        tmp_path,
        input_wav=silence_wav(quiet, 30.0),
        trigger=TriggerConfig(mode="control"),
        once=True,
        during=during,
        timeout=60,
    )
    assert run.exit_code == 0
    typed = [m.text for _, m in run.record.messages if isinstance(m, UserMessage)]
    assert typed == ["What is on the menu today?"]
    assert "stopped" in run.of_kind("conversation_ended")[0]["reason"]


def test_a_flood_of_commands_leaves_the_link_working(broker: Broker) -> None:
    async def scenario() -> tuple[StandIn, int]:
        device = StandIn("flooded")
        link, running = start_link(device, mqtt_config(broker, tls=False, discovery=False))
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, "agentpi/flooded/reply") as (heard, client):
                for _ in range(3000):
                    await client.publish("agentpi/flooded/volume/set", "10", qos=0)
                # beyond the 64 waiting, commands are dropped: this one gets through once the
                # link has worked off the flood (it is still answering, not stuck or dead)
                for _ in range(30):
                    await client.publish("agentpi/flooded/wake/set", "OFF", qos=1)
                    with contextlib.suppress(TimeoutError):
                        await heard.until(lambda: "wake False" in device.calls, 2)
                        break
                replies = len(heard.all("agentpi/flooded/reply"))
        finally:
            running.cancel()
        return device, replies

    device, replies = asyncio.run(scenario())
    assert "wake False" in device.calls
    volumes = [call for call in device.calls if call != "wake False"]
    assert volumes and set(volumes) == {"volume 10"} and len(volumes) <= 3000
    assert replies >= len(volumes)  # each command taken was answered


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_a_message_too_large_for_a_command_never_reaches_the_device(
    broker: Broker, protocol: str
) -> None:
    # half a megabyte: over the device's 128 KiB, under the test broker's own 1 MiB limit
    big = json.dumps({"command": "say", "text": "x" * (1 << 19)}).encode()

    async def scenario() -> list[dict[str, Any]]:
        device = StandIn("guarded")
        config = mqtt_config(broker, tls=False, discovery=False, protocol=protocol)
        link, running = start_link(device, config)
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, "agentpi/guarded/reply") as (heard, client):
                await client.publish("agentpi/guarded/command", big, qos=1)
                await client.publish("agentpi/guarded/volume/set", "20", qos=1)
                await heard.until(lambda: "volume 20" in device.calls)
                await heard.until(lambda: heard.all("agentpi/guarded/reply"))
                return [json.loads(reply) for reply in heard.all("agentpi/guarded/reply")]
        finally:
            running.cancel()

    replies = asyncio.run(scenario())
    if protocol == "5":
        # the device told the broker its largest packet: the 512 KiB were never delivered
        assert replies == [{"ok": True}]
    else:
        # without version 5 it arrives (into memory) and is refused, as any too long command
        assert replies[0]["ok"] is False and "65536" in replies[0]["error"]


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_retained_commands_are_not_carried_out_at_connect(broker: Broker, protocol: str) -> None:
    """A retained `say` opened a conversation at every start, a retained `volume/set 0` muted
    the device at every start. Now neither runs; 3.1.1 (no retain handling) clears them."""

    async def scenario() -> tuple[StandIn, list[str], list[tuple[str, str, bool]]]:
        device = StandIn("retained")
        base = "agentpi/retained"
        async with subscribed(broker, f"{base}/reply") as (heard, client):
            await client.publish(f"{base}/say", "hello from last week", qos=1, retain=True)
            await client.publish(f"{base}/volume/set", "0", qos=1, retain=True)
            config = mqtt_config(broker, tls=False, discovery=False, protocol=protocol)
            link, running = start_link(device, config)
            try:
                await asyncio.wait_for(link.connected.wait(), 15)
                await client.publish(f"{base}/wake/set", "OFF", qos=1)  # a live one still works
                await heard.until(lambda: "wake False" in device.calls)
                if protocol == "3.1.1":  # each retained one is refused on reply
                    await heard.until(lambda: len(refusals(heard.all(f"{base}/reply"))) == 2)
            finally:
                running.cancel()
            replies = heard.all(f"{base}/reply")
        async with subscribed(broker, f"{base}/#") as (later, _):
            await asyncio.sleep(0.5)  # what is still retained arrives at once on subscribing
        return device, replies, later.messages

    device, replies, left = asyncio.run(scenario())
    assert device.calls == ["wake False"]
    if protocol == "3.1.1":
        errors = refusals(replies)
        assert len(errors) == 2 and "not carried out" in errors[0]
        assert not [m for m in left if m[2] and m[0].endswith(("say", "volume/set"))]


def refusals(replies: list[str]) -> list[str]:
    return [json.loads(reply)["error"] for reply in replies if "retained" in reply]


def test_the_nastiest_payloads_leave_the_link_answering(broker: Broker) -> None:
    nasty = [
        b'{"command": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"command": "say", "text": ' + b"1" * 5000 + b"}",
        b"\x00" * 100,
        b'{"command": {"command": "status"}}',
        b'{"command": "say", "text": "\\ud800"}',
        b"[" * 20000,
    ]

    async def scenario() -> tuple[StandIn, list[str]]:
        device = StandIn("nasty")
        link, running = start_link(device, mqtt_config(broker, tls=False, discovery=False))
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            async with subscribed(broker, "agentpi/nasty/reply") as (heard, client):
                for payload in nasty:
                    await client.publish("agentpi/nasty/command", payload, qos=1)
                await client.publish("agentpi/nasty/wake/set", "OFF", qos=1)
                # the wake call comes before its reply reaches this subscriber: wait for both
                # (Python 3.13 in the trixie root read the replies in between once)
                await heard.until(lambda: "wake False" in device.calls)
                await heard.until(lambda: len(heard.all("agentpi/nasty/reply")) > len(nasty))
                replies = heard.all("agentpi/nasty/reply")
        finally:
            running.cancel()
        return device, replies

    device, replies = asyncio.run(scenario())
    assert device.calls == ["wake False"]
    assert len(replies) == len(nasty) + 1
    assert all(json.loads(reply)["ok"] is False for reply in replies[:-1])


def test_a_twin_taking_the_device_s_client_id_is_named_and_waited_out(broker: Broker) -> None:
    """A second client logs in with the device's (configured) client id, and again whenever it
    is pushed out, as a cloned SD card's twin would. Before, the two flapped (21 take-overs in
    20 s); now the device says what is going on and waits the longest back-off."""

    async def scenario() -> tuple[MqttLink, list[MqttTakenOver], int]:
        device = StandIn("hall")
        taken: list[MqttTakenOver] = []
        said = asyncio.Event()

        def listen(event: DeviceEvent) -> None:
            if isinstance(event, MqttTakenOver):
                taken.append(event)
                said.set()

        device.events.subscribe(listen)
        config = mqtt_config(broker, tls=False, discovery=False, client_id="hall-speaker")
        link, running = start_link(device, config)
        logins = 0

        async def twin() -> None:
            nonlocal logins
            while True:
                with contextlib.suppress(aiomqtt.MqttError):
                    async with aiomqtt.Client(
                        "127.0.0.1",
                        broker.port,
                        identifier="hall-speaker",
                        username=USER,
                        password=PASSWORD,
                    ) as client:
                        logins += 1
                        async for _ in client.messages:
                            pass
                await asyncio.sleep(0.2)

        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            other = asyncio.ensure_future(twin())
            await asyncio.wait_for(said.wait(), 30)
            other.cancel()
        finally:
            running.cancel()
        return link, taken, logins

    link, taken, logins = asyncio.run(scenario())
    assert [event.client_id for event in taken] == [
        "hall-speaker"
    ] and link.client_id == "hall-speaker"
    assert "another client" in taken[0].reason
    assert taken[0].retry_in_s >= 0.75 * RECONNECT_MAX_S  # the longest wait, not a second
    assert link.connects <= SHORT_SESSIONS_SUSPECTED + 1 and logins <= link.connects + 1


def test_a_broker_s_own_word_on_a_take_over_is_believed_at_once() -> None:
    said = aiomqtt.MqttCodeError(ReasonCode(PacketTypes.DISCONNECT, identifier=0x8E), "gone")
    wrapped = aiomqtt.MqttError("Disconnected during message iteration")
    wrapped.__cause__ = said
    assert taken_over(wrapped, short_sessions=0) is not None
    lost = aiomqtt.MqttError("Disconnected during message iteration")
    lost.__cause__ = aiomqtt.MqttCodeError(ReasonCode(PacketTypes.DISCONNECT, identifier=0x80))
    assert taken_over(lost, short_sessions=0) is None
    assert taken_over(lost, short_sessions=SHORT_SESSIONS_SUSPECTED) is not None


def test_a_broker_that_goes_away_after_a_long_session_is_retried_with_back_off(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A session that lasted resets the back-off once, not at every failed connect after it
    (the broker that went down after an hour was retried every second)."""
    monkeypatch.setattr(mqtt_client, "STABLE_S", 0.3)

    async def scenario() -> int:
        device = StandIn("steady")
        link, running = start_link(device, mqtt_config(broker, tls=False, discovery=False))
        try:
            await asyncio.wait_for(link.connected.wait(), 15)
            await asyncio.sleep(0.5)  # a session long enough to count as stable
            broker.kill()
            async with asyncio.timeout(15):
                while link.failures < 3:
                    await asyncio.sleep(0.1)
            return link.failures
        finally:
            running.cancel()

    assert asyncio.run(scenario()) >= 3


class NeverLetsGo:
    """aiomqtt's client as it behaves on a socket the event loop lost: connected and quiet,
    and its ``__aexit__`` waits for a DISCONNECT that never goes out (aiomqtt waits without a
    timeout)."""

    def __init__(self, **options: Any) -> None:
        self.messages = self._nothing()

    async def __aenter__(self) -> NeverLetsGo:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.get_running_loop().create_future()

    async def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def publish(self, *args: Any, **kwargs: Any) -> None:
        pass

    async def _nothing(self) -> Any:
        await asyncio.get_running_loop().create_future()
        yield


def test_a_link_whose_goodbye_never_goes_out_still_stops(monkeypatch: pytest.MonkeyPatch) -> None:
    """It held the device's exit for good at the end of the 2,000-conversation soak."""
    monkeypatch.setattr(aiomqtt, "Client", NeverLetsGo)

    async def scenario() -> float:
        config = MqttConfig(enabled=True, url=f"mqtt://127.0.0.1:{free_port()}")
        link = MqttLink(StandIn("stuck"), config, None, "test")
        running = asyncio.ensure_future(link.run())
        await asyncio.wait_for(link.connected.wait(), 10)
        running.cancel()
        asked = time.monotonic()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(running, mqtt_client.GOODBYE_S + 5)
        return time.monotonic() - asked

    took = asyncio.run(scenario())
    assert took < mqtt_client.GOODBYE_S + 1


def test_a_task_that_swallowed_a_cancellation_is_still_stopped() -> None:
    """Python 3.11's asyncio.wait_for (inside aiomqtt) can swallow a cancellation that comes as
    what it waits for is done: the link's sender then went on for good, and the link with it
    (a 40-conversation soak reproduced it at its end)."""

    async def swallows_one() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
        await asyncio.sleep(30)

    async def scenario() -> bool:
        task = asyncio.ensure_future(swallows_one())
        await asyncio.sleep(0)
        await asyncio.wait_for(mqtt_client.stopped(task, patience_s=0.1), 5)
        return task.cancelled()

    assert asyncio.run(scenario())


def test_the_test_broker_moves_off_a_port_another_test_took(tmp_path: Path) -> None:
    """Parallel tests race for free ports: one took the broker's between ``free_port`` and the
    broker's bind ("Address already in use", a failed `make test`)."""
    broker = Broker(tmp_path / "broker")
    taken = broker.port
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", taken))
        squatter.listen()
        broker.start()
        try:
            assert broker.port != taken and broker.process is not None
            assert broker.process.poll() is None
        finally:
            broker.kill()


def test_approval_and_feedback_topics_become_control_requests() -> None:
    bridge = MqttBridge(MqttConfig(url="mqtt://localhost"), "hall", "test")
    base = "agentpi/hall"
    assert (
        f"{base}/approve" in bridge.subscriptions() and f"{base}/feedback" in bridge.subscriptions()
    )
    assert bridge.command(f"{base}/approve", b"PRESS").request == ControlRequest("approve")
    assert bridge.command(f"{base}/deny", b"").request == ControlRequest("deny")
    liked = bridge.command(f"{base}/feedback", b"Like").request
    assert liked is not None and (liked.command, liked.score) == ("feedback", "like")
    by_id = bridge.command(
        f"{base}/command", b'{"command": "deny", "tool_call_id": "mcp_7"}'
    ).request
    assert by_id is not None and by_id.tool_call_id == "mcp_7"
    names = {json.loads(p.payload)["name"] for p in bridge.discovery()}
    assert {"Approve tool", "Decline tool"} <= names


def test_button_gestures_and_outcomes_fire_event_entities() -> None:
    bridge = MqttBridge(MqttConfig(url="mqtt://localhost"), "hall", "test")

    def fired(event: ev.DeviceEvent) -> list[tuple[str, dict[str, Any]]]:
        return [
            (p.topic.rsplit("/", 1)[1], json.loads(p.payload))
            for p in bridge.on_event(event, dict)
            if "/event/" in p.topic and not p.retain
        ]

    assert fired(ev.TriggerFired("button")) == [("button", {"event_type": "single"})]
    assert fired(ev.ButtonAction("double")) == [("button", {"event_type": "double"})]
    assert fired(ev.ButtonAction("decline")) == [("button", {"event_type": "long"})]
    assert fired(ev.TriggerFired("wake")) == []
    ended = ev.ConversationEnded("c", "lost", None, "server", "lost", 3.5, 1, None)
    failed = ev.ConversationEnded(
        "c", "lost", None, "server", "lost", 3.5, 1, None, failure="network"
    )
    assert fired(ended)[0] == (
        "conversation",
        {"event_type": "ok", "reason": "lost", "duration_s": 3.5},
    )
    assert fired(failed)[0][1]["event_type"] == "network"
    configs = {json.loads(p.payload)["name"]: json.loads(p.payload) for p in bridge.discovery()}
    assert "network" in configs["Conversation ended"]["event_types"]
    assert configs["Button"]["event_types"] == ["double", "long", "single"]
    assert "turn_ms_median" in configs["Answer time"]["value_template"]
