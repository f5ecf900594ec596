"""Known upstream breakages, one small named function each (STYLE 11).

A :class:`Fix` names the breakage: the symptom that shows it, the workaround onnxgate
applies and the upstream issue when there is one. A fix runs only when its symptom is
present; each one applied is recorded in :class:`Applied`, whose notes reach the
report's conversion section as ``fix NAME: WORKAROUND (UPSTREAM)``.

``ONNXGATE_DISABLE_FIXES=NAME,NAME`` switches fixes off (:func:`enabled`): to see a breakage
as the upstream converter leaves it, and in the tests that show each fix is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DISABLE_ENV = "ONNXGATE_DISABLE_FIXES"


@dataclass(frozen=True)
class Fix:
    name: str  # "sklearn.hgb_bool_attribute"
    symptom: str
    workaround: str
    upstream: str | None = None

    def note(self, detail: str = "") -> str:
        where = f" ({self.upstream})" if self.upstream else ""
        extra = f" [{detail}]" if detail else ""
        return f"fix {self.name}: {self.workaround}{extra}{where}"


def enabled(fix: Fix) -> bool:
    """Whether ``fix`` may run: not named in ``ONNXGATE_DISABLE_FIXES`` (comma-separated fix names)."""
    return fix.name not in {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",")}


@dataclass
class Applied:
    """The fixes applied to one conversion, in order, each once."""

    notes: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)

    def add(self, fix: Fix, detail: str = "") -> None:
        if fix.name not in self.names:
            self.names.append(fix.name)
            self.notes.append(fix.note(detail))

    def merge(self, other: "Applied") -> None:
        """The fixes of ``other`` (an attempt that was kept) not already here, in order."""
        for name, note in zip(other.names, other.notes):
            if name not in self.names:
                self.names.append(name)
                self.notes.append(note)


DECLARED_BATCH = Fix(
    "declared_batch",
    "an output declared with a fixed first dim of 1 although the batch input is dynamic: ONNX Runtime returns "
    "one row per input row, so the published signature lies (onnxmltools' lightgbm label, skl2onnx's "
    "TfidfTransformer)",
    "the output's first dim is declared symbolic (N), like the input's: a symbolic dim is never wrong",
)


def free_declared_batch(onx: object, applied: Applied) -> None:
    """:data:`DECLARED_BATCH`, where its symptom shows."""
    if not enabled(DECLARED_BATCH):
        return
    graph = onx.graph  # type: ignore[attr-defined]
    batch_free = any(
        i.type.tensor_type.shape.dim and not i.type.tensor_type.shape.dim[0].HasField("dim_value") for i in graph.input
    )
    if not batch_free:
        return
    for o in graph.output:
        dims = o.type.tensor_type.shape.dim if o.type.HasField("tensor_type") else []
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "N"
            applied.add(DECLARED_BATCH, f"output {o.name!r}")



METADATA_ORDER = Fix(
    "metadata_order",
    "the exporter writes the model's metadata_props in an order that changes with how the model was loaded "
    "(CatBoost: an estimator in memory against the same estimator loaded from skops), so the same model "
    "converts to different bytes",
    "metadata_props are sorted by key",
)


def sort_metadata(onx: object, applied: Applied) -> None:
    """:data:`METADATA_ORDER`, where the metadata is not already in key order."""
    props = onx.metadata_props  # type: ignore[attr-defined]
    ordered = sorted(props, key=lambda p: p.key)
    if not enabled(METADATA_ORDER) or [p.key for p in props] == [p.key for p in ordered]:
        return
    copies = [type(p)(key=p.key, value=p.value) for p in ordered]
    del props[:]
    props.extend(copies)
    applied.add(METADATA_ORDER)


def rename_value(nodes: Any, old: str, new: str) -> None:
    """Every use of the value ``old`` in ``nodes`` (as a node output or input) renamed ``new``."""
    for node in nodes:
        for names in (node.output, node.input):
            for i, name in enumerate(names):
                if name == old:
                    names[i] = new
