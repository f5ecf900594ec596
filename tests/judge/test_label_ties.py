"""Classifier labels: exact, except rows whose reference top-two probabilities tie (reported)."""

from __future__ import annotations

import numpy as np

from onnxgate.judge.compare import compare_outputs


def _by_name(results):
    return {r.name: r for r in results}


def test_label_flip_on_a_tie_is_reported_not_failed():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    ref = {"label": np.array([0, 0, 1]), "probabilities": probs}
    got = {"label": np.array([1, 0, 1]), "probabilities": probs.astype(np.float32)}
    res = _by_name(compare_outputs(ref, got))
    assert res["label"].passed and res["label"].ties == 1 and res["label"].mismatched == 0
    assert "ties" in res["label"].rule


def test_label_flip_without_a_tie_fails():
    probs = np.array([[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]])
    ref = {"label": np.array([0, 0, 1]), "probabilities": probs}
    got = {"label": np.array([0, 1, 1]), "probabilities": probs.astype(np.float32)}
    res = _by_name(compare_outputs(ref, got))
    assert not res["label"].passed and res["label"].mismatched == 1
    assert res["label"].worst == {"index": [1], "reference": 0, "onnx": 1}


def test_nan_matches_nan_and_stats_are_honest():
    ref = {"y": np.array([1.0, np.nan, 3.0])}
    ok = compare_outputs(ref, {"y": np.array([1.0, np.nan, 3.0], np.float32)})[0]
    assert ok.passed and ok.max_abs_error == 0.0
    bad = compare_outputs(ref, {"y": np.array([1.0, 2.0, 3.5], np.float32)})[0]
    assert not bad.passed and bad.nan_mismatch == 1 and bad.mismatched == 2
    assert bad.max_abs_error == 0.5 and bad.worst["index"] == [1]


def test_names_dtype_and_shape_checked_first_and_all_collected():
    ref = {"a": np.zeros((2, 3)), "b": np.array(["x", "y"]), "c": np.zeros(2)}
    got = {"a": np.zeros((3, 2), np.float32), "b": np.array([1, 2]), "d": np.zeros(2)}
    res = _by_name(compare_outputs(ref, got))
    assert "shape differs" in res["a"].problems[0]
    assert "dtype kind differs" in res["b"].problems[0]
    assert not res["d"].passed and not res["c"].passed
    assert not any(r.passed for r in res.values())


def test_strings_compared_exactly():
    ref = {"label": np.array(["setosa", "virginica"], dtype=object)}
    assert compare_outputs(ref, {"label": np.array(["setosa", "virginica"], dtype=object)})[0].passed
    assert not compare_outputs(ref, {"label": np.array(["setosa", "versicolor"], dtype=object)})[0].passed
