"""What the HTML report shows, as typed records built from the results (templates only lay them out).

:func:`report_view` reads a :class:`~onnxgate.judge.report.Report` (run, validate, one gate
model); :func:`zoo_model_view` a zoo verify ``ModelResult``; :func:`gate_view` and
:func:`zoo_view` one row per model with a link to its detail. Gate and zoo results are read
by their attributes (they live in layers above this one).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from onnxgate.judge.compare import OutputComparison
from onnxgate.judge.error_summary import WorstElement
from onnxgate.judge.html.figures import error_figure, exact_figure, speed_figure, variants_figure
from onnxgate.judge.report import Case, Report, level_name

MAX_HEADLINES = 6  # failure lines shown in the banner; the rest are counted
_FIX_START = re.compile(r"^(pass|deploy|use|add|drop|set|try|report|install|give|run|re-?export|retrain|e\.g\.)\b|^--", re.I)


@dataclass
class Chart:
    """One plotly figure, drawn by ``Plotly.newPlot(id, figure)``."""

    id: str
    kind: str  # "errors" | "speed" | "variants"
    figure: dict[str, Any]

    @property
    def json(self) -> str:
        """The figure as JSON safe inside <script>: no NaN/inf (null instead), no "</"."""
        return json.dumps(_finite(self.figure), allow_nan=False, separators=(",", ":")).replace("</", "<\\/")


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


@dataclass
class OutputView:
    """One output at its worst case (over shapes, providers and levels), with its error plots."""

    name: str
    status: str  # "passed" | "failed"
    kind: str
    where: str  # the case the plots come from
    max_abs_error: float | None
    rule: str | None
    problems: list[str]
    chart: Chart
    worst: list[WorstElement] = field(default_factory=list)
    cases: int = 1
    failed_cases: int = 0
    plot: str = "errors"  # "errors": histogram + log-log scatter; "exact": equal / tie / differ counts


@dataclass
class Cell:
    status: str  # "passed" | "failed" | "error" | "vacuous" | "none"
    text: str
    title: str


@dataclass
class Grid:
    """A coloured grid: one row per (provider, level) or data set, one column per shape or output."""

    corner: str
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]


@dataclass
class FindingView:
    level: str
    check: str
    what: str
    fix: str | None


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]


@dataclass
class ModelView:
    """Everything about one model, in reading order; a failure first."""

    anchor: str
    title: str
    status: str
    failures: list[str]
    more_failures: int
    facts: list[tuple[str, str]]
    outputs: list[OutputView] = field(default_factory=list)
    grid: Grid | None = None
    grid_note: str = ""
    placement: Table | None = None
    speed: Chart | None = None
    speed_note: str = ""
    variants: Table | None = None
    variants_chart: Chart | None = None
    findings: list[FindingView] = field(default_factory=list)
    fixes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def charts(self) -> list[Chart]:
        found = [o.chart for o in self.outputs if o.chart] + [c for c in (self.speed, self.variants_chart) if c]
        return found


@dataclass
class Row:
    """One model in a gate or zoo summary, linking to its detail."""

    anchor: str
    name: str
    status: str
    cells: list[str]


@dataclass
class CollectionView:
    title: str
    status: str
    subtitle: str
    head: list[str]
    rows: list[Row]
    models: list[ModelView]
    failures: list[str] = field(default_factory=list)


# -- one model ---------------------------------------------------------------------------------


def anchor_for(name: str, taken: set[str] | None = None) -> str:
    """An HTML id from a model name, unique within ``taken`` (which it extends)."""
    base = "model-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-").lower() or "x")
    anchor, n = base, 2
    while taken is not None and anchor in taken:
        anchor, n = f"{base}-{n}", n + 1
    if taken is not None:
        taken.add(anchor)
    return anchor


def format_number(x: float | None, fmt: str = ".3g") -> str:
    return "—" if x is None else format(x, fmt)


def _headlines(lines: list[str]) -> tuple[list[str], int]:
    """Identical lines once with a count, then at most MAX_HEADLINES of them."""
    counts: dict[str, int] = {}
    for line in lines:
        counts[line] = counts.get(line, 0) + 1
    unique = [f"{line} (×{n})" if n > 1 else line for line, n in counts.items()]
    return unique[:MAX_HEADLINES], max(0, len(unique) - MAX_HEADLINES)


def _badness(o: OutputComparison) -> tuple[int, float]:
    """Order comparisons of one output: failing first, then by how far the worst element used its limit."""
    ratio = o.errors.worst[0].ratio if o.errors and o.errors.worst else (o.max_abs_error or 0.0)
    return (0 if o.passed else 1, ratio)


def output_views(located: Iterable[tuple[str, OutputComparison]], prefix: str) -> list[OutputView]:
    """One view per output name from ``(where, comparison)`` pairs: its worst comparison carries the plots."""
    by_name: dict[str, list[tuple[str, OutputComparison]]] = {}
    for where, o in located:
        by_name.setdefault(o.name, []).append((where, o))
    views = []
    for i, (name, items) in enumerate(by_name.items()):
        where, worst = max(items, key=lambda item: _badness(item[1]))
        chart = Chart(f"{prefix}-out{i}", "errors", _output_figure(worst))
        views.append(OutputView(
            name=name, status="passed" if worst.passed else "failed", kind=worst.kind, where=where,
            max_abs_error=max((o.max_abs_error for _, o in items if o.max_abs_error is not None), default=None),
            rule=worst.rule, problems=list(worst.problems), chart=chart,
            worst=list(worst.errors.worst) if worst.errors else [],
            cases=len(items), failed_cases=sum(not o.passed for _, o in items),
            plot="errors" if worst.errors is not None else "exact",
        ))
    return views


def _output_figure(o: OutputComparison) -> dict[str, Any]:
    """Float outputs: the error histogram and scatter; exact ones: equal / tied / differing counts."""
    if o.errors is not None:
        return error_figure(o.errors, o.name)
    return exact_figure(o.name, o.total, o.mismatched, o.ties)


def _where(case: Case) -> str:
    return f"{case.name} · {_short(case.provider)} · {level_name(case.optimization)}"


def _short(provider: str) -> str:
    return provider.replace("ExecutionProvider", "")


def matrix_grid(cases: list[Case]) -> Grid | None:
    """Rows: provider × optimisation level; columns: the input shapes; a cell is the case's verdict."""
    if not cases:
        return None
    columns = list(dict.fromkeys(c.name for c in cases))
    keys = list(dict.fromkeys((c.provider, c.optimization) for c in cases))
    by_key = {(c.provider, c.optimization, c.name): c for c in cases}
    rows = []
    for provider, level in keys:
        cells = [_case_cell(by_key.get((provider, level, col))) for col in columns]
        rows.append((f"{_short(provider)} · {level_name(level)}", cells))
    return Grid("provider · optimisation level", columns, rows)


def _case_cell(case: Case | None) -> Cell:
    if case is None:
        return Cell("none", "—", "not run")
    if case.error:
        return Cell("error", "error", case.error)
    errs = [o.max_abs_error for o in case.outputs if o.max_abs_error is not None]
    text = f"{max(errs):.2g}" if errs else ("exact" if case.status == "passed" else "differs")
    title = "; ".join(f"{o.name}: {'ok' if o.passed else 'FAIL'} max abs err {format_number(o.max_abs_error)}" for o in case.outputs)
    shapes = ", ".join(f"{k} {v}" for k, v in case.input_shapes.items())
    return Cell(case.status, text, f"{shapes} — {title}")


def placement_table(providers: Any) -> Table | None:
    placements = list(getattr(providers, "placements", None) or [])
    if not placements:
        return None
    rows = []
    for p in placements:
        if p.error:
            rows.append([_short(p.provider), level_name(p.optimization), "—", "—", "—", p.error])
            continue
        ops = ", ".join(f"{op} ×{n}" for op, n in p.fallback_ops.items()) or "none"
        rows.append([_short(p.provider), level_name(p.optimization), str(p.nodes), str(p.taken), str(p.fallback), ops])
    return Table(["provider", "optimisation", "nodes", "on provider", "fell back to CPU", "fallback ops"], rows)


def split_fix(message: str) -> tuple[str, str | None]:
    """``"X fails ...; deploy with Y"`` -> (what, fix): the last clause when it reads as an instruction."""
    for sep in ("; ", ": "):
        head, found, tail = message.rpartition(sep)
        if found and head and _FIX_START.match(tail.strip()):
            return head, tail.strip()
    return message, None


def _findings(report: Report) -> list[FindingView]:
    order = {"error": 0, "warning": 1}
    found = sorted(report.findings, key=lambda f: order.get(f.level, 2))
    return [FindingView(f.level, f.check, *split_fix(f.message)) for f in found]


def _speed(report: Report, prefix: str) -> tuple[Chart | None, str]:
    speed = report.speed
    if speed is None or not speed.rows:
        return None, ""
    calls = ", ".join(label for label, _ in speed.original_timings(speed.rows[0]))
    note = (f"{speed.threads} thread(s) on both sides, provider {_short(speed.provider)}. Original timed as: {calls}; "
            f"speedups in that order. {speed.method}.")
    return Chart(f"{prefix}-speed", "speed", speed_figure(speed)), note


def _variants(report: Report, prefix: str) -> tuple[Table | None, Chart | None]:
    variants = report.variants
    if variants is None or not len(variants):
        return None, None
    batch = variants.select_batch
    rows = []
    for v in variants:
        state = "skipped" if v.skipped else ("passed" if v.passed else "failed")
        rows.append([v.name, v.precision, state, format_number(v.max_abs_error), format_number(v.latency_ms(batch), ".3f"),
                     format_number(v.speedups.get(batch), ".2f") + ("x" if v.speedups.get(batch) else ""),
                     str(v.size or "—"), v.verdict or v.skipped or v.error or ""])
    table = Table(["variant", "precision", "parity", "max abs err", f"ms @ batch {batch}", "speedup", "bytes", "verdict"], rows)
    built = [v for v in variants if not v.skipped]
    chart = Chart(f"{prefix}-variants", "variants", variants_figure(
        [v.name for v in built], [v.latency_ms(batch) for v in built], [v.passed for v in built], batch))
    return table, chart


def _facts(report: Report) -> list[tuple[str, str]]:
    m, i = report.model, report.inputs
    facts = [
        ("source", f"{report.source or '—'}" + (f" ({report.framework})" if report.framework else "")),
        ("ONNX model", f"{m.path or '(in memory)'} · opset {m.opset} · {m.bytes or '?'} bytes"),
        ("sha256", str(m.sha256 or "—")),
        ("inputs", f"{i.sample or i.kind or 'synthesised'} · " + ", ".join(f"{k} {v}" for k, v in i.shapes.items())),
    ]
    if report.conversion is not None:
        seconds = f" in {report.conversion.seconds:.2f}s" if report.conversion.seconds else ""
        facts.append(("converter", f"{report.conversion.converter}{seconds}"))
    if report.seconds is not None:
        facts.append(("checked in", f"{report.seconds:.2f}s · {report.created}"))
    facts.append(("versions", ", ".join(f"{k} {v}" for k, v in sorted(report.versions.items()))))
    return facts


def _report_failures(report: Report, outputs: list[OutputView]) -> list[str]:
    """What failed, once per output (its worst case) rather than once per case x output."""
    lines = [report.error] if report.error else []
    lines += [f"vacuous: {report.vacuous}"] if report.vacuous else []
    lines += [f"{f.check}: {f.message}" for f in report.findings if f.level == "error"]
    lines += [f"[{_where(c)}] {c.error}" for c in report.cases if c.error]
    lines += [
        f"output {o.name!r} failed on {o.failed_cases} of {o.cases} case(s); worst at {o.where}: {'; '.join(o.problems)}"
        for o in outputs if o.status != "passed"
    ]
    return lines


def _name(path: Any) -> str:
    """A page title: the file name of a path (the full path is in the facts), or a module:callable as is."""
    text = str(path or "model")
    return text.rstrip("/").rsplit("/", 1)[-1] or text


def report_view(report: Report, *, anchor: str = "model", title: str | None = None) -> ModelView:
    """The detail of one validated model."""
    outputs = output_views(((_where(c), o) for c in report.cases for o in c.outputs), anchor)
    failures, more = _headlines(_report_failures(report, outputs))
    speed, speed_note = _speed(report, anchor)
    variants, variants_chart = _variants(report, anchor)
    notes = list(report.conversion.notes) if report.conversion is not None else []
    return ModelView(
        anchor=anchor, title=title or _name(report.source or report.model.path), status=report.status,
        failures=failures, more_failures=more, facts=_facts(report),
        outputs=outputs, grid=matrix_grid(report.cases),
        grid_note="Each cell: the case's verdict and its largest max abs error over the outputs (hover for each output).",
        placement=placement_table(report.providers), speed=speed, speed_note=speed_note,
        variants=variants, variants_chart=variants_chart, findings=_findings(report),
        fixes=[n for n in notes if n.startswith("fix ")], notes=[n for n in notes if not n.startswith("fix ")],
    )


# -- gate ----------------------------------------------------------------------------------------


def _gate_model(outcome: Any, anchor: str) -> ModelView:
    title = f"{outcome.name} {outcome.version}"
    if outcome.report is not None:
        view = report_view(outcome.report, anchor=anchor, title=title)
        view.status = outcome.status
        if outcome.error:  # the gate's own verdict on a checked model (e.g. a drift from the published version)
            view.failures, view.more_failures = _headlines([outcome.error, *view.failures])
    else:
        failures, more = _headlines(outcome.failures())
        view = ModelView(anchor, title, outcome.status, failures, more, [])
    view.facts = [("selected because", outcome.why), ("compared with", outcome.previous or "—"),
                  ("published", str(outcome.published or "no")), *view.facts]
    view.notes = list(outcome.notes) + view.notes
    return view


def _worst_error(report: Any) -> str:
    if report is None:
        return "—"
    errs = [o.max_abs_error for c in report.cases for o in c.outputs if o.max_abs_error is not None]
    return format_number(max(errs)) if errs else "—"


def gate_view(result: Any) -> CollectionView:
    """``onnxgate gate``: one row per model checked, each linking to its detail below."""
    taken: set[str] = set()
    rows, models = [], []
    for o in result.outcomes:
        anchor = anchor_for(o.name, taken)
        models.append(_gate_model(o, anchor))
        first = (models[-1].failures or [""])[0] if o.status != "passed" else ""
        rows.append(Row(anchor, o.name, o.status, [o.version, o.why, _worst_error(o.report), o.previous or "—",
                                                     f"{o.seconds:.1f}s", first]))
    scope = f"changed since {result.changed_since}" if result.changed_since else "all models"
    shard = f", shard {result.shard[0]}/{result.shard[1]}" if result.shard else ""
    subtitle = f"{len(result.outcomes)} model(s) checked ({scope}{shard}; {len(result.selected)} selected) in {result.seconds:.1f}s"
    failures = [f"{row.name}: {row.cells[-1]}" for row in rows if row.status != "passed"]
    return CollectionView("onnxgate gate", result.status, subtitle,
                          ["version", "why", "worst max abs err", "compared with", "time", "first failure"], rows, models, failures)


# -- zoo verify ----------------------------------------------------------------------------------


def _data_set_grid(result: Any) -> Grid | None:
    sets = list(result.data_sets)
    if not sets:
        return None
    columns = list(dict.fromkeys(o.name for d in sets for o in d.outputs))
    rows = []
    for d in sets:
        by_name = {o.name: o for o in d.outputs}
        cells = []
        for col in columns:
            o = by_name.get(col)
            if d.error:
                cells.append(Cell("error", "error", d.error))
            elif o is None:
                cells.append(Cell("none", "—", "not compared"))
            else:
                cells.append(Cell("passed" if o.passed else "failed", format_number(o.max_abs_error, ".2g") if o.max_abs_error is not None
                                  else ("exact" if o.passed else "differs"), "; ".join(o.problems) or (o.rule or "")))
        rows.append((d.name, cells))
    return Grid("data set", columns, rows)


def zoo_model_view(result: Any, anchor: str) -> ModelView:
    """One zoo model: its verdict, per output plots, and a data set × output grid."""
    reason = [result.reason] if result.reason and result.verdict != "passed" else []
    problems = [f"[{d.name}] {d.error}" for d in result.data_sets if d.error]
    problems += [f"[{d.name}] output {o.name!r}: {'; '.join(o.problems)}" for d in result.data_sets for o in d.outputs if not o.passed]
    failures, more = _headlines(problems or reason)
    facts = [("model path", result.model_path), ("sha256", result.sha256 or "—"), ("zoo status", result.status),
             ("tolerances", ", ".join(f"{k} {v:g}" for k, v in result.tolerances.items()) or "zoo defaults"),
             ("checked in", f"{result.seconds:.2f}s")]
    return ModelView(
        anchor=anchor, title=result.name, status=result.verdict, failures=failures, more_failures=more, facts=facts,
        outputs=output_views(((d.name, o) for d in result.data_sets for o in d.outputs), anchor),
        grid=_data_set_grid(result), grid_note="Each cell: the output's max abs error on that data set (stored outputs vs ONNX Runtime).",
    )


def zoo_view(report: Any) -> CollectionView:
    """``onnxgate zoo verify``: one row per model, linking to its detail."""
    taken: set[str] = set()
    rows, models = [], []
    for r in report.results:
        anchor = anchor_for(r.name, taken)
        models.append(zoo_model_view(r, anchor))
        errs = [o.max_abs_error for d in r.data_sets for o in d.outputs if o.max_abs_error is not None]
        rows.append(Row(anchor, r.name, r.verdict, [r.status, str(len(r.data_sets)), format_number(max(errs)) if errs else "—",
                                                     f"{r.seconds:.2f}s", (r.reason or "") if r.verdict != "passed" else ""]))
    counts = ", ".join(f"{n} {s}" for s, n in report.counts.items() if n)
    subtitle = f"{report.location} · {len(report.results)} model(s): {counts or 'none'} · {report.seconds:.1f}s, {report.jobs} job(s)"
    failures = [f"{r.name}: {r.reason or r.status}" for r in report.results if r.verdict != "passed"]
    return CollectionView("onnxgate zoo verify", report.status, subtitle,
                          ["zoo status", "data sets", "worst max abs err", "time", "reason"], rows, models, failures)
