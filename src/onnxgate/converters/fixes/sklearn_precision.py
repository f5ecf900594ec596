"""skl2onnx graphs that compute the right thing and lose it to float32 rounding.

scikit-learn computes in float64; a float32 graph is faithful when its error is float32
rounding of the answer, not of some intermediate that cancels. Each fix here rewrites a
graph that skl2onnx writes so that float32 inputs give the float64 answer to float32
precision, checks its symptom first, and leaves any other graph alone:

* :func:`round_down_hgb_thresholds` -- HistGradientBoosting* thresholds rounded so that a
  float32 input takes the branch scikit-learn takes;
* :func:`center_naive_bayes_log_probabilities` -- ComplementNB/MultinomialNB joint log
  likelihoods computed around zero, where float32 keeps their differences;
* :func:`float64_core` -- GaussianProcessClassifier computed in float64 behind a float32
  interface (its five erf terms cancel), with :func:`float64_erf` for the Erf ONNX Runtime
  has only in float32.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled, rename_value

HGB_FLOAT32_THRESHOLDS = Fix(
    "sklearn.hgb_float32_thresholds",
    "skl2onnx rounds HistGradientBoosting* float64 split thresholds to the nearest float32, so a float32 "
    "input just above a threshold that rounds up takes the left branch that scikit-learn does not take "
    "(whole leaf steps of error); its other tree converters adjust the threshold, this one does not",
    "each threshold t becomes the largest float32 <= t: for every float32 x, x <= that value exactly when "
    "x <= t, so the graph takes scikit-learn's branch on every float32 input",
    "skl2onnx/operator_converters/random_forest.py passes adjust_threshold_for_sklearn=False for HGB trees",
)
NAIVE_BAYES_CENTERED = Fix(
    "sklearn.naive_bayes_centered_log_probabilities",
    "skl2onnx computes ComplementNB's joint log likelihood X @ feature_log_prob in float32: on count data it "
    "is ~1e3 per class while the class differences that decide the probabilities are ~1, so float32 rounding "
    "of the sum moves probabilities by ~1e-4 relative",
    "the feature log probabilities are centred per feature across classes (computed in float64): every row's "
    "log likelihoods shift by one constant, which softmax and argmax ignore, and float32 keeps the differences",
)
FLOAT64_CORE = Fix(
    "sklearn.float64_core",
    "skl2onnx's GaussianProcessClassifier computes the predictive variance k(x, x) - |v|^2 in float32; near "
    "the training points it cancels to a few bits and the probabilities are off by ~1e-4",
    "the graph is converted in float64 behind a float32 interface (Cast in, Cast out); its Erf is computed "
    "in float64 (fix sklearn.float64_erf)",
)
FLOAT64_ERF = Fix(
    "sklearn.float64_erf",
    "ONNX Runtime implements Erf in float32 only ('Could not find an implementation for Erf(13)' on a float64 "
    "graph: GaussianProcessClassifier with --double); rounding erf to float32 is not enough there, because "
    "the classifier sums five erf terms with coefficients of +-2000 that cancel to a probability",
    "Erf on float64 is computed with float64 ops: a degree-12 Taylor expansion around the nearest multiple "
    "of 1/8 (coefficients from erf's Hermite-polynomial derivatives), |x| clipped at 6 where erf is 1",
    "onnxruntime registers Erf for float, MLFloat16 and BFloat16 only",
)

_FLOAT64_CORE_ESTIMATORS = ("GaussianProcessClassifier",)


# -- HistGradientBoosting thresholds ------------------------------------------------------


def round_down_hgb_thresholds(onx: Any, estimators: list[Any], applied: Applied) -> None:
    """Each TreeEnsemble node that holds one HistGradientBoosting* model's trees, thresholds rounded down."""
    if not enabled(HGB_FLOAT32_THRESHOLDS):
        return
    hgbs = [m for m in estimators if hasattr(m, "_predictors")]
    for node in _float32_tree_ensembles(onx, hgbs):
        for est in hgbs:
            if _round_down(node, est):
                applied.add(HGB_FLOAT32_THRESHOLDS, type(est).__name__)
                break


def _float32_tree_ensembles(onx: Any, hgbs: list[Any]) -> Iterator[Any]:
    if not hgbs:
        return
    for node in onx.graph.node:
        if node.domain == "ai.onnx.ml" and node.op_type in ("TreeEnsembleRegressor", "TreeEnsembleClassifier"):
            if any(a.name == "nodes_values" and a.floats for a in node.attribute):
                yield node


def _round_down(node: Any, est: Any) -> bool:
    """Rewrite ``node``'s thresholds from ``est``'s float64 ones when they are its trees; whether it did."""
    attrs = {a.name: a for a in node.attribute}
    modes = [m.decode() for m in attrs["nodes_modes"].strings]
    values = np.asarray(attrs["nodes_values"].floats, dtype=np.float32)
    exact = _hgb_thresholds(est, attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, modes)
    if exact is None:
        return False
    branch = np.array([m == "BRANCH_LEQ" for m in modes])
    if not np.array_equal(exact[branch].astype(np.float32), values[branch]):  # not this estimator's trees
        return False
    rounded = exact.astype(np.float32)
    above = rounded.astype(np.float64) > exact
    down = np.where(above, np.nextafter(rounded, np.float32(-np.inf)), rounded)
    if not np.any(above & branch):
        return False
    new = np.where(branch, down, values)
    del attrs["nodes_values"].floats[:]
    attrs["nodes_values"].floats.extend(float(v) for v in new)
    return True


def _hgb_thresholds(est: Any, tree_ids: Any, node_ids: Any, modes: list[str]) -> np.ndarray | None:
    """The float64 threshold of every (tree, node) as skl2onnx numbers them (tree = iteration * K + k)."""
    predictors = est._predictors
    per_iteration = len(predictors[0]) if predictors else 0
    out = np.zeros(len(modes))
    for i, (tree, node, mode) in enumerate(zip(tree_ids, node_ids, modes)):
        if mode == "LEAF":
            continue
        it, k = divmod(int(tree), per_iteration)
        if it >= len(predictors) or node >= len(predictors[it][k].nodes):
            return None
        record = predictors[it][k].nodes[node]
        if record["is_leaf"] or record["is_categorical"]:
            return None
        out[i] = record["num_threshold"]
    return out


# -- naive Bayes on counts -----------------------------------------------------------------


def center_naive_bayes_log_probabilities(onx: Any, estimators: list[Any], applied: Applied) -> None:
    """The MatMul weight that is a ComplementNB's (or MultinomialNB's) feature_log_prob_.T, centred per feature."""
    from onnx import numpy_helper

    if not enabled(NAIVE_BAYES_CENTERED):
        return
    bayes = [m for m in estimators if type(m).__name__ in ("ComplementNB", "MultinomialNB") and len(m.classes_) > 1]
    if not bayes:
        return
    weights = {n.input[1] for n in onx.graph.node if n.op_type == "MatMul" and len(n.input) == 2}
    for init in onx.graph.initializer:
        if init.name not in weights or init.data_type != 1:  # float32 only
            continue
        value = numpy_helper.to_array(init)
        for nb in bayes:
            exact = np.asarray(nb.feature_log_prob_, dtype=np.float64).T
            if value.shape == exact.shape and np.array_equal(value, exact.astype(np.float32)):
                centred = exact - exact.mean(axis=1, keepdims=True)
                init.CopyFrom(numpy_helper.from_array(centred.astype(np.float32), init.name))
                applied.add(NAIVE_BAYES_CENTERED, type(nb).__name__)
                break


# -- float64 inside, float32 outside -------------------------------------------------------


def needs_float64_core(final: Any, dtype: type) -> bool:
    """Whether ``final``'s float32 conversion is to be computed in float64 (:data:`FLOAT64_CORE`)."""
    return enabled(FLOAT64_CORE) and np.dtype(dtype) == np.float32 and type(final).__name__ in _FLOAT64_CORE_ESTIMATORS


def float64_core(onx: Any, applied: Applied) -> Any:
    """A graph converted with float64 inputs made to take and give float32: Cast at each float input and output."""
    from onnx import TensorProto, helper

    graph = onx.graph
    nodes = []
    for inp in graph.input:
        if inp.type.tensor_type.elem_type == TensorProto.DOUBLE:
            inner = f"{inp.name}_float64"
            _rename_uses(graph, inp.name, inner)
            inp.type.tensor_type.elem_type = TensorProto.FLOAT
            nodes.append(helper.make_node("Cast", [inp.name], [inner], to=TensorProto.DOUBLE, name=f"onnxgate_{inner}"))
    nodes.extend(graph.node)
    for out in graph.output:
        if out.type.tensor_type.elem_type == TensorProto.DOUBLE:
            inner = f"{out.name}_float64"
            rename_value(nodes, out.name, inner)
            out.type.tensor_type.elem_type = TensorProto.FLOAT
            nodes.append(helper.make_node("Cast", [inner], [out.name], to=TensorProto.FLOAT, name=f"onnxgate_{out.name}_to32"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]
    applied.add(FLOAT64_CORE)
    return onx


# -- Erf in float64 ------------------------------------------------------------------------

_ERF_STEP = 0.125  # grid spacing: |x - grid point| <= 1/16
_ERF_DEGREE = 12  # Taylor terms: remainder < 1e-16 at this spacing
_ERF_LIMIT = 6.0  # erf(6) = 1 - 2e-17: 1 in float64


def float64_erf(onx: Any, applied: Applied) -> None:
    """Every Erf on a float64 tensor replaced by a Taylor expansion around the nearest grid point (ops that
    ONNX Runtime has in float64: Gather, Pow, ReduceSum), accurate to float64 rounding on the whole line."""
    from onnx import TensorProto, shape_inference

    if not enabled(FLOAT64_ERF) or not any(n.op_type == "Erf" for n in onx.graph.node):
        return
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*shape_inference.infer_shapes(onx).graph.value_info, *onx.graph.input, *onx.graph.output]}
    nodes = []
    for node in onx.graph.node:
        if node.op_type == "Erf" and node.domain in ("", "ai.onnx") and types.get(node.input[0]) == TensorProto.DOUBLE:
            nodes.extend(_erf_nodes(onx, node.input[0], node.output[0], node.name or node.output[0]))
            applied.add(FLOAT64_ERF)
        else:
            nodes.append(node)
    del onx.graph.node[:]
    onx.graph.node.extend(nodes)


def erf_taylor_table() -> np.ndarray:
    """[grid point, k]: the k-th Taylor coefficient of erf at each grid point 0, step, ..., limit (float64).

    erf'(x) = 2/sqrt(pi) exp(-x^2), and the n-th derivative is (-1)^(n-1) H_(n-1)(x) times it (physicists'
    Hermite polynomials), so c_k = erf^(k)(x0) / k!."""
    from math import erf, factorial, pi, sqrt

    from numpy.polynomial import hermite

    grid = np.arange(0.0, _ERF_LIMIT + _ERF_STEP, _ERF_STEP)
    table = np.zeros((len(grid), _ERF_DEGREE + 1))
    table[:, 0] = [erf(x) for x in grid]
    gauss = 2.0 / sqrt(pi) * np.exp(-grid**2)
    for k in range(1, _ERF_DEGREE + 1):
        h = hermite.hermval(grid, [0] * (k - 1) + [1])
        table[:, k] = (-1) ** (k - 1) * h * gauss / factorial(k)
    return table


def _erf_nodes(onx: Any, x: str, y: str, name: str) -> list[Any]:
    """erf(x) = sign(x) * sum_k c_k[i] h^k with |x| clipped to the limit, i the nearest grid point, h the offset."""
    from onnx import TensorProto, helper, numpy_helper

    p = f"onnxgate_erf64_{name}"
    axes_input = _opset(onx) >= 13  # Unsqueeze and ReduceSum take axes as an input from opset 13
    consts = {
        "table": erf_taylor_table(),
        "step": np.array(_ERF_STEP),
        "limit": np.array(_ERF_LIMIT),
        "powers": np.arange(_ERF_DEGREE + 1, dtype=np.float64),
        "zero": np.array(0.0),
    }
    if axes_input:
        consts["last"] = np.array([-1], dtype=np.int64)
    for key, value in consts.items():
        onx.graph.initializer.append(numpy_helper.from_array(value, f"{p}_{key}"))
    n = lambda op, ins, out, **kw: helper.make_node(op, [f"{p}_{i}" if i != x else x for i in ins], [f"{p}_{out}" if out != y else y], name=f"{p}_{out}", **kw)  # noqa: E731
    return [
        n("Sign", [x], "sign"),
        n("Abs", [x], "abs"),
        n("IsNaN", [x], "nan"),
        n("Min", ["abs", "limit"], "capped"),
        n("Where", ["nan", "zero", "capped"], "clipped"),  # NaN: any grid point, NaN put back at the end
        n("Div", ["clipped", "step"], "scaled"),
        n("Round", ["scaled"], "nearest"),
        n("Mul", ["nearest", "step"], "point"),
        n("Sub", ["clipped", "point"], "offset"),
        n("Cast", ["nearest"], "index", to=TensorProto.INT64),
        n("Gather", ["table", "index"], "coefficients", axis=0),
        n("Unsqueeze", ["offset", "last"], "column") if axes_input else n("Unsqueeze", ["offset"], "column", axes=[-1]),
        n("Pow", ["column", "powers"], "terms"),
        n("Mul", ["coefficients", "terms"], "weighted"),
        n("ReduceSum", ["weighted", "last"], "magnitude", keepdims=0) if axes_input
        else n("ReduceSum", ["weighted"], "magnitude", keepdims=0, axes=[-1]),
        n("Mul", ["sign", "magnitude"], "signed"),
        n("Where", ["nan", x, "signed"], y),
    ]


def _opset(onx: Any) -> int:
    return next((int(i.version) for i in onx.opset_import if i.domain in ("", "ai.onnx")), 0)


def _rename_uses(graph: Any, old: str, new: str) -> None:
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
