"""What the device tells the agent: initiation data, its stable id, and contextual updates."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from agentpi.agent.script import SimulatorScript, TurnScript
from agentpi.config.document import (
    ConfigError,
    ContextConfig,
    ConversationConfig,
    OverridesConfig,
    load_config,
)
from agentpi.device.initiation import event_context, initiation_data, local_time, start_context
from agentpi.protocol import messages as m
from agentpi.system.identity import device_id
from tests.helpers import run_conversation
from tests.schema import ASYNCAPI, validate_frame


def test_initiation_data_from_config_matches_the_contract() -> None:
    conversation = ConversationConfig(
        dynamic_variables={"visitor": "Ada", "floor": 3, "vip": True, "score": 0.5},
        overrides=OverridesConfig(
            first_message="Welcome!", language="pt-br", prompt="Be brief.", voice_id="v1"
        ),
    )
    init = initiation_data(conversation, "agentpi-0123")
    assert init.user_id == "agentpi-0123"
    assert init.conversation_config_override == {
        "agent": {
            "prompt": {"prompt": "Be brief."},
            "first_message": "Welcome!",
            "language": "pt-br",
        },
        "tts": {"voice_id": "v1"},
    }
    assert init.source_info is not None and init.source_info["source"] == "agentpi"
    assert validate_frame(m.encode(init), "client") == "conversation_initiation_client_data"
    # nothing configured: no overrides at all (an agent that forbids them still accepts us)
    plain = initiation_data(ConversationConfig(user_id="lobby-kiosk"), "agentpi-0123")
    assert plain.conversation_config_override == {} and plain.user_id == "lobby-kiosk"


def test_language_codes_are_the_contracts() -> None:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    # YAML reads the bare word no (Norwegian) as false
    codes = [
        "no" if code is False else code for code in doc["components"]["schemas"]["Language"]["enum"]
    ]
    assert list(m.AGENT_LANGUAGES) == codes


def test_device_id_is_stable_and_does_not_reveal_the_machine_id(tmp_path: Path) -> None:
    machine = tmp_path / "machine-id"
    machine.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    first = device_id((machine,), tmp_path / "state")
    assert first == device_id((machine,), tmp_path / "state")
    assert first.startswith("agentpi-") and len(first) == len("agentpi-") + 16
    assert "3d1219c7" not in first
    other = tmp_path / "other-machine-id"
    other.write_text("0" * 32)
    assert device_id((other,), tmp_path / "state") != first
    # no machine id: a random one, kept, so it too survives a restart
    kept = device_id((tmp_path / "missing",), tmp_path / "state")
    assert kept == device_id((tmp_path / "missing",), tmp_path / "state") != first
    assert (tmp_path / "state" / "device-id").read_text().strip() == kept


def test_start_context_has_the_place_and_the_local_time() -> None:
    moment = datetime(2026, 11, 25, 14, 3, tzinfo=timezone(timedelta(hours=1), "CET"))
    assert local_time(moment) == "Wednesday 25 November 2026, 14:03 CET (UTC+01:00)"
    text = start_context(ContextConfig(location="Lobby, building 4"), "agentpi-1", moment)
    assert text == (
        "Local time at the device: Wednesday 25 November 2026, 14:03 CET (UTC+01:00). "
        "Location: Lobby, building 4."
    )
    assert start_context(ContextConfig(at_start=""), "agentpi-1") == ""


def test_event_context_fills_in_the_events_fields_and_keeps_unknown_ones() -> None:
    context = ContextConfig(on_event={"button": "Visitor pressed the button ({action}, {who})."})
    event = {"t": 1.0, "event": "button", "action": "end"}
    assert event_context(context, event) == "Visitor pressed the button (end, {who})."
    assert event_context(context, {"t": 1.0, "event": "trigger"}) == ""


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("[conversation.overrides]\nlanguage = 'english'", "is not a language the agent accepts"),
        ("[conversation.dynamic_variables]\n'my var' = 1", "use letters, digits and _"),
        ("[conversation.dynamic_variables]\nsystem__time = 'x'", "set by ElevenLabs"),
        ("[conversation.dynamic_variables]\nx = [1]", "dynamic_variables.x must be"),
        ("[context]\nat_start = 'It is {time}'", "unknown field {time}"),
        ("[context]\nat_start = 'It is {local_time'", "context.at_start"),
        ("[context.on_event]\ncontextual_update_sent = 'x'", "that event is the update itself"),
        ("[tools]\nbuiltin = ['reboot']", "'reboot' is not a device tool"),
        ("[tools.custom.x]\ncommand = ['/bin/true']\nentry_point = 'a:b'", "either command"),
        ("[tools.custom.x]\nentry_point = 'nonsense'", "package.module:function"),
        ("[tools.custom.set_volume]\ncommand = ['/bin/true']", "is a device tool"),
        ("[tools]\nmax_output_bytes = 10", "use 256 or more"),
    ],
)
def test_bad_setup_config_names_the_key(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[agent]\nagent_id = 'a'\n{body}\n")
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace("{", r"\{")):
        load_config(path)


@pytest.mark.realtime
def test_the_agent_gets_the_setup_and_context_through_the_simulator(tmp_path: Path) -> None:
    script = SimulatorScript(first_turn=TurnScript(response="(replaced by the override)"))
    run = run_conversation(
        tmp_path,
        script,
        conversation={
            "dynamic_variables": {"visitor": "Ada", "place": "the lobby"},
            "overrides": OverridesConfig(first_message="Hello {{visitor}}, welcome to {{place}}."),
        },
        sections={
            "context": ContextConfig(
                location="Lobby", on_event={"user_transcript": "Heard on the device: {text}"}
            )
        },
    )
    assert run.exit_code == 0
    record = run.record
    assert run.of_kind("agent_response")[0]["text"] == "Hello Ada, welcome to the lobby."
    assert record.init is not None and run.device is not None
    assert record.init.user_id == run.device.device_id
    updates = [u.text for u in record.of_type(m.ContextualUpdate)]
    assert updates[0].startswith("Local time at the device: ") and "Location: Lobby." in updates[0]
    transcript = run.of_kind("user_transcript")[0]["text"]
    assert f"Heard on the device: {transcript}" in updates[1:]
    # each arrived after the init, in the order the device sent them
    kinds = [type(message).__name__ for _, message in record.messages]
    assert kinds[0] == "ConversationInitiationClientData"
    assert [e["text"] for e in run.of_kind("contextual_update_sent")] == updates


@pytest.mark.realtime
def test_a_missing_dynamic_variable_is_refused_and_reported(tmp_path: Path) -> None:
    run = run_conversation(
        tmp_path,
        conversation={"overrides": OverridesConfig(first_message="Hi {{visitor}}!")},
    )
    assert run.exit_code == 1
    error = run.of_kind("server_error")[0]
    assert error["code"] == 1008 and error["error_type"] == "missing_dynamic_variable"
    assert "visitor" in error["message"]
    assert run.of_kind("conversation_ended")[0]["code"] == 1008


def test_every_initiation_field_a_device_sets_comes_from_the_config(tmp_path: Path) -> None:
    """The 2026 definition's fields: tts speed/stability/similarity, asr keywords ("auto": the
    wake phrases and the room), the llm, text_only, client_events, and the top-level branch,
    environment and starting workflow node; a wake word's agent entry overrides each."""
    body = """
[agent]
agent_id = "a"
[wake]
models = ["hey_jarvis", "alexa"]
[context]
location = "Kitchen"
[conversation]
client_events = ["audio", "vad_score", "mcp_tool_call"]
branch_id = "br_1"
environment = "staging"
starting_workflow_node_id = "node_greet"
[conversation.overrides]
llm = "gemini-2.0-flash"
speed = 1.1
stability = 0.4
similarity_boost = 0.9
keywords = ["auto", "toaster"]
text_only = false
[wake.agents.alexa]
speed = 0.8
llm = "gpt-4o-mini"
branch_id = "br_kids"
keywords = ["dinosaur"]
"""
    path = tmp_path / "config.toml"
    path.write_text(body)
    config = load_config(path)
    from agentpi.config.document import for_wake_word
    from agentpi.device.initiation import auto_keywords

    init = initiation_data(config.conversation, "d", auto_keywords(config))
    assert init.conversation_config_override == {
        "agent": {"prompt": {"llm": "gemini-2.0-flash"}},
        "tts": {"speed": 1.1, "stability": 0.4, "similarity_boost": 0.9},
        "asr": {"keywords": ["hey jarvis", "alexa", "Kitchen", "toaster"]},
        "conversation": {
            "text_only": False,
            "client_events": ["audio", "vad_score", "mcp_tool_call"],
        },
    }
    assert (init.branch_id, init.environment, init.starting_workflow_node_id) == (
        "br_1",
        "staging",
        "node_greet",
    )
    assert validate_frame(m.encode(init), "client") == "conversation_initiation_client_data"
    alexa = for_wake_word(config, "alexa")
    kids = initiation_data(alexa.conversation, "d", auto_keywords(alexa))
    override = kids.conversation_config_override
    assert override["tts"]["speed"] == 0.8 and override["tts"]["stability"] == 0.4
    assert override["agent"]["prompt"]["llm"] == "gpt-4o-mini"
    assert override["asr"]["keywords"] == ["dinosaur"]
    assert kids.branch_id == "br_kids" and kids.environment == "staging"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "[conversation.overrides]\nspeed = 3.0\n",
            "conversation.overrides.speed = 3.0: use 0.7 to 1.2",
        ),
        ("[conversation.overrides]\nstability = -1\n", "conversation.overrides.stability"),
        ('[conversation]\nclient_events = ["audoi"]\n', "'audoi' is not an event the agent sends"),
        (
            '[wake]\nmodels = ["alexa"]\n[wake.agents.alexa]\nspeed = 9\n',
            "wake.agents.alexa.speed = 9.0: use 0.7 to 1.2",
        ),
        ('[tools.mcp]\napprove = "all"\n', "tools.mcp.approve"),
        ('[button]\ndouble_press = "love"\n', "button.double_press"),
    ],
)
def test_bad_initiation_settings_are_one_line(tmp_path: Path, body: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[agent]\nagent_id = "a"\n' + body)
    with pytest.raises(ConfigError, match=expected.replace(".", r"\.").replace("(", r"\(")):
        load_config(path)
