"""Shape sweep: every dynamic axis at a second size; a frozen axis fails with the axis named."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxgate.converters.base import Converter
from onnxgate.inputs.evidence import write_evidence
from onnxgate.inputs.sweep import axis_cases, odd_smaller, sweep_sizes

W = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)


def test_odd_smaller():
    assert [odd_smaller(n) for n in (1, 2, 3, 4, 16, 32)] == [None, None, 1, 3, 9, 17]


def test_long_axes_also_run_short():
    assert [sweep_sizes(n) for n in (2, 16, 31, 32, 33, 64)] == [[], [9], [15], [17, 8], [17, 8], [33, 8]]


def test_axis_cases_move_shared_dims_together_and_leave_fixed_ones():
    feeds = {"ids": np.zeros((2, 16), np.int64), "mask": np.ones((2, 16), np.int64), "img": np.zeros((2, 3, 8, 8), np.float32)}
    inputs = [
        {"name": "ids", "shape": ["batch", "seq"]},
        {"name": "mask", "shape": ["batch", "seq"]},
        {"name": "img", "shape": ["batch", 3, None, 8]},
    ]
    cases = {c.name: c for c in axis_cases(feeds, inputs)}
    assert set(cases) == {"seq=9", "img.axis2=5"}
    seq = cases["seq=9"]
    assert seq.feeds["ids"].shape == (2, 9) and seq.feeds["mask"].shape == (2, 9) and seq.feeds["img"].shape == (2, 3, 8, 8)
    assert "axis 1 ('seq') of input(s) 'ids', 'mask'" == seq.axis
    assert cases["img.axis2=5"].feeds["img"].shape == (2, 3, 5, 8)


# -- a graph that froze its batch size: caught through --evidence (no framework at all) ----------


def _matmul_model(frozen_batch: int | None):
    nodes = [helper.make_node("MatMul", ["x", "W"], ["h"], name="matmul")]
    inits = [numpy_helper.from_array(W, "W")]
    shape = [frozen_batch if frozen_batch else -1, 3]
    inits.append(numpy_helper.from_array(np.array(shape, np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["h", "shape"], ["y"], name="reshape_to_export_batch"))
    graph = helper.make_graph(
        nodes, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture
def evidence(tmp_path):
    x = np.random.default_rng(1).standard_normal((8, 4)).astype(np.float32)
    write_evidence(tmp_path / "ev", [({"x": x}, {"y": x.astype(np.float64) @ W.astype(np.float64)})])
    return tmp_path / "ev"


def test_dynamic_batch_passes_the_sweep(cli, evidence, tmp_path):
    onnx.save(_matmul_model(None), str(tmp_path / "ok.onnx"))
    report = tmp_path / "r.json"
    res = cli("-q", "validate", tmp_path / "ok.onnx", "--evidence", evidence, "--report", report)
    assert res.code == 0, res.err
    names = [c["name"] for c in json.loads(report.read_text())["cases"]]
    assert names == ["test_data_set_0", "test_data_set_0 batch=1", "test_data_set_0 batch=5"]


def test_frozen_batch_fails_with_the_axis_named(cli, evidence, tmp_path):
    onnx.save(_matmul_model(8), str(tmp_path / "frozen.onnx"))
    report = tmp_path / "r.json"
    res = cli("-q", "validate", tmp_path / "frozen.onnx", "--evidence", evidence, "--report", report)
    assert res.code == 1
    data = json.loads(report.read_text())
    by_name = {c["name"]: c for c in data["cases"]}
    assert by_name["test_data_set_0"]["status"] == "passed"  # fine at the export size
    error = by_name["test_data_set_0 batch=1"]["error"]
    assert "'x'" in error and "dynamic axis 0" in error and "frozen at the export batch size 8" in error


# -- a frozen sequence axis: caught through a real (numpy) framework plugin ------------------------


class SeqSum:
    """The 'framework' model: sums a (N, T, 4) sequence over time -> (N, 4)."""


class NumpyConverter(Converter):
    name = "numpy-seq-test"
    install_hint = "built into the tests"

    def accepts(self, source):
        return isinstance(source, SeqSum)

    def load(self, source, *, trust, options):
        return source

    def feeds(self, model, sample, *, options):
        return {"x": np.asarray(sample.arrays["x"], np.float32)}

    def convert(self, model, feeds, *, opset, options):
        raise NotImplementedError("validate-only test plugin")

    def reference(self, model, feeds, output_names):
        return {"y": feeds["x"].astype(np.float64).sum(axis=1)}

    def versions(self):
        return {"numpy": np.__version__}


@pytest.fixture(scope="module")
def numpy_framework():
    from onnxgate.converters.base import registry

    if NumpyConverter.name not in registry().names():
        registry().register(NumpyConverter())
    return NumpyConverter.name


def _seq_model(export_len: int | None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    if export_len is None:
        nodes = [helper.make_node("ReduceSum", ["x", "axes"], ["y"], keepdims=0, name="sum_over_time")]
        inits = [numpy_helper.from_array(np.array([1], np.int64), "axes")]
    else:  # what a tracer might produce: flatten time into features, then a fixed summing matrix
        flat = numpy_helper.from_array(np.array([-1, export_len * 4], np.int64), "flat")
        summer = numpy_helper.from_array(np.tile(np.eye(4, dtype=np.float32), (export_len, 1)), "summer")
        nodes = [
            helper.make_node("Reshape", ["x", "flat"], ["x2"], name="flatten_time"),
            helper.make_node("MatMul", ["x2", "summer"], ["y"], name="sum_over_time"),
        ]
        inits = [flat, summer]
    graph = helper.make_graph(nodes, "g", [x], [y], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _validate(model, tmp_path, framework):
    from onnxgate.pipelines.run import validate
    from onnxgate.inputs.samples import Sample

    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    x = np.random.default_rng(2).standard_normal((6, 16, 4)).astype(np.float32)
    return validate(SeqSum(), path, sample=Sample("named", {"x": x}), framework=framework)


def test_dynamic_sequence_axis_passes_at_an_odd_length(numpy_framework, tmp_path):
    report = _validate(_seq_model(None), tmp_path, numpy_framework)
    assert report.passed, report.failures()
    assert list(dict.fromkeys(c.name for c in report.cases)) == ["batch=6", "batch=1", "batch=3", "T=9"]
    assert report.cases[-1].input_shapes == {"x": [6, 9, 4]}


def test_frozen_sequence_axis_fails_with_the_axis_named(numpy_framework, tmp_path):
    report = _validate(_seq_model(16), tmp_path, numpy_framework)
    assert not report.passed
    for case in report.cases:  # at every optimisation level the validator runs
        if case.name.startswith("batch="):
            assert case.status == "passed"
        else:
            assert case.name == "T=9" and "axis 1 ('T') of input(s) 'x' is 9 instead of 16" in case.error


def test_axis_that_runs_but_answers_wrong_is_named(numpy_framework, tmp_path):
    """Sum computed as mean x export length: right at T=16 only, and no error to point at it."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "T", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])
    nodes = [
        helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0, name="mean_over_time"),
        helper.make_node("Mul", ["m", "export_len"], ["y"], name="times_export_len"),
    ]
    inits = [numpy_helper.from_array(np.array([1], np.int64), "axes"), numpy_helper.from_array(np.array(16, np.float32), "export_len")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], inits), opset_imports=[helper.make_opsetid("", 18)])
    report = _validate(model, tmp_path, numpy_framework)
    assert not report.passed
    assert {c.name for c in report.cases if c.status == "failed"} == {"T=9"}
    sweep = [f for f in report.findings if f.check == "shape-sweep"]
    assert sweep and "axis 1 ('T') of input(s) 'x' is 9 instead of 16" in sweep[0].message
