"""Which outputs of an ONNX graph are piecewise constant in its inputs (tree ensembles, thresholds).

A tree ensemble's output does not move when an input moves a little, until the input
crosses a split threshold; then it jumps by a leaf difference. Rounding noise on such an
output is not a small spread around every value but a jump on the few rows that sit on a
threshold and nothing elsewhere, so the judge treats its floor differently
(judge/calibration.py: jump floors, allowed once, on those rows only).

The graph says which outputs behave so: values flow from the float inputs through ops; an
op that quantises its input (a tree ensemble, a comparison, an argmax, rounding, a cast to
an integer type) turns a smoothly varying value into a stepwise one; any other op passes
on the "most varying" of its inputs (smooth beats stepwise beats constant). An output is
stepwise when no smooth value reaches it. Ops with subgraphs (If, Loop, Scan) are taken as
smooth: unknown is never called stepwise.
"""

from __future__ import annotations

from typing import Any

CONSTANT, STEPWISE, SMOOTH = 0, 1, 2

# op type -> indices of its outputs that are stepwise in its inputs (None: every output)
QUANTISERS: dict[str, tuple[int, ...] | None] = {
    "TreeEnsembleRegressor": None, "TreeEnsembleClassifier": None, "TreeEnsemble": None,
    "Greater": None, "Less": None, "Equal": None, "GreaterOrEqual": None, "LessOrEqual": None,
    "ArgMax": None, "ArgMin": None, "Round": None, "Floor": None, "Ceil": None, "Sign": None,
    "IsNaN": None, "IsInf": None, "Not": None, "And": None, "Or": None, "Xor": None,
    "TopK": (1,), "Unique": (1, 2, 3), "NonZero": None, "Binarizer": None, "LabelEncoder": None,
}
SHAPE_ONLY = frozenset({"Shape", "Size"})  # their outputs do not depend on input values
_INTEGER_TYPES = frozenset({2, 3, 4, 5, 6, 7, 9, 12, 13})  # uint8..int64, bool, uint32, uint64


def stepwise_outputs(model: Any) -> frozenset[str]:
    """Names of ``model``'s (an ``onnx.ModelProto``) outputs that only a stepwise value reaches."""
    graph = model.graph
    state: dict[str, int] = {t.name: CONSTANT for t in graph.initializer}
    for value in graph.input:
        if value.name not in state:
            elem = value.type.tensor_type.elem_type
            state[value.name] = STEPWISE if elem in _INTEGER_TYPES else SMOOTH
    for node in graph.node:  # ONNX graphs are topologically sorted
        for i, name in enumerate(node.output):
            state[name] = _output_state(node, i, [state.get(n, CONSTANT) for n in node.input if n])
    return frozenset(o.name for o in graph.output if state.get(o.name, SMOOTH) == STEPWISE)


def _output_state(node: Any, index: int, inputs: list[int]) -> int:
    varying = max(inputs, default=CONSTANT)
    if node.op_type in SHAPE_ONLY:
        return CONSTANT
    if any(a.g.node or a.graphs for a in node.attribute):  # If / Loop / Scan: not analysed
        return SMOOTH if varying else CONSTANT
    quantised = QUANTISERS.get(node.op_type, ())
    if (quantised is None or index in quantised) or _casts_to_integer(node):
        return STEPWISE if varying else CONSTANT
    return varying


def _casts_to_integer(node: Any) -> bool:
    return node.op_type == "Cast" and any(a.name == "to" and a.i in _INTEGER_TYPES for a in node.attribute)
