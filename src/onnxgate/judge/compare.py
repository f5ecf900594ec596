"""Compare ONNX Runtime outputs with the reference framework's, output by output.

Checks run in a fixed order -- names, then dtype kind, then shape, then values -- and
every failure is collected (optimum's order, Polygraphy's records). Results are data:
:class:`OutputComparison` carries the statistics and ``passed`` is derived from them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

import numpy as np

from onnxgate.judge.error_summary import ErrorSummary, summarize_errors
from onnxgate.judge.ties import TieSet
from onnxgate.judge.tolerances import Tolerance, TolerancePolicy, dtype_name

# Outputs named like this hold classifier labels: exact, except rows whose reference
# top-two probabilities tie within tolerance (reported as ties, not hidden).
LABEL_OUTPUTS = ("label", "output_label")
PROBABILITY_OUTPUTS = ("probabilities", "output_probability")
# Nearest-neighbour indices (skl2onnx's kneighbors graph): exact, except neighbours whose reference
# distances tie within the distance tolerance, which either order lists correctly.
NEIGHBOR_OUTPUTS = {"index": "distance"}
TIE_RULE = "a value on a neighbour tie may be the answer of any valid tie-break of the original (within the same tolerance)"


@dataclass
class OutputComparison:
    name: str
    kind: str  # "float" | "exact" | "label" | "neighbors" | "missing"
    passed: bool
    reference_dtype: str | None = None
    onnx_dtype: str | None = None
    reference_shape: list[int] | None = None
    onnx_shape: list[int] | None = None
    atol: float | None = None
    rtol: float | None = None
    rule: str | None = None
    max_abs_error: float | None = None
    max_rel_error: float | None = None
    mean_abs_error: float | None = None
    mismatched: int = 0
    total: int = 0
    worst: dict[str, Any] | None = None  # {"index": [...], "reference": x, "onnx": y}
    ties: int = 0  # values that differ only by a tie the original itself does not break uniquely
    on_tie: int = 0  # values whose reference has more than one correct answer (judge/ties.py)
    nan_mismatch: int = 0
    excused: int = 0  # values within tolerance only thanks to the noise floor (beyond atol + rtol * |ref|)
    error_stat: str | None = None  # "max" (element-wise) | "mean" | "quantile:Q"
    stat_value: float | None = None  # the statistic measured ...
    stat_limit: float | None = None  # ... and the bound it had to stay within
    agreement: float | None = None  # labels: fraction of rows whose label matches
    topk: int | None = None
    topk_agreement: float | None = None  # fraction of rows whose top-k class sets match
    topk_ties: int = 0
    noise_floor: float | None = None  # the original's own noise on this output (judge/calibration.py)
    k: float | None = None  # the multiple of the floor allowed on top of the dtype default
    floor_method: str | None = None
    shape_note: str | None = None  # unit-axis difference between reference and ONNX, aligned before comparing
    quantum: float | None = None  # failing errors are whole multiples of this (tree threshold flips)
    problems: list[str] = field(default_factory=list)
    # float outputs: histogram, sample and worst elements of |onnx - ref| for the HTML report;
    # bounded in size, and left out of as_dict() unless asked for (JSON and JUnit stay small)
    errors: ErrorSummary | None = field(default=None, repr=False, compare=False)
    # values judged ties: (flat indices, the tie-break answers ONNX Runtime matched), for the published
    # test data (pipelines/run.py); not serialised
    tie_answers: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.errors = ErrorSummary.from_value(self.errors)

    def as_dict(self, *, errors: bool = False) -> dict[str, Any]:
        out = asdict(self)
        out.pop("tie_answers")
        if not errors or self.errors is None:
            out.pop("errors")
        return out


_FLOAT_PRECISION = {"bfloat16": 8, "float16": 11, "float32": 24, "float64": 53}  # mantissa bits


def coarser_float(a: np.dtype, b: np.dtype) -> np.dtype:
    """The less precise of two float dtypes: a bfloat16 reference compared with a float32
    ONNX output can only be held to bfloat16's tolerance, and vice versa."""
    bits = {d: _FLOAT_PRECISION.get(dtype_name(d), 0) for d in (a, b)}
    known = [d for d in (b, a) if bits[d]]
    return min(known, key=lambda d: bits[d]) if known else b


def _kind(dtype: np.dtype) -> str:
    if dtype.kind == "f" or dtype_name(dtype) == "bfloat16":
        return "float"
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "b":
        return "bool"
    if dtype.kind in "USO":
        return "string"
    return dtype.kind


def _scalar(x: Any) -> Any:
    return x.item() if hasattr(x, "item") else x


def _compare_floats(c: OutputComparison, ref: np.ndarray, got: np.ndarray, tol: Tolerance, tie: TieSet | None = None) -> None:
    atol, rtol = tol.atol, tol.rtol
    r = ref.astype(np.float64)
    g = got.astype(np.float64)
    ref_nan, got_nan = np.isnan(r), np.isnan(g)
    nan_bad = ref_nan != got_nan
    both_inf_same = np.isinf(r) & np.isinf(g) & (np.sign(r) == np.sign(g))
    with np.errstate(invalid="ignore", over="ignore"):
        abs_err = np.where(ref_nan | got_nan | both_inf_same, 0.0, np.abs(g - r))
        rel_err = abs_err / np.maximum(np.abs(r), np.finfo(np.float64).tiny)
        scale = np.abs(np.where(np.isinf(r) | ref_nan, 0.0, r))
        extra = _tie_floor(tol.extra(r.shape), tol, tie, r.shape)  # K x the original's noise floor (judge/calibration.py)
        limit = atol + extra + rtol * scale
        bad = (abs_err > limit) | nan_bad
        tied = _within_tie(c, tie, g, bad, atol + extra, rtol)
        bad &= ~tied
        excused = (abs_err > atol + rtol * scale) & ~bad & ~tied
    c.total = int(r.size)
    c.excused = int(excused.sum())
    c.mismatched = int(bad.sum())
    c.nan_mismatch = int(nan_bad.sum())
    c.error_stat = tol.stat
    if r.size:
        finite = np.isfinite(abs_err)
        c.max_abs_error = float(abs_err.max()) if finite.all() else float("inf")
        c.mean_abs_error = float(abs_err[finite].mean()) if finite.any() else float("inf")
        c.max_rel_error = float(np.where(abs_err == 0, 0.0, rel_err).max())
        idx = np.unravel_index(int(np.argmax(np.where(bad, np.inf, abs_err))), r.shape)
        c.worst = {"index": [int(i) for i in idx], "reference": _scalar(ref[idx]), "onnx": _scalar(got[idx])}
        c.errors = summarize_errors(r, g, abs_err, limit, bad, atol=atol + _typical(extra), rtol=rtol)
    if tol.stat == "mean" and r.size:
        c.stat_value = c.mean_abs_error
        c.stat_limit = float(atol + np.mean(extra) + rtol * scale.mean())
        c.rule = f"{tol.rule}: mean |onnx - ref| <= {atol:g} + {rtol:g} * mean |ref|"
        failed = not (c.stat_value <= c.stat_limit)
        what = f"mean abs error {c.stat_value:.3g} exceeds {c.stat_limit:.3g} ({c.mismatched} of {c.total} values beyond element-wise tolerance)"
    elif tol.quantile is not None and r.size:
        c.stat_value = 1.0 - c.mismatched / c.total  # fraction of elements within tolerance
        c.stat_limit = tol.quantile
        c.rule = f"{tol.rule}: at least {tol.quantile:g} of elements within |onnx - ref| <= {atol:g} + {rtol:g} * |ref|"
        failed = c.stat_value < tol.quantile
        what = f"only {c.stat_value:.4g} of values are within atol={atol:g} rtol={rtol:g}; {tol.quantile:g} required"
    else:
        c.stat_value = c.max_abs_error
        c.rule = f"{tol.rule}: |onnx - ref| <= {atol:g}{' + K x floor' if tol.k else ''} + {rtol:g} * |ref| element-wise"
        failed = bool(c.mismatched)
        what = (
            f"{c.mismatched} of {c.total} values differ beyond atol={atol:g}{f' + {tol.k:g} x noise floor' if tol.k else ''} "
            f"rtol={rtol:g} (max abs error {c.max_abs_error:.3g})"
        )
    if c.on_tie:
        c.rule += f"; {TIE_RULE}"
    if c.nan_mismatch and not failed:
        failed, what = True, f"{c.nan_mismatch} of {c.total} values are NaN on one side only"
    if failed:
        c.problems.append(what)
        c.quantum = _quantum(abs_err[bad & np.isfinite(abs_err)])


def _tie_floor(extra: np.ndarray | float, tol: Tolerance, tie: TieSet | None, shape: tuple[int, ...]) -> np.ndarray | float:
    """On values with several correct answers, K x the output's typical floor instead of the floor
    measured there: a one-ulp move of such a row breaks the tie the other way, and that jump, allowed
    once, would let any value within it pass; the tie's own answers account for it instead."""
    if tie is None or tie.answers(shape) is None or not tol.k:
        return extra
    return np.where(tie.on_tie.reshape(shape), tol.k * (tol.floor or 0.0), extra)


def _within_tie(c: OutputComparison, tie: TieSet | None, got: np.ndarray, bad: np.ndarray, atol: Any, rtol: float) -> np.ndarray:
    """Values beyond tolerance that are within tolerance of another answer of the original's valid
    tie-breaks (``atol`` may be per element: K x the noise floor); counted in ``c.ties``."""
    answers = None if tie is None else tie.answers(got.shape)
    if answers is None:
        return np.zeros_like(bad)
    on_tie = tie.on_tie.reshape(got.shape)
    limit = np.expand_dims(np.broadcast_to(atol, got.shape), -1) + rtol * np.abs(answers)
    with np.errstate(invalid="ignore"):
        near = np.abs(got[..., None] - answers) <= limit
        tied = bad & on_tie & np.any(near, axis=-1)
    c.on_tie, c.ties = int(on_tie.sum()), int(tied.sum())
    if c.ties:
        matched = np.take_along_axis(answers, np.argmax(near, axis=-1)[..., None], axis=-1)[..., 0]
        c.tie_answers = (np.flatnonzero(tied), matched.reshape(-1)[np.flatnonzero(tied)])
    return tied


def _typical(extra: np.ndarray | float) -> float:
    """The median of K x the noise floor (per element where calibration measured it per element)."""
    return float(np.median(extra)) if np.ndim(extra) else float(extra)


def _quantum(errors: np.ndarray) -> float | None:
    """The step when every error beyond tolerance is a whole multiple of one value (>= 1e-3).

    A tree ensemble whose tree takes the other branch on a float32-rounded threshold moves
    its average by exactly leaf_difference / n_estimators: 1/50 for a 50-tree classifier.
    One error is a multiple of itself, which shows nothing: it takes two.
    """
    if errors.size < 2:
        return None
    q = float(errors.min())
    if q < 1e-3:
        return None
    ratio = errors / q
    return q if bool(np.all(np.abs(ratio - np.round(ratio)) < 0.02)) else None


def _tie_rows(probabilities: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """Rows whose top-two reference probabilities are within tolerance of each other."""
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] < 2:
        return np.zeros(p.shape[:1], dtype=bool)
    top2 = np.sort(p, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) <= atol + rtol * np.abs(top2[:, 1])


def compare_outputs(
    reference: dict[str, np.ndarray],
    onnx_outputs: dict[str, np.ndarray],
    *,
    policy: TolerancePolicy | None = None,
    output_names: list[str] | None = None,
    ties: Mapping[str, TieSet] | None = None,
) -> list[OutputComparison]:
    """Compare every output; never stops at the first failure.

    ``ties``: per output, the answers of the original's valid tie-breaks where it has more than
    one (judge/ties.py); a value that matches one of them is a tie, counted and not failed.
    """
    policy = policy or TolerancePolicy()
    ties = ties or {}
    names = list(output_names or onnx_outputs)
    results: list[OutputComparison] = []
    for name in names:
        if name not in reference:
            results.append(
                OutputComparison(name, "missing", False, problems=[f"reference has no output named {name!r}"])
            )
            continue
        if name not in onnx_outputs:
            results.append(OutputComparison(name, "missing", False, problems=[f"ONNX model has no output {name!r}"]))
            continue
        ref, got = np.asarray(reference[name]), np.asarray(onnx_outputs[name])
        c = OutputComparison(
            name,
            "float" if _kind(got.dtype) == "float" else "exact",
            True,
            reference_dtype=dtype_name(ref.dtype),
            onnx_dtype=dtype_name(got.dtype),
            reference_shape=list(ref.shape),
            onnx_shape=list(got.shape),
        )
        kr, kg = _kind(ref.dtype), _kind(got.dtype)
        if kr != kg and not {kr, kg} <= {"int", "bool"}:
            c.problems.append(f"dtype kind differs: reference {c.reference_dtype}, ONNX {c.onnx_dtype}")
        if ref.shape != got.shape and ref.size == got.size and _squeezed(ref.shape) == _squeezed(got.shape):
            # [N, 1] against [N]: a convention of the framework or the converter, not a wrong value;
            # compared after alignment and reported as a signature note (a warning, not a failure)
            c.shape_note = f"reference {list(ref.shape)} and ONNX {list(got.shape)} differ only by unit axes: compared after aligning"
            ref = ref.reshape(got.shape)
        elif ref.shape != got.shape:
            c.problems.append(f"shape differs: reference {list(ref.shape)}, ONNX {list(got.shape)}")
        if not c.problems:
            tol = policy.for_output(name, coarser_float(ref.dtype, got.dtype))
            if c.kind == "float" or (_kind(got.dtype) == "int" and _kind(ref.dtype) == "int" and name in policy.per_output):
                c.kind = "float" if c.kind == "float" else "integer-tolerance"
                c.atol, c.rtol = tol.atol, tol.rtol
                c.noise_floor, c.k, c.floor_method = tol.floor, tol.k, tol.floor_method
                _compare_floats(c, ref, got, tol, ties.get(name))
                if policy.topk and c.kind == "float":
                    _check_topk(c, ref, got, policy.topk, tol)
            else:
                c.atol, c.rtol = 0.0, 0.0
                bad = _compare_exact(c, ref, got, tol)
                if name in LABEL_OUTPUTS:
                    c.agreement = 1.0 - c.mismatched / c.total if c.total else 1.0
                    if c.mismatched:
                        bad = _excuse_ties(c, bad, ref, got, reference, policy)
                elif name in NEIGHBOR_OUTPUTS and c.mismatched:
                    bad = _excuse_neighbor_ties(c, bad, ref, got, reference.get(NEIGHBOR_OUTPUTS[name]), policy)
                if name in ties:
                    _excuse_choice_ties(c, bad, ref, got, ties[name])
        c.passed = not c.problems
        results.append(c)
    extra = sorted(set(reference) - set(names))
    for name in extra:
        results.append(OutputComparison(name, "missing", False, problems=[f"ONNX model has no output {name!r}"]))
    return results


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def _compare_exact(c: OutputComparison, ref: np.ndarray, got: np.ndarray, tol: Tolerance) -> np.ndarray:
    c.rule = tol.rule
    if c.onnx_dtype and _kind(got.dtype) == "string":
        bad = ref.astype(str) != got.astype(str)
    else:
        bad = ref != got
    c.total = int(ref.size)
    c.mismatched = int(np.sum(bad))
    if c.mismatched:
        idx = np.unravel_index(int(np.argmax(bad)), ref.shape)
        c.worst = {"index": [int(i) for i in idx], "reference": _scalar(ref[idx]), "onnx": _scalar(got[idx])}
        c.problems.append(f"{c.mismatched} of {c.total} values differ (exact comparison)")
    return bad


def _recount(c: OutputComparison, bad: np.ndarray, tied: np.ndarray, ref: np.ndarray, got: np.ndarray, what: str) -> np.ndarray:
    """Take the differing values that are ties (``bad & tied``) out of the mismatches and count them;
    the rest stay mismatches, with their worst and one problem line ("N of M ``what``"). The real mismatches."""
    real = bad & ~tied
    c.ties += int(np.sum(bad & tied))
    c.mismatched = int(real.sum())
    c.problems.clear()
    if c.mismatched:
        idx = tuple(int(i) for i in np.argwhere(real)[0])
        c.worst = {"index": list(idx), "reference": _scalar(ref[idx]), "onnx": _scalar(got[idx])}
        c.problems.append(f"{c.mismatched} of {c.total} {what}")
    return real


def _excuse_ties(
    c: OutputComparison,
    bad: np.ndarray,
    ref: np.ndarray,
    got: np.ndarray,
    reference: dict[str, np.ndarray],
    policy: TolerancePolicy,
) -> np.ndarray:
    prob_name = next((p for p in PROBABILITY_OUTPUTS if p in reference), None)
    if prob_name is None or bad.ndim != 1:
        return bad
    probs = np.asarray(reference[prob_name])
    if probs.shape[0] != bad.shape[0]:
        return bad
    tol = policy.for_output(prob_name, np.dtype(np.float32) if probs.dtype == np.float64 else probs.dtype)
    c.kind = "label"
    c.rule = f"exact except ties within atol={tol.atol:g} rtol={tol.rtol:g} of {prob_name!r}"
    return _recount(c, bad, _tie_rows(probs, tol.atol, tol.rtol), ref, got, "labels differ on rows without a probability tie")


def _excuse_neighbor_ties(
    c: OutputComparison,
    bad: np.ndarray,
    ref: np.ndarray,
    got: np.ndarray,
    distances: np.ndarray | None,
    policy: TolerancePolicy,
) -> np.ndarray:
    """Neighbour indices that differ only among equidistant neighbours are ties, not mismatches.

    At a differing (row, j), the ONNX neighbour is a tie when the reference lists it at j' with a
    distance within tolerance of the distance at j, or, absent from the reference row, when the
    distance at j ties with the row's last one (the (k+1)-th neighbour was as near as the k-th).
    """
    if distances is None or bad.ndim != 2 or np.shape(distances) != ref.shape:
        return bad
    d = np.asarray(distances, dtype=np.float64)
    tol = policy.for_output(NEIGHBOR_OUTPUTS[c.name], np.dtype(np.float32))
    close = lambda a, b: np.abs(a - b) <= tol.atol + tol.rtol * np.abs(a)  # noqa: E731
    ties = np.zeros_like(bad)
    for row, j in zip(*np.nonzero(bad)):
        where = np.flatnonzero(ref[row] == got[row, j])
        other = d[row, where[0]] if where.size else d[row, -1]
        ties[row, j] = close(d[row, j], other)
    c.kind = "neighbors"
    c.rule = f"exact except equidistant neighbours (distances within atol={tol.atol:g} rtol={tol.rtol:g})"
    return _recount(c, bad, ties, ref, got, "neighbour indices differ where the distances do not tie")


def _excuse_choice_ties(c: OutputComparison, bad: np.ndarray, ref: np.ndarray, got: np.ndarray, tie: TieSet) -> None:
    """Exact values (an outlier flag, a class label) that equal the answer of another valid
    tie-break of the original (judge/ties.py) are ties, not mismatches."""
    allowed = tie.allows(got)
    if allowed is None:
        return
    on_tie = tie.on_tie.reshape(got.shape)
    c.on_tie = int(on_tie.sum())
    if not c.on_tie:
        return
    c.kind = "label" if c.name in LABEL_OUTPUTS else c.kind
    c.rule = f"{c.rule}; {TIE_RULE}"
    if c.mismatched:
        _recount(c, bad, allowed & on_tie, ref, got, "values differ from every answer of the original's tie-breaks")
        tied = np.flatnonzero(bad & allowed & on_tie)
        c.tie_answers = (tied, got.reshape(-1)[tied]) if tied.size else None


def _check_topk(c: OutputComparison, ref: np.ndarray, got: np.ndarray, k: int, tol: Tolerance) -> None:
    """Task-level check for scores with a class axis (last axis): the top-k class sets agree.

    Rows where the reference's k-th and (k+1)-th scores are within tolerance are ties
    (either set is right) and are counted, not failed.
    """
    if ref.ndim < 2 or ref.shape[-1] <= k or ref.size == 0:
        return
    r = ref.reshape(-1, ref.shape[-1]).astype(np.float64)
    g = got.reshape(-1, got.shape[-1]).astype(np.float64)
    order = np.argsort(-r, axis=1, kind="stable")
    ref_top = np.sort(order[:, :k], axis=1)
    got_top = np.sort(np.argsort(-g, axis=1, kind="stable")[:, :k], axis=1)
    differs = np.any(ref_top != got_top, axis=1)
    kth = np.take_along_axis(r, order[:, k - 1 : k + 1], axis=1)
    ties = np.abs(kth[:, 0] - kth[:, 1]) <= tol.atol + tol.rtol * np.abs(kth[:, 0])
    real = differs & ~ties
    c.topk = k
    c.topk_ties = int(np.sum(differs & ties))
    c.topk_agreement = float(1.0 - real.mean())
    c.rule = f"{c.rule}; top-{k} class sets agree except ties"
    if real.any():
        c.problems.append(
            f"top-{k} classes differ on {int(real.sum())} of {len(real)} rows without a tie "
            f"(top-{k} agreement {100 * c.topk_agreement:.2f}%)"
        )
