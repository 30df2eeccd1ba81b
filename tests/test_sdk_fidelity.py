"""The simulator is faithful: the official ``elevenlabs`` SDK, a client nobody here wrote, holds a
whole turn with it (public agent and signed URL)."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agentpi.agent.script import SimulatorScript, SimulatorSettings, ToolCallScript, TurnScript
from agentpi.agent.sim_records import ConversationRecord
from agentpi.agent.simulator import AgentSimulator
from agentpi.audio.convert import read_wav
from agentpi.protocol.messages import ContextualUpdate
from tests.helpers import HELLO_WAV, enabled_agent

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

elevenlabs_client = pytest.importorskip("elevenlabs.client")
conversation_module = pytest.importorskip("elevenlabs.conversational_ai.conversation")

TRANSCRIPT = "Hello! What can you tell me about the Raspberry Pi?"
REPLY = "It is a small computer."


class SimulatorThread:
    """The simulator on its own event loop, for a synchronous client in the test thread."""

    def __init__(self, script: SimulatorScript, api_key: str | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.simulator = AgentSimulator(script, api_key=api_key, agent=enabled_agent(script))

    def __enter__(self) -> AgentSimulator:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self.loop).result(10)
        return self.simulator

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def wait_closed(self, record: ConversationRecord, timeout: float) -> None:
        asyncio.run_coroutine_threadsafe(
            asyncio.wait_for(record.done.wait(), timeout), self.loop
        ).result(timeout + 1)


class WavAudioInterface(conversation_module.AudioInterface):  # type: ignore[name-defined]
    """The SDK's audio contract, fed from a WAV at real-time pace, recording what it plays."""

    CHUNK = 4000  # what the SDK's own PyAudio interface uses: 250 ms at 16 kHz

    def __init__(self, samples: npt.NDArray[Any]) -> None:
        self.samples = samples
        self.played = bytearray()
        self.interrupts = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, input_callback: Callable[[bytes], None]) -> None:
        def feed() -> None:
            start = time.monotonic()
            index = 0
            while not self._stop.is_set():
                chunk = self.samples[index * self.CHUNK : (index + 1) * self.CHUNK]
                chunk = np.pad(chunk, (0, self.CHUNK - len(chunk)))
                index += 1
                delay = start + index * self.CHUNK / 16000 - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    return
                input_callback(chunk.astype("<i2").tobytes())

        self._thread = threading.Thread(target=feed, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def output(self, audio: bytes) -> None:
        self.played += audio

    def interrupt(self) -> None:
        self.interrupts += 1


@pytest.mark.parametrize("requires_auth", [False, True], ids=["public", "signed-url"])
def test_official_sdk_completes_a_turn_against_the_simulator(requires_auth: bool) -> None:
    script = SimulatorScript(
        simulator=SimulatorSettings(require_signed_url=requires_auth, ping_interval_s=0.5),
        first_turn=TurnScript(response="Hi! How can I help?"),
        turns=(TurnScript(transcript=TRANSCRIPT, response=REPLY),),
    )
    spoken, rate = read_wav(HELLO_WAV)
    assert rate == 16000
    audio = WavAudioInterface(spoken)
    responses: list[str] = []
    transcripts: list[str] = []
    replied = threading.Event()

    def on_response(text: str) -> None:
        responses.append(text)
        if text == REPLY:
            replied.set()

    runner = SimulatorThread(script, api_key="sk_sdk_test")
    with runner as sim:
        client = elevenlabs_client.ElevenLabs(base_url=sim.http_url, api_key="sk_sdk_test")
        conversation = conversation_module.Conversation(
            client,
            "sdk-agent",
            requires_auth=requires_auth,
            audio_interface=audio,
            callback_agent_response=on_response,
            callback_user_transcript=transcripts.append,
        )
        conversation.start_session()
        try:
            assert replied.wait(30), f"no reply; responses so far: {responses}"
            time.sleep(0.6)  # let the reply's audio frames arrive too (they follow the text)
        finally:
            conversation.end_session()
            conversation.wait_for_session_end()
        record = sim.conversations[0]
        runner.wait_closed(record, 10)

    assert responses == ["Hi! How can I help?", REPLY]
    assert transcripts == [TRANSCRIPT]
    assert sim.signed_url_requests == (1 if requires_auth else 0)
    assert "source=python_sdk" in record.path
    init = record.init
    assert init is not None and init.source_info is not None
    assert init.source_info["source"] == "python_sdk"
    assert not [note for _, note in record.notes if "invalid" in note or "not init" in note]
    # Every sample the SDK captured arrived in order.
    received = np.frombuffer(bytes(record.user_audio), dtype="<i2")
    assert np.array_equal(received[: len(spoken)], spoken)
    # What the SDK played is exactly what the simulator sent, for the turns it finished.
    sent_audio = b"".join(
        base64.b64decode(frame["audio_event"]["audio_base_64"])
        for frame in (json.loads(raw) for _, raw in record.sent)
        if frame.get("type") == "audio"
    )
    assert len(audio.played) > 16000 * 2  # more than a second of agent speech
    assert bytes(audio.played) == sent_audio[: len(audio.played)]
    assert record.pongs_received >= 1 and record.missing_pongs == 0
    assert record.closed_by == "client"


def test_official_sdk_and_the_simulator_agree_on_setup_tools_and_context() -> None:
    """What the device sends at start and for tools means the same to the simulator when the
    official client sends it: a first_message override with a dynamic variable, a client tool
    answered by the SDK's own ClientTools, and a contextual update."""
    script = SimulatorScript(
        simulator=SimulatorSettings(ping_interval_s=0.5),
        turns=(
            TurnScript(
                transcript=TRANSCRIPT,
                tool_call=ToolCallScript("get_time", {"zone": "local"}),
                response="It is {result}.",
            ),
        ),
    )
    spoken, _ = read_wav(HELLO_WAV)
    audio = WavAudioInterface(spoken)
    responses: list[str] = []
    replied = threading.Event()

    def on_response(text: str) -> None:
        responses.append(text)
        if text.startswith("It is"):
            replied.set()

    tools = conversation_module.ClientTools()
    tools.register("get_time", lambda parameters: f"noon ({parameters['zone']})")
    setup = conversation_module.ConversationInitiationData(
        dynamic_variables={"visitor": "Ada"},
        conversation_config_override={"agent": {"first_message": "Hi {{visitor}}!"}},
    )
    runner = SimulatorThread(script)
    with runner as sim:
        client = elevenlabs_client.ElevenLabs(base_url=sim.http_url, api_key="unused")
        conversation = conversation_module.Conversation(
            client,
            "sdk-agent",
            "kiosk-7",
            requires_auth=False,
            audio_interface=audio,
            config=setup,
            client_tools=tools,
            callback_agent_response=on_response,
        )
        conversation.start_session()
        try:
            assert replied.wait(30), f"no reply; responses so far: {responses}"
            conversation.send_contextual_update("The kiosk is in the lobby.")
            deadline = time.monotonic() + 10
            while not sim.conversations[0].of_type(ContextualUpdate):
                assert time.monotonic() < deadline, "the contextual update never arrived"
                time.sleep(0.02)
        finally:
            conversation.end_session()
            conversation.wait_for_session_end()
        record = sim.conversations[0]
        runner.wait_closed(record, 10)

    assert responses == ["Hi Ada!", "It is noon (local)."]
    assert record.init is not None and record.init.user_id == "kiosk-7"
    [result] = record.tool_results.values()
    assert (result.result, result.is_error) == ("noon (local)", False)
    assert [u.text for u in record.of_type(ContextualUpdate)] == ["The kiosk is in the lobby."]
