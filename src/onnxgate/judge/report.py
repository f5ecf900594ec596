"""The validation report: one object, rendered as JSON, Markdown and JUnit XML.

The verdict is derived from the records (never stored separately): a report is
"error" when a case could not run, "failed" when an output or a check failed,
"passed" otherwise.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import PurePath
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from onnxgate._util import json_text
from onnxgate.judge.compare import OutputComparison

SCHEMA = "onnxgate.report/1"

# One verdict vocabulary for run, validate, gate and zoo verify (exit 1 for all but "passed"):
#   passed   every check held
#   failed   a check failed: parity, a provider, a signature, a stored output that differs
#   error    something could not be checked: a case, a load, a download did not run
#   vacuous  the check ran but proves nothing (degenerate reference, no test data)
VERDICTS = ("passed", "failed", "error", "vacuous")


@dataclass
class Case:
    """One ORT run compared with the reference: an input shape on a provider at an optimisation level."""

    name: str
    provider: str
    optimization: str
    input_shapes: dict[str, list[int]]
    outputs: list[OutputComparison] = field(default_factory=list)
    error: str | None = None
    providers_used: list[str] = field(default_factory=list)
    error_kind: str | None = None  # runtime.runner.RunError.kind when ONNX Runtime failed: load/run/crash/timeout/memory

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        return "passed" if all(o.passed for o in self.outputs) else "failed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "provider": self.provider,
            "optimization": self.optimization,
            "status": self.status,
            "input_shapes": self.input_shapes,
            "providers_used": self.providers_used,
            "error": self.error,
            **({"error_kind": self.error_kind} if self.error_kind else {}),
            "outputs": [o.as_dict() for o in self.outputs],
        }


@dataclass
class Finding:
    """A static check result: "error" findings fail the report, "warning" ones do not."""

    level: str
    check: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "check": self.check, "message": self.message}


@dataclass
class EvidenceData:
    """The first case's inputs and the original's outputs: what publish stores as test_data_set_0 (not serialised)."""

    inputs: dict[str, Any]
    outputs: dict[str, Any]


def _record(cls: type, value: Any) -> Any:
    """A section given as a dict (its JSON form) -> the record; unknown keys go to ``extra``."""
    if value is None or isinstance(value, cls):
        return value
    names = {f.name for f in dataclasses.fields(cls)}
    known = {k: v for k, v in value.items() if k in names}
    extra = {k: v for k, v in value.items() if k not in names}
    if extra:
        known["extra"] = {**known.get("extra", {}), **extra}
    return cls(**known)


@dataclass
class ModelSection:
    """The ONNX model under test."""

    path: str | None = None
    sha256: str | None = None
    bytes: int | None = None
    opset: int | None = None
    ir_version: int | None = None
    producer: str | None = None
    opset_imports: dict[str, int] = field(default_factory=dict)
    published_variant: dict[str, Any] | None = None  # --publish-best: which variant was written
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra"}
        if self.published_variant is None:
            out.pop("published_variant")
        return {**out, **self.extra}


@dataclass
class InputsSection:
    """The shared inputs: where they came from and a hash of them."""

    sample: str | None = None
    kind: str | None = None  # "array" | "named" | "table" | "synthesised" | "evidence"
    hash: str | None = None
    seed: int | None = None
    synthesis: dict[str, Any] | None = None  # dims and ranges used to synthesise
    shapes: dict[str, list[int]] = field(default_factory=dict)
    dtypes: dict[str, str] = field(default_factory=dict)
    evidence: list[str] | None = None  # --save-evidence: the test_data_set_N directories written
    sets: list[str] | None = None  # --evidence: the data sets replayed
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k != "extra" and (v is not None or k in ("sample", "seed", "synthesis"))}
        return {**out, **self.extra}


@dataclass
class ConversionSection:
    """How the ONNX model was produced (absent when an existing file was validated)."""

    converter: str
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"converter": self.converter, "notes": list(self.notes), "seconds": self.seconds, **self.extra}


@dataclass
class Report:
    source: str | None
    framework: str | None
    model: ModelSection
    inputs: InputsSection
    tolerances: dict[str, Any]  # the policy's as_dict(): defaults by dtype, overrides, error statistic
    versions: dict[str, str]
    conversion: ConversionSection | None = None
    trust: dict[str, Any] | None = None
    cases: list[Case] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    seconds: float | None = None
    # --benchmark / --optimize (diagnose.speed.SpeedReport, pipelines.optimize.VariantSet):
    # informative, they never change the status; duck-typed (as_dict, markdown) to keep imports light
    speed: Any = None
    variants: Any = None
    # diagnose.provider_checks.ProviderSection: provider matrix, placement, options, precision notes
    providers: Any = None
    # the first case's inputs and the original's outputs, kept for publish (not serialised)
    evidence: EvidenceData | None = field(default=None, repr=False, compare=False)
    vacuous: str | None = None  # why the original's outputs cannot tell right from wrong (judge/degenerate.py)

    def __post_init__(self) -> None:
        self.model = _record(ModelSection, self.model)
        self.inputs = _record(InputsSection, self.inputs)
        self.conversion = _record(ConversionSection, self.conversion)

    @property
    def status(self) -> str:
        if self.error or any(c.status == "error" for c in self.cases):
            return "error"
        if not self.cases:
            return "error"
        failed = any(c.status == "failed" for c in self.cases) or any(f.level == "error" for f in self.findings)
        if failed:
            return "failed"
        return "vacuous" if self.vacuous else "passed"

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:  # Polygraphy's convention: truth value is "passed"
        return self.passed

    def failures(self) -> list[str]:
        """One line per failing output, case or finding."""
        lines = []
        if self.error:
            lines.append(self.error)
        if self.vacuous:
            lines.append(f"vacuous: {self.vacuous}")
        for f in self.findings:
            if f.level == "error":
                lines.append(f"{f.check}: {f.message}")
        for c in self.cases:
            if c.error:
                lines.append(f"[{_case_label(c)} on {c.provider}] {c.error}")
            for o in c.outputs:
                if not o.passed:
                    lines.append(f"[{_case_label(c)} on {c.provider}] output {o.name!r}: {'; '.join(o.problems)}")
        return lines

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "status": self.status,
            "created": self.created,
            "seconds": self.seconds,
            "source": self.source,
            "framework": self.framework,
            "model": self.model.as_dict(),
            "conversion": self.conversion.as_dict() if self.conversion is not None else None,
            "inputs": self.inputs.as_dict(),
            "tolerances": self.tolerances,
            "trust": self.trust,
            "versions": self.versions,
            "findings": [f.as_dict() for f in self.findings],
            "cases": [c.as_dict() for c in self.cases],
            "error": self.error,
            "vacuous": self.vacuous,
            "failures": self.failures(),
            "speed": self.speed.as_dict() if self.speed is not None else None,
            "variants": self.variants.as_dict() if self.variants is not None else None,
            "providers": self.providers.as_dict() if self.providers is not None else None,
        }

    def to_json(self) -> str:
        return json_text(self.as_dict()) + "\n"

    def to_markdown(self) -> str:
        icon = {"passed": "PASSED", "failed": "FAILED", "error": "ERROR", "vacuous": "VACUOUS"}[self.status]
        lines = [
            f"# onnxgate report: {icon}",
            "",
            f"- source: `{self.source}` ({self.framework})" if self.source else "- source: (none)",
            f"- model: `{self.model.path}` sha256 `{str(self.model.sha256)[:16]}…`, opset {self.model.opset}",
            f"- inputs: {self.inputs.sample or 'synthesised'} (hash `{str(self.inputs.hash)[:16]}…`)",
        ]
        if self.conversion:
            lines.append(f"- converter: {self.conversion.converter}")
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in sorted(self.versions.items())))
        if self.findings:
            lines += ["", "## Checks", ""]
            lines += [f"- **{f.level}** {f.check}: {f.message}" for f in self.findings]
        lines += [
            "",
            "## Outputs",
            "",
            "| case | provider | output | status | max abs err | max rel err | mismatched | problems |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in self.cases:
            if c.error:
                lines.append(f"| {_case_label(c)} | {c.provider} | — | error | | | | {_md(c.error)} |")
            for o in c.outputs:
                status = "pass" if o.passed else "**FAIL**"
                ties = f" ({o.ties} ties)" if o.ties else ""
                lines.append(
                    f"| {_case_label(c)} | {c.provider} | `{o.name}` | {status} | {_num(o.max_abs_error)} | "
                    f"{_num(o.max_rel_error)} | {o.mismatched}/{o.total}{ties} | {_md('; '.join(o.problems))} |"
                )
        lines += _rules_markdown(self.cases)
        for extra in (self.providers, self.speed, self.variants):
            if extra is not None:
                lines += ["", *extra.markdown()]
        if self.failures():
            lines += ["", "## Failures", ""] + [f"- {_md(f)}" for f in self.failures()]
        return "\n".join(lines) + "\n"

    def to_junit(self, suite_name: str | None = None) -> str:
        """One suite, named after the model (the source's stem, else the ONNX file's) unless ``suite_name`` is given."""
        return junit_xml([(suite_name or suite_name_for(self.source or self.model.path), self)])


def suite_name_for(path: Any) -> str:
    """``iris`` for ``models/iris.skops``; ``pkg.mod:build`` stays as it is; ``onnxgate`` for nothing."""
    if not path:
        return "onnxgate"
    text = str(path)
    if ":" in text and "/" not in text.split(":", 1)[1]:
        return text
    return PurePath(text.rstrip("/")).stem or text


def error_report(message: str, source: str | None = None) -> Report:
    """A report for something that could not be checked at all (bad input, bad config)."""
    return Report(source=source, framework=None, model={}, inputs={}, tolerances={}, versions={}, error=message)


def _rules_markdown(cases: list[Case]) -> list[str]:
    """Each output's comparison rule once (rows only say what went wrong)."""
    rules: dict[str, list[str]] = {}
    for c in cases:
        for o in c.outputs:
            if o.rule and o.rule not in rules.setdefault(o.name, []):
                rules[o.name].append(o.rule)
    if not rules:
        return []
    return ["", "Rules:", ""] + [f"- `{name}`: {_md(' / '.join(r))}" for name, r in rules.items() if r]


def junit_xml(reports: list[tuple[str, Report]]) -> str:
    """One <testsuite> per report, one <testcase> per case x output."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<testsuites>"]
    for suite_name, report in reports:
        cases: list[str] = []
        failures = errors = 0
        if report.error:
            errors += 1
            cases.append(
                f'    <testcase classname={quoteattr(suite_name)} name="load">'
                f"<error message={quoteattr(report.error)}/></testcase>"
            )
        if report.vacuous:
            failures += 1
            cases.append(
                f'    <testcase classname={quoteattr(suite_name)} name="vacuous">'
                f"<failure message={quoteattr(report.vacuous)}/></testcase>"
            )
        for f in report.findings:
            body = ""
            if f.level == "error":
                failures += 1
                body = f"<failure message={quoteattr(f.message)}/>"
            elif f.level == "warning":  # JUnit has no warning verdict: it passes, with the warning in its output
                body = f"<system-out>{escape('warning: ' + f.message)}</system-out>"
            cases.append(f'    <testcase classname={quoteattr(suite_name)} name={quoteattr("check " + f.check)}>{body}</testcase>')
        for c in report.cases:
            classname = quoteattr(f"{suite_name}.{c.provider}")
            if c.error:
                errors += 1
                cases.append(
                    f"    <testcase classname={classname} name={quoteattr(_case_label(c))}>"
                    f"<error message={quoteattr(c.error)}/></testcase>"
                )
                continue
            for o in c.outputs:
                body = ""
                if not o.passed:
                    failures += 1
                    detail = json_text(o.as_dict(), indent=1)
                    body = f"<failure message={quoteattr('; '.join(o.problems))}>{escape(detail)}</failure>"
                cases.append(f"    <testcase classname={classname} name={quoteattr(f'{_case_label(c)} {o.name}')}>{body}</testcase>")
        out.append(
            f"  <testsuite name={quoteattr(suite_name)} tests=\"{len(cases)}\" failures=\"{failures}\" "
            f"errors=\"{errors}\" time=\"{report.seconds or 0:.3f}\">"
        )
        out += cases
        out.append("  </testsuite>")
    out.append("</testsuites>")
    return "\n".join(out) + "\n"


def level_name(optimization: str) -> str:
    """``all`` -> ``ORT_ENABLE_ALL``, ``disable`` -> ``ORT_DISABLE_ALL``: ONNX Runtime's name for a graph optimisation level."""
    return "ORT_DISABLE_ALL" if optimization == "disable" else f"ORT_ENABLE_{optimization.upper()}"


def _case_label(c: Case) -> str:
    """``batch=8``, or ``batch=8 (ORT_DISABLE_ALL)`` for a case run without graph optimisation."""
    return c.name if c.optimization == "all" else f"{c.name} ({level_name(c.optimization)})"


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:.3g}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
