"""PortAudio itself: loading it quietly, listing devices, finding one by name, and the formats
each really opens at (tried, not read from the advertised defaults)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agentpi.audio.backend import AudioDeviceError

COMMON_RATES = (16000, 48000, 44100, 32000, 24000, 22050, 8000)


def load_pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError as exc:  # pragma: no cover - a dependency; only a broken install lacks it
        raise AudioDeviceError(
            f"PyAudio is not installed ({exc}); install portaudio19-dev and reinstall agentpi"
        ) from None
    return pyaudio


class PortAudio:
    """The process's one PortAudio session."""

    _instance: Any = None
    _lock = threading.Lock()

    @classmethod
    def get(cls) -> Any:
        with cls._lock:
            if cls._instance is None:
                pyaudio = load_pyaudio()
                with quiet_stderr():
                    cls._instance = pyaudio.PyAudio()
            return cls._instance

    @classmethod
    def restart(cls) -> Any:
        """Start PortAudio afresh so it sees devices plugged in since (all streams must be
        closed)."""
        with cls._lock:
            if cls._instance is not None:
                cls._instance.terminate()
                cls._instance = None
        return cls.get()


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """ALSA and JACK print probing noise on fd 2 while PortAudio starts; keep the log clean."""
    import os

    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


@dataclass(frozen=True)
class SoundDevice:
    index: int
    name: str
    max_input_channels: int
    max_output_channels: int

    def channels(self, kind: str) -> int:
        """The most channels it has as an "input" or an "output"."""
        return self.max_input_channels if kind == "input" else self.max_output_channels


def devices() -> list[SoundDevice]:
    pa = PortAudio.get()
    found = []
    for index in range(pa.get_device_count()):
        info = pa.get_device_info_by_index(index)
        found.append(
            SoundDevice(
                index,
                str(info["name"]),
                int(info["maxInputChannels"]),
                int(info["maxOutputChannels"]),
            )
        )
    return found


def find_device(spec: str, kind: str) -> SoundDevice | None:
    """The device ``spec`` names for ``kind`` ("input" or "output"); None means PortAudio's
    default. Raises AudioDeviceError listing what there is when nothing matches."""
    spec = spec.strip()
    if spec in ("", "default"):
        return None
    candidates = [d for d in devices() if d.channels(kind) > 0]
    if spec.isdigit():
        match = [d for d in candidates if d.index == int(spec)]
    else:
        match = [d for d in candidates if d.name == spec] or [
            d for d in candidates if spec.lower() in d.name.lower()
        ]
    if not match:
        have = ", ".join(f"{d.index}: {d.name}" for d in candidates) or "none at all"
        raise AudioDeviceError(f"audio {kind} {spec!r} not found; {kind}s present: {have}")
    return match[0]


def _try_open(device: SoundDevice | None, kind: str, rate: int, channels: int) -> bool:
    pa = PortAudio.get()
    pyaudio = load_pyaudio()
    index = None if device is None else device.index
    try:
        with quiet_stderr():
            stream = pa.open(
                rate=rate,
                channels=channels,
                format=pyaudio.paInt16,
                input=kind == "input",
                output=kind == "output",
                input_device_index=index if kind == "input" else None,
                output_device_index=index if kind == "output" else None,
                start=False,
            )
            stream.close()
    except (OSError, ValueError):
        return False
    return True


def supported_formats(
    device: SoundDevice | None, kind: str, rates: tuple[int, ...] = COMMON_RATES
) -> list[tuple[int, int]]:
    """(rate, channels) pairs the device really opens with: tried, not taken from its info."""
    most = 2
    if device is not None:
        most = device.channels(kind)
    found = []
    for rate in rates:
        for channels in sorted({1, min(2, most)}):
            if _try_open(device, kind, rate, channels):
                found.append((rate, channels))
    return found


def choose_format(device: SoundDevice | None, kind: str, preferred_rate: int) -> tuple[int, int]:
    """The first (rate, channels) that opens: the preferred rate first, mono first."""
    rates = (preferred_rate, *(r for r in COMMON_RATES if r != preferred_rate))
    for rate, channels in supported_formats(device, kind, rates):
        return rate, channels
    label = "default" if device is None else device.name
    raise AudioDeviceError(f"audio {kind} {label!r} opens at none of the rates {rates}")
