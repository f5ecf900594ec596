"""Static checks before anything runs: checker, shape inference, opset/IR vs ORT releases, domains, mobile."""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper

from tests.conftest import assert_user_error


def _model(nodes, *, opsets=(("", 17),), ir=9, x_shape=(None, 3), y_shape=(None, 3), initializers=()):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, list(y_shape))
    graph = helper.make_graph(nodes, "g", [x], [y], list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = ir
    return model


@pytest.fixture(scope="module")
def layernorm(tmp_path_factory):
    """A torch model exported at opset 18 whose LayerNorm becomes ONNX LayerNormalization-17."""
    torch = pytest.importorskip("torch")
    from onnxgate.pipelines.run import convert

    root = tmp_path_factory.mktemp("static")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 6), torch.nn.LayerNorm(6)).eval()
    x = torch.randn(4, 6)
    np.save(root / "x.npy", x.numpy())
    torch.export.save(torch.export.export(net, (x,)), root / "ln.pt2")
    convert(root / "ln.pt2", root / "ln.onnx", sample=root / "x.npy", opset=18)
    return root


def test_opset_newer_than_target_ort_fails_naming_the_op_and_versions(cli, layernorm, tmp_path):
    common = ["validate", layernorm / "ln.pt2", layernorm / "ln.onnx", "--sample", layernorm / "x.npy", "--static"]
    old = cli(*common, "--target-ort", "1.11.0", "--report", tmp_path / "old.json")
    assert old.code == 1, (old.out, old.err)
    rep = json.loads((tmp_path / "old.json").read_text())
    (finding,) = [f for f in rep["findings"] if f["check"] == "target ort" and "model opset" in f["message"]]
    assert finding["level"] == "error"
    assert "model opset 18 is newer than ONNX Runtime 1.11 supports (up to opset 16)" in finding["message"]
    assert "LayerNormalization-17 (new in opset 17; the target does not have it)" in finding["message"]
    assert all(c["status"] == "passed" for c in rep["cases"])  # parity itself is fine: the check is static

    ok = cli(*common, "--target-ort", "1.18", "--report", tmp_path / "ok.json")  # opset 21, IR 10
    assert ok.code == 0, (ok.out, ok.err)
    assert not [f for f in json.loads((tmp_path / "ok.json").read_text())["findings"] if f["check"] == "target ort"]


def test_bad_target_ort_is_a_user_error_before_conversion(cli, layernorm):
    assert_user_error(cli("run", layernorm / "ln.pt2", "--sample", layernorm / "x.npy", "--target-ort", "banana"), "is not an ONNX Runtime version")
    assert_user_error(cli("run", layernorm / "ln.pt2", "--sample", layernorm / "x.npy", "--target-ort", "1.27"), "has no row for 1.27")


def test_ops_newer_than_the_target_are_named_with_both_versions():
    from onnxgate.checks.static import target_ort_findings

    reshape = _model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        opsets=(("", 21),), ir=10,
        initializers=[helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 3])],
    )
    finding, ir = target_ort_findings(reshape, "1.14")
    assert "model opset 21 is newer than ONNX Runtime 1.14 supports (up to opset 18)" in finding.message
    assert "Reshape-21 (the target has Reshape-14)" in finding.message
    assert "model IR version 10 is newer than ONNX Runtime 1.14 supports (up to IR 8)" in ir.message
    assert target_ort_findings(reshape, "1.18") == []


def test_installed_ort_limits_are_read_from_onnxruntime_itself():
    import onnxruntime as ort

    from onnxgate.checks.static import installed_ort_findings, installed_ort_limits

    version, max_opset, max_ir = installed_ort_limits()
    assert version == ort.__version__ and max_opset >= 21 and max_ir >= 10
    too_new = _model([helper.make_node("Relu", ["x"], ["y"])], opsets=(("", max_opset + 1),), ir=max_ir + 1)
    messages = [f.message for f in installed_ort_findings(too_new)]
    assert any(f"model opset {max_opset + 1} is newer than the installed onnxruntime {version}" in m for m in messages)
    assert any(f"model IR version {max_ir + 1} is newer than the installed onnxruntime" in m for m in messages)
    assert installed_ort_findings(_model([helper.make_node("Relu", ["x"], ["y"])])) == []


def test_checker_shape_inference_and_custom_domains():
    from onnxgate.checks.static import static_findings

    good = _model([helper.make_node("Relu", ["x"], ["y"])])
    assert static_findings(good) == []

    dangling = _model([helper.make_node("Relu", ["nowhere"], ["y"])])
    assert [f.check for f in static_findings(dangling) if f.level == "error"][0] == "onnx.checker"

    clash = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], x_shape=(2, 3), y_shape=(2, 4),
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [5, 4], np.zeros(20, np.float32))],
    )
    checks = {f.check for f in static_findings(clash) if f.level == "error"}
    assert "shape inference" in checks or "onnx.checker" in checks

    custom = _model(
        [helper.make_node("Gelu", ["x"], ["g"], domain="com.microsoft"), helper.make_node("Swish", ["g"], ["y"], domain="acme.ops")],
        opsets=(("", 17), ("com.microsoft", 1), ("acme.ops", 1)),
    )
    domain = {f.message for f in static_findings(custom) if f.check == "custom domain"}
    assert any("ONNX Runtime's own domain com.microsoft (Gelu) run on ONNX Runtime only" in m for m in domain)
    assert any("custom domain 'acme.ops' (Swish) need a custom-op library" in m for m in domain)


def test_mobile_usability_summary():
    pytest.importorskip("onnxruntime.tools.mobile_helpers.usability_checker")
    from onnxgate.checks.static import mobile_findings

    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Det", ["m"], ["d"]),
         helper.make_node("Add", ["m", "d"], ["y"])],
        x_shape=(3, 3), y_shape=(3, 3),
        initializers=[helper.make_tensor("w", TensorProto.FLOAT, [3, 3], np.eye(3, dtype=np.float32).ravel())],
    )
    found = {f.message.split(":")[0]: f.message for f in mobile_findings(model)}
    assert set(found) == {"NNAPI", "CoreML NeuralNetwork", "CoreML MLProgram"}, found
    assert all("nodes supported in" in m and "worth trying:" in m for m in found.values())
    assert "Det" in found["NNAPI"]  # NNAPI has no Det kernel: ORT's own op list says so
