"""Which TensorFlow Lite runtime runs the wake models.

``tflite-runtime`` (Python 3.11 and older) applies XNNPACK itself and loads in about 3 MB; the
TFLite C library pyopen-wakeword ships (every Python) is reached through ``tflite_c``. Never both
in one process: the two copies of TensorFlow Lite abort each other at random.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Literal

import numpy as np

from agentpi.wake.features import FloatArray, Interpreter, InterpreterFactory
from agentpi.wake.models import ModelError

RuntimeChoice = Literal["tflite-runtime", "tflite-c"]


class RuntimeInterpreter:
    """tflite-runtime's interpreter, one thread (its default XNNPACK delegate included)."""

    def __init__(self, model_path: Path, input_shape: tuple[int, ...] | None = None) -> None:
        from tflite_runtime.interpreter import Interpreter as TfliteInterpreter

        try:
            self._interpreter: Any = TfliteInterpreter(model_path=str(model_path), num_threads=1)
        except ValueError as exc:
            raise ModelError(f"wake model {model_path}: {exc}") from None
        self.resize(input_shape)

    def resize(self, input_shape: tuple[int, ...] | None) -> None:
        if input_shape is not None:
            self._interpreter.resize_tensor_input(0, list(input_shape), strict=True)
        self._interpreter.allocate_tensors()
        input_details = self._interpreter.get_input_details()[0]
        output_details = self._interpreter.get_output_details()[0]
        self._input_index = input_details["index"]
        self._output_index = output_details["index"]
        self.input_shape = tuple(int(d) for d in input_details["shape"])
        self.output_shape = tuple(int(d) for d in output_details["shape"])

    def run(self, data: FloatArray) -> FloatArray:
        self._interpreter.set_tensor(self._input_index, np.ascontiguousarray(data, np.float32))
        self._interpreter.invoke()
        out: FloatArray = self._interpreter.get_tensor(self._output_index)
        return out


def _c_interpreter(path: Path, shape: tuple[int, ...] | None) -> Interpreter:
    from agentpi.wake.tflite_c import CInterpreter

    return CInterpreter(path, shape)


def _runtime_interpreter(path: Path, shape: tuple[int, ...] | None) -> Interpreter:
    return RuntimeInterpreter(path, shape)


def interpreter_factory(runtime: RuntimeChoice) -> InterpreterFactory:
    if runtime == "tflite-runtime":
        if "pyopen_wakeword" in sys.modules or "agentpi.wake.tflite_c" in sys.modules:
            raise ModelError("the TFLite C library is already loaded in this process")
        return _runtime_interpreter
    if "tflite_runtime.interpreter" in sys.modules:
        raise ModelError("tflite-runtime is already loaded in this process")
    return _c_interpreter
