"""Placement: which provider took which node, from ONNX Runtime's own graph-assignment records.

The fallback model is a torch module whose ``torch.linalg.det`` exports to ONNX ``Det``,
an op the OpenVINO execution provider does not take (ONNX Runtime runs it on CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.runtime._openvino import openvino_args

F32 = 'OpenVINO:load_config={"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}'


@pytest.fixture(scope="module")
def det_model(tmp_path_factory):
    torch = pytest.importorskip("torch")
    from onnxgate.pipelines.run import convert

    class WithDet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(9, 9)

        def forward(self, x):
            m = torch.relu(self.lin(x)).reshape(-1, 3, 3)
            return torch.linalg.det(m).unsqueeze(-1) + self.lin(x)

    root = tmp_path_factory.mktemp("placement")
    torch.manual_seed(0)
    x = torch.randn(6, 9)
    np.save(root / "x.npy", x.numpy())
    torch.export.save(torch.export.export(WithDet().eval(), (x,), dynamic_shapes=({0: torch.export.Dim("b", min=1, max=64)},)), root / "det.pt2")
    convert(root / "det.pt2", root / "det.onnx", sample=root / "x.npy")
    return root


@pytest.fixture(scope="module")
def ov():
    return openvino_args()


def test_fallback_is_shown_and_require_full_placement_fails(cli, det_model, ov, tmp_path):
    common = ["validate", det_model / "det.pt2", det_model / "det.onnx", "--sample", det_model / "x.npy",
              "--providers", "CPU,OpenVINO", *ov, "--provider-option", F32]
    res = cli(*common, "--report", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert res.code == 0, (res.out, res.err)  # a fallback alone is not a failure
    rep = json.loads((tmp_path / "r.json").read_text())
    ov_place = [p for p in rep["providers"]["placements"] if p["provider"] == "OpenVINOExecutionProvider"]
    assert len(ov_place) == 2
    for p in ov_place:
        assert p["fallback_ops"].get("Det") == 1 and not p["full"], p
        assert p["by_provider"]["CPUExecutionProvider"] == p["fallback"] and p["taken"] > 0
    assert any(f["check"] == "placement" and f["level"] == "warning" and "Det x1" in f["message"] for f in rep["findings"])
    md = (tmp_path / "r.md").read_text()
    assert "| OpenVINO | ORT_ENABLE_ALL |" in md and "Det x1" in md

    strict = cli(*common, "--require-full-placement", "--report", tmp_path / "s.json")
    assert strict.code == 1
    failures = json.loads((tmp_path / "s.json").read_text())["failures"]
    assert any(f.startswith("placement: OpenVINO took") and "fell back to CPU (Det x1" in f for f in failures), failures


def test_full_placement_passes_the_strict_check(cli, tmp_path, ov):
    """The same model without Det: everything on OpenVINO, --require-full-placement passes."""
    torch = pytest.importorskip("torch")
    from onnxgate.pipelines.run import convert

    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(9, 9), torch.nn.Tanh()).eval()
    x = torch.randn(5, 9)
    np.save(tmp_path / "x.npy", x.numpy())
    torch.export.save(torch.export.export(net, (x,)), tmp_path / "m.pt2")
    convert(tmp_path / "m.pt2", tmp_path / "m.onnx", sample=tmp_path / "x.npy")
    res = cli("validate", tmp_path / "m.pt2", tmp_path / "m.onnx", "--sample", tmp_path / "x.npy", "--static", "--providers", "OpenVINO",
              *ov, "--provider-option", F32, "--require-full-placement", "--report", tmp_path / "r.json")
    assert res.code == 0, (res.out, res.err)
    (p, _) = json.loads((tmp_path / "r.json").read_text())["providers"]["placements"]
    assert p["full"] and p["fallback_ops"] == {}


def test_cpu_placement_and_ml_domain_ops_from_the_runner(tmp_path, ov):
    """The runner directly: CPU takes everything; OpenVINO leaves ai.onnx.ml ops to CPU."""
    from onnx import TensorProto, helper

    from onnxgate.runtime.providers import parse_ep_plugins
    from onnxgate.runtime.runner import create_session

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["r"]),
         helper.make_node("LinearRegressor", ["r"], ["y"], domain="ai.onnx.ml", coefficients=[1.0, 2.0, 3.0], intercepts=[0.5])],
        "g", [x], [y],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("ai.onnx.ml", 1)])
    model.ir_version = 9
    data = model.SerializeToString()
    cpu = create_session(data, provider="CPU", record_placement=True).placement()
    assert cpu.full and cpu.nodes == 2 and cpu.by_provider == {"CPUExecutionProvider": 2}
    plugins = parse_ep_plugins([ov[1]]) if ov else None
    session = create_session(data, provider="OpenVINO", record_placement=True, ep_plugins=plugins)
    p = session.placement()
    assert p.fallback_ops == {"ai.onnx.ml:LinearRegressor": 1} and p.taken == 1, p
    feeds = {"x": np.array([[1.0, -1.0, 2.0]], np.float32)}
    np.testing.assert_allclose(session.run(feeds)["y"], [[7.5]], rtol=1e-2)  # relu -> [1,0,2] . [1,2,3] + 0.5
    unrecorded = create_session(data, provider="CPU").placement()
    assert unrecorded.error and "record_ep_graph_assignment_info" in unrecorded.error
