"""Sample conversions between the device's PCM and the agent's wire formats.

Internally audio is 16-bit signed mono PCM (``int16`` arrays or little-endian bytes). Resampling
is ``polyphase.PolyphaseResampler`` (streaming, even chunks, 1 ms of delay); mu-law is G.711 in
NumPy because ``audioop`` is gone from Python 3.13.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt

from agentpi.audio.formats import AudioFormat
from agentpi.audio.polyphase import PolyphaseResampler

Int16Array = npt.NDArray[np.int16]

_ULAW_BIAS = 0x84
# Segment ends of the G.711 reference encoder (Sun's g711.c, which audioop also used), which
# works on 14-bit magnitudes.
_ULAW_SEGMENT_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ULAW_CLIP_14 = 8159


def pcm16_from_bytes(data: bytes) -> Int16Array:
    return np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)


def ulaw_encode(samples: Int16Array) -> bytes:
    x = samples.astype(np.int32) >> 2
    mask = np.where(x < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(x), _ULAW_CLIP_14) + (_ULAW_BIAS >> 2)
    segment = np.searchsorted(_ULAW_SEGMENT_END, magnitude, side="left")
    encoded = (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F)
    encoded = np.where(segment >= len(_ULAW_SEGMENT_END), 0x7F, encoded)  # beyond the last segment
    return bytes((encoded ^ mask).astype(np.uint8).tobytes())


def ulaw_decode(data: bytes) -> Int16Array:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def encode_wire(samples: Int16Array, fmt: AudioFormat) -> bytes:
    """PCM samples already at ``fmt.sample_rate`` into wire bytes."""
    if fmt.encoding == "ulaw":
        return ulaw_encode(samples)
    return samples.astype("<i2", copy=False).tobytes()


def decode_wire(data: bytes, fmt: AudioFormat) -> Int16Array:
    if fmt.encoding == "ulaw":
        return ulaw_decode(data)
    if len(data) % 2:
        data = data[:-1]  # a torn sample cannot be played; never raise on the audio path
    return pcm16_from_bytes(data)


class Resampler:
    """Streaming int16 mono resampler; a pass-through when the rates match."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = None if in_rate == out_rate else PolyphaseResampler(in_rate, out_rate)

    def process(self, samples: Int16Array, last: bool = False) -> Int16Array:
        if self._stream is None:
            return samples
        return self._stream.process(samples, last=last)


class WireEncoder:
    """Microphone PCM at the capture rate -> the agent's ``user_input_audio_format``."""

    def __init__(self, capture_rate: int, fmt: AudioFormat) -> None:
        self.format = fmt
        self._resampler = Resampler(capture_rate, fmt.sample_rate)

    def encode(self, samples: Int16Array) -> bytes:
        return encode_wire(self._resampler.process(samples), self.format)


class WireDecoder:
    """The agent's ``agent_output_audio_format`` -> speaker PCM at the playback rate."""

    def __init__(self, fmt: AudioFormat, playback_rate: int) -> None:
        self.format = fmt
        self._resampler = Resampler(fmt.sample_rate, playback_rate)

    def decode(self, data: bytes) -> Int16Array:
        return self._resampler.process(decode_wire(data, self.format))


def apply_gain(samples: Int16Array, gain: float) -> Int16Array:
    """Software volume, clipped instead of wrapping around."""
    if gain == 1.0:
        return samples
    out: Int16Array = np.clip(samples.astype(np.float32) * gain, -32768, 32767).astype(np.int16)
    return out


def to_mono_int16(frames: bytes, sample_width: int, channels: int) -> Int16Array:
    """Interleaved integer PCM of any common width into mono int16."""
    if sample_width == 2 and channels == 1:  # a USB microphone's usual: a copy is all it takes
        same: Int16Array = np.frombuffer(frames, dtype="<i2").astype(np.int16)
        return same
    if sample_width == 1:  # WAV 8-bit is unsigned
        wide = (np.frombuffer(frames, dtype=np.uint8).astype(np.int32) - 128) << 8
    elif sample_width == 2:
        wide = np.frombuffer(frames, dtype="<i2").astype(np.int32)
    elif sample_width == 3:
        raw = np.frombuffer(frames, dtype=np.uint8).reshape(-1, 3).astype(np.int32)
        wide = (raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)) << 8
        wide = wide.astype(np.int32) >> 16  # sign-extends via the arithmetic shift
    elif sample_width == 4:
        wide = np.frombuffer(frames, dtype="<i4").astype(np.int64) >> 16
    else:
        raise ValueError(f"unsupported sample width of {sample_width} bytes")
    if channels > 1:
        wide = wide[: len(wide) - len(wide) % channels].reshape(-1, channels).mean(axis=1)
    mono: Int16Array = np.clip(wide, -32768, 32767).astype(np.int16)
    return mono


MIN_WAV_RATE = 8000
MAX_WAV_RATE = 192000


def read_wav(path: str | Path) -> tuple[Int16Array, int]:
    """A PCM WAV file as mono int16 samples and its sample rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            if not MIN_WAV_RATE <= rate <= MAX_WAV_RATE:
                raise ValueError(
                    f"{path}: its header says {rate} Hz; use {MIN_WAV_RATE} to {MAX_WAV_RATE}"
                )
            frames = wav.readframes(wav.getnframes())
            samples = to_mono_int16(frames, wav.getsampwidth(), wav.getnchannels())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{path}: not a PCM WAV file ({exc or 'it is empty'})") from None
    if not len(samples):
        raise ValueError(f"{path}: the WAV holds no audio")
    return samples, rate


def write_wav(path: str | Path, samples: Int16Array, sample_rate: int) -> None:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(samples.astype("<i2").tobytes())
