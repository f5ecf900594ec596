"""Values the original does not define uniquely: every answer a valid tie-break gives, per value.

A nearest-neighbour model whose k-th and (k+1)-th neighbours are equidistant may use either: both
neighbour sets are correct, and an output that depends on the set (a LocalOutlierFactor score, a
KNeighborsRegressor mean, a KNeighborsClassifier vote) has one correct value per set. The
converter enumerates them (converters/sklearn_ties.py) and the judge accepts a value within the
normal tolerance of one of them (judge/compare.py): not anywhere in the range they span, so a
broken model cannot hide between two correct answers. Such values are counted
(``OutputComparison.ties``) and reported, never hidden; a pass that rests only on them proves
nothing and is vacuous (:func:`only_ties_reason`). The test data published with the model keeps
the tie-break ONNX Runtime took (:func:`settled_outputs`), so a verifier without the original agrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

NEIGHBOR_TIE = "the k-th and (k+1)-th neighbours are equidistant"


@dataclass(frozen=True)
class TieSet:
    """One output's answers under every valid tie-break.

    ``alternatives`` has the output's shape plus a last axis of outcomes, the original's own
    first (padding repeats it): a value whose outcomes all agree is not on a tie. ``capped``
    counts rows whose tied group had more tie-breaks than were enumerated; they are held to
    the original's own answer alone.
    """

    alternatives: np.ndarray
    cause: str = NEIGHBOR_TIE
    capped: int = 0

    @property
    def numeric(self) -> bool:
        return self.alternatives.dtype.kind in "fiub"

    @property
    def on_tie(self) -> np.ndarray:
        """Values with more than one correct answer."""
        a = self.alternatives
        if self.numeric:
            return a.min(axis=-1) != a.max(axis=-1)
        return np.any(a.astype(str) != a[..., :1].astype(str), axis=-1)

    def answers(self, shape: tuple[int, ...]) -> np.ndarray | None:
        """The correct answers as float64, shaped ``shape + (outcomes,)``; None when they do not fit ``shape``."""
        if not self.numeric or int(np.prod(self.alternatives.shape[:-1])) != int(np.prod(shape)):
            return None
        return self.alternatives.astype(np.float64).reshape(tuple(shape) + self.alternatives.shape[-1:])

    def allows(self, got: np.ndarray) -> np.ndarray | None:
        """Elements of ``got`` equal to one of their correct answers (exact outputs); None when shapes differ."""
        a = self.alternatives
        if int(np.prod(a.shape[:-1])) != got.size:
            return None
        a = a.reshape(got.shape + a.shape[-1:])
        if self.numeric and got.dtype.kind in "fiub":
            return np.any(a == got[..., None], axis=-1)
        return np.any(a.astype(str) == got.astype(str)[..., None], axis=-1)


def pack_ties(ties: dict[str, TieSet]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(JSON-able metadata, arrays) for the worker protocol."""
    meta = {name: {"cause": t.cause, "capped": t.capped} for name, t in ties.items()}
    return meta, {name: t.alternatives for name, t in ties.items()}


def unpack_ties(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> dict[str, TieSet]:
    return {name: TieSet(arrays[name], str(m["cause"]), int(m["capped"])) for name, m in meta.items() if name in arrays}


def tie_summary(cases: Iterable[Any]) -> dict[str, tuple[int, str]]:
    """Output -> (most values excused as ties in one case, that case's name), for outputs with any."""
    out: dict[str, tuple[int, str]] = {}
    for case in cases:
        for o in case.outputs:
            if o.ties and o.ties > out.get(o.name, (0, ""))[0] and o.kind != "neighbors":
                out[o.name] = (o.ties, case.name)
    return out


def tie_message(name: str, count: int, case: str, cause: str = NEIGHBOR_TIE) -> str:
    return (f"output {name!r}: {count} value(s) at {case} sit on a neighbour tie ({cause}) and differ from the "
            f"original's own choice; each matches the answer of another valid tie-break, and any of those answers is correct "
            f"(published test data keeps the tie-break ONNX Runtime took)")


def only_ties_reason(cases: Iterable[Any], informative: set[str]) -> str | None:
    """Why a pass proves nothing when every informative value sat on a tie; None when some did not.

    ``informative``: the outputs whose reference can tell right from wrong (judge/degenerate.py).
    """
    cases = [c for c in cases if c.outputs]
    outputs = [o for c in cases for o in c.outputs if o.name in informative]
    if not outputs or not any(o.ties for o in outputs):
        return None
    if any(o.on_tie < o.total for o in outputs):
        return None
    return ("every informative value of the original sits on a neighbour tie (" + NEIGHBOR_TIE + "), so the "
            "comparison only shows that ONNX Runtime gives the answer of one valid tie-break or another "
            "(pass rows whose nearest neighbours are not equidistant)")


def off_ties(bound: dict[str, tuple[int, int, str]], floors: dict[str, Any], ties: dict[str, TieSet]) -> dict[str, tuple[int, int, str]]:
    """Values of a smooth output that jumped under a one-ulp move, less those on a neighbour tie: these
    are held to the tie-breaks' answers (judge/compare.py), not allowed the jump."""
    out = {}
    for name, (on, total, unit) in bound.items():
        jumps, tie = getattr(floors.get(name), "jumps", None), ties.get(name)
        if unit == "values" and jumps is not None and tie is not None and tie.on_tie.size == jumps.size:
            on = int(np.sum((jumps.reshape(-1) > 0) & ~tie.on_tie.reshape(-1)))
        if on:
            out[name] = (on, total, unit)
    return out


def settled_outputs(outputs: dict[str, np.ndarray], cases: Iterable[Any], case_name: str) -> dict[str, np.ndarray]:
    """A case's outputs with each value ONNX Runtime answered on a tie (a :class:`TieSet`) set to the
    tie-break it took, also a correct answer of the original: what publish and --save-evidence store
    as test data, so a zoo verifier or an evidence replay agrees with ONNX Runtime. Unchanged without ties."""
    first = next((c for c in cases if c.name == case_name and c.outputs), None)
    settled = dict(outputs)
    for o in first.outputs if first is not None else []:
        if o.tie_answers is not None and o.name in settled:
            value = np.array(settled[o.name])
            index, answers = o.tie_answers
            value.reshape(-1)[index] = answers.astype(value.dtype)
            settled[o.name] = value
    return settled
