"""Shared by the ``tensorflow`` and ``keras`` converters: quiet TensorFlow imports,
input specs, sample mapping and ONNX output renaming.

TensorFlow writes C++ log lines to file descriptor 2 while it loads (oneDNN notices,
absl's "before InitializeLog" warning) that ``TF_CPP_MIN_LOG_LEVEL`` does not stop;
they would bury onnxgate's one-line messages, so the import runs with fd 2 pointed
at /dev/null (unless the user set ``TF_CPP_MIN_LOG_LEVEL`` below 3 to see them).
Nothing here imports TensorFlow at module level.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from onnxgate._util import installed_versions, one_line  # noqa: F401  (one_line: used as _tf.one_line)
from onnxgate.errors import FrameworkMissingError, SampleError

INSTALL_HINT = "pip install 'onnxgate[tensorflow]'"


# A user who sets TF_CPP_MIN_LOG_LEVEL below 3 wants TensorFlow's logs: leave fd 2 alone.
_SHOW_TF_LOGS = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3") != "3"


@contextmanager
def quiet_stderr() -> Iterator[None]:
    """Point fd 2 at /dev/null for the duration (C++ logging bypasses sys.stderr)."""
    if _SHOW_TF_LOGS:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _quiet_python_loggers() -> None:
    for name in ("tensorflow", "tf2onnx", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def import_tf() -> Any:
    """``tensorflow``, imported once with its log noise silenced."""
    if "tensorflow" in sys.modules and hasattr(sys.modules["tensorflow"], "saved_model"):
        _quiet_python_loggers()
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        with quiet_stderr():
            import tensorflow as tf
    except ImportError as exc:
        raise FrameworkMissingError(f"TensorFlow is not installed ({exc})", INSTALL_HINT) from None
    _quiet_python_loggers()
    tf.get_logger().setLevel(logging.ERROR)
    return tf


def import_keras() -> Any:
    import_tf()
    try:
        import keras
    except ImportError as exc:
        raise FrameworkMissingError(f"Keras 3 is not installed ({exc})", INSTALL_HINT) from None
    return keras


def import_tf2onnx() -> Any:
    import_tf()
    try:
        with quiet_stderr():
            import tf2onnx
    except ImportError as exc:
        raise FrameworkMissingError(f"tf2onnx is not installed ({exc})", INSTALL_HINT) from None
    _quiet_python_loggers()
    return tf2onnx


def default_opset() -> int:
    """The newest opset both tf2onnx and the installed onnx know."""
    import onnx

    tf2onnx = import_tf2onnx()
    return min(max(tf2onnx.constants.OPSET_TO_IR_VERSION), int(onnx.defs.onnx_opset_version()))


def versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    return installed_versions("tensorflow", "tensorflow-cpu", "keras", "tf2onnx", *extra)


# -- input specs and samples ------------------------------------------------------------


@dataclass(frozen=True)
class InputSpec:
    """One model input as the ONNX graph will name it; ``None`` in ``shape`` is dynamic."""

    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name}: {self.dtype}[{dims}]"


def feeds_from_sample(specs: list[InputSpec], sample: Any) -> dict[str, np.ndarray]:
    """Map a Sample onto the inputs: one array for one input, or arrays named as the inputs."""
    where = sample.path or "the sample"
    names = [s.name for s in specs]
    if sample.kind == "array" or (len(specs) == 1 and len(sample.arrays) == 1):
        if len(specs) != 1:
            raise SampleError(
                f"{where} holds one array but the model has {len(specs)} inputs {names}",
                "save one array per input with numpy.savez(path, " + ", ".join(f"{n}=..." for n in names) + ")",
            )
        (arr,) = sample.arrays.values()
        return {specs[0].name: _fit(specs[0], arr, where)}
    if sample.kind == "table" and len(specs) == 1 and len(specs[0].shape) == 2 and specs[0].name not in sample.arrays:
        columns = list(sample.arrays.values())
        if all(c.dtype.kind in "fiub" for c in columns):  # a CSV of feature columns -> one (rows, features) matrix
            return {specs[0].name: _fit(specs[0], np.column_stack(columns), where)}
    missing = [n for n in names if n not in sample.arrays]
    if missing:
        raise SampleError(
            f"{where} lacks input(s) {missing}; the model's inputs are {names} and the sample has {list(sample.arrays)}",
            "name the arrays in the .npz after the model's inputs",
        )
    return {s.name: _fit(s, sample.arrays[s.name], f"{where}[{s.name}]") for s in specs}


def _fit(spec: InputSpec, arr: np.ndarray, where: str) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim != len(spec.shape):
        raise SampleError(
            f"{where} has shape {list(arr.shape)}; input {spec.describe()} needs {len(spec.shape)} dimensions",
            "include the batch dimension, e.g. x[None] for one example",
        )
    bad = [i for i, (d, n) in enumerate(zip(spec.shape, arr.shape)) if d is not None and d != n]
    if bad:
        raise SampleError(
            f"{where} has shape {list(arr.shape)}; input {spec.describe()} fixes dimension(s) {bad}",
            "pass a sample with the shape the model was built for",
        )
    if arr.dtype == spec.dtype:
        return np.ascontiguousarray(arr)
    if spec.dtype.kind in "iu" and arr.dtype.kind not in "iub":
        raise SampleError(
            f"{where} holds {arr.dtype} values; input {spec.describe()} takes integers (token ids)",
            f"save the sample as {spec.dtype}",
        )
    if spec.dtype.kind in "iu" and arr.size and (arr.min() < np.iinfo(spec.dtype).min or arr.max() > np.iinfo(spec.dtype).max):
        raise SampleError(f"{where} has values outside {spec.dtype}", f"save the sample as {spec.dtype}")
    if arr.dtype.kind not in "fiub":
        raise SampleError(f"{where} holds {arr.dtype} values; input {spec.describe()} takes numbers", "pass a numeric array")
    return np.ascontiguousarray(arr.astype(spec.dtype))


def synthesize(specs: list[InputSpec], options: dict[str, Any], *, int_high: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """Seeded inputs from the specs through the shared synthesiser (same flags as every framework)."""
    from onnxgate.inputs.synthesize import InputSpec as SynthSpec, synthesize_from_options

    int_high = int_high or {}
    synth = [
        SynthSpec(s.name, s.dtype, s.shape, low=0 if s.name in int_high else None, high=int_high.get(s.name), kind="ids" if s.name in int_high else None)
        for s in specs
    ]
    return synthesize_from_options(synth, options)


# -- ONNX graph edits --------------------------------------------------------------------


def rename_outputs(model: Any, mapping: dict[str, str]) -> None:
    """Rename graph outputs in place (every producer and consumer of the tensor follows)."""
    if not mapping or all(k == v for k, v in mapping.items()):
        return
    graph = model.graph
    taken = {n for node in graph.node for n in node.output} | {i.name for i in graph.input} | {i.name for i in graph.initializer}
    taken -= set(mapping)  # names being renamed away are free
    clash = [new for old, new in mapping.items() if new != old and new in taken]
    if clash:
        from onnxgate.errors import OutputMismatchError

        raise OutputMismatchError(
            f"cannot name the ONNX outputs {clash}: the converted graph already uses those names for other tensors",
            "rename the model's outputs (layer or signature names) and convert again",
        )
    for out in graph.output:
        if out.name in mapping:
            out.name = mapping[out.name]
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
    for vi in graph.value_info:
        if vi.name in mapping:
            vi.name = mapping[vi.name]
