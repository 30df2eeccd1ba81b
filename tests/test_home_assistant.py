"""Home Assistant as the agent's client tools, against a local stand-in of its REST API (the
real Home Assistant runs in ``make ha-check``)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from agentpi.agent.script import SimulatorScript, ToolCallScript, TurnScript
from agentpi.config.document import ConfigError, load_config
from agentpi.settings.credentials import Secret
from agentpi.tools.custom import build_tools
from agentpi.tools.home_assistant import HomeAssistant, register_home_tools
from agentpi.tools.registry import ToolRegistry
from agentpi.tools.settings import HomeAssistantConfig, ToolsConfig
from tests.helpers import AGENTPI, run_conversation
from tests.home_standin import TOKEN, HomeStandIn
from tests.speech import join, save, silence, speak


def tools_for(url: str, token: str = TOKEN, **config: object) -> ToolRegistry:
    registry = ToolRegistry(timeout_s=3.0)
    home = HomeAssistant(HomeAssistantConfig(url=url, **config), Secret(token))  # type: ignore[arg-type]
    register_home_tools(registry, home)
    return registry


def call(registry: ToolRegistry, name: str, **parameters: object) -> tuple[str, bool]:
    return asyncio.run(registry.run(name, dict(parameters)))


def test_the_agent_switches_a_light_and_reads_it() -> None:
    with HomeStandIn() as home:
        tools = tools_for(home.url)
        said, failed = call(
            tools,
            "home_control",
            entity_id="light.kitchen",
            service="turn_on",
            data='{"brightness_pct": 40}',
        )
        assert not failed and said == "Done: Kitchen light (light.kitchen) is on (brightness 102)."
        assert home.states["light.kitchen"]["state"] == "on"
        assert home.calls == [
            ("light", "turn_on", {"brightness_pct": 40, "entity_id": "light.kitchen"})
        ]
        said, failed = call(tools, "home_state", entity_id="light.kitchen")
        assert not failed and said.startswith("Kitchen light (light.kitchen) is on")
        call(tools, "home_control", entity_id="light.kitchen", service="toggle")
        assert home.states["light.kitchen"]["state"] == "off"


def test_the_list_names_what_may_be_controlled_with_areas() -> None:
    with HomeStandIn() as home:
        listed, failed = call(tools_for(home.url), "home_entities")
        assert not failed
        assert listed.splitlines() == [
            "light.kitchen: Kitchen light in Kitchen, off",
            "switch.kettle: Kettle in Kitchen, off",
        ]  # the lock and the sensor are not open to the speaker by default
        with_lock, _ = call(tools_for(home.url, entities=("lock.front_door",)), "home_entities")
        assert "lock.front_door: Front door in Hall, locked" in with_lock.splitlines()


@pytest.mark.parametrize(
    ("parameters", "sentence"),
    [
        ({"entity_id": "lock.front_door", "service": "unlock"}, "not one this speaker may control"),
        ({"entity_id": "light.garage", "service": "turn_on"}, "has no entity light.garage"),
        ({"entity_id": "light kitchen", "service": "turn_on"}, "entity_id must be an entity"),
        ({"entity_id": "light.kitchen", "service": "rm -rf"}, "service must be a service name"),
        ({"entity_id": "light.kitchen", "service": "fly"}, "refused light.fly"),
        ({"entity_id": "light.kitchen", "service": "turn_on", "data": "[1"}, "data must be a JSON"),
    ],
)
def test_each_refusal_is_one_sentence_and_changes_nothing(
    parameters: dict[str, object], sentence: str
) -> None:
    with HomeStandIn() as home:
        before = json.dumps(home.states, sort_keys=True)
        said, failed = call(tools_for(home.url), "home_control", **parameters)
        assert failed and sentence in said and said.count(".") <= 3 and "\n" not in said
        assert json.dumps(home.states, sort_keys=True) == before


def test_an_entity_smuggled_into_the_data_is_not_the_one_acted_on() -> None:
    with HomeStandIn() as home:
        data = json.dumps({"entity_id": "lock.front_door"})
        call(
            tools_for(home.url),
            "home_control",
            entity_id="switch.kettle",
            service="turn_on",
            data=data,
        )
        assert home.calls[0][2]["entity_id"] == "switch.kettle"
        assert home.states["lock.front_door"]["state"] == "locked"


def test_a_refused_token_an_absent_and_a_slow_home_assistant_each_answer_in_time() -> None:
    with HomeStandIn() as home:
        said, failed = call(tools_for(home.url, token="stale"), "home_entities")
        assert failed and "refused the device's token" in said and "stale" not in said
        home.delay_s = 5.0
        started = time.monotonic()
        said, failed = call(
            tools_for(home.url, timeout_s=1.0), "home_state", entity_id="light.kitchen"
        )
        assert failed and "within 1 s" in said and time.monotonic() - started < 2.5
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        port = hole.getsockname()[1]
    said, failed = call(tools_for(f"http://127.0.0.1:{port}"), "home_entities")
    assert failed and "Home Assistant is not reachable" in said


@pytest.mark.realtime
def test_the_agent_turns_the_kitchen_light_on_through_the_device(tmp_path: Path) -> None:
    turn = TurnScript(
        transcript="turn on the kitchen light",
        tool_call=ToolCallScript(
            "home_control", {"entity_id": "light.kitchen", "service": "turn_on"}
        ),
        response="{result}",
    )
    script = SimulatorScript(first_turn=TurnScript(silent=True), turns=(turn,))
    wav = save(
        tmp_path / "mic.wav", join(silence(0.5), speak("turn on the kitchen light"), silence(6))
    )
    with HomeStandIn() as home:
        tools = build_tools(ToolsConfig())
        register_home_tools(tools, HomeAssistant(HomeAssistantConfig(url=home.url), Secret(TOKEN)))
        run = run_conversation(tmp_path, script=script, input_wav=wav, tools=tools)
        assert home.states["light.kitchen"]["state"] == "on"
    result = next(iter(run.record.tool_results.values()))
    assert not result.is_error and result.result == "Done: Kitchen light (light.kitchen) is on."
    assert TOKEN not in json.dumps(run.events)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('url = "http://homeassistant.lan:8123"', "plain http:// only to this machine"),
        ('url = "https://ha.lan:8123/api"', "give the base URL only"),
        ('url = "https://user:pw@ha.lan"', "a user or password in the URL is not allowed"),
        ('entities = ["front door"]', "not an entity such as lock.front_door"),
        ("timeout_s = 0", "home_assistant.timeout_s = 0"),
    ],
)
def test_bad_home_assistant_config_is_one_line(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[agent]\nagent_id = "a"\n[home_assistant]\n{body}\n')
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("/", r"\/")):
        load_config(path)


@pytest.mark.realtime
def test_a_url_without_a_token_stops_the_start_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    wav = save(tmp_path / "quiet.wav", silence(1.0))
    path.write_text(
        '[agent]\nagent_id = "a"\nurl = "ws://127.0.0.1:9"\n[home_assistant]\n'
        f'url = "http://127.0.0.1:8123"\n[audio]\ninput = "file:{wav}"\n'
        f'output = "file:{tmp_path / "out.wav"}"\n'
    )
    result = subprocess.run(
        [*AGENTPI, "run", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "AGENTPI_HA_TOKEN" in result.stderr


def test_the_doctor_checks_home_assistant_and_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentpi.service.doctor import diagnose

    with HomeStandIn() as home:
        path = tmp_path / "config.toml"
        path.write_text(f'[agent]\nagent_id = "a"\n[home_assistant]\nurl = "{home.url}"\n')

        def check() -> tuple[bool | None, str]:
            found = next(c for c in diagnose(path) if c.name == "home assistant")
            return found.ok, found.detail

        monkeypatch.delenv("AGENTPI_HA_TOKEN", raising=False)
        assert check() == (False, "no token")
        monkeypatch.setenv("AGENTPI_HA_TOKEN", "stale")
        ok, detail = check()
        assert ok is False and "refused the device's token" in detail and "stale" not in detail
        monkeypatch.setenv("AGENTPI_HA_TOKEN", TOKEN)
        assert check() == (True, f"{home.url}: 2 of its 4 entities open to the agent")
