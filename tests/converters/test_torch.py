"""The torch converter: every source kind, real exports, real ORT runs, and the bad inputs.

Models are tiny and built in code; factories live in a module written to a temp dir
and put on ``sys.path`` (in-process CLI) or ``PYTHONPATH`` (subprocesses).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_user_error, run_onnxgate

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

FACTORIES = '''
import torch
from torch import nn


class Multi(nn.Module):
    """Two inputs, dict outputs with a nested tuple."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, x, mask):
        h = self.a(x) * torch.sigmoid(self.b(mask))
        return {"logits": h, "aux": (h.sum(-1), torch.tanh(h))}


class DataDependent(nn.Module):
    """torch.export rejects the branch on a tensor's value; the TorchScript tracer takes it."""

    def __init__(self):
        super().__init__()
        self.l = nn.Linear(3, 2)

    def forward(self, x):
        if x.sum() > 0:
            return self.l(x) * 2
        return self.l(x)


class FrozenReshape(DataDependent):
    """Traced by the fallback: int() bakes the example batch size into a Reshape."""

    def forward(self, x):
        if x.sum() > 0:
            x = x * 2
        return self.l(x.reshape(int(x.shape[0]), -1))


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.e = nn.Embedding(20, 4)
        self.l = nn.Linear(4, 2)

    def forward(self, tokens):
        return self.l(self.e(tokens).mean(1))


def multi():
    torch.manual_seed(0)
    return Multi().eval()


def datadep():
    torch.manual_seed(0)
    return DataDependent().eval()


def frozen():
    torch.manual_seed(0)
    return FrozenReshape().eval()


def tokens():
    torch.manual_seed(0)
    return Tokens().eval()


def half():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).half().eval()


def boom():
    raise ValueError("the weights file is missing")


def not_a_model():
    return {"weights": 1}
'''


class Small(torch.nn.Module):
    """Conv + BatchNorm + a flatten that uses the batch size."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        y = torch.relu(self.bn(self.conv(x)))
        return self.fc(y.view(x.shape[0], -1))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    root = tmp_path_factory.mktemp("torchzoo")
    pkg = root / "pkg"
    pkg.mkdir()
    (pkg / "tfactories.py").write_text(FACTORIES)
    sys.path.insert(0, str(pkg))
    torch.manual_seed(0)
    small = Small().eval()
    small.bn.running_mean.uniform_(-0.5, 0.5)
    small.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(8, 1, 6, 6)
    np.save(root / "x.npy", x.numpy())
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(small, (x,), dynamic_shapes=({0: batch},)), root / "dyn.pt2")
    torch.export.save(torch.export.export(small, (x,)), root / "static.pt2")
    torch.jit.save(torch.jit.script(small), root / "script.pt")
    torch.save(small, root / "whole.pt")
    torch.save(small.state_dict(), root / "weights.pt")
    torch.save(small, root / "not_exported.pt2")
    rng = np.random.default_rng(0)
    np.savez(root / "multi.npz", x=rng.standard_normal((6, 4)).astype(np.float32), mask=rng.standard_normal((6, 2)).astype(np.float32))
    np.savez(root / "wrong_names.npz", input=np.zeros((6, 4), np.float32), m=np.zeros((6, 2), np.float32))
    np.save(root / "pos.npy", np.abs(rng.standard_normal((8, 3))).astype(np.float32) + 0.1)
    np.save(root / "pos4.npy", np.abs(rng.standard_normal((8, 1, 3))).astype(np.float32) + 0.1)
    np.save(root / "tokens.npy", rng.integers(0, 20, (7, 5)).astype(np.int32))
    np.save(root / "half.npy", rng.standard_normal((6, 4)).astype(np.float32))
    yield root
    sys.path.remove(str(pkg))
    sys.modules.pop("tfactories", None)


def _report(path: Path) -> dict:
    return json.loads(path.read_text())


def _outputs(report: dict) -> set[str]:
    return {o["name"] for c in report["cases"] for o in c["outputs"]}


# -- sources ------------------------------------------------------------------------------


def test_pt2_with_dynamic_batch_passes_at_three_batch_sizes(cli, zoo, tmp_path):
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    r = cli("-q", "run", zoo / "dyn.pt2", "--sample", zoo / "x.npy", "-o", out, "--report", rep)
    assert r.code == 0, r.out + r.err
    report = _report(rep)
    assert {c["name"] for c in report["cases"]} == {"batch=8", "batch=1", "batch=5"}
    assert "dynamo=True" in report["conversion"]["converter"]
    assert report["framework"] == "torch" and report["versions"]["torch"].startswith("2.")
    model = onnx.load(out)
    dim0 = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert model.graph.input[0].name == "x" and dim0.dim_param and not dim0.HasField("dim_value")
    assert {o.name for o in model.graph.output} == {"output"}


def test_tampered_onnx_is_caught_and_the_untampered_one_passes(cli, zoo, tmp_path):
    out = tmp_path / "m.onnx"
    assert cli("-q", "convert", zoo / "dyn.pt2", "-o", out, "--sample", zoo / "x.npy").code == 0
    assert cli("-q", "validate", zoo / "dyn.pt2", out, "--sample", zoo / "x.npy").code == 0
    model = onnx.load(out)
    init = max(model.graph.initializer, key=lambda t: onnx.numpy_helper.to_array(t).size)
    arr = onnx.numpy_helper.to_array(init).copy()
    arr.flat[0] += 0.5
    init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    bad = tmp_path / "tampered.onnx"
    onnx.save(model, bad)
    r = cli("-q", "validate", zoo / "dyn.pt2", bad, "--sample", zoo / "x.npy")
    assert r.code == 1, r.out + r.err
    assert "FAIL output" in " ".join(r.out.split()) and "failure:" not in r.err  # said once, on stdout


def test_pt2_without_sample_uses_the_programs_example_inputs(cli, zoo, tmp_path):
    rep = tmp_path / "r.json"
    r = cli("-q", "run", zoo / "dyn.pt2", "--report", rep)
    assert r.code == 0, r.out + r.err
    report = _report(rep)
    assert report["inputs"]["kind"] == "synthesised" and report["inputs"]["shapes"] == {"x": [8, 1, 6, 6]}


def test_pt2_seed_and_dims_synthesise_from_the_input_specs(cli, zoo, tmp_path):
    """--seed/--dim ask for synthesis from the program's specs: seeded, recorded, resized."""
    hashes = []
    for seed in ("1", "1", "2"):
        rep = tmp_path / f"r{len(hashes)}.json"
        r = cli("-q", "run", zoo / "dyn.pt2", "--seed", seed, "--report", rep)
        assert r.code == 0, r.out + r.err
        report = _report(rep)
        assert report["inputs"]["seed"] == int(seed) and report["inputs"]["shapes"]["x"][0] == 8
        hashes.append(report["inputs"]["hash"])
    assert hashes[0] == hashes[1] != hashes[2]
    rep = tmp_path / "dim.json"
    assert cli("-q", "run", zoo / "dyn.pt2", "--dim", "x:0=3", "--report", rep).code == 0
    assert _report(rep)["inputs"]["shapes"]["x"][0] == 3


def test_static_pt2_is_reported_as_a_frozen_batch_axis(cli, zoo):
    r = cli("-q", "run", zoo / "static.pt2", "--sample", zoo / "x.npy")
    assert r.code == 1, r.out + r.err
    assert "input 'x' axis 0 is frozen at 8 in the ONNX graph" in r.out
    r = cli("-q", "run", zoo / "static.pt2", "--sample", zoo / "x.npy", "--static")
    assert r.code == 0 and "batch=1" not in r.out, r.out + r.err


def test_torchscript_pt_falls_back_to_the_torchscript_exporter(cli, zoo, tmp_path):
    rep = tmp_path / "r.json"
    r = cli("-q", "run", zoo / "script.pt", "--sample", zoo / "x.npy", "--report", rep)
    assert r.code == 0, r.out + r.err
    conv = _report(rep)["conversion"]
    assert "dynamo=False" in conv["converter"]
    assert any("dynamo exporter failed" in n for n in conv["notes"])


def test_pickled_module_needs_trust_pickle(cli, zoo):
    assert_user_error(cli("run", zoo / "whole.pt", "--sample", zoo / "x.npy"), "refusing to unpickle", "--trust-pickle")
    r = cli("-q", "run", zoo / "whole.pt", "--sample", zoo / "x.npy", "--trust-pickle")
    assert r.code == 0, r.out + r.err


def test_in_memory_module_and_program_through_the_api(zoo):
    from onnxgate.pipelines.run import run

    module = torch.jit.load(zoo / "script.pt")
    program = torch.export.load(zoo / "dyn.pt2")
    for obj in (module, program):
        report, conv = run(obj, sample=str(zoo / "x.npy"))
        assert report.passed and {c.name for c in report.cases} == {"batch=8", "batch=1", "batch=5"}, report.failures()


# -- factories, multi-input, dict outputs, dtypes ----------------------------------------


def test_factory_with_two_inputs_and_dict_outputs(cli, zoo, tmp_path):
    out, rep = tmp_path / "m.onnx", tmp_path / "r.json"
    r = cli("-q", "run", "tfactories:multi", "--trust-code", "--sample", zoo / "multi.npz", "-o", out, "--report", rep)
    assert r.code == 0, r.out + r.err
    assert _outputs(_report(rep)) == {"logits", "aux_0", "aux_1"}
    model = onnx.load(out)
    assert [i.name for i in model.graph.input] == ["x", "mask"]


def test_data_dependent_module_uses_the_fallback_exporter(cli, zoo, tmp_path):
    rep = tmp_path / "r.json"
    r = cli("-q", "run", "tfactories:datadep", "--trust-code", "--sample", zoo / "pos.npy", "--report", rep)
    assert r.code == 0, r.out + r.err
    conv = _report(rep)["conversion"]
    assert "TorchScript fallback" in conv["converter"]
    assert any("dynamo exporter failed" in n for n in conv["notes"])


def test_a_shape_frozen_inside_the_graph_is_reported(cli, zoo):
    r = cli("-q", "run", "tfactories:frozen", "--trust-code", "--sample", zoo / "pos4.npy")
    assert r.code == 1, r.out + r.err
    assert "frozen at the export batch size 8" in r.out and "axis 0" in r.out
    assert cli("-q", "run", "tfactories:frozen", "--trust-code", "--sample", zoo / "pos4.npy", "--static").code == 0


def test_int32_token_sample_feeds_an_int64_embedding(cli, zoo, tmp_path):
    rep = tmp_path / "r.json"
    r = cli("-q", "run", "tfactories:tokens", "--trust-code", "--sample", zoo / "tokens.npy", "--report", rep)
    assert r.code == 0, r.out + r.err
    assert _report(rep)["inputs"]["dtypes"] == {"tokens": "int64"}


def test_float16_model_is_compared_with_float16_tolerances(cli, zoo, tmp_path):
    rep = tmp_path / "r.json"
    r = cli("-q", "run", "tfactories:half", "--trust-code", "--sample", zoo / "half.npy", "--report", rep)
    assert r.code == 0, r.out + r.err
    outs = [o for c in _report(rep)["cases"] for o in c["outputs"]]
    # float16 rules: the calibrated rule's rtol and eps term are float16's (rtol 1e-3, eps 9.8e-4)
    assert outs and all(o["onnx_dtype"] == "float16" and o["rtol"] == 1e-3 and "float16" in o["rule"] for o in outs)


def test_bfloat16_model_needs_upcast_and_is_then_held_to_bfloat16_tolerances(cli, tmp_path):
    torch.manual_seed(0)
    nn = torch.nn
    net = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).eval().to(torch.bfloat16)
    x = torch.randn(8, 6, dtype=torch.bfloat16)
    torch.export.save(torch.export.export(net, (x,), dynamic_shapes=({0: torch.export.Dim("batch")},)), tmp_path / "bf.pt2")
    np.save(tmp_path / "x.npy", x.float().numpy())
    # ONNX Runtime's CPU provider has no bfloat16 kernels: an error, explained
    plain = cli("-q", "run", tmp_path / "bf.pt2", "--sample", tmp_path / "x.npy", "--report", tmp_path / "plain.json")
    assert plain.code == 1
    findings = _report(tmp_path / "plain.json")["findings"]
    assert any(f["check"] == "bfloat16" and "--upcast-bf16" in f["message"] for f in findings)
    # a float32 copy, compared with the bfloat16 original at bfloat16 tolerances
    out = tmp_path / "bf.onnx"
    rep = tmp_path / "r.json"
    r = cli("-q", "run", tmp_path / "bf.pt2", "--sample", tmp_path / "x.npy", "--upcast-bf16", "-o", out, "--report", rep)
    assert r.code == 0, r.out + r.err
    report = _report(rep)
    outs = [o for c in report["cases"] for o in c["outputs"]]
    assert all(o["reference_dtype"] == "bfloat16" and o["onnx_dtype"] == "float32" and o["rtol"] == 1.6e-2 for o in outs)
    assert any("--upcast-bf16" in n for n in report["conversion"]["notes"])
    # and the tolerance still catches a real error: scale the last layer by 10%
    model = onnx.load(out)
    biggest = max(model.graph.initializer, key=lambda t: len(onnx.numpy_helper.to_array(t).ravel()))
    biggest.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(biggest) * 1.1, biggest.name))
    onnx.save(model, tmp_path / "bad.onnx")
    bad = cli("-q", "validate", tmp_path / "bf.pt2", tmp_path / "bad.onnx", "--sample", tmp_path / "x.npy", "--upcast-bf16")
    assert bad.code == 1, bad.out


def test_opset_is_honoured(cli, zoo, tmp_path):
    out = tmp_path / "m.onnx"
    assert cli("-q", "convert", zoo / "dyn.pt2", "-o", out, "--sample", zoo / "x.npy", "--opset", "18").code == 0
    assert {(i.domain, i.version) for i in onnx.load(out).opset_import if i.domain in ("", "ai.onnx")} == {("", 18)}


def test_opset_below_the_dynamo_floor_is_converted_or_noted(cli, zoo, tmp_path):
    """The dynamo exporter writes opset 18 at the least: 17 is reached by onnx's version converter, or the notes say why not."""
    out = tmp_path / "m.onnx"
    result = cli("-q", "convert", zoo / "dyn.pt2", "-o", out, "--sample", zoo / "x.npy", "--opset", "17")
    assert result.code == 0, result.err
    (opset,) = [i.version for i in onnx.load(out).opset_import if i.domain in ("", "ai.onnx")]
    assert opset == 17 or "not the requested 17" in result.err, (opset, result.err)


def test_opset_above_the_exporters_maximum_is_a_user_error(cli, zoo, tmp_path):
    from onnxgate.converters.torch import exporter_max_opset

    too_new = exporter_max_opset() + 1
    if too_new > onnx.defs.onnx_opset_version():
        pytest.skip("the installed onnx is not newer than the exporter's maximum")
    out = tmp_path / "m.onnx"
    assert_user_error(cli("convert", zoo / "dyn.pt2", "-o", out, "--sample", zoo / "x.npy", "--opset", str(too_new)), "torch.onnx.export")
    assert not out.exists()


# -- bad inputs: exit 2, one line ---------------------------------------------------------


def test_pt2_that_is_not_an_exported_program(cli, zoo):
    assert_user_error(cli("run", zoo / "not_exported.pt2", "--sample", zoo / "x.npy"), "not a saved ExportedProgram")


def test_state_dict_is_named_as_weights_only(cli, zoo):
    assert_user_error(cli("run", zoo / "weights.pt", "--sample", zoo / "x.npy"), "weights only", "module:callable")


def test_sample_names_must_match_forward(cli, zoo, tmp_path):
    out = tmp_path / "m.onnx"
    r = cli("run", "tfactories:multi", "--trust-code", "--sample", zoo / "wrong_names.npz", "-o", out)
    assert_user_error(r, "['input', 'm']", "forward expects ['x', 'mask']")
    assert not out.exists()
    assert_user_error(cli("run", "tfactories:multi", "--trust-code", "--sample", zoo / "x.npy"), "one array", "forward takes 2 inputs")


def test_factory_that_raises(cli, zoo):
    assert_user_error(cli("run", "tfactories:boom", "--trust-code", "--sample", zoo / "x.npy"), "raised ValueError", "weights file is missing")


def test_factory_without_trust_code(cli, zoo):
    assert_user_error(cli("run", "tfactories:multi", "--sample", zoo / "multi.npz"), "tfactories:multi", "--trust-code")


def test_factory_returning_something_else(cli, zoo):
    assert_user_error(cli("run", "tfactories:not_a_model", "--trust-code", "--framework", "torch", "--sample", zoo / "x.npy"), "dict", "nn.Module")


# -- torch hidden from the import system --------------------------------------------------


def test_without_torch_the_sklearn_path_still_works(zoo, tmp_path):
    sio = pytest.importorskip("skops.io")
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=300).fit(iris.data, iris.target)
    sio.dump(model, tmp_path / "m.skops")
    np.save(tmp_path / "iris.npy", iris.data[::10].astype(np.float32))
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "torch.py").write_text("raise ImportError('torch is hidden by the test')\n")
    env = {"PYTHONPATH": os.pathsep.join([str(shadow), str(Path(__file__).resolve().parents[2] / "src")])}
    r = run_onnxgate("-q", "run", tmp_path / "m.skops", "--sample", tmp_path / "iris.npy", env=env)
    assert r.code == 0, r.out + r.err
    assert_user_error(run_onnxgate("run", zoo / "dyn.pt2", "--sample", zoo / "x.npy", env=env), "needs PyTorch", "onnxgate[torch]")
    probe = "import onnxgate, sys; from onnxgate.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    import subprocess

    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=dict(os.environ))
    assert done.stdout.strip() == "False", done.stderr
