"""microWakeWord: the wake engine Home Assistant's Voice PE and its Pi satellite run, for the
smallest boards (about a fifth of openWakeWord's CPU; see the README's wake-engine table).

A model is a JSON manifest beside its ``.tflite`` (the form ESPHome and pymicro-wakeword use):
the phrase, the probability cutoff and how many probabilities are averaged. The four that
pymicro-wakeword bundles (okay_nabu, hey_jarvis, alexa, hey_mycroft) are found by name; a user's
own by the manifest's path, or by name in the model folders.

The pipeline is pymicro-wakeword's: its features (pymicro-features' MicroFrontend, 40 values per
10 ms), the model on every ``stride`` of them (a streaming model that keeps its own state), the
mean of the last ``sliding_window_size`` probabilities. It runs on the TFLite C library the
default engine uses (pymicro-wakeword ships the same build), without XNNPACK: with it the
quantized models score up to 0.007 apart from pymicro-wakeword's and save a fifth of little.

In a quiet room the model does not run (``wake.quiet_gate``, as for the default engine): the
frontend does, as its noise estimate remembers far back, and the rows it makes are kept for the
model's reach (``MODEL_MEMORY_ROWS`` and its averaging window). The first louder frame pushes
the kept rows through the model first, in the blocks the ungated pipeline formed, so every
score where the gate is open is the ungated one exactly. A catch-up that replayed the audio
through a fresh frontend instead was tried and dropped: scores up to 0.32 apart.

Scores are put on openWakeWord's scale so that ``[wake] threshold`` means the same for both
engines: 0.5 is the model's own cutoff, 0..cutoff maps to 0..0.5 and cutoff..1 to 0.5..1.
"""

from __future__ import annotations

import importlib.util
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from agentpi.audio.convert import Int16Array
from agentpi.bounded_json import load_object
from agentpi.wake import quiet_gate
from agentpi.wake.features import FRAME
from agentpi.wake.models import ModelError, check_model_file, model_dirs
from agentpi.wake.quiet_gate import GateState

NAME = "microwakeword"
STEP_SAMPLES = 160
"""The frontend's step: one feature row per 10 ms at 16 kHz."""
ROWS_PER_FRAME = FRAME // STEP_SAMPLES
MODEL_MEMORY_ROWS = 200
"""How far back a model's state reaches, in rows: 2 s. Its streaming layers keep their last
inputs, no more, so pushing this many rows makes its state the same whatever came before
(measured: the bundled models agree exactly after 60 to 90 rows; see tests/test_micro_wake.py)."""
MANIFEST_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class MicroManifest:
    model: Path
    probability_cutoff: float
    sliding_window_size: int

    @classmethod
    def load(cls, path: Path) -> MicroManifest:
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MANIFEST_MAX_BYTES + 1)
        except OSError as exc:
            raise ModelError(f"wake model {path}: {exc.strerror or exc}") from None
        if len(raw) > MANIFEST_MAX_BYTES:
            raise ModelError(f"wake model {path}: over {MANIFEST_MAX_BYTES // 1024} KiB")
        try:
            data: Any = load_object(raw, MANIFEST_MAX_BYTES)
            micro = data["micro"]
            cutoff = float(micro["probability_cutoff"])
            window = int(micro["sliding_window_size"])
            model = path.parent / str(data["model"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelError(
                f"wake model {path}: not a microWakeWord manifest ({type(exc).__name__}: {exc})"
            ) from None
        if not 0 < cutoff < 1 or not 1 <= window <= 100:
            raise ModelError(
                f"wake model {path}: probability_cutoff {cutoff} or sliding_window_size "
                f"{window} out of range (0..1, 1..100)"
            )
        if not model.is_file():
            raise ModelError(f"wake model {path}: its model file {model} is missing")
        check_model_file(model)
        return cls(model, cutoff, window)


def bundled_dir() -> Path | None:
    spec = importlib.util.find_spec("pymicro_wakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), "models")


def micro_model_dirs(configured_dir: str = "") -> list[Path]:
    """Where manifests are looked for by name: the user's folders first, then
    pymicro-wakeword's."""
    bundled = bundled_dir()
    return model_dirs(configured_dir) + ([bundled] if bundled is not None else [])


def resolve_micro(names: tuple[str, ...], configured_dir: str = "") -> dict[str, MicroManifest]:
    """Configured name -> manifest: a ``.json`` path, or a name in ``micro_model_dirs``."""
    dirs = micro_model_dirs(configured_dir)
    found: dict[str, MicroManifest] = {}
    for name in names:
        path = Path(name).expanduser()
        if path.suffix == ".json":
            found[path.stem] = MicroManifest.load(path)
            continue
        if path.suffix:
            raise ModelError(
                f"wake model {name}: microWakeWord models are named by their .json manifest"
            )
        manifest = next((d / f"{name}.json" for d in dirs if (d / f"{name}.json").is_file()), None)
        if manifest is None:
            raise ModelError(
                f"microWakeWord model {name!r} not found in {', '.join(str(d) for d in dirs)}: "
                "the bundled ones are okay_nabu, hey_jarvis, alexa and hey_mycroft"
            )
        found[name] = MicroManifest.load(manifest)
    return found


def on_threshold_scale(probability: float, cutoff: float) -> float:
    """The model's mean probability with its own cutoff at 0.5."""
    if probability < cutoff:
        return 0.5 * probability / cutoff
    return min(1.0, 0.5 + 0.5 * (probability - cutoff) / (1 - cutoff))


class MicroModel:
    """One streaming model: its features ``stride`` at a time, the mean of its last
    probabilities."""

    def __init__(self, manifest: MicroManifest) -> None:
        self.manifest = manifest
        self._load()

    def _load(self) -> None:
        from agentpi.wake.tflite_c import CInterpreter

        self._interpreter = CInterpreter(self.manifest.model, xnnpack=False)
        shape = self._interpreter.input_shape
        if len(shape) != 3 or shape[0] != 1:
            raise ModelError(f"wake model {self.manifest.model}: not a microWakeWord model {shape}")
        self.stride, self.features = shape[1], shape[2]
        self._scale, self._zero = self._interpreter.input_quantization
        self._out_scale, self._out_zero = self._interpreter.output_quantization
        if self._scale:
            limits = np.iinfo(self._interpreter.input_type)  # type: ignore[type-var]
            self._lowest, self._highest = int(limits.min), int(limits.max)
        self._block = np.zeros((1, self.stride, self.features), dtype=np.float32)
        self._work = np.zeros_like(self._block)
        self._filled = 0
        self._next_row = 0
        """The row (counted from the start or reset) the ungated pipeline would push next."""
        self._probabilities: deque[float] = deque(maxlen=self.manifest.sliding_window_size)
        self.runs = 0
        """Times the model ran (the quiet-room gate's saving is the runs it did not make)."""

    @property
    def reach_rows(self) -> int:
        """Feature rows a score depends on: the model's memory and its averaging window."""
        return MODEL_MEMORY_ROWS + self.stride * self.manifest.sliding_window_size

    def reset(self) -> None:
        """The model's state lives in its own variables: a fresh interpreter forgets it."""
        self._interpreter.close()
        self._load()

    def catch_up(self, rows: list[list[float]], first_row: int) -> None:
        """Push the rows the model was not given, row ``first_row`` (counted from the start or
        reset) onward. Where older ones were dropped, in the blocks the ungated pipeline formed
        from the first whole one: the rows cover the model's memory, so its state is then that
        pipeline's."""
        if first_row != self._next_row:
            skip = -first_row % self.stride
            rows = rows[skip:]
            self._filled = 0
            self._next_row = first_row + skip
        for row in rows:
            self.push(row)

    def push(self, row: list[float]) -> float | None:
        """A feature row in; the mean probability when the model ran and its window is full."""
        self._block[0, self._filled] = row
        self._filled += 1
        self._next_row += 1
        if self._filled < self.stride:
            return None
        self._filled = 0
        features = self._block
        if self._scale:
            # in place, as pymicro-wakeword computes it: round(x / scale + zero point)
            work = self._work
            np.divide(features, self._scale, out=work)
            work += self._zero
            np.rint(work, out=work)
            features = np.clip(work, self._lowest, self._highest, out=work)
        probability = float(self._interpreter.run(features).reshape(-1)[0])
        self.runs += 1
        if self._out_scale:
            probability = (probability - self._out_zero) * self._out_scale
        self._probabilities.append(probability)
        if len(self._probabilities) < self.manifest.sliding_window_size:
            return None
        return sum(self._probabilities) / len(self._probabilities)


FrameRows = tuple[list[float], ...]
"""The feature rows the frontend made of one frame."""


class MicroWakeWordEngine:
    """A WakeEngine: one 80 ms frame in, each model's best score in it out. With
    ``quiet_gate``, the models do not run while all they would look at is a quiet room's
    (``wake.quiet_gate``): the frontend does, and its rows are kept for the catch-up."""

    name = NAME

    def __init__(self, manifests: dict[str, MicroManifest], quiet_gate: bool = True) -> None:
        # pymicro-features' C module itself: its Python wrapper makes an object per 10 ms step
        from micro_features_cpp import create_frontend, process_samples

        self._new_frontend = create_frontend
        self._process = process_samples
        self._frontend = create_frontend()
        self._models = {label: MicroModel(manifest) for label, manifest in manifests.items()}
        for label, model in self._models.items():
            if model.features != 40:
                raise ModelError(f"wake model {label}: takes {model.features} features, not 40")
        self._pending = b""
        self._rows = 0
        """Feature rows made since the start or the last reset."""
        reach_rows = max(model.reach_rows for model in self._models.values())
        self.reach = -(-reach_rows // ROWS_PER_FRAME)
        """Frames a score depends on."""
        self._gate: GateState[FrameRows] | None = GateState() if quiet_gate else None

    def predict(self, frame: Int16Array) -> dict[str, float]:
        if len(frame) != FRAME:
            raise ValueError(f"a wake frame is {FRAME} samples, not {len(frame)}")
        rows = self._features(frame)
        scores = dict.fromkeys(self._models, 0.0)
        if self._gate is not None:
            self._gate, to_score = quiet_gate.step(self._gate, frame, self.reach, rows)
            if not to_score:
                return scores
            if self._gate.kept:
                kept = [row for frame_rows in self._gate.kept for row in frame_rows]
                first_row = self._rows - len(rows) - len(kept)
                for model in self._models.values():
                    model.catch_up(kept, first_row)
                self._gate = quiet_gate.opened(self._gate)
        for row in rows:
            for label, model in self._models.items():
                mean = model.push(row)
                if mean is not None:
                    score = on_threshold_scale(mean, model.manifest.probability_cutoff)
                    scores[label] = max(scores[label], score)
        return scores

    def _features(self, frame: Int16Array) -> FrameRows:
        audio = self._pending + np.ascontiguousarray(frame, dtype="<i2").tobytes()
        rows: list[list[float]] = []
        at, step = 0, 2 * STEP_SAMPLES
        while at + step <= len(audio):
            features, samples_read = self._process(self._frontend, audio[at : at + step])
            at += 2 * samples_read
            if features:
                rows.append(features)
        self._pending = audio[at:]
        self._rows += len(rows)
        return tuple(rows)

    @property
    def model_runs(self) -> int:
        return sum(model.runs for model in self._models.values())

    @property
    def gate_shut(self) -> bool:
        """The last frame's rows went to no model (the room was quiet for the whole reach)."""
        return self._gate is not None and bool(self._gate.kept)

    def reset(self) -> None:
        self._frontend = self._new_frontend()
        self._pending = b""
        self._rows = 0
        for model in self._models.values():
            model.reset()
        if self._gate is not None:
            self._gate = GateState(self._gate.floor_dbfs)
