"""Wake-word engines behind one interface.

- ``tflite`` (the default): openWakeWord's pipeline in ``features``, on the TFLite C library that
  pyopen-wakeword ships for every Python (with XNNPACK): the same scores as openWakeWord, in a
  fraction of its memory, and no inference while the room is quiet (``quiet_gate``).
- ``tflite-runtime``: the same pipeline on tflite-runtime (Python 3.11 and older).
- ``openwakeword``: openWakeWord's own ``Model`` (about 140 MB more: onnxruntime, scipy, ...).
- ``pyopen-wakeword``: pyopen-wakeword's own loop (no XNNPACK: about 4x the CPU).
``open_engine("auto", ...)`` takes the first that loads and says which in ``engine.name``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from agentpi.audio.convert import Int16Array
from agentpi.wake.features import StreamingScorer
from agentpi.wake.interpreters import interpreter_factory
from agentpi.wake.models import ModelError, ModelFiles
from agentpi.wake.settings import EngineChoice


class WakeEngine(Protocol):
    name: str

    def predict(self, frame: Int16Array) -> dict[str, float]:
        """Scores (0..1) per configured model for one 80 ms, 16 kHz frame."""

    def reset(self) -> None:
        """Forget all audio heard so far (feature buffers included)."""


class OpenWakeWordEngine:
    name = "openwakeword"

    def __init__(self, files: ModelFiles) -> None:
        if "pyopen_wakeword" in sys.modules or "agentpi.wake.tflite_c" in sys.modules:
            raise ModelError("the TFLite C library is already loaded in this process")
        from openwakeword.model import Model

        self._names = {path.stem: name for name, path in files.wake.items()}
        with contextlib.redirect_stdout(io.StringIO()):  # it prints on load
            self._model = Model(
                wakeword_models=[str(path) for path in files.wake.values()],
                melspec_model_path=str(files.melspectrogram),
                embedding_model_path=str(files.embedding),
                inference_framework=files.framework,
            )

    def predict(self, frame: Int16Array) -> dict[str, float]:
        scores: dict[str, Any] = self._model.predict(frame)
        return {self._names.get(key, key): float(value) for key, value in scores.items()}

    def reset(self) -> None:
        self._model.reset()


class PyOpenWakeWordEngine:
    name = "pyopen-wakeword"

    def __init__(self, files: ModelFiles) -> None:
        if "tflite_runtime.interpreter" in sys.modules:
            # pyopen-wakeword loads its TFLite library with RTLD_GLOBAL; next to tflite-runtime's
            # copy in one process that aborts at random (seen in tests), so never both at once
            raise ModelError("tflite-runtime is already loaded in this process")
        from pyopen_wakeword import OpenWakeWord, OpenWakeWordFeatures

        from agentpi.wake.tflite_c import library_path

        if files.framework != "tflite":
            raise ModelError("pyopen-wakeword runs .tflite models only; .onnx needs openwakeword")
        library = str(library_path())
        self._features = OpenWakeWordFeatures(files.melspectrogram, files.embedding, library)
        self._models = {
            name: OpenWakeWord(name, tflite_model=path, libtensorflowlite_c_path=library)
            for name, path in files.wake.items()
        }

    def predict(self, frame: Int16Array) -> dict[str, float]:
        scores = dict.fromkeys(self._models, 0.0)
        for embedding in self._features.process_streaming(np.ascontiguousarray(frame).tobytes()):
            for name, model in self._models.items():
                for probability in model.process_streaming(embedding):
                    scores[name] = max(scores[name], probability)
        return scores

    def reset(self) -> None:
        self._features.reset()
        for model in self._models.values():
            model.reset()


def _tflite_engine(files: ModelFiles) -> WakeEngine:
    if files.framework != "tflite":
        raise ModelError("the tflite engine runs .tflite models only; .onnx needs openwakeword")
    return StreamingScorer("tflite", files, interpreter_factory("tflite-c"), quiet_gate=True)


def _tflite_runtime_engine(files: ModelFiles) -> WakeEngine:
    if files.framework != "tflite":
        raise ModelError("tflite-runtime runs .tflite models only; .onnx needs openwakeword")
    runtime = interpreter_factory("tflite-runtime")
    return StreamingScorer("tflite-runtime", files, runtime, quiet_gate=True)


ENGINES: dict[str, Callable[[ModelFiles], WakeEngine]] = {
    "tflite": _tflite_engine,
    "tflite-runtime": _tflite_runtime_engine,
    "openwakeword": OpenWakeWordEngine,
    "pyopen-wakeword": PyOpenWakeWordEngine,
}


def probe(
    choice: EngineChoice,
    models: tuple[str, ...],
    models_dir: str,
    paths: list[Path],
    timeout_s: float = 60.0,
) -> None:
    """Load the models once in a child process: TensorFlow Lite kills the process (SIGSEGV) on
    some damaged files instead of raising, and a device must survive a bad download."""
    key = (choice, *sorted((str(p), p.stat().st_mtime_ns) for p in paths))
    if key in _PROBED:
        return
    code = "import sys; from agentpi.wake.listener import probe_main; probe_main(sys.argv[1:])"
    try:
        result = subprocess.run(
            [sys.executable, "-c", code, choice, models_dir, *models],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"loading the wake models took over {timeout_s:g} s") from None
    if result.returncode < 0:
        names = ", ".join(str(p) for p in paths)
        raise ModelError(f"a wake model file is damaged (it crashed the model loader): {names}")
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        raise ModelError(lines[-1] if lines else "the wake models did not load")
    _PROBED.add(key)


_PROBED: set[tuple[object, ...]] = set()


def open_engine(choice: EngineChoice, files: ModelFiles) -> WakeEngine:
    order = list(ENGINES) if choice == "auto" else [choice]
    problems = []
    for name in order:
        try:
            engine: WakeEngine = ENGINES[name](files)
            return engine
        except ImportError as exc:
            problems.append(f"{name}: not installed ({exc.name or exc})")
        except ModelError as exc:
            problems.append(f"{name}: {exc}")
        except Exception as exc:  # native loaders raise anything: a bad file, an ABI mismatch
            problems.append(f"{name}: cannot load the models: {exc}")
    raise ModelError("no wake-word engine could start: " + "; ".join(problems))
