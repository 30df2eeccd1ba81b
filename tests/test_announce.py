"""Announcements: the agent says a sentence now, in its voice; and conversations that open with
given words and background (Home Assistant's notify and start_conversation)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from agentpi.agent.definition import default_document
from agentpi.config.document import TriggerConfig
from agentpi.control.requests import ControlRequest, carry_out, parse_request
from agentpi.device.app import Device
from agentpi.mqtt.bridge import MqttBridge
from agentpi.mqtt.settings import MqttConfig
from agentpi.protocol import messages as m
from tests.helpers import run_conversation
from tests.speech import save, silence

pytestmark = pytest.mark.realtime

SENTENCE = "The washing machine has finished."


async def when_idle(device: Device) -> None:
    while not device.controls.status().get("ready") or device.controls.status()["state"] != "idle":
        await asyncio.sleep(0.05)


def test_an_announcement_is_a_conversation_that_says_it_and_ends(tmp_path: Path) -> None:
    answers: list[dict[str, Any]] = []

    async def during(device: Device) -> None:
        await when_idle(device)
        request = parse_request(json.dumps({"command": "announce", "text": SENTENCE}).encode())
        answers.append(carry_out(request, device.controls))

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(20.0)),
        trigger=TriggerConfig(mode="control"),
        during=during,
        silence_close_s=8.0,  # the announcement ends it, not the silence
    )
    assert answers == [{"ok": True}]
    record = run.record
    assert record.init is not None
    assert record.init.conversation_config_override["agent"]["first_message"] == SENTENCE
    assert [turn.text for turn in record.turns] == [SENTENCE]
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "device ended the conversation" and ended["error"] is None
    assert ended["duration_s"] < 8.0


def test_an_announcement_during_a_conversation_asks_the_agent_to_read_it_out(
    tmp_path: Path,
) -> None:
    async def during(device: Device) -> None:
        while device.controls.status()["state"] not in ("listening", "speaking"):
            await asyncio.sleep(0.05)
        assert device.controls.announce(SENTENCE) is None

    run = run_conversation(
        tmp_path, input_wav=save(tmp_path / "quiet.wav", silence(8.0)), during=during
    )
    typed = run.record.of_type(m.UserMessage)
    assert len(typed) == 1 and typed[0].text is not None and SENTENCE in typed[0].text
    assert any(SENTENCE in turn.text for turn in run.record.turns)


def test_a_conversation_can_open_with_given_words_and_background(tmp_path: Path) -> None:
    async def during(device: Device) -> None:
        await when_idle(device)
        line = {
            "command": "start",
            "first_message": "Welcome home! Shall I warm the living room?",
            "instructions": "The user just came home; the living room is at 16 C.",
        }
        assert carry_out(parse_request(json.dumps(line).encode()), device.controls)["ok"]

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(10.0)),
        trigger=TriggerConfig(mode="control"),
        during=during,
    )
    assert run.record.turns[0].text == "Welcome home! Shall I warm the living room?"
    context = [u.text for u in run.record.of_type(m.ContextualUpdate)]
    assert "The user just came home; the living room is at 16 C." in context
    assert run.of_kind("conversation_ended")[0]["reason"] == "user silent after the agent's turn"


def test_an_agent_that_refuses_the_first_message_override_says_which_setting(
    tmp_path: Path,
) -> None:
    async def during(device: Device) -> None:
        await when_idle(device)
        device.controls.announce(SENTENCE)

    run = run_conversation(
        tmp_path,
        input_wav=save(tmp_path / "quiet.wav", silence(8.0)),
        trigger=TriggerConfig(mode="control"),
        during=during,
        agent=default_document(),  # the platform's defaults: no override allowed
    )
    ended = run.of_kind("conversation_ended")[0]
    assert ended["failure"] == "settings"
    assert "Security > Overrides > First message" in ended["error"]


def test_mqtt_announce_and_opening_topics_and_the_notify_entity() -> None:
    bridge = MqttBridge(MqttConfig(url="mqtt://localhost"), "hall", "test")
    base = "agentpi/hall"
    said = bridge.command(f"{base}/announce", SENTENCE.encode()).request
    assert said == ControlRequest("announce", SENTENCE)
    opening = json.dumps({"first_message": "Hi!", "instructions": "Be brief."}).encode()
    started = bridge.command(f"{base}/start", opening).request
    assert started is not None and (started.first_message, started.instructions) == (
        "Hi!",
        "Be brief.",
    )
    assert bridge.command(f"{base}/start", b"PRESS").request == ControlRequest("start")
    notify = [p for p in bridge.discovery() if "/notify/" in p.topic]
    assert len(notify) == 1 and json.loads(notify[0].payload)["command_topic"] == (
        f"{base}/announce"
    )
