"""CatBoost end to end: native .cbm files and estimators, CatBoost's own ONNX export, real ORT.

The catboost converter is registered in-process here (``registry().register``) until the
``catboost`` entry point is installed; the runs use ``in_process=True`` so the framework
host sees that registration.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

warnings.filterwarnings("ignore")

catboost = pytest.importorskip("catboost")


@pytest.fixture(scope="module", autouse=True)
def registered():
    from onnxgate.converters.base import registry
    from onnxgate.converters.catboost import CatBoostConverter

    if "catboost" not in registry().names():
        registry().register(CatBoostConverter())


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from sklearn.datasets import load_diabetes, load_iris

    root = tmp_path_factory.mktemp("catboost")
    x, y = load_iris(return_X_y=True)
    classifier = catboost.CatBoostClassifier(iterations=30, depth=3, verbose=False, random_seed=0, thread_count=1).fit(x, y)
    classifier.save_model(str(root / "classifier.cbm"))
    np.save(root / "iris.npy", x[::7])
    xd, yd = load_diabetes(return_X_y=True)
    regressor = catboost.CatBoostRegressor(iterations=30, depth=3, verbose=False, random_seed=0, thread_count=1).fit(xd, yd)
    regressor.save_model(str(root / "regressor.cbm"))
    np.save(root / "diabetes.npy", xd[::9])
    return {"root": root, "classifier": classifier, "regressor": regressor}


def _run(source, **options):
    from onnxgate.pipelines.run import run

    report, conv = run(source, in_process=True, **options)
    return report, conv


@pytest.mark.parametrize("name,sample,outputs", [
    ("classifier", "iris.npy", {"label", "probabilities"}),
    ("regressor", "diabetes.npy", {"predictions"}),
])
def test_native_cbm_passes(models, name, sample, outputs):
    report, conv = _run(str(models["root"] / f"{name}.cbm"), sample=str(models["root"] / sample))
    assert report.status == "passed", report.to_markdown()
    assert {o.name for o in report.cases[0].outputs} == outputs
    assert "catboost" in conv.conversion.converter
    assert not [f for f in report.findings if f.severity == "error"], report.findings


def test_classifier_probabilities_are_a_tensor(models):
    _, conv = _run(str(models["root"] / "classifier.cbm"))
    assert not [n for n in conv.model.graph.node if n.op_type == "ZipMap"]
    assert any("zipmap_probabilities" in n for n in conv.conversion.notes)


def test_estimator_object_passes(models):
    report, _ = _run(models["regressor"])
    assert report.status == "passed", report.to_markdown()


@pytest.mark.parametrize("name", ["classifier", "regressor"])
def test_tampered_leaf_weights_fail(models, tmp_path, name):
    from onnxgate.pipelines.run import convert, validate

    source = str(models["root"] / f"{name}.cbm")
    conv = convert(source, None, in_process=True)
    conv.reference.close()
    tampered = conv.model
    (ensemble,) = [n for n in tampered.graph.node if n.op_type.startswith("TreeEnsemble")]
    (weights,) = [a for a in ensemble.attribute if a.name in ("class_weights", "target_weights")]
    weights.floats[:] = [w * 1.5 for w in weights.floats]
    onnx.save(tampered, str(tmp_path / "tampered.onnx"))
    report = validate(source, str(tmp_path / "tampered.onnx"), in_process=True)
    assert report.status == "failed", report.to_markdown()


def test_cbm_that_is_not_a_model_is_a_user_error(tmp_path):
    from onnxgate.errors import SourceError
    from onnxgate.pipelines.run import convert

    bad = tmp_path / "garbage.cbm"
    bad.write_bytes(b"not a catboost model" * 10)
    with pytest.raises(SourceError, match="cannot load .* as a CatBoost model"):
        convert(str(bad), None, in_process=True)


def test_double_is_refused(models):
    from onnxgate.errors import UnsupportedModelError
    from onnxgate.pipelines.run import convert

    with pytest.raises(UnsupportedModelError, match="float32 features only"):
        convert(str(models["root"] / "regressor.cbm"), None, in_process=True, double=True)


def test_joblib_needs_trust_and_the_framework(models, tmp_path):
    import joblib

    from onnxgate.errors import SourceError, UntrustedSourceError
    from onnxgate.pipelines.run import convert

    path = tmp_path / "classifier.joblib"
    joblib.dump(models["classifier"], path)
    with pytest.raises(SourceError, match="--framework catboost"):  # the sklearn converter claims .joblib
        convert(str(path), None, in_process=True, trust_pickle=True)
    with pytest.raises(UntrustedSourceError):
        convert(str(path), None, in_process=True, framework="catboost")
    report, _ = _run(str(path), framework="catboost", trust_pickle=True)
    assert report.status == "passed", report.to_markdown()
