"""Nearest-neighbour models skl2onnx gets wrong, through onnxgate with no flags: real skl2onnx, real ORT.

* ``sklearn.output_name_clash``: a Pipeline ending in KNeighborsRegressor keeps the output name
  ``variable1`` (skl2onnx cannot swap names a Scan touches); onnxgate did not know what it was.
* ``sklearn.neighbors_distance_weights``: ``weights="distance"`` computes the uniform mean in the graph
  (distances negated before ``max(d, 1e-6)``), and a query at a fitted point must weigh only its
  zero-distance neighbours, as scikit-learn does (KNeighbors* and RadiusNeighbors*).
* ``sklearn.nan_zeros_dtype``: a two-target KNeighborsRegressor(weights="distance") in float64 loads.

Each fix: the model passes and the notes name it; switched off (ONNXGATE_DISABLE_FIXES) it does not
pass; and the converted graph validated against a broken original (fitted targets x 1.01, or labels
moved) fails: the fix does not make the comparison blind.
"""

from __future__ import annotations

import copy
import json
import warnings

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV
from onnxgate.errors import OutputMismatchError

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")

NAME_FIX = "sklearn.output_name_clash"
ZEROS_FIX = "sklearn.nan_zeros_dtype"
WEIGHTS_FIX = "sklearn.neighbors_distance_weights"


def _diabetes():
    from sklearn.datasets import load_diabetes

    return load_diabetes(return_X_y=True)


def _iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True)


def _fixes(report) -> list[str]:
    return [n.split(":")[0].removeprefix("fix ") for n in report.conversion.notes if n.startswith("fix ")]


def _run(est, rows, tmp_path, **options):
    from onnxgate.pipelines.run import run

    sample = tmp_path / "x.npy"
    np.save(sample, np.ascontiguousarray(rows))
    return run(est, sample=str(sample), in_process=True, **options)


def _validate(original, onnx_model, rows, tmp_path, **options):
    from onnxgate.pipelines.run import validate

    sample = tmp_path / "x.npy"
    np.save(sample, np.ascontiguousarray(rows))
    return validate(original, onnx_model, sample=str(sample), in_process=True, **options)


def _neighbor_steps(model) -> list:
    """The fitted neighbour estimators in ``model`` (itself, a pipeline's final step, a voting ensemble's)."""
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    return list(getattr(final, "estimators_", None) or [final])


def _break(model):
    """A copy whose neighbour estimators answer wrongly: regressors' fitted targets x 1.01, classifiers'
    fitted labels moved to the next class on every fifth point."""
    broken = copy.deepcopy(model)
    for est in _neighbor_steps(broken):
        if hasattr(est, "classes_"):
            est._y = est._y.copy()
            est._y[::5] = (est._y[::5] + 1) % len(est.classes_)
        else:
            est._y = est._y * 1.01
    return broken


def _knn_pipeline():
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _diabetes()
    return make_pipeline(StandardScaler(), KNeighborsRegressor()).fit(X, y), X


# -- sklearn.output_name_clash --------------------------------------------------------------


def test_pipeline_ending_in_knn_regressor_passes_through_the_cli_and_a_broken_one_fails(cli, tmp_path):
    """The .skops pipeline passes with no flags; its graph's output is 'variable' and the report names the
    fix; the same graph validated against the pipeline with targets x 1.01 exits 1."""
    import onnx
    import skops.io as sio

    est, X = _knn_pipeline()
    sio.dump(est, tmp_path / "p.skops")
    sio.dump(_break(est), tmp_path / "broken.skops")
    np.save(tmp_path / "x.npy", X[::20])
    good = cli("run", tmp_path / "p.skops", "--sample", tmp_path / "x.npy", "-o", tmp_path / "p.onnx",
                        "--report", tmp_path / "r.json")
    assert good.code == 0, good.err
    assert [o.name for o in onnx.load(tmp_path / "p.onnx").graph.output] == ["variable"]
    notes = json.loads((tmp_path / "r.json").read_text())["conversion"]["notes"]
    assert any(n.startswith(f"fix {NAME_FIX}: ") and "'variable1' -> 'variable'" in n for n in notes), notes
    bad = cli("validate", tmp_path / "broken.skops", tmp_path / "p.onnx", "--sample", tmp_path / "x.npy")
    assert bad.code == 1, bad.out + bad.err
    assert "variable" in bad.out + bad.err


def test_without_the_name_fix_the_pipeline_does_not_pass(tmp_path, monkeypatch):
    est, X = _knn_pipeline()
    monkeypatch.setenv(DISABLE_ENV, NAME_FIX)
    with pytest.raises(OutputMismatchError, match="'variable1'"):
        _run(est, X[::20], tmp_path)


def test_name_swap_reaches_the_scan_and_leaves_other_pipelines_alone(tmp_path):
    """The intermediate 'variable' (the scaler's output, fed to the distance Scan) becomes 'variable1'
    everywhere; a pipeline skl2onnx names correctly (Ridge) gets no such fix."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est, X = _knn_pipeline()
    report, conv = _run(est, X[::20], tmp_path)
    assert report.status == "passed" and NAME_FIX in _fixes(report), report.to_markdown()[:2000]
    scan = next(n for n in conv.model.graph.node if n.op_type == "Scan")
    assert scan.input[0] == "variable1"
    ridge = make_pipeline(StandardScaler(), Ridge()).fit(X, _diabetes()[1])
    report, _ = _run(ridge, X[::20], tmp_path)
    assert report.status == "passed" and NAME_FIX not in _fixes(report)


# -- sklearn.neighbors_distance_weights -----------------------------------------------------------


def _distance_models():
    from sklearn.ensemble import VotingRegressor
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, RadiusNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = _diabetes()
    Xi, yi = _iris()
    return {
        # fitted on the even rows; the sample is every third row: fitted points (zero distance) and new ones
        "regressor": (KNeighborsRegressor(weights="distance").fit(X[::2], y[::2]), X[::9]),
        "pipeline classifier": (make_pipeline(StandardScaler(), KNeighborsClassifier(weights="distance"))
                                .fit(Xi[::2], yi[::2]), Xi[::3]),
        # two targets: skl2onnx's multi-target path (and, in float64, sklearn.nan_zeros_dtype)
        "two-target regressor": (KNeighborsRegressor(weights="distance").fit(X[::2], np.c_[y, X[:, 0] * 100][::2]), X[::9]),
        # two weight computations in one graph, each replaced
        "voting of two regressors": (VotingRegressor([("k5", KNeighborsRegressor(weights="distance")),
                                                      ("k3", KNeighborsRegressor(3, weights="distance"))])
                                     .fit(X[::2], y[::2]), X[::9]),
        # no sign flip here: only the fitted points' zero distances (1e6 against 1/d for the others)
        "radius regressor": (RadiusNeighborsRegressor(radius=0.2, weights="distance").fit(X[::2], y[::2]), X[::9]),
    }


@pytest.mark.parametrize("double", [False, True], ids=["float32", "float64"])
@pytest.mark.parametrize("key", list(_distance_models()))
def test_distance_weights_pass_and_a_broken_original_fails(key, double, tmp_path):
    est, rows = _distance_models()[key]
    report, conv = _run(est, rows, tmp_path, double=double)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert WEIGHTS_FIX in _fixes(report)
    bad = _validate(_break(est), conv.model, rows, tmp_path, double=double)
    assert bad.status == "failed", bad.to_markdown()[:2000]


@pytest.mark.parametrize("key", list(_distance_models()))
def test_without_the_weights_fix_the_model_fails(key, tmp_path, monkeypatch):
    est, rows = _distance_models()[key]
    monkeypatch.setenv(DISABLE_ENV, WEIGHTS_FIX)
    report, _ = _run(est, rows, tmp_path)
    assert WEIGHTS_FIX not in _fixes(report)
    assert report.status == "failed"


@pytest.mark.parametrize("opset", [11, 17])
def test_distance_weights_at_opsets_before_18(opset, tmp_path, monkeypatch):
    """TopK takes the smallest distances from opset 11 (where the negation goes wrong); ReduceMax takes its
    axes as an attribute before opset 18."""
    est, rows = _distance_models()["regressor"]
    report, conv = _run(est, rows, tmp_path, opset=opset)
    assert report.status == "passed" and WEIGHTS_FIX in _fixes(report), report.to_markdown()[:2000]
    assert [i.version for i in conv.model.opset_import if i.domain == ""] == [opset]
    monkeypatch.setenv(DISABLE_ENV, WEIGHTS_FIX)
    assert _run(est, rows, tmp_path, opset=opset)[0].status == "failed"


def test_two_target_regressor_in_float64_loads_only_with_the_zeros_fix(tmp_path, monkeypatch):
    """skl2onnx's NaN guard for two targets uses float32 zeros; in a float64 graph ORT refuses the Where."""
    est, rows = _distance_models()["two-target regressor"]
    report, _ = _run(est, rows, tmp_path, double=True)
    assert report.status == "passed" and ZEROS_FIX in _fixes(report), report.to_markdown()[:2000]
    monkeypatch.setenv(DISABLE_ENV, ZEROS_FIX)
    report, _ = _run(est, rows, tmp_path, double=True)
    assert report.status == "error" and "bound to different types" in report.to_markdown()


def test_a_fitted_point_weighs_only_its_zero_distance_neighbours():
    """Queried at a fitted point (a duplicate pair in iris: rows 101 and 142), the graph predicts what
    scikit-learn does, the mean of the zero-distance neighbours, not a 1e6-weighted blend."""
    import onnxruntime as ort
    from sklearn.neighbors import KNeighborsRegressor

    from onnxgate.converters.sklearn import SklearnConverter

    X, _ = _iris()
    y = np.arange(len(X), dtype=np.float64)
    est = KNeighborsRegressor(weights="distance").fit(X, y)
    query = X[[101]]
    assert np.array_equal(X[101], X[142])
    np.testing.assert_allclose(est.predict(query), [(101 + 142) / 2])
    conv = SklearnConverter().convert(est, {"X": query.astype(np.float64)}, opset=None, options={"double": True})
    session = ort.InferenceSession(conv.model.SerializeToString(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"X": query})
    np.testing.assert_array_equal(got.ravel(), [(101 + 142) / 2])


def test_weights_fix_absent_for_uniform_weights():
    from sklearn.neighbors import KNeighborsRegressor

    from onnxgate.converters.sklearn import SklearnConverter

    X, y = _diabetes()
    conv = SklearnConverter().convert(KNeighborsRegressor().fit(X, y), {"X": X[:4].astype(np.float32)}, opset=None, options={})
    assert not any(n.startswith(f"fix {WEIGHTS_FIX}") for n in conv.notes)


@pytest.mark.parametrize("kind", ["regressor", "classifier"])
def test_distance_weights_on_exact_ties_agree_with_the_tie_breaks(kind, tmp_path):
    """Points on an integer grid (distances exact everywhere; fitted duplicates, so query rows at zero
    distance from several fitted points and ties at the k-th place): the fixed graph's weights are among
    the answers converters/sklearn_ties.py enumerates, and a broken original still fails."""
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

    from onnxgate.pipelines.run import convert

    rng = np.random.default_rng(0)
    X, Q = rng.integers(0, 4, size=(60, 2)).astype(np.float64), rng.integers(0, 5, size=(16, 2)) / 1.0
    if kind == "regressor":
        est = KNeighborsRegressor(weights="distance", algorithm="kd_tree").fit(X, rng.normal(size=len(X)))
    else:
        est = KNeighborsClassifier(weights="distance", algorithm="kd_tree").fit(X, rng.integers(0, 3, size=len(X)))
    np.save(tmp_path / "x.npy", Q)
    result = convert(est, tmp_path / "m.onnx", in_process=True, sample=str(tmp_path / "x.npy"))
    result.reference.close()
    assert WEIGHTS_FIX in [n.split(":")[0].removeprefix("fix ") for n in result.conversion.notes]
    report = _validate(est, tmp_path / "m.onnx", Q, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert max(o.ties for c in report.cases for o in c.outputs) >= 1  # the tie-breaks were needed
    assert _validate(_break(est), tmp_path / "m.onnx", Q, tmp_path).status == "failed"
