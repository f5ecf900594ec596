"""Say which batch axis is frozen when a model fails at a batch size other than the sample's.

An exporter can bake the example batch size into the graph: as a fixed input dim (a
static export) or inside it (a Reshape to the traced size). ONNX Runtime then fails,
or returns the wrong shape, at any other batch size. The raw ORT message ("Got
invalid dimensions for input ...") does not say what to do; these helpers turn it
into one naming the input or output and the axis.
"""

from __future__ import annotations

from typing import Any

import numpy as np

HINT = (
    "export with a dynamic batch (torch.export Dim / dynamic_axes) or, if a fixed batch is intended, "
    "pass --static to validate at the sample's batch size only"
)


def _rows(feeds: dict[str, np.ndarray]) -> int | None:
    first = next(iter(feeds.values()), None)
    return int(first.shape[0]) if first is not None and first.ndim else None


def frozen_input_axes(inputs: list[dict[str, Any]], feeds: dict[str, np.ndarray]) -> list[str]:
    """ONNX inputs whose axis 0 is a fixed number that differs from this case's batch size."""
    out = []
    for io in inputs:
        shape, arr = io.get("shape"), feeds.get(io["name"])
        if not shape or arr is None or not arr.ndim:
            continue
        if isinstance(shape[0], int) and shape[0] != arr.shape[0]:
            out.append(f"input {io['name']!r} axis 0 is frozen at {shape[0]} in the ONNX graph")
    return out


def _about_shapes(error: Any) -> bool:
    """Only a run that ONNX Runtime refused (kind "run") can be about shapes: a crashed, killed
    or out-of-memory worker, or a model that cannot load at all (loading does not depend on
    the batch size), says nothing about them. A plain message (no kind) is taken as a run failure."""
    return getattr(error, "kind", "run") == "run"


def batch_error(
    error: Any,
    inputs: list[dict[str, Any]],
    feeds: dict[str, np.ndarray],
    sample_feeds: dict[str, np.ndarray],
    reference_error: str | None = None,
) -> str:
    """The case error for an ORT failure (a RunError, or its message): the frozen axis first when that explains it."""
    rows, sample_rows = _rows(feeds), _rows(sample_feeds)
    if rows is None or rows == sample_rows or not _about_shapes(error):
        return str(error)
    error = str(error)
    frozen = frozen_input_axes(inputs, feeds)
    if frozen:
        why = "; ".join(frozen)
    else:
        names = ", ".join(repr(io["name"]) for io in inputs)
        why = (
            f"input(s) {names} have a dynamic axis 0 but the graph fails at batch {rows}: "
            f"a shape inside the ONNX graph is frozen at the export batch size {sample_rows}"
        )
    also = f"; the original model also fails at batch {rows}" if reference_error else ""
    return f"{why} ({error}){also} -- {HINT}"


def frozen_output_problems(comparisons: list[Any], feeds: dict[str, np.ndarray], sample_feeds: dict[str, np.ndarray]) -> None:
    """Name the axis when an output's batch dim stays at the sample's size while the reference's follows."""
    rows, sample_rows = _rows(feeds), _rows(sample_feeds)
    if rows is None or rows == sample_rows:
        return
    for c in comparisons:
        ref, got = c.reference_shape, c.onnx_shape
        if ref and got and len(ref) == len(got) and ref[0] == rows and got[0] != rows:
            c.passed = False
            c.problems.append(f"output {c.name!r} axis 0 is frozen at {got[0]} in the ONNX graph (the original gives {rows}) -- {HINT}")
