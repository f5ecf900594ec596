"""Stepwise outputs (tree ensembles, thresholds): a one-ulp move of an input that sits on a split
is a jump, not noise. It is allowed once, on that value only, and only where a row can flip in a
float32 graph; a sample mostly on such splits is vacuous."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnxgate.judge.calibration import EXACT, JUMPS, noise_floors
from onnxgate.judge.steps import stepwise_outputs


def _graph(nodes: list, outputs: list[str], initializers: tuple = ()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in outputs]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs, list(initializers)))


def test_the_graph_says_which_outputs_are_stepwise():
    zero = helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    model = _graph([
        helper.make_node("Greater", ["x", "zero"], ["pos"]),
        helper.make_node("Where", ["pos", "x", "zero"], ["relu"]),  # continuous: x flows through
        helper.make_node("Where", ["pos", "one", "zero"], ["step"]),  # only constants flow through
        helper.make_node("Cast", ["x"], ["ints"], to=TensorProto.INT64),
        helper.make_node("Cast", ["ints"], ["rounded"], to=TensorProto.FLOAT),
        helper.make_node("Add", ["step", "relu"], ["mixed"]),
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Mul", ["x", "one"], ["scaled"]),
        helper.make_node("Greater", ["scaled", "zero"], ["on_computed"]),
        helper.make_node("Cast", ["on_computed"], ["decided"], to=TensorProto.FLOAT),
    ], ["relu", "step", "rounded", "mixed", "shape", "decided"], (zero, one))
    # name -> whether its decisions see computed values (a float32 graph may round them differently)
    assert stepwise_outputs(model) == {"step": False, "rounded": False, "decided": True}


def test_a_jump_is_allowed_once_on_its_own_value_and_nowhere_else():
    """A threshold just below row 0: moving row 0 down one ulp crosses it; rows 1-3 never move."""
    x = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)
    edge = float(np.nextafter(np.float32(1.0), np.float32(0.0)))

    def step(feeds):
        return {"y": np.where(feeds["x"] > edge, 10.0, 0.0).astype(np.float32) + np.floor(feeds["x"] / 8)}

    floors = noise_floors(step, {"x": x}, step({"x": x}), stepwise=frozenset({"y"}))
    f = floors["y"]
    assert f.source == JUMPS and f.on_threshold() == (1, 4, "rows")
    np.testing.assert_array_equal(f.elements[:, 0], [10.0, 0, 0, 0])  # the down jump, not raised to a median
    assert f.allowance((1, 1)).tolist() == [[10.0]]  # a prefix batch keeps its rows' jumps
    assert f.allowance((2, 3)) == 0.0  # a case whose rows were never measured gets none
    from onnxgate.judge.tolerances import TolerancePolicy

    tol = TolerancePolicy().calibrated(floors).for_output("y", np.dtype(np.float32))
    assert tol.k == 1.0 and "threshold jumps" in tol.rule


@pytest.fixture(scope="module")
def diabetes_boosters(tmp_path_factory):
    """XGBoost and LightGBM regressors on diabetes (features float32), each also trained on y x 1.01;
    the sample is their first 64 training rows. ONNX files converted from the right models."""
    lightgbm = pytest.importorskip("lightgbm")
    xgboost = pytest.importorskip("xgboost")
    from sklearn.datasets import load_diabetes

    from onnxgate.pipelines.run import convert

    X, y = load_diabetes(return_X_y=True)
    X = X.astype(np.float32)
    d = tmp_path_factory.mktemp("boosters")
    np.save(d / "x.npy", X[:64])
    for tag, factor in (("good", 1.0), ("scaled", 1.01)):
        xgboost.XGBRegressor(n_estimators=50, max_depth=4, n_jobs=1).fit(X, y * factor).save_model(d / f"xgb_{tag}.json")
        lgb = lightgbm.LGBMRegressor(n_estimators=50, num_leaves=15, verbose=-1, n_jobs=1, random_state=0)
        lgb.fit(X, y * factor).booster_.save_model(d / f"lgb_{tag}.txt")
    for name in ("xgb_good.json", "lgb_good.txt"):
        convert(str(d / name), d / (name.split("_")[0] + ".onnx"), sample=str(d / "x.npy"), in_process=True).reference.close()
    return d


def test_xgboost_on_its_training_rows_decides_exactly_and_a_one_percent_booster_fails(diabetes_boosters):
    """XGBoost's splits are its training values: 57 of these 64 rows sit on one. But its thresholds are
    float32 and its trees read the float32 inputs as given, as the graph does: no row can flip. The floor
    used to be the median jump (9.6) x K=16 = 154 on every row, and a booster trained on y x 1.01
    (error 3.4) passed."""
    from onnxgate.pipelines.run import validate

    d = diabetes_boosters
    good = validate(str(d / "xgb_good.json"), d / "xgb.onnx", sample=str(d / "x.npy"), in_process=True)
    assert good.passed, good.to_markdown()
    assert good.tolerances["calibration"]["floors"]["variable"]["source"] == EXACT
    scaled = validate(str(d / "xgb_scaled.json"), d / "xgb.onnx", sample=str(d / "x.npy"), in_process=True)
    assert scaled.status == "failed", scaled.to_markdown()
    assert all(o.mismatched == o.total for c in scaled.cases for o in c.outputs)  # every row, none excused
    assert not any(f.check == "tree-flip" for f in scaled.findings)  # a 1% leaf change is not a flip


def test_lightgbm_on_its_training_rows_passes_and_a_one_percent_booster_fails(diabetes_boosters):
    """LightGBM computes in float64 (its splits can flip in float32): jump floors, but its splits lie
    between training values, so no row sits on one and every row is checked."""
    from onnxgate.pipelines.run import validate

    d = diabetes_boosters
    good = validate(str(d / "lgb_good.txt"), d / "lgb.onnx", sample=str(d / "x.npy"), in_process=True)
    assert good.passed, good.to_markdown()
    floor = good.tolerances["calibration"]["floors"]["variable"]
    assert floor["source"] == JUMPS and floor["rows_on_threshold"] == 0
    scaled = validate(str(d / "lgb_scaled.txt"), d / "lgb.onnx", sample=str(d / "x.npy"), in_process=True)
    assert scaled.status == "failed", scaled.to_markdown()
    assert not any(f.check == "tree-flip" for f in scaled.findings)


def _scaled_leaves(model: onnx.ModelProto, factor: float) -> onnx.ModelProto:
    """A copy whose tree ensemble's leaf values are scaled by ``factor`` (a tree's weights live in attributes)."""
    broken = onnx.ModelProto()
    broken.CopyFrom(model)
    node = next(n for n in broken.graph.node if n.op_type.startswith("TreeEnsemble"))
    leaves = next(a for a in node.attribute if a.name in ("target_weights", "leaf_weights"))
    leaves.floats[:] = [w * factor for w in leaves.floats]
    return broken


def test_a_sample_on_a_forests_splits_is_vacuous_and_unseen_rows_catch_a_changed_leaf(tmp_path):
    """A random forest (float64 splits, rounded to float32 in the graph) on rows whose first feature of
    tree 0's root is that split rounded to float32: every row sits on a split and may flip. The right
    graph agrees there anyway, exactly: a pass that needed no allowance, said with a warning. Leaves
    x 1.01 on the same rows pass only thanks to the jumps allowed, or fail: never passed. On the plain
    rows the same check is real: leaves x 1.01 fail."""
    from sklearn.datasets import load_diabetes
    from sklearn.ensemble import RandomForestRegressor

    from onnxgate.pipelines.run import convert, validate

    X, y = load_diabetes(return_X_y=True)
    forest = RandomForestRegressor(n_estimators=10, max_depth=4, random_state=0).fit(X, y)
    root = forest.estimators_[0].tree_
    on_split = X[:32].astype(np.float32)
    on_split[:, root.feature[0]] = np.float32(root.threshold[0])
    np.save(tmp_path / "split.npy", on_split)
    np.save(tmp_path / "plain.npy", X[:32].astype(np.float32))
    conv = convert(forest, None, sample=str(tmp_path / "plain.npy"), in_process=True)
    conv.reference.close()

    def check(model, sample, **kw):
        return validate(forest, model, sample=str(tmp_path / sample), in_process=True, **kw)

    exact = check(conv.model, "split.npy")
    vacuous = check(_scaled_leaves(conv.model, 1.01), "split.npy")
    accepted = check(_scaled_leaves(conv.model, 1.01), "split.npy", accept_vacuous=True)
    plain = check(conv.model, "plain.npy")
    broken = check(_scaled_leaves(conv.model, 1.01), "plain.npy")
    assert exact.passed and any(f.check == "noise-floor" and "no value needed that allowance" in f.message
                                for f in exact.findings), exact.to_markdown()
    # most rows pass only by their jump (vacuous); two rows' errors exceed theirs (failed): never passed
    assert not vacuous.passed and "on 32 of 32 rows" in (vacuous.vacuous or ""), vacuous.to_markdown()
    assert not accepted.vacuous and any(f.check == "noise-floor" and "accepted with --accept-vacuous" in f.message
                                        for f in accepted.findings)
    assert plain.passed, plain.to_markdown()
    assert plain.tolerances["calibration"]["floors"]["variable"]["rows_on_threshold"] == 0
    assert broken.status == "failed", broken.to_markdown()


def test_a_one_sided_change_of_a_smooth_output_is_a_jump_allowed_once():
    """y = 3x, plus 1.0 on row 0 once its input moves up (a neighbour that changes): row 0's jump
    is allowed once, not K times; the symmetric response stays the noise, times K."""
    from onnxgate.judge.tolerances import TolerancePolicy

    x = np.array([[1.0], [2.0], [3.0], [4.0]], np.float32)

    def f(feeds):
        v = feeds["x"].astype(np.float64)
        return {"y": 3 * v + np.where(np.arange(4)[:, None] == 0, (v > 1.0).astype(np.float64), 0.0)}

    floor = noise_floors(f, {"x": x}, f({"x": x}))["y"]
    assert floor.jumps is not None and floor.jumps[0, 0] > 0.99 and not floor.jumps[1:].any()
    assert floor.elements[0, 0] < 1e-5  # row 0's noise is its symmetric response, not the jump
    tol = TolerancePolicy().calibrated({"y": floor}).for_output("y", np.dtype(np.float32))
    extra = tol.extra((4, 1))
    assert 1.0 < extra[0, 0] < 1.0 + 16 * 1e-5 and extra[1:].max() < 1e-4
