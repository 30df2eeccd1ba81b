"""Property-based fuzzing of the client through the simulator: 40 conversations of 250 frames,
10,000 random, truncated, mistyped or incomplete frames in all. None may crash the device, hang
it, or pass unreported: each undecodable frame is one readable ``protocol_error`` line."""

from __future__ import annotations

import copy
import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentpi.agent.script import CloseScript, SimulatorScript, TurnScript
from agentpi.protocol.messages import ProtocolError, decode_server
from tests.helpers import run_conversation, silence_wav

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

FRAMES_PER_CONVERSATION = 250
CONVERSATIONS = 40

TEMPLATES: list[dict[str, Any]] = [
    {"type": "ping", "ping_event": {"event_id": 7, "ping_ms": 5}},
    {"type": "audio", "audio_event": {"audio_base_64": "AAAAAA==", "event_id": 2}},
    {"type": "agent_response", "agent_response_event": {"agent_response": "hello"}},
    {"type": "user_transcript", "user_transcription_event": {"user_transcript": "hi"}},
    {"type": "interruption", "interruption_event": {"event_id": 3}},
    {"type": "vad_score", "vad_score_event": {"vad_score": 0.5}},
    {
        "type": "agent_response_correction",
        "agent_response_correction_event": {
            "original_agent_response": "a",
            "corrected_agent_response": "b",
        },
    },
    {
        "type": "internal_tentative_agent_response",
        "tentative_agent_response_internal_event": {"tentative_agent_response": "hm"},
    },
    {
        "type": "client_tool_call",
        "client_tool_call": {"tool_name": "nope", "tool_call_id": "t1", "parameters": {}},
    },
    {"type": "agent_response_complete", "agent_response_complete_event": {"event_id": 2}},
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=4,
)


@st.composite
def frames(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["random", "truncated", "mistyped", "incomplete"]))
    if kind == "random":
        return draw(st.text(max_size=40))
    message = copy.deepcopy(draw(st.sampled_from(TEMPLATES)))
    if kind == "truncated":
        text = json.dumps(message)
        return text[: draw(st.integers(0, len(text) - 1))]
    wrapper = next(key for key in message if key != "type")
    body = message[wrapper]
    field = draw(st.sampled_from(sorted(body) or [wrapper]))
    if kind == "incomplete":
        body.pop(field, None)
    elif draw(st.booleans()):
        body[field] = draw(json_values)
    else:
        message[draw(st.sampled_from(sorted(message)))] = draw(json_values)
    return json.dumps(message)


def undecodable(frame: str) -> bool:
    try:
        decode_server(frame)
    except ProtocolError:
        return True
    return False


@settings(
    max_examples=CONVERSATIONS,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.lists(frames(), min_size=FRAMES_PER_CONVERSATION, max_size=FRAMES_PER_CONVERSATION))
def test_random_broken_frames_never_crash_or_hang_the_device(batch: list[str]) -> None:
    script = SimulatorScript(
        first_turn=TurnScript(
            malformed=tuple(batch), close=CloseScript(1000, "fuzzed"), delay_s=0.0
        )
    )
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        # the device's own timers are set past the test, so the server's close is what ends
        # it: a busy machine must not let a silence timer win a race the test does not mean
        run = run_conversation(
            folder,
            script,
            input_wav=silence_wav(folder / "q.wav", 0.5),
            timeout=30,
            silence_close_s=60.0,
            conversation={"idle_close_s": 120.0, "max_after_complete_s": 120.0},
        )
    ended = run.of_kind("conversation_ended")
    assert len(ended) == 1
    assert (ended[0]["code"], ended[0]["closed_by"]) == (1000, "server"), ended[0]
    assert not ended[0]["error"] or "internal error" not in ended[0]["error"]
    reported = [event["message"] for event in run.of_kind("protocol_error")]
    assert len(reported) == sum(map(undecodable, batch))
    for message in reported:
        assert "\n" not in message and "Traceback" not in message and len(message) < 400
    assert run.states()[-1] == "idle"
