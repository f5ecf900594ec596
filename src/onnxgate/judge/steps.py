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

It also says whether a stepwise output's decisions see **computed** values: float arithmetic
between the inputs and the quantiser (a scaler before the trees, layers before an argmax),
which the graph may round differently from the original. A tree ensemble reading the inputs
as given (only reshaped, or cast to a wider float) decides exactly as an original that keeps
the same float32 thresholds (XGBoost): its rows cannot flip, whatever sits near a split.
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


# ops that move values without computing new ones (a float32 value stays the same float32 value)
DATA_MOVEMENT = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Gather", "GatherElements",
                           "Slice", "Concat", "Split", "Expand", "Tile", "Pad"})
_FLOAT, _DOUBLE = 1, 11


def stepwise_outputs(model: Any) -> dict[str, bool]:
    """``model``'s (an ``onnx.ModelProto``) outputs that only a stepwise value reaches, each with
    whether its decisions see computed values (True) or the inputs as given (False)."""
    graph = model.graph
    state: dict[str, int] = {t.name: CONSTANT for t in graph.initializer}
    computed: dict[str, bool] = {}
    types: dict[str, int] = {}
    for value in graph.input:
        if value.name not in state:
            elem = value.type.tensor_type.elem_type
            state[value.name] = STEPWISE if elem in _INTEGER_TYPES else SMOOTH
            computed[value.name], types[value.name] = False, elem
    for node in graph.node:  # ONNX graphs are topologically sorted
        inputs = [n for n in node.input if n and state.get(n, CONSTANT) != CONSTANT]
        for i, name in enumerate(node.output):
            state[name] = _output_state(node, i, [state[n] for n in inputs])
            computed[name] = _computes(node, inputs, state, types) or any(computed.get(n, True) for n in inputs)
            types[name] = _cast_to(node) or (types.get(inputs[0], 0) if node.op_type in DATA_MOVEMENT and inputs else 0)
    return {o.name: computed.get(o.name, True) for o in graph.output if state.get(o.name, SMOOTH) == STEPWISE}


def _computes(node: Any, inputs: list[str], state: dict[str, int], types: dict[str, int]) -> bool:
    """Whether ``node`` computes new float values from its smooth inputs (a quantiser decides on them instead)."""
    smooth = [n for n in inputs if state[n] == SMOOTH]
    if not smooth or node.op_type in DATA_MOVEMENT or node.op_type in QUANTISERS or _casts_to_integer(node):
        return False
    if node.op_type == "Cast":  # exact from float32 to float32/float64 and from float64 to float64
        return not all((types.get(n), _cast_to(node)) in ((_FLOAT, _FLOAT), (_FLOAT, _DOUBLE), (_DOUBLE, _DOUBLE)) for n in smooth)
    return True


def _cast_to(node: Any) -> int:
    return next((a.i for a in node.attribute if a.name == "to"), 0) if node.op_type == "Cast" else 0


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
