"""Is it worth it? Latency of the original framework and of ONNX Runtime on the same inputs.

How a figure is made, so that two figures can be compared:

* the same feeds for both sides, at batch 1 and at the sample's own batch;
* the same thread count for both sides (``threads``, default 1: reproducible and not
  disturbed by other processes on the machine), applied to every pool we can reach --
  ONNX Runtime's ``intra_op_num_threads``, ``torch.set_num_threads``, BLAS/OpenMP pools
  through threadpoolctl, joblib's ``n_jobs`` for scikit-learn -- and recorded;
* warm-up calls first (at least 3 and a tenth of the time budget), then timed calls with
  ``time.perf_counter_ns`` until both a minimum count and the time budget are reached;
* the median and the 90th percentile of the per-call times, with the number of timed
  repetitions each figure rests on.

The original side is the converter's ``reference()``: it computes the same outputs the
ONNX graph returns (for a classifier: labels and probabilities). The ONNX Runtime side is
``InferenceSession.run`` with the feeds already cast, the call a service would make.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

DEFAULT_THREADS = 1
DEFAULT_BUDGET_S = 0.4  # timed seconds per figure (warm-up comes on top)
MIN_REPETITIONS = 10
MAX_REPETITIONS = 10_000
MIN_WARMUP = 3


@dataclass
class Timing:
    """Per-call latency of one callable at one batch size."""

    batch: int
    repetitions: int
    warmup: int
    median_ms: float
    p90_ms: float
    min_ms: float
    max_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "repetitions": self.repetitions,
            "warmup": self.warmup,
            "median_ms": self.median_ms,
            "p90_ms": self.p90_ms,
            "min_ms": self.min_ms,
            "max_ms": self.max_ms,
        }


def time_calls(
    fn: Callable[[], Any],
    *,
    batch: int,
    budget_s: float = DEFAULT_BUDGET_S,
    min_repetitions: int = MIN_REPETITIONS,
    max_repetitions: int = MAX_REPETITIONS,
) -> Timing:
    """Warm up, then time ``fn()`` call by call until the count and the budget are both met."""
    warm_until = time.perf_counter_ns() + int(budget_s * 1e8)  # a tenth of the budget
    warmup = 0
    while warmup < MIN_WARMUP or time.perf_counter_ns() < warm_until:
        fn()
        warmup += 1
    samples: list[int] = []
    deadline = time.perf_counter_ns() + int(budget_s * 1e9)
    while len(samples) < max_repetitions and (len(samples) < min_repetitions or time.perf_counter_ns() < deadline):
        start = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - start)
    ms = np.asarray(samples, dtype=np.float64) / 1e6
    return Timing(
        batch=batch,
        repetitions=len(samples),
        warmup=warmup,
        median_ms=float(np.median(ms)),
        p90_ms=float(np.percentile(ms, 90)),
        min_ms=float(ms.min()),
        max_ms=float(ms.max()),
    )


@contextmanager
def matched_threads(threads: int, model: Any = None, framework: str | None = None) -> Iterator[dict[str, str]]:
    """Limit the original framework to ``threads``; yields how each pool was set (for the report)."""
    applied: dict[str, str] = {}
    with ExitStack() as stack:
        try:
            from threadpoolctl import threadpool_limits

            stack.enter_context(threadpool_limits(limits=threads))
            applied["blas/openmp"] = f"threadpoolctl limits={threads}"
        except ImportError:
            applied["blas/openmp"] = "not limited (threadpoolctl not installed)"
        if framework == "torch" or "torch" in sys.modules:
            import torch

            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            stack.callback(torch.set_num_threads, previous)
            applied["torch"] = f"torch.set_num_threads({threads})"
        if framework == "sklearn":
            applied["joblib"] = _limit_joblib(stack, threads, model)
        if framework in ("tensorflow", "keras"):
            applied["tensorflow"] = "not matched: TensorFlow fixes its thread pools at start-up"
        yield applied


def _limit_joblib(stack: ExitStack, threads: int, model: Any) -> str:
    """joblib's default n_jobs, plus any explicit ``n_jobs`` in the estimator, set for the run."""
    import joblib

    stack.enter_context(joblib.parallel_config(n_jobs=threads))
    text = f"joblib.parallel_config(n_jobs={threads})"
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    explicit = {k: v for k, v in params.items() if (k == "n_jobs" or k.endswith("__n_jobs")) and v not in (None, threads)}
    if explicit:
        model.set_params(**{k: threads for k in explicit})
        stack.callback(model.set_params, **explicit)
        text += f"; estimator {sorted(explicit)} set to {threads} for the run"
    return text


@dataclass
class SpeedRow:
    batch: int
    original: Timing
    onnxruntime: Timing

    @property
    def speedup(self) -> float:
        """How many times faster ONNX Runtime is than the original (median over median)."""
        return self.original.median_ms / self.onnxruntime.median_ms if self.onnxruntime.median_ms else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "original": self.original.as_dict(),
            "onnxruntime": self.onnxruntime.as_dict(),
            "speedup": self.speedup,
        }


@dataclass
class SpeedReport:
    framework: str
    provider: str
    threads: int
    controls: dict[str, dict[str, str]]  # side -> pool -> how it was set
    rows: list[SpeedRow] = field(default_factory=list)
    budget_s: float = DEFAULT_BUDGET_S
    method: str = (
        "per-call wall time with time.perf_counter_ns after warm-up; median and p90 of the timed "
        "repetitions; original = the converter's reference() computing the same outputs; "
        "onnxruntime = InferenceSession.run with pre-cast feeds"
    )

    def row(self, batch: int) -> SpeedRow | None:
        return next((r for r in self.rows if r.batch == batch), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "provider": self.provider,
            "threads": self.threads,
            "controls": self.controls,
            "budget_s": self.budget_s,
            "method": self.method,
            "rows": [r.as_dict() for r in self.rows],
        }

    def markdown(self) -> list[str]:
        lines = [
            "## Speed",
            "",
            f"{self.threads} thread(s) on both sides ({_controls_text(self.controls)}); provider {self.provider}. "
            f"{self.method}.",
            "",
            f"| batch | {self.framework} median ms | p90 ms | reps | onnxruntime median ms | p90 ms | reps | speedup |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            o, x = r.original, r.onnxruntime
            lines.append(
                f"| {r.batch} | {o.median_ms:.3f} | {o.p90_ms:.3f} | {o.repetitions} | {x.median_ms:.3f} | "
                f"{x.p90_ms:.3f} | {x.repetitions} | {r.speedup:.2f}x |"
            )
        return lines

    def text(self) -> list[str]:
        """Lines for the terminal summary."""
        out = [f"speed ({self.threads} thread(s) each, median of N timed calls):"]
        for r in self.rows:
            out.append(
                f"  batch={r.batch:<5} {self.framework} {r.original.median_ms:.3f} ms (N={r.original.repetitions})  "
                f"onnxruntime {r.onnxruntime.median_ms:.3f} ms (N={r.onnxruntime.repetitions})  "
                f"speedup {r.speedup:.2f}x"
            )
        return out


def _controls_text(controls: dict[str, dict[str, str]]) -> str:
    return "; ".join(f"{side}: " + ", ".join(v for v in pools.values()) for side, pools in controls.items())


def speed_batches(feeds: dict[str, np.ndarray]) -> list[tuple[int, dict[str, np.ndarray]]]:
    """Batch 1 and the sample's own batch (once when they are the same)."""
    from onnxgate.inputs.samples import take_rows

    rows = next(iter(feeds.values())).shape[0] if feeds else 1
    sizes = sorted({1, rows})
    return [(n, feeds if n == rows else take_rows(feeds, slice(0, n))) for n in sizes]


def ort_call(session: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """A zero-argument call of the raw ORT session with the feeds cast once, outside the timing."""
    from onnxgate.runtime.runner import _cast_feeds

    cast = _cast_feeds(feeds, session.input_types())
    raw = session.session
    return lambda: raw.run(None, cast)


def measure_speed(
    reference: Any,
    model_bytes: bytes,
    output_names: list[str],
    *,
    threads: int | None = None,
    provider: str = "CPUExecutionProvider",
    budget_s: float | None = None,
    batches: list[tuple[int, dict[str, np.ndarray]]] | None = None,
    isolation: Any = None,
) -> SpeedReport:
    """Time the original (``reference.time``: in its framework worker) and ONNX Runtime at each batch.

    ``reference`` is a runtime.framework.ReferenceRunner. ``batches`` defaults to batch 1
    and the sample's own batch (:func:`speed_batches`). ONNX Runtime is timed inside its
    worker, like the original in its own (``isolation``: runtime.isolation.IsolationPolicy).
    """
    from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec

    threads = threads or DEFAULT_THREADS
    budget_s = budget_s or DEFAULT_BUDGET_S
    runner = OrtRunner(SessionSpec(model_bytes, provider=provider, options={"threads": threads},
                                   **({"isolation": isolation} if isolation is not None else {})))
    framework = reference.converter
    report = SpeedReport(
        framework,
        provider,
        threads,
        {"onnxruntime": {"intra_op": f"SessionOptions.intra_op_num_threads={threads}"}},
        budget_s=budget_s,
    )
    batches = batches or speed_batches(reference.feeds)
    originals = reference.time(batches, output_names, threads=threads, budget_s=budget_s)
    for (batch, feeds), original in zip(batches, originals):
        report.controls[framework] = original["controls"]
        ort_timing = runner.time(feeds, batch=batch, budget_s=budget_s)
        report.rows.append(SpeedRow(batch, Timing(**original["timing"]), ort_timing))
    return report
