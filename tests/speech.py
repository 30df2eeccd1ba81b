"""Spoken test audio from espeak-ng (a Debian package), at 16 kHz, made on demand and cached."""

from __future__ import annotations

import functools
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from agentpi.audio.convert import Int16Array, Resampler, read_wav, write_wav
from agentpi.audio.vad import rms_dbfs

RATE = 16000
POSITIVE = "hey jarvis"
NEGATIVES = (
    "what is the weather like today",
    "turn on the kitchen lights please",
    "remind me to call my sister tomorrow",
    "how many minutes are left on the timer",
    "play some quiet music in the living room",
)
VOICES = ("en-us", "en-us+f2", "en-gb+m3", "en+m1")
SPEEDS = (140, 170)


@functools.lru_cache(maxsize=64)
def speak(text: str, voice: str = "en-us", speed: int = 140) -> Int16Array:
    """``text`` as 16 kHz mono int16, trimmed of espeak's own leading and trailing silence."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "speech.wav"
        subprocess.run(
            ["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text],
            capture_output=True,
            check=True,
            timeout=30,
        )
        samples, rate = read_wav(path)
    audio = Resampler(rate, RATE).process(samples, last=True)
    start, end = speech_bounds(audio)
    return audio[start:end].copy()


def speech_bounds(
    audio: Int16Array, window: int = 160, floor_dbfs: float = -45.0
) -> tuple[int, int]:
    """First and last sample of the 10 ms windows louder than ``floor_dbfs``."""
    loud = [
        i
        for i in range(0, len(audio) - window + 1, window)
        if rms_dbfs(audio[i : i + window]) > floor_dbfs
    ]
    return (loud[0], loud[-1] + window) if loud else (0, 0)


def silence(seconds: float) -> Int16Array:
    return np.zeros(int(RATE * seconds), dtype=np.int16)


def join(*parts: Int16Array) -> Int16Array:
    return np.concatenate(parts).astype(np.int16)


def save(path: Path, audio: Int16Array) -> Path:
    write_wav(path, audio, RATE)
    return path
