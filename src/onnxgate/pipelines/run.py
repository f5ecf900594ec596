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
from onnxgate.converters.base import Conversion, Trust, registry
from onnxgate.errors import OnnxgateError, SampleError, SourceError, UntrustedSourceError
from onnxgate.validation.compare import compare_outputs
from onnxgate.validation.model_file import describe, load_onnx, static_checks
from onnxgate.validation.providers import canonical_provider, list_providers
from onnxgate.validation.report import Case, Report
from onnxgate.validation.runner import RunError, create_session
from onnxgate.validation.samples import Sample, inputs_hash, load_sample, take_rows
from onnxgate.validation.tolerances import TolerancePolicy

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
) -> Loaded:
    """Pick the converter, load the model safely, load the sample and map it to ONNX inputs."""
    trust = trust or Trust()
    options = dict(options or {})
    obj = source
    if isinstance(source, str) and _FACTORY.match(source) and not Path(source).exists():
        obj = _call_factory(source, trust)
    elif isinstance(source, (str, Path)) and not Path(source).exists():
        raise SourceError(f"source {str(source)!r} does not exist", "check the path")
    converter = registry().select(obj, framework)
    model = converter.load(obj, trust=trust)
    smp = sample if isinstance(sample, Sample) or sample is None else load_sample(sample)
    if smp is None:
        synth = getattr(converter, "synthesize", None)
        if synth is None:
            raise SampleError(
                f"the {converter.name} converter needs a sample to know the input shape and dtypes",
                "pass --sample FILE (.npy, .npz, .csv or a test_data_set_N/ directory)",
            )
        feeds = synth(model, options=options)
    else:
        feeds = converter.feeds(model, smp, options=options)
    return Loaded(source, converter, model, smp, feeds, trust, options)


def _call_factory(ref: str, trust: Trust) -> Any:
    if not trust.code:
        raise UntrustedSourceError(
            f"refusing to import {ref!r}: a module:callable source runs its code",
            "pass --trust-code if you trust this module",
        )
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
        fn = module
        for part in attr.split("."):
            fn = getattr(fn, part)
    except (ImportError, AttributeError) as exc:
        raise SourceError(f"cannot import {ref!r}: {exc}", "check the module path and PYTHONPATH") from None
    return fn() if callable(fn) else fn


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


def resolve_providers(providers: str | list[str] | None) -> list[str]:
    if providers is None:
        return ["CPUExecutionProvider"]
    names = providers.split(",") if isinstance(providers, str) else list(providers)
    names = [n.strip() for n in names if n.strip()]
    infos = {p.name: p for p in list_providers()}
    if names == ["all"]:
        return [n for n, p in infos.items() if p.available and n != "AzureExecutionProvider"]
    resolved = [canonical_provider(n) for n in names]
    unknown = [n for n in resolved if n not in infos]
    if unknown:
        raise OnnxgateError(
            f"unknown execution provider(s) {unknown}; this ONNX Runtime has {sorted(infos)}",
            "run 'onnxgate providers' to see what is available",
        )
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
) -> Report:
    """Run the original and the ONNX model on the same inputs; compare every output."""
    progress = progress or NullProgress()
    started = time.perf_counter()
    policy = tolerances or TolerancePolicy(atol=atol, rtol=rtol)
    provider_names = resolve_providers(providers)
    if isinstance(onnx_model, (str, Path)):
        proto, data = load_onnx(onnx_model)
        model_path: str | None = str(onnx_model)
    else:
        proto, data, model_path = onnx_model, onnx_model.SerializeToString(), None
    if loaded is None:
        with progress.step(f"loading {source_label(source)}"):
            loaded = load_source(source, sample=sample, framework=framework, trust=trust, options=options)
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
    report.findings = static_checks(proto)
    output_names = [o["name"] for o in info["outputs"]]
    references: dict[str, dict[str, np.ndarray]] = {}
    for case_name, feeds in batch_cases(loaded.feeds):
        with progress.step(f"running {loaded.converter.name} reference at {case_name}"):
            references[case_name] = _reference(loaded, feeds, output_names)
    for provider in provider_names:
        for case_name, feeds in batch_cases(loaded.feeds):
            case = Case(case_name, provider, "all", {k: list(v.shape) for k, v in feeds.items()})
            report.cases.append(case)
            try:
                with progress.step(f"running ONNX Runtime ({provider}) at {case_name}"):
                    session = _session(data, provider)
                    got = session.run(feeds)
                case.providers_used = session.providers_used
            except RunError as exc:
                case.error = str(exc)
                continue
            case.outputs = compare_outputs(references[case_name], got, policy=policy, output_names=output_names)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


_sessions: dict[tuple[str, str], Any] = {}


def _session(data: bytes, provider: str) -> Any:
    """Sessions are reused across batch sizes of one model (keyed by content hash)."""
    import hashlib

    key = (hashlib.sha256(data).hexdigest(), provider)
    if key not in _sessions:
        if len(_sessions) > 8:
            _sessions.clear()
        _sessions[key] = create_session(data, provider=provider)
    return _sessions[key]


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
    atol: float | None = None,
    rtol: float | None = None,
    tolerances: TolerancePolicy | None = None,
    providers: str | list[str] | None = None,
    framework: str | None = None,
    trust: Trust | None = None,
    options: dict[str, Any] | None = None,
    report_paths: dict[str, str | Path | None] | None = None,
    progress: Any = None,
) -> tuple[Report, ConvertResult]:
    """Convert, validate, write reports. The ONNX file is written only when it passed."""
    paths = {k: check_output_path(v, f"{k} report") for k, v in (report_paths or {}).items()}
    out = check_output_path(output, "ONNX model")
    conv = convert(source, None, sample=sample, opset=opset, framework=framework, trust=trust, options=options, progress=progress)
    report = validate(
        source,
        conv.model,
        atol=atol,
        rtol=rtol,
        tolerances=tolerances,
        providers=providers,
        progress=progress,
        loaded=conv.loaded,
        conversion=conv,
    )
    if out is not None:
        report.model["path"] = str(out)
        if report.passed:
            write_atomic(out, conv.model.SerializeToString())
    write_reports(report, paths)
    return report, conv


def write_reports(report: Report, paths: dict[str, Path | None]) -> None:
    render = {"json": report.to_json, "markdown": report.to_markdown, "junit": report.to_junit}
    for kind, path in paths.items():
        if path is not None:
            write_atomic(path, render[kind]())


def inspect(path: str | Path) -> dict[str, Any]:
    proto, data = load_onnx(path)
    return describe(proto, data, str(path))

