"""Per-provider verdicts on top of the cases: the matrix, placement, precision, optimiser issues.

validate() runs every case on every requested provider at ``ORT_DISABLE_ALL`` and
``ORT_ENABLE_ALL``; this module turns those cases and each session's placement into
findings (fallback under ``--require-full-placement``; a provider/case that passes at
one optimisation level and fails at the other is an optimiser issue, not a
conversion issue) and into the section the reports render.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from onnxgate.errors import OnnxgateError
from onnxgate.runtime.placement import Placement
from onnxgate.runtime.precision import PrecisionNote, reduced_precision
from onnxgate.runtime.providers import parse_ep_plugins, parse_provider_options, short_name
from onnxgate.judge.report import Case, Finding
from onnxgate.checks.static import static_findings  # noqa: F401  (validate() calls it through here)

OPTIMIZATIONS = ("disable", "all")  # ORT_DISABLE_ALL, ORT_ENABLE_ALL
OPT_NAMES = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


@dataclass
class RunSettings:
    """validate()'s provider knobs, parsed once: options per provider, plugin libraries, levels."""

    options: dict[str, dict[str, str]] = field(default_factory=dict)
    ep_plugins: dict[str, str] = field(default_factory=dict)
    optimizations: tuple[str, ...] = OPTIMIZATIONS
    require_full_placement: bool = False

    @classmethod
    def resolve(cls, options: Any, ep_plugins: Any, optimizations: Any, require_full_placement: bool | None) -> "RunSettings":
        levels = optimizations.split(",") if isinstance(optimizations, str) else list(optimizations or OPTIMIZATIONS)
        levels = [lvl.strip().lower() for lvl in levels if lvl.strip()]
        bad = [lvl for lvl in levels if lvl not in OPT_NAMES]
        if bad or not levels:
            raise OnnxgateError(f"unknown optimisation level(s) {bad}", f"use some of {list(OPT_NAMES)}")
        return cls(parse_provider_options(options), parse_ep_plugins(ep_plugins), tuple(dict.fromkeys(levels)), bool(require_full_placement))

    def runs(self, providers: list[str]) -> list[tuple[str, str]]:
        return [(p, lvl) for p in providers for lvl in self.optimizations]

    def session_kwargs(self, provider: str, options: dict[str, str] | None = None) -> dict[str, Any]:
        """Keywords for isolation/runner.create_session: options, plugin libraries, placement records."""
        opts = self.options.get(provider) if options is None else options
        return {"provider_options": opts or None, "ep_plugins": self.ep_plugins or None, "record_placement": True}


@dataclass
class ProviderSection:
    """What the report shows about providers: options used, the matrix, placement, precision notes."""

    providers: list[str]
    options: dict[str, dict[str, str]] = field(default_factory=dict)
    ep_plugins: dict[str, str] = field(default_factory=dict)
    require_full_placement: bool = False
    placements: list[Placement] = field(default_factory=list)
    precision: list[PrecisionNote] = field(default_factory=list)
    matrix: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # output -> provider -> cell

    def as_dict(self) -> dict[str, Any]:
        return {
            "providers": self.providers,
            "options": self.options,
            "ep_plugins": self.ep_plugins,
            "require_full_placement": self.require_full_placement,
            "matrix": self.matrix,
            "placements": [p.as_dict() for p in self.placements],
            "precision": [n.as_dict() for n in self.precision],
        }

    def markdown(self) -> list[str]:
        lines = ["## Provider matrix", ""]
        shorts = [short_name(p) for p in self.providers]
        lines.append("| output | " + " | ".join(shorts) + " |")
        lines.append("|---|" + "---|" * len(shorts))
        for output, row in self.matrix.items():
            cells = [_cell(row.get(p)) for p in self.providers]
            lines.append(f"| `{output}` | " + " | ".join(cells) + " |")
        lines.append("")
        lines.append("Each cell: every batch case at ORT_DISABLE_ALL and ORT_ENABLE_ALL; worst max abs / max rel error.")
        if self.options:
            lines += ["", "Provider options: " + "; ".join(
                f"{short_name(p)}: " + ", ".join(f"`{k}={v}`" for k, v in o.items()) for p, o in self.options.items())]
        if self.precision:
            lines += ["", "Reduced precision:", ""] + [f"- {_md(n.message())}" for n in self.precision]
        if self.placements:
            lines += ["", "## Placement", ""]
            lines.append("| provider | optimisation | nodes | taken | fell back to CPU | fallback ops |")
            lines.append("|---|---|---|---|---|---|")
            for p in self.placements:
                if p.error:
                    lines.append(f"| {short_name(p.provider)} | {OPT_NAMES.get(p.optimization, p.optimization)} | | | | {_md(p.error)} |")
                    continue
                ops = ", ".join(f"{op} x{n}" for op, n in p.fallback_ops.items()) or "—"
                lines.append(
                    f"| {short_name(p.provider)} | {OPT_NAMES.get(p.optimization, p.optimization)} | {p.nodes} | "
                    f"{p.taken} | {p.fallback} | {_md(ops)} |"
                )
        return lines


def _cell(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "—"
    if cell["status"] == "error":
        return "**ERROR**"
    verdict = "pass" if cell["status"] == "passed" else "**FAIL**"
    return f"{verdict} ({_num(cell['max_abs_error'])} / {_num(cell['max_rel_error'])})"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.2g}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def provider_matrix(cases: list[Case], providers: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """output -> provider -> {status, max_abs_error, max_rel_error, cases}, over all cases and levels."""
    matrix: dict[str, dict[str, dict[str, Any]]] = {}
    for case in cases:
        if case.error:
            for output in matrix or {"(model)": {}}:
                matrix.setdefault(output, {})[case.provider] = {"status": "error", "max_abs_error": None, "max_rel_error": None, "cases": 0}
            continue
        for o in case.outputs:
            cell = matrix.setdefault(o.name, {}).setdefault(
                case.provider, {"status": "passed", "max_abs_error": None, "max_rel_error": None, "cases": 0}
            )
            if cell["status"] == "error":
                continue
            cell["cases"] += 1
            if not o.passed:
                cell["status"] = "failed"
            for key in ("max_abs_error", "max_rel_error"):
                value = getattr(o, key)
                if value is not None and np.isfinite(value):
                    cell[key] = value if cell[key] is None else max(cell[key], value)
    ordered = {p: i for i, p in enumerate(providers)}
    return {out: dict(sorted(row.items(), key=lambda kv: ordered.get(kv[0], 99))) for out, row in matrix.items()}


def optimizer_findings(cases: list[Case]) -> list[Finding]:
    """A provider/case that passes at one optimisation level and fails at the other."""
    by_key: dict[tuple[str, str], dict[str, Case]] = {}
    for c in cases:
        by_key.setdefault((c.provider, c.name), {})[c.optimization] = c
    out = []
    for (provider, name), levels in by_key.items():
        off, on = levels.get("disable"), levels.get("all")
        if off is None or on is None or off.error or on.error or off.status == on.status:
            continue
        good, bad = (off, on) if off.status == "passed" else (on, off)
        worst = [o.name for o in bad.outputs if not o.passed]
        if not _beyond_noise(good, bad):
            out.append(Finding(
                "warning", "optimizer",
                f"{short_name(provider)} at {name}: passes with {OPT_NAMES[good.optimization]} and fails with "
                f"{OPT_NAMES[bad.optimization]} (outputs {worst}), but the two levels' errors differ by less than "
                "the allowed noise: they land on either side of the threshold, which is not an optimiser issue",
            ))
            continue
        out.append(Finding(
            "error", "optimizer",
            f"{short_name(provider)} at {name}: passes with {OPT_NAMES[good.optimization]} but fails with "
            f"{OPT_NAMES[bad.optimization]} (outputs {worst}): an ONNX Runtime graph-optimisation issue, not a conversion "
            f"issue; deploy with graph_optimization_level={OPT_NAMES[good.optimization]} or report it to ONNX Runtime",
        ))
    return out


def _beyond_noise(good: Case, bad: Case) -> bool:
    """The failing level's error exceeds the passing level's by more than the output's allowance (atol incl. K x floor)."""
    good_err = {o.name: o.max_abs_error or 0.0 for o in good.outputs}
    for o in bad.outputs:
        if o.passed or o.max_abs_error is None:
            continue
        allowance = (o.atol or 0.0) + (o.k or 0.0) * (o.noise_floor or 0.0)
        if not np.isfinite(o.max_abs_error) or o.max_abs_error - good_err.get(o.name, 0.0) > allowance:
            return True
        if o.kind in ("exact", "label", "neighbors"):
            return True  # integers and labels have no noise to hide in
    return False


def placement_findings(placements: list[Placement], require_full: bool) -> list[Finding]:
    chosen: dict[str, Placement] = {}
    for p in placements:  # judged at ORT_ENABLE_ALL (what deploys) when it ran, else the level that did
        if p.provider not in chosen or p.optimization == "all":
            chosen[p.provider] = p
    out = []
    for p in chosen.values():
        if p.provider == "CPUExecutionProvider":
            continue
        if p.error:
            out.append(Finding("warning", "placement", f"{short_name(p.provider)}: {p.error}"))
            continue
        if p.fallback:
            ops = ", ".join(f"{op} x{n}" for op, n in p.fallback_ops.items())
            out.append(Finding(
                "error" if require_full else "warning", "placement",
                f"{short_name(p.provider)} took {p.taken}/{p.nodes} nodes; {p.fallback} fell back to CPU ({ops})"
                + ("" if require_full else "; --require-full-placement makes this fail"),
            ))
    return out


def precision_notes(
    cases: list[Case],
    providers: list[str],
    options: dict[str, dict[str, str]],
    rerun: Callable[[str, dict[str, str], Case], Case | None],
) -> list[PrecisionNote]:
    """Reduced-precision providers; where one failed parity, rerun a failing case with the restoring option."""
    notes = []
    for provider in providers:
        note = reduced_precision(provider, options.get(provider))
        if note is None:
            continue
        failed = [c for c in cases if c.provider == provider and c.status == "failed"]
        if failed:
            again = rerun(provider, dict(options.get(provider, {}), **note.restore), failed[0])
            if again is not None and again.status == "passed":
                err = max((o.max_abs_error or 0.0) for o in again.outputs)
                note.confirmed = (
                    f"Confirmed: parity failed with the default and {failed[0].name} at "
                    f"{OPT_NAMES[failed[0].optimization]} passes with {note.restore_flag} (max abs err {err:.2g})"
                )
            elif again is not None:
                note.confirmed = f"Rerun with {note.restore_flag} still fails: the mismatch is not only reduced precision"
        notes.append(note)
    return notes


def finish(
    report: Any,
    providers: list[str],
    settings: RunSettings,
    sessions: dict[tuple[str, str], Any],
    *,
    rerun: Callable[[str, str, dict[str, Any], str], list[Any]],
) -> ProviderSection:
    """Placement, precision notes, optimiser and placement findings, and the matrix, onto ``report``."""
    placements = [s.placement() for s in sessions.values()]

    def again(provider: str, options: dict[str, str], failed: Case) -> Case | None:
        case = Case(failed.name, provider, failed.optimization, failed.input_shapes)
        try:
            case.outputs = rerun(provider, failed.optimization, settings.session_kwargs(provider, options), failed.name)
        except Exception as exc:  # RunError: the restoring option itself does not load
            case.error = " ".join(str(exc).split())[:300]
        return case

    section = ProviderSection(
        providers=list(providers),
        options={p: o for p, o in settings.options.items() if p in providers},
        ep_plugins=dict(settings.ep_plugins),
        require_full_placement=settings.require_full_placement,
        placements=placements,
        precision=precision_notes(report.cases, providers, settings.options, again),
        matrix=provider_matrix(report.cases, providers),
    )
    report.findings += optimizer_findings(report.cases)
    report.findings += placement_findings(placements, settings.require_full_placement)
    report.findings += [Finding("warning", "precision", n.message()) for n in section.precision]
    report.providers = section
    return section
