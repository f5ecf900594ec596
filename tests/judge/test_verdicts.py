"""Verdicts you can trust: calibrated tolerances, vacuous references, signature checks, honest diagnoses."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tests.conftest import assert_user_error, run_onnxgate


def _scale_initializer(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    """A copy with the largest float initializer scaled by ``factor`` (one weight tensor, one layer)."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    floats = [t for t in broken.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE)]
    target = max(floats, key=lambda t: numpy_helper.to_array(t).size)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * factor, target.name))
    return broken


@pytest.fixture(scope="module")
def kmeans(tmp_path_factory):
    """KMeans' distance scores fail a fixed float32 tolerance (measured 3.7e-5 against atol 1e-5)."""
    from sklearn.cluster import KMeans
    from sklearn.datasets import load_diabetes

    from onnxgate.pipelines.run import convert

    X, _ = load_diabetes(return_X_y=True)
    X = X * 100  # raw scale: distances of a few hundred
    model = KMeans(n_clusters=4, n_init=2, random_state=0).fit(X)
    d = tmp_path_factory.mktemp("kmeans")
    np.save(d / "x.npy", X[:64].astype(np.float32))
    conv = convert(model, None, sample=str(d / "x.npy"))
    conv.reference.close()
    (d / "ok.onnx").write_bytes(conv.model.SerializeToString())
    (d / "broken.onnx").write_bytes(_scale_initializer(conv.model, 1.01).SerializeToString())
    return model, d


def test_float32_noise_passes_when_calibrated_and_a_one_percent_weight_change_fails(kmeans):
    from onnxgate.pipelines.run import validate

    model, d = kmeans
    report = validate(model, d / "ok.onnx", sample=str(d / "x.npy"))
    assert report.passed, report.failures()
    scores = [o for c in report.cases for o in c.outputs if o.kind == "float"]
    assert scores and all(o.noise_floor is not None and o.k and o.floor_method for o in scores)
    assert "calibration" in report.tolerances and report.tolerances["calibration"]["floors"]
    broken = validate(model, d / "broken.onnx", sample=str(d / "x.npy"))
    assert broken.status == "failed", broken.failures()


def test_a_user_tolerance_replaces_the_calibrated_rule(kmeans):
    from onnxgate.pipelines.run import validate

    model, d = kmeans
    report = validate(model, d / "ok.onnx", sample=str(d / "x.npy"), atol=1e-12, rtol=0)
    assert report.status == "failed"  # the user's hard 1e-12 wins over the floor
    assert all("user" in (o.rule or "") for c in report.cases for o in c.outputs if o.kind == "float")


@pytest.fixture(scope="module")
def linreg(tmp_path_factory):
    import skops.io as sio
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import LinearRegression

    X, y = load_diabetes(return_X_y=True)
    d = tmp_path_factory.mktemp("linreg")
    model = LinearRegression().fit(X, y)
    sio.dump(model, d / "m.skops")
    np.save(d / "x.npy", X[:16].astype(np.float32))
    return model, d


def test_a_sample_of_nan_is_a_bad_sample(linreg, tmp_path):
    torch = pytest.importorskip("torch")
    model, d = linreg
    x = np.load(d / "x.npy")
    x[:] = np.nan
    np.save(tmp_path / "nan.npy", x)
    # scikit-learn refuses NaN itself: one line, exit 2
    assert_user_error(run_onnxgate("run", d / "m.skops", "--sample", tmp_path / "nan.npy"), "NaN")
    # a network propagates it silently: every output NaN, NaN == NaN would "pass"; refused as a bad sample
    net = torch.nn.Sequential(torch.nn.Linear(10, 3)).eval()
    example = torch.from_numpy(np.load(d / "x.npy"))
    torch.export.save(torch.export.export(net, (example,), dynamic_shapes=({0: torch.export.Dim("batch")},)), tmp_path / "n.pt2")
    assert_user_error(run_onnxgate("run", tmp_path / "n.pt2", "--sample", tmp_path / "nan.npy"), "does not treat NaN as missing")
    assert run_onnxgate("run", tmp_path / "n.pt2", "--sample", d / "x.npy").code == 0


def test_constant_outputs_are_vacuous_unless_accepted(linreg, tmp_path):
    model, d = linreg
    x = np.repeat(np.load(d / "x.npy")[:1], 8, axis=0)  # every row the same: any constant model would match
    np.save(tmp_path / "same.npy", x)
    res = run_onnxgate("run", d / "m.skops", "--sample", tmp_path / "same.npy", "--report", tmp_path / "r.json")
    assert res.code == 1 and "VACUOUS" in res.out, (res.out, res.err)
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["status"] == "vacuous" and "same on all 8 rows" in data["vacuous"]
    ok = run_onnxgate("run", d / "m.skops", "--sample", tmp_path / "same.npy", "--accept-vacuous")
    assert ok.code == 0 and "vacuous" in ok.out


def test_a_network_whose_outputs_are_all_near_zero_is_vacuous(linreg):
    """A deep net at random init can answer ~1e-11 on every input: any conversion, a wrong one too, matches."""
    from sklearn.neural_network import MLPRegressor

    from onnxgate.pipelines.run import convert, validate

    _, d = linreg
    x = np.load(d / "x.npy")
    net = MLPRegressor(hidden_layer_sizes=(16,), max_iter=5, random_state=0).fit(x, np.arange(len(x), dtype=float))
    net.coefs_[-1] *= 1e-12  # the last layer of a dead network: activations around 1e-11
    net.intercepts_[-1][:] = 0.0
    conv = convert(net, None, sample=str(d / "x.npy"), in_process=True)
    try:
        report = validate(net, conv.model, sample=str(d / "x.npy"), reference=conv.reference)
        broken = validate(net, _scale_initializer(conv.model, 1.01), sample=str(d / "x.npy"), reference=conv.reference)
    finally:
        conv.reference.close()
    assert report.status == "vacuous" and "below 1e-06 everywhere" in report.vacuous, report.failures()
    assert broken.status in ("vacuous", "failed")  # never "passed"


def test_declared_output_shape_that_lies_fails(linreg, tmp_path):
    from skl2onnx import to_onnx

    model, d = linreg
    onx = to_onnx(model, np.load(d / "x.npy")[:1])
    good = tmp_path / "good.onnx"
    good.write_bytes(onx.SerializeToString())
    out = onx.graph.output[0].type.tensor_type.shape
    out.dim[0].ClearField("dim_param")
    out.dim[0].dim_value = 1  # declares one row; ORT returns as many rows as it is fed
    lying = tmp_path / "lying.onnx"
    lying.write_bytes(onx.SerializeToString())
    assert run_onnxgate("validate", d / "m.skops", good, "--sample", d / "x.npy").code == 0
    res = run_onnxgate("validate", d / "m.skops", lying, "--sample", d / "x.npy", "--report", tmp_path / "r.json")
    assert res.code == 1, (res.out, res.err)
    findings = json.loads((tmp_path / "r.json").read_text())["findings"]
    assert any(f["check"] == "signature" and f["level"] == "error" and "is declared [1" in f["message"] for f in findings)


def test_the_optimiser_is_blamed_only_beyond_noise():
    from onnxgate.diagnose.provider_checks import optimizer_findings
    from onnxgate.judge.compare import OutputComparison
    from onnxgate.judge.report import Case

    def case(level, err, passed):
        c = Case("batch=8", "CPUExecutionProvider", level, {"x": [8, 4]})
        c.outputs = [OutputComparison("y", "float", passed, atol=2.2e-5, max_abs_error=err)]
        return c

    # the measured case: 2.07e-5 and 2.44e-5, on either side of the threshold
    either_side = optimizer_findings([case("disable", 2.07e-5, True), case("all", 2.44e-5, False)])
    assert [f.level for f in either_side] == ["warning"] and "not an optimiser issue" in either_side[0].message
    real = optimizer_findings([case("disable", 1e-6, True), case("all", 3e-2, False)])
    assert [f.level for f in real] == ["error"] and "graph-optimisation issue" in real[0].message


def test_unit_axis_differences_are_aligned_and_noted():
    from onnxgate.judge.compare import compare_outputs

    ref = {"y": np.arange(6, dtype=np.float32).reshape(6, 1)}
    same = compare_outputs(ref, {"y": np.arange(6, dtype=np.float32)})
    assert same[0].passed and "unit axes" in same[0].shape_note
    wrong = compare_outputs(ref, {"y": np.arange(6, dtype=np.float32) + 1})
    assert not wrong[0].passed  # aligned, then compared: a wrong value still fails


def test_tree_threshold_flips_are_recognised_with_their_fix():
    from onnxgate.judge.compare import compare_outputs

    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(3), size=40).astype(np.float32)
    got = ref.copy()
    got[7, 0] += 2 / 50  # two of 50 trees flipped on one row
    got[7, 1] -= 2 / 50
    got[21, 2] += 1 / 50
    got[21, 0] -= 1 / 50
    (c,) = compare_outputs({"probabilities": ref}, {"probabilities": got})
    assert not c.passed and c.quantum == pytest.approx(1 / 50, rel=1e-3)
    noise = got + rng.normal(scale=5e-3, size=got.shape).astype(np.float32)  # not in steps: no such claim
    (d,) = compare_outputs({"probabilities": ref}, {"probabilities": noise})
    assert not d.passed and d.quantum is None
    one = ref.copy()
    one[3, 1] += 0.0123  # a single error is a multiple of itself: that shows nothing
    (e,) = compare_outputs({"probabilities": ref}, {"probabilities": one})
    assert not e.passed and e.quantum is None


def test_a_tree_flip_finding_names_both_fixes_and_only_when_every_failing_case_agrees():
    from onnxgate.judge.compare import compare_outputs
    from types import SimpleNamespace

    from onnxgate.judge.report import Case
    from onnxgate.pipelines.run import _flip_findings

    ref = np.random.default_rng(1).dirichlet(np.ones(3), size=20).astype(np.float32)
    flipped = ref.copy()
    flipped[4, :2] += [2 / 50, -2 / 50]

    def report(*gots):
        cases = []
        for i, got in enumerate(gots):
            cases.append(Case(f"batch={i}", "CPUExecutionProvider", "all", {"x": [20, 4]}))
            cases[-1].outputs = compare_outputs({"probabilities": ref}, {"probabilities": got})
        return SimpleNamespace(cases=cases)  # _flip_findings reads the cases only

    (finding,) = _flip_findings(report(flipped, flipped))
    assert finding.check == "tree-flip" and "--double" in finding.message
    assert "--tol probabilities=0.04:0" in finding.message  # the explicit tolerance that accepts it
    scaled = ref * np.float32(1.03)  # another case fails without steps: no flip is claimed
    assert _flip_findings(report(flipped, scaled)) == []
