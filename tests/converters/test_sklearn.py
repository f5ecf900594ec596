"""The scikit-learn path end to end: real estimators, real skl2onnx, real ONNX Runtime."""

from __future__ import annotations

import json
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from tests.conftest import assert_user_error

warnings.filterwarnings("ignore")

sio = pytest.importorskip("skops.io")


def _datasets():
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine

    iris, diabetes, cancer, wine = load_iris(), load_diabetes(), load_breast_cancer(), load_wine()
    return {
        "iris": (iris.data, iris.target),
        "wine": (wine.data, wine.target),
        "cancer": (cancer.data, cancer.target),
        "diabetes": (diabetes.data, diabetes.target),
    }


def _estimators():
    from sklearn import (
        cluster,
        decomposition,
        ensemble,
        linear_model,
        mixture,
        naive_bayes,
        neighbors,
        neural_network,
        pipeline,
        preprocessing,
        svm,
        tree,
    )

    return {
        # classifiers
        "LogisticRegression": (linear_model.LogisticRegression(max_iter=1000), "iris"),
        "RandomForestClassifier": (ensemble.RandomForestClassifier(n_estimators=15, random_state=0), "cancer"),
        "ExtraTreesClassifier": (ensemble.ExtraTreesClassifier(n_estimators=15, random_state=0), "wine"),
        "GradientBoostingClassifier": (ensemble.GradientBoostingClassifier(n_estimators=15, random_state=0), "iris"),
        "AdaBoostClassifier": (ensemble.AdaBoostClassifier(n_estimators=10, random_state=0), "iris"),
        "DecisionTreeClassifier": (tree.DecisionTreeClassifier(random_state=0), "iris"),
        "KNeighborsClassifier": (neighbors.KNeighborsClassifier(), "iris"),
        "GaussianNB": (naive_bayes.GaussianNB(), "wine"),
        "SVC": (svm.SVC(probability=True, random_state=0), "iris"),
        "LinearSVC-binary": (svm.LinearSVC(), "cancer"),
        "RidgeClassifier": (linear_model.RidgeClassifier(), "iris"),
        "MLPClassifier": (neural_network.MLPClassifier(max_iter=300, random_state=0), "iris"),
        # regressors
        "LinearRegression": (linear_model.LinearRegression(), "diabetes"),
        "Ridge": (linear_model.Ridge(), "diabetes"),
        "Lasso": (linear_model.Lasso(alpha=0.1), "diabetes"),
        "RandomForestRegressor": (ensemble.RandomForestRegressor(n_estimators=15, random_state=0), "diabetes"),
        "GradientBoostingRegressor": (ensemble.GradientBoostingRegressor(n_estimators=15, random_state=0), "diabetes"),
        "KNeighborsRegressor": (neighbors.KNeighborsRegressor(), "diabetes"),
        "SVR": (svm.SVR(), "diabetes"),
        # transformers
        "StandardScaler": (preprocessing.StandardScaler(), "iris"),
        "PCA": (decomposition.PCA(n_components=3), "wine"),
        # clusterers, mixtures, outlier detectors
        "KMeans": (cluster.KMeans(n_clusters=3, n_init=3, random_state=0), "iris"),
        "GaussianMixture": (mixture.GaussianMixture(n_components=3, random_state=0), "iris"),
        "IsolationForest": (ensemble.IsolationForest(n_estimators=15, random_state=0), "iris"),
        "OneClassSVM": (svm.OneClassSVM(), "iris"),
        # pipelines
        "Pipeline(scaler,PCA,logreg)": (
            pipeline.make_pipeline(
                preprocessing.StandardScaler(), decomposition.PCA(n_components=5), linear_model.LogisticRegression(max_iter=500)
            ),
            "wine",
        ),
    }


UNSUPERVISED = {"StandardScaler", "PCA", "KMeans", "GaussianMixture", "IsolationForest", "OneClassSVM"}


def _save(tmp_path, name, est, data):
    X, y = _datasets()[data]
    est.fit(X) if name in UNSUPERVISED else est.fit(X, y)
    src = tmp_path / "model.skops"
    sio.dump(est, src)
    sample = tmp_path / "x.npy"
    np.save(sample, X[::4].astype(np.float32))
    trust = [a for t in sio.get_untrusted_types(file=src) for a in ("--trust-type", t)]
    return src, sample, trust


@pytest.mark.parametrize("name", list(_estimators()))
def test_estimator_passes_run(name, tmp_path, cli):
    est, data = _estimators()[name]
    src, sample, trust = _save(tmp_path, name, est, data)
    report = tmp_path / "r.json"
    result = cli("-q", "run", src, "--sample", sample, "--report", report, "-o", tmp_path / "m.onnx", *trust)
    assert result.code == 0, result.out + result.err
    data = json.loads(report.read_text())
    assert data["status"] == "passed"
    # exercised at more than one batch size, every output compared
    assert {c["name"] for c in data["cases"]} >= {"batch=1", f"batch={data['inputs']['shapes']['X'][0]}"}
    assert all(o["total"] > 0 for c in data["cases"] for o in c["outputs"])
    assert (tmp_path / "m.onnx").stat().st_size > 0


def test_boosters_through_onnxmltools(tmp_path, cli):
    xgboost = pytest.importorskip("xgboost")
    lightgbm = pytest.importorskip("lightgbm")
    for name, est, data in [
        ("xgb", xgboost.XGBClassifier(n_estimators=10, max_depth=3), "iris"),
        ("lgbm", lightgbm.LGBMRegressor(n_estimators=10, verbose=-1), "diabetes"),
    ]:
        d = tmp_path / name
        d.mkdir()
        src, sample, trust = _save(d, name, est, data)
        result = cli("-q", "run", src, "--sample", sample, *trust)
        assert result.code == 0, (name, result.out, result.err)


def _mixed(tmp_path):
    from onnxgate.demo import _mixed_frame
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    df, y = _mixed_frame()
    numeric = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    model = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["petal_size"])]),
        LogisticRegression(max_iter=500),
    ).fit(df, y)
    src = tmp_path / "mixed.skops"
    sio.dump(model, src)
    csv = tmp_path / "mixed.csv"
    df.iloc[::3].to_csv(csv, index=False)
    return src, csv, df


def test_column_transformer_from_csv_one_input_per_column(tmp_path, cli):
    src, csv, _ = _mixed(tmp_path)
    out = tmp_path / "mixed.onnx"
    result = cli("-q", "run", src, "--sample", csv, "-o", out, "--trust-code")
    assert result.code == 0, result.out + result.err
    info = cli("inspect", out, "--json")
    inputs = {i["name"]: i["type"] for i in json.loads(info.out)["inputs"]}
    assert inputs == {
        "sepal_length": "float",
        "sepal_width": "float",
        "petal_length": "float",
        "petal_width": "float",
        "petal_size": "string",
    }


def test_csv_missing_column_is_a_user_error(tmp_path, cli):
    src, csv, df = _mixed(tmp_path)
    bad = tmp_path / "bad.csv"
    df.drop(columns=["petal_size"]).iloc[:5].to_csv(bad, index=False)
    result = cli("run", src, "--sample", bad, "--trust-code")
    assert_user_error(result, "petal_size")


@pytest.fixture
def logreg(tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    src = tmp_path / "logreg.skops"
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), src)
    sample = tmp_path / "x.npy"
    np.save(sample, X[::3].astype(np.float32))
    return src, sample, X


def test_tampered_onnx_is_caught(tmp_path, cli, logreg):
    import onnx

    src, sample, _ = logreg
    good = tmp_path / "good.onnx"
    assert cli("-q", "convert", src, "-o", good, "--sample", sample).code == 0
    assert cli("-q", "validate", src, good, "--sample", sample).code == 0

    model = onnx.load(good)
    node = next(n for n in model.graph.node if n.op_type == "LinearClassifier")
    coef = next(a for a in node.attribute if a.name == "coefficients")
    coef.floats[0] += 0.5  # perturb one weight
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    report = tmp_path / "r.json"
    junit = tmp_path / "r.xml"
    md = tmp_path / "r.md"
    result = cli("-q", "validate", src, bad, "--sample", sample, "--report", report, "--junit", junit, "--markdown", md)
    assert result.code == 1
    data = json.loads(report.read_text())
    assert data["status"] == "failed"
    failing = [o for c in data["cases"] for o in c["outputs"] if not o["passed"]]
    assert {o["name"] for o in failing} == {"probabilities"} or "probabilities" in {o["name"] for o in failing}
    worst = max(o["max_abs_error"] for o in failing if o["name"] == "probabilities")
    assert worst > 1e-3
    assert any("probabilities" in f for f in data["failures"])
    suite = ET.parse(junit).getroot().find("testsuite")
    assert int(suite.get("failures")) >= 1
    assert "**FAIL**" in md.read_text()


def test_double_exports_float64_inputs(tmp_path, cli, logreg):
    src, sample, _ = logreg
    out = tmp_path / "d.onnx"
    assert cli("-q", "run", src, "--sample", sample, "--double", "-o", out).code == 0
    info = json.loads(cli("inspect", out, "--json").out)
    assert info["inputs"][0]["type"] == "double"


def test_pickle_refused_without_trust(tmp_path, cli, logreg):
    import joblib
    import skops.io

    src, sample, _ = logreg
    pkl = tmp_path / "m.joblib"
    joblib.dump(skops.io.load(src), pkl)
    assert_user_error(cli("run", pkl, "--sample", sample), "--trust-pickle", "refusing")
    assert cli("-q", "run", pkl, "--sample", sample, "--trust-pickle").code == 0


def _halve(x):
    return x / 2


def test_untrusted_skops_types_listed(tmp_path, cli):
    """A type onnxgate cannot audit (here a user function) still needs --trust-type; trees are
    trusted by audit (tests/checks/test_audits.py)."""
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import FunctionTransformer

    X, y = load_iris(return_X_y=True)
    src = tmp_path / "fn.skops"
    sio.dump(FunctionTransformer(_halve).fit(X, y), src)
    np.save(tmp_path / "x.npy", X[:5])
    result = cli("run", src, "--sample", tmp_path / "x.npy")
    assert_user_error(result, "test_sklearn._halve", "--trust-type")


def test_wrong_feature_count(tmp_path, cli, logreg):
    src, _, X = logreg
    np.save(tmp_path / "bad.npy", X[:5, :3])
    assert_user_error(cli("run", src, "--sample", tmp_path / "bad.npy"), "3 feature column(s)", "expects 4")
    np.save(tmp_path / "flat.npy", X[0])
    assert_user_error(cli("run", src, "--sample", tmp_path / "flat.npy"), "2-D")


def test_bad_inputs_exit_2_without_output(tmp_path, cli, logreg):
    src, sample, _ = logreg
    out = tmp_path / "nodir" / "m.onnx"
    assert_user_error(cli("convert", src, "-o", out, "--sample", sample), "does not exist")
    assert not out.parent.exists()
    assert_user_error(cli("run", tmp_path / "missing.skops", "--sample", sample), "does not exist")
    assert_user_error(cli("run", src, "--sample", sample, "--framework", "nope"), "unknown framework 'nope'")
    notmodel = tmp_path / "notes.skops"
    notmodel.write_text("hello")
    assert_user_error(cli("run", notmodel, "--sample", sample), "not a valid .skops")
    unknown = tmp_path / "model.xyz"
    unknown.write_text("x")
    assert_user_error(cli("run", unknown, "--sample", sample), "no installed converter recognises")
    # a failed run leaves no ONNX file behind
    target = tmp_path / "never.onnx"
    np.save(tmp_path / "bad.npy", np.ones((3, 2), np.float32))
    assert_user_error(cli("run", src, "--sample", tmp_path / "bad.npy", "-o", target), "feature column")
    assert not target.exists()


@pytest.mark.parametrize(
    "content",
    [b"", b"\x08\x07garbage\xff\xff\xff\xff", bytes(range(256)) * 8, "truncated"],
    ids=["empty", "garbage", "random", "truncated"],
)
def test_broken_onnx_files(tmp_path, cli, logreg, content):
    src, sample, _ = logreg
    bad = tmp_path / "bad.onnx"
    if content == "truncated":
        good = tmp_path / "good.onnx"
        assert cli("-q", "convert", src, "-o", good, "--sample", sample).code == 0
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    else:
        bad.write_bytes(content)
    assert_user_error(cli("validate", src, bad, "--sample", sample), "bad.onnx")
    assert_user_error(cli("inspect", bad), "bad.onnx")


def test_failed_run_does_not_write_model(tmp_path, cli):
    """A subclass whose predict() differs, registered with its parent's skl2onnx converter: caught, nothing written."""
    np.save(tmp_path / "x.npy", np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32))
    out = tmp_path / "wrong.onnx"
    result = cli("-q", "run", "tests.converters.wrong_sklearn:scaled_ridge", "--framework", "sklearn",
                 "--sample", tmp_path / "x.npy", "-o", out, "--trust-code")
    assert result.code == 1, result.err
    assert result.out.count("FAIL variable") == 1  # the failing output, once, on stdout
    assert not out.exists()
