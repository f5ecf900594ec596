"""Graphs a converter returns that ONNX Runtime refuses, whichever framework wrote them.

"Returned" is not success: tf2onnx logs ``Tensorflow op [...] is not supported``, returns
normally and leaves the TensorFlow node in the default domain (``Erfc`` from an exact
GELU, ``StatefulPartitionedCall`` from a grouped convolution Keras compiles with XLA).
ONNX Runtime then refuses the whole graph. :func:`repair_missing_ops` rewrites each
default-domain op that the model's opset lacks into ops it has, where an equivalent
exists; what it cannot rewrite it names (op, node, opset). :func:`rejection` is the
verdict a converter acts on before it returns a graph: the checker's or ORT's loader's
complaint, or None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from onnxgate._util import one_line
from onnxgate.converters.fixes import Applied, Fix

OP_NOT_IN_OPSET = Fix(
    "onnx.op_not_in_opset",
    "the converter returned a graph with a default-domain op that the model's opset lacks (tf2onnx leaves "
    "TensorFlow's Erfc of an exact GELU as is and only logs 'not supported'); ONNX Runtime refuses the graph",
    "the op is rewritten with ops of the model's opset (Erfc(x) = 1 - Erf(x), HardSwish(x) = x * HardSigmoid(x), "
    "Mish(x) = x * Tanh(Softplus(x)))",
    "tf2onnx has no Erfc handler: https://github.com/onnx/tensorflow-onnx/blob/main/support_status.md",
)


EXPORTER_FALLBACK = Fix(
    "exporter_fallback",
    "the first exporter returned a graph that onnx.checker or ONNX Runtime's loader refuses (Keras ConvNeXt: "
    "tf2onnx keeps the XLA-compiled grouped convolution as a StatefulPartitionedCall; torch: a dynamo graph ORT "
    "cannot load)",
    "converted again with the next exporter (Keras: tf2onnx on the traced call with XLA functions inlined, then "
    "model.export(format='onnx'); torch: the TorchScript exporter)",
)


@dataclass(frozen=True)
class Missing:
    """A default-domain node whose op the model's opset lacks."""

    op: str
    node: str
    opset: int

    def describe(self) -> str:
        since = _since(self.op)
        why = f"needs opset {since}" if since is not None else "is not an ONNX op"
        return f"{self.op} (node {self.node!r}) {why}; the model imports opset {self.opset}"


def _since(op: str) -> int | None:
    from onnx import defs

    try:
        return int(defs.get_schema(op, domain="").since_version)
    except Exception:  # noqa: BLE001 - onnx raises SchemaError for unknown ops
        return None


def missing_ops(onx: Any) -> list[Missing]:
    """Every default-domain node whose op has no schema at the model's opset."""
    from onnx import defs

    opset = next((int(i.version) for i in onx.opset_import if i.domain in ("", "ai.onnx")), None)
    if opset is None:
        return []
    found = []
    for node in onx.graph.node:
        if node.domain in ("", "ai.onnx") and not defs.has(node.op_type, opset, ""):
            found.append(Missing(node.op_type, node.name or node.output[0], opset))
    return found


# -- rewrites: (node, opset) -> the nodes that compute the same output with older ops ---------


def _erfc(node: Any, opset: int) -> list[Any]:
    from onnx import helper

    x, (y,) = node.input[0], node.output
    erf, one = f"{y}__erf", f"{y}__one"
    nodes = [helper.make_node("Erf", [x], [erf], name=f"{node.name}__erf")]
    nodes += _one_like(x, one, node.name, opset)
    nodes.append(helper.make_node("Sub", [one, erf], [y], name=node.name))
    return nodes


def _one_like(x: str, out: str, name: str, opset: int) -> list[Any]:
    """A scalar 1 in ``x``'s type (CastLike from opset 15; before that float32, tf2onnx's type for Erfc)."""
    from onnx import TensorProto, helper

    const = helper.make_node("Constant", [], [f"{out}_f"] if opset >= 15 else [out], name=f"{name}__one",
                             value=helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]))
    if opset < 15:
        return [const]
    return [const, helper.make_node("CastLike", [f"{out}_f", x], [out], name=f"{name}__one_like")]


def _hard_swish(node: Any, opset: int) -> list[Any]:
    from onnx import helper

    x, (y,) = node.input[0], node.output
    gate = f"{y}__hard_sigmoid"
    return [helper.make_node("HardSigmoid", [x], [gate], alpha=1.0 / 6, beta=0.5, name=f"{node.name}__gate"),
            helper.make_node("Mul", [x, gate], [y], name=node.name)]


def _mish(node: Any, opset: int) -> list[Any]:
    from onnx import helper

    x, (y,) = node.input[0], node.output
    soft, tanh = f"{y}__softplus", f"{y}__tanh"
    return [helper.make_node("Softplus", [x], [soft], name=f"{node.name}__softplus"),
            helper.make_node("Tanh", [soft], [tanh], name=f"{node.name}__tanh"),
            helper.make_node("Mul", [x, tanh], [y], name=node.name)]


REWRITES: dict[str, Callable[[Any, int], list[Any]]] = {"Erfc": _erfc, "HardSwish": _hard_swish, "Mish": _mish}


def repair_missing_ops(onx: Any, applied: Applied) -> list[Missing]:
    """Rewrite every op the model's opset lacks where :data:`REWRITES` knows how; returns the rest."""
    missing = missing_ops(onx)
    if not missing:
        return []
    rewritable = {m.node for m in missing if m.op in REWRITES}
    kept = []
    for node in onx.graph.node:
        if (node.name or node.output[0]) in rewritable and node.domain in ("", "ai.onnx"):
            kept.extend(REWRITES[node.op_type](node, missing[0].opset))
        else:
            kept.append(node)
    if rewritable:
        del onx.graph.node[:]
        onx.graph.node.extend(kept)
        ops = sorted({m.op for m in missing if m.op in REWRITES})
        applied.add(OP_NOT_IN_OPSET, f"{', '.join(ops)} at opset {missing[0].opset}, {len(rewritable)} node(s)")
    return [m for m in missing if m.op not in REWRITES]


ORT_LOAD_LIMIT = 256 * 2**20  # bytes; larger graphs are loaded once, by the check before writing


def rejection(onx: Any) -> str | None:
    """Why the checker (full) or ONNX Runtime's loader refuses ``onx``, or None when both accept it."""
    import onnx

    unknown = missing_ops(onx)
    if unknown:
        return "; ".join(m.describe() for m in unknown[:3]) + (f" (and {len(unknown) - 3} more)" if len(unknown) > 3 else "")
    size = onx.ByteSize()
    if size >= 2**31:  # no single protobuf: the checker and ORT read it from its files at write time
        return None
    try:
        onnx.checker.check_model(onx, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for one complaint
        return f"onnx.checker: {one_line(exc, 300)}"
    if size > ORT_LOAD_LIMIT:  # a second session of a large model in the framework worker: the write check loads it
        return None
    try:
        import onnxruntime as ort

        ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        if _kernel_missing(str(exc)):
            return None  # a valid graph this build has no kernel for (bfloat16 on CPU): the validation explains it
        return f"ONNX Runtime's loader: {one_line(exc, 300)}"
    return None


def _kernel_missing(message: str) -> bool:
    return "NOT_IMPLEMENTED" in message or "Could not find an implementation" in message


def repaired_rejection(onx: Any, applied: Applied) -> str | None:
    """:func:`repair_missing_ops`, then :func:`rejection`: None when the graph is fit to return."""
    repair_missing_ops(onx, applied)
    return rejection(onx)
