"""Where the sound says a phrase may end (``wake/phrase_end.Sound``), on synthetic sounds: a
fricative's end must be found where the level shows no edge."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import Int16Array
from agentpi.wake.phrase_end import WINDOW, Boundary, Sound

RATE = 16000
RNG = np.random.default_rng(7)
Signal = npt.NDArray[np.float64]


def room(seconds: float) -> Signal:
    return RNG.normal(0, 32768 * 10 ** (-50 / 20), round(seconds * RATE))


def hiss(seconds: float, dbfs: float) -> Signal:
    """Noise above 4 kHz, like an "s"."""
    white = RNG.normal(0, 1, round(seconds * RATE))
    spectrum = np.fft.rfft(white)
    spectrum[np.fft.rfftfreq(len(white), 1 / RATE) < 4000] = 0
    shaped = np.fft.irfft(spectrum, len(white))
    return shaped / np.sqrt(np.mean(shaped**2)) * 32768 * 10 ** (dbfs / 20)


def vowel(seconds: float, dbfs: float) -> Signal:
    """Harmonics of 140 Hz up to 1.4 kHz, like a vowel."""
    t = np.arange(round(seconds * RATE)) / RATE
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 11))
    return voiced / np.sqrt(np.mean(voiced**2)) * 32768 * 10 ** (dbfs / 20)


def mix(*parts: Signal) -> tuple[Int16Array, list[int]]:
    """The parts one after another over room noise, and where each part starts."""
    starts = list(np.cumsum([0] + [len(p) for p in parts[:-1]]))
    clean = np.concatenate(parts)
    audio = clean + room(len(clean) / RATE)
    return np.clip(np.round(audio), -32768, 32767).astype(np.int16), [int(s) for s in starts]


def test_a_vowel_straight_after_an_s_ends_the_phrase_at_the_s() -> None:
    # as loud as the "s" and with no dip between: the level alone has no edge there
    audio, (_, s_at, vowel_at, _) = mix(room(1.0), hiss(0.15, -30), vowel(0.3, -30), room(0.5))
    sound = Sound.of(audio)
    found = sound.boundaries(s_at + 320)
    assert found == [Boundary(found[0].at, True)]
    assert abs(found[0].at - vowel_at) <= WINDOW
    assert sound.fricative_end_before(s_at + 320) is None


def test_a_cut_already_in_the_next_word_looks_back_to_the_s() -> None:
    audio, (_, _, vowel_at, _) = mix(room(1.0), hiss(0.15, -30), vowel(0.3, -30), room(0.5))
    # the model was sure only 100 ms into the vowel
    before = Sound.of(audio).fricative_end_before(vowel_at + 1600)
    assert before is not None and abs(before - vowel_at) <= WINDOW


def test_a_louder_hiss_inside_the_s_is_the_next_sound_beginning() -> None:
    # "jarvis start": the second "s" is louder than the end of the first
    audio, (_, s_at, next_at, _, _) = mix(
        room(1.0), hiss(0.12, -34), hiss(0.1, -26), vowel(0.3, -24), room(0.5)
    )
    found = Sound.of(audio).boundaries(s_at + 320)
    assert found[-1].fricative_end
    assert abs(found[-1].at - next_at) <= WINDOW


def test_room_noise_is_no_fricative_and_a_pause_ends_the_phrase() -> None:
    audio, (_, v_at, pause_at, _) = mix(room(1.0), vowel(0.2, -25), room(0.3), vowel(0.2, -25))
    found = Sound.of(audio).boundaries(v_at + 320)
    assert found == [Boundary(found[0].at, False)]
    assert abs(found[0].at - pause_at) <= 2 * WINDOW
