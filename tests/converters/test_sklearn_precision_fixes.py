"""The float32 precision fixes and the neighbour-tie rule: each on the catalogue estimator that needed it.

Every test runs the estimator twice, with the fix and with it switched off
(``ONNXGATE_DISABLE_FIXES``): it fails without and passes with, and the report names the fix.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")


@pytest.fixture(scope="module")
def catalogue():
    from tests.converters import sklearn_catalogue as cat

    data, classes, built = cat._data(), dict(cat.supported()), {}

    def get(name: str):
        if name not in built:
            built[name] = cat.build(name, classes[name], data)
        return built[name]

    return get


def _run(est, rows, tmp_path, **options):
    from onnxgate.pipelines.run import run

    sample = tmp_path / "x.npy"
    np.save(sample, rows)
    report, _ = run(est, sample=str(sample), in_process=True, opt_levels=("all",), **options)
    return report


def _fixes(report) -> list[str]:
    return [n.split(":")[0].removeprefix("fix ") for n in report.conversion.notes if n.startswith("fix ")]


@pytest.mark.parametrize("name, fix", [
    ("HistGradientBoostingRegressor", "sklearn.hgb_float32_thresholds"),
    ("ComplementNB", "sklearn.naive_bayes_centered_log_probabilities"),
    ("GaussianProcessClassifier", "sklearn.float64_core"),
])
def test_fails_without_the_fix_and_passes_with_it(name, fix, catalogue, tmp_path, monkeypatch):
    """Without the fix the model fails, or (HGB: a row whose input sits on a split rounded the other
    way) passes only because those rows' threshold jumps are excused, where the fixed graph needs none."""
    est, rows = catalogue(name)
    fixed = _run(est, rows, tmp_path)
    assert fixed.status == "passed" and fix in _fixes(fixed), fixed.to_markdown()[:3000]
    monkeypatch.setenv(DISABLE_ENV, fix)
    report = _run(est, rows, tmp_path)
    assert fix not in _fixes(report)
    assert report.status == "failed" or _excused(report) > _excused(fixed), report.to_markdown()[:3000]


def _excused(report) -> int:
    """Values within tolerance only thanks to their noise floor (a threshold jump allowed)."""
    return sum(o.excused for c in report.cases for o in c.outputs)


def test_hgb_thresholds_take_scikit_learns_branch_on_every_float32_input(catalogue):
    """For the float32 values next to each float64 threshold t, x <= graph threshold exactly when x <= t."""
    from onnxgate.converters.sklearn import SklearnConverter

    est, rows = catalogue("HistGradientBoostingRegressor")
    conv = SklearnConverter().convert(est, {"X": rows.astype(np.float32)}, opset=None, options={})
    (node,) = [n for n in conv.model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    attrs = {a.name: a for a in node.attribute}
    flipped = 0
    for tree, nid, mode, w in zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints,
                                  attrs["nodes_modes"].strings, np.float32(attrs["nodes_values"].floats)):
        if mode != b"BRANCH_LEQ":
            continue
        t = est._predictors[tree][0].nodes[nid]["num_threshold"]
        nearest = np.float32(t)
        for x in (nearest, np.nextafter(nearest, np.float32(-1)), np.nextafter(nearest, np.float32(1))):
            assert (x <= w) == (np.float64(x) <= t), (tree, nid, t)
        flipped += bool(nearest > t)  # where round-to-nearest alone would take the wrong branch at x = nearest
    assert flipped > 0


def test_float64_erf_is_exact_where_onnx_runtime_has_no_double_kernel():
    """Erf on float64 loads in ONNX Runtime after the fix (it does not before) and matches math.erf to 1e-15."""
    from math import erf

    import onnxruntime as ort
    from onnx import TensorProto, helper

    from onnxgate.converters.fixes import Applied
    from onnxgate.converters.fixes.sklearn_precision import float64_erf

    graph = helper.make_graph([helper.make_node("Erf", ["x"], ["y"])], "erf",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [None])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [None])])
    onx = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    with pytest.raises(Exception, match="NOT_IMPLEMENTED|implementation"):
        ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    float64_erf(onx, Applied())
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 6.0, -6.0, np.inf, -np.inf, np.nan]])
    y = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    expected = np.array([erf(v) for v in x])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-15)


def test_gaussian_process_classifier_with_double_runs(catalogue, tmp_path):
    est, rows = catalogue("GaussianProcessClassifier")
    report = _run(est, rows, tmp_path, double=True)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert "sklearn.float64_erf" in _fixes(report) and "sklearn.float64_core" not in _fixes(report)


def test_nearest_neighbors_ties_are_counted_not_failed(catalogue, tmp_path):
    """iris' equidistant neighbours come out in another order: counted as ties, and the run passes."""
    est, rows = catalogue("NearestNeighbors")
    report = _run(est, rows, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]
    assert sum(o.ties for c in report.cases for o in c.outputs if o.name == "index") > 0


def test_neighbor_indices_swapped_where_distances_differ_fail():
    from onnxgate.judge.compare import compare_outputs

    distance = np.array([[0.0, 0.5, 0.5, 0.9]])
    index = np.array([[3, 1, 2, 7]])
    tie = {"index": np.array([[3, 2, 1, 7]]), "distance": distance}
    real = {"index": np.array([[1, 3, 2, 7]]), "distance": distance}
    outside = {"index": np.array([[3, 9, 2, 7]]), "distance": distance}  # 9 is not listed, and 0.5 < the last, 0.9
    reference = {"index": index, "distance": distance}
    (ok, _) = compare_outputs(reference, tie)
    (bad, _) = compare_outputs(reference, real)
    (out, _) = compare_outputs(reference, outside)
    assert ok.passed and ok.ties == 2
    assert not bad.passed and bad.mismatched == 2 and "do not tie" in bad.problems[0]
    assert not out.passed and out.mismatched == 1
