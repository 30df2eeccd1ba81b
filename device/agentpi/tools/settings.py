"""The [tools] section of the config: the device's own tools the agent may call, the owner's
programs and functions, and the bounds on running them; checked whole at load."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from agentpi.settings.typed import SettingsError

ConfigError = SettingsError

TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

BUILTIN_TOOLS = ("set_volume", "device_status", "end_conversation")


@dataclass(frozen=True)
class ToolParameterConfig:
    """One parameter of a custom tool, as the agent is told of it (`agentpi agent-setup`)."""

    type: Literal["string", "number", "integer", "boolean"] = "string"
    description: str = ""
    required: bool = True


@dataclass(frozen=True)
class CustomToolConfig:
    """A client tool of the owner's: a program, or a Python function."""

    command: tuple[str, ...] = ()
    """Program and arguments (no shell); it gets the call's parameters as JSON on stdin, and what
    it prints is the result. A non-zero exit is an error result."""
    entry_point: str = ""
    """Or "package.module:function" (or "/path/to/file.py:function"), called with the
    parameters dict; async or not."""
    timeout_s: float | None = None
    description: str = ""
    """What the tool does, for the agent's language model (declared by `agentpi agent-setup`)."""
    parameters: dict[str, ToolParameterConfig] = field(default_factory=dict)
    """Its parameters: [tools.custom.NAME.parameters.city] type = "string", description = ..."""


@dataclass(frozen=True)
class McpToolsConfig:
    """The agent's MCP tools that ask for approval (the agent's own setting, per tool): which the
    device answers itself; the rest ask the user (a cue, the lights; a short press is yes, a long
    press no, silence no)."""

    approve: tuple[str, ...] = ()
    """Tool names (shell patterns: "get_*") approved without asking."""
    deny: tuple[str, ...] = ()
    """Tool names declined without asking (checked first)."""
    approval_margin_s: float = 5.0
    """The answer goes out this long before the server's approval_timeout_secs runs out."""


HOME_DOMAINS = ("light", "switch", "fan", "cover", "climate", "media_player", "scene", "script")
"""What the agent may act on in the home by default: locks, alarms and the rest only by name."""


@dataclass(frozen=True)
class HomeAssistantConfig:
    """The local Home Assistant, whose entities the agent may act on through the device's
    tools (home_control, home_state, home_entities). Its long-lived access token comes from
    AGENTPI_HA_TOKEN or the systemd credential agentpi_ha_token, never from this file."""

    url: str = ""
    """https://homeassistant.local:8123 (plain http:// only to this machine); "" = off."""
    domains: tuple[str, ...] = HOME_DOMAINS
    """Every entity of these domains may be controlled and read."""
    entities: tuple[str, ...] = ()
    """And these, of any domain ("lock.front_door")."""
    timeout_s: float = 5.0
    """Each request to Home Assistant; the tool's own timeout bounds the whole call."""


@dataclass(frozen=True)
class ToolsConfig:
    builtin: tuple[str, ...] = BUILTIN_TOOLS
    """Device tools the agent may call: set_volume, device_status, end_conversation."""
    timeout_s: float = 10.0
    max_output_bytes: int = 16384
    """A result longer than this is an error (the agent gets the first part and the reason)."""
    max_running: int = 2
    """Tool calls run at once; more wait their turn."""
    max_waiting: int = 16
    """Tool calls that may wait; beyond that a call is answered at once: the device is busy."""
    custom: dict[str, CustomToolConfig] = field(default_factory=dict)
    mcp: McpToolsConfig = field(default_factory=McpToolsConfig)


def validate_tools(tools: ToolsConfig) -> None:
    for name in tools.builtin:
        if name not in BUILTIN_TOOLS:
            raise ConfigError(
                f"tools.builtin: {name!r} is not a device tool; use any of "
                f"{', '.join(BUILTIN_TOOLS)}"
            )
    if tools.timeout_s <= 0:
        raise ConfigError("tools.timeout_s must be more than 0")
    if not 256 <= tools.max_output_bytes <= 1048576:
        raise ConfigError(
            f"tools.max_output_bytes = {tools.max_output_bytes}: use 256 or more (up to 1048576)"
        )
    for name, tool in tools.custom.items():
        key = f"tools.custom.{name}"
        if not TOOL_NAME.fullmatch(name):
            raise ConfigError(f"{key}: a tool name is 1-64 letters, digits, _ or -")
        if name in tools.builtin:
            raise ConfigError(
                f"{key}: {name} is a device tool; rename yours or drop it from tools.builtin"
            )
        if bool(tool.command) == bool(tool.entry_point):
            raise ConfigError(
                f'{key}: give either command = ["/path/to/program", ...] or '
                'entry_point = "module:function"'
            )
        if tool.entry_point and not re.fullmatch(r"([\w.]+|.+\.py):[\w.]+", tool.entry_point):
            raise ConfigError(
                f"{key}.entry_point = {tool.entry_point!r}: write it as package.module:function "
                "or /path/to/file.py:function"
            )
        if tool.timeout_s is not None and tool.timeout_s <= 0:
            raise ConfigError(f"{key}.timeout_s must be more than 0")
