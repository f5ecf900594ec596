"""The opset a converter can write: its maximum, checked before converting.

Each converter knows the newest default-domain opset its exporter supports; a request
above it is a user error (exit 2) raised before the export starts, naming the maximum.
"""

from __future__ import annotations

from onnxgate.errors import OpsetError


def check_requested(requested: int | None, maximum: int, tool: str) -> None:
    """Refuse ``--opset requested`` when ``tool`` cannot write it."""
    if requested is not None and requested > maximum:
        raise OpsetError(
            f"--opset {requested}: {tool} writes opsets up to {maximum}",
            f"pass --opset {maximum} or lower",
        )


def newest_onnx_opset() -> int:
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def skl2onnx_max_opset() -> int:
    """The newest opset skl2onnx (and onnxmltools, built on it) supports with the installed onnx."""
    import skl2onnx

    return min(int(skl2onnx.__max_supported_opset__), newest_onnx_opset())
