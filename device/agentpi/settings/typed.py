"""TOML into typed, frozen dataclasses, checked up front with errors that name the key.

Used for the device config and for simulator scripts. Unknown keys, wrong types and bad values
fail at load time with one line that says which key and what would be right, never mid-run.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from agentpi.errors import AgentpiError

T = TypeVar("T")


class SettingsError(AgentpiError, ValueError):
    """A config or script value that cannot be used; the message names the key and the fix."""


def load_toml(path: str | Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise SettingsError(f"cannot read {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path} is not valid TOML: {exc}") from None


def build_dataclass(cls: type[T], data: Any, where: str) -> T:
    """Build ``cls`` from a TOML table; ``where`` is the dotted key used in messages."""
    label = where or "the top level"
    if not isinstance(data, dict):
        raise SettingsError(f"[{label}] must be a table, got {type(data).__name__}")
    hints = get_type_hints(cls)
    # fields computed in __post_init__ (init=False) are not settings
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SettingsError(
            f"unknown key {_join(where, unknown[0])}; known keys in [{label}]: {', '.join(fields)}"
        )
    values: dict[str, Any] = {}
    for name, value in data.items():
        values[name] = _convert(hints[name], value, _join(where, name))
    missing = [
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SettingsError(f"missing key {_join(where, missing[0])}")
    try:
        return cls(**values)
    except SettingsError:
        raise
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"[{label}]: {exc}") from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _convert(hint: Any, value: Any, key: str) -> Any:
    origin = get_origin(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        options = [arg for arg in get_args(hint) if arg is not type(None)]
        errors = []
        for option in options:
            try:
                return _convert(option, value, key)
            except SettingsError as exc:
                errors.append(str(exc))
        raise SettingsError(errors[0])
    if origin is typing.Literal:
        allowed = get_args(hint)
        if value not in allowed:
            choices = " | ".join(repr(a) for a in allowed)
            raise SettingsError(f"{key} = {value!r} is not allowed; use one of {choices}")
        return value
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        return build_dataclass(hint, value, key)
    if origin is tuple:
        item = get_args(hint)[0]
        if not isinstance(value, list):
            raise SettingsError(f"{key} must be a list, got {_kind(value)}")
        return tuple(_convert(item, v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{key} must be a table, got {_kind(value)}")
        item = get_args(hint)[1]
        return {name: _convert(item, v, f"{key}.{name}") for name, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SettingsError(f"{key} must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise SettingsError(f"{key} = {value}: must be a finite number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"{key} must be a whole number, got {_kind(value)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SettingsError(f"{key} must be true or false, got {_kind(value)}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise SettingsError(f"{key} must be a string, got {_kind(value)}")
        return value
    raise SettingsError(f"{key}: unsupported setting type {hint!r}")  # a bug in agentpi


def _kind(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def check_ranges(obj: Any, ranges: dict[str, tuple[float, float, str]], where: str = "") -> None:
    """Every number named in ``ranges`` (dotted keys) within its bounds; the message names the
    key, its value and the range."""
    for key, (low, high, unit) in ranges.items():
        section, _, name = key.rpartition(".")
        holder = obj
        for part in filter(None, section.split(".")):
            holder = getattr(holder, part)
        value = getattr(holder, name)
        if value is None:
            continue
        if not (math.isfinite(value) and low <= value <= high):
            label = f" ({unit})" if unit else ""
            raise SettingsError(
                f"{_join(where, key)} = {value}: use {_number(low)} to {_number(high)}{label}"
            )


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
