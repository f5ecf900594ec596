"""convert -> validate -> report, for any registered converter.

The public functions take a :class:`~onnxgate.settings.Settings` and/or keyword options
named as its fields (STYLE 8); ``validate`` is a sequence of stage functions:
load (framework worker) -> cases -> the original's outputs -> ONNX Runtime on every
provider and level (ORT workers) -> checks and findings -> localisation -> speed.
"""

from __future__ import annotations

import platform
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._io import check_output_path, write_atomic
from onnxgate._progress import NullProgress
from onnxgate.checks.model_file import describe, load_onnx
from onnxgate.converters.base import Conversion
from onnxgate.errors import SampleError, SourceError
from onnxgate.inputs.samples import inputs_hash, take_rows
from onnxgate.judge.batch_axes import batch_error, frozen_output_problems
from onnxgate.judge.compare import compare_outputs
from onnxgate.judge.report import Case, ConversionSection, EvidenceData, InputsSection, ModelSection, Report
from onnxgate.judge.ties import settled_outputs
from onnxgate.judge.tolerances import TolerancePolicy
from onnxgate.pipelines import depth
from onnxgate.runtime.framework import ReferenceRunner
from onnxgate.runtime.providers import canonical_provider, list_providers
from onnxgate.runtime.runner import RunError
from onnxgate.settings import Settings

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class ConvertResult:
    """A conversion: the ONNX model, how it was made, and the original it was made from."""

    reference: ReferenceRunner  # the original model, still loaded (close it, or pass it to validate)
    conversion: Conversion
    output: Path | None
    seconds: float

    @property
    def model(self) -> Any:
        return self.conversion.model

    @property
    def loaded(self) -> ReferenceRunner:  # the name before the runner existed
        return self.reference


def source_label(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__} object>"


def resolve_settings(settings: Settings | None = None, options: dict[str, Any] | None = None) -> Settings:
    """``settings`` with keyword options applied (any settings field name; ``trust=Trust(...)`` too)."""
    options = dict(options or {})
    trust = options.pop("trust", None)
    if trust is not None:
        options.update(trust_pickle=trust.pickle, trust_code=trust.code, trust_types=tuple(trust.types))
    return Settings.from_kwargs(settings, **options)


def load_source(source: Any, settings: Settings | None = None, *, specs: list[Any] | None = None,
                progress: Any = None, **options: Any) -> ReferenceRunner:
    """Load the original model (in a framework worker) and build the shared inputs.

    Without a sample the converter synthesises the inputs from the model's signature, else
    from ``specs`` (inputs.synthesize.InputSpec, e.g. the ONNX file's); the seed is
    recorded in ``runner.options["seed"]``. Close the runner when done (``with`` works).
    """
    from onnxgate.inputs.synthesize import DEFAULT_SEED, synthesize_from_options
    from onnxgate.runtime.framework import open_reference, raise_feeds_error, send_feeds

    s = resolve_settings(settings, options)
    hub = isinstance(source, str) and source.startswith("hf:")  # a Hugging Face hub name, resolved by the hf converter
    if isinstance(source, (str, Path)) and not hub and not _FACTORY.match(str(source)) and not Path(source).exists():
        raise SourceError(f"source {str(source)!r} does not exist", "check the path")
    if not s.runtime.in_process:
        from onnxgate.runtime.isolation import default_pool

        default_pool().prewarm()  # ONNX Runtime's worker starts while the framework worker loads
    conv_options = s.converter_options()
    conv_options["seed_given"] = s.inputs.seed is not None  # a converter may prefer stored examples otherwise
    conv_options["seed"] = DEFAULT_SEED if s.inputs.seed is None else s.inputs.seed
    runner = open_reference(
        source, sample=s.inputs.sample, framework=s.load.framework, trust=s.load.trust(), options=conv_options,
        in_process=s.runtime.in_process, timeout=s.runtime.timeout,
    )
    if runner.feeds_error is not None:
        if specs is None:
            runner.close()
            raise_feeds_error(runner)
        send_feeds(runner, synthesize_from_options(specs, conv_options))  # the ONNX file knows the signature
    return runner


def convert(source: Any, output: str | Path | None = None, settings: Settings | None = None, *,
            progress: Any = None, reference: ReferenceRunner | None = None, **options: Any) -> ConvertResult:
    """Convert ``source`` to ONNX; write ``output`` atomically when given.

    The original stays loaded in ``result.reference`` for :func:`validate`; close it when done.
    """
    progress = progress or NullProgress()
    s = resolve_settings(settings, options)
    out = check_output_path(output, "ONNX model")
    if reference is None:
        with progress.step(f"loading {source_label(source)}"):
            reference = load_source(source, s)
    try:
        with progress.step(f"converting with {reference.converter}"):
            model, info = reference.convert(s.convert.opset)
    except BaseException:
        reference.close()
        raise
    conversion = Conversion(model, info["converter"], list(info["notes"]))
    try:
        conversion.model = _finish(conversion, s, check=out is not None)
    except BaseException:
        reference.close()
        raise
    if out is not None:
        write_atomic(out, conversion.model.SerializeToString())
    return ConvertResult(reference, conversion, out, float(info["seconds"]))


def _finish(conversion: Conversion, s: Settings, *, check: bool) -> Any:
    """The requested opset and the --target-ort IR version, noted; with ``check``, refuse an invalid model.

    Without ``check`` (``run``), an unmet --target-ort is a note here and a finding in validation.
    """
    from onnxgate.pipelines import finish

    target = finish.target_limits(s.static.target_ort)
    wanted = finish.wanted_opset(conversion.model, s.convert.opset, target)
    model = finish.match_opset(conversion.model, wanted, conversion.converter, conversion.notes)
    problems = finish.lower_ir_version(model, target, conversion.notes)
    if problems and check:
        raise finish.target_problems_error(problems, s.static.target_ort or "")
    conversion.notes += [f"--target-ort {s.static.target_ort} not met: {p}" for p in problems]
    if check:
        finish.check_before_write(model, model.SerializeToString(), s.runtime.isolation())
    return model


def _versions(framework_versions: dict[str, str]) -> dict[str, str]:
    """Python, onnxgate, onnx, onnxruntime, numpy, plus the framework's and converter's (from the worker)."""
    out = {"python": platform.python_version(), "onnxgate": _version("onnxgate")}
    for pkg in ("onnx", "onnxruntime", "numpy"):
        out[pkg] = _version(pkg)
    out.update(framework_versions or {})
    return out


def _version(pkg: str) -> str:
    from onnxgate._util import installed_version

    return installed_version(pkg) or "not installed"


def batch_cases(feeds: dict[str, np.ndarray]) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The sample at its own batch size, at batch 1 and at an odd size in between."""
    rows = next(iter(feeds.values())).shape[0] if feeds else 0
    sizes = [rows]
    if rows > 1:
        sizes.append(1)
    if rows > 4:
        sizes.append((rows // 2) | 1)
    return [(f"batch={n}", take_rows(feeds, slice(0, n)) if n != rows else feeds) for n in sizes]


def resolve_providers(providers: str | list[str] | None, *, ep_plugins: dict[str, str] | None = None) -> list[str]:
    """``None`` -> CPU; ``all`` -> every available provider (plugin meta-devices such as ``.AUTO`` left out);
    a provider that cannot run here is a user error saying why (runtime.providers.unavailable_error)."""
    from onnxgate.runtime.providers import unavailable_error

    if providers is None:
        return ["CPUExecutionProvider"]
    names = providers.split(",") if isinstance(providers, str) else list(providers)
    names = [n.strip() for n in names if n.strip()]
    listed = list_providers(ep_plugins)
    infos = {p.name: p for p in listed}
    if names == ["all"]:
        return [n for n, p in infos.items() if p.available and n != "AzureExecutionProvider" and "." not in n]
    resolved = list(dict.fromkeys(canonical_provider(n) for n in names))
    for n in resolved:
        if n not in infos or not infos[n].available:
            raise unavailable_error(n, listed)
    return resolved


def validate(source: Any, onnx_model: str | Path | Any, settings: Settings | None = None, *,
             progress: Any = None, reference: ReferenceRunner | None = None,
             conversion: ConvertResult | None = None, **options: Any) -> Report:
    """Run the original and the ONNX model on the same inputs; compare every output.

    ``settings`` (settings.Settings) and keyword options (any settings field: ``atol``,
    ``providers``, ``sample``, ``edge``, ``timeout``, ...) say how. The original runs in a
    framework worker (``reference``: an already loaded one, e.g. ``conversion.reference``)
    and ONNX Runtime in ORT workers, on every provider and optimisation level. With
    ``evidence`` (and ``source=None``) the stored outputs stand in for the original.
    """
    progress = progress or NullProgress()
    s = resolve_settings(settings, options)
    started = time.perf_counter()
    if conversion is not None and reference is None:
        reference = conversion.reference
    if s.depth.evidence is not None:
        return _validate_evidence(source, onnx_model, s, progress)
    _check_speed_needs_source(source, s)
    target = OnnxTarget.open(onnx_model)
    _check_names(target, s)  # before any model loads
    own = reference is None
    if own:
        with progress.step(f"loading {source_label(source)}"):
            reference = load_source(source, s, specs=target.specs() if s.inputs.sample is None else None)
    try:
        report = _judge(source, target, reference, s, conversion, progress)
    finally:
        if own:
            reference.close()
    report.seconds = round(time.perf_counter() - started, 3)
    return report


@dataclass
class OnnxTarget:
    """The ONNX model under test: its proto, bytes, path (None when in memory) and description."""

    proto: Any
    data: bytes
    path: str | None
    info: dict[str, Any]

    @classmethod
    def open(cls, model: str | Path | Any) -> "OnnxTarget":
        if isinstance(model, (str, Path)):
            proto, data = load_onnx(model)
            path: str | None = str(model)
        else:
            proto, data, path = model, model.SerializeToString(), None
        _check_resources(proto, path)
        return cls(proto, data, path, describe(proto, data, path))

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.info["outputs"]]

    @property
    def input_names(self) -> list[str]:
        return [i["name"] for i in self.info["inputs"]]

    def specs(self) -> list[Any]:
        from onnxgate.inputs.synthesize import specs_from_onnx

        return specs_from_onnx(self.proto)

    def session_model(self) -> bytes | str:
        """What a worker opens: the path (external data resolves next to it), else the bytes."""
        return str(Path(self.path).resolve()) if self.path else self.data


def _check_speed_needs_source(source: Any, s: Settings) -> None:
    if source is None:
        raise SampleError("validate needs SOURCE (or --evidence DIR)", "run 'onnxgate validate SOURCE MODEL.onnx'")


def _validate_evidence(source: Any, onnx_model: Any, s: Settings, progress: Any) -> Report:
    """``validate MODEL.onnx --evidence DIR``: the stored outputs are the original's answers."""
    if source is not None:
        raise SampleError(
            "--evidence replaces SOURCE: the stored outputs are the original's answers",
            "run 'onnxgate validate MODEL.onnx --evidence DIR', or drop --evidence to compare with SOURCE",
        )
    if s.speed.benchmark or s.speed.optimize:
        raise SampleError(
            "--benchmark/--optimize need SOURCE: with --evidence there is no original model to time",
            "run 'onnxgate validate SOURCE MODEL.onnx --benchmark'",
        )
    from onnxgate.pipelines.replay import validate_evidence

    run_settings = s.runtime.run_settings()
    return validate_evidence(
        onnx_model, s.depth.evidence, policy=s.compare.policy(),
        provider_names=resolve_providers(s.runtime.providers, ep_plugins=run_settings.ep_plugins),
        localize=s.depth.localize, progress=progress, versions=_versions({}), isolation=s.runtime.isolation(),
    )


def _judge(source: Any, target: OnnxTarget, reference: ReferenceRunner, s: Settings,
           conversion: ConvertResult | None, progress: Any) -> Report:
    """The stages after loading: cases, the original's outputs, ORT on every provider, checks, diagnoses."""
    from onnxgate.diagnose import provider_checks
    from onnxgate.inputs.evidence import check_evidence_dir
    from onnxgate.judge.report import Finding

    evidence_dir = check_evidence_dir(s.depth.save_evidence)
    run_settings = s.runtime.run_settings()
    provider_names = resolve_providers(s.runtime.providers, ep_plugins=run_settings.ep_plugins)
    _check_inputs_fit(target.info, reference.feeds)
    _feed_columns_as_declared(target.info, reference)
    policy = s.compare.policy()
    if policy.topk is None and reference.topk:  # a language model's logits: top-k token agreement too
        policy = replace(policy, topk=reference.topk)
    report = _new_report(source, target, reference, policy, conversion)
    report.findings = provider_checks.static_findings(target.proto, target_ort=s.static.target_ort, mobile=s.static.mobile_check)
    cases, axes = _cases(reference.feeds, target, s)
    references, reference_errors, ties = _reference_outputs(reference, cases, target.output_names, progress)
    cases, refused = depth.drop_refused_edges(cases, reference_errors)
    report.findings += refused
    nominal = references[cases[0][0]]
    _check_degenerate(report, cases[0][1], nominal, s)
    wide = None
    if not s.compare.no_calibration:
        policy, wide = _calibrate(reference, cases[0][1], nominal, target, policy, progress)
        report.tolerances = policy.as_dict()
        report.findings += _coarse_floor_findings(policy)
    originals, references = references, _best_references(references, cases[0][0], wide)
    sessions = SessionCache(target, s.runtime.isolation())
    placements = _run_providers(report, target, cases, references, reference_errors, axes, provider_names, run_settings, policy, sessions,
                                reference, progress, ties)
    depth.axis_findings(report, axes)
    _check_ties(report, nominal, ties, s)
    settled = {name: settled_outputs(outputs, report.cases, name) for name, outputs in originals.items()}
    report.evidence = EvidenceData(cases[0][1], settled[cases[0][0]])
    if evidence_dir is not None:
        with progress.step(f"writing evidence to {evidence_dir}"):
            report.inputs.evidence = depth.save_evidence(evidence_dir, cases, settled, target.input_names, target.output_names)
    if not s.compare.no_calibration:
        _check_thresholds(report, nominal, policy, s, ties.get(cases[0][0], {}))
    _bfloat16_hint(report, target.proto)
    provider_checks.finish(
        report, provider_names, run_settings, placements,
        rerun=lambda provider, optimization, kwargs, name: compare_outputs(
            references[name], sessions.get(provider, optimization, kwargs).run(dict(cases)[name]),
            policy=policy, output_names=target.output_names, ties=ties.get(name),
        ),
    )
    if s.depth.localize and report.status == "failed":
        depth.localize_failure(report, target.proto, cases, policy=policy, reference=reference,
                               fresh=conversion is not None, progress=progress, isolation=s.runtime.isolation(),
                               model_dir=Path(target.path).parent if target.path else None)
    if s.speed.benchmark or s.speed.optimize:
        _speed(report, reference, target.data, cases, references, target.output_names, policy, s, progress, ties)
    report.findings += [Finding("info", "framework-warning", w) for w in reference.warnings]  # from its worker
    return report


def _new_report(source: Any, target: OnnxTarget, reference: ReferenceRunner, policy: TolerancePolicy,
                conversion: ConvertResult | None) -> Report:
    feeds, opts = reference.feeds, reference.options
    report = Report(
        source=source_label(source),
        framework=reference.converter,
        model=ModelSection(**{k: target.info[k] for k in ("path", "sha256", "bytes", "opset", "ir_version", "producer", "opset_imports")}),
        inputs=InputsSection(
            sample=reference.sample["path"] if reference.sample else None,
            kind=reference.sample["kind"] if reference.sample else "synthesised",
            hash=inputs_hash(feeds),
            seed=opts.get("seed"),
            synthesis=None if reference.sample else {"dims": opts.get("dims") or {}, "ranges": opts.get("input_ranges") or {}},
            shapes={k: list(v.shape) for k, v in feeds.items()},
            dtypes={k: str(v.dtype) for k, v in feeds.items()},
        ),
        tolerances=policy.as_dict(),
        versions=_versions(reference.versions),
        trust=reference.trust.as_dict(audited=reference.audited),
    )
    if conversion is not None:
        report.conversion = ConversionSection(conversion.conversion.converter, list(conversion.conversion.notes), round(conversion.seconds, 3))
    return report


def _flip_findings(report: Report) -> list[Any]:
    """Failing float outputs whose errors come in whole steps: threshold flips in a tree ensemble, explained."""
    from onnxgate.judge.report import Finding

    failing: dict[str, list[Any]] = {}
    for c in report.cases:
        for o in c.outputs:
            if not o.passed:
                failing.setdefault(o.name, []).append(o)
    out = []
    for worst in failing.values():
        o = max(worst, key=lambda x: x.mismatched)
        if not o.quantum or not all(x.quantum and abs(x.quantum / o.quantum - 1) < 0.02 for x in worst):
            continue  # a step is claimed only when every failing case of the output shows the same one
        steps = round((o.max_abs_error or 0.0) / o.quantum)
        out.append(Finding(
            "info", "tree-flip",
            f"output {o.name!r} differs in whole steps of {o.quantum:.4g} (at most {steps} step(s), on "
            f"{o.mismatched} value(s)): a tree takes the other branch where an input lies between a float64 "
            f"threshold and its float32 rounding, which is what float32 inference does. Fixes: export with "
            f"--double where every op has a float64 kernel in ONNX Runtime (the run reports a load error if "
            f"not), or accept it explicitly with --tol {o.name}={o.quantum * max(steps, 1):.4g}:0",
        ))
    return out


def _calibrate(reference: ReferenceRunner, feeds: dict[str, np.ndarray], nominal: dict[str, np.ndarray], target: OnnxTarget,
               policy: TolerancePolicy, progress: Any) -> tuple[TolerancePolicy, dict[str, np.ndarray] | None]:
    """The original's own noise floor per output (judge/calibration.py), folded into the policy,
    and its float64 outputs on the nominal case where its framework computes in float64.
    Stepwise outputs (tree ensembles, thresholds: judge/steps.py) get jump floors."""
    from onnxgate.judge.calibration import combined, exact_floors, faithful_wide, jump_outputs, noise_floors
    from onnxgate.judge.steps import stepwise_outputs

    output_names = target.output_names
    with progress.step("measuring the original's noise floor"):
        wide = reference.infer64(feeds, output_names)
        steps = stepwise_outputs(target.proto)
        jumps = jump_outputs(steps, wide is not None)
        try:
            floors = noise_floors(lambda f: reference.infer(f, output_names), feeds, nominal, stepwise=jumps,
                                  stacked=reference.independent_rows)
        except SampleError:  # the original refuses inputs one ulp away (categories): no floor, dtype defaults
            return policy, None
        wide, unfaithful = faithful_wide(floors, nominal, wide)
    for name, typical in unfaithful.items():
        reference.warnings.append(f"output {name!r}: the float64 copy of the original differs from it by {typical:.3g} "
                                  "(far beyond float32 rounding: its program keeps float32 constants or casts), so it is "
                                  "not used; the floor comes from input perturbation")
    floors = dict(combined(floors, nominal, wide), **exact_floors(frozenset(steps) - jumps, nominal))
    return policy.calibrated(floors), wide


def _coarse_floor_findings(policy: TolerancePolicy) -> list[Any]:
    """A floor too coarse to catch small errors on this sample is said, with what to do."""
    from onnxgate.judge.calibration import coarse_floors
    from onnxgate.judge.report import Finding

    return [Finding("warning", "noise-floor",
                    f"output {name!r}: the original itself moves by {share:.0%} of the output's scale when its inputs move "
                    f"by one float32 ulp (its values sit on thresholds or repeated quantiles), so errors below that go "
                    f"unseen on this sample; validate on rows the model was not fitted on")
            for name, share in coarse_floors(policy.floors, policy.k_for).items()]


def _leaned_on_the_floor(report: Report, outputs: dict[str, Any]) -> bool:
    """Whether any value of ``outputs`` passed only thanks to its noise floor (its error beyond
    atol + rtol x |ref|): a pass that rests on the jumps it allowed, not on agreement."""
    return any(o.excused for c in report.cases for o in c.outputs if o.name in outputs)


def _check_thresholds(report: Report, nominal: dict[str, np.ndarray], policy: TolerancePolicy, s: Settings,
                      ties: dict[str, Any]) -> None:
    """Rows sitting on a tree threshold are said; when they are most of the sample, the check is vacuous."""
    from onnxgate.judge.calibration import MOST, threshold_bound
    from onnxgate.judge.degenerate import threshold_reason
    from onnxgate.judge.report import Finding
    from onnxgate.judge.ties import off_ties

    bound = off_ties(threshold_bound(policy.floors), policy.floors, ties)  # type: ignore[arg-type]
    reason = threshold_reason(nominal, bound, MOST)
    if reason is not None and not _leaned_on_the_floor(report, bound):
        # exact agreement on the rows that sit on a threshold: nothing was excused, so the check
        # held there at full strength (an exact encoder, a forest whose graph decides as it does)
        reason = None
    if reason is not None and not s.compare.accept_vacuous:
        report.vacuous = report.vacuous or reason
        return
    for name, (on, total, unit) in bound.items():
        report.findings.append(Finding(
            "warning", "noise-floor",
            f"output {name!r}: {on} of {total} {unit} sit on a threshold (a split, a repeated quantile: their own inputs moved by one float32 ulp "
            f"make the original jump); there an error smaller than the jump goes unseen; the others get no allowance "
            f"beyond rtol and the dtype epsilon" + ("; accepted with --accept-vacuous" if reason else "")
            + ("" if _leaned_on_the_floor(report, {name: None}) else "; no value needed that allowance on this run"),
        ))


def _check_ties(report: Report, nominal: dict[str, np.ndarray], ties: dict[str, dict[str, Any]], s: Settings) -> None:
    """Values excused as ties of the original are said; a pass that rests on them alone is vacuous."""
    from onnxgate.judge.degenerate import degenerate_reason
    from onnxgate.judge.report import Finding
    from onnxgate.judge.ties import NEIGHBOR_TIE, only_ties_reason, tie_message, tie_summary

    causes = {name: t.cause for case in ties.values() for name, t in case.items()}
    for name, (count, case) in tie_summary(report.cases).items():
        report.findings.append(Finding("info", "tie", tie_message(name, count, case, causes.get(name, NEIGHBOR_TIE))))
    capped: dict[str, int] = {}
    for case_ties in ties.values():
        for name, t in case_ties.items():
            capped[name] = max(capped.get(name, 0), t.capped)
    capped = {name: n for name, n in capped.items() if n}
    report.findings += [Finding("warning", "tie", f"output {name!r}: {n} row(s) sit on a tie with too many tie-breaks to "
                                "enumerate; they are held to the original's own answer") for name, n in capped.items()]
    informative = {n for n, v in nominal.items() if degenerate_reason({n: v}) is None}
    reason = only_ties_reason(report.cases, informative)
    if reason is not None and not s.compare.accept_vacuous:
        report.vacuous = report.vacuous or reason
    elif reason is not None:
        report.findings.append(Finding("warning", "vacuous", f"{reason}; accepted with --accept-vacuous"))


def _best_references(references: dict[str, dict[str, np.ndarray]], case: str,
                     wide: dict[str, np.ndarray] | None) -> dict[str, dict[str, np.ndarray]]:
    """The nominal case compared with the original's float64 outputs where there are any (float outputs only)."""
    if not wide:
        return references
    narrow = references[case]
    best = {n: wide[n] if n in wide and np.asarray(v).dtype.kind == "f" and np.shape(wide[n]) == np.shape(v) else v
            for n, v in narrow.items()}
    return dict(references, **{case: best})


def _check_degenerate(report: Report, feeds: dict[str, np.ndarray], nominal: dict[str, np.ndarray], s: Settings) -> None:
    """A reference that cannot tell a right conversion from a wrong one makes the check vacuous."""
    from onnxgate.judge.degenerate import degenerate_reason, nan_sample_error
    from onnxgate.judge.report import Finding

    nan_sample_error(feeds, nominal)
    reason = degenerate_reason(nominal)
    if reason is None:
        return
    if s.compare.accept_vacuous:
        report.findings.append(Finding("warning", "vacuous", f"{reason}; accepted with --accept-vacuous"))
    else:
        report.vacuous = reason


def _cases(feeds: dict[str, np.ndarray], target: OnnxTarget, s: Settings) -> tuple[list[tuple[str, dict[str, np.ndarray]]], dict[str, Any]]:
    """The sample at its batch, batch 1 and an odd batch; each dynamic axis resized; edge values."""
    cases = batch_cases(feeds)[: 1 if s.convert.static else None]
    more, axes = depth.extra_cases(feeds, target.info["inputs"], edge=s.depth.edge, ranges=s.inputs.range_map())
    return cases + more, axes


def _reference_outputs(reference: ReferenceRunner, cases: list[tuple[str, dict[str, np.ndarray]]], output_names: list[str],
                       progress: Any) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, str], dict[str, dict[str, Any]]]:
    """The original's outputs per case, and its tie-breaks where an answer is not unique (judge/ties.py);
    a swept case the original itself rejects is recorded, not fatal."""
    references: dict[str, dict[str, np.ndarray]] = {}
    errors: dict[str, str] = {}
    ties: dict[str, dict[str, Any]] = {}
    for i, (case_name, feeds) in enumerate(cases):
        with progress.step(f"running {reference.converter} reference at {case_name}"):
            try:
                references[case_name] = reference.infer(feeds, output_names)
            except SampleError as exc:
                if i == 0:
                    raise
                errors[case_name] = exc.message
                continue
            ties[case_name] = reference.ties(feeds, output_names)
    return references, errors, ties


def _run_providers(report: Report, target: OnnxTarget, cases: list[tuple[str, dict[str, np.ndarray]]],
                   references: dict[str, dict[str, np.ndarray]], reference_errors: dict[str, str], axes: dict[str, Any],
                   provider_names: list[str], run_settings: Any, policy: TolerancePolicy, sessions: "SessionCache",
                   reference: ReferenceRunner, progress: Any, ties: dict[str, dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """Every case on every (provider, optimisation level) through the one loop (judge/run_cases.py)."""
    from onnxgate.judge.degenerate import declared_mismatches
    from onnxgate.judge.report import Finding
    from onnxgate.judge.run_cases import run_cases

    signature: dict[str, None] = {}  # declared-vs-actual problems, once each

    def explain(name: str, feeds: dict[str, np.ndarray], exc: RunError) -> str:
        if name in axes and exc.kind == "run":
            return axes[name].describe_failure(str(exc))
        return batch_error(exc, target.info["inputs"], feeds, reference.feeds, reference_errors.get(name))

    def check(case: Case, feeds: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> None:
        signature.update(dict.fromkeys(declared_mismatches(target.info["outputs"], got)))
        frozen_output_problems(case.outputs, feeds, reference.feeds)

    placements: dict[tuple[str, str], Any] = {}  # (provider, optimization) -> session, for its placement
    for provider, optimization in run_settings.runs(provider_names):
        runner = sessions.runner(provider, optimization, run_settings.session_kwargs(provider))
        report.cases += run_cases(
            runner, cases, references, policy=policy, output_names=target.output_names,
            reference_errors=reference_errors, explain=explain, check=check, progress=progress, ties=ties,
        )
        if runner.loaded is not None:
            placements[(provider, optimization)] = runner.loaded
    report.findings += [Finding("error", "signature", f"{p}: a consumer reading the declared signature would be misled")
                        for p in signature]
    notes = dict.fromkeys(f"output {o.name!r}: {o.shape_note}" for c in report.cases for o in c.outputs if o.shape_note)
    report.findings += [Finding("warning", "signature", n) for n in notes]
    report.findings += _flip_findings(report)
    return placements


def _bfloat16_hint(report: Report, proto: Any) -> None:
    """A bfloat16 graph ONNX Runtime cannot load: say why and what to do, once."""
    from onnx import TensorProto

    from onnxgate.judge.report import Finding

    if not any(c.error and "NOT_IMPLEMENTED" in c.error for c in report.cases):
        return
    typed = list(proto.graph.input) + list(proto.graph.output) + list(proto.graph.value_info)
    if any(v.type.tensor_type.elem_type == TensorProto.BFLOAT16 for v in typed) or any(
        i.data_type == TensorProto.BFLOAT16 for i in proto.graph.initializer
    ):
        report.findings.append(Finding(
            "warning", "bfloat16",
            "the model computes in bfloat16, which ONNX Runtime's CPU provider does not implement for most ops; "
            "for a torch model, --upcast-bf16 exports a float32 copy and checks it against the bfloat16 original",
        ))


def _speed(report: Report, reference: ReferenceRunner, data: bytes, cases: Any, references: Any,
           output_names: list[str], policy: TolerancePolicy, s: Settings, progress: Any,
           ties: dict[str, dict[str, Any]] | None = None) -> None:
    """--benchmark/--optimize: only for a model that ran; a model that errored has nothing to time."""
    from onnxgate.judge.report import Finding
    from onnxgate.pipelines.optimize import speed_and_variants

    if report.status == "error":
        report.findings.append(Finding("warning", "speed", "not measured: the model did not run on every case"))
        return
    report.speed, report.variants = speed_and_variants(
        reference, data, cases, references, output_names,
        policy=policy, threads=s.speed.threads, optimize=s.speed.optimize, budget_s=s.speed.benchmark_seconds, progress=progress,
        isolation=s.runtime.isolation(), ties=ties,
    )


class SessionCache:
    """ORT sessions of one model, by (provider, level, options), opened in workers; a failed load is remembered.

    By default a session lives in a worker process (runtime/isolation.py), so a crash or
    hang fails this model with a RunError instead of killing onnxgate; the model is opened
    by path when it came from a file, so external data resolves next to it.
    """

    def __init__(self, target: OnnxTarget, isolation: Any):
        self.target, self.isolation = target, isolation
        self._sessions: dict[tuple[str, str, str], Any] = {}

    def runner(self, provider: str, optimization: str, kwargs: dict[str, Any]) -> "_CachedRunner":
        """A runner (``infer``) over the cached session: the loop's view of it."""
        return _CachedRunner(self, provider, optimization, kwargs)

    def get(self, provider: str, optimization: str = "all", kwargs: dict[str, Any] | None = None) -> Any:
        from onnxgate.runtime import isolation as iso

        kwargs = kwargs or {}
        key = (provider, optimization, repr(sorted(kwargs.items())))
        if key not in self._sessions:
            label = repr(self.target.path) if self.target.path else f"the converted model (sha256 {self.target.info['sha256'][:12]})"
            try:
                self._sessions[key] = iso.create_session(
                    self.target.session_model(), provider=provider, policy=self.isolation, label=label,
                    optimization=optimization, **kwargs,
                )
            except RunError as exc:
                self._sessions[key] = exc
        found = self._sessions[key]
        if isinstance(found, RunError):
            raise found
        return found


class _CachedRunner:
    """One (provider, level) of a :class:`SessionCache` as a runner: loads on first ``infer``."""

    def __init__(self, cache: SessionCache, provider: str, optimization: str, kwargs: dict[str, Any]):
        self.cache, self.provider, self.optimization, self.kwargs = cache, provider, optimization, kwargs
        self.loaded: Any = None

    @property
    def providers_used(self) -> list[str]:
        return self.loaded.providers_used if self.loaded is not None else []

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.cache.get(self.provider, self.optimization, self.kwargs)
        self.loaded = session
        return session.run(feeds)


def _check_resources(proto: Any, model_path: str | None) -> None:
    """Declared shapes that cannot fit in memory, external data outside the model's directory: refused."""
    from onnxgate.checks import limits

    what = f"ONNX file {model_path!r}" if model_path else "the ONNX model"
    limits.check_declared_shapes(proto, what)
    limits.check_external_data(proto, Path(model_path).parent if model_path else None, what)


def _check_names(target: OnnxTarget, s: Settings) -> None:
    """``--tol``, ``--dim`` and ``--input-range`` must name an output, a dim or an input of this model."""
    from onnxgate.settings import SettingsError

    outputs, inputs = target.output_names, target.input_names
    dims = {"batch"} | {f"{i['name']}:{a}" for i in target.info["inputs"] for a in range(len(i["shape"] or []))}
    dims |= {d for i in target.info["inputs"] for d in (i["shape"] or []) if isinstance(d, str)}
    checks = [
        ("--tol", s.compare.policy().per_output, outputs, "outputs"),
        ("--dim", s.inputs.dim_map(), sorted(dims), "dims"),
        ("--input-range", s.inputs.range_map(), inputs, "inputs"),
    ]
    for flag, given, known, what in checks:
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise SettingsError(
                f"{flag} {unknown[0]}=...: the model has no such {what[:-1]}",
                f"the model's {what} are {', '.join(map(str, known))}",
            )


def _check_inputs_fit(info: dict[str, Any], feeds: dict[str, np.ndarray]) -> None:
    expected = [i["name"] for i in info["inputs"]]
    if sorted(expected) != sorted(feeds):
        raise SampleError(
            f"the ONNX model's inputs are {expected}; the sample maps to {list(feeds)}",
            "pass the ONNX file converted from this source, or a sample with matching inputs",
        )


def _feed_columns_as_declared(info: dict[str, Any], reference: ReferenceRunner) -> None:
    """A 1-D feed (documents, labels) for an input the ONNX file declares [N, 1] (skl2onnx's documented text
    input) is fed as that column, to ONNX Runtime and the original alike."""
    from onnxgate.runtime.framework import send_feeds

    columns = {i["name"] for i in info["inputs"] if len(i["shape"] or []) == 2 and i["shape"][1] == 1}
    feeds = reference.feeds
    if any(feeds[n].ndim == 1 for n in columns if n in feeds):
        send_feeds(reference, {n: v.reshape(-1, 1) if n in columns and v.ndim == 1 else v for n, v in feeds.items()})


def run(source: Any, settings: Settings | None = None, *, output: str | Path | None = None,
        report_paths: dict[str, str | Path | None] | None = None, publish_best: bool = False,
        progress: Any = None, **options: Any) -> tuple[Report, ConvertResult]:
    """Convert, validate, write reports. The ONNX file is written only when it passed.

    ``settings``/``options`` as for :func:`validate`. ``publish_best`` (implies
    ``optimize``) writes the fastest variant that passed parity with the original
    (pipelines.optimize.best_variant) instead of the converted model. Every output path and
    option is checked before the conversion starts (settings check their values when they
    are built), so bad input costs nothing and leaves nothing behind.
    """
    from onnxgate.inputs.evidence import check_evidence_dir

    s = resolve_settings(settings, options)
    if publish_best:
        s = s.replace(optimize=True)
    paths = {k: check_output_path(v, f"{k} report") for k, v in (report_paths or {}).items()}
    out = check_output_path(output, "ONNX model")
    check_evidence_dir(s.depth.save_evidence)
    if s.depth.evidence is not None:
        raise SampleError("--evidence is for 'onnxgate validate MODEL.onnx --evidence DIR'", "drop --evidence from run")
    conv = convert(source, None, s, progress=progress)
    try:
        report = validate(source, conv.model, s, progress=progress, conversion=conv)
    finally:
        conv.reference.close()
    chosen = _best_bytes(report, conv) if publish_best else conv.model.SerializeToString()
    if out is not None:
        report.model.path = str(out)
        if report.passed:
            write_atomic(out, chosen)
    write_reports(report, paths)
    return report, conv


def _best_bytes(report: Report, conv: ConvertResult) -> bytes:
    """The best variant's model (recorded in the report), or the converted one if none passed."""
    import hashlib

    from onnxgate.pipelines.optimize import best_variant

    best = best_variant(report.variants, batch=report.variants.select_batch) if report.variants else None
    data = best.data if best is not None and best.data is not None else conv.model.SerializeToString()
    report.model.published_variant = {
        "name": best.name if best is not None else "converted",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    return data


def write_reports(report: Report, paths: dict[str, Path | None]) -> None:
    render = {"json": report.to_json, "markdown": report.to_markdown, "junit": report.to_junit, "html": lambda: _html(report)}
    for kind, path in paths.items():
        if path is not None:
            write_atomic(path, render[kind]())


def _html(report: Report) -> str:
    from onnxgate.judge.html import render_report

    return render_report(report)


def inspect(path: str | Path) -> dict[str, Any]:
    proto, data = load_onnx(path)
    return describe(proto, data, str(path))

