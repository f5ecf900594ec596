"""Nearest-neighbour weights as scikit-learn computes them (``weights="distance"``).

skl2onnx (``operator_converters/nearest_neighbours.py``) builds the weights of
KNeighborsRegressor and KNeighborsClassifier as ``Reciprocal(Max(-d, 1e-6))`` on the distances
``d`` TopK returns. The ``-d`` is a leftover of opsets before 11, when TopK could only take the
largest values of the negated distances; from opset 11 TopK takes the smallest and the values are
already the distances. So every weight is ``1/1e-6`` and ``weights="distance"`` computes the
uniform mean (upstream issue 1214). Even with the sign right, scikit-learn's ``_get_weights``
gives a query row with a zero distance weight 1 for its zero-distance neighbours and 0 for the
others, where ``1/max(d, 1e-6)`` gives them 1e6 against the others' 1/d. RadiusNeighbors* have
no TopK and no sign flip, but the same floor: their distances are ``Where(inside, d, 0)`` and
their weights ``inside * Reciprocal(Max(., 1e-6))``.

:func:`distance_weights` replaces the weight nodes by scikit-learn's rule:
``Where(row has a zero, Cast(d == 0 [and inside]), 1/max(d, tiny))``; ``tiny``, the smallest
normal number, only keeps the radius graph's zeros outside the radius finite (x 0 there).
:func:`nan_zeros_dtype` gives the float32 zeros of the two-target regressor's NaN guard the
graph's dtype, so that its float64 graph (``--double``) loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled

DISTANCE_WEIGHTS = Fix(
    "sklearn.neighbors_distance_weights",
    "skl2onnx weighs k-nearest neighbours (weights='distance') by Reciprocal(Max(-d, 1e-6)): the distances "
    "TopK returns are negated (a leftover of opsets < 11), so every weight is 1e6 and the graph computes the "
    "uniform mean; and a zero distance gets 1e6 (KNeighbors*, RadiusNeighbors*) where scikit-learn keeps only "
    "the zero-distance neighbours",
    "the weights are computed as scikit-learn's _get_weights does: 1/d, and on a row with a zero distance "
    "1 for its zero-distance neighbours and 0 for the others",
    "https://github.com/onnx/sklearn-onnx/issues/1214",
)

NAN_ZEROS_DTYPE = Fix(
    "sklearn.nan_zeros_dtype",
    "skl2onnx's multi-target KNeighborsRegressor (weights='distance') replaces NaN by ConstantOfShape zeros, "
    "float32 by default; in a float64 graph (--double) ONNX Runtime refuses the Where that mixes them "
    "('Type parameter (T) of Optype (Where) bound to different types')",
    "the zeros get the dtype of the values they replace",
)

# the estimators whose skl2onnx graph weighs distances by Reciprocal(Max(d, 1e-6))
_WEIGHED = ("KNeighborsRegressor", "KNeighborsClassifier", "RadiusNeighborsRegressor", "RadiusNeighborsClassifier")


@dataclass(frozen=True)
class WeightNodes:
    """skl2onnx's weight computation: ``reciprocal(floor(negate(distances)))``; ``negate`` may be absent."""

    distances: str  # TopK's values, or the radius graph's Where(inside, d, 0)
    inside: str | None  # the radius graph's condition: which distances are neighbours (None: all)
    negate: Any | None  # Mul(distances, -1)
    floor: Any  # Max(x, 1e-6)
    reciprocal: Any
    dtype: np.dtype


def distance_weights(onx: Any, estimators: list[Any], applied: Applied) -> None:
    """:data:`DISTANCE_WEIGHTS`, for a model holding a neighbours estimator with ``weights="distance"``."""
    if not enabled(DISTANCE_WEIGHTS) or not any(_weighs_by_distance(m) for m in estimators):
        return
    found = _weight_nodes(onx.graph)
    if not found:
        return
    opset = next((i.version for i in onx.opset_import if i.domain in ("", "ai.onnx")), 1)
    _replace(onx.graph, found, opset)
    for f in found:
        applied.add(DISTANCE_WEIGHTS, "distances negated" if f.negate is not None else "zero distances")


def _weighs_by_distance(m: Any) -> bool:
    return type(m).__name__ in _WEIGHED and getattr(m, "weights", None) == "distance"


def _weight_nodes(graph: Any) -> list[WeightNodes]:
    """Every ``Reciprocal(Max(x, c))`` whose ``x`` is TopK's values (or those times -1) or a radius
    graph's ``Where(inside, d, 0)``."""
    from onnx import numpy_helper

    producer = {name: node for node in graph.node for name in node.output}
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}

    def scalar(name: str) -> float | None:
        value = constants.get(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    found = []
    for node in graph.node:
        floor = producer.get(node.input[0]) if node.op_type == "Reciprocal" else None
        if floor is None or floor.op_type != "Max" or len(floor.input) != 2 or scalar(floor.input[1]) is None:
            continue
        source, negate = floor.input[0], None
        if producer.get(source) is not None and producer[source].op_type == "Mul" and scalar(producer[source].input[1]) == -1.0:
            negate, source = producer[source], producer[source].input[0]
        top = producer.get(source)
        if top is not None and top.op_type == "TopK" and top.output[0] == source:
            found.append(WeightNodes(source, None, negate, floor, node, constants[floor.input[1]].dtype))
        elif top is not None and top.op_type == "Where" and negate is None:
            found.append(WeightNodes(source, top.input[0], None, floor, node, constants[floor.input[1]].dtype))
    return found


def _replace(graph: Any, found: list[WeightNodes], opset: int) -> None:
    """Each weight computation replaced, where its Reciprocal was, by scikit-learn's rule (one rebuild:
    protobuf copies the nodes it is given, so the ones found are valid only until then)."""
    new = {id(f.reciprocal): _sklearn_weights(graph, f, opset) for f in found}
    dropped = {id(f.floor) for f in found}
    dropped |= {id(f.negate) for f in found if f.negate is not None and not _used_elsewhere(graph, f.negate.output[0], f.floor)}
    kept = []
    for node in graph.node:
        if id(node) in new:
            kept.extend(new[id(node)])
        elif id(node) not in dropped:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)


def _used_elsewhere(graph: Any, name: str, user: Any) -> bool:
    return any(name in node.input for node in graph.node if node is not user) or any(o.name == name for o in graph.output)


def _sklearn_weights(graph: Any, found: WeightNodes, opset: int) -> list[Any]:
    """Nodes computing the Reciprocal's output as scikit-learn's weights: 1/d per neighbour, or on a row
    with a zero distance 1 for the neighbours at distance 0 and 0 for the others."""
    from onnx import TensorProto, helper, numpy_helper

    d, out, dtype = found.distances, found.reciprocal.output[0], np.dtype(found.dtype)
    p = f"{out}_sklearn"
    graph.initializer.extend([numpy_helper.from_array(np.zeros(1, dtype=dtype), f"{p}_zero"),
                              numpy_helper.from_array(np.array([np.finfo(dtype).tiny], dtype=dtype), f"{p}_tiny")])
    zero = [helper.make_node("Equal", [d, f"{p}_zero"], [f"{p}_at_zero"], name=f"{p}_equal")]
    if found.inside is not None:
        zero.append(helper.make_node("And", [f"{p}_at_zero", found.inside], [f"{p}_at_zero_inside"], name=f"{p}_inside"))
    return [
        *zero,
        helper.make_node("Cast", [zero[-1].output[0]], [f"{p}_hit"], to=helper.np_dtype_to_tensor_dtype(dtype), name=f"{p}_hit"),
        _row_max(graph, f"{p}_hit", f"{p}_any", opset),
        helper.make_node("Cast", [f"{p}_any"], [f"{p}_has_zero"], to=TensorProto.BOOL, name=f"{p}_has_zero"),
        helper.make_node("Max", [d, f"{p}_tiny"], [f"{p}_positive"], name=f"{p}_positive"),
        helper.make_node("Reciprocal", [f"{p}_positive"], [f"{p}_inverse"], name=f"{p}_inverse"),
        helper.make_node("Where", [f"{p}_has_zero", f"{p}_hit", f"{p}_inverse"], [out], name=f"{p}_where"),
    ]


def _row_max(graph: Any, x: str, out: str, opset: int) -> Any:
    """ReduceMax over axis 1, keeping it: axes an input from opset 18, an attribute before."""
    from onnx import helper, numpy_helper

    if opset >= 18:
        graph.initializer.append(numpy_helper.from_array(np.array([1], dtype=np.int64), f"{out}_axes"))
        return helper.make_node("ReduceMax", [x, f"{out}_axes"], [out], keepdims=1, name=out)
    return helper.make_node("ReduceMax", [x], [out], axes=[1], keepdims=1, name=out)


def nan_zeros_dtype(onx: Any, applied: Applied) -> None:
    """:data:`NAN_ZEROS_DTYPE`: a Where choosing between ConstantOfShape's default float32 zeros and values
    of another type gets zeros of that type."""
    if not enabled(NAN_ZEROS_DTYPE):
        return
    from onnx import TensorProto, helper, shape_inference

    producer = {name: node for node in onx.graph.node for name in node.output}
    pairs = [(producer[w.input[a]], w.input[b]) for w in onx.graph.node if w.op_type == "Where"
             for a, b in ((1, 2), (2, 1)) if getattr(producer.get(w.input[a]), "op_type", None) == "ConstantOfShape"]
    pairs = [(const, other) for const, other in pairs if not const.attribute]  # no value: float32 zeros
    if not pairs:
        return
    inferred = shape_inference.infer_shapes(onx).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.input, *inferred.value_info]}
    for const, other in pairs:
        elem = types.get(other)
        if elem and elem != TensorProto.FLOAT:
            const.attribute.append(helper.make_attribute("value", helper.make_tensor("value", elem, [1], [0])))
            applied.add(NAN_ZEROS_DTYPE, helper.tensor_dtype_to_np_dtype(elem).name)
