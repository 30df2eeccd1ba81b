"""A TensorFlow Lite interpreter over the TFLite C library, through ctypes.

pyopen-wakeword ships ``libtensorflowlite_c.so`` for every platform and Python it installs on
(tflite-runtime stops at Python 3.11), so this binding runs the wake models everywhere without
importing any wake-word package. It asks for the XNNPACK delegate itself, with one thread: the
library does not apply it on its own, which is why pyopen-wakeword's own loop costs twice the CPU
per second of audio that openWakeWord's spends on tflite-runtime.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from agentpi.wake.models import ModelError

LIBRARY_NAME = "libtensorflowlite_c.so"
_OK = 0


class _Quantization(ctypes.Structure):
    _fields_ = [("scale", ctypes.c_float), ("zero_point", ctypes.c_int32)]


TENSOR_TYPES: dict[int, type[np.generic]] = {1: np.float32, 3: np.uint8, 9: np.int8}
"""TfLiteType -> the array type of its data (the types the wake models use)."""


class _XnnpackOptions(ctypes.Structure):
    # Only the first two fields are ours to set; the rest of the struct (its size differs between
    # TFLite releases) is left as the library's default fills it, with room to spare.
    _fields_ = [
        ("num_threads", ctypes.c_int32),
        ("flags", ctypes.c_uint32),
        ("rest", ctypes.c_byte * 240),
    ]


def library_path() -> Path:
    spec = importlib.util.find_spec("pyopen_wakeword")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("the TFLite C library comes with pyopen-wakeword, which is not installed")
    path = Path(next(iter(spec.submodule_search_locations)), "lib", LIBRARY_NAME)
    if not path.is_file():
        raise ModelError(f"pyopen-wakeword has no {LIBRARY_NAME} for this platform")
    return path


@cache
def _library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(library_path()))
    p, i32, size = ctypes.c_void_p, ctypes.c_int32, ctypes.c_size_t
    signatures: dict[str, tuple[object, list[object]]] = {
        "TfLiteModelCreateFromFile": (p, [ctypes.c_char_p]),
        "TfLiteModelDelete": (None, [p]),
        "TfLiteInterpreterOptionsCreate": (p, []),
        "TfLiteInterpreterOptionsDelete": (None, [p]),
        "TfLiteInterpreterOptionsSetNumThreads": (None, [p, i32]),
        "TfLiteInterpreterOptionsAddDelegate": (None, [p, p]),
        "TfLiteXNNPackDelegateOptionsDefault": (_XnnpackOptions, []),
        "TfLiteXNNPackDelegateCreate": (p, [ctypes.POINTER(_XnnpackOptions)]),
        "TfLiteXNNPackDelegateDelete": (None, [p]),
        "TfLiteInterpreterCreate": (p, [p, p]),
        "TfLiteInterpreterDelete": (None, [p]),
        "TfLiteInterpreterResizeInputTensor": (i32, [p, i32, ctypes.POINTER(i32), i32]),
        "TfLiteInterpreterAllocateTensors": (i32, [p]),
        "TfLiteInterpreterGetInputTensor": (p, [p, i32]),
        "TfLiteInterpreterGetOutputTensor": (p, [p, i32]),
        "TfLiteInterpreterInvoke": (i32, [p]),
        "TfLiteTensorNumDims": (i32, [p]),
        "TfLiteTensorDim": (i32, [p, i32]),
        "TfLiteTensorByteSize": (size, [p]),
        "TfLiteTensorCopyFromBuffer": (i32, [p, p, size]),
        "TfLiteTensorCopyToBuffer": (i32, [p, p, size]),
        "TfLiteTensorType": (i32, [p]),
        "TfLiteTensorQuantizationParams": (_Quantization, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(lib, name)
        function.restype = restype
        function.argtypes = argtypes
    return lib


@contextlib.contextmanager
def _native_stderr(messages: list[str]) -> Iterator[None]:
    """What the library writes on fd 2 while loading ("INFO: Created TensorFlow Lite XNNPACK
    delegate", its reasons for refusing a model) is kept for our own message, not the journal."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read(4096).decode(errors="replace")
            messages.extend(line for line in text.splitlines() if not line.startswith("INFO:"))


class CInterpreter:
    """One model on one thread, with XNNPACK unless told not to; tensors of the types in
    ``TENSOR_TYPES`` in and out (quantized ones with their scale and zero point)."""

    def __init__(
        self, model_path: Path, input_shape: tuple[int, ...] | None = None, xnnpack: bool = True
    ) -> None:
        lib = self._lib = _library()
        self._interpreter: int | None = None
        self._delegate: int | None = None
        self._model: int | None = lib.TfLiteModelCreateFromFile(str(model_path).encode())
        if not self._model:
            raise ModelError(f"wake model {model_path}: TensorFlow Lite cannot read it")
        options = lib.TfLiteInterpreterOptionsCreate()
        delegate_options = lib.TfLiteXNNPackDelegateOptionsDefault()
        delegate_options.num_threads = 1
        lib.TfLiteInterpreterOptionsSetNumThreads(options, 1)
        messages: list[str] = []
        with _native_stderr(messages):
            if xnnpack:
                self._delegate = lib.TfLiteXNNPackDelegateCreate(ctypes.byref(delegate_options))
            if self._delegate:
                lib.TfLiteInterpreterOptionsAddDelegate(options, self._delegate)
            self._interpreter = lib.TfLiteInterpreterCreate(self._model, options)
        lib.TfLiteInterpreterOptionsDelete(options)
        if not self._interpreter:
            self.close()
            why = f": {messages[-1]}" if messages else ""
            raise ModelError(f"wake model {model_path}: TensorFlow Lite cannot run it{why}")
        self._input = self._output = None
        self.resize(input_shape)

    def resize(self, input_shape: tuple[int, ...] | None) -> None:
        lib = self._lib
        if input_shape is not None:
            dims = (ctypes.c_int32 * len(input_shape))(*input_shape)
            if (
                lib.TfLiteInterpreterResizeInputTensor(self._interpreter, 0, dims, len(input_shape))
                != _OK
            ):
                raise ModelError(f"a wake model does not take input of shape {input_shape}")
        if lib.TfLiteInterpreterAllocateTensors(self._interpreter) != _OK:
            raise ModelError("TensorFlow Lite could not allocate a wake model's tensors")
        self._input = lib.TfLiteInterpreterGetInputTensor(self._interpreter, 0)
        self._output = lib.TfLiteInterpreterGetOutputTensor(self._interpreter, 0)
        self.input_shape = self._shape(self._input)
        self.output_shape = self._shape(self._output)
        self.input_type = self._type(self._input)
        self.output_type = self._type(self._output)
        quantization = lib.TfLiteTensorQuantizationParams(self._input)
        self.input_quantization = (float(quantization.scale), int(quantization.zero_point))
        quantization = lib.TfLiteTensorQuantizationParams(self._output)
        self.output_quantization = (float(quantization.scale), int(quantization.zero_point))

    def _type(self, tensor: int | None) -> type[np.generic]:
        code = self._lib.TfLiteTensorType(tensor)
        if code not in TENSOR_TYPES:
            raise ModelError(
                f"a wake model has a tensor of a type this runtime does not take ({code})"
            )
        return TENSOR_TYPES[code]

    def _shape(self, tensor: int | None) -> tuple[int, ...]:
        lib = self._lib
        return tuple(lib.TfLiteTensorDim(tensor, d) for d in range(lib.TfLiteTensorNumDims(tensor)))

    def run(self, data: npt.NDArray[Any]) -> npt.NDArray[Any]:
        """The output for ``data`` (converted to the input's type), in the output's type."""
        lib = self._lib
        data = np.ascontiguousarray(data, dtype=self.input_type)
        if lib.TfLiteTensorCopyFromBuffer(self._input, data.ctypes.data, data.nbytes) != _OK:
            raise ModelError(f"wake model input of {data.shape} does not fit {self.input_shape}")
        if lib.TfLiteInterpreterInvoke(self._interpreter) != _OK:
            raise ModelError("a wake model failed to run")
        out = np.empty(self.output_shape, dtype=self.output_type)
        if lib.TfLiteTensorCopyToBuffer(self._output, out.ctypes.data, out.nbytes) != _OK:
            raise ModelError(f"a wake model's output is not of shape {self.output_shape}")
        return out

    def close(self) -> None:
        lib = self._lib
        if self._interpreter:
            lib.TfLiteInterpreterDelete(self._interpreter)
            self._interpreter = None
        if self._delegate:
            lib.TfLiteXNNPackDelegateDelete(self._delegate)
            self._delegate = None
        if self._model:
            lib.TfLiteModelDelete(self._model)
            self._model = None

    def __del__(self) -> None:
        if hasattr(self, "_lib"):  # not when the library itself failed to load
            self.close()
