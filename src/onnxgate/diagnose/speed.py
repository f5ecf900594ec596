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
ONNX graph returns (for a classifier: labels and probabilities), and is labelled with what
it calls (``Converter.reference_call``: scikit-learn's predict and predict_proba, torch's
eager forward, Keras' eager ``model(x)``). Where that is not how a user would serve the
model, the converter's ``speed_calls`` are timed beside it and shown as their own rows
(Keras: ``model.predict`` and a ``tf.function``), so a speedup over call overhead is never
presented as a speedup over the framework. The ONNX Runtime side is
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

ORT_CALL = "onnxruntime InferenceSession.run"


@dataclass
class SpeedRow:
    """One batch size: the original's reference call, ONNX Runtime, and the original's other
    call paths (``alternatives``: label -> timing, e.g. Keras' compiled ``predict``)."""

    batch: int
    original: Timing
    onnxruntime: Timing
    alternatives: dict[str, Timing] = field(default_factory=dict)

    @property
    def speedup(self) -> float:
        """How many times faster ONNX Runtime is than the original's reference call (median over median)."""
        return self.speedup_over(self.original)

    def speedup_over(self, timing: Timing) -> float:
        return timing.median_ms / self.onnxruntime.median_ms if self.onnxruntime.median_ms else float("inf")

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "original": self.original.as_dict(),
            "onnxruntime": self.onnxruntime.as_dict(),
            "speedup": self.speedup,
            "alternatives": {label: {**t.as_dict(), "speedup": self.speedup_over(t)} for label, t in self.alternatives.items()},
        }


@dataclass
class SpeedReport:
    framework: str
    provider: str
    threads: int
    controls: dict[str, dict[str, str]]  # side -> pool -> how it was set
    rows: list[SpeedRow] = field(default_factory=list)
    budget_s: float = DEFAULT_BUDGET_S
    reference_call: str = "reference()"  # what the original's main figure times, in words
    unavailable: dict[str, str] = field(default_factory=dict)  # other call paths that could not be timed: why
    method: str = (
        "per-call wall time with time.perf_counter_ns after warm-up; median and p90 of the timed "
        "repetitions; original = the converter's reference() computing the same outputs, labelled with "
        "the call it makes, and the original's other call paths where it has them (Keras: predict, "
        "tf.function), each with its own speedup; onnxruntime = InferenceSession.run with pre-cast feeds"
    )

    @property
    def original_label(self) -> str:
        return f"{self.framework} {self.reference_call}"

    def row(self, batch: int) -> SpeedRow | None:
        return next((r for r in self.rows if r.batch == batch), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "framework": self.framework,
            "provider": self.provider,
            "threads": self.threads,
            "controls": self.controls,
            "budget_s": self.budget_s,
            "reference_call": self.reference_call,
            "unavailable": self.unavailable,
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
            "| batch | call | median ms | p90 ms | reps | onnxruntime speedup |",
            "|---|---|---|---|---|---|",
        ]
        for r in self.rows:
            for label, t in [*self.original_timings(r), (ORT_CALL, r.onnxruntime)]:
                speedup = "—" if t is r.onnxruntime else f"{r.speedup_over(t):.2f}x"
                lines.append(f"| {r.batch} | {label} | {t.median_ms:.3f} | {t.p90_ms:.3f} | {t.repetitions} | {speedup} |")
        return lines + ["", *self._unavailable_lines("- ")] if self.unavailable else lines

    def text(self) -> list[str]:
        """Lines for the terminal summary: per batch, ONNX Runtime against each labelled call of the original."""
        out = [f"speed ({self.threads} thread(s) each, median of N timed calls):"]
        for r in self.rows:
            x = r.onnxruntime
            out.append(f"  batch={r.batch:<5} onnxruntime {x.median_ms:.3f} ms (N={x.repetitions})")
            for label, t in self.original_timings(r):
                out.append(f"    vs {label} {t.median_ms:.3f} ms (N={t.repetitions}): speedup {r.speedup_over(t):.2f}x")
        return out + self._unavailable_lines("  ")

    def _unavailable_lines(self, prefix: str) -> list[str]:
        return [f"{prefix}not timed: {self.framework} {label}: {why}" for label, why in self.unavailable.items()]

    def original_timings(self, row: SpeedRow) -> list[tuple[str, Timing]]:
        """The original's timed calls at one batch, labelled: the reference call, then the alternatives."""
        return [(self.original_label, row.original), *((f"{self.framework} {a}", t) for a, t in row.alternatives.items())]


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
        report.reference_call = original.get("call") or report.reference_call
        report.unavailable.update(original.get("unavailable") or {})
        ort_timing = runner.time(feeds, batch=batch, budget_s=budget_s)
        alternatives = {label: Timing(**t) for label, t in (original.get("alternatives") or {}).items()}
        report.rows.append(SpeedRow(batch, Timing(**original["timing"]), ort_timing, alternatives))
    return report
