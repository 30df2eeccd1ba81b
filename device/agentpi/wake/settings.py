"""The [wake] section of the config: which phrases, how sure, and which agent each one opens."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from agentpi.settings.typed import SettingsError

EngineChoice = Literal[
    "auto", "tflite", "tflite-runtime", "openwakeword", "pyopen-wakeword", "microwakeword"
]
MODEL_SUFFIXES = (".tflite", ".onnx")
"""openWakeWord's model files; a microWakeWord model is named by its ``.json`` manifest."""
MICRO_SUFFIX = ".json"
WAKE_RANGES: dict[str, tuple[float, float, str]] = {
    "wake.threshold": (0.01, 0.99, "score"),
    "wake.patience": (1, 50, "frames"),
    "wake.refractory_s": (0, 60, "seconds"),
}
"""(lowest, highest, unit) of the section's numbers, checked at load with every other range."""


def model_label(model: str) -> str:
    """The name a wake model's scores (and its detections) carry, and that ``[wake.agents]``
    uses: its name, or a path's stem."""
    return Path(model).stem if model.endswith((*MODEL_SUFFIXES, MICRO_SUFFIX)) else model


@dataclass(frozen=True)
class WakeAgentConfig:
    """The agent one wake word opens; what is left unset comes from [agent] and
    [conversation.overrides]."""

    agent_id: str = ""
    signed_url_endpoint: str = ""
    first_message: str | None = None
    language: str = ""
    prompt: str = ""
    llm: str = ""
    voice_id: str = ""
    speed: float | None = None
    stability: float | None = None
    similarity_boost: float | None = None
    keywords: tuple[str, ...] = ()
    text_only: bool | None = None
    branch_id: str = ""
    environment: str = ""
    starting_workflow_node_id: str = ""


@dataclass(frozen=True)
class WakeConfig:
    models: tuple[str, ...] = ("hey_jarvis",)
    """openWakeWord model names (hey_jarvis, alexa, hey_mycroft, ...) or .tflite/.onnx paths;
    with engine = "microwakeword", its model names (okay_nabu, hey_jarvis, alexa, hey_mycroft)
    or .json manifest paths."""
    threshold: float = 0.5
    patience: int = 1
    """Frames (80 ms each) in a row at or above the threshold before it fires."""
    refractory_s: float = 2.0
    """After a detection, no other for this long: one utterance, one trigger."""
    engine: EngineChoice = "auto"
    models_dir: str = ""
    agents: dict[str, WakeAgentConfig] = field(default_factory=dict)
    """Model name (or a path's file name without .tflite) -> the agent that phrase opens, e.g.
    [wake.agents.alexa] agent_id = "..." for a second agent on the same listener."""


def check_wake_agents(wake: WakeConfig) -> None:
    labels = [model_label(model) for model in wake.models]
    for label in wake.agents:
        if label not in labels:
            raise SettingsError(
                f"wake.agents.{label}: not one of wake.models ({', '.join(labels) or 'none'})"
            )
