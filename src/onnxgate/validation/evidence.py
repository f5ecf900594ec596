"""Replayable evidence in the ONNX model-zoo format: ``test_data_set_N/{input,output}_K.pb``.

Inputs and the ORIGINAL framework's outputs, as TensorProto files named by the ONNX
graph's input/output names, so anyone can re-verify an ONNX file with ONNX Runtime alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxgate._io import write_atomic
from onnxgate.validation.samples import read_test_data_dir


def _tensor_bytes(name: str, value: np.ndarray) -> bytes:
    from onnx import numpy_helper

    arr = np.asarray(value)
    if arr.dtype.kind in "OU":
        arr = arr.astype(object)
    return numpy_helper.from_array(arr, name=name).SerializeToString()


def write_test_data_set(directory: str | Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> Path:
    """Write ``input_K.pb``/``output_K.pb`` in the given (graph) order; returns the directory."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for prefix, tensors in (("input", inputs), ("output", outputs)):
        for k, (name, value) in enumerate(tensors.items()):
            write_atomic(d / f"{prefix}_{k}.pb", _tensor_bytes(name, value))
    return d


def read_test_data_set(directory: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(inputs, outputs) by name; unnamed tensors get ``input_K``/``output_K``."""
    d = Path(directory)
    inputs = {(n or f"input_{i}"): a for i, (n, a) in enumerate(read_test_data_dir(d, "input"))}
    outputs = {(n or f"output_{i}"): a for i, (n, a) in enumerate(read_test_data_dir(d, "output"))}
    return inputs, outputs
