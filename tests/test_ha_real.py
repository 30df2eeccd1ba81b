"""The device against Home Assistant core itself (``make ha-check``): its demo integration's
lights and locks, its MQTT integration on the tests' Mosquitto.

Home Assistant needs a newer Python than bookworm's, so this runs in the trixie root, where
``make ha-check`` installs it; ``AGENTPI_HASS`` names its ``hass``. Without it the test is skipped
(the everyday ``make test`` checks the tools against a stand-in of the REST API).

Checked: the agent's tool calls (driven through the simulator) switch a demo light off and on and
read it; a call on an entity outside the allow-list is refused and the lock does not change;
``notify.send_message`` to the device's entity makes the device say the sentence; the mute switch
and the wake-word select change the device; the button fires its event entity.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory

from agentpi.agent.script import SimulatorScript, ToolCallScript, TurnScript
from agentpi.config.document import ButtonConfig, TriggerConfig
from agentpi.device.app import Device
from agentpi.mqtt.settings import MqttConfig
from agentpi.settings.credentials import Secret
from agentpi.tools.custom import build_tools
from agentpi.tools.home_assistant import HomeAssistant, register_home_tools
from agentpi.tools.settings import HomeAssistantConfig, ToolsConfig
from agentpi.triggers.button import ButtonInput
from agentpi.wake.listener import open_listener
from agentpi.wake.settings import WakeConfig
from tests.helpers import run_conversation
from tests.mqtt_broker import PASSWORD, USER, Broker, free_port
from tests.speech import RATE, save, silence

HASS = os.environ.get("AGENTPI_HASS", "")
pytestmark = [
    pytest.mark.realtime,
    pytest.mark.skipif(not HASS, reason="Home Assistant runs in make ha-check (AGENTPI_HASS)"),
]
START_S = 300.0
"""Home Assistant's first start installs what its integrations need: minutes, once."""
LIGHT = "light.kitchen_lights"
LOCK = "lock.front_door"
SENTENCE = "The washing machine has finished."
PIN = 23
CLIENT_ID = "http://127.0.0.1/"


@dataclass
class Hass:
    url: str
    token: str

    def call(self, method: str, path: str, data: Any = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if data is None else json.dumps(data).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")

    def state(self, entity_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self.call("GET", f"/api/states/{entity_id}")
        return result

    def entity_ids(self) -> list[str]:
        return [state["entity_id"] for state in self.call("GET", "/api/states")]

    def named(self, domain: str, name: str) -> str:
        """The entity id Home Assistant gave the device's entity called ``name``."""
        return next(
            state["entity_id"]
            for state in self.call("GET", "/api/states")
            if state["entity_id"].startswith(f"{domain}.agentpi_")
            and str(state["attributes"].get("friendly_name", "")).endswith(name)
        )


def _post(url: str, data: dict[str, Any], form: bool = False) -> Any:
    body = urllib.parse.urlencode(data) if form else json.dumps(data)
    kind = "application/x-www-form-urlencoded" if form else "application/json"
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": kind}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (OSError, urllib.error.URLError, KeyError, StopIteration):
            found = None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} within {timeout:g} s")


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = Broker(tmp_path_factory.mktemp("broker"))
    running.start()
    yield running
    running.kill()


@pytest.fixture(scope="module")
def hass(tmp_path_factory: pytest.TempPathFactory, broker: Broker) -> Iterator[Hass]:
    """Home Assistant with its demo integration, onboarded, its MQTT integration on the broker
    through the same config flow a person clicks through."""
    folder = tmp_path_factory.mktemp("hass")
    port = free_port()
    (folder / "configuration.yaml").write_text(
        "homeassistant:\n  name: agentpi check\n  time_zone: UTC\n  latitude: 0\n"
        "  longitude: 0\n  unit_system: metric\n"
        f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\napi:\ndemo:\n"
    )
    url = f"http://127.0.0.1:{port}"
    log = (folder / "hass.log").open("wb")
    env = {**os.environ, "UV_NATIVE_TLS": "1"}  # its package installs trust the system's CAs
    process = subprocess.Popen([HASS, "-c", str(folder)], stdout=log, stderr=log, env=env)
    try:
        wait_for(lambda: _get(url + "/api/onboarding"), START_S, "Home Assistant answered")
        user = {
            "client_id": CLIENT_ID,
            "name": "agentpi",
            "username": "agentpi",
            "password": "agentpi-check",
            "language": "en",
        }
        code = _post(url + "/api/onboarding/users", user)["auth_code"]
        grant = {"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID}
        token = _post(url + "/auth/token", grant, form=True)["access_token"]
        home = Hass(url, token)
        flow = home.call("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        answer = {
            "broker": "127.0.0.1",
            "port": broker.port,
            "username": USER,
            "password": PASSWORD,
        }
        flow = home.call("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", answer)
        assert flow["type"] == "create_entry", flow
        wait_for(lambda: LIGHT in home.entity_ids(), START_S, "the demo lights appeared")
        yield home
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _get(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.status == 200


def tool_turn(transcript: str, entity_id: str, service: str | None) -> TurnScript:
    if service is None:
        call = ToolCallScript("home_state", {"entity_id": entity_id})
    else:
        call = ToolCallScript("home_control", {"entity_id": entity_id, "service": service})
    return TurnScript(transcript=transcript, tool_call=call, response="{result}")


def test_the_device_and_home_assistant_itself(
    tmp_path: Path, broker: Broker, hass: Hass, factory: MockFactory
) -> None:
    script = SimulatorScript(
        first_turn=TurnScript(silent=True),
        turns=(
            tool_turn("turn off the kitchen lights", LIGHT, "turn_off"),
            tool_turn("are they off", LIGHT, None),
            tool_turn("turn them on again", LIGHT, "turn_on"),
            tool_turn("unlock the front door", LOCK, "unlock"),
        ),
    )
    tools = build_tools(ToolsConfig())
    register_home_tools(tools, HomeAssistant(HomeAssistantConfig(url=hass.url), Secret(hass.token)))
    lock_before = hass.state(LOCK)["state"]
    seen: dict[str, Any] = {}
    lines: list[dict[str, Any]] = []

    async def during(device: Device) -> None:
        from agentpi.mqtt.client import MqttLink

        mqtt = MqttConfig(enabled=True, url=f"mqtt://127.0.0.1:{broker.port}", username=USER)
        link = MqttLink(device.controls, mqtt, Secret(PASSWORD), "check")
        running = asyncio.ensure_future(link.run())
        loop = asyncio.get_running_loop()

        async def until(check: Any, what: str, timeout: float = 60.0) -> Any:
            return await loop.run_in_executor(None, wait_for, check, timeout, what)

        async def said(text: str) -> None:
            before = len(lines)
            assert device.controls.send_user_message(text) is None
            await until(
                lambda: any(e["event"] == "tool_result" for e in lines[before:]),
                f"the tool call after {text!r}",
            )

        try:
            notify = await until(lambda: hass.named("notify", "Announce"), "the entities")
            # 1. the agent's tools, through the simulator
            while device.controls.status()["state"] != "idle":
                await asyncio.sleep(0.05)
            assert device.controls.start_conversation() is None
            while device.controls.status()["state"] not in ("listening", "speaking"):
                await asyncio.sleep(0.05)
            await said("turn off the kitchen lights")
            seen["after off"] = hass.state(LIGHT)["state"]
            await said("are they off")
            await said("turn them on again")
            seen["after on"] = hass.state(LIGHT)["state"]
            await said("unlock the front door")
            device.controls.stop_conversation()
            while device.controls.status()["state"] not in ("idle", "muted"):
                await asyncio.sleep(0.05)
            # 2. notify.send_message makes the device say the sentence
            await loop.run_in_executor(
                None,
                lambda: hass.call(
                    "POST",
                    "/api/services/notify/send_message",
                    {"entity_id": notify, "message": SENTENCE},
                ),
            )
            await until(lambda: device.controls.status()["conversations"] >= 2, "announcement")
            while device.controls.status()["state"] != "idle":
                await asyncio.sleep(0.05)
            # 3. the mute switch and the wake-word select change the device
            mute = hass.named("switch", "Microphone mute")
            hass.call("POST", "/api/services/switch/turn_on", {"entity_id": mute})
            await until(lambda: device.controls.status()["muted"], "muted from Home Assistant")
            await until(lambda: hass.state(mute)["state"] == "on", "the switch showing it")
            hass.call("POST", "/api/services/switch/turn_off", {"entity_id": mute})
            await until(lambda: not device.controls.status()["muted"], "unmuted")
            select = hass.named("select", "Active wake word")
            hass.call(
                "POST",
                "/api/services/select/select_option",
                {"entity_id": select, "option": "alexa"},
            )
            await until(
                lambda: device.controls.status()["wake_word"] == "alexa", "the wake word chosen"
            )
            # 4. the button fires its event entity
            button = hass.named("event", "Button")
            factory.pin(PIN).drive_low()
            factory.pin(PIN).drive_high()
            fired = await until(
                lambda: hass.state(button)["attributes"].get("event_type") == "single",
                "the button's event in Home Assistant",
            )
            seen["button"] = fired
            outcome = hass.state(hass.named("event", "Conversation ended"))["attributes"]
            seen["outcome"] = outcome.get("event_type")
        finally:
            running.cancel()
            device.shutdown()

    run = run_conversation(
        tmp_path,
        script=script,
        input_wav=save(tmp_path / "quiet.wav", silence(240.0)),
        trigger=TriggerConfig(mode=("wake", "button", "control")),
        wake=open_listener(WakeConfig(models=("hey_jarvis", "alexa")), RATE),
        button=ButtonInput(ButtonConfig(pin=PIN, bounce_s=0.0), pin_factory=factory),
        sections={"wake": WakeConfig(models=("hey_jarvis", "alexa"))},
        tools=tools,
        on_event=lines.append,
        once=False,
        timeout=400,
        during=during,
    )
    results = [run.record.tool_results[key] for key in run.record.tool_results]
    assert [r.is_error for r in results] == [False, False, False, True]
    assert results[0].result == "Done: Kitchen Lights (light.kitchen_lights) is off."
    assert results[1].result.startswith("Kitchen Lights (light.kitchen_lights) is off")
    assert "not one this speaker may control" in results[3].result
    assert (seen["after off"], seen["after on"]) == ("off", "on")
    assert hass.state(LOCK)["state"] == lock_before  # the refused call changed nothing
    announced = run.simulator.conversations[1]
    assert announced.init is not None
    assert announced.init.conversation_config_override["agent"]["first_message"] == SENTENCE
    assert [turn.text for turn in announced.turns] == [SENTENCE]
    assert seen["button"] and seen["outcome"] in ("ok", "no_input")
