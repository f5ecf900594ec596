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


def test_one_predict_answers_the_sample_and_its_first_rows():
    """The reference computed during conversion answers the sample again and any prefix of its rows
    (the batch cases); other rows, or the same rows moved by an ulp (calibration), run the original."""
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.converters.sklearn import SklearnConverter

    X, y = load_iris(return_X_y=True)
    est = _counted(LogisticRegression(max_iter=500).fit(X, y))
    rows = X[::10].astype(np.float32)
    converter = SklearnConverter()
    names = [o.name for o in converter.convert(est, {"X": rows}, opset=None, options={}).model.graph.output]
    assert est.calls == 1
    whole = converter.reference(est, {"X": rows.copy()}, names)  # the same values, another array
    first = converter.reference(est, {"X": rows[:3].copy()}, names)
    assert est.calls == 1
    np.testing.assert_array_equal(first["probabilities"], whole["probabilities"][:3])
    np.testing.assert_array_equal(whole["probabilities"], est.predict_proba(rows.astype(np.float64)))
    assert est.calls == 2
    moved = np.nextafter(rows, np.float32(np.inf))
    later = converter.reference(est, {"X": rows[1:4].copy()}, names)
    nudged = converter.reference(est, {"X": moved}, names)
    assert est.calls == 4 and later["probabilities"].shape == (3, 3) and nudged["probabilities"].shape == (15, 3)


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
