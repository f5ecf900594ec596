"""Optimised variants of a converted model, each validated against the ORIGINAL framework.

A variant is only worth publishing if it still computes what the original computed, so
every variant is compared with the original framework's reference outputs (never with
the converted model's), under the tolerance for its precision:

* float32 variants (ORT's offline-optimised graphs, onnxslim/onnxsim) -- the run's policy;
* float16 -- at least the float16 defaults of :mod:`onnxgate.judge.tolerances`;
* dynamic int8 -- at least ``INT8_TOLERANCE`` below; for a classifier the label output
  stays exact except on rows whose reference top-two probabilities are within that
  tolerance (the task-level check), and the label agreement is reported.

Each variant is timed like the original (:mod:`onnxgate.diagnose.speed`). The best one
is the fastest that passes, and only if it beats the converted model by more than
``MIN_GAIN`` (smaller differences are measurement noise); every other one is told why it
lost.
"""

from __future__ import annotations

import logging
import tempfile
import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.judge.compare import LABEL_OUTPUTS
from onnxgate.judge.report import Case
from onnxgate.judge.run_cases import run_cases
from onnxgate.runtime.isolation import IsolationPolicy
from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec
from onnxgate.runtime.runner import RunError
from onnxgate.diagnose.speed import DEFAULT_BUDGET_S, DEFAULT_THREADS, Timing, measure_speed
from onnxgate.judge.tolerances import DEFAULTS, Tolerance, TolerancePolicy, dtype_family

# Dynamic int8 quantises weights per tensor and activations per call to 8 bits: a step of
# (max - min) / 255, ~0.4% of the range, on every weight and activation, and the errors add
# up along each dot product. Output errors of a few percent of the output's scale are the
# normal cost of the method, hence 5e-2 absolute and relative.
INT8_TOLERANCE = (5e-2, 5e-2, "dynamic int8: ~0.4% quantisation step per tensor, accumulated along dot products")
MIN_GAIN = 0.05  # a variant must be this much faster than the converted model to replace it
QUANTISABLE_OPS = {"MatMul", "Gemm", "Conv", "Attention", "LSTM", "EmbedLayerNormalization", "Gather"}
QUANTISED_OPS = {"DequantizeLinear", "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "QLinearMatMul", "QLinearConv", "DynamicQuantizeMatMul"}


@dataclass(frozen=True)
class PrecisionPolicy(TolerancePolicy):
    """The run's policy, loosened to at least ``floor`` for a lower-precision variant."""

    floor: tuple[float, float, str] = (0.0, 0.0, "")

    @classmethod
    def loosen(cls, base: TolerancePolicy, floor: tuple[float, float, str]) -> "PrecisionPolicy":
        return cls(**{f.name: getattr(base, f.name) for f in fields(base)}, floor=floor)

    def for_output(self, name: str, dtype: np.dtype) -> Tolerance:
        base = super().for_output(name, dtype)
        atol, rtol, why = self.floor
        if dtype_family(dtype) in ("integer", "bool", "string") or (base.atol >= atol and base.rtol >= rtol):
            return base  # labels and other exact outputs stay exact
        return dataclasses.replace(base, atol=max(base.atol, atol), rtol=max(base.rtol, rtol), rule=f"{why} (at least; {base.rule})")


@dataclass
class Variant:
    """One optimised model: how it was made, whether it still passes, how fast, how big."""

    name: str
    precision: str
    how: str
    data: bytes | None = field(default=None, repr=False)
    optimization: str = "all"  # graph optimisation level of the session that runs it
    skipped: str | None = None  # why it was not built (nothing to do, tool missing)
    error: str | None = None  # building or running it failed
    cases: list[Case] = field(default_factory=list)
    timings: dict[int, Timing] = field(default_factory=dict)
    load_ms: float | None = None
    speedups: dict[int, float] = field(default_factory=dict)  # vs the original framework, per batch
    verdict: str | None = None  # "best", or why it lost

    @property
    def size(self) -> int | None:
        return len(self.data) if self.data is not None else None

    @property
    def passed(self) -> bool:
        return self.data is not None and not self.error and bool(self.cases) and all(c.status == "passed" for c in self.cases)

    @property
    def max_abs_error(self) -> float | None:
        errs = [o.max_abs_error for c in self.cases for o in c.outputs if o.max_abs_error is not None]
        return max(errs) if errs else None

    @property
    def label_agreement(self) -> float | None:
        """Share of classifier labels equal to the original's, over every case (ties count as disagreement)."""
        labels = [o for c in self.cases for o in c.outputs if o.name in LABEL_OUTPUTS and o.total]
        if not labels:
            return None
        total = sum(o.total for o in labels)
        return 1.0 - sum(o.mismatched + o.ties for o in labels) / total

    def latency_ms(self, batch: int) -> float | None:
        t = self.timings.get(batch)
        return t.median_ms if t else None

    def failures(self) -> list[str]:
        out = [self.error] if self.error else []
        for c in self.cases:
            out += [f"[{c.name}] {c.error}"] if c.error else []
            out += [f"[{c.name}] output {o.name!r}: {'; '.join(o.problems)}" for o in c.outputs if not o.passed]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "precision": self.precision,
            "how": self.how,
            "session_optimization": self.optimization,
            "status": "skipped" if self.skipped else ("passed" if self.passed else ("error" if self.error else "failed")),
            "skipped": self.skipped,
            "error": self.error,
            "passed": self.passed,
            "bytes": self.size,
            "max_abs_error": self.max_abs_error,
            "label_agreement": self.label_agreement,
            "load_ms": self.load_ms,
            "timings": {str(b): t.as_dict() for b, t in self.timings.items()},
            "speedups": {str(b): s for b, s in self.speedups.items()},
            "verdict": self.verdict,
            "failures": self.failures(),
            "cases": [c.as_dict() for c in self.cases],
        }


@dataclass
class VariantSet:
    """Every variant of one model, the batch the choice was made at, and the choice."""

    variants: list[Variant]
    select_batch: int
    threads: int
    best: Variant | None = None

    def __iter__(self) -> Any:
        return iter(self.variants)

    def __len__(self) -> int:
        return len(self.variants)

    def get(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "select_batch": self.select_batch,
            "threads": self.threads,
            "min_gain": MIN_GAIN,
            "best": self.best.name if self.best else None,
            "variants": [v.as_dict() for v in self.variants],
        }

    def markdown(self) -> list[str]:
        batches = sorted({b for v in self.variants for b in v.timings})
        head = " | ".join(f"latency b={b} ms | speedup b={b}" for b in batches)
        lines = [
            "## Optimised variants",
            "",
            f"Each variant validated against the original framework's outputs; best = fastest passing at "
            f"batch {self.select_batch}, {self.threads} thread(s), and more than {MIN_GAIN:.0%} faster than "
            f"the converted model. Best: **{self.best.name if self.best else 'none'}**.",
            "",
            f"| variant | precision | passed | max abs err | label agreement | {head} | bytes | load ms | verdict |",
            "|---|---|---|---|---|" + "---|---|" * len(batches) + "---|---|---|",
        ]
        for v in self.variants:
            passed = "skipped" if v.skipped else ("yes" if v.passed else "**no**")
            cells = " | ".join(f"{_num(v.latency_ms(b), '.3f')} | {_num(v.speedups.get(b), '.2f', 'x')}" for b in batches)
            lines.append(
                f"| {v.name} | {v.precision} | {passed} | {_num(v.max_abs_error, '.3g')} | "
                f"{_num(v.label_agreement, '.1%')} | {cells} | {v.size or ''} | {_num(v.load_ms, '.1f')} | "
                f"{_md(v.verdict or '')} |"
            )
        return lines

    def text(self) -> list[str]:
        out = [f"variants (batch {self.select_batch}, best: {self.best.name if self.best else 'none'}):"]
        for v in self.variants:
            state = "skip" if v.skipped else ("ok  " if v.passed else "FAIL")
            lat = v.latency_ms(self.select_batch)
            speed = v.speedups.get(self.select_batch)
            out.append(
                f"  {v.name:<14} {state} err {_num(v.max_abs_error, '.3g'):<9} "
                f"{_num(lat, '.3f'):>9} ms {_num(speed, '.2f', 'x'):>7} {v.size or '':>9} B  {v.verdict or ''}"
            )
        return out


def _num(x: float | None, fmt: str, suffix: str = "") -> str:
    return "" if x is None else f"{x:{fmt}}{suffix}"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# -- building -------------------------------------------------------------------------------


def build_variants(model_bytes: bytes, isolation: IsolationPolicy | None = None) -> list[Variant]:
    """The converted model and every optimised variant this installation can make.

    ONNX Runtime's offline optimisation loads the model: in a worker, as ``isolation`` says.
    """
    variants = [Variant("converted", "float32", "the converted model as is", model_bytes)]
    for level in ("basic", "extended"):
        variants.append(
            _build(
                Variant(
                    f"ort-{level}",
                    "float32",
                    f"ONNX Runtime offline optimisation ({level}), saved via optimized_model_filepath; run with "
                    "graph optimisation disabled",
                    optimization="disable",
                ),
                lambda level=level: _ort_offline(model_bytes, level, isolation),
            )
        )
    variants.append(_build(Variant("float16", "float16", "onnxruntime.transformers float16, I/O kept float32"), lambda: _float16(model_bytes)))
    variants.append(_build(Variant("int8-dynamic", "int8", "onnxruntime.quantization.quantize_dynamic (QInt8 weights)"), lambda: _int8(model_bytes)))
    variants.append(_build(Variant("simplified", "float32", "onnxslim / onnxsim"), lambda: _simplified(model_bytes)))
    return variants


class _Skip(Exception):
    """Nothing to build: the reason goes to the report."""


def _build(variant: Variant, make: Any) -> Variant:
    try:
        variant.data = make()
    except _Skip as exc:
        variant.skipped = str(exc)
    except Exception as exc:  # a tool that cannot handle this model: a finding, not a crash
        variant.error = f"could not build: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}"
    return variant


def _ort_offline(model_bytes: bytes, level: str, isolation: IsolationPolicy | None = None) -> bytes:
    """The graph as ONNX Runtime optimises it at ``level``, saved by a session that loads it (in a worker)."""
    with tempfile.TemporaryDirectory(prefix="onnxgate-opt-") as tmp:
        out = Path(tmp) / f"{level}.onnx"
        OrtRunner(SessionSpec(model_bytes, optimization=level, options={"optimized_path": str(out)},
                              isolation=isolation or IsolationPolicy(), label=f"the model (saving its {level} optimisation)")).open()
        return out.read_bytes()


def _float16(model_bytes: bytes) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    model = onnx.load_from_string(model_bytes)
    if model.graph.input and model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.DOUBLE:
        raise _Skip("the model computes in float64; a float16 variant is not built from a float64 model")
    ops = [n.op_type for n in model.graph.node]
    fp16_ops = [op for op in ops if op not in DEFAULT_OP_BLOCK_LIST and op not in ("Cast", "Identity")]
    if not fp16_ops:
        raise _Skip(f"nothing to convert: every compute node ({sorted(set(ops))}) stays float32 (ONNX-ML ops)")
    converted = convert_float_to_float16(model, keep_io_types=True)
    return converted.SerializeToString()


def _int8(model_bytes: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    model = onnx.load_from_string(model_bytes)
    if not {n.op_type for n in model.graph.node} & QUANTISABLE_OPS:
        raise _Skip("nothing to quantise: no MatMul, Gemm or Conv node (tree and other ONNX-ML ops stay float)")
    with tempfile.TemporaryDirectory(prefix="onnxgate-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        logging.disable(logging.WARNING)  # its "consider pre-processing" advice goes to the root logger
        try:
            quantize_dynamic(model, out)
        finally:
            logging.disable(logging.NOTSET)
        data = out.read_bytes()
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    if not ops & QUANTISED_OPS:
        raise _Skip("nothing to quantise: no MatMul/Conv/Gemm weights that dynamic int8 handles")
    return data


def _simplified(model_bytes: bytes) -> bytes:
    import onnx

    model = onnx.load_from_string(model_bytes)
    try:
        import onnxslim
    except ImportError:
        onnxslim = None
    if onnxslim is not None:
        return onnxslim.slim(model).SerializeToString()
    try:
        import onnxsim
    except ImportError:
        raise _Skip("neither onnxslim nor onnxsim is installed (pip install onnxslim)") from None
    simplified, ok = onnxsim.simplify(model)
    if not ok:
        raise RuntimeError("onnxsim could not check the simplified model")
    return simplified.SerializeToString()


# -- validating, timing, choosing ----------------------------------------------------------


def policy_for(variant: Variant, base: TolerancePolicy) -> TolerancePolicy:
    """The run's policy for float32 variants; at least the precision's tolerance otherwise."""
    if variant.precision == "float16":
        atol, rtol, why = DEFAULTS["float16"]
        floor = (atol, rtol, f"float16 variant ({why})")
    elif variant.precision == "int8":
        floor = INT8_TOLERANCE
    else:
        return base
    return PrecisionPolicy.loosen(base, floor)


def check_variant(
    variant: Variant,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    references: dict[str, dict[str, np.ndarray]],
    output_names: list[str],
    *,
    policy: TolerancePolicy,
    threads: int,
    provider: str = "CPUExecutionProvider",
    isolation: IsolationPolicy | None = None,
    ties: dict[str, dict[str, Any]] | None = None,
) -> OrtRunner | None:
    """Run the variant on every case (in a worker unless ``isolation`` says otherwise) and compare
    with the original framework's outputs (``ties``: each case's tie-breaks, judge/ties.py, as the
    converted model is judged); the runner, for timing, or None when it did not load."""
    if variant.data is None:
        return None
    import time

    runner = OrtRunner(SessionSpec(
        variant.data, provider=provider, optimization=variant.optimization, options={"threads": threads},
        isolation=isolation or IsolationPolicy(), label=f"variant {variant.name}",
    ))
    start = time.perf_counter_ns()
    try:
        runner.open()
    except RunError as exc:
        variant.error = str(exc)
        return None
    variant.load_ms = (time.perf_counter_ns() - start) / 1e6
    variant.cases = run_cases(runner, cases, references, policy=policy_for(variant, policy), output_names=output_names,
                              ties=ties)
    return runner


def time_variant(
    variant: Variant, runner: Any, batches: list[tuple[int, dict[str, np.ndarray]]], *, budget_s: float | None = None
) -> None:
    """Time the variant at the same batches as the original (batch 1 and the sample's batch), where it runs."""
    for batch, batch_feeds in batches:
        try:
            variant.timings[batch] = runner.time(batch_feeds, batch=batch, budget_s=budget_s or DEFAULT_BUDGET_S)
        except RunError as exc:  # a variant that runs once but not repeatedly is broken
            variant.error = f"failed while timing: {exc}"
            return


def best_variant(variants: Any, *, batch: int | None = None, min_gain: float = MIN_GAIN) -> Variant | None:
    """The fastest variant that passed; the converted model unless another beats it by ``min_gain``.

    ``batch`` is the batch size whose median latency decides (default: the largest timed).
    Failed, skipped and untimed variants are never chosen.
    """
    items = list(variants)
    timed = [v for v in items if v.passed and v.timings]
    if not timed:
        return None
    batch = batch or max(b for v in timed for b in v.timings)
    timed = [v for v in timed if batch in v.timings]
    if not timed:
        return None
    fastest = min(timed, key=lambda v: v.timings[batch].median_ms)
    base = next((v for v in timed if v.name == "converted"), None)
    if base is not None and fastest is not base:
        if fastest.timings[batch].median_ms > base.timings[batch].median_ms * (1 - min_gain):
            return base
    return fastest


def explain(variants: VariantSet, *, min_gain: float = MIN_GAIN) -> None:
    """Choose the best variant and say, for each other one, why it lost."""
    best = variants.best = best_variant(variants.variants, batch=variants.select_batch, min_gain=min_gain)
    b = variants.select_batch
    for v in variants.variants:
        if v is best:
            v.verdict = "best"
        elif v.skipped:
            v.verdict = f"not built: {v.skipped}"
        elif v.error:
            v.verdict = v.error
        elif not v.passed:
            first = v.failures()[0] if v.failures() else "no case passed"
            v.verdict = f"failed parity with the original: {first}"
        elif best is None or b not in v.timings or b not in best.timings:
            v.verdict = "not timed"
        else:
            ratio = v.timings[b].median_ms / best.timings[b].median_ms
            if ratio > 1 + min_gain:
                v.verdict = f"slower than {best.name}: {v.timings[b].median_ms:.3f} ms vs {best.timings[b].median_ms:.3f} ms ({ratio:.2f}x) at batch {b}"
            else:
                v.verdict = (
                    f"within {min_gain:.0%} of {best.name} ({v.timings[b].median_ms:.3f} ms vs "
                    f"{best.timings[b].median_ms:.3f} ms at batch {b}): no gain beyond measurement noise"
                )


def optimize_variants(
    model_bytes: bytes,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    references: dict[str, dict[str, np.ndarray]],
    output_names: list[str],
    batches: list[tuple[int, dict[str, np.ndarray]]],
    *,
    policy: TolerancePolicy,
    threads: int,
    original: Any = None,
    budget_s: float | None = None,
    progress: Any = None,
    isolation: IsolationPolicy | None = None,
    ties: dict[str, dict[str, Any]] | None = None,
) -> VariantSet:
    """Build, validate and time every variant; choose the best. ``original`` is a SpeedReport.

    Each variant runs in a worker of the shared pool (``isolation``: in_process, timeout), so
    a variant that crashes or hangs fails alone; only a variant that ran on every case is timed.
    """
    from onnxgate._progress import NullProgress

    progress = progress or NullProgress()
    with progress.step("building optimised variants"):
        variants = build_variants(model_bytes, isolation)
    for v in variants:
        if v.data is None:
            continue
        with progress.step(f"validating and timing variant {v.name}"):
            runner = check_variant(v, cases, references, output_names, policy=policy, threads=threads, isolation=isolation,
                                   ties=ties)
            if runner is not None and not v.error and all(c.error is None for c in v.cases):
                time_variant(v, runner, batches, budget_s=budget_s)
        if original is not None:
            for batch, t in v.timings.items():
                row = original.row(batch)
                if row is not None and t.median_ms:
                    v.speedups[batch] = row.original.median_ms / t.median_ms
    result = VariantSet(variants, select_batch=max(b for b, _ in batches), threads=threads)
    explain(result)
    return result


def speed_and_variants(
    loaded: Any,
    model_bytes: bytes,
    cases: list[tuple[str, dict[str, np.ndarray]]],
    references: dict[str, dict[str, np.ndarray]],
    output_names: list[str],
    *,
    policy: TolerancePolicy,
    threads: int | None = None,
    optimize: bool = False,
    budget_s: float | None = None,
    progress: Any = None,
    isolation: IsolationPolicy | None = None,
    ties: dict[str, dict[str, Any]] | None = None,
) -> tuple[Any, VariantSet | None]:
    """validate()'s --benchmark/--optimize step: (SpeedReport, VariantSet or None).

    Only cases whose reference ran are used; the speed batches are batch 1 and the sample's
    batch among them (just the sample's batch for a static model).
    """
    from onnxgate._progress import NullProgress

    progress = progress or NullProgress()
    threads = threads or DEFAULT_THREADS
    cases = [(n, f) for n, f in cases if n in references]
    rows = _rows(loaded.feeds)
    chosen: dict[int, dict[str, np.ndarray]] = {}
    for _, f in cases:  # the sample's own rows first (batch_cases order), never an edge case's
        if _rows(f) in (1, rows):
            chosen.setdefault(_rows(f), f)
    batches = sorted(chosen.items())
    with progress.step(f"timing {loaded.converter} and ONNX Runtime ({threads} thread(s))"):
        speed = measure_speed(loaded, model_bytes, output_names, threads=threads, budget_s=budget_s, batches=batches,
                              isolation=isolation)
    variants = None
    if optimize:
        variants = optimize_variants(
            model_bytes, cases, references, output_names, batches,
            policy=policy, threads=threads, original=speed, budget_s=budget_s, progress=progress, isolation=isolation,
            ties=ties,
        )
    return speed, variants


def _rows(feeds: dict[str, np.ndarray]) -> int:
    return next(iter(feeds.values())).shape[0] if feeds else 1


__all__ = [
    "INT8_TOLERANCE",
    "MIN_GAIN",
    "PrecisionPolicy",
    "Variant",
    "VariantSet",
    "best_variant",
    "build_variants",
    "check_variant",
    "explain",
    "optimize_variants",
    "policy_for",
    "speed_and_variants",
]
