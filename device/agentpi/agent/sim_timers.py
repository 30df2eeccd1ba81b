"""What the simulated agent does on its own clock, as its settings say: speak again after the
turn timeout, hang up after the silence end-call timeout, end at the maximum duration."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from agentpi.agent.definition import AgentDefinition
from agentpi.agent.script import TurnScript
from agentpi.agent.sim_records import ConversationRecord
from agentpi.audio.speech_vad import SpeechVad

TICK_S = 0.1
STILL_THERE = "Are you still there?"
"""What the agent says when the user stays silent past the turn timeout (the platform's LLM
says something like it)."""


class AgentSide(Protocol):
    """What the timers read and do of one simulated conversation."""

    definition: AgentDefinition
    record: ConversationRecord
    vad: SpeechVad
    turn_queue: asyncio.Queue[tuple[TurnScript, str | None]]
    turn_busy: bool
    playback_ends_at: float
    user_quiet_since: float
    reprompted: bool

    async def fail(self, code: int, error_type: str, message: str) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


async def agent_timers(conversation: AgentSide) -> None:
    """Runs while the conversation is open; returns once the agent has ended it."""
    definition = conversation.definition
    started = time.monotonic()
    while True:
        await asyncio.sleep(TICK_S)
        now = time.monotonic()
        if now - started >= definition.max_duration_s:
            message = "Maximum conversation duration exceeded"
            await conversation.fail(1000, "max_duration_exceeded", message)
            return
        busy = conversation.turn_busy or not conversation.turn_queue.empty()
        if busy or conversation.vad.speaking or now < conversation.playback_ends_at:
            continue
        silent_since = conversation.user_quiet_since
        quiet = now - max(silent_since, conversation.playback_ends_at)
        if 0 < definition.silence_end_call_s <= now - silent_since:
            conversation.record.note("silence_end_call_timeout reached")
            await conversation.close(1000, "silence_end_call_timeout")
            return
        if 0 < definition.turn_timeout_s <= quiet and not conversation.reprompted:
            conversation.reprompted = True
            conversation.record.note(f"turn timeout: user silent {quiet:.1f} s")
            again = TurnScript(response=STILL_THERE, delay_s=0.0)
            conversation.turn_queue.put_nowait((again, None))
