"""Where wake-word model files are found, and fetching them on a device that is online.

A model is named the way openWakeWord names its pre-trained ones (``hey_jarvis``) or given as a
path to a ``.tflite`` / ``.onnx`` file. Names are looked up, in order, in ``[wake] models_dir``,
``$AGENTPI_MODELS_DIR``, the user's data folder (``/var/lib/agentpi/models`` for the service),
the models bundled with ``pyopen-wakeword`` and openWakeWord's own download folder; both
``hey_jarvis.tflite`` and openWakeWord's release name ``hey_jarvis_v0.1.tflite`` match.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from agentpi.errors import AgentpiError
from agentpi.wake.settings import MODEL_SUFFIXES, model_label

MODELS_DIR_ENV = "AGENTPI_MODELS_DIR"
SERVICE_MODELS_DIR = Path("/var/lib/agentpi/models")
FEATURE_MODELS = ("melspectrogram", "embedding_model")


class ModelError(AgentpiError):
    """A wake model that cannot be found or loaded; the message says where it looked."""


@dataclass(frozen=True)
class ModelFiles:
    wake: dict[str, Path]
    """Configured name -> file."""
    melspectrogram: Path
    embedding: Path

    @property
    def all_paths(self) -> list[Path]:
        return [*self.wake.values(), self.melspectrogram, self.embedding]

    @property
    def framework(self) -> str:
        return "onnx" if self.melspectrogram.suffix == ".onnx" else "tflite"


def _package_dir(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)), *parts)


def user_models_dir() -> Path:
    if os.geteuid() == 0 or os.environ.get("STATE_DIRECTORY"):
        return Path(os.environ.get("STATE_DIRECTORY", str(SERVICE_MODELS_DIR.parent))) / "models"
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "agentpi" / "models"


def model_dirs(configured: str = "") -> list[Path]:
    dirs = [Path(configured)] if configured else []
    if os.environ.get(MODELS_DIR_ENV):
        dirs.append(Path(os.environ[MODELS_DIR_ENV]))
    dirs.append(user_models_dir())
    bundled = (("pyopen_wakeword", ("models",)), ("openwakeword", ("resources", "models")))
    for package, parts in bundled:
        found = _package_dir(package, *parts)
        if found is not None:
            dirs.append(found)
    return dirs


def find_model(name: str, dirs: list[Path], suffix: str | None = None) -> Path | None:
    """A file for ``name`` in ``dirs``: exact, then any released version (``_v0.1``)."""
    suffixes = (suffix,) if suffix else MODEL_SUFFIXES
    for directory in dirs:
        for ext in suffixes:
            exact = directory / f"{name}{ext}"
            if exact.is_file():
                return exact
            versions = sorted(directory.glob(f"{name}_v*{ext}"))
            if versions:
                return versions[-1]
    return None


def resolve(names: tuple[str, ...], configured_dir: str = "") -> ModelFiles:
    dirs = model_dirs(configured_dir)
    wake: dict[str, Path] = {}
    for name in names:
        path = Path(name).expanduser()
        if path.suffix in MODEL_SUFFIXES:
            if not path.is_file():
                raise ModelError(f"wake model {name}: no such file")
            wake[model_label(name)] = path
            continue
        found = find_model(name, dirs)
        if found is None:
            raise ModelError(
                f"wake model {name!r} not found in {', '.join(str(d) for d in dirs)}: "
                "run `agentpi models download` on a machine that is online, or give a path"
            )
        wake[name] = found
    suffix = ".onnx" if all(p.suffix == ".onnx" for p in wake.values()) else ".tflite"
    if suffix == ".tflite" and any(p.suffix == ".onnx" for p in wake.values()):
        raise ModelError("wake models: use all .tflite or all .onnx files, not both")
    features = [find_model(name, dirs, suffix) for name in FEATURE_MODELS]
    if features[0] is None or features[1] is None:
        raise ModelError(
            f"wake feature models ({', '.join(n + suffix for n in FEATURE_MODELS)}) not found in "
            f"{', '.join(str(d) for d in dirs)}: run `agentpi models download`"
        )
    for path in [*wake.values(), features[0], features[1]]:
        check_model_file(path)
    return ModelFiles(wake, features[0], features[1])


def check_model_file(path: Path) -> None:
    """Refuse a file that is not a model before a native loader sees it: TensorFlow Lite
    crashes the whole process on some malformed files instead of raising."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except OSError as exc:
        raise ModelError(f"wake model {path}: {exc.strerror or exc}") from None
    if path.suffix == ".tflite" and head[4:8] != b"TFL3":
        raise ModelError(f"wake model {path}: not a TensorFlow Lite model (a cut-short download?)")


def download(names: list[str], target: Path) -> list[Path]:
    """Fetch openWakeWord's feature models and ``names`` (all pre-trained ones if empty)."""
    try:
        from openwakeword.utils import download_models
    except ImportError:
        raise ModelError(
            "downloading needs the openwakeword package (Python 3.11 and older); on newer Python"
            " the models bundled with pyopen-wakeword are used, or copy .tflite files into "
            f"{target}"
        ) from None
    target.mkdir(parents=True, exist_ok=True)
    try:
        download_models(model_names=names, target_directory=str(target))
    except Exception as exc:  # requests raises a zoo of network errors
        raise ModelError(f"downloading wake models into {target} failed: {exc}") from None
    return sorted(p for p in target.iterdir() if p.suffix in MODEL_SUFFIXES)
