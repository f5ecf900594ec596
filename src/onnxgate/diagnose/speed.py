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

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from onnxgate.runtime.timing import (  # noqa: F401 - re-exported: the speed report's building blocks
    DEFAULT_BUDGET_S,
    DEFAULT_THREADS,
    MAX_REPETITIONS,
    MIN_REPETITIONS,
    MIN_WARMUP,
    Timing,
    matched_threads,
    ort_call,
    time_calls,
)

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
