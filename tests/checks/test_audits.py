"""Audited trust: scikit-learn's data-only types load from .skops with no flag once their
contents pass an audit, and the same models with one tampered index are refused (exit 2,
the array named) before anything runs on them."""

from __future__ import annotations

import json

import numpy as np
import pytest

sio = pytest.importorskip("skops.io")
pytest.importorskip("skl2onnx")

from onnxgate.checks import audits  # noqa: E402
from onnxgate.converters.sklearn import SklearnConverter  # noqa: E402
from onnxgate.errors import UntrustedSourceError  # noqa: E402
from onnxgate.trust import Trust  # noqa: E402
from tests.checks import audit_catalogue as cat  # noqa: E402
from tests.conftest import assert_user_error  # noqa: E402

CATALOGUE = cat.catalogue()
INDEXED = ("sklearn.tree._tree.Tree", "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
           "sklearn.neighbors._kd_tree.KDTree", "sklearn.neighbors._ball_tree.BallTree")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """name -> (.skops path, the types skops does not trust by default), built once."""
    import warnings

    d = tmp_path_factory.mktemp("audited")
    X = cat.data()[0]
    np.save(d / "x.npy", X[:16].astype(np.float32))
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, (cls, params) in CATALOGUE.items():
            path = d / f"{name}.skops"
            sio.dump(cat.build(name, cls, params), path)
            out[name] = (path, sio.get_untrusted_types(file=str(path)))
    out["sample"] = d / "x.npy"
    return out


def test_catalogue_covers_the_families():
    names = set(CATALOGUE)
    for expected in ("RandomForestClassifier", "HistGradientBoostingRegressor", "KNeighborsClassifier", "MLPClassifier",
                     "SelectKBest", "RFE", "TweedieRegressor", "IsolationForest", "LocalOutlierFactor"):
        assert expected in names
    assert len(names) >= 60


def test_every_untrusted_type_in_the_catalogue_is_audited(models):
    untrusted = {t for name in CATALOGUE for t in models[name][1]}
    assert untrusted, "skops trusts everything now: audited trust is moot"
    assert untrusted <= set(audits.AUDITS), sorted(untrusted - set(audits.AUDITS))


@pytest.mark.parametrize("name", list(CATALOGUE))
def test_loads_with_no_flag_and_passes_run(name, models):
    from onnxgate.pipelines.run import run

    path, untrusted = models[name]
    with audits.recording() as records:
        SklearnConverter().load(str(path), trust=Trust(), options={})
    assert {r["type"] for r in records} == set(untrusted)
    assert all(r["instances"] > 0 and r["grounds"] for r in records), records
    if name in cat.CONVERTER_GAPS:
        pytest.skip(f"loads audited; conversion: {cat.CONVERTER_GAPS[name]}")
    report, _ = run(str(path), sample=str(models["sample"]), in_process=True, accept_vacuous=True)  # see the catalogue test
    assert report.status == "passed", (name, report.failures())
    assert report.trust["pickle"] is False and report.trust["code"] is False and report.trust["types"] == []
    assert {r["type"] for r in report.trust["audited"]} == set(untrusted)


def _first(model, type_name):
    """The first instance of ``type_name`` reachable from ``model`` (the audit's own walk order)."""
    stack, seen = [("", model)], set()
    while stack:
        where, obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if audits._type_name(obj) == type_name:
            return obj
        stack.extend(audits._children(obj, where))
    raise AssertionError(f"no {type_name}")


def _tamper(obj) -> str:
    """Point one index out of range through the object's own state; returns the array's name."""
    kind = type(obj).__name__
    if kind == "Tree":
        state = obj.__getstate__()
        nodes = state["nodes"].copy()
        i = int(np.flatnonzero(nodes["left_child"] != -1)[0])
        nodes["left_child"][i] = obj.node_count + 3
        obj.__setstate__(dict(state, nodes=nodes))
        return "nodes['left_child']"
    if kind == "TreePredictor":
        i = int(np.flatnonzero(obj.nodes["is_leaf"] == 0)[0])
        obj.nodes["left"][i] = len(obj.nodes) + 3
        return "nodes['left']"
    state = list(obj.__getstate__())  # KDTree / BallTree
    idx = np.array(state[1], copy=True)
    idx[len(idx) // 2] = len(idx) + 7
    state[1] = idx
    obj.__setstate__(tuple(state))
    return "idx_array"


def _indexed(models, name):
    return next((t for t in models[name][1] if t in INDEXED), None)


# The families that hold trees or KD/ball trees (the selectors wrapping a tree included).
TAMPERABLE = [n for n, (cls, _) in CATALOGUE.items()
              if cls.__module__.split(".")[1] in ("tree", "ensemble", "neighbors") or cls.__name__ in cat.NEEDS_ESTIMATOR]


@pytest.mark.parametrize("name", TAMPERABLE)
def test_one_tampered_index_is_refused_naming_the_array(name, models, tmp_path, cli):
    type_name = _indexed(models, name)
    if type_name is None:
        pytest.skip("no tree or KD/ball tree in this model (e.g. a brute-force neighbours model)")
    model = sio.load(models[name][0], trusted=models[name][1])
    array = _tamper(_first(model, type_name))
    bad = tmp_path / "tampered.skops"
    sio.dump(model, bad)
    result = cli("run", bad, "--sample", models["sample"], "--in-process")
    assert_user_error(result, "refusing to load", array, "out" if array != "idx_array" else "outside")


def test_audit_failure_is_an_audit_error_with_no_flag_and_loads_with_trust_code(models, tmp_path):
    path, untrusted = models["DecisionTreeClassifier"]
    model = sio.load(path, trusted=untrusted)
    _tamper(model.tree_)
    bad = tmp_path / "tampered.skops"
    sio.dump(model, bad)
    with pytest.raises(audits.AuditError, match=r"tree_\.nodes\['left_child'\]\[\d+\] = \d+ is outside"):
        SklearnConverter().load(str(bad), trust=Trust(), options={})
    with audits.recording() as records:
        SklearnConverter().load(str(bad), trust=Trust(code=True), options={})
    assert "audit failed" in records[0]["grounds"]


def test_a_cycle_is_refused(models, tmp_path):
    path, untrusted = models["DecisionTreeRegressor"]
    model = sio.load(path, trusted=untrusted)
    state = model.tree_.__getstate__()
    nodes = state["nodes"].copy()
    i = int(np.flatnonzero(nodes["left_child"] != -1)[-1])
    nodes["right_child"][i] = 0  # back to the root: predict would never end
    model.tree_.__setstate__(dict(state, nodes=nodes))
    with pytest.raises(audits.AuditError, match="cycle"):
        audits.audit_estimator(model, ["sklearn.tree._tree.Tree"])


def _double(x):
    return 2 * x


def test_a_type_without_an_audit_still_needs_trust_type(tmp_path):
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "ft.skops"
    sio.dump(FunctionTransformer(_double).fit(np.ones((3, 2))), path)
    with pytest.raises(UntrustedSourceError, match="--trust-type"):
        SklearnConverter().load(str(path), trust=Trust(), options={})


def test_report_records_the_audit(models, tmp_path, cli):
    report = tmp_path / "r.json"
    path, _ = models["RandomForestClassifier"]
    result = cli("-q", "run", path, "--sample", models["sample"], "--report", report)
    assert result.code == 0, result.err
    trust = json.loads(report.read_text())["trust"]
    assert trust["audited"] == [{"type": "sklearn.tree._tree.Tree", "instances": 5, "grounds": audits.AUDITS["sklearn.tree._tree.Tree"].grounds}]
