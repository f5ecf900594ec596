"""A failure at another batch size is blamed on a frozen axis only when shapes can explain it."""

from __future__ import annotations

import numpy as np

from onnxgate.judge.batch_axes import batch_error
from onnxgate.runtime.runner import RunError

INPUTS = [{"name": "x", "type": "float", "shape": ["batch", 4]}]
SAMPLE = {"x": np.zeros((8, 4), np.float32)}
ONE = {"x": np.zeros((1, 4), np.float32)}


def test_shape_error_at_another_batch_names_the_frozen_graph():
    msg = batch_error("ONNX Runtime failed to run the model: Reshape: input shape mismatch", INPUTS, ONE, SAMPLE)
    assert "frozen at the export batch size 8" in msg


def test_shape_error_as_a_run_error_names_the_frozen_graph():
    exc = RunError("ONNX Runtime failed to run the model: Reshape: input shape mismatch", "run")
    assert "frozen at the export batch size 8" in batch_error(exc, INPUTS, ONE, SAMPLE)


def test_worker_crash_is_not_blamed_on_shapes():
    for kind in ("crash", "timeout", "memory"):
        exc = RunError("the worker went away while running 'm.onnx'", kind)  # the kind decides, not the words
        assert batch_error(exc, INPUTS, ONE, SAMPLE) == str(exc)


def test_load_failure_is_not_blamed_on_shapes():
    exc = RunError("ONNX Runtime could not load the model: NOT_IMPLEMENTED : Could not find an implementation for Mul(14)", "load")
    assert batch_error(exc, INPUTS, ONE, SAMPLE) == str(exc)
