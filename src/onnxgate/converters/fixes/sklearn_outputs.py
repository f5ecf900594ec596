"""Graph outputs skl2onnx leaves under another value's name plus a digit (``variable1``).

skl2onnx names every value uniquely as it parses: in ``make_pipeline(StandardScaler(), est)``
the scaler's output is declared first and takes ``variable``, so the final step's output becomes
``variable1``. Before it writes the graph, skl2onnx swaps each final output back to the name it
asked for (``Topology.convert_operators``), but its ``swap_names`` refuses any name that a Scan,
Loop or If node touches and the refusal is only logged. Nearest-neighbour steps compute their
distances in a Scan fed by the previous step's output, so a Pipeline ending in
KNeighborsRegressor, KNeighborsTransformer or RadiusNeighborsRegressor keeps ``variable1``, a name
no consumer of scikit-learn's ONNX graphs expects. :func:`canonical_output_names` finishes the
swap, subgraphs included.
"""

from __future__ import annotations

import re
from typing import Any

from onnxgate.converters.fixes import Applied, Fix, enabled

OUTPUT_NAME_CLASH = Fix(
    "sklearn.output_name_clash",
    "skl2onnx names a Pipeline's final output after an earlier step's output plus a digit ('variable1') when "
    "the two cannot be swapped back because one feeds a Scan (nearest-neighbour distances): "
    "make_pipeline(StandardScaler(), KNeighborsRegressor()), KNeighborsTransformer, RadiusNeighborsRegressor",
    "the output and the intermediate value it collided with swap names (subgraphs included), as skl2onnx "
    "does for the steps it can swap",
    "skl2onnx/common/_topology.py: swap_names raises NotImplementedError for Scan/Loop/If and the swap is skipped",
)

# the names skl2onnx's parsers ask for a model's outputs
CANONICAL_OUTPUTS = ("label", "probabilities", "variable", "scores", "index", "distance",
                     "transformed_column", "union", "GPmean")
_SUFFIXED = re.compile(r"^(?P<stem>.+?)(?P<suffix>\d+)$")


def canonical_output_names(onx: Any, applied: Applied) -> None:
    """Each graph output named ``<canonical><digits>`` while an intermediate value holds ``<canonical>``
    swaps names with that value."""
    if not enabled(OUTPUT_NAME_CLASH):
        return
    for old, new in _clashes(onx.graph):
        swap_names(onx.graph, old, new)
        applied.add(OUTPUT_NAME_CLASH, f"output {old!r} -> {new!r}")


def _clashes(graph: Any) -> list[tuple[str, str]]:
    """(suffixed output name, the canonical name an intermediate value holds) for each renamed output."""
    outputs = {o.name for o in graph.output}
    intermediates = {name for node in graph.node for name in node.output} - outputs
    found = []
    for name in [o.name for o in graph.output]:
        match = _SUFFIXED.match(name)
        stem = match.group("stem") if match else None
        if stem in CANONICAL_OUTPUTS and stem in intermediates:
            found.append((name, stem))
    return found


def swap_names(graph: Any, a: str, b: str) -> None:
    """Every reference to ``a`` in ``graph`` named ``b`` and every reference to ``b`` named ``a``, in the
    subgraphs of its nodes too (ONNX names are unique across scopes, so a subgraph's use is the outer value)."""
    swap = {a: b, b: a}
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        value.name = swap.get(value.name, value.name)
    for node in graph.node:
        for names in (node.input, node.output):
            names[:] = [swap.get(n, n) for n in names]
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                swap_names(sub, a, b)
