"""convert -> validate -> report, for any registered converter.

The public functions take keyword-only options whose ``None`` defaults are resolved
here, in one place (STYLE 8).
"""

from __future__ import annotations

import importlib
import platform
import re
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._io import check_output_path, write_atomic
from onnxgate._progress import NullProgress
from onnxgate.converters.base import Conversion, registry
from onnxgate.trust import Trust
from onnxgate.errors import NeedsSampleError, OnnxgateError, SampleError, SourceError
from onnxgate.pipelines import depth
from onnxgate.judge.batch_axes import batch_error, frozen_output_problems
from onnxgate.judge.compare import compare_outputs
from onnxgate.checks.model_file import describe, load_onnx
from onnxgate.runtime.providers import canonical_provider, list_providers
from onnxgate.judge.report import Case, Report
from onnxgate.runtime.runner import RunError
from onnxgate.inputs.samples import Sample, inputs_hash, load_sample, take_rows
from onnxgate.judge.tolerances import TolerancePolicy

_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass
class Loaded:
    """A source loaded by its converter, with the shared inputs mapped onto ONNX input names."""

    source: Any
    converter: Any
    model: Any
    sample: Sample | None
    feeds: dict[str, np.ndarray]
    trust: Trust
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConvertResult:
    loaded: Loaded
    conversion: Conversion
    output: Path | None
    seconds: float

    @property
    def model(self) -> Any:
        return self.conversion.model


def source_label(source: Any) -> str:
    return str(source) if isinstance(source, (str, Path)) else f"<{type(source).__name__} object>"


def load_source(
    source: Any,
    *,
    sample: str | Path | Sample | None = None,
    framework: str | None = None,
    trust: Trust | None = None,
    options: dict[str, Any] | None = None,
    specs: list[Any] | None = None,
) -> Loaded:
    """Pick the converter, load the model safely, load the sample and map it to ONNX inputs.

    Without a sample the converter's ``synthesize`` builds the inputs, else ``specs``
    (inputs.synthesize.InputSpec, e.g. from the ONNX file); the seed is recorded in
    ``options["seed"]``.
    """
    trust = trust or Trust()
    options = dict(options or {})
    obj = source
    if isinstance(source, str) and _FACTORY.match(source) and not Path(source).exists():
        obj = _call_factory(source, trust)
    elif isinstance(source, (str, Path)) and not Path(source).exists():
        raise SourceError(f"source {str(source)!r} does not exist", "check the path")
    converter = registry().select(obj, framework)
    model = converter.load(obj, trust=trust, options=options)
    smp = sample if isinstance(sample, Sample) or sample is None else load_sample(sample)
    if smp is None:
        from onnxgate.inputs.synthesize import DEFAULT_SEED, synthesize_from_options

        options["seed_given"] = options.get("seed") is not None  # a converter may prefer stored examples otherwise
        options["seed"] = DEFAULT_SEED if options.get("seed") is None else int(options["seed"])
        try:
            feeds = converter.synthesize(model, options=options)
        except NeedsSampleError:
            if specs is None:
                raise
            feeds = synthesize_from_options(specs, options)  # validate(): the ONNX file knows the signature
    else:
        feeds = converter.feeds(model, smp, options=options)
    return Loaded(source, converter, model, smp, feeds, trust, options)


def _call_factory(ref: str, trust: Trust) -> Any:
    from onnxgate.trust import require_factory

    require_factory(trust, ref)
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"cannot import {ref!r}: {exc}", "check the module path and PYTHONPATH") from None
    if not callable(fn):
        return fn
    try:
        return fn()
    except OnnxgateError:
        raise
    except Exception as exc:  # the user's factory failed: their bug, reported in one line
        text = " ".join(str(exc).split())[:300]
        raise SourceError(f"factory {ref!r} raised {type(exc).__name__}: {text}", "fix the factory (run it in Python to see the traceback, or pass --debug)") from exc


def convert(
    source: Any,
    output: str | Path | None = None,
    *,
    sample: str | Path | Sample | None = None,
    opset: int | None = None,
    framework: str | None = None,
    trust: Trust | None = None,
    options: dict[str, Any] | None = None,
    progress: Any = None,
    loaded: Loaded | None = None,
) -> ConvertResult:
    """Convert ``source`` to ONNX; write ``output`` atomically when given."""
    progress = progress or NullProgress()
    out = check_output_path(output, "ONNX model")
    with progress.step(f"loading {source_label(source)}"):
        loaded = loaded or load_source(source, sample=sample, framework=framework, trust=trust, options=options)
    start = time.perf_counter()
    with progress.step(f"converting with {loaded.converter.name}"):
        conversion = loaded.converter.convert(loaded.model, loaded.feeds, opset=opset, options=loaded.options)
    seconds = time.perf_counter() - start
    if out is not None:
        write_atomic(out, conversion.model.SerializeToString())
    return ConvertResult(loaded, conversion, out, seconds)


def _versions(converter: Any) -> dict[str, str]:
    out = {"python": platform.python_version(), "onnxgate": _version("onnxgate")}
    for pkg in ("onnx", "onnxruntime", "numpy"):
        out[pkg] = _version(pkg)
    if converter is not None:
        try:
            out.update(converter.versions())
        except OnnxgateError:
            pass
    return out


def _version(pkg: str) -> str:
    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return "not installed"


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


def validate(
    source: Any,
    onnx_model: str | Path | Any,
    *,
    sample: str | Path | Sample | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    tolerances: TolerancePolicy | None = None,
    providers: str | list[str] | None = None,
    framework: str | None = None,
    trust: Trust | None = None,
    options: dict[str, Any] | None = None,
    progress: Any = None,
    loaded: Loaded | None = None,
    conversion: ConvertResult | None = None,
    benchmark: bool | None = None,
    threads: int | None = None,
    optimize: bool | None = None,
    benchmark_seconds: float | None = None,
    isolation: Any = None,
    tol: Any = None,
    error_stat: str | None = None,
    topk: int | None = None,
    edge: bool | None = None,
    save_evidence: str | Path | None = None,
    evidence: str | Path | None = None,
    localize: bool | None = None,
    provider_options: Any = None,
    ep_plugins: Any = None,
    require_full_placement: bool | None = None,
    target_ort: str | None = None,
    mobile_check: bool | None = None,
    optimizations: Any = None,
) -> Report:
    """Run the original and the ONNX model on the same inputs; compare every output.

    Every case runs on each provider at ``optimizations`` (default ORT_DISABLE_ALL and
    ORT_ENABLE_ALL); ``provider_options`` (``["OpenVINO:precision=FP32"]`` or a dict),
    ``ep_plugins`` (``["NAME=LIBRARY_PATH"]``), ``require_full_placement``, ``target_ort``
    and ``mobile_check`` are described in diagnose/provider_checks.py and static.py.

    ``tol`` (per-output ``NAME=ATOL:RTOL``), ``error_stat`` and ``topk`` shape the
    tolerance policy; ``edge`` adds the zeros / large-magnitude cases; ``save_evidence``
    writes ``test_data_set_N/`` with the original's outputs; ``evidence`` (with
    ``source=None``) re-verifies against stored outputs with ONNX Runtime alone;
    ``localize`` names the first divergent ONNX node when parity fails.

    ``benchmark`` adds the speed report (original vs ONNX Runtime, ``threads`` each);
    ``optimize`` also builds, validates and times the optimised variants (implies benchmark).
    """
    progress = progress or NullProgress()
    started = time.perf_counter()
    policy = tolerances or TolerancePolicy.from_options(
        atol=atol, rtol=rtol, per_output=tol, error_stat=error_stat, topk=topk
    )
    from onnxgate.diagnose import provider_checks

    run_settings = provider_checks.RunSettings.resolve(provider_options, ep_plugins, optimizations, require_full_placement)
    provider_names = resolve_providers(providers, ep_plugins=run_settings.ep_plugins)
    from onnxgate.inputs.evidence import check_evidence_dir

    evidence_dir = check_evidence_dir(save_evidence)
    if evidence is not None:
        if source is not None:
            raise SampleError(
                "--evidence replaces SOURCE: the stored outputs are the original's answers",
                "run 'onnxgate validate MODEL.onnx --evidence DIR', or drop --evidence to compare with SOURCE",
            )
        if benchmark or optimize:
            raise SampleError(
                "--benchmark/--optimize need SOURCE: with --evidence there is no original model to time",
                "run 'onnxgate validate SOURCE MODEL.onnx --benchmark'",
            )
        from onnxgate.pipelines.replay import validate_evidence

        report = validate_evidence(
            onnx_model, evidence, policy=policy, provider_names=provider_names,
            localize=bool(localize), progress=progress, versions=_versions(None),
        )
        return report
    if isinstance(onnx_model, (str, Path)):
        proto, data = load_onnx(onnx_model)
        model_path: str | None = str(onnx_model)
    else:
        proto, data, model_path = onnx_model, onnx_model.SerializeToString(), None
    _check_resources(proto, model_path)
    if loaded is None:
        with progress.step(f"loading {source_label(source)}"):
            from onnxgate.inputs.synthesize import specs_from_onnx

            loaded = load_source(
                source, sample=sample, framework=framework, trust=trust, options=options,
                specs=specs_from_onnx(proto) if sample is None else None,
            )
    info = describe(proto, data, model_path)
    _check_inputs_fit(info, loaded.feeds)
    report = Report(
        source=source_label(source),
        framework=loaded.converter.name,
        model={k: info[k] for k in ("path", "sha256", "bytes", "opset", "ir_version", "producer", "opset_imports")},
        inputs={
            "sample": loaded.sample.path if loaded.sample else None,
            "kind": loaded.sample.kind if loaded.sample else "synthesised",
            "hash": inputs_hash(loaded.feeds),
            "seed": loaded.options.get("seed"),
            "synthesis": None if loaded.sample else {
                "dims": loaded.options.get("dims") or {}, "ranges": loaded.options.get("input_ranges") or {},
            },
            "shapes": {k: list(v.shape) for k, v in loaded.feeds.items()},
            "dtypes": {k: str(v.dtype) for k, v in loaded.feeds.items()},
        },
        tolerances=policy.as_dict(),
        versions=_versions(loaded.converter),
        trust=loaded.trust.as_dict(),
    )
    if conversion is not None:
        report.conversion = {
            "converter": conversion.conversion.converter,
            "notes": conversion.conversion.notes,
            "seconds": round(conversion.seconds, 3),
        }
    report.findings = provider_checks.static_findings(proto, target_ort=target_ort, mobile=bool(mobile_check))
    output_names = [o["name"] for o in info["outputs"]]
    references: dict[str, dict[str, np.ndarray]] = {}
    reference_errors: dict[str, str] = {}  # the original itself fails at a swept batch size
    cases = batch_cases(loaded.feeds)[: 1 if loaded.options.get("static") else None]
    more, axes = depth.extra_cases(loaded.feeds, info["inputs"], edge=bool(edge), ranges=loaded.options.get("input_ranges"))
    cases += more
    for i, (case_name, feeds) in enumerate(cases):
        with progress.step(f"running {loaded.converter.name} reference at {case_name}"):
            try:
                references[case_name] = _reference(loaded, feeds, output_names)
            except SampleError as exc:
                if i == 0:
                    raise
                reference_errors[case_name] = exc.message
    # Not serialised: publish() stores these (inputs, the original's outputs) as test_data_set_0.
    report.reference_data = (cases[0][1], references[cases[0][0]])
    if evidence_dir is not None:
        with progress.step(f"writing evidence to {evidence_dir}"):
            report.inputs["evidence"] = depth.save_evidence(
                evidence_dir, cases, references, [i["name"] for i in info["inputs"]], output_names
            )
    placements: dict[tuple[str, str], Any] = {}  # (provider, optimization) -> session, for its placement
    for provider, optimization in run_settings.runs(provider_names):
        for case_name, feeds in cases:
            case = Case(case_name, provider, optimization, {k: list(v.shape) for k, v in feeds.items()})
            report.cases.append(case)
            try:
                with progress.step(f"running ONNX Runtime ({provider}, {optimization}) at {case_name}"):
                    session = _session(data, provider, isolation, model_path, optimization, run_settings.session_kwargs(provider))
                    got = session.run(feeds)
                case.providers_used = session.providers_used
                placements.setdefault((provider, optimization), session)
            except RunError as exc:
                if case_name in axes:
                    case.error = axes[case_name].describe_failure(str(exc))
                else:
                    case.error = batch_error(str(exc), info["inputs"], feeds, loaded.feeds, reference_errors.get(case_name))
                continue
            if case_name in reference_errors:
                case.error = reference_errors[case_name]
                continue
            case.outputs = compare_outputs(references[case_name], got, policy=policy, output_names=output_names)
            frozen_output_problems(case.outputs, feeds, loaded.feeds)
    depth.axis_findings(report, axes)
    _bfloat16_hint(report, proto)
    provider_checks.finish(
        report, provider_names, run_settings, placements,
        rerun=lambda provider, optimization, kwargs, name: compare_outputs(
            references[name], _session(data, provider, isolation, model_path, optimization, kwargs).run(dict(cases)[name]),
            policy=policy, output_names=output_names,
        ),
    )
    if localize and report.status == "failed":
        depth.localize_failure(report, proto, cases, policy=policy, loaded=loaded, fresh=conversion is not None, progress=progress)
    if benchmark or optimize:
        _speed(report, loaded, data, cases, references, output_names, policy, threads, bool(optimize), benchmark_seconds, progress)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


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


def _speed(report: Report, loaded: Loaded, data: bytes, cases: Any, references: Any, output_names: list[str],
           policy: TolerancePolicy, threads: int | None, optimize: bool, budget_s: float | None, progress: Any) -> None:
    """--benchmark/--optimize: only for a model that ran; a model that errored has nothing to time."""
    from onnxgate.pipelines.optimize import speed_and_variants
    from onnxgate.judge.report import Finding

    if report.status == "error":
        report.findings.append(Finding("warning", "speed", "not measured: the model did not run on every case"))
        return
    report.speed, report.variants = speed_and_variants(
        loaded, data, cases, references, output_names,
        policy=policy, threads=threads, optimize=optimize, budget_s=budget_s, progress=progress,
    )


_sessions: dict[tuple[str, str, Any], Any] = {}


def _session(data: bytes, provider: str, isolation: Any = None, model_path: str | None = None,
             optimization: str = "all", kwargs: dict[str, Any] | None = None) -> Any:
    """Sessions are reused across batch sizes of one model (keyed by content hash).

    By default the session lives in a worker process (runtime/isolation.py), so a
    crash or hang fails this model with a RunError instead of killing onnxgate; a
    load that failed is remembered, so the next batch size does not crash it again.
    """
    import hashlib

    from onnxgate.runtime import isolation as iso

    policy = isolation or iso.IsolationPolicy()
    kwargs = kwargs or {}
    key = (hashlib.sha256(data).hexdigest(), provider, policy, optimization, repr(sorted(kwargs.items())))
    if key not in _sessions:
        if len(_sessions) > 8:
            _sessions.clear()
        label = repr(model_path) if model_path else f"the converted model (sha256 {key[0][:12]})"
        try:
            _sessions[key] = iso.create_session(
                data, provider=provider, policy=policy, label=label, optimization=optimization, **kwargs
            )
        except RunError as exc:
            _sessions[key] = exc
    found = _sessions[key]
    if isinstance(found, RunError):
        raise found
    return found


def _check_resources(proto: Any, model_path: str | None) -> None:
    """Declared shapes that cannot fit in memory, external data outside the model's directory: refused."""
    from onnxgate.checks import limits

    what = f"ONNX file {model_path!r}" if model_path else "the ONNX model"
    limits.check_declared_shapes(proto, what)
    limits.check_external_data(proto, Path(model_path).parent if model_path else None, what)


def _check_inputs_fit(info: dict[str, Any], feeds: dict[str, np.ndarray]) -> None:
    expected = [i["name"] for i in info["inputs"]]
    if sorted(expected) != sorted(feeds):
        raise SampleError(
            f"the ONNX model's inputs are {expected}; the sample maps to {list(feeds)}",
            "pass the ONNX file converted from this source, or a sample with matching inputs",
        )


def _reference(loaded: Loaded, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
    try:
        return loaded.converter.reference(loaded.model, feeds, output_names)
    except OnnxgateError:
        raise
    except Exception as exc:
        text = " ".join(str(exc).split())[:300]
        raise SampleError(
            f"the original {loaded.converter.name} model failed on the sample: {type(exc).__name__}: {text}",
            "pass a sample the model accepts (same columns, categories and dtypes it was fitted on)",
        ) from exc


def run(
    source: Any,
    *,
    output: str | Path | None = None,
    sample: str | Path | Sample | None = None,
    opset: int | None = None,
    framework: str | None = None,
    trust: Trust | None = None,
    options: dict[str, Any] | None = None,
    report_paths: dict[str, str | Path | None] | None = None,
    publish_best: bool | None = None,
    progress: Any = None,
    **validation: Any,
) -> tuple[Report, ConvertResult]:
    """Convert, validate, write reports. The ONNX file is written only when it passed.

    ``validation`` takes the keyword options of :func:`validate` (tolerances, providers,
    evidence, benchmark, ...). ``publish_best`` (implies ``optimize``) writes the fastest
    variant that passed parity with the original (pipelines.optimize.best_variant)
    instead of the converted model. Every output path and option is checked before the
    conversion starts, so bad input costs nothing and leaves nothing behind.
    """
    paths = {k: check_output_path(v, f"{k} report") for k, v in (report_paths or {}).items()}
    out = check_output_path(output, "ONNX model")
    from onnxgate.diagnose import provider_checks
    from onnxgate.checks import static
    from onnxgate.inputs.evidence import check_evidence_dir

    check_evidence_dir(validation.get("save_evidence"))
    provider_checks.RunSettings.resolve(
        validation.get("provider_options"), validation.get("ep_plugins"),
        validation.get("optimizations"), validation.get("require_full_placement"),
    )
    if validation.get("target_ort"):
        static.parse_target_ort(validation["target_ort"])
    if validation.get("tolerances") is None:
        validation["tolerances"] = TolerancePolicy.from_options(
            atol=validation.get("atol"), rtol=validation.get("rtol"), per_output=validation.get("tol"),
            error_stat=validation.get("error_stat"), topk=validation.get("topk"),
        )
    validation["optimize"] = validation.get("optimize") or publish_best
    conv = convert(source, None, sample=sample, opset=opset, framework=framework, trust=trust, options=options, progress=progress)
    report = validate(source, conv.model, progress=progress, loaded=conv.loaded, conversion=conv, **validation)
    chosen = _best_bytes(report, conv) if publish_best else conv.model.SerializeToString()
    if out is not None:
        report.model["path"] = str(out)
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
    report.model["published_variant"] = {
        "name": best.name if best is not None else "converted",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    return data


def write_reports(report: Report, paths: dict[str, Path | None]) -> None:
    render = {"json": report.to_json, "markdown": report.to_markdown, "junit": report.to_junit}
    for kind, path in paths.items():
        if path is not None:
            write_atomic(path, render[kind]())


def inspect(path: str | Path) -> dict[str, Any]:
    proto, data = load_onnx(path)
    return describe(proto, data, str(path))

