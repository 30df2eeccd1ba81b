"""agentpi's protocol layer against the least any client must do.

The peer is the bare minimum work of a client (``json.loads`` + ``base64.b64decode`` for a
received audio frame, ``base64.b64encode`` + ``json.dumps`` for a sent mic chunk), timed in the
same process, alternating, so a noisy shared machine moves both the same way. The ratio is the
cost of typed, validated messages on the audio path, per frame.
"""

from __future__ import annotations

import base64
import json
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np

from agentpi.protocol.messages import (
    Audio,
    ConversationInitiationMetadata,
    UserAudioChunk,
    decode_server,
    encode,
)
from agentpi.protocol.session import ConversationSession

ROUNDS = 15
CALLS = 2000


def _median_us(fn: Callable[[], object], rounds: list[float]) -> None:
    start = time.perf_counter()
    for _ in range(CALLS):
        fn()
    rounds.append((time.perf_counter() - start) / CALLS * 1e6)


def compare(
    name: str, ours: Callable[[], object], peer: Callable[[], object]
) -> tuple[str, float, float]:
    our_rounds: list[float] = []
    peer_rounds: list[float] = []
    for _ in range(ROUNDS):
        _median_us(ours, our_rounds)
        _median_us(peer, peer_rounds)
    return name, statistics.median(our_rounds), statistics.median(peer_rounds)


def main() -> int:
    rng = np.random.default_rng(1)
    pcm_100ms = rng.integers(-3000, 3000, 1600, dtype=np.int16).tobytes()  # 100 ms @ 16 kHz
    pcm_40ms = pcm_100ms[:1280]
    audio_frame = encode(Audio(pcm_100ms, 7))
    session = ConversationSession()
    session.connection_opened(0.0)
    session.receive(ConversationInitiationMetadata("c", "pcm_16000", "pcm_16000"), 0.0)
    now = [0.0]

    def ours_receive() -> object:
        now[0] += 0.001
        return session.receive(decode_server(audio_frame), now[0])

    def peer_receive() -> object:
        data = json.loads(audio_frame)
        return base64.b64decode(data["audio_event"]["audio_base_64"])

    def ours_send() -> object:
        now[0] += 0.001
        return [
            encode(a.message)
            for a in session.mic_audio(pcm_40ms, False, now[0])
            if hasattr(a, "message")
        ]

    def peer_send() -> object:
        return json.dumps({"user_audio_chunk": base64.b64encode(pcm_40ms).decode()})

    rows = [
        compare("receive 100 ms agent audio frame (decode + session)", ours_receive, peer_receive),
        compare("send 40 ms mic chunk (session + encode)", ours_send, peer_send),
        compare("decode only, audio frame", lambda: decode_server(audio_frame), peer_receive),
        compare("encode only, mic chunk", lambda: encode(UserAudioChunk(pcm_40ms)), peer_send),
    ]
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}; medians of {ROUNDS} rounds x {CALLS} calls, alternating"
    )
    print(f"{'figure':55} {'agentpi us':>11} {'bare peer us':>13} {'ratio':>7}")
    for name, ours, peer in rows:
        print(f"{name:55} {ours:11.2f} {peer:13.2f} {ours / peer:7.2f}")
    return 0
