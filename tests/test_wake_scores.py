"""Our wake pipeline scores exactly as openWakeWord's own ``Model.predict``, frame by frame.

Not marked ``realtime``: nothing here depends on speed, so `make arm64-check` runs it too, and the
aarch64 kernels (XNNPACK's NEON ones) are held to the same scores.

The device runs openWakeWord's models without importing openwakeword (``agentpi.wake.features``);
detection quality is unchanged only if every score is. Each engine runs in a process of its own
(the two TFLite libraries cannot share one), on the same clips and the same warm-up noise: speech
(the wake phrase in two voices, other sentences) and noise (room noise at -50 dBFS, loud noise).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agentpi.audio.convert import Int16Array
from agentpi.wake.features import FRAME, warmup_noise
from agentpi.wake.models import model_dirs
from tests.speech import NEGATIVES, join, speak

TOLERANCE = 1e-4
WARMUP_SEED = 7
HAS_OPENWAKEWORD = sys.version_info < (3, 12)  # tflite-runtime has no wheels past 3.11


def bundled_models() -> list[str]:
    folder = next(d for d in model_dirs() if (d / "melspectrogram.tflite").is_file())
    features = {"melspectrogram", "embedding_model"}
    return sorted(p.stem for p in folder.glob("*.tflite") if p.stem not in features)


def noise(seconds: float, dbfs: float, seed: int) -> Int16Array:
    scale = 32768 * 10 ** (dbfs / 20)
    samples = np.random.RandomState(seed).randn(int(16000 * seconds)) * scale
    return np.clip(samples, -32768, 32767).astype(np.int16)


def clip() -> Int16Array:
    audio = join(
        noise(2.0, -50, 1),
        speak("hey jarvis"),
        noise(0.5, -50, 2),
        speak("alexa what time is it", "en-gb+m3"),
        noise(0.5, -50, 3),
        speak("hey mycroft", "en-us+f2", 170),
        speak(NEGATIVES[0]),
        noise(1.0, -20, 4),
        speak("hey rhasspy", "en+m1"),
        noise(1.5, -50, 5),
    )
    return audio[: len(audio) // FRAME * FRAME]


SCORER = """
import sys
import numpy as np
import numpy.typing as npt
from agentpi.wake.models import resolve
engine, model, seed, clip_path, out_path = sys.argv[1:]
frames = np.load(clip_path).reshape(-1, 1280)
files = resolve((model,))
if engine == "openwakeword":
    from openwakeword.model import Model
    np.random.seed(int(seed))  # the noise its feature history starts with
    oww = Model(wakeword_models=[str(files.wake[model])], inference_framework="tflite",
                melspec_model_path=str(files.melspectrogram),
                embedding_model_path=str(files.embedding))
    predict = lambda frame: list(oww.predict(frame).values())[0]
else:
    from agentpi.wake.features import StreamingScorer, warmup_noise
    from agentpi.wake.interpreters import interpreter_factory
    runtime = "tflite-c" if engine.startswith("tflite+") or engine == "tflite" else "tflite-runtime"
    ours = StreamingScorer(engine, files, interpreter_factory(runtime), warmup_noise(int(seed)),
                           quiet_gate=engine.endswith("+gate"))
    predict = lambda frame: ours.predict(frame)[model]
scores, shut = [], []
for frame in frames:
    scores.append(float(predict(frame)))
    shut.append(engine != "openwakeword" and ours.gate_shut)
np.save(out_path, np.array(scores))
np.save(out_path + ".shut.npy", np.array(shut))
"""


def scores_in_child(
    engine: str, model: str, clip_path: Path, tmp_path: Path
) -> npt.NDArray[np.float64]:
    out = tmp_path / f"{engine}-{model}.npy"
    result = subprocess.run(
        [sys.executable, "-c", SCORER, engine, model, str(WARMUP_SEED), str(clip_path), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    scores: npt.NDArray[np.float64] = np.load(out)
    return scores


def shut_in_child(engine: str, model: str, tmp_path: Path) -> npt.NDArray[np.bool_]:
    """Where a gated engine (``tflite+gate``) scored nothing in its ``scores_in_child`` run."""
    shut: npt.NDArray[np.bool_] = np.load(tmp_path / f"{engine}-{model}.npy.shut.npy")
    return shut


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scores") / "clip.npy"
    np.save(path, clip())
    return path


def test_the_warmup_noise_is_openwakewords() -> None:
    np.random.seed(WARMUP_SEED)
    theirs = np.random.randint(-1000, 1000, 16000 * 4).astype(np.int16)
    assert np.array_equal(warmup_noise(WARMUP_SEED), theirs)


@pytest.mark.skipif(not HAS_OPENWAKEWORD, reason="openwakeword installs on Python 3.11 only")
@pytest.mark.parametrize("model", bundled_models())
def test_scores_equal_openwakewords_frame_by_frame(
    model: str, clip_file: Path, tmp_path: Path
) -> None:
    reference = scores_in_child("openwakeword", model, clip_file, tmp_path)
    for engine in ("tflite", "tflite-runtime"):
        ours = scores_in_child(engine, model, clip_file, tmp_path)
        assert len(ours) == len(reference)
        worst = int(np.argmax(np.abs(ours - reference)))
        assert abs(ours[worst] - reference[worst]) <= TOLERANCE, (
            f"{engine}, {model}: frame {worst} scored {ours[worst]:.6f}, "
            f"openWakeWord {reference[worst]:.6f}"
        )
    assert reference[5:].std() > 0, "the clip never moved the scores"
    if model in ("hey_jarvis", "alexa"):  # the phrases espeak says well enough to fire
        assert reference.max() > 0.5, f"{model} never fired on the clip"


def test_the_first_five_scores_are_zero_after_a_reset_as_openwakewords_are(
    clip_file: Path,
) -> None:
    from agentpi.wake.engines import open_engine
    from agentpi.wake.models import resolve

    engine = open_engine("tflite", resolve(("hey_jarvis",)))
    frames = np.load(clip_file).reshape(-1, FRAME)
    first = [engine.predict(frame)["hey_jarvis"] for frame in frames[:8]]
    engine.reset()
    again = [engine.predict(frame)["hey_jarvis"] for frame in frames[:8]]
    assert first[:5] == [0.0] * 5 and again[:5] == [0.0] * 5
    assert first[5:] == again[5:]  # a reset starts from the same warm-up history
