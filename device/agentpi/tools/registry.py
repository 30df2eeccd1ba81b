"""Client tools the agent can call on the device.

A tool is a plain function (sync or async) taking the call's parameters and returning a value;
the result sent back is always a string. An unknown tool, an exception, a timeout or an oversized
result answer with ``is_error`` and a message that says what went wrong, never with silence.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

from agentpi.errors import AgentpiError

ToolFunction = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class ToolError(AgentpiError):
    """A tool's own report of failure; its message is what the agent is told."""


class ToolRegistry:
    def __init__(self, timeout_s: float = 10.0, max_output_bytes: int = 16384) -> None:
        self.timeout_s = timeout_s
        self.max_output_bytes = max_output_bytes
        self._tools: dict[str, tuple[ToolFunction, float]] = {}

    def register(self, name: str, function: ToolFunction, timeout_s: float | None = None) -> None:
        self._tools[name] = (function, timeout_s or self.timeout_s)

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    async def run(self, name: str, parameters: dict[str, Any]) -> tuple[str, bool]:
        """Run a tool; returns (result text, is_error)."""
        entry = self._tools.get(name)
        if entry is None:
            known = ", ".join(self.names) or "none"
            return f"Unknown client tool {name!r} on this device (registered: {known})", True
        function, timeout_s = entry
        try:
            if inspect.iscoroutinefunction(function):
                outcome = await asyncio.wait_for(function(parameters), timeout_s)
            else:  # a blocking tool must not stall the audio: run it on a worker thread
                outcome = await asyncio.wait_for(asyncio.to_thread(function, parameters), timeout_s)
        except TimeoutError:
            return f"Client tool {name!r} timed out after {timeout_s:g} s", True
        except Exception as exc:
            return f"Client tool {name!r} failed: {exc}", True
        if outcome is None:
            text = f"Client tool {name!r} called successfully."
        elif isinstance(outcome, str):
            text = outcome
        else:
            text = json.dumps(outcome, default=str)
        return self._capped(name, text)

    def _capped(self, name: str, text: str) -> tuple[str, bool]:
        data = text.encode()
        if len(data) <= self.max_output_bytes:
            return text, False
        reason = (
            f"Client tool {name!r} returned {len(data)} bytes, more than the "
            f"{self.max_output_bytes}-byte limit; it began: "
        )
        # the whole answer, reason included, stays within the limit
        room = max(0, self.max_output_bytes - len(reason.encode()))
        return reason + data[:room].decode(errors="ignore"), True
