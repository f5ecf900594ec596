"""Replayable evidence in the ONNX model-zoo format: ``test_data_set_N/{input,output}_K.pb``.

Inputs and the ORIGINAL framework's outputs, as TensorProto files named by the ONNX
graph's input/output names, so anyone can re-verify an ONNX file with ONNX Runtime alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from onnxgate._io import write_atomic
from onnxgate.inputs.samples import read_test_data_dir


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


def write_evidence(
    directory: str | Path,
    sets: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]],
) -> list[Path]:
    """``directory/test_data_set_N/`` for each (inputs, outputs) pair, N from 0.

    Stale ``test_data_set_N`` directories beyond the new ones would be replayed as if
    they belonged to this model, so their .pb files are removed.
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    written = [write_test_data_set(root / f"test_data_set_{i}", ins, outs) for i, (ins, outs) in enumerate(sets)]
    keep = set(written)
    for old in root.glob("test_data_set_*"):
        if old.is_dir() and old not in keep:
            for pb in old.glob("*.pb"):
                pb.unlink()
    return written


def find_test_data_sets(directory: str | Path) -> list[Path]:
    """The model-zoo data sets under ``directory`` (or ``directory`` itself when it is one), in N order."""
    from onnxgate.errors import SampleError

    d = Path(directory)
    if not d.is_dir():
        raise SampleError(f"evidence {str(d)!r} is not a directory", "pass the directory written by --save-evidence")
    if any(d.glob("input_*.pb")):
        return [d]

    def index(p: Path) -> int:
        tail = p.name.rsplit("_", 1)[-1]
        return int(tail) if tail.isdigit() else 1 << 30

    sets = sorted((p for p in d.glob("test_data_set_*") if p.is_dir() and any(p.glob("input_*.pb"))), key=index)
    if not sets:
        raise SampleError(
            f"evidence directory {str(d)!r} holds no test_data_set_N/ with input_K.pb files",
            "pass the directory written by --save-evidence (or a model-zoo model directory)",
        )
    for s in sets:
        if not any(s.glob("output_*.pb")):
            raise SampleError(f"{str(s)!r} has inputs but no output_K.pb files", "re-create it with --save-evidence")
    return sets


def check_evidence_dir(path: str | Path | None) -> Path | None:
    """Fail before any work if ``--save-evidence DIR`` cannot be created or written."""
    import os

    from onnxgate.errors import OutputPathError

    if path is None:
        return None
    d = Path(path)
    if d.exists() and not d.is_dir():
        raise OutputPathError(f"cannot write evidence to {str(d)!r}: it is a file", "give a directory path")
    parent = d if d.exists() else (d.parent if str(d.parent) else Path("."))
    if not parent.is_dir():
        raise OutputPathError(
            f"cannot write evidence to {str(d)!r}: directory {str(parent)!r} does not exist",
            "create it first or choose another path",
        )
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write evidence to {str(d)!r}: not writable", "choose another path")
    return d
