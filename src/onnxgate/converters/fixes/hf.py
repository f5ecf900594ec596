"""Known transformers and torch-exporter breakages (STYLE 11); torch and transformers are imported inside."""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from onnxgate.converters.fixes import Fix

VMAP_MASKS = Fix(
    "hf.vmap_free_masks",
    "a causal LM exported with torch.export cannot be saved as .pt2: 'Failed serializing node flat_apply' "
    "(transformers 4.57 builds its SDPA masks with torch.vmap)",
    "the masks are built by transformers' own vmap-free sdpa_mask_without_vmap while exporting "
    "(the same attention, registered as 'sdpa_without_vmap')",
    "transformers.integrations.executorch registers the same pair for ExecuTorch",
)


@contextlib.contextmanager
def vmap_free_masks(model: Any) -> Iterator[Any]:
    """:data:`VMAP_MASKS`: while inside, ``model`` attends with vmap-free masks; restored on exit.

    Use it around ``torch.export.export(model, ...)`` before ``torch.export.save`` of a GPT-2
    or LLaMA-style model.
    """
    from transformers.integrations.executorch import sdpa_mask_without_vmap
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    ALL_MASK_ATTENTION_FUNCTIONS.register("sdpa_without_vmap", sdpa_mask_without_vmap)
    ALL_ATTENTION_FUNCTIONS.register("sdpa_without_vmap", ALL_ATTENTION_FUNCTIONS["sdpa"])
    configs = [m.config for m in model.modules() if hasattr(getattr(m, "config", None), "_attn_implementation")]
    before = [c._attn_implementation for c in configs]
    for c in configs:
        c._attn_implementation = "sdpa_without_vmap"
    try:
        yield model
    finally:
        for c, value in zip(configs, before):
            c._attn_implementation = value


ROTARY_BATCH = Fix(
    "hf.rotary_opset",
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
