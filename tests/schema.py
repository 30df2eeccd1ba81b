"""Validation of wire frames against the official AsyncAPI contract (shared/reference)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

ASYNCAPI = Path(__file__).resolve().parent / "contract" / "agent.asyncapi.yaml"
# Server types this client handles that the contract does not define (protocol.md 5.18-5.21).
NOT_IN_CONTRACT = {"agent_response_complete", "contextual_update", "client_error"}


def _openapi_nullable(node: Any) -> Any:
    """OpenAPI's `nullable: true` is not JSON Schema; rewrite it as a null alternative."""
    if isinstance(node, dict):
        node = {key: _openapi_nullable(value) for key, value in node.items()}
        if node.pop("nullable", False):
            if "type" in node:
                types = node["type"] if isinstance(node["type"], list) else [node["type"]]
                node["type"] = [*types, "null"]
            else:
                node = {"anyOf": [node, {"type": "null"}]}
        return node
    if isinstance(node, list):
        return [_openapi_nullable(item) for item in node]
    return node


def _all_of_as_meant(node: Any) -> Any:
    """The definition's MCP states are ``allOf`` a base and a state part, each with
    ``additionalProperties: false``: read literally, no frame satisfies both (each forbids the
    other's fields). Validate them as meant: the parts' required fields together (other fields
    pass)."""
    if isinstance(node, dict):
        node = {key: _all_of_as_meant(value) for key, value in node.items()}
        if "allOf" in node:
            for part in node["allOf"]:
                if isinstance(part, dict):
                    part.pop("additionalProperties", None)
        return node
    if isinstance(node, list):
        return [_all_of_as_meant(item) for item in node]
    return node


@cache
def _contract() -> tuple[dict[str, Any], dict[str, dict[str, str]]]:
    doc = yaml.safe_load(ASYNCAPI.read_text())
    components = _all_of_as_meant(_openapi_nullable(copy.deepcopy(doc["components"])))
    for schema in components["schemas"].values():
        for part in schema.get("allOf", ()):
            if "$ref" in part:  # a base that an allOf extends, as MCPToolCallBase
                components["schemas"][part["$ref"].rsplit("/", 1)[1]].pop(
                    "additionalProperties", None
                )
    by_direction: dict[str, dict[str, str]] = {"client": {}, "server": {}}
    for direction, operation in (("client", "subscribe"), ("server", "publish")):
        for ref in doc["channels"]["AgentMessages"][operation]["message"]["oneOf"]:
            message = components["messages"][ref["$ref"].rsplit("/", 1)[1]]
            schema_name = message["payload"]["$ref"].rsplit("/", 1)[1]
            schema = components["schemas"][schema_name]
            kind = schema.get("properties", {}).get("type", {}).get("const", "user_audio_chunk")
            by_direction[direction][kind] = schema_name
    return components, by_direction


def message_kind(frame: dict[str, Any]) -> str:
    return frame.get("type", "user_audio_chunk")


def validate_frame(raw: str, direction: str) -> str:
    """Validate one JSON frame sent by 'client' or 'server'; returns its type.

    Raises AssertionError when the frame breaks the contract or its type is not in it."""
    frame = json.loads(raw)
    kind = message_kind(frame)
    components, by_direction = _contract()
    schema_name = by_direction[direction].get(kind)
    if schema_name is None:
        if direction == "server" and kind in NOT_IN_CONTRACT:
            return kind
        raise AssertionError(f"{direction} message type {kind!r} is not in the contract")
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": components}
    )
    errors = sorted(validator.iter_errors(frame), key=str)
    if errors:
        raise AssertionError(f"{kind} breaks the contract: {errors[0].message} in {raw[:200]}")
    return kind


def contract_types(direction: str) -> set[str]:
    return set(_contract()[1][direction])
