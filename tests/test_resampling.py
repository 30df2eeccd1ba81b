"""The streaming resampler: every chunk carries its own share of time, and the sound is clean."""

from __future__ import annotations

import numpy as np
import pytest

from agentpi.audio.convert import Int16Array, WireEncoder
from agentpi.audio.formats import AudioFormat
from agentpi.audio.polyphase import PolyphaseResampler

RATE_PAIRS = [
    (16000, 8000),
    (48000, 16000),
    (44100, 16000),
    (48000, 8000),
    (16000, 48000),
    (16000, 44100),
    (24000, 16000),
    (16000, 24000),
]


def tone(frequency: float, rate: int, seconds: float, amplitude: float = 10000) -> Int16Array:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def in_chunks(resampler: PolyphaseResampler, audio: Int16Array, chunk: int) -> list[Int16Array]:
    return [resampler.process(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]


@pytest.mark.parametrize(("source", "target"), RATE_PAIRS)
def test_every_40ms_chunk_in_gives_40ms_out(source: int, target: int) -> None:
    resampler = PolyphaseResampler(source, target)
    chunks = in_chunks(resampler, tone(440, source, 2.0), source * 40 // 1000)
    assert {len(c) for c in chunks[1:]} == {target * 40 // 1000}
    # the first is short only by the filter's delay (about a millisecond)
    assert target * 40 // 1000 - len(chunks[0]) <= target // 500


@pytest.mark.parametrize(("source", "target"), RATE_PAIRS)
def test_nothing_is_lost_at_the_end_and_a_tone_stays_clean(source: int, target: int) -> None:
    resampler = PolyphaseResampler(source, target)
    audio = tone(440, source, 1.0)
    chunks = in_chunks(resampler, audio, 333)  # an odd size on purpose
    out = np.concatenate([*chunks, resampler.process(np.zeros(0, np.int16), last=True)])
    assert len(out) == target  # one second in, one second out
    expected = tone(440, target, 1.0).astype(float)
    error = out.astype(float) - expected
    inner = slice(target // 100, -target // 100)
    snr_db = 10 * np.log10((expected[inner] ** 2).mean() / (error[inner] ** 2).mean())
    assert snr_db > 60


@pytest.mark.parametrize(("source", "target"), [(16000, 8000), (48000, 16000), (44100, 16000)])
def test_what_the_lower_rate_cannot_carry_does_not_fold_back(source: int, target: int) -> None:
    above = tone(target / 2 * 1.3, source, 1.0)  # 30 % past the new Nyquist frequency
    out = PolyphaseResampler(source, target).process(above, last=True)
    attenuation_db = 20 * np.log10(out[100:-100].astype(float).std() / above.std())
    assert attenuation_db < -60


def test_ulaw_8000_goes_out_in_even_40ms_chunks_from_a_16k_microphone() -> None:
    """soxr sent 0 and 470 samples in turn here: every other chunk a whole chunk late."""
    encoder = WireEncoder(16000, AudioFormat.parse("ulaw_8000"))
    sizes = [len(encoder.encode(c)) for c in np.split(tone(300, 16000, 1.0), 25)]
    assert set(sizes[1:]) == {320}  # one byte per mu-law sample
