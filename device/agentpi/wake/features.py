"""openWakeWord's streaming pipeline, frame for frame, without importing openwakeword.

Importing ``openwakeword.model`` costs about 140 MB (it pulls onnxruntime, scipy, scikit-learn and
requests) for three small TFLite models and some array shuffling. This module does the shuffling
the way ``openwakeword.Model.predict`` does it for 80 ms frames, so the scores are the same
(``tests/test_wake_scores.py`` compares them frame by frame), but keeps only what the next frame
needs: 480 samples of audio, 76 mel rows and as many embeddings as the widest model reads.

- melspectrogram: each frame plus the 480 samples before it (none at the start) -> 8 rows of 32
  mel bins (5 at the start), scaled ``x / 10 + 2``;
- embedding: the last 76 mel rows (the first ones are 1.0 until 76 real rows exist) -> 96 values;
- each wake model: its last N embeddings -> a score; the first five scores after a start or a
  reset are reported as 0, as openWakeWord does.
Before any audio the embedding history holds the embeddings of four seconds of random noise, as
openWakeWord's does (ours is seeded, so a run is repeatable). That noise is loud (about -36 dBFS)
and scores like a room it is not, so the device's engine skips it and pushes a quiet room
through until the mel rows and the widest model's embeddings hold nothing else (2.1 s for
16-embedding models), then starts every reset from there (``StreamingScorer`` with no ``warmup``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from agentpi.audio.convert import Int16Array
from agentpi.wake import quiet_gate
from agentpi.wake.framer import MODEL_RATE
from agentpi.wake.models import ModelError, ModelFiles
from agentpi.wake.quiet_gate import GateState

FloatArray = npt.NDArray[np.float32]

FRAME = 1280
MEL_CONTEXT = 480
HOP = 160
MEL_BINS = 32
EMBEDDING_WINDOW = 76
EMBEDDING_STEP = 8
EMBEDDING_SIZE = 96
SILENT_SCORES = 5
WARMUP_SAMPLES = 4 * MODEL_RATE
WARMUP_SEED = 0
MEL_FILL_FRAMES = 10
"""80 ms frames that fill the 76 mel rows (5 rows from the first frame, 8 from each after)."""
PRIMING_DBFS = -60.0


class Interpreter(Protocol):
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]

    def resize(self, input_shape: tuple[int, ...] | None) -> None: ...

    def run(self, data: FloatArray) -> FloatArray: ...


InterpreterFactory = Callable[[Path, "tuple[int, ...] | None"], Interpreter]


def warmup_noise(seed: int = WARMUP_SEED) -> Int16Array:
    """The audio openWakeWord fills its history with: np.random.randint(-1000, 1000, 64000)."""
    noise: Int16Array = (
        np.random.RandomState(seed).randint(-1000, 1000, WARMUP_SAMPLES).astype(np.int16)
    )
    return noise


def quiet_room(frames: int, seed: int = WARMUP_SEED) -> Int16Array:
    """Gaussian noise at ``PRIMING_DBFS``: what a quiet room sounds like to a USB microphone."""
    scale = 32768 * 10 ** (PRIMING_DBFS / 20)
    noise = np.random.RandomState(seed).randn(frames * FRAME) * scale
    room: Int16Array = np.round(noise).astype(np.int16)
    return room


@dataclass(frozen=True)
class FeatureState:
    context: FloatArray
    """The last samples of audio, which the next frame's spectrogram starts from."""
    mels: FloatArray
    embeddings: FloatArray


class StreamingFeatures:
    def __init__(
        self,
        files: ModelFiles,
        interpreter: InterpreterFactory,
        history: int,
        warmup: Int16Array | None,
    ) -> None:
        """``warmup``: openWakeWord's pipeline exactly, its history the embeddings of that audio.
        None: a quiet room is pushed through until nothing of the starting state is left in any
        buffer, so computing a warm-up would be wasted; every reset starts from that state."""
        self._mel = interpreter(files.melspectrogram, (1, FRAME + MEL_CONTEXT))
        self._embedding = interpreter(files.embedding, None)
        self._context = np.zeros(0, dtype=np.float32)
        self._mels: FloatArray = np.ones((EMBEDDING_WINDOW, MEL_BINS), dtype=np.float32)
        if warmup is not None:
            self.embeddings: FloatArray = self._embed_clip(warmup)[-history:].copy()
        else:
            self.embeddings = np.zeros((history, EMBEDDING_SIZE), dtype=np.float32)
            for frame in quiet_room(MEL_FILL_FRAMES + history).reshape(-1, FRAME):
                self.push(frame)
        self._start = self.snapshot()

    def reset(self) -> None:
        self.restore(self._start)

    def snapshot(self) -> FeatureState:
        """References only: every frame makes new arrays, so keeping one costs nothing."""
        return FeatureState(self._context, self._mels, self.embeddings)

    def restore(self, state: FeatureState) -> None:
        self._context, self._mels, self.embeddings = state.context, state.mels, state.embeddings

    def _melspectrogram(self, audio: FloatArray) -> FloatArray:
        if self._mel.input_shape != (1, len(audio)):
            self._mel.resize((1, len(audio)))
        spec = np.squeeze(self._mel.run(audio[None, :]))
        scaled: FloatArray = spec / np.float32(10) + np.float32(2)
        return scaled

    def _clip_melspectrogram(self, clip: FloatArray) -> FloatArray:
        """The rows openWakeWord gets from the whole clip at once (one row per 160 samples), taken
        window by window at the streaming size: the model's arena for a 4 s input would cost 7 MB
        for good. The mel rows do not depend on where a window starts, only on its samples."""
        window = FRAME + MEL_CONTEXT
        rows_per_window = FRAME // HOP
        total = len(clip) // HOP - MEL_CONTEXT // HOP
        starts = list(range(0, total - rows_per_window + 1, rows_per_window))
        parts = [self._melspectrogram(clip[s * HOP : s * HOP + window]) for s in starts]
        done = starts[-1] + rows_per_window
        if done < total:
            last = total - rows_per_window
            tail = self._melspectrogram(clip[last * HOP : last * HOP + window])
            parts.append(tail[done - last :])
        return np.concatenate(parts)

    def _embed(self, window: FloatArray) -> FloatArray:
        return self._embedding.run(window[None, :, :, None]).reshape(EMBEDDING_SIZE)

    def _embed_clip(self, clip: Int16Array) -> FloatArray:
        if len(clip) % HOP or len(clip) < 2 * (FRAME + MEL_CONTEXT):
            raise ValueError(f"warm-up audio must be a multiple of {HOP} samples, 0.22 s or more")
        spec = self._clip_melspectrogram(clip.astype(np.float32))
        starts = range(0, len(spec) - EMBEDDING_WINDOW + 1, EMBEDDING_STEP)
        return np.stack([self._embed(spec[start : start + EMBEDDING_WINDOW]) for start in starts])

    def catch_up(self, frames: tuple[Int16Array, ...]) -> None:
        """Push frames that were passed over. Of a long quiet stretch only the last reach of
        frames are kept, which is enough: after that many frames nothing of the state before
        them is left in the mel rows or the embeddings, so the state is exact again."""
        for frame in frames:
            self.push(frame)

    def push(self, frame: Int16Array) -> None:
        """One 80 ms frame (1280 samples at 16 kHz) in; one embedding row appended."""
        samples = frame.astype(np.float32)
        spec = self._melspectrogram(np.concatenate((self._context, samples)))
        self._context = samples[-MEL_CONTEXT:]
        self._mels = np.concatenate((self._mels, spec))[-EMBEDDING_WINDOW:]
        embedding = self._embed(self._mels)
        self.embeddings = np.concatenate((self.embeddings[1:], embedding[None, :]))


class WakeModel:
    def __init__(self, path: Path, interpreter: InterpreterFactory) -> None:
        self._interpreter = interpreter(path, None)
        shape = self._interpreter.input_shape
        if len(shape) != 3 or shape[2] != EMBEDDING_SIZE:
            raise ModelError(f"wake model {path}: not an openWakeWord model (input {shape})")
        if int(np.prod(self._interpreter.output_shape)) != 1:
            raise ModelError(
                f"wake model {path}: a model with several classes needs engine = 'openwakeword'"
            )
        self.window = shape[1]
        self.scored = 0

    def score(self, embeddings: FloatArray) -> float:
        self.scored += 1
        probability = float(self._interpreter.run(embeddings[-self.window :][None, :, :]).item())
        return probability if self.scored > SILENT_SCORES else 0.0


@dataclass(frozen=True)
class ScorerState:
    features: FeatureState
    scored: tuple[int, ...]
    gate: GateState[Int16Array] | None


class StreamingScorer:
    """The engine: one frame in, a score per configured model out."""

    def __init__(
        self,
        name: str,
        files: ModelFiles,
        interpreter: InterpreterFactory,
        warmup: Int16Array | None = None,
        quiet_gate: bool = False,
    ) -> None:
        """``warmup`` given: openWakeWord's pipeline exactly, with that as its warm-up noise (the
        score tests use it). None: the device's, whose history after a start or a reset is a
        quiet room's, not loud random noise's: openWakeWord's warm-up noise (about -36 dBFS) made
        alexa score up to 0.52 on a silent room within a second of a reset. ``quiet_gate``: no
        inference while all the models would hear is the room's quiet (``wake.quiet_gate``)."""
        self.name = name
        self._models = {label: WakeModel(path, interpreter) for label, path in files.wake.items()}
        history = max(model.window for model in self._models.values())
        self._features = StreamingFeatures(files, interpreter, history, warmup)
        self.reach = MEL_FILL_FRAMES + history
        """Frames a score depends on: the mel rows' and the widest model's embeddings'."""
        self._gate: GateState[Int16Array] | None = GateState() if quiet_gate else None
        self.frames_scored = 0
        """Frames pushed through the models (skipped ones not counted until caught up)."""

    def predict(self, frame: Int16Array) -> dict[str, float]:
        if len(frame) != FRAME:
            raise ValueError(f"a wake frame is {FRAME} samples, not {len(frame)}")
        if self._gate is not None:
            self._gate, score = quiet_gate.step(self._gate, frame, self.reach, frame)
            if not score:
                for model in self._models.values():
                    model.scored += 1
                return dict.fromkeys(self._models, 0.0)
            if self._gate.kept:
                self._features.catch_up(self._gate.kept)
                self.frames_scored += len(self._gate.kept)
                self._gate = quiet_gate.opened(self._gate)
        self._features.push(frame)
        self.frames_scored += 1
        embeddings = self._features.embeddings
        return {label: model.score(embeddings) for label, model in self._models.items()}

    @property
    def gate_shut(self) -> bool:
        """The last frame was not scored (the room was quiet for the whole reach)."""
        return self._gate is not None and bool(self._gate.kept)

    def reset(self) -> None:
        self._features.reset()
        for model in self._models.values():
            model.scored = 0
        if self._gate is not None:
            self._gate = GateState(self._gate.floor_dbfs)

    def snapshot(self) -> ScorerState:
        """The whole state, to ``restore`` later: references only, as every frame makes new
        arrays, so keeping one costs nothing."""
        scored = tuple(model.scored for model in self._models.values())
        return ScorerState(self._features.snapshot(), scored, self._gate)

    def restore(self, state: ScorerState) -> None:
        self._features.restore(state.features)
        self._gate = state.gate
        for model, scored in zip(self._models.values(), state.scored, strict=True):
            model.scored = scored
