"""JSON from outside the device, read with bounds: server frames, MQTT and control-socket
commands, the signed-URL endpoint's and the agent API's answers.

``json.loads`` raises ``RecursionError`` on nesting a few thousand deep (a 100 KB frame of
``[[[[...``), which is no ``ValueError``: uncaught, it ended conversations as the device's own
fault, and killed the MQTT link's task. Here anything past the bounds (size, depth, Python's
4,300-digit limit on integers) is a ``JsonRefused``: a ``ValueError`` naming what was refused.
"""

from __future__ import annotations

import json
from typing import Any

from agentpi.errors import AgentpiError

MAX_DEPTH = 64
"""Deeper than any message of the protocol, the agent API or a command (they nest 2-8 deep)."""


class JsonRefused(AgentpiError, ValueError):
    """Input that is not JSON within the bounds; the message says which bound."""


def loads(raw: str | bytes, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """The JSON value in ``raw``, or ``JsonRefused``."""
    if len(raw) > max_bytes:
        raise JsonRefused(f"{len(raw)} bytes, more than the {max_bytes} taken")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JsonRefused(f"nested deeper than {max_depth}") from None
    except (ValueError, UnicodeDecodeError) as exc:  # ValueError: also too many digits
        raise JsonRefused(f"not valid JSON ({str(exc)[:120]})") from None
    if _openings(raw) > max_depth and _depth(value) > max_depth:
        raise JsonRefused(f"nested deeper than {max_depth}")
    return value


def load_object(raw: str | bytes, max_bytes: int) -> dict[str, Any]:
    """The JSON object in ``raw`` (commands, answers: never a bare value), or ``JsonRefused``."""
    value = loads(raw, max_bytes)
    if not isinstance(value, dict):
        raise JsonRefused(f"a JSON {type(value).__name__}, not an object")
    return value


def _openings(raw: str | bytes) -> int:
    """How many arrays and objects could open in ``raw`` (counted in C: the common case, a
    frame with a few brackets, never walks the value)."""
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node.values())
        elif isinstance(node, list):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in node)
    return deepest
