"""Where the control socket lives, and the check that no one else could have put it there."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from agentpi.control.settings import ControlConfig
from agentpi.settings.typed import SettingsError

SOCKET_NAME = "control.sock"
SYSTEM_SOCKET = Path("/run/agentpi") / SOCKET_NAME


def socket_path(control: ControlConfig, environ: Mapping[str, str] | None = None) -> Path:
    """Where the device listens: the configured path, else its runtime directory."""
    env = os.environ if environ is None else environ
    if control.socket:
        return Path(control.socket)
    if env.get("RUNTIME_DIRECTORY"):  # systemd's RuntimeDirectory=agentpi
        return Path(env["RUNTIME_DIRECTORY"].split(":")[0]) / SOCKET_NAME
    return user_socket_path(env)


def user_socket_path(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("XDG_RUNTIME_DIR"):
        return Path(env["XDG_RUNTIME_DIR"]) / "agentpi" / SOCKET_NAME
    if os.geteuid() == 0:
        return SYSTEM_SOCKET
    return Path(f"/tmp/agentpi-{os.geteuid()}") / SOCKET_NAME


def check_private_directory(directory: Path) -> None:
    """The socket's directory must be a real directory that no one else could have made or may
    write in: another local user who created /tmp/agentpi-<uid> first (mode 0777) could swap in
    a socket of their own and read what `agentpi say` sends."""
    info = directory.lstat()
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise SettingsError(f"control socket directory {directory}: not a directory (a symlink?)")
    if info.st_uid not in (os.geteuid(), 0):
        raise SettingsError(
            f"control socket directory {directory} belongs to uid {info.st_uid}, not to this "
            f"user: remove it (sudo rm -r {directory}) or set [control] socket"
        )
    if info.st_mode & 0o022:
        raise SettingsError(
            f"control socket directory {directory} is writable by others "
            f"(mode {stat.S_IMODE(info.st_mode):o}): chmod 700 {directory}"
        )
