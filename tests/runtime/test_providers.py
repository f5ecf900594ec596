"""Provider compatibility with the real OpenVINO execution provider: discovery, the matrix, precision.

Models are tiny and built in the test (a torch MLP exported with torch.export, a
scikit-learn MLP on load_diabetes); every run is a real ONNX Runtime session on the
CPU provider and on OpenVINO's CPU device (see _openvino.py for how OpenVINO gets a
device on a non-Intel CPU).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_onnxgate
from tests.runtime._openvino import cpu_is_intel, openvino_args

F32 = 'OpenVINO:load_config={"CPU":{"INFERENCE_PRECISION_HINT":"f32"}}'


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A torch MLP (.pt2 + converted ONNX + a copy with perturbed weights), a sklearn MLP (.skops)."""
    torch = pytest.importorskip("torch")
    import onnx
    import skops.io as sio
    from sklearn.datasets import load_diabetes
    from sklearn.neural_network import MLPRegressor

    from onnxgate.pipelines.run import convert

    root = tmp_path_factory.mktemp("providers")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4)).eval()
    x = torch.randn(12, 8)
    np.save(root / "x.npy", x.numpy())
    batch = torch.export.Dim("batch", min=1, max=1024)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: batch},)), root / "mlp.pt2")
    convert(root / "mlp.pt2", root / "mlp.onnx", sample=root / "x.npy")
    broken = onnx.load(root / "mlp.onnx")
    big = max(broken.graph.initializer, key=lambda t: np.prod(t.dims))
    w = onnx.numpy_helper.to_array(big).copy()
    w.flat[0] += 0.5
    big.CopyFrom(onnx.numpy_helper.from_array(w, big.name))
    onnx.save(broken, root / "broken.onnx")

    X, y = load_diabetes(return_X_y=True)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=50, random_state=0)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reg.fit(X, y)
    reg._optimizer = None  # the fitted optimizer state is not needed to predict (and skops would refuse it)
    sio.dump(reg, root / "reg.skops")
    np.save(root / "diabetes.npy", X[:20].astype(np.float32))
    return root


@pytest.fixture(scope="module")
def ov():
    return openvino_args()


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def test_discovery_says_why_openvino_and_gpu_providers_cannot_run(tmp_path, ov):
    """A fresh process: the installed plugin alone, then with the --ep-plugin library."""
    plain = run_onnxgate("providers", "--json")
    assert plain.code == 0, plain.err
    infos = {i["name"]: i for i in json.loads(plain.out)}
    assert infos["CPUExecutionProvider"]["available"]
    ovinfo = infos["OpenVINOExecutionProvider"]
    assert ovinfo["source"].startswith("plugin: onnxruntime-ep-openvino")
    if cpu_is_intel():
        assert ovinfo["available"], ovinfo
    else:
        assert not ovinfo["available"]
        assert "only claims Intel devices (PCI vendor 0x8086)" in ovinfo["reason"]
        assert "CPU AMD (PCI vendor 0x1022)" in ovinfo["reason"] or "PCI vendor" in ovinfo["reason"]
    for gpu in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        assert not infos[gpu]["available"] and "onnxruntime-gpu" in infos[gpu]["reason"]

    if ov:
        shimmed = run_onnxgate("providers", "--json", *ov)
        assert shimmed.code == 0, shimmed.err
        ovinfo = {i["name"]: i for i in json.loads(shimmed.out)}["OpenVINOExecutionProvider"]
        assert ovinfo["available"] and any(d.endswith("as CPU") for d in ovinfo["devices"]), ovinfo
        assert ovinfo["source"] == f"plugin: {ov[1].split('=', 1)[1]}"


def test_unavailable_provider_and_bad_flags_are_one_line_user_errors(cli, models):
    args = ["validate", models / "mlp.pt2", models / "mlp.onnx", "--sample", models / "x.npy"]
    assert_user_error(cli(*args, "--providers", "CUDA"), "CUDA is not available here", "onnxruntime-gpu")
    assert_user_error(cli(*args, "--providers", "Banana"), "unknown execution provider BananaExecutionProvider")
    assert_user_error(cli(*args, "--provider-option", "precision=FP32"), "is not PROVIDER:KEY=VALUE")
    assert_user_error(cli(*args, "--ep-plugin", "OpenVINO"), "is not NAME=LIBRARY_PATH")
    assert_user_error(cli(*args, "--ep-plugin", f"OpenVINO={models / 'missing.so'}"), "does not exist")
    assert_user_error(cli(*args, "--opt-levels", "fast"), "unknown optimisation level(s) ['fast']")


def test_torch_model_on_all_providers_reports_bf16_and_the_option_that_restores_fp32(cli, models, ov, tmp_path):
    common = ["validate", models / "mlp.pt2", models / "mlp.onnx", "--sample", models / "x.npy", "--providers", "all", *ov]
    res = cli(*common, "--report", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    rep = _report(tmp_path / "r.json")
    section = rep["providers"]
    assert section["providers"] == ["CPUExecutionProvider", "OpenVINOExecutionProvider"]
    out = next(iter(section["matrix"]))
    assert section["matrix"][out]["CPUExecutionProvider"]["status"] == "passed"
    if not section["precision"]:
        # This CPU has no bf16 (no avx512_bf16/AMX in OpenVINO's OPTIMIZATION_CAPABILITIES): OpenVINO
        # computes in f32, so the same model must pass there, with nothing to restore.
        assert res.code == 0, (res.out, res.err)
        assert section["matrix"][out]["OpenVINOExecutionProvider"]["status"] == "passed"
        assert "computes float32 models in bf16" not in (tmp_path / "r.md").read_text()
        return
    assert res.code == 1, (res.out, res.err)  # OpenVINO's default bf16 on this CPU misses float32 parity
    assert section["matrix"][out]["OpenVINOExecutionProvider"]["status"] == "failed"
    assert section["matrix"][out]["OpenVINOExecutionProvider"]["max_abs_error"] > 1e-3
    assert {(c["provider"], c["optimization"]) for c in rep["cases"]} == {
        (p, o) for p in section["providers"] for o in ("disable", "all")
    }
    (note,) = section["precision"]
    assert note["computes_in"] == "bf16" and "INFERENCE_PRECISION_HINT" in note["restore"]["load_config"]
    assert note["confirmed"].startswith("Confirmed: parity failed with the default") and "passes with" in note["confirmed"]
    ov_place = [p for p in section["placements"] if p["provider"] == "OpenVINOExecutionProvider"]
    assert ov_place and all(p["full"] and p["taken"] == p["nodes"] > 0 for p in ov_place), ov_place
    md = (tmp_path / "r.md").read_text()
    assert "## Provider matrix" in md and "| output | CPU | OpenVINO |" in md and "## Placement" in md
    assert "computes float32 models in bf16" in md and "INFERENCE_PRECISION_HINT" in md

    fixed = cli(*common, "--provider-option", F32, "--report", tmp_path / "f32.json")
    assert fixed.code == 0, (fixed.out, fixed.err)
    rep = _report(tmp_path / "f32.json")
    assert rep["providers"]["options"] == {"OpenVINOExecutionProvider": {"load_config": F32.split("=", 1)[1]}}
    assert rep["providers"]["precision"] == []

    # precision=FP32 is passed and recorded, but (measured) does not change OpenVINO's CPU device
    fp32 = cli(*common, "--provider-option", "OpenVINO:precision=FP32", "--report", tmp_path / "p.json")
    assert fp32.code == 1
    rep = _report(tmp_path / "p.json")
    assert rep["providers"]["options"] == {"OpenVINOExecutionProvider": {"precision": "FP32"}}
    assert "precision=FP32 is set, but this plugin does not apply it" in rep["providers"]["precision"][0]["because"]


def test_broken_weights_fail_on_every_provider(cli, models, ov, tmp_path):
    res = cli("validate", models / "mlp.pt2", models / "broken.onnx", "--sample", models / "x.npy",
              "--providers", "all", *ov, "--provider-option", F32, "--report", tmp_path / "r.json")
    assert res.code == 1
    matrix = _report(tmp_path / "r.json")["providers"]["matrix"]
    assert all(cell["status"] == "failed" for row in matrix.values() for cell in row.values()), matrix


def test_sklearn_model_on_all_providers(cli, models, ov, tmp_path):
    res = cli("run", models / "reg.skops", "--sample", models / "diabetes.npy", "--providers", "all", *ov,
              "--provider-option", F32, "--report", tmp_path / "r.json", "--markdown", tmp_path / "r.md")
    assert res.code == 0, (res.out, res.err)
    section = _report(tmp_path / "r.json")["providers"]
    assert all(cell["status"] == "passed" for row in section["matrix"].values() for cell in row.values())
    assert {p["provider"] for p in section["placements"]} == {"CPUExecutionProvider", "OpenVINOExecutionProvider"}
    assert all(p["full"] for p in section["placements"] if p["provider"] == "OpenVINOExecutionProvider")
    assert "| OpenVINO | ORT_ENABLE_ALL |" in (tmp_path / "r.md").read_text()


def test_optimiser_mismatch_is_reported_as_an_optimiser_issue():
    """Cases that pass at ORT_DISABLE_ALL and fail at ORT_ENABLE_ALL (records built directly)."""
    from onnxgate.judge.compare import compare_outputs
    from onnxgate.diagnose.provider_checks import optimizer_findings
    from onnxgate.judge.report import Case
    from onnxgate.judge.tolerances import TolerancePolicy

    ref = {"y": np.ones(4, np.float32)}
    off = Case("batch=4", "CPUExecutionProvider", "disable", {"x": [4]})
    off.outputs = compare_outputs(ref, {"y": np.ones(4, np.float32)}, policy=TolerancePolicy(), output_names=["y"])
    on = Case("batch=4", "CPUExecutionProvider", "all", {"x": [4]})
    on.outputs = compare_outputs(ref, {"y": np.full(4, 2, np.float32)}, policy=TolerancePolicy(), output_names=["y"])
    (finding,) = optimizer_findings([off, on])
    assert finding.level == "error" and finding.check == "optimizer"
    assert "passes with ORT_DISABLE_ALL but fails with ORT_ENABLE_ALL" in finding.message
    assert "not a conversion issue" in finding.message
    on.outputs = off.outputs
    assert optimizer_findings([off, on]) == []


def test_a_plugin_library_in_use_is_not_swapped(ov, tmp_path):
    """ORT crashes if a library is unregistered under a live session; onnxgate refuses instead."""
    import shutil

    from onnx import TensorProto, helper

    from onnxgate.errors import OnnxgateError
    from onnxgate.runtime.providers import parse_ep_plugins, register_plugins
    from onnxgate.runtime.runner import create_session

    if not ov:
        pytest.skip("the installed plugin claims this CPU: no library to swap")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    plugins = parse_ep_plugins([ov[1]])
    session = create_session(model.SerializeToString(), provider="OpenVINO", ep_plugins=plugins)
    assert session.providers_used[0] == "OpenVINOExecutionProvider"
    np.testing.assert_array_equal(session.run({"x": np.array([[-1.0, 2.0]], np.float32)})["y"], [[0.0, 2.0]])
    other = tmp_path / "copy.so"
    shutil.copy(next(iter(plugins.values())), other)
    with pytest.raises(OnnxgateError, match="already registered in this process"):
        register_plugins({"OpenVINOExecutionProvider": str(other)})
    register_plugins(plugins)  # the same library again is fine
