"""Latency primitives, used where a model lives: the framework worker, the ORT workers, the parent.

How a figure is made (diagnose/speed.py builds the report from these): warm-up calls
first (at least ``MIN_WARMUP`` and a tenth of the budget), then timed calls with
``time.perf_counter_ns`` until both a minimum count and the time budget are reached;
the median and 90th percentile of the per-call times. ``matched_threads`` limits the
original framework's pools to the same thread count ONNX Runtime gets.
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
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


def ort_call(session: Any, feeds: dict[str, np.ndarray]) -> Callable[[], Any]:
    """A zero-argument call of the raw ORT session with the feeds cast once, outside the timing."""
    from onnxgate.runtime.runner import _cast_feeds

    cast = _cast_feeds(feeds, session.input_types())
    raw = session.session
    return lambda: raw.run(None, cast)
