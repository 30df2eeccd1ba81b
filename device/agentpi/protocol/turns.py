"""How long the user waits for the agent, turn by turn, with no I/O.

A turn's latency runs from the end of the user's speech (the device's own VAD: the moment the
level fell, not the moment the hangover ran out) to the first agent audio reaching the speaker
(handed to it plus what it still had queued). The greeting's runs from the trigger. The user
speaking again before the agent answers starts the wait afresh from their new end of speech.
"""

from __future__ import annotations

import statistics

from agentpi import events as ev


class TurnTimer:
    def __init__(self, triggered_at: float | None) -> None:
        self._since = triggered_at
        self._after = "trigger"
        self._speaking = False
        self.greeting_ms: int | None = None
        self.turn_ms: list[int] = []
        """Every answered turn's latency (a conversation's turns: hundreds at most)."""

    def user_speech(self, speaking: bool, now: float, hangover_s: float) -> None:
        if speaking and not self._speaking:
            self._since = None  # the user is talking: nothing is being waited for
        elif self._speaking and not speaking:
            self._since, self._after = now - hangover_s, "speech"
        self._speaking = speaking

    def agent_audio(self, at_speaker: float) -> ev.Turn | None:
        """The first agent audio after a wait closes it; the rest of the answer does nothing."""
        if self._since is None:
            return None
        latency_ms = max(0, round((at_speaker - self._since) * 1000))
        self._since = None
        if self._after == "trigger":
            self.greeting_ms = latency_ms
        else:
            self.turn_ms.append(latency_ms)
        return ev.Turn(len(self.turn_ms), self._after, latency_ms)

    @property
    def median_ms(self) -> int | None:
        return round(statistics.median(self.turn_ms)) if self.turn_ms else None

    @property
    def worst_ms(self) -> int | None:
        return max(self.turn_ms) if self.turn_ms else None

    def figures(self) -> dict[str, int | None]:
        return {
            "greeting_ms": self.greeting_ms,
            "turn_ms_median": self.median_ms,
            "turn_ms_worst": self.worst_ms,
        }
