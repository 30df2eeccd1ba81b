"""`agentpi doctor` reads the agent and names each mismatch with its fix; `agentpi agent-setup`
shows the change, --apply makes it and nothing else, and then every feature works."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentpi.agent.definition import JsonDict, at, default_document, merged
from agentpi.agent.script import SimulatorScript, ToolCallScript, TurnScript
from agentpi.agent.simulator import AgentSimulator
from agentpi.config.document import Config, ConversationConfig, OverridesConfig
from agentpi.protocol import messages as m
from agentpi.service.doctor import Check, diagnose
from tests.helpers import AGENTPI, HELLO_WAV, run_conversation
from tests.speech import save, silence

pytestmark = pytest.mark.realtime  # child processes and paced audio

KEY = "sk-fit-test"
SETUP_PATHS = {
    "conversation_config.conversation.client_events",
    "conversation_config.agent.prompt.tools",
    "platform_settings.overrides.conversation_config_override.agent.first_message",
    "metadata.updated_at_unix_secs",
}
"""All that agent-setup may change for the config below."""


@pytest.fixture(autouse=True)
def gpio_as_it_was() -> Iterator[None]:
    """The doctor opens the LEDs on gpiozero's mock pins here, which sets gpiozero's process-wide
    pin factory; later tests in this process must find it as it was."""
    from gpiozero import Device

    before = Device.pin_factory
    yield
    if Device.pin_factory is not before:
        Device.pin_factory.close()
        Device.pin_factory = before


def config_text(url: str, tmp_path: Path, extra: str = "") -> str:
    mic = save(tmp_path / "mic.wav", silence(2.0))
    return f"""
[agent]
agent_id = "agent_fit"
url = "{url}"
[trigger]
mode = "immediate"
[audio]
input = "file:{mic}"
output = "file:{tmp_path / "out.wav"}"
[conversation]
silence_close_s = 4.0
[conversation.overrides]
first_message = "Hello from the hall."
[leds]
type = "board"
pins = [17, 27, 22]
colors = ["green", "blue", "red"]
{extra}
"""


def doctor_against(
    tmp_path: Path, document: JsonDict, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Check]:
    monkeypatch.setenv("ELEVENLABS_API_KEY", KEY)
    monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")
    monkeypatch.setenv("GPIOZERO_MOCK_PIN_CLASS", "mockpwmpin")

    async def scenario() -> list[Check]:
        async with AgentSimulator(api_key=KEY, agent=document) as sim:
            path = tmp_path / "config.toml"
            path.write_text(config_text(sim.url, tmp_path))
            return await asyncio.to_thread(diagnose, path)

    return {check.name: check for check in asyncio.run(scenario())}


def test_doctor_names_what_a_default_agent_lacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    checks = doctor_against(tmp_path, default_document(), monkeypatch)
    override = checks["override first_message"]
    assert override.ok is False
    assert "Security > Overrides > First message" in override.fix
    assert "agent.first_message" in override.fix
    assert checks["event client_tool_call"].ok is False
    assert checks["event vad_score"].ok is None  # advice: the device's own VAD drives the LEDs
    for tool in ("set_volume", "device_status", "end_conversation"):
        assert checks[f"tool {tool}"].ok is False
        assert "agent-setup --apply" in checks[f"tool {tool}"].fix
    assert "agent settings" not in checks  # the fits-line only comes with no failure


def test_doctor_names_each_other_mismatch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rocket = {
        "type": "client",
        "name": "launch_rocket",
        "description": "a tool the device does not have",
        "parameters": {"type": "object", "properties": {}, "required": []},
    }
    volume = {
        "type": "client",
        "name": "set_volume",
        "description": "declared with the wrong parameter",
        "parameters": {
            "type": "object",
            "properties": {"level": {"type": "string", "description": "loud or soft"}},
            "required": ["level"],
        },
    }
    change = {
        "conversation_config": {
            "conversation": {"client_events": ["audio", "ping", "agent_response"]},
            "tts": {"agent_output_audio_format": "mp3_44100_128"},
            "turn": {"turn_timeout": 3.0, "silence_end_call_timeout": 2.0},
            "agent": {"prompt": {"tools": [rocket, volume]}},
        }
    }
    checks = doctor_against(tmp_path, merged(default_document(), change), monkeypatch)
    missing = checks["agent events"]
    assert missing.ok is False and "interruption" in missing.detail
    assert (
        "user_transcript" in missing.detail and "conversation_initiation_metadata" in missing.detail
    )
    assert checks["tool launch_rocket"].ok is False
    assert "[tools.custom.launch_rocket]" in checks["tool launch_rocket"].fix
    differs = checks["tool set_volume"]
    assert differs.ok is False and "level: string" in differs.detail
    assert "percent: number" in differs.detail
    assert checks["audio output (TTS)"].ok is False
    assert "mp3_44100_128" in checks["audio output (TTS)"].detail
    assert checks["turn timeout"].ok is False and "silence_close_s" in checks["turn timeout"].fix
    assert checks["silence hang-up"].ok is False


def test_doctor_without_a_key_says_what_it_could_not_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ELEVENLABS_API_KEY", raising=False)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    path = tmp_path / "config.toml"
    path.write_text(config_text("ws://127.0.0.1:9", tmp_path, "").replace("board", "none"))
    checks = {check.name: check for check in diagnose(path)}
    assert checks["agent settings"].ok is None
    assert "client events" in checks["agent settings"].detail


def changed_paths(before: Any, after: Any, path: str = "") -> set[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        return {
            p
            for key in set(before) | set(after)
            for p in changed_paths(before.get(key), after.get(key), f"{path}.{key}".lstrip("."))
        }
    return set() if before == after else {path}


def agentpi(*args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "ELEVENLABS_API_KEY": KEY}
    return subprocess.run(
        [*AGENTPI, *args], capture_output=True, text=True, timeout=60, env=environment
    )


def test_agent_setup_shows_then_applies_only_what_the_config_needs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> tuple[JsonDict, JsonDict, str, str, int]:
        async with AgentSimulator(api_key=KEY) as sim:
            path = tmp_path / "config.toml"
            path.write_text(config_text(sim.url, tmp_path))
            before = merged(sim.agent_document("agent_fit"), {})
            shown = await asyncio.to_thread(agentpi, "agent-setup", "--config", str(path))
            assert shown.returncode == 0, shown.stderr
            assert sim.agent_patches == []  # showing changes nothing
            applied = await asyncio.to_thread(
                agentpi, "agent-setup", "--config", str(path), "--apply"
            )
            assert applied.returncode == 0, applied.stdout + applied.stderr
            after = sim.agent_document("agent_fit")
            again = await asyncio.to_thread(agentpi, "agent-setup", "--config", str(path))
            return before, after, shown.stdout, again.stdout, len(sim.agent_patches)

    before, after, shown, again, patches = asyncio.run(scenario())
    assert "allow the override agent.first_message" in shown
    assert "client tool set_volume (percent)" in shown and "vad_score" in shown
    assert KEY not in shown
    assert patches == 1
    assert changed_paths(before, after) <= SETUP_PATHS
    assert "already has what this config needs" in again
    # the doctor is clean now
    (tmp_path / "d").mkdir()
    checks = doctor_against(tmp_path / "d", after, monkeypatch)
    assert checks["agent settings"].ok is True
    assert not [c for c in checks.values() if c.ok is False]
    # and a whole conversation uses every configured feature
    script = SimulatorScript(
        turns=(
            TurnScript(
                tool_call=ToolCallScript("set_volume", {"percent": 50}),
                response="Volume is {result}",
            ),
        )
    )
    run = run_conversation(
        tmp_path,
        script,
        input_wav=HELLO_WAV,
        agent=after,
        silence_close_s=3.0,  # the short greeting is over before the user speaks
        conversation={"overrides": OverridesConfig(first_message="Hello from the hall.")},
    )
    assert run.exit_code == 0
    record = run.record
    assert record.turns[0].text == "Hello from the hall."  # the override, allowed
    [result] = record.tool_results.values()
    assert not result.is_error and "50" in result.result
    assert run.of_kind("agent_response_complete")
    assert {s["source"] for s in run.of_kind("vad_score")} >= {"agent"}
    sent = {m.decode_server(frame).type for _, frame in record.sent}
    assert {"vad_score", "client_tool_call", "agent_response_complete"} <= sent
    assert at(after, "conversation_config.agent.first_message") == at(
        before, "conversation_config.agent.first_message"
    )


def test_the_doctor_counts_every_override_a_conversation_sends() -> None:
    """An empty first_message is sent (the agent waits for the user), so a default agent refuses
    it; a [wake.agents] entry for the same agent sends its own; the doctor names both."""
    from agentpi.agent.fit import findings
    from agentpi.config.document import Config, ConversationConfig
    from agentpi.device.initiation import initiation_data
    from agentpi.wake.settings import WakeAgentConfig, WakeConfig

    config = Config(
        conversation=ConversationConfig(overrides=OverridesConfig(first_message="")),
        wake=WakeConfig(
            models=("hey_jarvis", "alexa"), agents={"alexa": WakeAgentConfig(voice_id="v2")}
        ),
    )
    sent = initiation_data(config.conversation, "d").conversation_config_override
    assert sent == {"agent": {"first_message": ""}}
    found = {f.name: f for f in findings(config, default_document())}
    assert "conversation.overrides.first_message" in found["override first_message"].detail
    assert "wake.agents.alexa.voice_id" in found["override voice_id"].detail


def test_an_agent_document_of_any_shape_gets_findings_not_a_crash() -> None:
    """What the API answers is read, not trusted: every table a list, a string or a number."""
    from agentpi.agent.fit import describe_change, findings, setup_change
    from agentpi.config.document import Config

    odd: list[Any] = [
        {},
        {"conversation_config": [1, 2]},
        {"conversation_config": {"turn": "soon", "agent": {"prompt": {"tools": {"a": 1}}}}},
        {
            "conversation_config": {
                "conversation": {"client_events": [{"x": 1}, 3]},
                "agent": {
                    "prompt": {
                        "tools": [
                            7,
                            {"type": "client", "name": {"n": 1}, "parameters": []},
                            {
                                "type": "client",
                                "name": "set_volume",
                                "parameters": {"properties": ["percent"], "required": "percent"},
                            },
                        ]
                    }
                },
                "tts": {"agent_output_audio_format": {"pcm": 16000}},
            },
            "platform_settings": "all allowed",
        },
    ]
    config = Config(conversation=ConversationConfig(overrides=OverridesConfig(voice_id="v")))
    for document in odd:
        found = findings(config, document)
        assert any(f.ok is False for f in found)
        assert describe_change(config, setup_change(config, document))


def test_home_assistant_s_tools_are_declared_to_the_agent_when_it_is_set() -> None:
    from agentpi.agent.fit import tool_declarations
    from agentpi.tools.settings import HomeAssistantConfig

    plain = tool_declarations(Config())
    assert not {"home_control", "home_state", "home_entities"} & set(plain)
    home = Config(home_assistant=HomeAssistantConfig(url="https://ha.example:8123"))
    declared = tool_declarations(home)
    assert {"home_control", "home_state", "home_entities"} <= set(declared)
    schema = json.dumps(declared["home_control"])
    assert "entity_id" in schema and "service" in schema


def test_the_doctor_says_announcements_need_the_first_message_override() -> None:
    from agentpi.agent.definition import default_document, everything_enabled
    from agentpi.agent.fit import findings
    from agentpi.control.settings import ControlConfig

    def advice(config: Config, document: dict[str, Any]) -> list[str]:
        return [f.fix for f in findings(config, document) if "announcements" in f.detail]

    default = default_document()
    assert advice(Config(), default) == [
        "turn on Security > Overrides > First message "
        "(platform_settings.overrides.conversation_config_override.agent.first_message)"
    ]
    assert advice(Config(), everything_enabled(default, {})) == []
    assert advice(Config(control=ControlConfig(enabled=False)), default) == []  # nothing asks
