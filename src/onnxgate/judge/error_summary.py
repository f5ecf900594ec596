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
import math
from typing import Any

import numpy as np

BINS = 24
MAX_POINTS = 120
MAX_BEYOND = 40
MAX_WORST = 5
DIGITS = 4  # significant digits kept for the worst elements and the limit (the table shows no more)


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
    """Counts of the non-zero errors in at most BINS equal log-width bins, each a whole number of octaves.

    The octave of a float64 is its biased exponent, read from its bits: one pass and one
    bincount, a fraction of np.log10's cost on a million-element output (the summary is
    computed for every comparison). Subnormal errors (< 2.2e-308) count as zero.
    """
    exponents = (err.view(np.uint64) >> np.uint64(52)).astype(np.intp)  # err >= 0: no sign bit
    octaves = np.bincount(exponents, minlength=2048)[1:2047]  # normal numbers: 2**-1022 .. 2**1023
    used = np.flatnonzero(octaves)
    if used.size == 0:
        return None, []
    lo, hi = int(used[0]), int(used[-1]) + 1
    width = max(1, -(-(hi - lo) // BINS))
    n = -(-(hi - lo) // width)
    padded = np.zeros(n * width, dtype=np.int64)
    padded[: hi - lo] = octaves[lo:hi]
    first = lo + 1 - 1023  # octaves[0] holds biased exponent 1, i.e. 2**-1022
    log2 = float(np.log10(2.0))
    return (first * log2, (first + n * width) * log2), [int(c) for c in padded.reshape(n, width).sum(axis=1)]


def _sample(n: int, bad: np.ndarray, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """(beyond, within): element indices to plot, evenly spaced and deterministic, at most ``cap`` in all."""
    beyond = np.flatnonzero(bad)
    if beyond.size > MAX_BEYOND:
        beyond = beyond[np.linspace(0, beyond.size - 1, MAX_BEYOND).astype(np.int64)]
    room = cap - beyond.size
    candidates = np.unique(np.linspace(0, n - 1, min(n, 2 * cap)).astype(np.int64))
    within = candidates[~bad[candidates]][:room] if room > 0 and n else np.zeros(0, dtype=np.int64)
    return beyond, within


def _points(ref: np.ndarray, err: np.ndarray, which: np.ndarray) -> list[tuple[float, float]]:
    xs, ys = np.abs(ref[which]).astype(np.float64).tolist(), err[which].tolist()
    return [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]


def _worst(ref: np.ndarray, got: np.ndarray, err: np.ndarray, limit: np.ndarray, shape: tuple[int, ...]) -> list[WorstElement]:
    ratio = np.divide(err, limit, out=np.where(err > 0, np.inf, 0.0), where=limit > 0)
    k = min(MAX_WORST, ratio.size)
    top = np.argpartition(ratio, ratio.size - k)[-k:]
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
    err = np.ascontiguousarray(abs_err, dtype=np.float64).reshape(-1)
    if not np.isfinite(err).all():
        err = np.where(np.isfinite(err), err, 0.0)  # NaN/inf mismatches are counted by compare, not plotted
    lim = np.broadcast_to(np.asarray(limit, dtype=np.float64), shape).reshape(-1)
    bad = np.asarray(bad).reshape(-1)
    log_range, counts = _histogram(err)
    beyond, within = _sample(err.size, bad, MAX_POINTS)
    ref, got = reference.reshape(-1), onnx.reshape(-1)
    return ErrorSummary(
        atol=_round(atol),
        rtol=_round(rtol),
        zeros=int(err.size - np.count_nonzero(err)),
        log10_range=log_range,
        counts=counts,
        points=_points(ref, err, within),
        beyond=_points(ref, err, beyond),
        worst=_worst(ref, got, err, lim, shape) if err.size else [],
    )
