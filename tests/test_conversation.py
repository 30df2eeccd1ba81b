"""Whole conversations: the real device against the real simulator over loopback WebSockets."""

from __future__ import annotations

import http.server
import json
import threading
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from agentpi.agent.script import (
    CloseScript,
    ErrorScript,
    SimulatorScript,
    SimulatorSettings,
    ToolCallScript,
    TurnScript,
)
from agentpi.audio.convert import Resampler, decode_wire, read_wav
from agentpi.audio.formats import AudioFormat
from agentpi.protocol import messages as m
from tests.helpers import HELLO_WAV, enabled_agent, run_conversation, silence_wav
from tests.schema import validate_frame

pytestmark = pytest.mark.realtime  # paced audio and timeouts: not under emulation

LONG_REPLY = " ".join(["This reply goes on and on so that it can be cut off."] * 4)


def test_every_input_sample_reaches_the_agent_once_and_in_order(tmp_path: Path) -> None:
    run = run_conversation(tmp_path)
    assert run.exit_code == 0
    spoken, rate = read_wav(HELLO_WAV)
    assert rate == 16000
    received = np.frombuffer(bytes(run.record.user_audio), dtype="<i2")
    assert len(received) >= len(spoken)
    assert np.array_equal(received[: len(spoken)], spoken)  # no gap, no duplicate, no reorder
    assert not received[len(spoken) :].any()  # after the clip: the quiet room, nothing else
    # and the conversation went the whole way
    assert "Hello! What can you tell me" not in json.dumps(run.events)  # default transcript
    kinds = run.kinds()
    for kind in (
        "connecting",
        "conversation_started",
        "user_transcript",
        "agent_response",
        "agent_response_complete",
        "disconnected",
        "conversation_ended",
    ):
        assert kind in kinds, kind
    ended = run.of_kind("conversation_ended")[0]
    assert ended["reason"] == "user silent after the agent's turn" and ended["code"] == 1000
    assert run.record.close_code == 1000 and run.record.closed_by == "client"


def test_states_follow_the_conversation(tmp_path: Path) -> None:
    run = run_conversation(tmp_path)
    states = run.states()
    assert states[0] == "idle" and states[1] == "connecting" and states[-1] == "idle"
    assert states[states.index("connecting") + 1] == "listening"
    for expected in ("speaking", "user_speaking", "thinking", "ending"):
        assert expected in states
    # the user spoke after the greeting, and the agent thought before answering
    assert states.index("user_speaking") < states.index("thinking")
    assert states.index("thinking") < len(states) - 1 - states[::-1].index("speaking")


def test_init_first_pongs_and_user_activity(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(ping_interval_s=0.25))
    run = run_conversation(tmp_path, script)
    record = run.record
    assert isinstance(record.messages[0][1], m.ConversationInitiationClientData)
    assert record.pings_sent >= 10
    assert record.pongs_received >= record.pings_sent - 1  # the last may cross the close
    assert record.missing_pongs == 0
    activity = [t for t, msg in record.messages if isinstance(msg, m.UserActivity)]
    speech = [t for t, note in record.notes if note == "user speech started"]
    assert activity and speech
    assert abs(activity[0] - speech[0]) < 0.5  # sent while the user speaks


def test_interruption_cuts_playback_within_100_ms(tmp_path: Path) -> None:
    script = SimulatorScript(first_turn=TurnScript(response=LONG_REPLY, interrupt_after_s=1.0))
    run = run_conversation(tmp_path, script, input_wav=silence_wav(tmp_path / "q.wav", 3.0))
    turn = run.record.turns[0]
    assert turn.interrupted_at is not None and turn.first_audio_at is not None
    full_reply_s = turn.audio_samples / 16000
    assert full_reply_s > 5  # there was much more to say
    heard, rate = read_wav(run.output)
    heard_s = np.count_nonzero(heard) / rate  # agent audio never has a zero sample
    allowed_s = turn.interrupted_at - turn.first_audio_at + 0.100
    assert 0.8 < heard_s <= allowed_s, (heard_s, allowed_s)
    assert "interruption" in run.kinds() and "playback_flushed" in run.kinds()
    assert run.of_kind("agent_response_correction")[0]["corrected"] != LONG_REPLY


def test_user_barge_in_is_detected_and_stops_the_agent(tmp_path: Path) -> None:
    # The user starts talking 2.5 s in, while this long greeting is still playing.
    script = SimulatorScript(first_turn=TurnScript(response=LONG_REPLY))
    run = run_conversation(tmp_path, script)
    assert any("barge-in" in note for _, note in run.record.notes)
    assert run.record.turns[0].interrupted_at is not None
    flush = run.of_kind("playback_flushed")[0]
    assert flush["dropped_samples"] > 0


@pytest.mark.parametrize(
    ("user_format", "agent_format"),
    [("ulaw_8000", "pcm_44100"), ("pcm_48000", "ulaw_8000"), ("pcm_22050", "pcm_24000")],
)
def test_negotiated_formats_are_honoured(
    tmp_path: Path, user_format: str, agent_format: str
) -> None:
    formats = {
        "asr": {"user_input_audio_format": user_format},
        "tts": {"agent_output_audio_format": agent_format},
    }
    script = SimulatorScript(agent={"conversation_config": formats})
    run = run_conversation(tmp_path, script)
    assert run.exit_code == 0
    user_fmt = AudioFormat.parse(user_format)
    received = decode_wire(bytes(run.record.user_audio), user_fmt)
    spoken, rate = read_wav(HELLO_WAV)
    expected = Resampler(rate, user_fmt.sample_rate).process(spoken, last=True)
    # The same speech arrived, at the agent's rate: compare loudness envelopes in 50 ms frames.
    frame = user_fmt.sample_rate // 20

    def envelope(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
        n = len(x) // frame
        return np.sqrt(np.mean(x[: n * frame].astype(np.float64).reshape(n, frame) ** 2, axis=1))

    got, want = envelope(received), envelope(expected)
    n = len(want)
    assert len(got) >= n
    assert np.corrcoef(got[:n], want)[0, 1] > 0.95
    heard, out_rate = read_wav(run.output)
    assert out_rate == AudioFormat.parse(agent_format).sample_rate
    assert np.count_nonzero(heard) > out_rate  # more than a second of agent speech came out


def test_signed_url_is_fetched_with_the_api_key_and_used(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    run = run_conversation(
        tmp_path, script, api_key="sk_test_secret", simulator_api_key="sk_test_secret"
    )
    assert run.exit_code == 0
    assert run.simulator.signed_url_requests == 1
    assert "conversation_signature=" in run.record.path
    assert "sk_test_secret" not in json.dumps(run.events)
    assert "conversation_signature" not in json.dumps(run.events)  # a credential too


def test_refused_api_key_is_reported_without_the_key(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    run = run_conversation(tmp_path, script, api_key="sk_wrong", simulator_api_key="sk_right")
    assert run.exit_code == 1
    failed = run.of_kind("connect_failed")
    assert failed and "HTTP 401" in failed[0]["message"]
    assert "check ELEVENLABS_API_KEY" in failed[0]["message"]
    assert "sk_wrong" not in json.dumps(run.events)
    assert run.states()[-2:] == ["error", "idle"]


def test_unsigned_connection_to_a_private_agent_is_refused(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    run = run_conversation(tmp_path, script)
    assert run.exit_code == 1
    assert "HTTP 403" in run.of_kind("connect_failed")[0]["message"]


@pytest.mark.parametrize("code", [1002, 1008, 1011])
def test_server_error_and_close_code_end_the_conversation_with_the_reason(
    tmp_path: Path, code: int
) -> None:
    script = SimulatorScript(
        turns=(
            TurnScript(
                error=ErrorScript(code=code, error_type="llm_error", message="the model fell over")
            ),
        )
    )
    run = run_conversation(tmp_path, script, cues=True)
    assert run.exit_code == 1
    reported = run.of_kind("server_error")[0]
    assert reported["error_type"] == "llm_error"
    ended = run.of_kind("conversation_ended")[0]
    assert ended["code"] == code and ended["closed_by"] == "server"
    assert ended["error"] == "llm_error: the model fell over"
    assert run.states()[-2:] == ["error", "idle"]
    # heard as well as seen, and listening again within 5 s of the error
    assert run.cues is not None and run.cues.played == ["error"]
    idle = [e for e in run.of_kind("state") if e["state"] == "idle"][-1]
    assert idle["t"] - reported["t"] < 5.0


def test_plain_server_close_with_1000_is_a_normal_end(tmp_path: Path) -> None:
    script = SimulatorScript(turns=(TurnScript(close=CloseScript(1000, "bye")),))
    run = run_conversation(tmp_path, script)
    assert run.exit_code == 0
    ended = run.of_kind("conversation_ended")[0]
    assert (ended["code"], ended["closed_by"], ended["error"]) == (1000, "server", None)


def test_malformed_frames_are_logged_once_each_and_the_conversation_goes_on(
    tmp_path: Path,
) -> None:
    bad = [
        "{not json",
        '{"type": "audio", "audio_event": {"event_id": 3}}',
        "[]",
        '{"type": "ping", "ping_event": {"event_id": "soon"}}',
    ]
    script = SimulatorScript(turns=(TurnScript(malformed=tuple(bad), response="Still here."),))
    run = run_conversation(tmp_path, script)
    assert run.exit_code == 0
    errors = [event["message"] for event in run.of_kind("protocol_error")]
    assert len(errors) == len(bad)
    assert "not valid JSON" in errors[0] and "audio_base_64: missing" in errors[1]
    assert "Still here." in [event["text"] for event in run.of_kind("agent_response")]


def test_silent_server_times_out_waiting_for_metadata(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(silent=True))
    run = run_conversation(tmp_path, script, metadata_timeout_s=1.0)
    assert run.exit_code == 1
    ended = run.of_kind("conversation_ended")[0]
    assert ended["error"] == "the agent sent no conversation metadata within 1 s"


def test_slow_handshake_loses_no_audio(tmp_path: Path) -> None:
    script = SimulatorScript(simulator=SimulatorSettings(handshake_delay_s=0.8))
    run = run_conversation(tmp_path, script)
    spoken, _ = read_wav(HELLO_WAV)
    received = np.frombuffer(bytes(run.record.user_audio), dtype="<i2")
    assert np.array_equal(received[: len(spoken)], spoken)


def test_unknown_client_tool_gets_an_error_result_naming_it(tmp_path: Path) -> None:
    script = SimulatorScript(
        turns=(
            TurnScript(
                tool_call=ToolCallScript("open_garage", {"door": 2}), response="Tool said: {result}"
            ),
        )
    )
    run = run_conversation(tmp_path, script)
    results = list(run.record.tool_results.values())
    assert len(results) == 1 and results[0].is_error
    assert "open_garage" in results[0].result
    assert run.of_kind("tool_call")[0]["tool_name"] == "open_garage"


def test_agent_end_call_closes_after_the_goodbye(tmp_path: Path) -> None:
    script = SimulatorScript(turns=(TurnScript(response="Goodbye!", end_call=True),))
    run = run_conversation(tmp_path, script, silence_close_s=30)
    assert run.exit_code == 0
    assert run.of_kind("agent_tool_response")[0]["tool_name"] == "end_call"
    assert run.of_kind("conversation_ended")[0]["code"] == 1000


def test_every_frame_both_sides_sent_matches_the_contract(tmp_path: Path) -> None:
    script = SimulatorScript(
        simulator=SimulatorSettings(ping_interval_s=0.3),
        first_turn=TurnScript(response=LONG_REPLY),  # barge-in: interruption + correction
        turns=(TurnScript(tool_call=ToolCallScript("lookup", {"q": "x"}), response="{result}"),),
    )
    run = run_conversation(tmp_path, script)
    client_types = {validate_frame(raw, "client") for _, raw in run.record.received}
    server_types = {validate_frame(raw, "server") for _, raw in run.record.sent}
    assert {
        "conversation_initiation_client_data",
        "user_audio_chunk",
        "pong",
        "user_activity",
        "client_tool_result",
    } <= client_types
    assert {
        "conversation_initiation_metadata",
        "ping",
        "audio",
        "agent_response",
        "user_transcript",
        "tentative_user_transcript",
        "vad_score",
        "interruption",
        "agent_response_correction",
        "client_tool_call",
    } <= server_types


def test_simulator_notices_missing_pongs_and_can_close_for_them(tmp_path: Path) -> None:
    import asyncio
    import contextlib

    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from agentpi.agent.simulator import AgentSimulator

    script = SimulatorScript(
        simulator=SimulatorSettings(
            ping_interval_s=0.1, pong_timeout_s=0.25, close_on_missing_pong=True
        )
    )

    async def deaf_client() -> tuple[int, int | None]:
        async with AgentSimulator(script, agent=enabled_agent(script)) as sim:
            url = f"{sim.url}/v1/convai/conversation?agent_id=deaf"
            async with connect(url) as ws:
                await ws.send(m.encode(m.ConversationInitiationClientData()))
                with contextlib.suppress(ConnectionClosed):
                    async for _ in ws:  # read everything, answer nothing
                        pass
                code = ws.close_code
            await sim.wait_for_conversations(1, timeout=5)
            return sim.conversations[0].missing_pongs, code

    missing, code = asyncio.run(asyncio.wait_for(deaf_client(), 20))
    assert missing >= 1
    assert code == 1002


def test_a_turn_can_stream_its_audio_at_its_own_pace() -> None:
    """The simulator sends audio at once (pace 0); a turn with audio_pace = 1 takes as long to
    send as it lasts, less its last 100 ms chunk."""
    import asyncio

    from websockets.asyncio.client import connect

    from agentpi.agent.simulator import AgentSimulator

    async def greeting_send_time(turn: TurnScript) -> tuple[float, float]:
        script = SimulatorScript(simulator=SimulatorSettings(audio_pace=0.0), first_turn=turn)
        async with AgentSimulator(script, agent=enabled_agent(script)) as sim:
            async with connect(f"{sim.url}/v1/convai/conversation?agent_id=pace") as ws:
                await ws.send(m.encode(m.ConversationInitiationClientData()))
                async for raw in ws:
                    if isinstance(m.decode_server(raw), m.AgentResponseComplete):
                        break
            await sim.wait_for_conversations(1, timeout=5)
            [greeting] = sim.conversations[0].turns
            assert greeting.first_audio_at is not None and greeting.last_audio_at is not None
            return greeting.last_audio_at - greeting.first_audio_at, greeting.audio_samples / 16000

    text = "A greeting of a few seconds."
    at_once, _ = asyncio.run(greeting_send_time(TurnScript(response=text, delay_s=0.0)))
    paced, lasts = asyncio.run(
        greeting_send_time(TurnScript(response=text, delay_s=0.0, audio_pace=1.0))
    )
    assert lasts > 1.0
    assert at_once < 0.2 * lasts
    assert paced >= lasts - 0.1 - 0.01


def test_bad_simulator_script_names_the_key(tmp_path: Path) -> None:
    from agentpi.agent.script import load_script
    from agentpi.settings.typed import SettingsError

    script = tmp_path / "s.toml"
    script.write_text('[agent.conversation_config.tts]\nagent_output_audio_format = "mp3_44100"\n')
    key = r"agent\.conversation_config\.tts\.agent_output_audio_format"
    with pytest.raises(SettingsError, match=key):
        load_script(script)
    script.write_text("[[turns]]\nrespnse = 'typo'\n")
    with pytest.raises(SettingsError, match=r"unknown key turns\[0\]\.respnse"):
        load_script(script)
    script.write_text("[[turns]]\nerror = { code = 4000 }\n")
    with pytest.raises(SettingsError, match="4000"):
        load_script(script)
    script.write_text("[first_turn]\naudio_pace = -1.0\n")
    with pytest.raises(SettingsError, match=r"audio_pace: -1\.0 is below 0"):
        load_script(script)


class OwnerBackend:
    """The kiosk owner's server: holds the API key, hands the device signed URLs."""

    def __init__(self, api_key: str, token: str) -> None:
        self.api_key = api_key
        self.token = token
        self.simulator_http = ""
        self.requests: list[dict[str, str]] = []
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                backend.requests.append(dict(self.headers))
                if self.headers.get("Authorization") != f"Bearer {backend.token}":
                    self.send_error(403)
                    return
                query = self.path.split("?", 1)[1]
                upstream = urllib.request.Request(
                    f"{backend.simulator_http}/v1/convai/conversation/get-signed-url?{query}",
                    headers={"xi-api-key": backend.api_key},
                )
                with urllib.request.urlopen(upstream, timeout=5) as response:
                    body = response.read()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/agentpi/signed-url"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def options(self, simulator_url: str) -> dict[str, Any]:
        self.simulator_http = simulator_url.replace("ws://", "http://", 1)
        return {"signed_url_endpoint": self.url}


def test_signed_url_from_the_owners_backend_keeps_the_key_off_the_device(tmp_path: Path) -> None:
    backend = OwnerBackend(api_key="sk_on_the_backend", token="device-7-token")
    script = SimulatorScript(simulator=SimulatorSettings(require_signed_url=True))
    try:
        run = run_conversation(
            tmp_path,
            script,
            simulator_api_key="sk_on_the_backend",
            agent_options=backend.options,
            endpoint_token="device-7-token",
        )
        wrong = run_conversation(
            tmp_path / "wrong",
            script,
            simulator_api_key="sk_on_the_backend",
            agent_options=backend.options,
            endpoint_token="stolen",
        )
    finally:
        backend.server.shutdown()
    assert run.exit_code == 0
    assert run.simulator.signed_url_requests == 1
    assert "conversation_signature=" in run.record.path
    assert backend.requests[0]["Authorization"] == "Bearer device-7-token"
    assert "device-7-token" not in json.dumps(run.events)
    failed = wrong.of_kind("connect_failed")
    assert (
        failed and "HTTP 403" in failed[0]["message"] and "endpoint token" in failed[0]["message"]
    )
    assert "stolen" not in json.dumps(wrong.events)
