"""What the service runs or obeys (its config, tool programs, tool modules) must come from root
or the service's own user: a file anyone else may write is a way to run code as the service."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from agentpi.settings.typed import SettingsError


def check_trusted_file(path: Path, what: str) -> None:
    """One line naming the file and the fix when another user owns it or may write it."""
    try:
        info = path.stat()
    except OSError:
        return  # a missing file is reported where it is read, with its own message
    if info.st_uid not in (0, os.geteuid()):
        raise SettingsError(
            f"{what} {path} belongs to uid {info.st_uid}, not root or this user: "
            f"sudo chown root {path}"
        )
    if info.st_mode & stat.S_IWOTH:
        raise SettingsError(f"{what} {path} is writable by anyone: chmod o-w {path}")
    if info.st_mode & stat.S_IWGRP and info.st_gid not in (0, os.getegid()):
        raise SettingsError(f"{what} {path} is writable by group {info.st_gid}: chmod g-w {path}")
