"""Static checks that run before any session: checker, shape inference, versions, domains, mobile.

The opset/IR check is done twice: against the ONNX Runtime installed here (its limits
are read from ORT itself, by loading a one-node probe model) and against a target
ORT release (``--target-ort``) using :data:`ORT_COMPATIBILITY`, ORT's published
version matrix. A model stamped with a newer opset than the target supports fails,
naming each op whose definition is newer than the target knows.
"""

from __future__ import annotations

import logging
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from onnxgate._util import one_line
from onnxgate.errors import OnnxgateError
from onnxgate.judge.report import Finding

# ONNX Runtime release -> (ai.onnx opset, ai.onnx.ml opset, IR version) it implements.
# Transcribed from ORT's version matrix (docs/reference/compatibility.md on
# onnxruntime.ai, rows 1.0-1.18). Releases missing here are refused by --target-ort
# rather than guessed; the installed ORT is always checked with limits read from ORT itself.
ORT_COMPATIBILITY: dict[str, tuple[int, int, int]] = {
    "1.0": (11, 2, 6),
    "1.1": (11, 2, 6),
    "1.2": (11, 2, 6),
    "1.3": (12, 2, 7),
    "1.4": (12, 2, 7),
    "1.5": (12, 2, 7),
    "1.6": (13, 2, 7),
    "1.7": (13, 2, 7),
    "1.8": (14, 2, 7),
    "1.9": (15, 2, 8),
    "1.10": (15, 2, 8),
    "1.11": (16, 2, 8),
    "1.12": (17, 3, 8),
    "1.13": (17, 3, 8),
    "1.14": (18, 3, 8),
    "1.15": (19, 3, 8),
    "1.16": (19, 3, 9),
    "1.17": (20, 4, 9),
    "1.18": (21, 4, 10),
}

# Domains ONNX Runtime implements itself; anything else needs a custom-op library.
ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.preview.training", "com.ms.internal.nhwc"}
STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml"}


def static_findings(model: Any, *, target_ort: str | None = None, mobile: bool = False) -> list[Finding]:
    """Every static finding, in a fixed order; the model is never run."""
    findings = checker_findings(model)
    findings += shape_findings(model)
    findings += installed_ort_findings(model)
    if target_ort:
        findings += target_ort_findings(model, target_ort)
    findings += domain_findings(model)
    if mobile:
        findings += mobile_findings(model)
    return findings


def checker_findings(model: Any) -> list[Finding]:
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:
        return [Finding("error", "onnx.checker", one_line(exc))]
    return []


def shape_findings(model: Any) -> list[Finding]:
    """Strict shape and type inference; models with custom-domain ops are inferred leniently."""
    import onnx

    strict = all(i.domain in STANDARD_DOMAINS for i in model.opset_import)
    try:
        onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=strict)
    except Exception as exc:
        return [Finding("error", "shape inference", one_line(exc))]
    return []


def _opsets(model: Any) -> dict[str, int]:
    return {(i.domain or "ai.onnx"): int(i.version) for i in model.opset_import}


@lru_cache(maxsize=1)
def installed_ort_limits() -> tuple[str, int, int]:
    """(version, max ai.onnx opset, max IR version) of the installed ORT, read from ORT's own refusals."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "probe", [x], [y])

    def refusal(opset: int, ir: int) -> str:
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        m.ir_version = ir
        try:
            ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        except Exception as exc:
            return str(exc)
        return ""

    newest = int(onnx.defs.onnx_opset_version())
    text = refusal(newest + 50, 7)
    found = re.search(r"support for domain ai\.onnx is till opset (\d+)", text)
    max_opset = int(found.group(1)) if found else newest
    text = refusal(11, int(onnx.IR_VERSION) + 50)
    found = re.search(r"max supported IR version: (\d+)", text)
    max_ir = int(found.group(1)) if found else int(onnx.IR_VERSION)
    return ort.__version__, max_opset, max_ir


def installed_ort_findings(model: Any) -> list[Finding]:
    version, max_opset, max_ir = installed_ort_limits()
    opset = _opsets(model).get("ai.onnx")
    out = []
    if opset is not None and opset > max_opset:
        out.append(Finding("error", "opset", f"model opset {opset} is newer than the installed onnxruntime {version} supports (up to {max_opset})"))
    if model.ir_version > max_ir:
        out.append(Finding("error", "ir version", f"model IR version {model.ir_version} is newer than the installed onnxruntime {version} supports (up to {max_ir})"))
    return out


def parse_target_ort(version: str) -> tuple[str, tuple[int, int, int]]:
    """``"1.14.1"`` -> ``("1.14", (18, 3, 8))``; an unknown release is a user error."""
    found = re.fullmatch(r"\s*v?(\d+)\.(\d+)(?:\.\d+)?\s*", version or "")
    if not found:
        raise OnnxgateError(f"--target-ort {version!r} is not an ONNX Runtime version", "pass MAJOR.MINOR[.PATCH], e.g. --target-ort 1.17")
    key = f"{int(found.group(1))}.{int(found.group(2))}"
    installed = installed_ort_limits()
    if key == ".".join(installed[0].split(".")[:2]):
        return key, (installed[1], ORT_COMPATIBILITY.get(key, (0, 99, 0))[1], installed[2])
    if key not in ORT_COMPATIBILITY:
        known = f"{next(iter(ORT_COMPATIBILITY))}–{list(ORT_COMPATIBILITY)[-1]} and the installed {installed[0]}"
        raise OnnxgateError(
            f"--target-ort {version}: onnxgate's ORT compatibility table has no row for {key}",
            f"it knows releases {known}; pick the nearest older release to stay safe",
        )
    return key, ORT_COMPATIBILITY[key]


def target_ort_findings(model: Any, version: str) -> list[Finding]:
    """The model's opsets, IR version and each op's definition against what ORT ``version`` implements."""
    key, (max_opset, max_ml, max_ir) = parse_target_ort(version)
    opsets = _opsets(model)
    out = []
    opset = opsets.get("ai.onnx")
    if opset is not None and opset > max_opset:
        ops = newer_ops(model, "", opset, max_opset)
        detail = "; ops defined after opset {}: {}".format(max_opset, ", ".join(ops)) if ops else ""
        out.append(Finding("error", "target ort", f"model opset {opset} is newer than ONNX Runtime {key} supports (up to opset {max_opset}){detail}"))
    ml = opsets.get("ai.onnx.ml")
    if ml is not None and ml > max_ml:
        ops = newer_ops(model, "ai.onnx.ml", ml, max_ml)
        detail = "; ops defined after ai.onnx.ml opset {}: {}".format(max_ml, ", ".join(ops)) if ops else ""
        out.append(Finding("error", "target ort", f"model ai.onnx.ml opset {ml} is newer than ONNX Runtime {key} supports (up to {max_ml}){detail}"))
    if model.ir_version > max_ir:
        out.append(Finding("error", "target ort", f"model IR version {model.ir_version} is newer than ONNX Runtime {key} supports (up to IR {max_ir})"))
    return out


def newer_ops(model: Any, domain: str, opset: int, max_opset: int) -> list[str]:
    """Ops whose definition at ``opset`` is newer than ``max_opset``: ``"Cast (opset 21 version; 1.14 has Cast-19)"``."""
    import onnx

    seen: dict[str, str] = {}
    for node in _all_nodes(model.graph):
        if (node.domain or "") not in ({domain, "ai.onnx"} if domain == "" else {domain}) or node.op_type in seen:
            continue
        try:
            since = onnx.defs.get_schema(node.op_type, opset, domain).since_version
        except Exception:
            continue
        if since <= max_opset:
            continue
        try:
            older = onnx.defs.get_schema(node.op_type, max_opset, domain).since_version
            seen[node.op_type] = f"{node.op_type}-{since} (the target has {node.op_type}-{older})"
        except Exception:
            seen[node.op_type] = f"{node.op_type}-{since} (new in opset {since}; the target does not have it)"
    return list(seen.values())


def _all_nodes(graph: Any) -> list[Any]:
    nodes = []
    for node in graph.node:
        nodes.append(node)
        for attr in node.attribute:
            if attr.g is not None and attr.g.node:
                nodes += _all_nodes(attr.g)
            for g in attr.graphs:
                nodes += _all_nodes(g)
    return nodes


def domain_findings(model: Any) -> list[Finding]:
    """Ops outside the ONNX standard: contrib ops tie the model to ORT; unknown domains need a library."""
    by_domain: dict[str, set[str]] = {}
    for node in _all_nodes(model.graph):
        if (node.domain or "") not in STANDARD_DOMAINS:
            by_domain.setdefault(node.domain, set()).add(node.op_type)
    out = []
    for domain, ops in sorted(by_domain.items()):
        names = ", ".join(sorted(ops))
        if domain in ORT_DOMAINS:
            out.append(Finding("warning", "custom domain", f"ops from ONNX Runtime's own domain {domain} ({names}) run on ONNX Runtime only, not on other ONNX backends"))
        else:
            out.append(Finding(
                "warning", "custom domain",
                f"ops from custom domain {domain!r} ({names}) need a custom-op library registered with ONNX Runtime; other runtimes cannot run them",
            ))
    return out


def mobile_findings(model: Any) -> list[Finding]:
    """ORT's NNAPI/CoreML usability checker (onnxruntime.tools.mobile_helpers), one line per EP."""
    try:
        from onnxruntime.tools.mobile_helpers import usability_checker as uc
        from onnxruntime.tools.onnx_model_utils import ModelProtoWithShapeInfo
    except Exception as exc:
        return [Finding("warning", "mobile", f"ORT's mobile usability checker is not importable here ({type(exc).__name__}: {exc})")]
    import onnx

    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        onnx.save(model, str(path))
        logging.getLogger("usability_checker").setLevel(logging.ERROR)
        try:
            shaped = ModelProtoWithShapeInfo(path).model_with_shape_info
            checks = {
                "NNAPI": lambda m: uc.check_nnapi_partitions(m, require_fixed_input_sizes=True),
                "CoreML NeuralNetwork": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_neuralnetwork_ops.md"),
                "CoreML MLProgram": lambda m: uc.check_coreml_partitions(m, True, "coreml_supported_mlprogram_ops.md"),
            }
            for name, check in checks.items():
                info = check(shaped)
                unsupported = ", ".join(sorted(info.unsupported_ops)) or "none"
                dynamic = f"; {info.nodes_unsupported_due_to_dynamic_input} node(s) refused for dynamic input shapes" if info.nodes_unsupported_due_to_dynamic_input else ""
                out.append(Finding(
                    "info", "mobile",
                    f"{name}: {info.num_supported_nodes}/{info.num_nodes} nodes supported in {info.num_partitions} partition(s), "
                    f"unsupported ops: {unsupported}{dynamic}; worth trying: {info.suitability().name}",
                ))
        except Exception as exc:
            out.append(Finding("warning", "mobile", f"ORT's mobile usability checker failed: {one_line(exc)}"))
    return out
