"""The [control] section of the config: the local control socket."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ControlConfig:
    """The local control socket (`agentpi say`, `status`, `events`)."""

    enabled: bool = True
    socket: str = ""
    """Default: control.sock in the service's runtime directory (/run/agentpi), or in
    $XDG_RUNTIME_DIR/agentpi when run by hand."""
    group: str = ""
    """Group that may use it (mode 0660); default: the service's own group."""
