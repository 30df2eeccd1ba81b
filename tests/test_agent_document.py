"""The simulator's agent is the platform's agent: every document it serves is the official SDK's
``GetAgentResponseModel`` with no field the SDK does not know, its defaults are the AsyncAPI
definition's, and its REST endpoints behave as the platform's (key check, PATCH merges)."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pydantic
import pytest
import yaml
from elevenlabs.types import ConversationConfigClientOverrideConfigOutput, GetAgentResponseModel

from agentpi.agent.definition import (
    CLIENT_EVENTS,
    DEFAULT_CLIENT_EVENTS,
    JsonDict,
    at,
    default_document,
    everything_enabled,
)
from agentpi.agent.fit import setup_change
from agentpi.agent.rest import AgentApiError, read_agent, update_agent
from agentpi.agent.simulator import AgentSimulator
from agentpi.config.document import Config, ConversationConfig, OverridesConfig
from agentpi.protocol.overrides import OVERRIDES
from agentpi.tools.settings import CustomToolConfig, ToolParameterConfig, ToolsConfig
from tests.schema import ASYNCAPI

KEY = "sk-test"


def unknown_fields(model: Any, path: str = "") -> list[str]:
    """Every key of a parsed document that the SDK's models do not declare."""
    if isinstance(model, pydantic.BaseModel):
        found = [f"{path}.{name}" for name in (model.model_extra or {})]
        for name in type(model).model_fields:
            found += unknown_fields(getattr(model, name), f"{path}.{name}")
        return found
    if isinstance(model, list):
        return [f for i, item in enumerate(model) for f in unknown_fields(item, f"{path}[{i}]")]
    if isinstance(model, dict):
        return [f for k, v in model.items() for f in unknown_fields(v, f"{path}.{k}")]
    return []


def sdk_shaped(document: JsonDict) -> None:
    parsed = GetAgentResponseModel.model_validate(document)
    assert unknown_fields(parsed) == []


def fitting_config() -> Config:
    weather = CustomToolConfig(
        command=("/bin/true",),
        description="The weather where the device is.",
        parameters={"days": ToolParameterConfig(type="integer", description="how many days")},
    )
    return Config(
        conversation=ConversationConfig(
            overrides=OverridesConfig(first_message="Hello from the hall", voice_id="voice1")
        ),
        tools=ToolsConfig(custom={"weather": weather}),
    )


def test_every_document_the_simulator_serves_has_the_sdks_shape() -> None:
    async def scenario() -> list[JsonDict]:
        config = fitting_config()
        served = []
        for template in (default_document(), everything_enabled(default_document(), {"t": ["x"]})):
            async with AgentSimulator(api_key=KEY, agent=template) as sim:
                before = await asyncio.to_thread(read_agent, sim.url, "agent_a", KEY)
                change = setup_change(config, before)
                after = await asyncio.to_thread(update_agent, sim.url, "agent_a", KEY, change)
                again = await asyncio.to_thread(read_agent, sim.url, "agent_a", KEY)
                served += [before, after, again]
        return served

    documents = asyncio.run(scenario())
    for document in documents:
        sdk_shaped(document)
    assert documents[2] == documents[1]  # what PATCH answered is what GET then reads


def test_an_unknown_field_would_be_caught() -> None:
    document = default_document()
    document["conversation_config"]["turn"]["turn_timeout_s"] = 7
    parsed = GetAgentResponseModel.model_validate(document)
    assert unknown_fields(parsed) == [".conversation_config.turn.turn_timeout_s"]


def test_the_default_events_are_the_asyncapi_definitions() -> None:
    schemas = yaml.safe_load(ASYNCAPI.read_text())["components"]["schemas"]
    described = schemas["ConversationConfigOverride"]["properties"]["client_events"]["description"]
    listed = re.search(r"\[([^\]]+)\]", described)
    assert listed is not None
    assert {e.strip() for e in listed.group(1).split(",")} == set(DEFAULT_CLIENT_EVENTS)
    enum = set(schemas["ClientEvent"]["enum"])
    assert set(CLIENT_EVENTS) - enum == {"agent_response_complete"}
    assert enum <= set(CLIENT_EVENTS)
    sdk_events = set(re.findall(r'"([a-z_]+)"', _literal_source()))
    assert "agent_response_complete" in sdk_events  # only the SDK lets an agent send it


def _literal_source() -> str:
    from elevenlabs.types import client_event

    return open(client_event.__file__).read()


def test_every_override_switch_is_one_the_sdk_knows() -> None:
    allowed: JsonDict = {}
    for path in OVERRIDES:
        node = allowed
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = True
    parsed = ConversationConfigClientOverrideConfigOutput.model_validate(allowed)
    assert unknown_fields(parsed) == []
    defaults = at(default_document(), "platform_settings.overrides.conversation_config_override")
    assert not [path for path in OVERRIDES if at(defaults, path) is True]  # none by default


def _call(url: str, method: str, key: str, body: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, method=method, headers={"xi-api-key": key})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rest_endpoints_check_the_key_and_merge_a_patch() -> None:
    async def scenario() -> None:
        async with AgentSimulator(api_key=KEY) as sim:
            url = f"{sim.http_url}/v1/convai/agents/agent_b"
            assert (await asyncio.to_thread(_call, url, "GET", "wrong"))[0] == 401
            assert (await asyncio.to_thread(_call, url, "PATCH", "", b"{}"))[0] == 401
            status, _ = await asyncio.to_thread(_call, url, "PATCH", KEY, b"[1, 2")
            assert status == 400
            events = {"conversation_config": {"conversation": {"client_events": ["vad_score"]}}}
            status, patched = await asyncio.to_thread(
                _call, url, "PATCH", KEY, json.dumps(events).encode()
            )
            assert status == 200
            conversation = patched["conversation_config"]["conversation"]
            assert conversation == {"max_duration_seconds": 600, "client_events": ["vad_score"]}
            assert (
                patched["conversation_config"]["agent"]
                == (default_document()["conversation_config"]["agent"])
            )
            bad = {"conversation_config": {"conversation": {"client_events": ["no_such"]}}}
            status, _ = await asyncio.to_thread(_call, url, "PATCH", KEY, json.dumps(bad).encode())
            assert status == 422
            with pytest.raises(AgentApiError, match="API key was refused"):
                await asyncio.to_thread(read_agent, sim.url, "agent_b", "wrong")

    asyncio.run(scenario())
