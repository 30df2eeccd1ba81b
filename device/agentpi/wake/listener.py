"""The idle listener: microphone chunks in, at most one Detection per utterance out.

``feed`` does the heavy work (model inference) and is meant to run on a worker thread; it keeps
the raw audio it has seen, so the caller can hand the conversation whatever came after the frame
that fired, sample for sample.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from agentpi.audio.convert import Int16Array
from agentpi.config import WakeConfig
from agentpi.wake.decider import Detection, WakeDecider
from agentpi.wake.engines import WakeEngine, open_engine, probe
from agentpi.wake.framer import FRAME_SAMPLES, MODEL_RATE, Framer
from agentpi.wake.models import ModelFiles, resolve


class WakeListener:
    def __init__(self, engine: WakeEngine, decider: WakeDecider, source_rate: int) -> None:
        self.engine = engine
        self.decider = decider
        self.source_rate = source_rate
        self.framer = Framer(source_rate)
        self._recent: deque[Int16Array] = deque()
        self._recent_samples = 0
        self._read_samples = 0  # source samples fed since the last reset
        self._audio_before_reset_s = 0.0  # keeps the decider's clock running across resets
        self._frames: deque[Int16Array] = deque()
        self._scored = 0  # frames scored since the last reset

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def accept(self, chunk: Int16Array) -> bool:
        """Take a microphone chunk (cheap, on the event loop); True when frames await scoring."""
        self._remember(chunk)
        self._frames.extend(self.framer.push(chunk))
        return bool(self._frames)

    def detect(self) -> Detection | None:
        """Score the waiting frames (model inference: call it on a worker thread)."""
        detection = None
        while self._frames:
            frame = self._frames.popleft()
            self._scored += 1
            scores = self.engine.predict(frame)
            fired = self.decider.update(scores, self.audio_s)
            if fired is not None and detection is None:
                detection = fired
                self._frames.clear()  # what follows belongs to the conversation
        return detection

    def feed(self, chunk: Int16Array) -> Detection | None:
        """``accept`` and ``detect`` in one call, for tests and benchmarks."""
        return self.detect() if self.accept(chunk) else None

    @property
    def audio_s(self) -> float:
        """Seconds of audio scored since the listener was made."""
        return self._audio_before_reset_s + self._scored * FRAME_SAMPLES / MODEL_RATE

    def after_detection(self) -> Int16Array:
        """Source audio fed after the end of the last frame scored: the start of what the user
        says next, which the conversation must not lose."""
        framed = round(self._scored * FRAME_SAMPLES * self.source_rate / MODEL_RATE)
        # the resampler holds a few samples back; those belong to what comes after, too
        tail = max(0, self._read_samples - framed)
        if tail == 0 or not self._recent:
            return np.zeros(0, dtype=np.int16)
        recent = np.concatenate(list(self._recent))
        return recent[-tail:] if tail <= len(recent) else recent

    def reset(self) -> None:
        """Start fresh after a conversation: no stale audio in the models or the decider."""
        self.engine.reset()
        self.decider.reset()
        self._audio_before_reset_s = self.audio_s
        self.framer = Framer(self.source_rate)
        self._frames.clear()
        self._scored = 0
        self._recent.clear()
        self._recent_samples = 0
        self._read_samples = 0

    def _remember(self, chunk: Int16Array) -> None:
        self._read_samples += len(chunk)
        self._recent.append(chunk)
        self._recent_samples += len(chunk)
        keep = 2 * FRAME_SAMPLES * self.source_rate // MODEL_RATE + len(chunk)
        while self._recent and self._recent_samples - len(self._recent[0]) >= keep:
            self._recent_samples -= len(self._recent.popleft())


def open_models(config: WakeConfig) -> tuple[ModelFiles, WakeEngine]:
    """Find the model files and start an engine on them (after a crash-safe trial load)."""
    files = resolve(config.models, config.models_dir)
    probe(config.engine, files)
    return files, open_engine(config.engine, files)


def open_listener(config: WakeConfig, source_rate: int) -> WakeListener:
    """The models and an engine, wrapped with the configured decision rules."""
    _, engine = open_models(config)
    decider = WakeDecider(config.threshold, config.patience, config.refractory_s)
    return WakeListener(engine, decider, source_rate)
