"""Hardware profiles (hardware/profiles/*.toml): defaults merged under the user's config."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agentpi.settings.typed import SettingsError, load_toml

ConfigError = SettingsError


PROFILE_DIR_ENV = "AGENTPI_HARDWARE_DIR"


def profile_dirs() -> list[Path]:
    dirs = [Path(os.environ[PROFILE_DIR_ENV])] if os.environ.get(PROFILE_DIR_ENV) else []
    dirs.append(Path(__file__).resolve().parents[3] / "hardware" / "profiles")  # a checkout
    dirs.append(Path("/usr/share/agentpi/hardware/profiles"))
    return dirs


def find_profile(name: str) -> Path:
    if name.endswith(".toml"):
        return Path(name)
    for directory in profile_dirs():
        if (directory / f"{name}.toml").is_file():
            return directory / f"{name}.toml"
    known = sorted({p.stem for d in profile_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(
        f"hardware.profile = {name!r}: no such profile; known: {', '.join(known) or 'none'}"
    )


def load_profile(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A profile's description (its [profile] table) and its settings."""
    data = load_toml(find_profile(name))
    info = data.pop("profile", {})
    for section in ("agent", "hardware"):
        if section in data:
            raise ConfigError(f"profile {name!r}: [{section}] does not belong in a profile")
    return info, data


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``, table by table."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def with_profile(data: dict[str, Any], profile: str | None = None) -> dict[str, Any]:
    """The config ``data`` on top of its hardware profile (``profile``, else its own
    ``[hardware] profile``); unchanged when it names none."""
    hardware = data.get("hardware")
    named = hardware.get("profile") if isinstance(hardware, dict) else None
    profile = profile or (named if isinstance(named, str) else None)
    return merge(load_profile(profile)[1], data) if profile else data
