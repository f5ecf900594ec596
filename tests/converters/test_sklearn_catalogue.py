"""The breadth corpus: every estimator of all_estimators() that skl2onnx supports, with no flags.

Built in code from bundled data (tests/converters/sklearn_catalogue.py), run in process through
the public API with the estimator object. Skips and known failures name their reasons; a
known failure that starts passing fails the test, so both tables only shrink.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tests.converters import sklearn_catalogue as cat

pytest.importorskip("skl2onnx")
warnings.filterwarnings("ignore")
pytestmark = pytest.mark.slow


def _names() -> list[str]:
    try:
        return [n for n, _ in cat.supported()]
    except ImportError:
        return []


@pytest.fixture(scope="module")
def fitted():
    data = cat._data()
    classes = dict(cat.supported())
    cache: dict[str, tuple] = {}

    def get(name: str):
        if name not in cache:
            cache[name] = cat.build(name, classes[name], data)
        return cache[name]

    return get


@pytest.mark.parametrize("name", _names())
def test_catalogue_estimator_passes_with_no_flags(name, fitted, tmp_path):
    from onnxgate.pipelines.run import run

    if name in cat.SKIPS:
        pytest.skip(cat.SKIPS[name])
    est, rows = fitted(name)
    sample = tmp_path / "x.npy"
    np.save(sample, rows)
    try:
        # accept_vacuous: a default-fitted estimator may answer a constant on this sample (Lasso's
        # zero coefficients); the vacuous verdict itself is tested in tests/judge/test_verdicts.py
        report, _ = run(est, sample=str(sample), in_process=True, accept_vacuous=True)
        passed = report.passed
    except Exception as exc:  # noqa: BLE001 - a conversion error is a failure of this estimator
        report, passed = exc, False
    if name in cat.KNOWN_FAILURES:
        assert not passed, f"{name} passes now: remove it from KNOWN_FAILURES"
        pytest.xfail(cat.KNOWN_FAILURES[name])
    assert passed, report.to_markdown()[:3000] if hasattr(report, "to_markdown") else repr(report)


def test_known_failures_and_skips_name_catalogue_estimators():
    names = set(_names())
    assert set(cat.KNOWN_FAILURES) <= names and set(cat.SKIPS) <= names
