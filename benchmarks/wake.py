"""The idle device against openWakeWord's own bare loop, at real-time pacing, from outside.

A device listens in real time all day, so this is measured the way it runs: an idle
``agentpi run`` (wake mode, a file microphone that paces itself like a sound card) on 30 s of room
noise at -50 dBFS, its CPU read from /proc between 8 s after it is ready and 23 s, against a child
running the least any openWakeWord user writes (``Model.predict`` on every 1280-sample frame, each
frame waited for as a sound card would deliver it) over the same audio, measured the same way.
The variants alternate per round: agentpi with no LEDs, with the generic profile's LED board
(gpiozero's mock PWM pins: the render thread is real), with the microWakeWord engine, and the
bare loop, in the quiet room; then agentpi (either engine) and the bare loop in a loud room
(people talking all the time, at about -25 dBFS), where the quiet-room gate never shuts. Also
from the same processes: peak RSS, and start-up (process start to ready, against the bare
loop's start to its model loaded). A sped-up run would spread per-second costs (timers, render
threads) over more audio and hide them, so there is none.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tests.speech import RATE, save

from agentpi.audio.convert import Int16Array
from benchmarks import proc

ROUNDS = int(os.environ.get("BENCH_WAKE_ROUNDS", "3"))
AUDIO_S = 30.0
WINDOW_S = (8.0, 23.0)
"""CPU is counted between these times after ready: the model's buffers are full, nothing starts."""
NOISE_DBFS = -50.0
LOUD_DBFS = -25.0
VARIANTS = ("agentpi", "agentpi, generic LEDs", "agentpi, microWakeWord", "bare oww")
LOUD_VARIANTS = ("agentpi, loud room", "agentpi, microWakeWord, loud room", "bare oww, loud room")

PEER = """
import sys, time, wave
import numpy as np
from openwakeword.model import Model
from agentpi.wake.models import resolve
files = resolve(("hey_jarvis",))
model = Model(wakeword_models=[str(files.wake["hey_jarvis"])],
              melspec_model_path=str(files.melspectrogram),
              embedding_model_path=str(files.embedding), inference_framework="tflite")
with wave.open(sys.argv[1]) as w:
    audio = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
print("ready", flush=True)
started = time.monotonic()
for i in range(0, len(audio) - 1279, 1280):
    time.sleep(max(0.0, started + (i + 1280) / 16000 - time.monotonic()))
    model.predict(audio[i:i + 1280])
"""

WITH_MOCK_PWM_PINS = """
import sys
from gpiozero import Device
from gpiozero.pins.mock import MockFactory, MockPWMPin
Device.pin_factory = MockFactory(pin_class=MockPWMPin)  # a Pi's LEDs, without a Pi
from agentpi.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

IMPORTS = {
    "numpy": "numpy",
    "websockets (asyncio client)": "websockets.asyncio.client",
    "TFLite C library": "agentpi.wake.tflite_c, ctypes; agentpi.wake.tflite_c._library()",
    "the wake engine, loaded": "agentpi.wake.listener as l, agentpi.config.document as c; "
    "l.open_listener(c.WakeConfig(), 16000)",
    "echo canceller (pywebrtc-audio)": "pywebrtc_audio",
    "PyAudio": "pyaudio",
    "gpiozero": "gpiozero",
    "openwakeword.model (not loaded by agentpi)": "openwakeword.model",
}


@dataclass
class Sample:
    cpu_ms_per_s: float
    rss_mb: float
    start_s: float


@dataclass
class WakeFigures:
    audio_s: float
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    imports_mb: dict[str, float] = field(default_factory=dict)

    def median(self, variant: str, pick: str) -> float:
        return statistics.median(getattr(s, pick) for s in self.samples[variant])


def watch(command: list[str], ready: Path | None, env: dict[str, str]) -> Sample:
    """Start ``command``; ready is a line in ``ready`` (the events file) or on its stdout."""
    started = time.monotonic()
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    try:
        if ready is None:
            assert process.stdout is not None
            line = process.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"{command[:3]} did not start")
        else:
            while not (ready.exists() and '"event": "ready"' in ready.read_text()):
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:3]} exited with {process.returncode}")
                time.sleep(0.01)
        ready_at = time.monotonic()
        cpu = []
        for offset in WINDOW_S:
            time.sleep(max(0.0, ready_at + offset - time.monotonic()))
            used = proc.cpu_seconds(process.pid)
            if used is None:
                raise RuntimeError(f"{command[:3]} ended before {offset:g} s")
            cpu.append((used, time.monotonic()))
        rss = proc.peak_rss_mb(process.pid) or 0.0
    finally:
        process.terminate()
        process.wait(20)
    (cpu0, t0), (cpu1, t1) = cpu
    return Sample((cpu1 - cpu0) / (t1 - t0) * 1e3, rss, ready_at - started)


def config_for(folder: Path, room: Path, leds: bool, engine: str = "auto") -> Path:
    path = folder / f"idle-{leds}-{engine}-{room.stem}.toml"
    board = '[leds]\ntype = "board"\npins = [17, 27, 22]\n' if leds else '[leds]\ntype = "none"\n'
    path.write_text(
        f'[agent]\nagent_id = "bench"\nurl = "ws://127.0.0.1:9"\n[trigger]\nmode = "wake"\n'
        f'[wake]\nengine = "{engine}"\n'
        f'[audio]\ninput = "file:{room}"\noutput = "file:{folder / "o.wav"}"\n'
        f"[control]\nenabled = false\n{board}"
    )
    return path


def quiet_room(folder: Path) -> Path:
    """``AUDIO_S`` of room noise at ``NOISE_DBFS``, as a WAV in ``folder``."""
    scale = 32768 * 10 ** (NOISE_DBFS / 20)
    noise = np.random.RandomState(0).randn(int(RATE * AUDIO_S)) * scale
    return save(folder / "room.wav", noise.astype(np.int16))


def idle_command(config: Path, events: Path, leds: bool = False) -> list[str]:
    """``agentpi run`` on ``config``, its event lines into ``events`` (on mock PWM pins with
    ``leds``)."""
    launch = ["-c", WITH_MOCK_PWM_PINS] if leds else ["-m", "agentpi"]
    return [sys.executable, *launch, "run", "--config", str(config), "--events", str(events)]


def loud_room(seconds: float) -> Int16Array:
    """People talking all the time (no wake phrase), over room noise."""
    from tests.speech import NEGATIVES, VOICES, join, speak

    talk = join(*(speak(sentence, voice) for voice in VOICES for sentence in NEGATIVES))
    while len(talk) < seconds * RATE:
        talk = np.concatenate([talk, talk])
    talk = talk[: int(seconds * RATE)].astype(np.float64)
    level = np.sqrt(np.mean(talk**2)) / 32768
    talk *= 10 ** (LOUD_DBFS / 20) / level
    noise = np.random.RandomState(1).randn(len(talk)) * 32768 * 10 ** (NOISE_DBFS / 20)
    return np.clip(talk + noise, -32768, 32767).astype(np.int16)


def import_costs() -> dict[str, float]:
    """Peak RSS a fresh interpreter gains from each big import, over a bare one."""
    # VmHWM, not ru_maxrss: that one keeps the forking parent's peak across exec
    code = "{}; print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"

    def peak_kb(statement: str) -> float:
        result = subprocess.run(
            [sys.executable, "-c", code.format(statement)], capture_output=True, text=True
        )
        return float(result.stdout.split()[-1]) if result.returncode == 0 else float("nan")

    bare = peak_kb("pass")
    with_numpy = peak_kb("import numpy")
    costs = {}
    for name, statement in IMPORTS.items():
        base = bare if name == "numpy" else with_numpy
        costs[name] = (peak_kb(f"import numpy; import {statement}") - base) / 1024
    return costs


def measure() -> WakeFigures | None:
    """None where openwakeword does not install (Python 3.12 and later): no peer to compare."""
    if sys.version_info >= (3, 12):
        return None
    figures = WakeFigures(AUDIO_S)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        room = quiet_room(folder)
        loud = save(folder / "loud.wav", loud_room(AUDIO_S))
        env = dict(os.environ)
        for round_ in range(ROUNDS):
            for variant in (*VARIANTS, *LOUD_VARIANTS):
                audio = loud if variant in LOUD_VARIANTS else room
                if variant.startswith("bare oww"):
                    command = [sys.executable, "-c", PEER, str(audio)]
                    ready = None
                else:
                    ready = folder / f"events-{round_}-{len(variant)}.jsonl"
                    leds = variant == "agentpi, generic LEDs"
                    engine = "microwakeword" if "microWakeWord" in variant else "auto"
                    command = idle_command(config_for(folder, audio, leds, engine), ready, leds)
                sample = watch(command, ready, env)
                figures.samples.setdefault(variant, []).append(sample)
    figures.imports_mb = import_costs()
    return figures
