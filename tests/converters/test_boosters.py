"""Native xgboost / lightgbm model files through onnxmltools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import assert_user_error

xgboost = pytest.importorskip("xgboost")
lightgbm = pytest.importorskip("lightgbm")


def _data(kind):
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris

    return {"multi": load_iris, "binary": load_breast_cancer, "regression": load_diabetes}[kind](return_X_y=True)


XGB_OBJECTIVES = {"multi": {"objective": "multi:softprob", "num_class": 3}, "binary": {"objective": "binary:logistic"}, "regression": {"objective": "reg:squarederror"}}
LGB_OBJECTIVES = {"multi": {"objective": "multiclass", "num_class": 3}, "binary": {"objective": "binary"}, "regression": {"objective": "regression"}}


@pytest.mark.parametrize("kind", ["multi", "binary", "regression"])
@pytest.mark.parametrize("fmt", ["ubj", "json"])
def test_xgboost_files(tmp_path, cli, kind, fmt):
    X, y = _data(kind)
    booster = xgboost.train(XGB_OBJECTIVES[kind], xgboost.DMatrix(X, label=y), num_boost_round=6)
    src = tmp_path / f"model.{fmt}"
    booster.save_model(src)
    np.save(tmp_path / "x.npy", X[::5])
    result = cli("-q", "run", src, "--sample", tmp_path / "x.npy", "--report", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["framework"] == "xgboost" and report["versions"]["xgboost"]


@pytest.mark.parametrize("kind", ["multi", "binary", "regression"])
def test_lightgbm_files(tmp_path, cli, kind):
    X, y = _data(kind)
    booster = lightgbm.train({**LGB_OBJECTIVES[kind], "verbose": -1}, lightgbm.Dataset(X, y), num_boost_round=6)
    src = tmp_path / "model.txt"
    booster.save_model(src)
    np.save(tmp_path / "x.npy", X[::5])
    result = cli("-q", "run", src, "--sample", tmp_path / "x.npy")
    assert result.code == 0, result.out + result.err


def test_tampered_leaf_is_caught(tmp_path, cli):
    import onnx

    X, y = _data("regression")
    booster = xgboost.train(XGB_OBJECTIVES["regression"], xgboost.DMatrix(X, label=y), num_boost_round=6)
    src = tmp_path / "model.ubj"
    booster.save_model(src)
    np.save(tmp_path / "x.npy", X[::5])
    good = tmp_path / "good.onnx"
    assert cli("-q", "convert", src, "-o", good, "--sample", tmp_path / "x.npy").code == 0
    model = onnx.load(good)
    node = next(n for n in model.graph.node if n.op_type.startswith("TreeEnsemble"))
    weights = next(a for a in node.attribute if a.name in ("target_weights", "leaf_weights"))
    for i in range(len(weights.floats)):
        weights.floats[i] *= 1.01
    onnx.save(model, tmp_path / "bad.onnx")
    result = cli("-q", "validate", src, tmp_path / "bad.onnx", "--sample", tmp_path / "x.npy")
    assert result.code == 1 and "FAIL variable" in result.out


def test_corrupt_and_mismatched_inputs(tmp_path, cli):
    bad = tmp_path / "model.ubj"
    bad.write_bytes(b"\x00\x01not a booster")
    np.save(tmp_path / "x.npy", np.ones((3, 4), np.float32))
    assert_user_error(cli("run", bad, "--sample", tmp_path / "x.npy"), "cannot load")
    X, y = _data("multi")
    booster = xgboost.train(XGB_OBJECTIVES["multi"], xgboost.DMatrix(X, label=y), num_boost_round=2)
    src = tmp_path / "ok.ubj"
    booster.save_model(src)
    np.save(tmp_path / "wide.npy", np.ones((3, 7), np.float32))
    assert_user_error(cli("run", src, "--sample", tmp_path / "wide.npy"), "expects (rows, 4)")
