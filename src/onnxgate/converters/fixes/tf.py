"""Known breakages of tf2onnx on TensorFlow graphs, fixed on the GraphDef before tf2onnx converts it."""

from __future__ import annotations

from typing import Any

from onnxgate.converters.fixes import Applied, Fix

XLA_FUNCTION_CALL = Fix(
    "tf.xla_function_call",
    "Keras compiles some ops with XLA on TensorFlow's CPU (grouped and depthwise-as-grouped convolutions, "
    "channels-first 3-D convolutions: keras.src.backend.tensorflow.nn.conv); grappler never inlines an "
    "XLA-compiled function, so tf2onnx leaves a StatefulPartitionedCall that no ONNX opset has (ConvNeXt)",
    "the XLA marks are dropped from the frozen graph and grappler runs again, inlining the function's "
    "plain TensorFlow ops (the same convolution) before tf2onnx converts them",
)
_XLA_ATTRS = ("_XlaMustCompile", "_noinline")


def strip_xla_marks(graph_def: Any) -> int:
    """Drop the attributes that keep grappler from inlining XLA-compiled functions; returns how many."""
    dropped = 0
    nodes = list(graph_def.node) + [n for f in graph_def.library.function for n in f.node_def]
    for holder in nodes + list(graph_def.library.function):
        for key in _XLA_ATTRS:
            if key in holder.attr:
                del holder.attr[key]
                dropped += 1
    return dropped


def inline_xla_functions(graph_def: Any, inputs: list[str], outputs: list[str], applied: Applied) -> Any:
    """``graph_def`` with its XLA-compiled function calls inlined by grappler (unchanged when it has none)."""
    import tensorflow as tf
    from tf2onnx import tf_loader

    if not any(n.op in ("StatefulPartitionedCall", "PartitionedCall") for n in graph_def.node):
        return graph_def
    if strip_xla_marks(graph_def) == 0:
        return graph_def
    with tf.Graph().as_default():
        tf.import_graph_def(graph_def, name="")
        inlined = tf_loader.tf_optimize(inputs, outputs, graph_def)
    calls = sum(n.op in ("StatefulPartitionedCall", "PartitionedCall") for n in inlined.node)
    applied.add(XLA_FUNCTION_CALL, f"{calls} call(s) left" if calls else "")
    return inlined
