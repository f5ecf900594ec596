"""Re-verify an ONNX file against stored evidence with ONNX Runtime alone.

``onnxgate validate MODEL.onnx --evidence DIR`` reads ``test_data_set_N/`` (inputs and
the ORIGINAL framework's outputs, written by ``--save-evidence`` or shipped by a model
zoo) and compares ONNX Runtime's outputs with them. No framework is imported: the
original's answers are in the files.

The batch sweep still runs where the evidence allows it: when every stored input and
output of a data set shares one leading size N > 1 and the graph declares axis 0 of
every input dynamic, rows are independent by declaration, so the first rows of the
stored outputs are the reference for the first rows of the inputs (batch 1 and an odd
size). A graph that froze the batch size inside (a Reshape to the export batch) then
fails with the axis named, exactly as in a framework-backed validation.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._progress import NullProgress
from onnxgate.errors import SampleError
from onnxgate.judge.batch_axes import batch_error, frozen_output_problems
from onnxgate.inputs.evidence import find_test_data_sets, read_test_data_set
from onnxgate.checks.model_file import describe, load_onnx, static_checks
from onnxgate.judge.report import Finding, Report
from onnxgate.judge.run_cases import run_cases
from onnxgate.runtime.isolation import IsolationPolicy
from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec
from onnxgate.inputs.samples import inputs_hash
from onnxgate.judge.tolerances import TolerancePolicy


def validate_evidence(
    onnx_model: str | Path,
    evidence: str | Path,
    *,
    policy: TolerancePolicy,
    provider_names: list[str],
    localize: bool = False,
    progress: Any = None,
    versions: dict[str, str] | None = None,
    isolation: Any = None,
) -> Report:
    """Compare ONNX Runtime with the stored outputs of every data set under ``evidence``."""
    progress = progress or NullProgress()
    started = time.perf_counter()
    proto, data = load_onnx(onnx_model)
    info = describe(proto, data, str(onnx_model))
    input_names = [i["name"] for i in info["inputs"]]
    output_names = [o["name"] for o in info["outputs"]]
    sets = []
    for d in find_test_data_sets(evidence):
        ins, outs = read_test_data_set(d)
        sets.append((d, _by_graph_names(ins, input_names, d, "input"), _by_graph_names(outs, output_names, d, "output")))
    first_inputs = sets[0][1]
    report = Report(
        source=f"evidence {evidence}",
        framework=None,
        model={k: info[k] for k in ("path", "sha256", "bytes", "opset", "ir_version", "producer", "opset_imports")},
        inputs={
            "sample": str(evidence),
            "kind": "evidence",
            "hash": inputs_hash(first_inputs),
            "seed": None,
            "sets": [str(d) for d, _, _ in sets],
            "shapes": {k: list(v.shape) for k, v in first_inputs.items()},
            "dtypes": {k: str(v.dtype) for k, v in first_inputs.items()},
        },
        tolerances=policy.as_dict(),
        versions=versions or {},
    )
    report.findings = static_checks(proto, onnx_model)
    cases: list[tuple[str, dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]] = []
    for d, ins, outs in sets:
        cases.append((d.name, ins, outs, ins))
    if not any(_rows(ins) == 1 for _, ins, _ in sets):
        d, ins, outs = sets[0]
        for n in _sweep_sizes(ins, outs, info["inputs"]):
            cases.append((f"{d.name} batch={n}", _head(ins, n), _head(outs, n), ins))
    isolation = isolation or IsolationPolicy()
    model = session_source(proto, data, onnx_model)
    bases = {name: base for name, _, _, base in cases}
    for provider in provider_names:
        runner = OrtRunner(SessionSpec.of(model, provider=provider, isolation=isolation, label=repr(str(onnx_model))))
        report.cases += run_cases(
            runner, [(name, feeds) for name, feeds, _, _ in cases], {name: expected for name, _, expected, _ in cases},
            policy=policy, output_names=output_names, optimization="all", progress=progress,
            explain=lambda name, feeds, exc: batch_error(exc, info["inputs"], feeds, bases[name]),
            check=lambda case, feeds, got: frozen_output_problems(case.outputs, feeds, bases[case.name]),
        )
    if localize and report.status == "failed":
        failing = next((c for c in report.cases if c.outputs and c.status == "failed"), None)
        if failing is not None:
            feeds = next(f for n, f, _, _ in cases if n == failing.name)
            from onnxgate.diagnose.localize import localize as find_divergence

            with progress.step("localising the divergence"):
                loc = find_divergence(proto, feeds, policy=policy, provider=failing.provider, isolation=isolation,
                                      model_dir=Path(onnx_model).resolve().parent)
            text = loc.message()
            if loc.divergence is None and loc.error is None:
                text += (
                    "; so ONNX Runtime's optimiser is not the cause: the file itself computes something other than "
                    "the stored outputs (changed weights or nodes, or a conversion fault)"
                )
            report.findings.append(Finding("info", "localize", f"[{failing.name} on {failing.provider}] {text}"))
    report.seconds = round(time.perf_counter() - started, 3)
    return report


def session_source(proto: Any, data: bytes, path: str | Path | None) -> bytes | str:
    """The file's absolute path when the model came from a file (ORT resolves external data next to
    it, never in the current directory), else the bytes."""
    return str(Path(path).resolve()) if path is not None else data


def _by_graph_names(tensors: dict[str, np.ndarray], names: list[str], where: Path, kind: str) -> dict[str, np.ndarray]:
    """Stored tensors keyed by the graph's names: by name when they match, else by position."""
    if sorted(tensors) == sorted(names):
        return {n: tensors[n] for n in names}
    if len(tensors) != len(names):
        raise SampleError(
            f"{str(where)!r} holds {len(tensors)} {kind} tensor(s) {list(tensors)}; the model has {len(names)}: {names}",
            "pass the evidence written for this model",
        )
    return dict(zip(names, tensors.values()))


def _rows(arrays: dict[str, np.ndarray]) -> int | None:
    leading = {int(np.asarray(v).shape[0]) if np.asarray(v).ndim else None for v in arrays.values()}
    return leading.pop() if len(leading) == 1 else None


def _sweep_sizes(ins: dict[str, np.ndarray], outs: dict[str, np.ndarray], inputs: list[dict[str, Any]]) -> list[int]:
    """Batch sizes to derive by row slicing, or none when rows are not independent by declaration."""
    n = _rows(ins)
    if n is None or n < 2 or _rows(outs) != n:
        return []
    if not all(io.get("shape") and not isinstance(io["shape"][0], int) for io in inputs):
        return []
    sizes = [1]
    if n > 4:
        sizes.append((n // 2) | 1)
    return sizes


def _head(arrays: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[:n]) for k, v in arrays.items()}
