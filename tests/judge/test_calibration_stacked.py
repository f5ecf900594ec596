"""The perturbed copies of a sample share one call of an original whose rows are independent.

Real scikit-learn models on bundled data: the floors measured from one stacked call equal those of
one call per copy, value for value; an output that does not come back with the stacked rows, and
a sample too large to stack, fall back to one call per copy.
"""

from __future__ import annotations

import numpy as np
import pytest

from onnxgate.judge import calibration
from onnxgate.judge.calibration import TRIALS, noise_floors

pytest.importorskip("sklearn")


class _Counted:
    """The model's outputs as the judge asks for them, counting the calls."""

    def __init__(self, fn):
        self.fn, self.calls = fn, 0

    def __call__(self, feeds):
        self.calls += 1
        return self.fn(feeds["X"].astype(np.float64))


@pytest.fixture(scope="module")
def models():
    """name -> (the outputs as a function of float64 rows, the sample rows, the stepwise outputs)."""
    from sklearn.datasets import load_diabetes, load_iris
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    lr = LogisticRegression(max_iter=500).fit(X, y)
    Xd, yd = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=10, random_state=0).fit(Xd, yd)
    return {
        "probabilities": (lambda x: {"probabilities": lr.predict_proba(x)}, X[::10], frozenset()),
        "forest": (lambda x: {"variable": forest.predict(x).reshape(-1, 1)}, Xd[::20], frozenset({"variable"})),
    }


@pytest.mark.parametrize("name", ["probabilities", "forest"])
def test_one_stacked_call_gives_the_floors_of_one_call_per_copy(name, models):
    fn, rows, stepwise = models[name]
    feeds = {"X": rows.astype(np.float32)}
    nominal = fn(rows.astype(np.float32).astype(np.float64))
    stacked, separate = _Counted(fn), _Counted(fn)
    a = noise_floors(stacked, feeds, nominal, stepwise=stepwise, stacked=True)
    b = noise_floors(separate, feeds, nominal, stepwise=stepwise)
    assert (stacked.calls, separate.calls) == (1, TRIALS)
    for out in nominal:
        assert a[out].value == b[out].value and a[out].source == b[out].source
        np.testing.assert_array_equal(a[out].elements, b[out].elements)
        assert (a[out].jumps is None) == (b[out].jumps is None)
        if a[out].jumps is not None:
            np.testing.assert_array_equal(a[out].jumps, b[out].jumps)
    assert any(f.elements.max() > 0 for f in a.values())  # a real measurement, not zeros on both sides


def test_an_output_without_the_stacked_rows_falls_back_to_one_call_per_copy(models):
    fn, rows, _ = models["probabilities"]

    def with_summary(x):  # a per-call output: its row count is not the stacked rows'
        out = fn(x)
        return {**out, "mean": out["probabilities"].mean(axis=0, keepdims=True)}

    feeds = {"X": rows.astype(np.float32)}
    nominal = with_summary(rows.astype(np.float32).astype(np.float64))
    counted, separate = _Counted(with_summary), _Counted(with_summary)
    a = noise_floors(counted, feeds, nominal, stacked=True)
    b = noise_floors(separate, feeds, nominal)
    assert counted.calls == 1 + TRIALS
    np.testing.assert_array_equal(a["mean"].elements, b["mean"].elements)


def test_a_sample_too_large_to_stack_runs_one_call_per_copy(monkeypatch, models):
    fn, rows, _ = models["probabilities"]
    monkeypatch.setattr(calibration, "STACK_ROWS", len(rows) * TRIALS - 1)
    counted = _Counted(fn)
    noise_floors(counted, {"X": rows.astype(np.float32)}, fn(rows), stacked=True)
    assert counted.calls == TRIALS
