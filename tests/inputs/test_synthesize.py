"""Inputs without a sample: seeded, dtype-correct, ranged; sample-less validation end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxgate.errors import SampleError
from onnxgate.inputs.synthesize import (
    DEFAULT_BATCH,
    DEFAULT_DIM,
    InputSpec,
    edge_cases,
    parse_dims,
    parse_ranges,
    specs_from_onnx,
    synthesize_inputs,
)

SPECS = [
    InputSpec("input_ids", np.int64, ("batch", "sequence"), high=50),
    InputSpec("attention_mask", np.int64, ("batch", "sequence")),
    InputSpec("pixels", np.uint8, (None, 3, 4, 4)),
    InputSpec("x", np.float32, (None, 6)),
    InputSpec("p", np.float64, (None, 2), kind="probability"),
    InputSpec("flag", np.bool_, (None,)),
    InputSpec("city", object, (None, 1), choices=("paris", "oslo")),
]


def test_same_seed_same_bytes_other_seed_other_values():
    a = synthesize_inputs(SPECS, seed=3)
    b = synthesize_inputs(SPECS, seed=3)
    c = synthesize_inputs(SPECS, seed=4)
    for name in a:
        assert a[name].dtype == b[name].dtype and np.array_equal(a[name], b[name])
    assert not np.array_equal(a["x"], c["x"])
    assert not np.array_equal(a["input_ids"], c["input_ids"])


def test_dtypes_shapes_and_value_ranges_follow_the_specs():
    f = synthesize_inputs(SPECS, seed=0)
    assert f["input_ids"].dtype == np.int64 and f["input_ids"].shape == (DEFAULT_BATCH, DEFAULT_DIM)
    assert f["input_ids"].min() >= 0 and f["input_ids"].max() < 50  # within the embedding size
    assert f["input_ids"].max() > 10  # not stuck in the default integer range
    assert (f["attention_mask"] == 1).all()  # nothing masked
    assert f["pixels"].dtype == np.uint8 and f["pixels"].shape == (DEFAULT_BATCH, 3, 4, 4)
    assert f["x"].dtype == np.float32 and 0.5 < f["x"].std() < 1.5  # standard normal
    assert f["p"].dtype == np.float64 and f["p"].min() >= 0 and f["p"].max() <= 1
    assert f["flag"].dtype == np.bool_
    assert set(f["city"].ravel()) <= {"paris", "oslo"}


def test_dims_and_ranges_from_the_command_line_forms():
    f = synthesize_inputs(SPECS, seed=0, dims=["batch=3", "sequence=7", "pixels:0=2"], ranges=["x=5:6", "input_ids=10:12"])
    assert f["input_ids"].shape == (3, 7) and f["attention_mask"].shape == (3, 7)
    assert f["pixels"].shape[0] == 2
    assert f["x"].min() >= 5 and f["x"].max() < 6
    assert set(np.unique(f["input_ids"])) <= {10, 11}


@pytest.mark.parametrize(
    "call",
    [
        lambda: parse_dims(["batch"]),
        lambda: parse_dims(["batch=0"]),
        lambda: parse_ranges(["x=3:1"]),
        lambda: parse_ranges(["x=a:b"]),
        lambda: synthesize_inputs(SPECS, seed=0, ranges={"nope": (0, 1)}),
    ],
)
def test_bad_dim_and_range_values_are_user_errors(call):
    with pytest.raises(SampleError):
        call()


def test_edge_rows_and_edge_cases():
    f = synthesize_inputs(SPECS, seed=0, edge=True)
    assert (f["x"][0] == 0).all() and np.abs(f["x"][-1]).min() >= 1e3
    assert f["input_ids"][-1].max() == 49  # the range's end, still a valid id
    assert (f["attention_mask"] == 1).all()  # structural inputs keep their values
    cases = dict(edge_cases(synthesize_inputs(SPECS, seed=0), SPECS))
    assert (cases["edge:zeros"]["x"] == 0).all()
    assert np.abs(cases["edge:large"]["x"]).min() >= 1e3
    assert (cases["edge:large"]["attention_mask"] == 1).all()


def test_specs_from_an_onnx_signature():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["ids"], ["out"])],
        "g",
        [helper.make_tensor_value_info("ids", TensorProto.INT32, ["batch", None, 4])],
        [helper.make_tensor_value_info("out", TensorProto.INT32, None)],
    )
    (spec,) = specs_from_onnx(helper.make_model(graph))
    assert spec.name == "ids" and spec.np_dtype == np.int32 and spec.shape == ("batch", None, 4)
    assert synthesize_inputs([spec], seed=0, dims={"batch": 2})["ids"].shape == (2, DEFAULT_DIM, 4)


# -- end to end: sklearn without --sample ---------------------------------------------------


@pytest.fixture(scope="module")
def skops_model(tmp_path_factory):
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    path = tmp_path_factory.mktemp("synth") / "lr.skops"
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), path)
    return path


def test_sklearn_runs_without_a_sample_and_records_the_seed(cli, skops_model, tmp_path):
    report = tmp_path / "r.json"
    out = tmp_path / "m.onnx"
    res = cli("-q", "run", skops_model, "-o", out, "--seed", "7", "--report", report)
    assert res.code == 0, res.err
    data = json.loads(report.read_text())
    assert data["inputs"]["kind"] == "synthesised" and data["inputs"]["seed"] == 7
    assert data["inputs"]["shapes"] == {"X": [DEFAULT_BATCH, 4]}
    again = tmp_path / "r2.json"
    assert cli("-q", "run", skops_model, "--seed", "7", "--report", again).code == 0
    assert json.loads(again.read_text())["inputs"]["hash"] == data["inputs"]["hash"]
    other = tmp_path / "r3.json"
    assert cli("-q", "run", skops_model, "--seed", "8", "--report", other).code == 0
    assert json.loads(other.read_text())["inputs"]["hash"] != data["inputs"]["hash"]


def test_sample_less_validation_catches_a_perturbed_model(cli, skops_model, tmp_path):
    import onnx

    out = tmp_path / "m.onnx"
    assert cli("-q", "run", skops_model, "-o", out).code == 0
    assert cli("-q", "validate", skops_model, out).code == 0
    model = onnx.load(str(out))
    node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
    coefs = next(a for a in node.attribute if a.name == "coefficients")
    coefs.floats[0] += 3.0
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    res = cli("-q", "validate", skops_model, bad)
    assert res.code == 1 and "FAIL probabilities" in res.out


def test_torch_exported_program_without_a_sample(cli, tmp_path):
    torch = pytest.importorskip("torch")
    from onnxgate.converters.base import registry

    if "torch" not in registry().names():
        pytest.skip("no torch converter registered")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(5, 3)

        def forward(self, x):
            return torch.tanh(self.fc(x))

    torch.manual_seed(0)
    batch = torch.export.Dim("batch", min=1, max=64)
    program = torch.export.export(Net().eval(), (torch.randn(6, 5),), dynamic_shapes=({0: batch},))
    path = tmp_path / "net.pt2"
    torch.export.save(program, str(path))
    report = tmp_path / "r.json"
    res = cli("-q", "run", path, "-o", tmp_path / "net.onnx", "--report", report)
    assert res.code == 0, res.err + res.out
    data = json.loads(report.read_text())
    assert data["inputs"]["kind"] == "synthesised"
    assert {c["name"] for c in data["cases"]} >= {"batch=6", "batch=1"}
