"""The original's own noise floor, per output: how far its answer moves under float32 rounding.

A conversion is faithful when the ONNX model is about as close to the exact answer as the
original framework itself is. Nothing here knows a framework: the floor is measured by
running the original (in its worker) on copies of the nominal inputs whose float values
were moved by one float32 ulp in a random direction, element by element. The outputs move
by what float32 rounding of the inputs alone can cause; a float32 graph adds rounding of
the same size at each layer, so the ONNX error of a faithful conversion is a small
multiple of this floor (see ``K`` in judge/tolerances.py, chosen from measurements).

The floor is kept per element: for each output value, the largest change over ``TRIALS``
seeded perturbations, raised to at least the output's typical (median) floor. So a smooth
network gets an allowance on every value, while a tree ensemble -- whose outputs move only
on the rows where a perturbation flips a tree, and there by a whole leaf -- gets it on those
rows alone: a tampered leaf still fails everywhere else. ``Floor.value`` is the typical
floor shown in the report. Integer and boolean outputs, and models without float inputs
(token ids), have no measurable floor (value 0, said in ``method``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

TRIALS = 3


@dataclass(frozen=True)
class Floor:
    """The original's noise on one output: ``value`` (typical, absolute), per element, and how it was obtained."""

    value: float
    method: str
    elements: np.ndarray | None = field(default=None, repr=False, compare=False)  # nominal case's shape
    scale: float = 0.0  # the output's largest finite |value| on the nominal case

    def as_dict(self) -> dict[str, Any]:
        top = float(self.elements.max()) if self.elements is not None and self.elements.size else self.value
        return {"value": self.value, "max": top, "scale": self.scale, "method": self.method}

    def allowance(self, shape: tuple[int, ...]) -> np.ndarray | float:
        """Per-element floor for an output of ``shape``: the nominal's first rows, else the typical value."""
        e = self.elements
        if e is not None and e.ndim == len(shape) and e.shape[1:] == tuple(shape[1:]) and e.shape[0] >= (shape[0] if shape else 0):
            return e[: shape[0]] if shape else e
        return self.value


def perturbed(feeds: dict[str, np.ndarray], seed: int) -> dict[str, np.ndarray] | None:
    """``feeds`` with every float element moved one ulp up or down; None when no input is float."""
    rng = np.random.default_rng(seed)
    out, moved = {}, False
    for name, value in feeds.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f" and arr.size:
            x32 = arr.astype(np.float32)
            toward = np.where(rng.random(arr.shape) < 0.5, np.float32(-np.inf), np.float32(np.inf))
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
) -> dict[str, Floor]:
    """Per float output: the element-wise max over ``trials`` of |original(perturbed) - original(feeds)|."""
    changes: dict[str, list[np.ndarray]] = {n: [] for n, v in reference.items() if _is_float(v)}
    if not changes:
        return {}
    for t in range(trials):
        moved = perturbed(feeds, seed + 1000 + t)
        if moved is None:
            return {n: Floor(0.0, "not measurable: the model has no float inputs to perturb", None, _scale(reference[n])) for n in changes}
        out = infer(moved)
        for name in changes:
            a, b = np.asarray(reference[name], np.float64), np.asarray(out.get(name), np.float64)
            if a.shape != b.shape:
                continue
            with np.errstate(invalid="ignore"):
                diff = np.abs(a - b)
            changes[name].append(np.where(np.isfinite(diff), diff, 0.0))
    method = f"largest change over {trials} runs of the original on inputs moved by one float32 ulp, per value"
    return {n: _floor(v, method, _scale(reference[n])) for n, v in changes.items()}


def _scale(value: Any) -> float:
    x = np.asarray(value, np.float64)
    x = np.abs(x[np.isfinite(x)])
    return float(x.max()) if x.size else 0.0


def _floor(trials: list[np.ndarray], method: str, scale: float) -> Floor:
    if not trials:
        return Floor(0.0, method, None, scale)
    per_element = np.max(np.stack(trials), axis=0)
    typical = float(np.median(per_element)) if per_element.size else 0.0
    return Floor(typical, method, np.maximum(per_element, typical), scale)


def _is_float(value: Any) -> bool:
    arr = np.asarray(value)
    return arr.dtype.kind == "f" or arr.dtype.name == "bfloat16"
