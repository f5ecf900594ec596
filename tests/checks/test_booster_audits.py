"""xgboost JSON and lightgbm text models are audited before their libraries parse them:
one tampered child index is refused (exit 2, the array named); the intact model loads."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from onnxgate.checks.audits import AuditError
from onnxgate.trust import Trust

X = np.random.RandomState(0).rand(80, 4)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)


def test_xgboost_tampered_child_is_refused(tmp_path):
    xgb = pytest.importorskip("xgboost")
    from onnxgate.converters.boosters import XGBoostConverter

    booster = xgb.train({"max_depth": 3, "objective": "binary:logistic"}, xgb.DMatrix(X, Y), num_boost_round=3)
    booster.save_model(tmp_path / "ok.json")
    assert XGBoostConverter().load(str(tmp_path / "ok.json"), trust=Trust(), options={}).num_features() == 4
    model = json.loads((tmp_path / "ok.json").read_text())
    tree = model["learner"]["gradient_booster"]["model"]["trees"][1]
    tree["left_children"][0] = len(tree["left_children"]) + 5
    (tmp_path / "bad.json").write_text(json.dumps(model))
    with pytest.raises(AuditError, match=re.escape("trees[1].left_children[0] = ")):
        XGBoostConverter().load(str(tmp_path / "bad.json"), trust=Trust(), options={})


def test_lightgbm_tampered_child_is_refused(tmp_path):
    lgb = pytest.importorskip("lightgbm")
    from onnxgate.converters.boosters import LightGBMConverter

    booster = lgb.train({"num_leaves": 4, "verbose": -1, "objective": "binary"}, lgb.Dataset(X, Y), num_boost_round=3)
    booster.save_model(str(tmp_path / "ok.txt"))
    assert LightGBMConverter().load(str(tmp_path / "ok.txt"), trust=Trust(), options={}).num_feature() == 4
    text = (tmp_path / "ok.txt").read_text()
    text = re.sub(r"(Tree=1\n(?:.*\n)*?left_child=)(-?\d+)", r"\g<1>99", text, count=1)
    (tmp_path / "bad.txt").write_text(text)
    with pytest.raises(AuditError, match=re.escape("Tree=1 left_child[0] = 99 is outside")):
        LightGBMConverter().load(str(tmp_path / "bad.txt"), trust=Trust(), options={})
