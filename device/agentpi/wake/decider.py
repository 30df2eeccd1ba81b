"""From per-frame wake-word scores to one trigger per utterance, with no I/O.

An engine scores every 80 ms frame for every model. ``WakeDecider`` fires when a model's score
has stayed at or above ``threshold`` for ``patience`` frames in a row, then ignores every model for
``refractory_s`` of audio, so one "hey jarvis" starts one conversation, not three.
Times are audio time (seconds of stream), not wall-clock time, so the rules hold however late the
frames are processed.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Detection:
    model: str
    score: float
    audio_s: float
    """Stream time at the end of the frame that fired."""


@dataclass
class WakeDecider:
    threshold: float = 0.5
    patience: int = 1
    refractory_s: float = 2.0
    _above: dict[str, int] = field(default_factory=dict)
    _quiet_until: float = float("-inf")

    def __post_init__(self) -> None:
        # the rules' domain; a config's narrower ranges are wake.settings.WAKE_RANGES
        if not 0 < self.threshold < 1:
            raise ValueError(f"wake.threshold = {self.threshold}: use a score between 0 and 1")
        if self.patience < 1:
            raise ValueError(f"wake.patience = {self.patience}: use 1 or more frames")
        if self.refractory_s < 0:
            raise ValueError("wake.refractory_s must be 0 or more")

    def update(self, scores: dict[str, float], audio_s: float) -> Detection | None:
        fired: Detection | None = None
        for model, score in scores.items():
            run = self._above.get(model, 0) + 1 if score >= self.threshold else 0
            self._above[model] = run
            ready = run >= self.patience and audio_s >= self._quiet_until
            if ready and (fired is None or score > fired.score):
                fired = Detection(model, float(score), audio_s)
        if fired is not None:
            self._quiet_until = audio_s + self.refractory_s
            self._above.clear()
        return fired

    def reset(self) -> None:
        """Forget runs in progress (after a conversation); the refractory time still holds."""
        self._above.clear()
