"""Tolerance policy: defaults by dtype, per-output overrides, error statistics, in the report."""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxgate.errors import OnnxgateError
from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.tolerances import DEFAULTS, TolerancePolicy, parse_error_stat, parse_tol


@pytest.mark.parametrize(
    "dtype,family",
    [
        (np.float64, "float64"),
        (np.float32, "float32"),
        (np.float16, "float16"),
        (np.int64, "integer"),
        (np.uint8, "integer"),
        (np.bool_, "bool"),
        (np.dtype("O"), "string"),
    ],
)
def test_every_dtype_has_a_cited_default(dtype, family):
    tol = TolerancePolicy().for_output("y", np.dtype(dtype))
    atol, rtol, source = DEFAULTS[family]
    assert (tol.atol, tol.rtol) == (atol, rtol)
    assert family in tol.rule and source in tol.rule


def test_override_beats_global_beats_default():
    policy = TolerancePolicy.from_options(atol=1e-3, per_output=["probabilities=0.1:0.2"])
    assert policy.for_output("probabilities", np.dtype(np.float32)).atol == 0.1
    g = policy.for_output("other", np.dtype(np.float32))
    assert g.atol == 1e-3 and g.rtol == DEFAULTS["float32"][1] and "--atol" in g.rule
    assert policy.for_output("label", np.dtype(np.int64)).atol == 0.0  # --atol never loosens labels


@pytest.mark.parametrize("bad", ["p", "p=1", "p=a:b", "p=-1:0", "=1:2"])
def test_bad_tol_is_a_user_error(bad):
    with pytest.raises(OnnxgateError, match="NAME=ATOL:RTOL"):
        parse_tol([bad])


@pytest.mark.parametrize("bad", ["median", "quantile:2", "quantile:x", "quantile:0"])
def test_bad_error_stat_is_a_user_error(bad):
    with pytest.raises(OnnxgateError, match="error-stat"):
        parse_error_stat(bad)


def _one(ref, got, **policy):
    return compare_outputs({"y": ref}, {"y": got}, policy=TolerancePolicy.from_options(**policy))[0]


def test_error_statistics_decide_differently_on_one_outlier():
    ref = np.linspace(1, 2, 1000)
    got = ref.astype(np.float32).copy()
    got[10] += 1.0  # one element far off
    assert not _one(ref, got).passed  # element-wise max: fails
    q = _one(ref, got, error_stat="quantile:0.99")
    assert q.passed and q.error_stat == "quantile:0.99" and q.stat_value == pytest.approx(0.999)
    assert not _one(ref, got, error_stat="quantile:0.9999").passed
    mean = _one(ref, got, error_stat="mean")
    assert mean.stat_value == pytest.approx(1e-3, rel=0.05) and not mean.passed  # 1e-3 > 1e-5 + 1e-4 * 1.5
    assert _one(ref, got, error_stat="mean", atol=2e-3).passed
    assert "mean |onnx - ref|" in mean.rule


def test_nan_mismatch_fails_under_any_statistic():
    ref = np.ones(100)
    got = np.ones(100, np.float32)
    got[3] = np.nan
    assert not _one(ref, got, error_stat="quantile:0.5").passed


def test_integer_output_exact_unless_overridden():
    ref = np.array([3, 4, 5])
    got = np.array([3, 5, 5])
    assert not _one(ref, got).passed
    c = compare_outputs({"q": ref}, {"q": got}, policy=TolerancePolicy.from_options(per_output=["q=1:0"]))[0]
    assert c.passed and c.kind == "integer-tolerance" and "--tol override" in c.rule
    c = compare_outputs({"q": ref}, {"q": got + 1}, policy=TolerancePolicy.from_options(per_output=["q=1:0"]))[0]
    assert not c.passed


# -- the report says which rule and numbers applied -------------------------------------------


@pytest.fixture(scope="module")
def iris_model(tmp_path_factory):
    import skops.io as sio
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    d = tmp_path_factory.mktemp("tol")
    sio.dump(LogisticRegression(max_iter=500).fit(X, y), d / "lr.skops")
    np.save(d / "x.npy", X[::7].astype(np.float32))
    return d


def test_per_output_override_appears_in_the_report(cli, iris_model, tmp_path):
    report = tmp_path / "r.json"
    md = tmp_path / "r.md"
    res = cli("-q", "run", iris_model / "lr.skops", "--sample", iris_model / "x.npy",
              "--tol", "probabilities=0.002:0.003", "--report", report, "--markdown", md)
    assert res.code == 0, res.err
    data = json.loads(report.read_text())
    assert data["tolerances"]["per_output"] == {"probabilities": {"atol": 0.002, "rtol": 0.003}}
    for case in data["cases"]:
        out = {o["name"]: o for o in case["outputs"]}
        assert (out["probabilities"]["atol"], out["probabilities"]["rtol"]) == (0.002, 0.003)
        assert "--tol override for 'probabilities'" in out["probabilities"]["rule"]
        assert out["label"]["rule"].startswith("exact for integer") and out["label"]["agreement"] == 1.0
    assert "--tol override for 'probabilities'" in md.read_text()


def test_bad_tol_on_the_command_line_exits_2_before_converting(cli, iris_model, tmp_path):
    from tests.conftest import assert_user_error

    res = cli("run", iris_model / "lr.skops", "--sample", iris_model / "x.npy", "--tol", "probabilities=0.1")
    assert_user_error(res, "--tol", "NAME=ATOL:RTOL")
    res = cli("run", iris_model / "lr.skops", "--sample", iris_model / "x.npy", "--error-stat", "median")
    assert_user_error(res, "--error-stat")
