"""Shape sweep beyond the batch axis: every dynamic axis runs at a second, odd size.

The batch axis is swept by ``pipelines.run.batch_cases`` (the sample's size, 1 and an
odd size in between). Here: the other axes the ONNX graph declares dynamic (a symbolic
``dim_param`` or no value), e.g. a sequence length. Inputs that share a symbolic name
move together (``input_ids`` and ``attention_mask`` on ``sequence``). The new size is
an odd size below the current one, reached by slicing the inputs, so real samples
(token ids, time series) stay valid; an exporter that traced the example's length
into a Reshape then fails at the new size, and the error names the axis. An axis of
:data:`SHORT_FROM` or more also runs at :data:`SHORT` (a short sentence: 64 -> 33 and 8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class AxisCase:
    """One extra case: the inputs with one dynamic axis (group) resized."""

    name: str  # e.g. "sequence=17"
    feeds: dict[str, np.ndarray]
    axis: str  # e.g. "axis 1 ('sequence') of input(s) 'input_ids', 'attention_mask'"
    size: int
    original: int

    def describe_failure(self, error: str) -> str:
        return (
            f"the model fails when {self.axis} is {self.size} instead of {self.original}: {error} -- "
            f"the graph likely froze this axis at the export size; export it as dynamic "
            f"(torch.export Dim / dynamic_axes) or declare it fixed in the ONNX inputs"
        )

    def describe_mismatch(self) -> str:
        return (
            f"outputs match at the sample's size but not when {self.axis} is {self.size} instead of {self.original}: "
            "the graph likely froze this axis at the export size"
        )


SHORT = 8  # a short length, below the odd size, for long axes
SHORT_FROM = 4 * SHORT


def sweep_sizes(n: int) -> list[int]:
    """The sizes an axis of size ``n`` is swept at: the odd size below it, and :data:`SHORT` for a long axis."""
    odd = odd_smaller(n)
    if odd is None:
        return []
    return [odd, SHORT] if n >= SHORT_FROM and SHORT < odd else [odd]


def odd_smaller(n: int) -> int | None:
    """An odd size below ``n`` (n//2 rounded up to odd), or None when n is too small to shrink."""
    if n < 3:
        return None
    m = (n // 2) | 1
    return m if m < n else None


def axis_cases(feeds: dict[str, np.ndarray], inputs: list[dict[str, Any]]) -> list[AxisCase]:
    """Cases for dynamic non-batch axes declared in ``inputs`` (``describe(model)["inputs"]``).

    ``inputs`` items are ``{"name", "shape"}`` with ints (fixed), strings (symbolic) or
    None (dynamic). Axis 0 is left to the batch sweep.
    """
    groups: dict[str, list[tuple[str, int]]] = {}  # key -> [(input, axis)]
    for io in inputs:
        shape, arr = io.get("shape"), feeds.get(io["name"])
        if not shape or arr is None or arr.ndim != len(shape):
            continue
        for axis, d in enumerate(shape):
            if axis == 0 or isinstance(d, int):
                continue
            key = d if isinstance(d, str) else f"{io['name']}:{axis}"
            groups.setdefault(key, []).append((io["name"], axis))
    cases = []
    for key, members in groups.items():
        sizes = {int(feeds[n].shape[a]) for n, a in members}
        if len(sizes) != 1:
            continue  # inputs disagree on a shared dim: the sample is odd already; leave it
        (current,) = sizes
        axes = sorted({a for _, a in members})
        label = f"axis {axes[0]}" if len(axes) == 1 else f"axes {axes}"
        named = f" ({key!r})" if ":" not in key else ""
        who = ", ".join(repr(n) for n in dict.fromkeys(n for n, _ in members))
        case_key = key if ":" not in key else key.replace(":", ".axis")
        for new in sweep_sizes(current):
            cases.append(AxisCase(f"{case_key}={new}", _sliced(feeds, members, new), f"{label}{named} of input(s) {who}", new, current))
    return cases


def _sliced(feeds: dict[str, np.ndarray], members: list[tuple[str, int]], size: int) -> dict[str, np.ndarray]:
    """``feeds`` with each (input, axis) in ``members`` cut to its first ``size`` entries."""
    out = dict(feeds)
    for n, a in members:
        index = [slice(None)] * out[n].ndim
        index[a] = slice(0, size)
        out[n] = np.ascontiguousarray(out[n][tuple(index)])
    return out
