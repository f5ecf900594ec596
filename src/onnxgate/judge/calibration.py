"""The original's own noise floor, per output: how far its answer moves under float32 rounding.

A conversion is faithful when the ONNX model is about as close to the exact answer as the
original framework itself is. Nothing here knows a framework; two measurements, both run
by the original in its worker:

* **float64 reference** (``Converter.reference64``: torch ``.double()``, Keras rebuilt under
  a float64 dtype policy, scikit-learn, which computes in float64 already). The original's
  own float32 error is ``|original(x) - original64(x)|`` on the same input values: the
  rounding of every layer, which is what a float32 ONNX graph incurs too. The ONNX output is
  then compared with the float64 run, the best reference there is (pipelines/run.py).
* **input perturbation**: the original on copies of the nominal inputs whose float values
  were moved by one float32 ulp (all up, all down, then a random direction per element).
  The outputs move by what float32 rounding of the inputs alone can cause.

Which one sets the floor: both, element-wise maximum (:func:`combined`). The float64 error
is one draw of the rounding error: on a given value it can be near zero by luck, while the
ONNX graph's draw is not, so it is raised to its median over the output (its typical size).
It never sees a discontinuity the float32 run did not cross -- a tree threshold, a repeated
quantile -- that an input within half an ulp of it can take either way, which is what the
perturbation floor measures (by crossing it both ways). Where the original computes in
float64 already (scikit-learn), its float32 error is zero and the perturbation floor alone
remains; where float64 is impossible (a SavedModel, TorchScript, a model refusing float64),
so does it. ``Floor.source`` says per output which it was: "float64 reference", "input
perturbation" or "dtype default" (nothing measurable). The ONNX error of a faithful
conversion is a small multiple of this floor (``K`` in judge/tolerances.py, chosen from
measurements).

The floor is kept per element: for each output value, the largest change over ``TRIALS``
seeded perturbations, raised to at least the output's typical (median) floor, so a smooth
network gets an allowance on every value.

Stepwise outputs (only a tree ensemble, a comparison, an argmax... reaches them: judge/steps.py)
get **jump floors** instead (source ``JUMPS``): their output stays put under a one-ulp move,
or jumps by a whole leaf difference where the input sits on a split. A jump is not noise: it
is kept per value, never raised to a median (when most training rows sit on splits, the median
is a jump, and raising every row to it hid a booster trained on y x 1.01), and allowed once
(K = 1) on the values whose own move caused it; nowhere else, not even on cases whose rows were
never measured. :func:`threshold_bound` counts the rows on a split; most of the sample on
splits makes the check vacuous (judge/degenerate.py). Jumps apply only where a row can flip in
a float32 graph (:func:`jump_outputs`); trees reading the inputs as given in an original that
keeps float32 thresholds (XGBoost) make the graph's very decisions: ``EXACT``, floor 0.

Smooth outputs can jump too (a nearest neighbour, a quantile that changes): a change that one
direction of the move causes ``JUMP`` times beyond the other is split into the symmetric
response (the noise, times K) and the jump, allowed once (``Floor.jumps``). ``Floor.value`` is the typical floor
shown in the report. Integer and boolean outputs, and models without float inputs
(token ids), have no measurable floor (value 0, said in ``method``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np

TRIALS = 3
FLOAT64 = "float64 reference"
PERTURBATION = "input perturbation"
DTYPE_DEFAULT = "dtype default"
JUMPS = "threshold jumps"
EXACT = "exact decisions"


@dataclass(frozen=True)
class Floor:
    """The original's noise on one output: ``value`` (typical, absolute), per element, and how it was obtained."""

    value: float
    method: str
    elements: np.ndarray | None = field(default=None, repr=False, compare=False)  # nominal case's shape
    scale: float = 0.0  # the output's largest finite |value| on the nominal case
    source: str = PERTURBATION  # FLOAT64 | PERTURBATION | DTYPE_DEFAULT | JUMPS | EXACT
    # smooth outputs: per value, a jump one move caused beyond the symmetric response (allowed once, not K times)
    jumps: np.ndarray | None = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        top = float(self.elements.max()) if self.elements is not None and self.elements.size else self.value
        out = {"value": self.value, "max": top, "scale": self.scale, "source": self.source, "method": self.method}
        if self.source == JUMPS:
            out["rows_on_threshold"], out["rows"] = self.on_threshold()[:2]
        elif self.jumps is not None:
            out["values_on_threshold"], out["values"] = self.on_threshold()[:2]
        return out

    def jump_allowance(self, shape: tuple[int, ...]) -> np.ndarray | float:
        """The jumps of a smooth output, allowed once, where they were measured (the nominal's first rows); else 0."""
        j = self.jumps
        if j is not None and j.ndim == len(shape) and j.shape[1:] == tuple(shape[1:]) and j.shape[0] >= (shape[0] if shape else 0):
            return j[: shape[0]] if shape else j
        return 0.0

    def allowance(self, shape: tuple[int, ...]) -> np.ndarray | float:
        """Per-element floor for an output of ``shape``: the nominal's first rows, else the typical
        value -- except for jumps, which are allowed only where they were measured (else 0)."""
        e = self.elements
        if e is not None and e.ndim == len(shape) and e.shape[1:] == tuple(shape[1:]) and e.shape[0] >= (shape[0] if shape else 0):
            return e[: shape[0]] if shape else e
        return 0.0 if self.source == JUMPS else self.value

    def on_threshold(self) -> tuple[int, int, str]:
        """What jumped when its own inputs moved by one ulp, on the nominal case: (count, of, unit).
        A stepwise output counts rows (the row's answer jumps); a smooth one values (the other values
        of the row are still checked as usual)."""
        if self.source == JUMPS:
            e = self.elements
            if e is None or e.ndim == 0:
                return (int(bool(e is not None and e > 0)), 1, "rows")
            return int((e.reshape(e.shape[0], -1) > 0).any(axis=1).sum()), int(e.shape[0]), "rows"
        if self.jumps is None:
            return (0, int(self.elements.size) if self.elements is not None else 0, "values")
        return int((self.jumps > 0).sum()), int(self.jumps.size), "values"


def perturbed(feeds: dict[str, np.ndarray], seed: int, direction: int = 0) -> dict[str, np.ndarray] | None:
    """``feeds`` with every float element moved one ulp: up (``direction`` 1), down (-1) or
    each way at random (0, seeded); None when no input is float."""
    rng = np.random.default_rng(seed)
    out, moved = {}, False
    for name, value in feeds.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and arr.size:
            x32 = arr.astype(np.float32)
            up = rng.random(arr.shape) < 0.5 if direction == 0 else np.full(arr.shape, direction > 0)
            toward = np.where(up, np.float32(np.inf), np.float32(-np.inf))
            finite = np.isfinite(x32)
            x32 = np.where(finite, np.nextafter(x32, toward), x32).astype(np.float32)
            out[name] = x32.astype(arr.dtype)
            moved = True
        else:
            out[name] = arr
    return out if moved else None


def noise_floors(
    infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]],
    feeds: dict[str, np.ndarray],
    reference: dict[str, np.ndarray],
    *,
    trials: int = TRIALS,
    seed: int = 0,
    stepwise: frozenset[str] = frozenset(),
    stacked: bool = False,
) -> dict[str, Floor]:
    """Per float output: the element-wise max over ``trials`` of |original(perturbed) - original(feeds)|;
    for ``stepwise`` outputs (judge/steps.py) the jumps, per value (:func:`_jump_floor`). ``stacked``: the
    original computes each row from that row alone, so the perturbed copies may share one call
    (:func:`perturbed_outputs`)."""
    changes: dict[str, list[np.ndarray]] = {n: [] for n, v in reference.items() if _is_float(v)}
    if not changes:
        return {}
    outputs = perturbed_outputs(infer, feeds, trials, seed, stacked)
    if outputs is None:
        return {n: Floor(0.0, "not measurable: the model has no float inputs to perturb", None, _scale(reference[n]), DTYPE_DEFAULT)
                for n in changes}
    for out in outputs:
        for name in changes:
            a, b = np.asarray(reference[name], np.float64), np.asarray(out.get(name), np.float64)
            if a.shape != b.shape:
                continue
            with np.errstate(invalid="ignore"):
                diff = np.abs(a - b)
            changes[name].append(np.where(np.isfinite(diff), diff, 0.0))
    method = f"largest change over {trials} runs of the original on inputs moved by one float32 ulp (up, down, random), per value"
    return {n: (_jump_floor if n in stepwise else _floor)(v, method, _scale(reference[n])) for n, v in changes.items()}


_DIRECTIONS = (1, -1)  # the first trials move every input up, then down: a discontinuity within an ulp is crossed
STACK_ROWS = 4096  # stacked copies up to this many rows in all: a few rows' call is mostly the call's own overhead


def perturbed_outputs(infer: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]], feeds: dict[str, np.ndarray],
                      trials: int, seed: int, stacked: bool) -> list[dict[str, np.ndarray]] | None:
    """The original's outputs on each trial's perturbed copy of ``feeds`` (None: no float input to move).

    ``stacked`` (rows independent: scikit-learn, the boosters): the copies are concatenated along the rows
    into one call and its outputs split back, the same values as one call per copy for a third of the
    calls' overhead; where an output does not come back with the stacked rows, one call per copy."""
    moved = [perturbed(feeds, seed + 1000 + t, _DIRECTIONS[t] if t < len(_DIRECTIONS) else 0) for t in range(trials)]
    if not moved or any(m is None for m in moved):
        return None
    rows = _leading_rows(feeds)
    if stacked and trials > 1 and rows and rows * trials <= STACK_ROWS:
        out = infer({name: np.concatenate([m[name] for m in moved]) for name in feeds})
        split = _split_rows(out, rows, trials)
        if split is not None:
            return split
    return [infer(m) for m in moved]


def _leading_rows(feeds: dict[str, np.ndarray]) -> int:
    """The row count every input shares (0: none shared, or a scalar input)."""
    sizes = {np.shape(v)[0] if np.ndim(v) else 0 for v in feeds.values()}
    return sizes.pop() if len(sizes) == 1 else 0


def _split_rows(out: dict[str, np.ndarray], rows: int, parts: int) -> list[dict[str, np.ndarray]] | None:
    """``out`` cut into ``parts`` consecutive blocks of ``rows`` rows; None when an output has another row count."""
    arrays = {k: np.asarray(v) for k, v in out.items()}
    if any(a.ndim == 0 or a.shape[0] != rows * parts for a in arrays.values()):
        return None
    return [{k: a[i * rows:(i + 1) * rows] for k, a in arrays.items()} for i in range(parts)]


def combined(perturbation: dict[str, Floor], nominal: dict[str, np.ndarray], wide: dict[str, np.ndarray] | None) -> dict[str, Floor]:
    """Per float output, the larger of the original's own float32 error against its float64 run
    (``wide``, raised to its median) and the perturbation floor, element by element."""
    if wide is None:
        return dict(perturbation)
    out = dict(perturbation)
    for name, floor in perturbation.items():
        own = _own_error(nominal.get(name), wide.get(name))
        if own is None:
            continue
        if floor.source == JUMPS:  # a float32 run's flips against float64 are jumps too: per value, never raised
            out[name] = _with_own_jumps(floor, own)
            continue
        if not own.any():
            out[name] = replace(floor, method=f"the original computes in float64 (it is its own float64 reference); {floor.method}")
            continue
        typical = float(np.median(own))
        own = np.maximum(own, typical)
        elements = own if floor.elements is None or floor.elements.shape != own.shape else np.maximum(own, floor.elements)
        out[name] = Floor(
            max(typical, floor.value),
            "the original's float32 error against its own float64 run, per value (raised to its median), "
            "or the input-perturbation floor where larger",
            elements, floor.scale, FLOAT64, floor.jumps,
        )
    return out


UNFAITHFUL = 64.0  # a float64 run this many times further from the float32 one than its perturbation noise ...
UNFAITHFUL_SHARE = 2.0**-12  # ... and beyond this share of the output's scale is another function, not a wider one


def faithful_wide(perturbation: dict[str, Floor], nominal: dict[str, np.ndarray],
                  wide: dict[str, np.ndarray] | None) -> tuple[dict[str, np.ndarray] | None, dict[str, float]]:
    """``wide`` without the outputs whose float64 run is not the original computed wider: a float64
    copy that a program's baked-in float32 constants or casts make compute something else (an exported
    program's masks) differs from the float32 run far beyond float32 rounding, and taking that
    difference as the floor would hide a real error (a weight x 1.01 passed). Returns the kept
    float64 outputs and, per dropped output, the typical difference seen (for the report)."""
    if wide is None:
        return None, {}
    kept, dropped = dict(wide), {}
    for name, floor in perturbation.items():
        own = _own_error(nominal.get(name), wide.get(name))
        if own is None or floor.source == JUMPS or not own.size:
            continue
        typical = float(np.median(own))
        if typical > UNFAITHFUL * floor.value and typical > UNFAITHFUL_SHARE * floor.scale:
            kept.pop(name, None)
            dropped[name] = typical
    return kept, dropped


COARSE = 1e-2  # K x the typical floor above this share of an output's scale: small errors go unseen


def coarse_floors(floors: dict[str, Floor], k: Callable[[Floor], float]) -> dict[str, float]:
    """Outputs whose allowance (``k(floor)`` x the typical floor) exceeds ``COARSE`` of their scale, with
    that share: most inputs sit on a discontinuity (trees, repeated quantiles) within one float32
    ulp, so this sample cannot detect an error below it (a detection limit, said, not hidden)."""
    return {n: k(f) * f.value / f.scale for n, f in floors.items()
            if f.source != JUMPS and f.scale > 0 and k(f) * f.value > COARSE * f.scale}


MOST = 0.5  # more than this share of rows (values) on a threshold: the check is blind on most of the sample


def threshold_bound(floors: dict[str, Floor]) -> dict[str, tuple[int, int, str]]:
    """Outputs with rows or values that sit on a threshold (a split, a repeated quantile, a neighbour
    that changes): name -> (how many jumped under a one-ulp move of their own inputs, of how many, unit)."""
    out = {}
    for name, f in floors.items():
        if f.source == JUMPS or f.jumps is not None:
            count = f.on_threshold()
            if count[0]:
                out[name] = count
    return out


def jump_outputs(stepwise: dict[str, bool], has_float64: bool) -> frozenset[str]:
    """The stepwise outputs (judge/steps.py: name -> decisions see computed values) whose rows can
    flip in a float32 graph: decisions on computed values (rounded differently), or any decision of
    an original that computes in float64 (its thresholds and inputs are rounded to float32)."""
    return frozenset(n for n, computed in stepwise.items() if computed or has_float64)


def exact_floors(names: frozenset[str], reference: dict[str, np.ndarray]) -> dict[str, Floor]:
    """Stepwise outputs that decide on the inputs as given, in an original that computes in float32
    (XGBoost: float32 thresholds): the graph makes the same decisions, so no row may flip, however
    near a split it sits; rtol and the dtype epsilon cover the float32 sums of the leaves."""
    method = ("decisions on the inputs as given, with the original's own float32 thresholds: nothing is rounded "
              "before them, so no row can flip; no allowance beyond rtol and the dtype epsilon")
    return {n: Floor(0.0, method, np.zeros(np.shape(reference[n])), _scale(reference[n]), EXACT)
            for n in names if n in reference and _is_float(reference[n])}


def _jump_floor(trials: list[np.ndarray], method: str, scale: float) -> Floor:
    """A stepwise output's floor: per value, the jump its own one-ulp moves caused, never raised
    to a median nor multiplied by K (K_BY_SOURCE[JUMPS] = 1): the up and down jumps added (a
    float32 graph can flip one tree each way on the same row), or the random move's if larger;
    0 on values that did not move. A jump is a leaf difference, not noise: scaling it would
    hide a wrong leaf, and spreading it to other rows would hide it everywhere."""
    if not trials:
        return Floor(0.0, method, None, scale, JUMPS)
    both_ways = trials[0] + trials[1] if len(trials) > 1 else trials[0]
    per_element = np.max(np.stack([both_ways, *trials[2:]]), axis=0)
    typical = float(np.median(per_element)) if per_element.size else 0.0
    return Floor(typical, "jumps of a stepwise output (tree ensemble, thresholds) where the original's own inputs, moved "
                 "by one float32 ulp up, down and at random, cross a threshold; allowed on those values only", per_element, scale, JUMPS)


def _with_own_jumps(floor: Floor, own: np.ndarray) -> Floor:
    if floor.elements is None or floor.elements.shape != own.shape or not own.any():
        return floor
    elements = np.maximum(floor.elements, own)
    return replace(floor, value=float(np.median(elements)), elements=elements,
                   method=floor.method + "; or the original's float32 flips against its own float64 run, where larger")


def _own_error(narrow: Any, wide: Any) -> np.ndarray | None:
    if narrow is None or wide is None:
        return None
    a, b = np.asarray(narrow, np.float64), np.asarray(wide, np.float64)
    if a.shape != b.shape:
        return None
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - b)
    return np.where(np.isfinite(diff), diff, 0.0)


def _scale(value: Any) -> float:
    x = np.asarray(value, np.float64)
    x = np.abs(x[np.isfinite(x)])
    return float(x.max()) if x.size else 0.0


JUMP = 16.0  # a change this many times the value's symmetric response (and the typical one) is a jump


def _floor(trials: list[np.ndarray], method: str, scale: float) -> Floor:
    """Per value: the largest change, raised to the typical (median) one; where it is a jump -- one
    direction moved the value over ``JUMP`` times as far as the other (a smooth response to a one-ulp
    move is about symmetric; a neighbour or a quantile that changes is not) -- the symmetric part is
    the noise (multiplied by K) and the rest a jump, allowed once (``Floor.jumps``)."""
    if not trials:
        return Floor(0.0, method, None, scale)
    per_element = np.max(np.stack(trials), axis=0)
    typical = float(np.median(per_element)) if per_element.size else 0.0
    noise = np.maximum(per_element, typical)
    if len(trials) < 2:
        return Floor(typical, method, noise, scale)
    response = np.maximum(np.minimum(trials[0], trials[1]), typical)
    jumped = per_element > JUMP * response
    if not jumped.any():
        return Floor(typical, method, noise, scale)
    return Floor(typical, method + "; a one-sided change beyond the symmetric response is a jump, allowed once",
                 np.where(jumped, response, noise), scale, PERTURBATION, np.where(jumped, per_element - response, 0.0))


def _is_float(value: Any) -> bool:
    arr = np.asarray(value)
    return arr.dtype.kind == "f" or arr.dtype.name == "bfloat16"
