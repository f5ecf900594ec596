"""Known transformers breakages around torch.export (STYLE 11); transformers is imported inside."""

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



TRACEABLE_MASKS = Fix(
    "hf.traceable_masks",
    "the TorchScript exporter fails on a causal LM with 'RuntimeError: unordered_map::at' (transformers 4.57 "
    "builds its SDPA masks with torch.vmap, which tracing cannot record)",
    "the masks are built by transformers' own vmap-free sdpa_mask_without_vmap while tracing",
    "optimum's ModelPatcher registers a vmap-free sdpa mask for the same reason",
)
