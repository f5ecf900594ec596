"""The known-fixes layer for scikit-learn: each fix on a real estimator, real skl2onnx, real ONNX Runtime.

Each test runs a model whose conversion or comparison breaks without its fix, asserts that
onnxgate now passes it and that the report's conversion notes name the fix.
"""

from __future__ import annotations

import copy
import hashlib
import warnings

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_diabetes, load_digits, load_iris

    loader = {"iris": load_iris, "diabetes": load_diabetes, "digits": load_digits}[name]
    X, y = loader(return_X_y=True)
    return (X[:300], y[:300]) if name == "digits" else (X, y)


def _run(est, X, tmp_path):
    from onnxgate.pipelines.run import run

    sample = tmp_path / "x.npy"
    np.save(sample, np.ascontiguousarray(X[::7][:16]))
    report, conv = run(est, sample=str(sample), in_process=True)
    return report, conv


def _fixes(report) -> list[str]:
    return [n.split(":")[0].removeprefix("fix ") for n in report.conversion.notes if n.startswith("fix ")]


def _raw_convert(est, n_features: int):
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    return convert_sklearn(est, initial_types=[("X", FloatTensorType([None, n_features]))],
                           target_opset={"": 18, "ai.onnx.ml": 3})


def _models():
    from sklearn.cluster import KMeans
    from sklearn.cross_decomposition import PLSRegression
    from sklearn.discriminant_analysis import QuadraticDiscriminantAnalysis
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomTreesEmbedding, VotingClassifier
    from sklearn.linear_model import LogisticRegression, SGDOneClassSVM
    from sklearn.multiclass import OneVsOneClassifier
    from sklearn.multioutput import MultiOutputClassifier
    from sklearn.neighbors import KNeighborsTransformer, NearestNeighbors
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import KBinsDiscretizer, OneHotEncoder, StandardScaler
    from sklearn.svm import LinearSVC
    from sklearn.tree import DecisionTreeClassifier

    lr = LogisticRegression(max_iter=500)
    return {
        # fix name: (estimator, data set, fit on float32)
        "sklearn.hgb_bool_attribute": (HistGradientBoostingClassifier(max_iter=5, random_state=0), "iris"),
        "sklearn.voting_flatten_transform": (VotingClassifier([("lr", lr), ("dt", DecisionTreeClassifier(random_state=0))]), "iris"),
        "sklearn.dense_output_copy": (RandomTreesEmbedding(n_estimators=5, random_state=0), "iris"),
        "sklearn.nearest_neighbors_radius": (NearestNeighbors(), "diabetes"),
        "sklearn.pipeline_zipmap_option": (make_pipeline(StandardScaler(), LinearSVC()), "iris"),
        "sklearn.label_shape": (OneVsOneClassifier(lr), "iris"),
        "sklearn.multioutput_probabilities": (MultiOutputClassifier(lr), "iris"),
        "sklearn.declared_shapes": (PLSRegression(), "diabetes"),
        "sklearn.fitted_dtype_reference": (KMeans(n_clusters=3, n_init=1, random_state=0), "iris32"),
        "sklearn.dense_reference": (OneHotEncoder(handle_unknown="ignore"), "digits"),
        "sklearn.deterministic_graph_name": (StandardScaler(), "iris"),
        "QuadraticDiscriminantAnalysis": (QuadraticDiscriminantAnalysis(), "iris"),
        "SGDOneClassSVM": (SGDOneClassSVM(random_state=0), "iris"),
        "KNeighborsTransformer": (KNeighborsTransformer(), "diabetes"),
    }


_EXPECT = {  # model key -> the fix its run must name
    "QuadraticDiscriminantAnalysis": "sklearn.label_shape",
    "SGDOneClassSVM": "sklearn.label_shape",
    "KNeighborsTransformer": "sklearn.dense_reference",
}


def _fitted(key: str):
    est, data = _models()[key]
    X, y = _data(data.removesuffix("32"))
    if data.endswith("32"):
        X = X.astype(np.float32)
    if key == "sklearn.multioutput_probabilities":
        y = np.column_stack([y, (y > 0).astype(int)])
    est.fit(X, y)
    return est, X


@pytest.mark.parametrize("key", list(_models()))
def test_fix_makes_the_model_pass_and_is_named(key, tmp_path):
    est, X = _fitted(key)
    report, _ = _run(est, X, tmp_path)
    fix = _EXPECT.get(key, key)
    assert fix in _fixes(report), report.conversion.notes
    assert not any("differ only by unit axes" in f.message for f in report.findings)
    if key == "sklearn.fitted_dtype_reference":
        # the reference now runs (in float32, so its scores are not float64-exact): the labels must agree
        assert report.status != "error" and all(o.passed for c in report.cases for o in c.outputs if o.name == "label")
        return
    assert report.status == "passed", report.to_markdown()[:3000]


def _status_without(fix: str, est, X, tmp_path, monkeypatch) -> str:
    """The run's status with ``fix`` switched off; "signature" where it passes only by aligning unit axes
    (the graph's label rank differs from the estimator's: a consumer of the published signature breaks)."""
    monkeypatch.setenv(DISABLE_ENV, fix)
    try:
        report, _ = _run(est, X, tmp_path)
    except Exception:  # noqa: BLE001 - a conversion refused without the fix
        return "error"
    assert fix not in _fixes(report)
    if report.status == "passed" and any("differ only by unit axes" in f.message for f in report.findings):
        return "signature"
    return report.status


@pytest.mark.parametrize("key", [k for k in _models() if k != "sklearn.deterministic_graph_name"])
def test_the_model_does_not_pass_without_its_fix(key, tmp_path, monkeypatch):
    """Each fix is needed: switched off (ONNXGATE_DISABLE_FIXES), the same model fails or errors."""
    est, X = _fitted(key)
    assert _status_without(_EXPECT.get(key, key), est, X, tmp_path, monkeypatch) != "passed"


def test_without_the_name_fix_the_bytes_change(monkeypatch):
    from onnxgate.converters.sklearn import SklearnConverter

    est, X = _fitted("sklearn.deterministic_graph_name")
    monkeypatch.setenv(DISABLE_ENV, "sklearn.deterministic_graph_name")
    feeds = {"X": X[:4].astype(np.float32)}
    digests = {hashlib.sha256(SklearnConverter().convert(est, feeds, opset=None, options={}).model.SerializeToString()).hexdigest()
               for _ in range(2)}
    assert len(digests) == 2


def test_hgb_symptom_is_present_in_the_raw_converter():
    """The fix runs only on its symptom: skl2onnx alone still fails here (drop the fix when this fails)."""
    est, X = _fitted("sklearn.hgb_bool_attribute")
    with pytest.raises(Exception, match="boolean|Unable to create node"):
        _raw_convert(est, X.shape[1])


def test_declared_shapes_pass_the_full_checker(tmp_path):
    import onnx

    est, X = _fitted("sklearn.declared_shapes")
    with pytest.raises(Exception, match="differ"):
        onnx.checker.check_model(_raw_convert(est, X.shape[1]), full_check=True)
    _, conv = _run(est, X, tmp_path)
    onnx.checker.check_model(conv.model, full_check=True)


def test_fixes_absent_when_their_symptom_is():
    """A plain LogisticRegression needs only the graph name fix."""
    from sklearn.linear_model import LogisticRegression

    from onnxgate.converters.sklearn import SklearnConverter

    X, y = _data("iris")
    est = LogisticRegression(max_iter=500).fit(X, y)
    conv = SklearnConverter().convert(est, {"X": X[:4].astype(np.float32)}, opset=None, options={})
    assert [n for n in conv.notes if n.startswith("fix ")] == [
        n for n in conv.notes if n.startswith("fix sklearn.deterministic_graph_name")
    ]


def test_same_model_converts_to_the_same_bytes():
    """Same model and options, same bytes: twice, and from a deep copy (different object ids)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from onnxgate.converters.sklearn import SklearnConverter

    X, y = _data("iris")
    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
    feeds = {"X": X[:4].astype(np.float32)}
    digests = {
        hashlib.sha256(SklearnConverter().convert(m, feeds, opset=None, options={}).model.SerializeToString()).hexdigest()
        for m in (est, est, copy.deepcopy(est))
    }
    assert len(digests) == 1


@pytest.mark.parametrize("name", ["StackingRegressor", "VotingRegressor", "LinearDiscriminantAnalysis",
                                  "GaussianProcessRegressor", "ColumnTransformer", "FeatureUnion", "GridSearchCV"])
def test_reference_method_from_scikit_learn_tags(name, tmp_path):
    """scikit-learn 1.9 has no _estimator_type: the reference method comes from its tags and skl2onnx's output name."""
    from tests.converters.sklearn_catalogue import _data as catalogue_data
    from tests.converters.sklearn_catalogue import build, supported

    cls = dict(supported())[name]
    est, rows = build(name, cls, catalogue_data())
    report, _ = _run(est, rows, tmp_path)
    assert report.status == "passed", report.to_markdown()[:3000]


def test_radius_neighbors_lookup_runs_and_counts_the_neighbour_at_the_radius(tmp_path, monkeypatch):
    """Without the fixes ORT refuses skl2onnx's -1 lookup index; with the index wrapped but the strict
    ``<``, the neighbour exactly at the radius (x=1 for x=0, radius 1) is dropped: probabilities
    [1, 0] where scikit-learn says [0.5, 0.5]."""
    from sklearn.neighbors import RadiusNeighborsClassifier

    X = np.array([[0.0], [1.0], [3.0], [4.0], [6.0]])
    y = np.array([0, 1, 1, 0, 1])
    est = RadiusNeighborsClassifier(radius=1.0).fit(X, y)
    np.testing.assert_allclose(est.predict_proba([[0.0]]), [[0.5, 0.5]])
    report, _ = _run(est, X, tmp_path)
    assert report.status == "passed", report.to_markdown()
    assert {"sklearn.radius_neighbors_negative_index", "sklearn.radius_neighbors_inclusive"} <= set(_fixes(report))
    assert _status_without("sklearn.radius_neighbors_inclusive", est, X, tmp_path, monkeypatch) == "failed"
    assert _status_without("sklearn.radius_neighbors_negative_index", est, X, tmp_path, monkeypatch) != "passed"


def test_feature_selector_around_a_regressor_is_compared_on_its_transform(tmp_path, monkeypatch):
    """skl2onnx converts RFE(regressor) as the selected columns [N, k]; without the fix the reference is
    predict() [N, 1] and every case fails on shape."""
    from sklearn.feature_selection import RFE
    from sklearn.tree import DecisionTreeRegressor

    X, y = _data("diabetes")
    est = RFE(DecisionTreeRegressor(max_depth=3, random_state=0), n_features_to_select=3).fit(X, y)
    report, _ = _run(est, X, tmp_path)
    assert report.status == "passed", report.to_markdown()
    assert "sklearn.selector_transform" in _fixes(report)
    assert _status_without("sklearn.selector_transform", est, X, tmp_path, monkeypatch) != "passed"


def test_selector_keeping_only_column_zero_converts(tmp_path, monkeypatch):
    """skl2onnx writes ConstantOfShape(X) when the only selected column is 0 (`index.any()` is False for
    [0]); the checker refuses it. With the fix: column 0 itself; a selector keeping column 1 needs no fix."""
    from sklearn.feature_selection import SelectKBest

    rng = np.random.RandomState(0)
    X = rng.rand(60, 4)
    y = (X[:, 0] > 0.5).astype(int)
    est = SelectKBest(k=1).fit(X, y)
    assert list(est.get_support(indices=True)) == [0]
    report, _ = _run(est, X, tmp_path)
    assert report.status == "passed", report.to_markdown()
    assert "sklearn.selector_first_column" in _fixes(report)
    assert _status_without("sklearn.selector_first_column", est, X, tmp_path, monkeypatch) != "passed"
    monkeypatch.delenv(DISABLE_ENV)
    other = SelectKBest(k=1).fit(X[:, ::-1], y)
    report, _ = _run(other, X[:, ::-1], tmp_path)
    assert report.status == "passed" and "sklearn.selector_first_column" not in _fixes(report)


def test_gaussian_process_classifier_solve_runs_in_onnx_runtime(tmp_path, monkeypatch):
    """skl2onnx's com.microsoft:Solve has no ONNX Runtime kernel (the graph does not load); with its constant
    matrix inverted at conversion the graph loads and matches predict_proba to float32 precision."""
    import onnxruntime as ort
    from sklearn.gaussian_process import GaussianProcessClassifier

    from onnxgate.pipelines.run import convert

    X, y = _data("iris")
    X, y = X[y < 2], y[y < 2]
    est = GaussianProcessClassifier(random_state=0).fit(X, y)
    result = convert(est, tmp_path / "gpc.onnx", in_process=True)
    result.reference.close()
    assert "sklearn.constant_solve" in [n.split(":")[0].removeprefix("fix ") for n in result.conversion.notes]
    session = ort.InferenceSession(str(tmp_path / "gpc.onnx"), providers=["CPUExecutionProvider"])
    _, proba = session.run(None, {session.get_inputs()[0].name: X.astype(np.float32)})
    np.testing.assert_allclose(proba, est.predict_proba(X), atol=1e-3)
    assert np.abs(proba - est.predict_proba(X)).max() > 0  # a real computation, not a copy
    assert _status_without("sklearn.constant_solve", est, X, tmp_path, monkeypatch) != "passed"


def test_declared_batch_is_freed_and_fails_without(tmp_path, monkeypatch):
    """skl2onnx declares TfidfTransformer's output [1, k]; ORT returns one row per input row, so without
    the fix the published signature lies (an error finding) and the run fails."""
    from sklearn.feature_extraction.text import TfidfTransformer

    X, _ = _data("digits")
    est = TfidfTransformer().fit(X)
    report, _ = _run(est, X, tmp_path)
    assert report.status == "passed" and "declared_batch" in _fixes(report), report.to_markdown()[:2000]
    assert _status_without("declared_batch", est, X, tmp_path, monkeypatch) == "failed"


def test_inclusive_radius_below_opset_12_has_no_less_or_equal(tmp_path):
    """Opset 11 has no LessOrEqual: the fix compares with the next float above the radius instead."""
    import onnx
    from sklearn.neighbors import RadiusNeighborsClassifier

    from onnxgate.pipelines.run import run

    X = np.array([[0.0], [1.0], [3.0], [4.0], [6.0]])
    est = RadiusNeighborsClassifier(radius=1.0).fit(X, np.array([0, 1, 1, 0, 1]))
    np.save(tmp_path / "x.npy", X)
    report, _ = run(est, sample=str(tmp_path / "x.npy"), in_process=True, opset=11, output=str(tmp_path / "r.onnx"))
    assert report.status == "passed", report.to_markdown()
    assert "sklearn.radius_neighbors_inclusive" in _fixes(report)
    assert "LessOrEqual" not in {n.op_type for n in onnx.load(tmp_path / "r.onnx").graph.node}
