"""The device's own client tools: set_volume, device_status, end_conversation.

The agent must declare them as client tools with these names and parameters (``DEVICE_TOOLS``;
``agentpi agent-setup --apply`` does it). They run on the event loop (they only touch the
device's own state), never on a thread.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from agentpi.tools.registry import ToolError, ToolRegistry

MAX_VOLUME_PERCENT = 200.0

DEVICE_TOOLS: dict[str, tuple[str, dict[str, Any], list[str]]] = {
    "set_volume": (
        "Set the speaker's volume, in percent of the device's configured volume "
        "(100 = as configured, 0 = silent, 200 = double).",
        {"percent": {"type": "number", "description": "0 to 200"}},
        ["percent"],
    ),
    "device_status": (
        "Read the device's state as JSON: its volume, whether it listens for the wake word, "
        "and how its conversations went.",
        {},
        [],
    ),
    "end_conversation": (
        "End the conversation: the device hangs up once your next reply (say goodbye) is over.",
        {},
        [],
    ),
}
"""How each tool is declared to the agent: description, parameter schemas, required names."""


class DeviceControls(Protocol):
    @property
    def volume_percent(self) -> float: ...

    def set_volume_percent(self, percent: float) -> None: ...

    def status(self) -> dict[str, Any]: ...

    def end_conversation(self) -> bool:
        """End the running conversation after the agent's turn; False when none runs."""
        ...


def register_device_tools(
    registry: ToolRegistry, device: DeviceControls, names: tuple[str, ...]
) -> None:
    async def set_volume(parameters: dict[str, Any]) -> str:
        percent = _percent(parameters.get("percent"))
        device.set_volume_percent(percent)
        return f"Volume set to {device.volume_percent:g} %."

    async def device_status(parameters: dict[str, Any]) -> str:
        return json.dumps(device.status())

    async def end_conversation(parameters: dict[str, Any]) -> str:
        if not device.end_conversation():
            raise ToolError("no conversation is running")
        return "The device will hang up after your reply; say goodbye now."

    tools = {
        "set_volume": set_volume,
        "device_status": device_status,
        "end_conversation": end_conversation,
    }
    for name in names:
        registry.register(name, tools[name])


def _percent(value: Any) -> float:
    """A number from 0 to 200; language models sometimes send "80" or "80%"."""
    try:
        if isinstance(value, bool):
            raise ValueError
        percent = float(value.strip().rstrip("%") if isinstance(value, str) else value)
    except (TypeError, ValueError):
        raise ToolError(
            f"percent must be a number from 0 to {MAX_VOLUME_PERCENT:g}, got {value!r}"
        ) from None
    if not 0 <= percent <= MAX_VOLUME_PERCENT:
        raise ToolError(f"percent must be from 0 to {MAX_VOLUME_PERCENT:g}, got {percent:g}")
    return percent
