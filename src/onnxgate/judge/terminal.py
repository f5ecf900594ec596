"""The terminal view of a report: terse by default, per-case rows with ``-v``.

Terse: the verdict line, then one line per output (its worst case over every batch,
optimisation level and provider, with how many cases failed), case errors collapsed
into one line per distinct message, the findings that matter, and, for a parity
failure, how to localise it. Lines are returned, never printed (the CLI prints them).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

LOCALIZE_HINT = "hint: rerun with --localize to name the first ONNX node whose output diverges"
QUIET_CHECKS = ("framework-warning",)  # info findings shown only with -v


@dataclass(frozen=True)
class OutputSummary:
    """One output across all cases: its worst comparison and where it happened."""

    name: str
    worst: Any  # judge.compare.OutputComparison
    where: str  # "batch=30 on CPU" of the worst comparison
    failed: int  # cases in which this output failed
    cases: int  # cases in which this output was compared
    topk: str = ""  # ", top-5 agreement 100%" (the lowest over the cases) when top-k was checked

    def line(self) -> str:
        o = self.worst
        ties = f", {o.ties} tie(s)" if o.ties else ""
        if self.failed:
            problems = "; ".join(o.problems) or "differs"
            return f"  FAIL {self.name:<16} {problems} (worst at {self.where}; fails in {self.failed}/{self.cases} cases{ties})"
        err = "" if o.max_abs_error is None else f"max abs err {o.max_abs_error:.3g}"
        limit = _limit(o)
        parts = [p for p in (err + (f" (limit {limit})" if limit and err else ""), f"worst at {self.where}", f"{self.cases} cases") if p]
        return f"  ok   {self.name:<16} {', '.join(parts)}{self.topk}{ties}"


def _limit(o: Any) -> str:
    if o.stat_limit is not None:
        return f"{o.stat_limit:.3g}"
    if o.atol is not None and o.rtol is not None:
        return f"{o.atol:.3g} + {o.rtol:.3g}*|ref|"
    return ""


def _badness(o: Any) -> tuple[int, float]:
    """Failures first, then the larger error (relative to the limit when there is one)."""
    err = o.max_abs_error or 0.0
    if o.stat_value is not None and o.stat_limit:
        err = o.stat_value / o.stat_limit
    return (0 if o.passed else 1, err)


def where(case: Any) -> str:
    """``batch=30 on CPU``, ``batch=30 on CPU/noopt`` at ORT_DISABLE_ALL."""
    provider = case.provider.replace("ExecutionProvider", "")
    level = getattr(case, "optimization", "all")
    suffix = "" if level == "all" else "/noopt" if level == "disable" else f"/{level}"
    return f"{case.name} on {provider}{suffix}"


def output_summaries(report: Any) -> list[OutputSummary]:
    """Per output name, in first-seen order: the worst comparison over all cases."""
    seen: dict[str, list[tuple[Any, Any]]] = {}
    for case in report.cases:
        for o in case.outputs:
            seen.setdefault(o.name, []).append((case, o))
    summaries = []
    for name, pairs in seen.items():
        case, worst = max(pairs, key=lambda p: _badness(p[1]))
        failed = sum(1 for _, o in pairs if not o.passed)
        summaries.append(OutputSummary(name, worst, where(case), failed, len(pairs), _topk([o for _, o in pairs])))
    return summaries


def _topk(outputs: list[Any]) -> str:
    checked = [o for o in outputs if getattr(o, "topk_agreement", None) is not None]
    if not checked:
        return ""
    low = min(checked, key=lambda o: o.topk_agreement)
    return f", top-{low.topk} agreement {100 * low.topk_agreement:.4g}%"


def collapsed(lines: list[str]) -> list[str]:
    """Identical lines once, in first-seen order, with a count when repeated."""
    counts = Counter(lines)
    return [line if counts[line] == 1 else f"{line} (x{counts[line]})" for line in dict.fromkeys(lines)]


def _case_errors(report: Any) -> list[str]:
    """Each distinct case error once: where it happened, or in how many cases."""
    by_message: dict[str, list[Any]] = {}
    for c in report.cases:
        if c.error:
            by_message.setdefault(c.error, []).append(c)
    total = len(report.cases)
    return [f"  ERROR {message} ({where(cases[0]) if len(cases) == 1 else f'in {len(cases)} of {total} cases'})"
            for message, cases in by_message.items()]


def _findings(report: Any, verbose: bool) -> list[str]:
    shown = [f for f in report.findings if verbose or f.check not in QUIET_CHECKS]
    return collapsed([f"  {f.level}: {f.check}: {f.message}" for f in shown])


def _localize(report: Any) -> list[str]:
    if report.status != "failed" or not any(o.failed for o in output_summaries(report)):
        return []
    if any(f.check == "localize" for f in report.findings):
        return []  # the finding itself is shown
    return [f"  {LOCALIZE_HINT}"]


def case_rows(report: Any) -> list[str]:
    """The per-case rows of ``-v``: every case x output, a case error once per case."""
    rows = []
    for case in report.cases:
        label = f"{case.name:<10} {where(case).split(' on ', 1)[1]:<15}"
        if case.error:
            rows.append(f"  {label} ERROR  {case.error}")
        for o in case.outputs:
            err = "" if o.max_abs_error is None else f"max abs err {o.max_abs_error:.3g}"
            ties = f", {o.ties} tie(s)" if o.ties else ""
            rows.append(f"  {label} {'ok  ' if o.passed else 'FAIL'} {o.name:<16} {err}{ties}".rstrip())
    return collapsed(rows)


def summary_lines(report: Any, *, verbose: bool = False) -> list[str]:
    """What ``onnxgate run``/``validate`` print: failures and the localise line come first after the verdict."""
    head = [f"{report.status.upper()}: {report.source} -> {report.model.path or 'ONNX'} "
            f"(opset {report.model.opset}, {report.seconds or 0:.2f}s)"]
    if report.error:
        head.append(f"  error: {report.error}")
    if report.vacuous:
        head.append(f"  vacuous: {report.vacuous}")
    outputs = output_summaries(report)
    failing = [s.line() for s in outputs if s.failed]
    passing = [s.line() for s in outputs if not s.failed]
    lines = head + failing + _localize(report) + _case_errors(report) + _findings(report, verbose) + passing
    if verbose:
        lines += ["  per case:", *case_rows(report)]
    for extra in (getattr(report, "speed", None), getattr(report, "variants", None)):
        if extra is not None:
            lines += list(extra.text())
    return lines
