"""The simulator plays the agent's own settings, seen from a bare WebSocket client: refused
overrides, withheld events, the turn timeout, the soft timeout, the silence hang-up and the
maximum duration."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from agentpi.agent.definition import JsonDict, default_document, merged
from agentpi.agent.script import SimulatorScript, SimulatorSettings, TurnScript
from agentpi.agent.sim_timers import STILL_THERE
from agentpi.agent.simulator import AgentSimulator
from agentpi.protocol import messages as m

pytestmark = pytest.mark.realtime  # the agent's timers run on the clock

QUICK = SimulatorScript(simulator=SimulatorSettings(audio_pace=0.0, ping_interval_s=30.0))


async def converse(
    agent: JsonDict,
    init: m.ConversationInitiationClientData | None = None,
    script: SimulatorScript = QUICK,
    listen_s: float = 6.0,
) -> tuple[list[tuple[float, m.ServerEvent]], int | None, str, Any]:
    """Open a conversation, send nothing but the initiation data, and note what comes back."""
    async with AgentSimulator(script, agent=agent) as sim:
        received: list[tuple[float, m.ServerEvent]] = []
        async with connect(f"{sim.url}/v1/convai/conversation?agent_id=a") as ws:
            started = time.monotonic()
            await ws.send(m.encode(init or m.ConversationInitiationClientData()))
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                async with asyncio.timeout(listen_s):
                    async for raw in ws:
                        event = m.decode_server(raw)
                        received.append((time.monotonic() - started, event))
                        if isinstance(event, m.Ping):
                            await ws.send(m.encode(m.Pong(event.event_id)))
            code, reason = ws.close_code, ws.close_reason or ""
        await sim.wait_for_conversations(1, timeout=5)
        return received, code, reason, sim.conversations[0]


def agent(**conversation_config: Any) -> JsonDict:
    return merged(default_document(), {"conversation_config": conversation_config})


def test_an_override_the_agent_does_not_allow_ends_it_before_the_metadata() -> None:
    init = m.ConversationInitiationClientData(
        conversation_config_override={"tts": {"voice_id": "someone"}}
    )
    received, code, reason, _ = asyncio.run(converse(default_document(), init))
    assert code == 1008
    assert reason == "override_error"
    [(_, error)] = received
    assert isinstance(error, m.ErrorEvent) and error.error_type == "override_error"
    assert error.message == "Override for field 'voice_id' is not allowed by config"
    allowed = merged(
        default_document(),
        {
            "platform_settings": {
                "overrides": {"conversation_config_override": {"tts": {"voice_id": True}}}
            }
        },
    )
    received, code, _, _ = asyncio.run(converse(allowed, init, listen_s=1.5))
    assert isinstance(received[0][1], m.ConversationInitiationMetadata)


def test_only_the_agents_client_events_are_sent() -> None:
    received, _, _, record = asyncio.run(converse(default_document(), listen_s=1.5))
    types = {event.type for _, event in received}
    assert types <= {"conversation_initiation_metadata", "audio", "agent_response", "ping"}
    assert record.withheld == {"agent_response_complete": 1}
    enabled = agent(conversation={"client_events": ["audio", "agent_response_complete"]})
    received, _, _, _ = asyncio.run(converse(enabled, listen_s=1.5))
    assert {event.type for _, event in received} == {"audio", "agent_response_complete"}


def test_the_turn_timeout_makes_the_agent_speak_again() -> None:
    quick = agent(turn={"turn_timeout": 1.0}, agent={"first_message": "Hi."})
    received, _, _, _ = asyncio.run(converse(quick, listen_s=4.0))
    replies = [(t, e.text) for t, e in received if isinstance(e, m.AgentResponse)]
    assert [text for _, text in replies] == ["Hi.", STILL_THERE]  # once per silence
    greeting_s = len(replies) and replies[0][0]
    assert 1.0 <= replies[1][0] - greeting_s <= 3.0  # the greeting plays, then 1 s of silence


def test_a_slow_reply_is_preceded_by_the_soft_timeout_message() -> None:
    slow = SimulatorScript(
        simulator=QUICK.simulator, first_turn=TurnScript(response="Here it is.", delay_s=1.5)
    )
    soft = agent(
        turn={"soft_timeout_config": {"timeout_seconds": 0.5, "message": "Hmm, one moment."}}
    )
    received, _, _, _ = asyncio.run(converse(soft, script=slow, listen_s=3.0))
    replies = [(t, e.text) for t, e in received if isinstance(e, m.AgentResponse)]
    assert [text for _, text in replies] == ["Hmm, one moment.", "Here it is."]
    assert 0.4 <= replies[0][0] <= 1.0 and replies[1][0] >= 1.4


def test_the_agent_hangs_up_on_silence_and_at_its_maximum_duration() -> None:
    hang_up = agent(turn={"silence_end_call_timeout": 1.5, "turn_timeout": -1})
    _, code, reason, record = asyncio.run(converse(hang_up))
    assert (code, reason) == (1000, "silence_end_call_timeout")
    assert record.closed_at - record.opened_at < 4.0
    short = agent(conversation={"max_duration_seconds": 2}, turn={"turn_timeout": -1})
    received, code, _, _ = asyncio.run(converse(short))
    assert code == 1000
    errors = [e for _, e in received if isinstance(e, m.ErrorEvent)]
    assert [e.error_type for e in errors] == ["max_duration_exceeded"]
