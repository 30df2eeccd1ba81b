"""The real PyAudio/PortAudio path, through ALSA devices made of named pipes (tests/alsa.py).

Each device process is a child (``agentpi run``): ALSA reads its configuration once, when
PortAudio starts, so the virtual card has to be in the environment from the first moment.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentpi.agent.simulator import AgentSimulator
from agentpi.audio.convert import read_wav
from tests.alsa import VirtualSoundCard
from tests.helpers import AGENTPI, HELLO_WAV, enabled_agent

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="ALSA is Linux only"),
    pytest.mark.realtime,  # paced audio and timeouts: not under emulation
]

Event = dict[str, Any]


def device_config(folder: Path, url: str, **audio: str) -> Path:
    path = folder / "agentpi.toml"
    lines = [
        f'[agent]\nagent_id = "test-agent"\nurl = "{url}"',
        '[trigger]\nmode = "immediate"\nrestart_pause_s = 0.2',
        "[conversation]\nsilence_close_s = 1.0",
        '[audio]\ninput = "agentpi_in"\noutput = "agentpi_out"\necho = "off"\ncues = false',
        *(f'{key} = "{value}"' for key, value in audio.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def run_device(
    card: VirtualSoundCard,
    config: Path,
    on_event: Callable[[Event], bool],
    once: bool = True,
    timeout: float = 60,
) -> list[Event]:
    """``agentpi run`` on the virtual card until it exits, or ``on_event`` returns True."""
    args = [*AGENTPI, "run", "--config", str(config), "--events", "-", *(["--once"] * once)]
    process = await asyncio.create_subprocess_exec(
        *args, env=card.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert process.stdout is not None
    events: list[Event] = []
    try:
        async with asyncio.timeout(timeout):
            while line := await process.stdout.readline():
                event = json.loads(line)
                events.append(event)
                if on_event(event):
                    process.send_signal(signal.SIGTERM)
            code = await process.wait()
            assert process.stderr is not None
            assert code == 0, (await process.stderr.read()).decode(errors="replace")[-3000:]
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return events


def test_devices_lists_what_portaudio_really_opens(tmp_path: Path) -> None:
    with VirtualSoundCard(tmp_path) as card:
        listing = subprocess.run(
            [*AGENTPI, "devices"], env=card.env, capture_output=True, text=True, timeout=60
        )
    assert listing.returncode == 0, listing.stderr
    inputs, outputs = listing.stdout.split("outputs:")
    assert "agentpi_in" in inputs and "16000" in inputs and "48000" in inputs
    assert "agentpi_out" in outputs
    assert "ALSA lib" not in listing.stdout + listing.stderr  # PortAudio's probing noise is muted


def test_no_sound_card_is_said_plainly() -> None:
    # this machine has no sound card: with ALSA's stock configuration PortAudio finds nothing
    env = {key: value for key, value in os.environ.items() if key != "ALSA_CONFIG_PATH"}
    listing = subprocess.run([*AGENTPI, "devices"], env=env, capture_output=True, text=True)
    assert listing.returncode == 1
    assert "no sound devices found" in listing.stdout


def test_a_whole_conversation_through_portaudio(tmp_path: Path) -> None:
    spoken, _ = read_wav(HELLO_WAV)

    async def scenario() -> tuple[list[Event], AgentSimulator]:
        with VirtualSoundCard(tmp_path) as card:
            async with AgentSimulator(agent=enabled_agent()) as sim:

                def on_event(event: Event) -> bool:
                    if event["event"] == "connected":
                        card.say(spoken)
                    return False

                events = await run_device(card, device_config(tmp_path, sim.url), on_event)
                await sim.wait_for_conversations(1, timeout=10)
                tmp_path.joinpath("speaker.npy").write_bytes(card.speaker_audio.tobytes())
                return events, sim

    events, sim = asyncio.run(scenario())
    kinds = [event["event"] for event in events]
    assert "conversation_ended" in kinds and "audio_error" not in kinds
    record = sim.conversations[0]
    # the microphone's samples reach the agent exactly, in order, after the silence before them
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2")
    start = int(np.flatnonzero(received)[0]) - int(np.flatnonzero(spoken)[0])
    assert np.array_equal(received[start : start + len(spoken)], spoken)
    # and every sample the agent sent came out of the speaker
    played = np.frombuffer(tmp_path.joinpath("speaker.npy").read_bytes(), dtype=np.int16)
    sent = sum(turn.audio_samples for turn in record.turns)
    assert sent > 16000 and np.count_nonzero(played) == sent


def test_a_microphone_that_stops_delivering_is_reopened(tmp_path: Path) -> None:
    async def scenario() -> list[Event]:
        with VirtualSoundCard(tmp_path) as card:
            async with AgentSimulator(agent=enabled_agent()) as sim:
                started = 0

                def on_event(event: Event) -> bool:
                    nonlocal started
                    if event["event"] == "conversation_started":
                        started += 1
                        if started == 1:
                            card.mic_paused.set()  # the USB cable comes out mid-conversation
                    if event["event"] == "audio_error":
                        card.mic_paused.clear()  # and goes back in
                    return started == 2

                config = device_config(tmp_path, sim.url)
                return await run_device(card, config, on_event, once=False)

    events = asyncio.run(scenario())
    kinds = [event["event"] for event in events]
    error = events[kinds.index("audio_error")]
    assert "stopped delivering" in error["message"]
    assert kinds.index("audio_error") < kinds.index("audio_restored")
    states = [event["state"] for event in events if event["event"] == "state"]
    assert "error" in states and states[states.index("error") + 1] == "idle"
    assert kinds.count("conversation_started") == 2  # it works again without a person


def test_a_speaker_that_stops_playing_ends_the_conversation_and_is_reopened(
    tmp_path: Path,
) -> None:
    async def scenario() -> tuple[list[Event], int]:
        with VirtualSoundCard(tmp_path) as card:
            async with AgentSimulator(agent=enabled_agent()) as sim:
                started = 0
                played_before = 0

                def on_event(event: Event) -> bool:
                    nonlocal started, played_before
                    if event["event"] == "agent_response" and started == 1:
                        card.speaker_paused.set()  # the USB speaker goes away mid-reply
                    if event["event"] == "audio_error":
                        card.speaker_paused.clear()
                    if event["event"] == "conversation_started":
                        started += 1
                        played_before = len(card.played)
                    # stop once the second conversation's greeting has come out of the speaker
                    return started == 2 and event["event"] == "agent_response_complete"

                config = device_config(tmp_path, sim.url)
                events = await run_device(card, config, on_event, once=False)
                audible = sum(bool(block.any()) for _, block in card.played[played_before:])
                return events, audible

    events, audible_after = asyncio.run(scenario())
    kinds = [event["event"] for event in events]
    error = events[kinds.index("audio_error")]
    assert "audio output 'agentpi_out' stopped delivering" in error["message"]
    first_end = events[kinds.index("conversation_ended")]
    assert first_end["reason"] == "device failure"
    assert kinds.count("conversation_started") == 2
    assert audible_after > 0  # the second greeting was heard: the speaker works again


def run_on_card(folder: Path, script: str) -> tuple[VirtualSoundCard, str]:
    """``script`` in a child process on a virtual card of its own: the card (what it played)
    and what the script printed."""
    with VirtualSoundCard(folder) as card:
        result = subprocess.run(
            [sys.executable, "-c", script], env=card.env, capture_output=True, text=True, timeout=30
        )
    assert result.returncode == 0, result.stderr[-2000:]
    return card, result.stdout


SINK_FLUSH = """
import asyncio, sys, time
import numpy as np
from agentpi.audio.soundcard import SoundCardSink

def tone(seconds):
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)

async def main():
    sink = SoundCardSink("agentpi_out")
    await sink.start(16000, lambda: None)
    sink.write(tone(3.0))
    await asyncio.sleep(0.6)
    flushed_at = time.monotonic()
    dropped = sink.flush()
    await asyncio.sleep(0.5)
    again_at = time.monotonic()
    sink.write(tone(0.5))
    await asyncio.sleep(1.0)
    print(flushed_at, again_at, dropped, sink.failure is None, flush=True)
    await sink.stop()

asyncio.run(main())
"""


def test_a_flush_silences_the_card_and_the_speaker_plays_on(tmp_path: Path) -> None:
    """The flush aborts the stream (dropping what the card holds) and starts it again."""
    card, stdout = run_on_card(tmp_path, SINK_FLUSH)
    flushed_at, again_at, dropped, healthy = stdout.split()
    assert int(dropped) > 16000 and healthy == "True"

    def audible_samples(since: float, until: float) -> int:
        return sum(len(b) for t, b in card.played if since < t < until and np.count_nonzero(b))

    # the first 3 s tone, flushed 0.6 s in, is silent well before the second is written (what
    # the card's pipe and buffers held plays out: up to about 150 ms here); the second plays
    assert audible_samples(float(flushed_at) + 0.3, float(again_at)) == 0
    assert audible_samples(float(again_at), float("inf")) > 0.4 * 16000


THREAD_STATES = """
import asyncio, ctypes, json, threading
import numpy as np
from agentpi.audio.playback_log import PlaybackLog
from agentpi.audio.soundcard import SoundCardSink, SoundCardSource

api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
api.PyInterpreterState_ThreadHead.argtypes = [ctypes.c_void_p]
api.PyInterpreterState_ThreadHead.restype = ctypes.c_void_p
api.PyThreadState_Next.argtypes = [ctypes.c_void_p]
api.PyThreadState_Next.restype = ctypes.c_void_p

def thread_states():
    count, state = 0, api.PyInterpreterState_ThreadHead(api.PyInterpreterState_Get())
    while state:
        count, state = count + 1, api.PyThreadState_Next(state)
    return count

class Found:
    '''Per callback: did it find what the callbacks before it left on their thread's state?'''
    def __init__(self):
        self.local, self.found = threading.local(), []
    def __call__(self, *_):
        self.found.append(getattr(self.local, "mark", False))
        self.local.mark = True

class Log(PlaybackLog):
    def __init__(self, found):
        super().__init__(16000)
        self.found = found
    def played(self, block, rate, started_at):
        self.found()

def tone(seconds):
    return (np.sin(np.arange(int(16000 * seconds)) / 4) * 8000).astype(np.int16)

async def main():
    await asyncio.get_running_loop().run_in_executor(None, lambda: None)
    before = thread_states()
    speaker, microphone = Found(), Found()
    sink = SoundCardSink("agentpi_out")
    sink.playback_log = Log(speaker)
    source = SoundCardSource("agentpi_in")
    source.start(microphone, lambda exc: None)
    await sink.start(16000, lambda: None)
    sink.write(tone(1.0))
    await asyncio.sleep(0.4)
    sink.flush()  # the stream ends and starts again: a new callback thread
    await asyncio.sleep(0.1)
    sink.write(tone(0.4))
    await asyncio.sleep(0.6)
    await sink.stop()
    source.stop()
    print(json.dumps({"speaker": speaker.found, "microphone": microphone.found,
                      "before": before, "after": thread_states()}))

asyncio.run(main())
"""


def test_portaudio_threads_keep_their_python_state_and_give_it_back(tmp_path: Path) -> None:
    """A callback finds the Python thread state the one before it left (PyAudio would make and
    free one per callback), and none is left behind once the streams are closed."""
    _, stdout = run_on_card(tmp_path, THREAD_STATES)
    seen = json.loads(stdout)
    for stream in ("speaker", "microphone"):
        found = seen[stream]
        assert len(found) >= 20, f"{stream}: {len(found)} callbacks"
        # the first callback on each thread finds nothing: one thread, or two for the speaker,
        # whose flush restarted its stream
        assert found.count(False) == (2 if stream == "speaker" else 1), f"{stream}: {found}"
    assert seen["after"] == seen["before"]


SINK_REST = """
import asyncio, time
import numpy as np
from agentpi.audio.soundcard import REST_AFTER_S, SoundCardSink

def tone(seconds):
    return (np.sin(np.arange(int(16000 * seconds)) / 4) * 8000).astype(np.int16)

async def main():
    sink = SoundCardSink("agentpi_out")
    await sink.start(16000, lambda: None)
    sink.write(tone(0.3))
    await asyncio.sleep(0.3 + REST_AFTER_S + 0.3)
    rested = sink.resting
    again_at = time.monotonic()
    sink.write(tone(0.5))
    await asyncio.sleep(1.0)
    print(rested, again_at, sink.resting, sink.failure is None, flush=True)
    await sink.stop()

asyncio.run(main())
"""


def test_a_speaker_with_nothing_to_play_rests_and_the_next_audio_wakes_it(
    tmp_path: Path,
) -> None:
    card, stdout = run_on_card(tmp_path, SINK_REST)
    rested, again_at, resting_after, healthy = stdout.split()
    assert rested == "True" and resting_after == "False" and healthy == "True"
    audible = [(t, b) for t, b in card.played if t > float(again_at) and np.count_nonzero(b)]
    assert sum(len(b) for _, b in audible) > 0.45 * 16000  # all of it plays
    # as soon as a stream that never rested would (the jitter buffer's 60 ms, the card's pipe)
    assert audible[0][0] - float(again_at) < 0.15  # measured: 22-26 ms
