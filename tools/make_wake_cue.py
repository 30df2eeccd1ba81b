"""Writes device/agentpi/data/cues/wake.wav: the wake cue, a rising two-tone chime.

Short on purpose (130 ms): a user who does not wait for it talks over it, and whatever of it the
microphone hears lands in the question (see the README's wake word section).

    python tools/make_wake_cue.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import write_wav

RATE = 16000
TONES = ((900.0, 0.055), (1300.0, 0.065))
GAP_S = 0.01
PEAK = 0.3
RAMP_S = 0.005
OUT = Path(__file__).resolve().parents[1] / "device" / "agentpi" / "data" / "cues" / "wake.wav"


def tone(frequency: float, seconds: float) -> npt.NDArray[np.float64]:
    t = np.arange(round(seconds * RATE)) / RATE
    envelope = np.linspace(1.0, 0.7, len(t))
    ramp = round(RAMP_S * RATE)
    edge = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, ramp))
    envelope[:ramp] *= edge
    envelope[-ramp:] *= edge[::-1]
    wave: npt.NDArray[np.float64] = np.sin(2 * np.pi * frequency * t) * envelope
    return wave


def main() -> None:
    gap = np.zeros(round(GAP_S * RATE))
    first, second = (tone(f, s) for f, s in TONES)
    chime = np.concatenate((first, gap, second)) * PEAK * 32767
    write_wav(OUT, np.round(chime).astype(np.int16), RATE)
    print(f"{OUT}: {len(chime) / RATE * 1000:.0f} ms")


if __name__ == "__main__":
    main()
