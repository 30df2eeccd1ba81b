"""A stable name for this device, the same across reboots and reinstalls of agentpi.

Derived from the machine id the way systemd's ``sd_id128_get_machine_app_specific`` does it (an
HMAC keyed by the machine id), so the agent's conversation history can group a device's
conversations without the raw machine id, which other software uses too, ever leaving the Pi.
A machine with no machine id gets a random id, kept in agentpi's state directory.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid
from pathlib import Path

from agentpi.system.atomic_file import write_atomically

APP_KEY = b"agentpi device id v1"
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def device_id(
    machine_id_files: tuple[Path, ...] = MACHINE_ID_FILES,
    state_dir: Path | None = None,
) -> str:
    for path in machine_id_files:
        try:
            machine_id = path.read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if machine_id:
            digest = hmac.new(machine_id.encode(), APP_KEY, hashlib.sha256).hexdigest()
            return f"agentpi-{digest[:16]}"
    return _kept_random_id(state_dir or default_state_dir())


def default_state_dir() -> Path:
    """systemd's StateDirectory= when run as the service, else the user's state directory."""
    if os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ["STATE_DIRECTORY"].split(":")[0])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "agentpi"


def _kept_random_id(state_dir: Path) -> str:
    path = state_dir / "device-id"
    try:
        kept = path.read_text(encoding="ascii").strip()
        if kept:
            return kept
    except (OSError, UnicodeDecodeError):
        pass
    made = f"agentpi-{uuid.uuid4().hex[:16]}"
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(path, made + "\n", 0o644)
    except OSError:
        pass  # read-only and no machine id: still a usable id, for this run
    return made
