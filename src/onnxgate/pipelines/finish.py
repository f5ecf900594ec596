"""After the converter returns: the requested opset, the target ORT's IR version, and the write check.

A converter's ``target_opset`` is a ceiling, not a promise: skl2onnx stamps the lowest
opset its ops need, torch's dynamo exporter never writes below 18. :func:`match_opset`
brings the default domain to the request with ``onnx.version_converter`` where it can
and says so in the conversion notes, or says why not. :func:`lower_ir_version` stamps
the IR version a ``--target-ort`` release accepts when the opsets allow it.
:func:`check_before_write` runs ``onnx.checker`` (full check) and an ONNX Runtime load in
a worker on the bytes about to be written; a model either refuses is not written
(:class:`~onnxgate.errors.InvalidModelError`, exit 1, one line naming the op).
"""

from __future__ import annotations

from typing import Any

from onnxgate._util import one_line
from onnxgate.errors import InvalidModelError, OpsetError


def default_opset(model: Any) -> int | None:
    """The model's ai.onnx opset, or None when it imports none."""
    for imp in model.opset_import:
        if imp.domain in ("", "ai.onnx"):
            return int(imp.version)
    return None


def _ml_opset(model: Any) -> int | None:
    for imp in model.opset_import:
        if imp.domain == "ai.onnx.ml":
            return int(imp.version)
    return None


def target_limits(target_ort: str | None) -> tuple[str, tuple[int, int, int]] | None:
    """``("1.17", (opset, ml opset, IR))`` for ``--target-ort``, or None without one."""
    if not target_ort:
        return None
    from onnxgate.checks.static import parse_target_ort

    return parse_target_ort(target_ort)


def wanted_opset(model: Any, requested: int | None, target: tuple[str, tuple[int, int, int]] | None) -> int | None:
    """The opset to aim for: the request, else the target release's newest when the model is newer."""
    if requested is not None:
        return requested
    got = default_opset(model)
    if target is not None and got is not None and got > target[1][0]:
        return target[1][0]
    return None


def merge_opset_imports(model: Any, notes: list[str]) -> None:
    """One opset import per domain (the newest): skl2onnx repeats ``ai.onnx`` when a step takes options."""
    newest: dict[str, int] = {}
    for imp in model.opset_import:
        domain = "" if imp.domain == "ai.onnx" else imp.domain
        newest[domain] = max(newest.get(domain, 0), int(imp.version))
    if len(newest) == len(model.opset_import):
        return
    del model.opset_import[:]
    for domain, version in newest.items():
        model.opset_import.add(domain=domain, version=version)
    merged = ", ".join(f"{d or 'ai.onnx'} {v}" for d, v in newest.items())
    notes.append(f"opset: merged repeated opset imports into one per domain ({merged})")


def match_opset(model: Any, wanted: int | None, converter: str, notes: list[str]) -> Any:
    """``model`` at opset ``wanted`` when onnx's version converter gets it there (checked); else a note why not."""
    merge_opset_imports(model, notes)
    got = default_opset(model)
    if wanted is None or got is None or got == wanted:
        return model
    converted, why = _version_convert(model, wanted)
    if converted is not None:
        notes.append(f"opset: {converter} wrote opset {got}; converted to opset {wanted} (requested, or the newest --target-ort runs) with onnx.version_converter")
        return converted
    reason = "the lowest opset its ops need" if got < wanted else "the oldest opset it can write (an op needs more)"
    notes.append(f"opset: {converter} wrote opset {got}, {reason}, not the requested {wanted}; onnx.version_converter could not convert it: {why}")
    return model


def _version_convert(model: Any, opset: int) -> tuple[Any | None, str]:
    """(the converted, checked model, "") or (None, why)."""
    import onnx
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, opset)
        onnx.checker.check_model(converted, full_check=True)
    except Exception as exc:  # noqa: BLE001 - the reason goes into the notes
        return None, one_line(exc, 200)
    if default_opset(converted) != opset:
        return None, f"it produced opset {default_opset(converted)}"
    return converted, ""


def lower_ir_version(model: Any, target: tuple[str, tuple[int, int, int]] | None, notes: list[str]) -> list[str]:
    """Stamp the IR version ``target`` accepts where the opsets allow; the problems that remain (empty: met)."""
    if target is None:
        return []
    import onnx

    key, (max_opset, max_ml, max_ir) = target
    problems = []
    opset, ml = default_opset(model), _ml_opset(model)
    if opset is not None and opset > max_opset:
        problems.append(f"opset {opset} is newer than ONNX Runtime {key} supports (up to {max_opset}); pass --opset {max_opset} or lower")
    if ml is not None and ml > max_ml:
        problems.append(f"ai.onnx.ml opset {ml} is newer than ONNX Runtime {key} supports (up to {max_ml})")
    if model.ir_version <= max_ir:
        return problems
    needed = onnx.helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
    if needed > max_ir:
        problems.append(f"IR version {model.ir_version}: the model's opsets need IR {needed}, ONNX Runtime {key} reads up to IR {max_ir}")
        return problems
    notes.append(f"--target-ort {key}: IR version lowered from {model.ir_version} to {max_ir} (its opsets need IR {needed})")
    model.ir_version = max_ir
    return problems


def target_problems_error(problems: list[str], target_ort: str) -> OpsetError:
    """--target-ort cannot be met: a user error naming every reason."""
    return OpsetError(f"--target-ort {target_ort} cannot be met: " + "; ".join(problems), "pass an --opset the release supports, or a newer --target-ort")


def check_before_write(model: Any, data: bytes, isolation: Any) -> None:
    """The checker (full) and an ONNX Runtime load on the bytes about to be written; refuse either failure."""
    import onnx

    from onnxgate.runtime import isolation as iso
    from onnxgate.runtime.runner import RunError

    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types
        raise InvalidModelError(
            f"the converted model fails onnx.checker, so it was not written: {one_line(exc, 400)}",
            "try another --opset, or report the model to onnxgate",
        ) from None
    try:
        iso.create_session(data, policy=isolation, label="the converted model")
    except RunError as exc:
        raise InvalidModelError(
            f"ONNX Runtime cannot load the converted model, so it was not written: {one_line(exc, 400)}",
            _load_hint(str(exc)),
        ) from None


def _load_hint(message: str) -> str:
    if "NOT_IMPLEMENTED" in message or "Could not find an implementation" in message:
        return "ONNX Runtime has no kernel for that op at this type; drop --double or pick another --opset"
    return "try another --opset, or report the model to onnxgate"
