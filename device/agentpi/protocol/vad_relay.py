"""Which VAD score the device shows: its own, until the agent's first ``vad_score`` arrives.

An agent sends ``vad_score`` only when its settings ask for it (not by default); the LEDs' vad
effect then follows the device's own speech VAD, sent on as the same event (``source``
"device"), at about the agent's pace and only when it changed.
"""

from __future__ import annotations

from agentpi import events as ev
from agentpi.protocol.actions import Action, Notify

INTERVAL_S = 0.1
"""The device's own score goes out at most this often (the agent's comes about as often)."""
STEP = 0.05
"""...and only when it moved this much, or the verdict changed: a silent room sends nothing."""


class VadRelay:
    def __init__(self) -> None:
        self.agent_scores = False
        """The agent sends its own: the device's is no longer shown."""
        self._sent_at = float("-inf")
        self._sent = 0.0
        self._sent_speaking = False

    def device_score(self, score: float | None, speaking: bool, now: float) -> list[Action]:
        """The device's own VAD score to show now, if any (``score`` None: it has none)."""
        if self.agent_scores or score is None:
            return []
        moved = abs(score - self._sent) >= STEP
        if speaking == self._sent_speaking and not (moved and now - self._sent_at >= INTERVAL_S):
            return []
        self._sent_at, self._sent, self._sent_speaking = now, score, speaking
        return [Notify(ev.VadScore(round(score, 3), source="device"))]
