"""Validation depth, called from ``pipelines.run.validate``: the extra cases beyond the
batch sweep (dynamic non-batch axes, edge values), the evidence files, and localising
a failure to a node. Kept here so ``validate`` stays a readable sequence of steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.judge.report import Finding, Report
from onnxgate.inputs.sweep import AxisCase, axis_cases
from onnxgate.inputs.synthesize import EDGE_PREFIX, edge_cases


def extra_cases(
    feeds: dict[str, np.ndarray], inputs: list[dict[str, Any]], *, edge: bool, ranges: Any = None
) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, AxisCase]]:
    """(name, feeds) cases for every dynamic non-batch axis, plus the edge cases when asked.

    Returns the cases and, by case name, the axis each axis case resized (to name it
    in errors).
    """
    axes = {c.name: c for c in axis_cases(feeds, inputs)}
    cases = [(c.name, c.feeds) for c in axes.values()]
    if edge:
        cases += edge_cases(feeds, ranges=ranges)
    return cases, axes


def drop_refused_edges(
    cases: list[tuple[str, dict[str, np.ndarray]]], reference_errors: dict[str, str]
) -> tuple[list[tuple[str, dict[str, np.ndarray]]], list[Finding]]:
    """An edge case (``--edge``) whose values the original itself refuses (a label it never saw, a value
    outside its domain) has no answer to compare: it is dropped with a warning, not made an error."""
    kept, findings = [], []
    for name, feeds in cases:
        if name.startswith(EDGE_PREFIX) and name in reference_errors:
            why = reference_errors.pop(name)
            findings.append(Finding("warning", "edge", f"{name} not compared: the original refuses its values ({why})"))
        else:
            kept.append((name, feeds))
    return kept, findings


def axis_findings(report: Report, axes: dict[str, AxisCase]) -> None:
    """A failed axis case whose nominal case passed: say which axis is frozen."""
    first = report.cases[0].name if report.cases else None
    nominal_ok = {(c.provider, c.optimization) for c in report.cases if c.name == first and c.status == "passed"}
    for c in report.cases:
        ax = axes.get(c.name)
        if ax is not None and (c.provider, c.optimization) in nominal_ok and c.status == "failed":
            report.findings.append(Finding("error", "shape-sweep", f"[{c.provider}] {ax.describe_mismatch()}"))


def save_evidence(
    directory: Path,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    references: dict[str, dict[str, np.ndarray]],
    input_names: list[str],
    output_names: list[str],
) -> list[str]:
    """``test_data_set_N`` for every case the original answered, in graph input/output order."""
    from onnxgate.inputs.evidence import write_evidence

    sets = []
    for name, feeds in cases:
        if name in references:
            ins = {n: feeds[n] for n in input_names if n in feeds}
            outs = {n: references[name][n] for n in output_names if n in references[name]}
            sets.append((ins, outs))
    return [str(p) for p in write_evidence(directory, sets)]


def localize_failure(
    report: Report,
    proto: Any,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    *,
    policy: Any,
    reference: Any = None,
    fresh: bool = False,
    progress: Any = None,
    isolation: Any = None,
    model_dir: Any = None,
) -> None:
    """Name the first divergent node of the first failing case, as an "info" finding.

    ONNX Runtime runs as ``isolation`` says (a worker by default; ``--timeout`` bounds each
    run); ``model_dir`` is the ONNX file's directory, where its external data lives.

    First ORT with all optimisations against ORT with none, on the same graph. When they
    agree and the ONNX file came from elsewhere (``fresh`` is False) the source is
    converted again (by ``reference``, the framework runner) and the file is compared node
    by node with that fresh conversion, which finds weights or nodes changed after conversion.
    """
    from onnxgate.diagnose.localize import localize

    failing = next((c for c in report.cases if c.outputs and c.status == "failed"), None)
    if failing is None:
        report.findings.append(Finding("info", "localize", "nothing to localise: no case ran and failed"))
        return
    feeds = dict(cases)[failing.name]
    with progress.step(f"localising the divergence at {failing.name}"):
        loc = localize(proto, feeds, policy=policy, provider=failing.provider, isolation=isolation, model_dir=model_dir)
        if loc.divergence is None and loc.error is None and not fresh and reference is not None:
            from onnxgate.checks.model_file import opset_of

            fresh_model, info = reference.convert(opset_of(proto))
            loc = localize(
                proto, feeds, reference=fresh_model, policy=policy, provider=failing.provider,
                label=f"a fresh conversion of the source ({info['converter']})", isolation=isolation, model_dir=model_dir,
            )
    text = loc.message()
    if loc.divergence is None and loc.error is None:
        text += "; the outputs differ from the original model itself: the conversion computes something else"
    report.findings.append(Finding("info", "localize", f"[{failing.name} on {failing.provider}] {text}"))
