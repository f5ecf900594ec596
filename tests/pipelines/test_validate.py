"""validate() called directly: with a Settings object, with keywords, with a loaded reference, with evidence."""

from __future__ import annotations

import numpy as np
import pytest

from onnxgate.errors import SampleError
from onnxgate.settings import Settings


@pytest.fixture(scope="module")
def iris(tmp_path_factory):
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("validate")
    model = LogisticRegression(max_iter=500).fit(X, y)
    sio.dump(model, d / "lr.skops")
    np.save(d / "x.npy", X[::7].astype(np.float32))
    onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
    (d / "lr.onnx").write_bytes(onx.SerializeToString())
    broken = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})
    node = next(n for n in broken.graph.node if n.op_type == "LinearClassifier")
    coef = next(a for a in node.attribute if a.name == "coefficients")
    coef.floats[:] = [w * 1.01 for w in coef.floats]  # the weights, 1% off
    (d / "broken.onnx").write_bytes(broken.SerializeToString())
    return d


def test_settings_object_and_keywords_give_the_same_report(iris):
    from onnxgate.pipelines.run import validate

    d = iris
    settings = Settings.from_kwargs(sample=str(d / "x.npy"), edge=True, opt_levels="all")
    a = validate(str(d / "lr.skops"), d / "lr.onnx", settings)
    b = validate(str(d / "lr.skops"), d / "lr.onnx", sample=str(d / "x.npy"), edge=True, opt_levels="all")
    assert a.passed and b.passed
    assert [c.name for c in a.cases] == [c.name for c in b.cases]
    assert {"edge:zeros", "edge:large"} <= {c.name for c in a.cases}  # --edge reaches the cases
    assert {c.optimization for c in a.cases} == {"all"}


def test_a_broken_model_fails_and_a_loaded_reference_is_reused(iris):
    from onnxgate.pipelines.run import load_source, validate

    d = iris
    with load_source(str(d / "lr.skops"), sample=str(d / "x.npy")) as reference:
        good = validate(str(d / "lr.skops"), d / "lr.onnx", reference=reference)
        bad = validate(str(d / "lr.skops"), d / "broken.onnx", reference=reference)
    assert good.passed, good.failures()
    assert bad.status == "failed" and any("probabilities" in f for f in bad.failures())


def test_evidence_replaces_the_source(iris, tmp_path):
    from onnxgate.pipelines.run import validate

    d = iris
    saved = validate(str(d / "lr.skops"), d / "lr.onnx", sample=str(d / "x.npy"), save_evidence=str(tmp_path / "ev"))
    assert saved.passed and saved.inputs.evidence
    assert validate(None, d / "lr.onnx", evidence=str(tmp_path / "ev")).passed
    assert validate(None, d / "broken.onnx", evidence=str(tmp_path / "ev")).status == "failed"
    with pytest.raises(SampleError, match="--evidence replaces SOURCE"):
        validate(str(d / "lr.skops"), d / "lr.onnx", evidence=str(tmp_path / "ev"))


def test_inputs_that_do_not_fit_the_onnx_file_are_a_user_error(iris, tmp_path):
    from onnxgate.pipelines.run import validate

    d = iris
    np.save(tmp_path / "narrow.npy", np.load(d / "x.npy")[:, :2])  # 2 of the model's 4 features
    with pytest.raises(SampleError):
        validate(str(d / "lr.skops"), d / "lr.onnx", sample=str(tmp_path / "narrow.npy"))
