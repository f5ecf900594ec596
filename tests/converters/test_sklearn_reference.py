"""How the scikit-learn converter runs the original: once for the sample's own case, on one thread for a few rows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skl2onnx")


def _counted(est):
    """``est`` with its predict_proba calls counted in ``est.calls`` (the real method runs)."""
    real = est.predict_proba
    est.calls = 0

    def predict_proba(X):
        est.calls += 1
        return real(X)

    est.predict_proba = predict_proba
    return est


def test_the_conversion_reference_answers_the_same_feeds_once():
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.converters.sklearn import SklearnConverter

    X, y = load_iris(return_X_y=True)
    est = _counted(LogisticRegression(max_iter=500).fit(X, y))
    feeds = {"X": X[:8].astype(np.float32)}
    converter = SklearnConverter()
    conv = converter.convert(est, feeds, opset=None, options={})
    names = [o.name for o in conv.model.graph.output]
    before = est.calls
    kept = converter.reference(est, {"X": feeds["X"].copy()}, names)  # same values, another array
    assert est.calls == before
    np.testing.assert_array_equal(kept["probabilities"], est.predict_proba(X[:8].astype(np.float32).astype(np.float64)))
    converter.reference(est, feeds, names)  # kept once only
    other = converter.reference(est, {"X": X[8:16].astype(np.float32)}, names)
    assert est.calls == before + 3 and other["probabilities"].shape == (8, 3)


def test_a_few_rows_run_on_one_thread_and_many_rows_as_configured():
    from threadpoolctl import threadpool_info

    from onnxgate.converters.sklearn import FEW_ROWS, SklearnConverter

    import sklearn.ensemble  # noqa: F401 - loads the OpenMP runtime threadpoolctl reports

    converter = SklearnConverter()
    default = {i["internal_api"]: i["num_threads"] for i in threadpool_info()}
    with converter.reference_context({"X": np.zeros((16, 4))}):
        assert {i["num_threads"] for i in threadpool_info()} == {1}
    with converter.reference_context({"X": np.zeros((FEW_ROWS + 1, 4))}):
        assert {i["internal_api"]: i["num_threads"] for i in threadpool_info()} == default
    assert {i["internal_api"]: i["num_threads"] for i in threadpool_info()} == default
