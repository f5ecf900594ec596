"""The breadth corpus: every estimator of all_estimators() that skl2onnx supports, with no flags.

Built in code from bundled data (tests/converters/sklearn_catalogue.py), run in process through
the public API with the estimator object. Skips and known failures name their reasons; a
known failure that starts passing fails the test, so both tables only shrink.
"""

from __future__ import annotations

import json
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
    if isinstance(rows, list):  # DictVectorizer's rows of dicts: a .json list of objects
        sample = tmp_path / "x.json"
        sample.write_text(json.dumps(rows))
    else:
        sample = tmp_path / "x.npy"
        np.save(sample, rows)
    try:
        # no flags at all: a vacuous verdict is not a pass (sklearn_catalogue._INFORMATIVE gives the
        # estimators whose defaults answer a constant on this data the one parameter that varies it)
        report, _ = run(est, sample=str(sample), in_process=True)
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


def test_every_estimator_is_run_skipped_for_a_reason_or_has_no_converter():
    from sklearn.utils import all_estimators

    names, missing = set(_names()), cat.no_converter()
    assert names.isdisjoint(missing) and names | set(missing) == {n for n, _ in all_estimators()}
    assert set(missing.values()) == {cat.NO_CONVERTER}


@pytest.mark.parametrize("name", ["DummyClassifier", "KernelRidge"])
def test_an_estimator_with_no_converter_is_a_one_line_user_error(name, cli, tmp_path):
    skops_io = pytest.importorskip("skops.io")
    from sklearn.datasets import load_iris
    from sklearn.utils import all_estimators

    assert name in cat.no_converter()
    X, y = load_iris(return_X_y=True)
    skops_io.dump(dict(all_estimators())[name]().fit(X, y), tmp_path / "m.skops")
    result = cli("-q", "convert", tmp_path / "m.skops", "-o", tmp_path / "m.onnx")
    assert result.code == 2 and f"skl2onnx cannot convert {name}" in result.err and "Traceback" not in result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_informative_parameters_name_catalogue_estimators_with_a_reason():
    assert set(cat._INFORMATIVE) <= set(_names())
    assert all(why for _make, why in cat._INFORMATIVE.values())


@pytest.mark.parametrize("name", ["KBinsDiscretizer", "Binarizer"])
def test_the_defaults_replaced_for_information_are_vacuous_not_failed(name, tmp_path):
    """What _INFORMATIVE replaces is a verdict that proves nothing, never a failure it hides."""
    from onnxgate.pipelines.run import run

    classes, data = dict(cat.supported()), cat._data()
    est = classes[name]().fit(*data["iris"])
    np.save(tmp_path / "x.npy", data["iris"][0][::10])
    report, _ = run(est, sample=str(tmp_path / "x.npy"), in_process=True)
    assert report.status == "vacuous", report.to_markdown()
