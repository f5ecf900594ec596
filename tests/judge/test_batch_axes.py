"""A failure at another batch size is blamed on a frozen axis only when shapes can explain it."""

from __future__ import annotations

import numpy as np

from onnxgate.judge.batch_axes import batch_error

INPUTS = [{"name": "x", "type": "float", "shape": ["batch", 4]}]
SAMPLE = {"x": np.zeros((8, 4), np.float32)}
ONE = {"x": np.zeros((1, 4), np.float32)}


def test_shape_error_at_another_batch_names_the_frozen_graph():
    msg = batch_error("ONNX Runtime failed to run the model: Reshape: input shape mismatch", INPUTS, ONE, SAMPLE)
    assert "frozen at the export batch size 8" in msg


def test_worker_crash_is_not_blamed_on_shapes():
    crash = "ONNX Runtime crashed with SIGSEGV while running 'm.onnx'; the worker was restarted"
    assert batch_error(crash, INPUTS, ONE, SAMPLE) == crash
    hang = "ONNX Runtime did not finish running 'm.onnx' within 5s; the worker was killed"
    assert batch_error(hang, INPUTS, ONE, SAMPLE) == hang


def test_load_failure_is_not_blamed_on_shapes():
    load = "ONNX Runtime could not load the model: NOT_IMPLEMENTED : Could not find an implementation for Mul(14)"
    assert batch_error(load, INPUTS, ONE, SAMPLE) == load
