"""Reading one field of a protocol frame, with errors that name the field.

Each reader takes the dict, the key and the dotted path used in error messages, and raises
``ProtocolError`` (the server's fault, never a crash) when the value is missing or of a wrong type.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from agentpi.errors import RemoteProtocolError

JsonDict = dict[str, Any]


class ProtocolError(RemoteProtocolError):
    """A frame that is not valid JSON or does not have the shape its type requires."""


# Each reader takes the dict, the key and the dotted path used in error messages.

_T = TypeVar("_T")


def read_required(data: Mapping[str, Any], key: str, path: str) -> Any:
    if key not in data:
        raise ProtocolError(f"{path}.{key}: missing")
    return data[key]


def read_str(data: Mapping[str, Any], key: str, path: str) -> str:
    value = read_required(data, key, path)
    if not isinstance(value, str):
        raise ProtocolError(f"{path}.{key}: expected a string, got {describe_json_type(value)}")
    return value


def read_optional_str(data: Mapping[str, Any], key: str, path: str) -> str | None:
    if data.get(key) is None:
        return None
    return read_str(data, key, path)


def read_int(data: Mapping[str, Any], key: str, path: str) -> int:
    value = read_required(data, key, path)
    # Some server events carry numeric ids as strings; the SDKs call int() on them too.
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProtocolError(f"{path}.{key}: expected an integer, got {describe_json_type(value)}")
    return value


def read_optional_int(data: Mapping[str, Any], key: str, path: str) -> int | None:
    if data.get(key) is None:
        return None
    return read_int(data, key, path)


def read_number(data: Mapping[str, Any], key: str, path: str) -> float:
    value = read_required(data, key, path)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ProtocolError(f"{path}.{key}: expected a number, got {describe_json_type(value)}")
    return float(value)


def read_bool(data: Mapping[str, Any], key: str, path: str, default: bool | None = None) -> bool:
    if key not in data and default is not None:
        return default
    value = read_required(data, key, path)
    if not isinstance(value, bool):
        raise ProtocolError(
            f"{path}.{key}: expected true or false, got {describe_json_type(value)}"
        )
    return value


def read_object(data: Mapping[str, Any], key: str, path: str) -> JsonDict:
    value = read_required(data, key, path)
    if not isinstance(value, dict):
        raise ProtocolError(f"{path}.{key}: expected an object, got {describe_json_type(value)}")
    return value


def read_optional_object(data: Mapping[str, Any], key: str, path: str) -> JsonDict | None:
    if data.get(key) is None:
        return None
    return read_object(data, key, path)


def read_base64(data: Mapping[str, Any], key: str, path: str) -> bytes:
    text = read_str(data, key, path)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{path}.{key}: not valid base64 ({exc})") from None


def describe_json_type(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, bytes | bytearray) else repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type(value).__name__} {text}"


def encode_base64(audio: bytes) -> str:
    return base64.b64encode(audio).decode("ascii")


def without_none(data: JsonDict) -> JsonDict:
    return {key: value for key, value in data.items() if value is not None}
