"""The agent's wire audio formats (``pcm_16000``, ``ulaw_8000``, ...), parsed once."""

from __future__ import annotations

from dataclasses import dataclass

WIRE_FORMATS = (
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_44100",
    "pcm_48000",
    "ulaw_8000",
)


@dataclass(frozen=True)
class AudioFormat:
    """Mono audio as it travels on the wire: 16-bit little-endian PCM or 8-bit mu-law."""

    encoding: str  # "pcm" or "ulaw"
    sample_rate: int

    @classmethod
    def parse(cls, name: str) -> AudioFormat:
        if name not in WIRE_FORMATS:
            raise ValueError(
                f"unsupported audio format {name!r}; expected one of {', '.join(WIRE_FORMATS)}"
            )
        encoding, rate = name.split("_")
        return cls(encoding, int(rate))

    @property
    def name(self) -> str:
        return f"{self.encoding}_{self.sample_rate}"

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self.encoding == "pcm" else 1

    def duration_s(self, nbytes: int) -> float:
        return nbytes / self.bytes_per_sample / self.sample_rate
