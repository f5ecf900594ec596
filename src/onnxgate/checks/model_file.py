"""Read ONNX files safely, describe them, and run static checks before anything executes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from onnxgate._io import sha256_bytes
from onnxgate.errors import ModelFileError
from onnxgate.judge.report import Finding

MAX_MODEL_BYTES = 2 * 1024**3  # the protobuf limit; larger models need external data


def load_onnx(path: str | Path) -> tuple[Any, bytes]:
    """Parse an ONNX file; any failure is a one-line :class:`ModelFileError`."""

    p = Path(path)
    if not p.exists():
        raise ModelFileError(f"ONNX file {str(p)!r} does not exist", "check the path")
    if p.is_dir():
        raise ModelFileError(f"{str(p)!r} is a directory, not an ONNX file", "pass the path of a .onnx file")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"ONNX file {str(p)!r} is empty", "re-export the model")
    if size > MAX_MODEL_BYTES:
        raise ModelFileError(
            f"ONNX file {str(p)!r} is {size / 1e9:.1f} GB, over the 2 GB protobuf limit",
            "save large weights as external data (onnx.save(..., save_as_external_data=True))",
        )
    from onnxgate.checks import limits

    limits.check_model_size(size, f"ONNX file {str(p)!r}")
    data = p.read_bytes()
    model = parse_onnx(data, str(p))
    limits.check_external_data(model, p.parent, f"ONNX file {str(p)!r}")
    return model, data


def parse_onnx(data: bytes, what: str = "model") -> Any:
    import onnx

    try:
        model = onnx.load_model_from_string(data)
    except Exception as exc:
        raise ModelFileError(
            f"{what!r} is not a valid ONNX model (protobuf parse failed: {type(exc).__name__})",
            "the file is truncated or not ONNX; re-export or re-download it",
        ) from None
    if not model.graph.node and not model.graph.output:
        raise ModelFileError(f"{what!r} is not a valid ONNX model (it has no graph)", "re-export or re-download it")
    return model


def opset_of(model: Any) -> int | None:
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _dtype_name(elem_type: int) -> str:
    import onnx

    try:
        return onnx.TensorProto.DataType.Name(elem_type).lower()
    except ValueError:  # a corrupt or newer file: show the number rather than fail
        return f"unknown({elem_type})"


def _value_info(vi: Any) -> dict[str, Any]:

    t = vi.type
    if t.HasField("tensor_type"):
        tt = t.tensor_type
        dims = [d.dim_param or (d.dim_value if d.HasField("dim_value") else None) for d in tt.shape.dim] if tt.HasField("shape") else None
        return {"name": vi.name, "type": _dtype_name(tt.elem_type), "shape": dims}
    return {"name": vi.name, "type": t.WhichOneof("value"), "shape": None}


def describe(model: Any, data: bytes | None = None, path: str | None = None) -> dict[str, Any]:
    """Inputs, outputs, opsets and metadata, like ``InferenceSession.get_inputs``/``get_modelmeta``."""
    initializers = {i.name for i in model.graph.initializer}
    data = data if data is not None else model.SerializeToString()
    ops: dict[str, int] = {}
    for node in model.graph.node:
        key = f"{node.domain}:{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type
        ops[key] = ops.get(key, 0) + 1
    return {
        "path": path,
        "sha256": sha256_bytes(data),
        "bytes": len(data),
        "ir_version": int(model.ir_version),
        "opset": opset_of(model),
        "opset_imports": {(i.domain or "ai.onnx"): int(i.version) for i in model.opset_import},
        "producer": f"{model.producer_name} {model.producer_version}".strip(),
        "graph_name": model.graph.name,
        "doc_string": model.doc_string,
        "metadata": {p.key: p.value for p in model.metadata_props},
        "inputs": [_value_info(i) for i in model.graph.input if i.name not in initializers],
        "outputs": [_value_info(o) for o in model.graph.output],
        "nodes": len(model.graph.node),
        "initializers": len(model.graph.initializer),
        "op_types": dict(sorted(ops.items())),
    }


def static_checks(model: Any, path: str | Path | None = None) -> list[Finding]:
    """``onnx.checker`` (full check, with shape inference) and the opset against ONNX Runtime's.

    With weights in external data the checker must resolve them next to the file, so it
    is given ``path`` (it checks the files exist without loading them into the proto).
    """
    import onnx

    findings: list[Finding] = []
    external = any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    try:
        onnx.checker.check_model(str(path) if external and path is not None else model, full_check=True)
    except Exception as exc:
        msg = " ".join(str(exc).split())[:300]
        findings.append(Finding("error", "onnx.checker", msg))
    opset = opset_of(model)
    newest = int(onnx.defs.onnx_opset_version())
    if opset is not None and opset > newest:
        findings.append(
            Finding("error", "opset", f"model opset {opset} is newer than the installed onnx knows ({newest})")
        )
    return findings
