"""Home Assistant as the agent's client tools: the device is the bridge to the home it sits in.

Three tools, declared to the agent by ``agentpi agent-setup`` like the device's own: act on an
entity (a service of its domain), read one, and list what may be acted on (names and areas, so
the agent can resolve "the kitchen light"). Only entities of the allowed domains, or named one by
one, are touched; everything else, and every way Home Assistant can fail (a refused token, an
unknown entity, no answer in time), is one sentence the agent can repeat, with ``is_error``.

The token goes only to Home Assistant's own URL, over https (or to this machine), through the
same bounded request as the agent's API: one deadline, capped answers, no redirect followed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from agentpi.settings.credentials import Secret
from agentpi.system.https import Answer, AnswerRefused, Unreachable, request
from agentpi.tools.registry import ToolError, ToolRegistry
from agentpi.tools.settings import HomeAssistantConfig

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Home Assistant's whole state list, for a large home, fits well within this."""
MAX_LISTED = 60
"""Entities the list tool names at most (an LLM needs the candidates, not the whole house)."""
MAX_ATTRIBUTES = 6
SERVICE = re.compile(r"[a-z_]{1,40}")
ENTITY = re.compile(r"[a-z_]{1,40}\.[a-z0-9_]{1,100}")
SHOWN_ATTRIBUTES = (
    "brightness",
    "color_temp_kelvin",
    "current_temperature",
    "temperature",
    "hvac_action",
    "current_position",
    "percentage",
    "media_title",
    "volume_level",
    "unit_of_measurement",
)
"""What a state answer says beside the state: what a person asks about."""

HOME_TOOLS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "home_control": (
        "Act on a device in the home through Home Assistant: call a service (turn_on, "
        "turn_off, toggle, open_cover, set_temperature, ...) on one entity. Use home_entities "
        "first to find the entity_id.",
        {
            "entity_id": {"type": "string", "description": "e.g. light.kitchen"},
            "service": {"type": "string", "description": "e.g. turn_on, turn_off, toggle"},
            "data": {
                "type": "string",
                "description": 'optional JSON object of service data, e.g. {"brightness_pct": 40}',
            },
        },
        ["entity_id", "service"],
    ),
    "home_state": (
        "Read the state of one entity in the home (on/off, temperature, position ...).",
        {"entity_id": {"type": "string", "description": "e.g. climate.living_room"}},
        ["entity_id"],
    ),
    "home_entities": (
        "List the home's devices this speaker may act on: entity_id, name, area and state.",
        {},
        [],
    ),
}
"""How each tool is declared to the agent: description, parameter schemas, required names."""

Fetch = Callable[..., Awaitable[Answer]]


class HomeAssistant:
    def __init__(self, config: HomeAssistantConfig, token: Secret, fetch: Fetch = request) -> None:
        self.config = config
        self._token = token
        self._fetch = fetch
        self._base = config.url.rstrip("/")

    # ------------------------------------------------------------------ the tools

    async def control(self, parameters: Mapping[str, Any]) -> str:
        entity_id = self._allowed(parameters.get("entity_id"))
        service = parameters.get("service")
        if not isinstance(service, str) or not SERVICE.fullmatch(service):
            raise ToolError("service must be a service name such as turn_on or turn_off.")
        data = _service_data(parameters.get("data"))
        await self._call("GET", f"/api/states/{entity_id}", None, entity_id)  # it exists
        domain = entity_id.split(".", 1)[0]
        body = json.dumps({**data, "entity_id": entity_id}).encode()
        answer = await self._call("POST", f"/api/services/{domain}/{service}", body, entity_id)
        if answer.status == 400:
            raise ToolError(f"Home Assistant refused {domain}.{service} for {entity_id}.")
        changed = answer.json()
        now = (
            next(
                (
                    item
                    for item in changed
                    if isinstance(item, dict) and item.get("entity_id") == entity_id
                ),
                None,
            )
            if isinstance(changed, list)
            else None
        )
        if now is None:
            return f"Done: {domain}.{service} on {entity_id}."
        return f"Done: {describe(now)}"

    async def state(self, parameters: Mapping[str, Any]) -> str:
        entity_id = self._allowed(parameters.get("entity_id"))
        answer = await self._call("GET", f"/api/states/{entity_id}", None, entity_id)
        state = answer.json()
        if not isinstance(state, dict):
            raise ToolError("Home Assistant answered with something that is not a state.")
        return describe(state)

    async def entities(self, parameters: Mapping[str, Any]) -> str:
        answer = await self._call("GET", "/api/states", None, "")
        states = answer.json()
        if not isinstance(states, list):
            raise ToolError("Home Assistant answered with something that is not a state list.")
        allowed = [
            item
            for item in states
            if isinstance(item, dict) and self.allows(str(item.get("entity_id", "")))
        ]
        if not allowed:
            return "No device in the home is open to this speaker."
        areas = await self._areas([str(item["entity_id"]) for item in allowed[:MAX_LISTED]])
        lines = [
            f"{item['entity_id']}: {_name(item)}"
            + (f" in {areas[item['entity_id']]}" if areas.get(item["entity_id"]) else "")
            + f", {item.get('state')}"
            for item in allowed[:MAX_LISTED]
        ]
        more = len(allowed) - MAX_LISTED
        if more > 0:
            lines.append(f"... and {more} more.")
        return "\n".join(lines)

    async def check(self) -> str:
        """What the doctor says: how many entities the agent may act on (``ToolError`` when
        Home Assistant is away or refuses the token)."""
        answer = await self._call("GET", "/api/states", None, "")
        states = answer.json()
        if not isinstance(states, list):
            raise ToolError("Home Assistant answered with something that is not a state list.")
        ids = [str(item.get("entity_id", "")) for item in states if isinstance(item, dict)]
        allowed = sum(1 for entity_id in ids if self.allows(entity_id))
        return f"{allowed} of its {len(ids)} entities open to the agent"

    # ------------------------------------------------------------------ the rules

    def allows(self, entity_id: str) -> bool:
        if not ENTITY.fullmatch(entity_id):
            return False
        return entity_id in self.config.entities or entity_id.split(".")[0] in self.config.domains

    def _allowed(self, entity_id: object) -> str:
        if not isinstance(entity_id, str) or not ENTITY.fullmatch(entity_id):
            raise ToolError("entity_id must be an entity such as light.kitchen.")
        if not self.allows(entity_id):
            raise ToolError(f"{entity_id} is not one this speaker may control.")
        return entity_id

    async def _call(self, method: str, path: str, body: bytes | None, entity_id: str) -> Answer:
        headers = {"Authorization": f"Bearer {self._token.reveal()}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            answer = await self._fetch(
                method, self._base + path, headers, MAX_ANSWER_BYTES, self.config.timeout_s, body
            )
        except Unreachable as exc:
            raise ToolError(f"Home Assistant is not reachable ({exc}).") from None
        except AnswerRefused as exc:
            raise ToolError(f"Home Assistant's answer was refused ({exc}).") from None
        if answer.status in (401, 403):
            raise ToolError("Home Assistant refused the device's token; the owner must renew it.")
        if answer.status == 404 and entity_id:
            raise ToolError(f"Home Assistant has no entity {entity_id}.")
        if answer.status >= 400 and answer.status != 400:
            raise ToolError(f"Home Assistant answered HTTP {answer.status}.")
        return answer

    async def _areas(self, entity_ids: list[str]) -> dict[str, str]:
        """Each entity's area, in one template render; none when Home Assistant will not say."""
        template = "{% for e in ids %}{{ e }}={{ area_name(e) or '' }}\n{% endfor %}"
        body = json.dumps({"template": template, "variables": {"ids": entity_ids}}).encode()
        try:
            answer = await self._call("POST", "/api/template", body, "")
        except ToolError:
            return {}
        if answer.status != 200:
            return {}
        text = answer.body.decode("utf-8", "replace")
        pairs = (line.partition("=") for line in text.splitlines())
        return {key: value.strip() for key, _, value in pairs if key in entity_ids and value}


def describe(state: Mapping[str, Any]) -> str:
    """One sentence an agent can say: the name, the state and what a person asks about."""
    attributes = state.get("attributes")
    shown: list[str] = []
    if isinstance(attributes, dict):
        for key in SHOWN_ATTRIBUTES:
            if key in attributes and len(shown) < MAX_ATTRIBUTES and attributes[key] is not None:
                shown.append(f"{key.replace('_', ' ')} {attributes[key]}")
    extra = f" ({', '.join(shown)})" if shown else ""
    return f"{_name(state)} ({state.get('entity_id')}) is {state.get('state')}{extra}."


def _name(state: Mapping[str, Any]) -> str:
    attributes = state.get("attributes")
    if isinstance(attributes, dict) and isinstance(attributes.get("friendly_name"), str):
        return str(attributes["friendly_name"])[:80]
    return str(state.get("entity_id"))


def _service_data(data: object) -> dict[str, Any]:
    if data is None or data == "":
        return {}
    if isinstance(data, dict):
        parsed: object = data
    elif isinstance(data, str):
        try:
            parsed = json.loads(data)
        except json.JSONDecodeError:
            raise ToolError('data must be a JSON object, such as {"brightness_pct": 40}.') from None
    else:
        parsed = None
    if not isinstance(parsed, dict) or len(json.dumps(parsed)) > 2048:
        raise ToolError("data must be a JSON object of at most 2 KB.")
    parsed.pop("entity_id", None)  # the entity is the checked one, never one smuggled in here
    return parsed


def register_home_tools(registry: ToolRegistry, home: HomeAssistant) -> None:
    registry.register("home_control", home.control)
    registry.register("home_state", home.state)
    registry.register("home_entities", home.entities)
