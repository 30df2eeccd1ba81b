"""The idle listener: microphone chunks in, at most one Detection per utterance out.

``feed`` does the heavy work (model inference) and is meant to run on a worker thread (see
``WakeRunner``); ``consumed_samples`` says where the audio after the frame that fired begins, so
the conversation can start there, sample for sample.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from agentpi.audio.convert import Int16Array
from agentpi.wake.decider import Detection, WakeDecider
from agentpi.wake.engines import WakeEngine, open_engine, probe
from agentpi.wake.framer import FRAME_SAMPLES, MODEL_RATE, Framer
from agentpi.wake.micro import NAME as MICRO
from agentpi.wake.micro import MicroManifest, MicroWakeWordEngine, resolve_micro
from agentpi.wake.models import ModelError, ModelFiles, resolve
from agentpi.wake.phrase_end import PhraseEndFinder, Snapshotting
from agentpi.wake.settings import EngineChoice, WakeConfig

log = logging.getLogger(__name__)

FALLBACK_PHRASE_END_S = 0.3
"""When the search finds nothing: about the median time the models fire after the phrase."""


class WakeListener:
    def __init__(self, engine: WakeEngine, decider: WakeDecider, source_rate: int) -> None:
        self.engine = engine
        self.decider = decider
        self.source_rate = source_rate
        self.framer = Framer(source_rate)
        self._audio_before_reset_s = 0.0  # keeps the decider's clock running across resets
        self._scored = 0  # frames scored since the last reset
        self._finder = PhraseEndFinder(engine) if isinstance(engine, Snapshotting) else None

    @property
    def engine_name(self) -> str:
        return self.engine.name

    def feed(self, chunk: Int16Array) -> Detection | None:
        """Frame a microphone chunk and score each whole frame (model inference: call it on a
        worker thread). Frames after the one that fires are not scored: that audio belongs to
        the conversation, which starts at ``consumed_samples``."""
        for frame in self.framer.push(chunk):
            if self._finder is not None:
                self._finder.before_frame(frame)
            self._scored += 1
            fired = self.decider.update(self.engine.predict(frame), self.audio_s)
            if fired is not None:
                return fired
        return None

    @property
    def audio_s(self) -> float:
        """Seconds of audio scored since the listener was made."""
        return self._audio_before_reset_s + self._scored * FRAME_SAMPLES / MODEL_RATE

    @property
    def consumed_samples(self) -> int:
        """Source samples (since the last reset) that the frames scored so far were made of:
        where the audio after the last scored frame begins."""
        return round(self._scored * FRAME_SAMPLES * self.source_rate / MODEL_RATE)

    @property
    def phrase_end_window(self) -> int:
        """How far before ``consumed_samples`` (source samples) ``phrase_end`` may answer."""
        if self._finder is None:
            return self._to_source(round(FALLBACK_PHRASE_END_S * MODEL_RATE))
        return self._to_source(self._finder.reach)

    def phrase_end(self, detection: Detection) -> int:
        """Where the wake phrase of ``detection`` ended, in source samples since the last reset
        (model inference: call it on the worker thread, right after the detection)."""
        back = None
        if self._finder is not None:
            try:
                back = self._finder.find(detection.model, detection.score)
            except Exception:  # a failed search must not keep the conversation waiting
                log.exception("finding the end of the wake phrase failed")
        if back is None:
            back = round(FALLBACK_PHRASE_END_S * MODEL_RATE)
        return max(0, self.consumed_samples - self._to_source(back))

    def _to_source(self, samples: int) -> int:
        return round(samples * self.source_rate / MODEL_RATE)

    def reset(self, source_rate: int | None = None) -> None:
        """Start fresh after a conversation: no stale audio in the models or the decider."""
        self.source_rate = source_rate or self.source_rate
        self.engine.reset()
        self.decider.reset()
        self._audio_before_reset_s = self.audio_s
        self.framer = Framer(self.source_rate)
        self._scored = 0
        if self._finder is not None:
            self._finder.clear()


ResolvedModels = ModelFiles | dict[str, MicroManifest]
"""The files an engine loads: openWakeWord's, or microWakeWord manifests by name."""


def resolve_models(config: WakeConfig) -> ResolvedModels:
    if config.engine == MICRO:
        return resolve_micro(config.models, config.models_dir)
    return resolve(config.models, config.models_dir)


def start_engine(choice: EngineChoice, models: ResolvedModels) -> WakeEngine:
    if isinstance(models, ModelFiles):
        return open_engine(choice, models)
    return MicroWakeWordEngine(models)


def model_files(models: ResolvedModels) -> dict[str, Path]:
    """Each configured model's file (its .tflite for a microWakeWord manifest)."""
    if isinstance(models, ModelFiles):
        return dict(models.wake)
    return {label: manifest.model for label, manifest in models.items()}


def loaded_paths(models: ResolvedModels) -> list[Path]:
    """Every file the engine loads (openWakeWord's feature models too)."""
    if isinstance(models, ModelFiles):
        return models.all_paths
    return list(model_files(models).values())


def open_models(config: WakeConfig) -> tuple[dict[str, Path], WakeEngine]:
    """Find the model files and start an engine on them (after a crash-safe trial load)."""
    models = resolve_models(config)
    probe(config.engine, config.models, config.models_dir, loaded_paths(models))
    return model_files(models), start_engine(config.engine, models)


def open_listener(config: WakeConfig, source_rate: int) -> WakeListener:
    """The models and an engine, wrapped with the configured decision rules."""
    _, engine = open_models(config)
    decider = WakeDecider(config.threshold, config.patience, config.refractory_s)
    return WakeListener(engine, decider, source_rate)


def probe_main(argv: list[str]) -> None:
    """The child ``engines.probe`` starts: load the models, score a silent frame."""
    choice, models_dir, *models = argv
    config = WakeConfig(models=tuple(models), engine=choice, models_dir=models_dir)  # type: ignore[arg-type]
    try:
        engine = start_engine(config.engine, resolve_models(config))
        engine.predict(np.zeros(FRAME_SAMPLES, dtype=np.int16))
    except ModelError as exc:
        sys.exit(str(exc))
