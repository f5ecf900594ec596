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


# -- boosters inside .skops files: the payload is audited from the archive before it is parsed --


def _rewrite(src, dst, edit):
    """Copy a .skops zip, passing each member's bytes through ``edit(name, data)``."""
    import zipfile

    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, edit(name, zin.read(name)))


def _load(path):
    from onnxgate.converters.sklearn import load_skops

    return load_skops(path, Trust())


def test_skops_xgboost_tampered_child_is_refused(tmp_path):
    xgb = pytest.importorskip("xgboost")
    skops_io = pytest.importorskip("skops.io")

    skops_io.dump(xgb.XGBClassifier(n_estimators=3, max_depth=3, n_jobs=1).fit(X, Y), tmp_path / "ok.skops")
    assert _load(tmp_path / "ok.skops").n_features_in_ == 4

    def child_past_the_end(name, data):  # the first left_children entry of tree 0 (a typed int32 UBJSON array)
        if not name.endswith(".bin"):
            return data
        at = data.index(b"left_children[$l#")
        count_marker = data[at + 17:at + 18]
        start = at + 18 + {b"i": 1, b"U": 1, b"I": 2, b"l": 4, b"L": 8}[count_marker]
        return data[:start] + (10_000).to_bytes(4, "big") + data[start + 4:]

    _rewrite(tmp_path / "ok.skops", tmp_path / "bad.skops", child_past_the_end)
    with pytest.raises(AuditError, match=re.escape("_Booster.handle trees[0].left_children[0] = 10000")):
        _load(tmp_path / "bad.skops")


def test_skops_xgboost_payload_that_is_not_a_model_is_refused(tmp_path):
    xgb = pytest.importorskip("xgboost")
    skops_io = pytest.importorskip("skops.io")

    skops_io.dump(xgb.XGBRegressor(n_estimators=2, n_jobs=1).fit(X, X[:, 0]), tmp_path / "ok.skops")
    _rewrite(tmp_path / "ok.skops", tmp_path / "bad.skops", lambda n, d: d[:40] + b"[$L#L" + b"\x7f" * 8 if n.endswith(".bin") else d)
    with pytest.raises(AuditError, match="is not an xgboost model"):
        _load(tmp_path / "bad.skops")


def test_skops_lightgbm_tampered_child_is_refused(tmp_path):
    lgb = pytest.importorskip("lightgbm")
    skops_io = pytest.importorskip("skops.io")

    skops_io.dump(lgb.LGBMClassifier(n_estimators=3, num_leaves=4, verbose=-1, n_jobs=1).fit(X, Y), tmp_path / "ok.skops")
    assert _load(tmp_path / "ok.skops").n_features_in_ == 4

    def child_99(name, data):  # the model text is a JSON string inside schema.json
        if name != "schema.json":
            return data
        return re.sub(rb"(Tree=1\\\\nnum_leaves=\d+\\\\nnum_cat=\d+\\\\nsplit_feature=[^\\]*\\\\nsplit_gain=[^\\]*\\\\nthreshold=[^\\]*"
                      rb"\\\\ndecision_type=[^\\]*\\\\nleft_child=)(-?\d+)", rb"\g<1>99", data, count=1)

    _rewrite(tmp_path / "ok.skops", tmp_path / "bad.skops", child_99)
    with pytest.raises(AuditError, match=re.escape("_Booster._handle Tree=1 left_child[0] = 99 is outside")):
        _load(tmp_path / "bad.skops")


def test_skops_catboost_payload_without_its_header_is_refused(tmp_path):
    cb = pytest.importorskip("catboost")
    skops_io = pytest.importorskip("skops.io")

    model = cb.CatBoostRegressor(iterations=3, depth=2, verbose=False, thread_count=1, allow_writing_files=False).fit(X, X[:, 0])
    skops_io.dump(model, tmp_path / "ok.skops")
    assert _load(tmp_path / "ok.skops").tree_count_ == 3
    _rewrite(tmp_path / "ok.skops", tmp_path / "bad.skops", lambda n, d: b"XXXX" + d[4:] if n.endswith(".bin") else d)
    with pytest.raises(AuditError, match="no CBM1 header"):
        _load(tmp_path / "bad.skops")


def test_skops_booster_stored_other_than_as_its_state_is_refused(tmp_path):
    """A Booster node skops would build by calling the class (a ReduceNode) would hand its arguments to the
    parser unaudited: refused, one line (skops 0.16 itself has no ReduceNode loader for it; the audit refuses
    it whatever skops does)."""
    from onnxgate.errors import SourceError

    xgb = pytest.importorskip("xgboost")
    skops_io = pytest.importorskip("skops.io")

    skops_io.dump(xgb.XGBRegressor(n_estimators=2, n_jobs=1).fit(X, X[:, 0]), tmp_path / "ok.skops")
    _rewrite(tmp_path / "ok.skops", tmp_path / "bad.skops",
             lambda n, d: re.sub(rb'("__module__": "xgboost.core",\s*"__loader__": )"ObjectNode"', rb'\1"ReduceNode"', d)
             if n == "schema.json" else d)
    with pytest.raises(SourceError, match="ReduceNode"):
        _load(tmp_path / "bad.skops")
    from onnxgate.checks.audits import audit_skops_payloads

    with pytest.raises(AuditError, match="is a xgboost.core.Booster stored as a ReduceNode"):
        audit_skops_payloads(tmp_path / "bad.skops", ["xgboost.core.Booster"])


def test_ubjson_lengths_past_the_end_are_refused():
    from onnxgate.checks import ubjson

    assert ubjson.loads(b"{i\x01a[$l#i\x02\x00\x00\x00\x01\x00\x00\x00\x02}")["a"].tolist() == [1, 2]
    with pytest.raises(ubjson.UBJSONError, match="declared"):
        ubjson.loads(b"[$D#L" + (2**40).to_bytes(8, "big"))
    with pytest.raises(ubjson.UBJSONError, match="deeper"):
        ubjson.loads(b"[" * 100)
