"""Known breakages of the torch ONNX exporter (STYLE 11); torch is never imported here."""

from __future__ import annotations

from typing import Any

from onnxgate.converters.fixes import Fix


ROTARY_BATCH = Fix(
    "torch.rotary_opset",
    "a LLaMA-style model exported at opset 23 fails in ONNX Runtime at any batch above 1: the exporter fuses "
    "rotary embeddings into RotaryEmbedding-23 with cos/sin caches of batch 1, which the operator's "
    "specification (and ONNX Runtime) require to match the input's batch",
    "models with rotary embeddings are exported at opset 22 unless --opset is given (no fused RotaryEmbedding; "
    "the same arithmetic in plain operators)",
    "torch.onnx dynamo exporter's rotary-embedding fusion (onnxscript rewriter), seen with torch 2.13",
)
ROTARY_SAFE_OPSET = 22


def uses_rotary_embeddings(model: Any) -> bool:
    """Whether a module, or the module an ExportedProgram was traced from, has a rotary embedding
    (``LlamaRotaryEmbedding`` and its kin), judged by class names."""
    if hasattr(model, "graph_signature"):  # an ExportedProgram: the classes its nodes came from
        names = {str(entry[1]) for node in model.graph.nodes for entry in (node.meta.get("nn_module_stack") or {}).values()}
    else:
        names = {type(m).__name__ for m in model.modules()}
    return any(n.endswith("RotaryEmbedding") for n in names)
