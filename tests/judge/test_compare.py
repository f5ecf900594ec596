"""Comparison in task terms: label agreement and top-k agreement for scores/logits."""

from __future__ import annotations

import numpy as np

from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.tolerances import TolerancePolicy


def _logits(rows=50, classes=10, seed=0):
    return np.random.default_rng(seed).standard_normal((rows, classes))


def test_topk_agreement_passes_when_the_top_classes_agree():
    ref = _logits()
    got = (ref + 1e-7).astype(np.float32)
    c = compare_outputs({"logits": ref}, {"logits": got}, policy=TolerancePolicy(topk=3))[0]
    assert c.passed and c.topk == 3 and c.topk_agreement == 1.0 and "top-3" in c.rule


def test_topk_disagreement_fails_and_is_counted():
    ref = _logits()
    got = ref.astype(np.float32).copy()
    top = np.argmax(ref, axis=1)
    got[np.arange(5), top[:5]] = -10.0  # the top class drops out of the top-3 on 5 rows
    # 5 of 500 values are off: a 99% quantile statistic lets them through ...
    loose = TolerancePolicy.from_options(error_stat="quantile:0.99")
    assert compare_outputs({"logits": ref}, {"logits": got}, policy=loose)[0].passed
    # ... and the task check catches what they do to the ranking
    policy = TolerancePolicy.from_options(error_stat="quantile:0.99", topk=3)
    c = compare_outputs({"logits": ref}, {"logits": got}, policy=policy)[0]
    assert not c.passed and c.mismatched == 5
    assert c.topk_agreement == 0.9 and "5 of 50 rows" in c.problems[0]


def test_topk_ties_are_reported_not_failed():
    ref = np.array([[0.5, 0.5, 0.0], [0.9, 0.05, 0.05]])
    got = np.array([[0.5, 0.500002, 0.0], [0.9, 0.05, 0.05]], np.float32)
    c = compare_outputs({"p": ref}, {"p": got}, policy=TolerancePolicy(topk=1))[0]
    assert c.passed and c.topk_ties == 1


def test_label_agreement_percent():
    probs = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.4, 0.6]])
    ref = {"label": np.array([0, 1, 0, 1]), "probabilities": probs}
    got = {"label": np.array([0, 1, 1, 1]), "probabilities": probs.astype(np.float32)}
    c = {r.name: r for r in compare_outputs(ref, got)}["label"]
    assert not c.passed and c.agreement == 0.75
