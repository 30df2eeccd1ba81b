"""Client tools the agent can call on the device.

A tool is a plain function (sync or async) taking the call's parameters and returning a value;
the result sent back is always a string. An unknown tool, an exception or a timeout answer with
``is_error`` and a message that says what went wrong, never with silence.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from typing import Any

ToolFunction = Callable[[dict[str, Any]], Any | Awaitable[Any]]


class ToolRegistry:
    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._tools: dict[str, ToolFunction] = {}

    def register(self, name: str, function: ToolFunction) -> None:
        self._tools[name] = function

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    async def run(self, name: str, parameters: dict[str, Any]) -> tuple[str, bool]:
        """Run a tool; returns (result text, is_error)."""
        function = self._tools.get(name)
        if function is None:
            known = ", ".join(self.names) or "none"
            return f"Unknown client tool {name!r} on this device (registered: {known})", True
        try:
            if inspect.iscoroutinefunction(function):
                outcome = await asyncio.wait_for(function(parameters), self.timeout_s)
            else:  # a blocking tool must not stall the audio: run it on a worker thread
                outcome = await asyncio.wait_for(
                    asyncio.to_thread(function, parameters), self.timeout_s
                )
        except TimeoutError:
            return f"Client tool {name!r} timed out after {self.timeout_s:g} s", True
        except Exception as exc:
            return f"Client tool {name!r} failed: {exc}", True
        if outcome is None:
            return f"Client tool {name!r} called successfully.", False
        if isinstance(outcome, str):
            return outcome, False
        return json.dumps(outcome, default=str), False
