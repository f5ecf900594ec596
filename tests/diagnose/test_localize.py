"""--localize: the first ONNX node whose output diverges, found in memory-bounded batches."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from onnxgate.diagnose.localize import _batches, localize


def _chain(layers=6, width=16, seed=0):
    rng = np.random.default_rng(seed)
    nodes, inits, prev = [], [], "x"
    for i in range(layers):
        inits.append(numpy_helper.from_array((rng.standard_normal((width, width)) / 4).astype(np.float32), f"W{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"mm{i}"], name=f"layer{i}/MatMul"))
        nodes.append(helper.make_node("Tanh", [f"mm{i}"], [f"t{i}"], name=f"layer{i}/Tanh"))
        prev = f"t{i}"
    graph = helper.make_graph(
        nodes, "chain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", width])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _perturb(model, name, delta=0.5):
    bad = onnx.ModelProto()
    bad.CopyFrom(model)
    init = next(i for i in bad.graph.initializer if i.name == name)
    w = numpy_helper.to_array(init).copy()
    w.flat[0] += delta
    init.CopyFrom(numpy_helper.from_array(w, name))
    return bad


FEEDS = {"x": np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)}


@pytest.mark.parametrize("layer", [0, 3, 5])
def test_names_the_node_whose_weights_were_perturbed(layer):
    good = _chain()
    loc = localize(_perturb(good, f"W{layer}"), FEEDS, reference=good)
    d = loc.divergence
    assert d is not None and d.node == f"layer{layer}/MatMul" and d.op_type == "MatMul" and d.output == f"mm{layer}"
    assert d.max_abs_error > 0.1 and d.mismatched > 0
    assert f"'layer{layer}/MatMul' (MatMul" in loc.message()


def test_memory_bound_splits_into_batches_and_finds_the_same_node():
    good = _chain()
    bad = _perturb(good, "W4")
    one = localize(bad, FEEDS, reference=good)
    many = localize(bad, FEEDS, reference=good, max_bytes=4 * 16 * 4)  # one (4, 16) float tensor per batch
    assert one.batches == 1 and many.batches > 1
    assert one.divergence.node == many.divergence.node == "layer4/MatMul"


def test_bisection_keeps_graph_order():
    names = [f"t{i}" for i in range(10)]
    batches = _batches(names, {n: 10 for n in names}, 30)
    assert [n for b in batches for n in b] == names and all(sum(10 for _ in b) <= 30 for b in batches)


@pytest.mark.parametrize("reference", ["ort-noopt", "onnx.reference"])
def test_a_healthy_graph_has_no_divergence(reference):
    loc = localize(_chain(), FEEDS, reference=reference)
    assert loc.divergence is None and loc.compared == 12


# -- from the command line: a scikit-learn MLP whose ONNX file was tampered with ---------------


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier

    from onnxgate.cli import main

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("localize")
    model = MLPClassifier(hidden_layer_sizes=(8, 6), solver="lbfgs", max_iter=500, random_state=0).fit(X / 8, y)
    sio.dump(model, d / "mlp.skops")
    np.save(d / "x.npy", (X[::5] / 8).astype(np.float32))
    assert main(["-q", "run", str(d / "mlp.skops"), "--sample", str(d / "x.npy"), "-o", str(d / "mlp.onnx")]) == 0
    return d


def _tamper_second_layer(d):
    model = onnx.load(str(d / "mlp.onnx"))
    matmuls = [n for n in model.graph.node if n.op_type in ("MatMul", "Gemm")]
    target = matmuls[1]
    weight = next(i for i in model.graph.initializer if i.name in target.input)
    w = numpy_helper.to_array(weight).copy()
    w[:, 0] += 2.0
    weight.CopyFrom(numpy_helper.from_array(w, weight.name))
    onnx.save(model, str(d / "bad.onnx"))
    return target.name


def test_cli_localize_names_the_tampered_node(cli, mlp, tmp_path):
    node = _tamper_second_layer(mlp)
    report = tmp_path / "r.json"
    res = cli("-q", "validate", mlp / "mlp.skops", mlp / "bad.onnx", "--sample", mlp / "x.npy", "--localize", "--report", report)
    assert res.code == 1
    (finding,) = [f for f in json.loads(report.read_text())["findings"] if f["check"] == "localize"]
    assert f"first divergent node: {node!r}" in finding["message"]
    assert "fresh conversion" in finding["message"]
    assert "localize" in res.out
    # the untampered file passes and has nothing to localise
    res = cli("-q", "validate", mlp / "mlp.skops", mlp / "mlp.onnx", "--sample", mlp / "x.npy", "--localize", "--report", report)
    assert res.code == 0 and not [f for f in json.loads(report.read_text())["findings"] if f["check"] == "localize"]


def test_torch_divergence_maps_back_to_the_module(tmp_path):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU())
            self.head = torch.nn.Linear(5, 2)

        def forward(self, x):
            return self.head(self.enc(x))

    torch.manual_seed(0)
    good = torch.onnx.export(Net().eval(), (torch.randn(3, 4),), dynamo=True, verbose=False).model_proto
    head = next(n for n in good.graph.node if "head" in dict((p.key, p.value) for p in n.metadata_props).get("namespace", ""))
    bias = next(i for i in good.graph.initializer if i.name in head.input and len(i.dims) == 1)
    bad = _perturb(good, bias.name, delta=3.0)
    loc = localize(bad, {"x": np.ones((3, 4), np.float32)}, reference=good)
    assert loc.divergence.node == head.name
    assert loc.divergence.module == "head (torch.nn.modules.linear.Linear)"
    assert "module 'head (torch.nn.modules.linear.Linear)'" in loc.message()
