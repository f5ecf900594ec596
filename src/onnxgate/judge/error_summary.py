"""A bounded summary of one float output's element-wise errors, for plots (judge/html).

The full error array is as large as the output; the report keeps only what the HTML
report draws, at a fixed size whatever the output's size:

* a histogram of log10 |onnx - ref| over the non-zero errors (plus the count of exact zeros);
* a capped, deterministic sample of (|ref|, |onnx - ref|) points: every element beyond
  tolerance first (up to :data:`MAX_BEYOND`), then an even stride over the rest;
* the worst elements by how far they use up their element-wise limit;
* the element-wise limit as a line: ``atol_eff + rtol * |ref|`` (``atol_eff`` = atol plus
  the median of K x the original's noise floor where calibration measured one).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

BINS = 24
MAX_POINTS = 120
MAX_BEYOND = 40
MAX_WORST = 5
DIGITS = 4  # significant digits kept for every float: plots need no more


@dataclass
class WorstElement:
    """One element of the output: where it is, both values, its error and the limit it had."""

    index: list[int]
    reference: float
    onnx: float
    abs_error: float
    limit: float

    @property
    def row(self) -> int | None:
        return self.index[0] if self.index else None

    @property
    def ratio(self) -> float:
        """The error as a multiple of its limit (> 1: beyond tolerance)."""
        return self.abs_error / self.limit if self.limit > 0 else (float("inf") if self.abs_error > 0 else 0.0)


@dataclass
class ErrorSummary:
    """Histogram, sample and worst elements of |onnx - ref| for one comparison (fixed size)."""

    atol: float  # atol plus the median of K x noise floor: the limit's intercept
    rtol: float
    zeros: int = 0  # elements whose error is exactly 0 (absent from the log histogram)
    log10_range: tuple[float, float] | None = None  # histogram edges: BINS equal steps in log10 between these
    counts: list[int] = field(default_factory=list)
    points: list[tuple[float, float]] = field(default_factory=list)  # (|ref|, err) within tolerance
    beyond: list[tuple[float, float]] = field(default_factory=list)  # (|ref|, err) beyond tolerance
    worst: list[WorstElement] = field(default_factory=list)

    def __post_init__(self) -> None:  # from JSON (zoo pool pipes): lists back into records
        if self.log10_range is not None:
            self.log10_range = (float(self.log10_range[0]), float(self.log10_range[1]))
        self.points = [(float(x), float(y)) for x, y in self.points]
        self.beyond = [(float(x), float(y)) for x, y in self.beyond]
        self.worst = [w if isinstance(w, WorstElement) else WorstElement(**w) for w in self.worst]

    def edges(self) -> list[float]:
        """The histogram's bin edges (absolute errors)."""
        if self.log10_range is None:
            return []
        lo, hi = self.log10_range
        return [float(10 ** v) for v in np.linspace(lo, hi, len(self.counts) + 1)]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, value: "ErrorSummary | dict[str, Any] | None") -> "ErrorSummary | None":
        return value if value is None or isinstance(value, ErrorSummary) else cls(**value)


def _round(x: float) -> float:
    return float(f"{float(x):.{DIGITS}g}")


def _histogram(err: np.ndarray) -> tuple[tuple[float, float] | None, list[int]]:
    positive = err[err > 0]
    if positive.size == 0:
        return None, []
    logs = np.log10(positive)
    lo, hi = float(np.floor(logs.min() * 4) / 4), float(np.ceil(logs.max() * 4) / 4)
    if hi <= lo:
        hi = lo + 0.25
    counts, _ = np.histogram(logs, bins=BINS, range=(lo, hi))
    return (lo, hi), [int(c) for c in counts]


def _stride(indices: np.ndarray, cap: int) -> np.ndarray:
    """At most ``cap`` of ``indices``, evenly spaced (deterministic: the same report twice is the same file)."""
    if indices.size <= cap:
        return indices
    return indices[np.linspace(0, indices.size - 1, cap).astype(np.int64)]


def _points(ref_abs: np.ndarray, err: np.ndarray, which: np.ndarray) -> list[tuple[float, float]]:
    return [(_round(ref_abs[i]), _round(err[i])) for i in which]


def _worst(ref: np.ndarray, got: np.ndarray, err: np.ndarray, limit: np.ndarray, shape: tuple[int, ...]) -> list[WorstElement]:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(limit > 0, err / limit, np.where(err > 0, np.inf, 0.0))
    k = min(MAX_WORST, ratio.size)
    top = np.argpartition(-ratio, k - 1)[:k]
    top = top[np.argsort(-ratio[top], kind="stable")]
    return [
        WorstElement(
            [int(i) for i in np.unravel_index(int(flat), shape)], _round(ref[flat]), _round(got[flat]),
            _round(err[flat]), _round(limit[flat]),
        )
        for flat in top
        if err[flat] > 0
    ]


def summarize_errors(
    reference: np.ndarray, onnx: np.ndarray, abs_err: np.ndarray, limit: np.ndarray | float,
    bad: np.ndarray, *, atol: float, rtol: float,
) -> ErrorSummary:
    """The bounded summary of one float comparison (arrays as judge.compare computed them, float64)."""
    shape = reference.shape
    ref = reference.reshape(-1)
    got = onnx.reshape(-1)
    err = np.asarray(abs_err, dtype=np.float64).reshape(-1)
    lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), shape).reshape(-1)
    beyond_mask = np.asarray(bad).reshape(-1)
    finite = np.isfinite(err) & np.isfinite(ref)
    ref_abs = np.abs(np.where(finite, ref, 0.0))
    err = np.where(finite, err, 0.0)
    log_range, counts = _histogram(err)
    beyond = _stride(np.flatnonzero(beyond_mask & finite), MAX_BEYOND)
    within = _stride(np.flatnonzero(~beyond_mask & finite), MAX_POINTS - beyond.size)
    return ErrorSummary(
        atol=_round(atol),
        rtol=_round(rtol),
        zeros=int(np.sum(err == 0)),
        log10_range=log_range,
        counts=counts,
        points=_points(ref_abs, err, within),
        beyond=_points(ref_abs, err, beyond),
        worst=_worst(ref, got, err, lim, shape) if err.size else [],
    )
