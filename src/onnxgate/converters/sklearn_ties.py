"""Nearest-neighbour ties: every answer a valid tie-break of a scikit-learn neighbour model gives.

scikit-learn and skl2onnx's graph (Scan of float32 distances, then TopK, where equal values go to
the lower index) both take the k nearest fitted points, but when the k-th and (k+1)-th are
equidistant each may keep another one. Both sets are correct, and an output that depends on the
set differs: LocalOutlierFactor's score (each neighbour brings its own k-distance and lrd), a
KNeighborsRegressor's mean, a KNeighborsClassifier's vote. This module finds the query rows on
such a tie and computes the outputs of every valid neighbour set (judge/ties.py judges with them).

**Which points tie.** Distances are recomputed exactly (float64, from the differences, not the
expanded dot product: in numpy for Minkowski metrics, by scikit-learn's ``DistanceMetric`` otherwise). The graph computes them from float32 copies of the
fitted points, in float32: with u the unit roundoff of the graph's dtype, its distance to y is
off by at most ``u |y|`` (rounding y; the triangle inequality for a norm) plus ``(n + 3) u d``
(subtract, square, sum n terms, root), and the pipeline steps before it by about ``u |x|``. We
take four times that, ``eps = 4 u (|x| + max |y| + (n + 4) d_k)``. Two points can swap places
only when their exact distances are within ``2 eps``; so every point within ``2 eps`` of the k-th
distance is a candidate, the nearer ones are sure, and a valid set is the sure points plus any
choice of the candidates. An exact duplicate always ties.

**How many.** The choices of m of t candidates are enumerated up to :data:`MAX_TIE_BREAKS` per
row; a row with more is held to scikit-learn's own answer (counted as ``capped``, said in the
report). Before any alternative is trusted, the same formula on scikit-learn's own neighbour set
must reproduce its output; otherwise that output gets no tie set at all.

Covered: LocalOutlierFactor (novelty: ``label`` and ``scores``), KNeighborsClassifier
(``label``, ``probabilities``; one target), KNeighborsRegressor (``variable``),
KNeighborsTransformer (its dense graph: a tied candidate's entry is its distance, or 1, under one
tie-break and 0 under another) and KNNImputer (donors tied at the k-th nan-euclidean distance,
per missing value). Not needed: NearestNeighbors, whose ``index`` ties are judged from its own
``distance`` output (judge/compare.py); RadiusNeighbors*, whose neighbour set has no k-th place
(points exactly on the radius agree: RadiusNeighborsRegressor on an integer grid with radius 1, 2,
sqrt(2) and sqrt(5) passes with no mismatch; a point within float32 error of a radius that is not
one of its distances could still fall either way, and is not enumerated).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from math import comb
from typing import Any, Callable

import numpy as np

from onnxgate.judge.ties import TieSet

MAX_TIE_BREAKS = 512  # neighbour sets enumerated per query row
ROUNDOFF = {np.dtype(np.float32): 2.0**-24, np.dtype(np.float64): 2.0**-53}
SELF_CHECK_RTOL = 1e-9  # the formula on scikit-learn's own set must give its output this closely


@dataclass(frozen=True)
class NeighborSets:
    """Candidate neighbour sets of the query rows: set ``j`` belongs to row ``rows[j]``.

    Row ``i``'s first set is scikit-learn's own (``own[i]`` is its position); the others are the
    other valid tie-breaks. ``capped`` marks rows whose tie-breaks were too many to enumerate."""

    rows: np.ndarray  # (M,) query row of each set
    index: np.ndarray  # (M, k) fitted points
    distance: np.ndarray  # (M, k) their distances to the query row
    own: np.ndarray  # (N,) position of each row's own set
    capped: np.ndarray  # (N,) bool

    @property
    def width(self) -> int:
        """The most sets one row has."""
        return int(np.bincount(self.rows).max()) if self.rows.size else 1


Outputs = Callable[[Any, np.ndarray, np.ndarray], dict[str, np.ndarray]]
# (estimator, its input rows, the graph's unit roundoff, scikit-learn's outputs) -> tie sets
Family = Callable[[Any, np.ndarray, float, dict[str, np.ndarray]], dict[str, TieSet]]


def _lof_outputs(est: Any, index: np.ndarray, distance: np.ndarray) -> dict[str, np.ndarray]:
    """LocalOutlierFactor.decision_function and predict on given neighbour sets (scikit-learn's own lrd)."""
    x_lrd = est._local_reachability_density(distance, index)
    scores = -np.mean(est._lrd[index] / x_lrd[:, None], axis=1) - est.offset_
    return {"scores": scores.reshape(-1, 1), "label": np.where(scores < 0, -1, 1).reshape(-1, 1)}


def _weights(est: Any, distance: np.ndarray) -> np.ndarray:
    from sklearn.neighbors._base import _get_weights

    w = _get_weights(distance, est.weights)
    return np.ones_like(distance) if w is None else np.asarray(w, dtype=np.float64)


def _classifier_outputs(est: Any, index: np.ndarray, distance: np.ndarray) -> dict[str, np.ndarray]:
    """KNeighborsClassifier.predict_proba and predict (one target) on given neighbour sets."""
    w = _weights(est, distance)
    votes = np.zeros((index.shape[0], len(est.classes_)))
    np.add.at(votes, (np.arange(index.shape[0])[:, None], np.asarray(est._y)[index]), w)
    total = votes.sum(axis=1, keepdims=True)
    proba = votes / np.where(total == 0, 1.0, total)
    return {"probabilities": proba, "label": np.asarray(est.classes_)[np.argmax(proba, axis=1)]}


def _regressor_outputs(est: Any, index: np.ndarray, distance: np.ndarray) -> dict[str, np.ndarray]:
    """KNeighborsRegressor.predict on given neighbour sets, as a (rows, targets) column block."""
    y = np.asarray(est._y, dtype=np.float64)[index]
    w = _weights(est, distance)
    w = w.reshape(w.shape + (1,) * (y.ndim - 2))
    return {"variable": ((y * w).sum(axis=1) / w.sum(axis=1)).reshape(index.shape[0], -1)}


def _set_function(outputs: Outputs) -> Family:
    """Tie sets of a model whose outputs are a function of each row's neighbour set (``outputs``)."""

    def ties(est: Any, X: np.ndarray, roundoff: float, reference: dict[str, np.ndarray]) -> dict[str, TieSet]:
        sets = neighbor_sets(est, X, roundoff, int(getattr(est, "n_neighbors_", None) or est.n_neighbors))
        if sets.rows.size == len(sets.own) and not sets.capped.any():  # one set per row: no tie anywhere
            return {}
        out = {}
        for name, values in outputs(est, sets.index, sets.distance).items():
            ref = reference.get(name)
            if ref is not None and _reproduces(values[sets.own], np.asarray(ref)):
                out[name] = TieSet(_alternatives(values, sets, np.asarray(ref).shape), capped=int(sets.capped.sum()))
        return out

    return ties


def _graph_ties(est: Any, X: np.ndarray, roundoff: float, reference: dict[str, np.ndarray]) -> dict[str, TieSet]:
    """KNeighborsTransformer: its dense graph row holds the neighbours' distances (or 1s) and zeros
    elsewhere; an entry of a tied candidate may be either (the other entries of its row change with
    it, each judged by its own answers)."""
    ref = np.asarray(reference.get("variable"))
    k = est.n_neighbors + (est.mode == "distance")  # transform() asks for one more in distance mode
    if ref.ndim != 2 or ref.shape[1] != est.n_samples_fit_:
        return {}
    sets = neighbor_sets(est, X, roundoff, k)
    if sets.rows.size == len(sets.own) and not sets.capped.any():
        return {}
    value = (lambda d: d) if est.mode == "distance" else np.ones_like
    own = np.zeros_like(ref, dtype=np.float64)
    np.put_along_axis(own, sets.index[sets.own], value(sets.distance[sets.own]), axis=1)
    if not _reproduces(own, ref):
        return {}
    other = own.copy()  # per entry: the answer of the tie-breaks that decide it the other way
    for j in np.flatnonzero(np.arange(sets.rows.size) != sets.own[sets.rows]):
        row, entries = sets.rows[j], sets.index[j]
        absent = own[row, entries] == 0
        other[row, entries[absent]] = value(sets.distance[j][absent])
        dropped = np.setdiff1d(sets.index[sets.own[row]], entries)
        other[row, dropped] = 0.0
    return {"variable": TieSet(np.stack([ref.astype(np.float64), other], axis=-1), capped=int(sets.capped.sum()))}


def _imputer_ties(est: Any, X: np.ndarray, roundoff: float, reference: dict[str, np.ndarray]) -> dict[str, TieSet]:
    """KNNImputer: each missing value is the (weighted) mean of its column over the k nearest fitted
    rows that have it (nan-euclidean distances); donors tied at the k-th distance give one mean each."""
    from sklearn.metrics.pairwise import nan_euclidean_distances

    ref = np.asarray(reference.get("variable"), dtype=np.float64)
    fit, fit_missing = np.asarray(est._fit_X, dtype=np.float64), np.asarray(est._mask_fit_X)
    missing = np.isnan(X)
    columns = np.cumsum(est._valid_mask) - 1  # input column -> output column
    if ref.ndim != 2 or ref.shape[0] != len(X) or not missing.any():
        return {}
    dist = nan_euclidean_distances(X, fit)
    scale = np.sqrt(X.shape[1]) * (np.nanmax(np.abs(fit)) * np.sqrt(X.shape[1]) + np.nan_to_num(np.abs(X)).sum(axis=1))
    answers: dict[tuple[int, int], list[float]] = {}
    capped = 0
    for row, col in zip(*np.nonzero(missing & est._valid_mask)):
        donors = np.flatnonzero(~fit_missing[:, col])
        d = np.where(np.isnan(dist[row, donors]), np.inf, dist[row, donors])
        k = min(est.n_neighbors, donors.size)
        if k == 0 or not np.isfinite(np.sort(d)[k - 1]):
            continue
        window = 8 * roundoff * (scale[row] + (X.shape[1] + 4) * np.sort(d)[k - 1])
        choices, too_many = _choices(d, k, window)
        capped += too_many
        values = [float(np.average(fit[donors[c], col], weights=_weights(est, d[c][None])[0])) for c in choices]
        if len(set(values)) > 1:
            answers[(row, int(columns[col]))] = values
    if not answers:
        return {}
    if not all(np.isclose(values, ref[cell], rtol=SELF_CHECK_RTOL, atol=SELF_CHECK_RTOL).any() for cell, values in answers.items()):
        return {}  # scikit-learn's own answer is not among them: no excuse
    alternatives = np.repeat(ref[..., None], max(map(len, answers.values())) + 1, axis=-1)
    for (row, col), values in answers.items():
        alternatives[row, col, 1:1 + len(values)] = values
    return {"variable": TieSet(alternatives, capped=capped)}


def _family(est: Any) -> Family | None:
    from sklearn.impute import KNNImputer
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, KNeighborsTransformer, LocalOutlierFactor

    if isinstance(est, LocalOutlierFactor) and getattr(est, "novelty", False):
        return _set_function(_lof_outputs)
    if isinstance(est, KNeighborsClassifier) and np.ndim(est._y) == 1:
        return _set_function(_classifier_outputs)
    if isinstance(est, KNeighborsRegressor):
        return _set_function(_regressor_outputs)
    if isinstance(est, KNeighborsTransformer):
        return _graph_ties
    if isinstance(est, KNNImputer) and est.metric == "nan_euclidean" and _is_nan(est.missing_values):
        return _imputer_ties
    return None


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final(steps[-1][1]) if steps else model


def applies(model: Any) -> bool:
    """Whether ``model`` (or its final step) is a neighbour model whose outputs depend on the neighbour set."""
    est = _final(model)
    return _family(est) is not None and hasattr(est, "_fit_X")


def tie_sets(model: Any, X: Any, graph_dtype: np.dtype, reference: dict[str, np.ndarray]) -> dict[str, TieSet]:
    """Per output of ``reference`` a neighbour model defines, every tie-break's answers (judge/ties.py);
    empty for any other model, or when no query row sits on a tie."""
    if not applies(model):
        return {}
    steps = getattr(model, "steps", None)
    est = _final(model)
    Xf = model[:-1].transform(X) if steps else X
    family = _family(est)
    assert family is not None
    return family(est, np.asarray(Xf, dtype=np.float64), ROUNDOFF.get(np.dtype(graph_dtype), 2.0**-24), reference)


def _reproduces(own: np.ndarray, ref: np.ndarray) -> bool:
    """The formula on scikit-learn's own neighbour sets gives scikit-learn's output."""
    if own.size != ref.size:
        return False
    own, ref = own.reshape(ref.shape), ref
    if own.dtype.kind in "fiu" and ref.dtype.kind in "fiu":
        return bool(np.allclose(own, ref, rtol=SELF_CHECK_RTOL, atol=SELF_CHECK_RTOL))
    return bool(np.all(own.astype(str) == ref.astype(str)))


def _alternatives(values: np.ndarray, sets: NeighborSets, shape: tuple[int, ...]) -> np.ndarray:
    """(rows, ..., A): each row's answers, its own first, padded by repeating its own."""
    pick = np.repeat(sets.own[:, None], sets.width, axis=1)
    others = np.flatnonzero(np.arange(sets.rows.size) != sets.own[sets.rows])  # grouped by row, in row order
    if others.size:
        rows = sets.rows[others]
        first = np.searchsorted(rows, rows)  # position of each row's first other set
        pick[rows, 1 + np.arange(others.size) - first] = others
    return np.moveaxis(values[pick], 1, -1).reshape(shape + (sets.width,))


def neighbor_sets(est: Any, X: np.ndarray, roundoff: float, k: int) -> NeighborSets:
    """scikit-learn's own ``k`` nearest fitted points of each row of ``X`` (sets 0..N-1), plus every
    other valid tie-break within the distance error of a graph computing with unit roundoff ``roundoff``."""
    fit = np.asarray(est._fit_X, dtype=np.float64)
    near_d, near = est.kneighbors(X, n_neighbors=min(len(fit), 2 * k + 8))  # candidates beyond the k-th
    own_d, own_i = near_d[:, :k].copy(), near[:, :k].copy()  # scikit-learn's own set where no tie makes it ambiguous
    origin = np.zeros((1, fit.shape[1]))
    metric = _metric(est)
    reach = float(metric.pairwise(origin, fit).max()) + metric.pairwise(origin, X)[0]  # |y| max + |x| per row
    exact = _distances(est, metric, X, fit[near])
    kth, window = _window(exact, k, roundoff, reach, fit.shape[1])
    # too few candidates: the farthest is within the window plus scikit-learn's own float64 error
    # (its expanded dot products are off by up to ~1e-8 |y|; 1e-7 taken) of the k-th
    short = (near.shape[1] < len(fit)) & (exact.max(axis=1) <= kth + window + 1e-7 * reach)
    sure = np.sum(exact < (kth - window)[:, None], axis=1)
    tied = np.sum(np.abs(exact - kth[:, None]) <= window[:, None], axis=1)
    ambiguous = np.flatnonzero(short | (tied > k - sure))
    if ambiguous.size:  # there, the set its predict() takes, asked as predict() asks
        own_d[ambiguous], own_i[ambiguous] = est.kneighbors(X[ambiguous], n_neighbors=k)
    rows, index, distance, capped = [np.arange(len(X))], [own_i], [own_d], np.zeros(len(X), dtype=bool)
    for i in ambiguous:
        points = np.arange(len(fit)) if short[i] else near[i]
        d = metric.pairwise(X[i:i + 1], fit)[0] if short[i] else exact[i]
        choices, capped[i] = _choices(d, k, float(_window(d[None], k, roundoff, reach[i:i + 1], fit.shape[1])[1][0]))
        choices = choices[np.any(np.sort(points[choices], axis=1) != np.sort(own_i[i]), axis=1)]  # not its own again
        rows.append(np.full(len(choices), i)), index.append(points[choices]), distance.append(d[choices])
    return NeighborSets(np.concatenate(rows), np.concatenate(index), np.concatenate(distance).astype(np.float64),
                        np.arange(len(X)), capped)


def _window(exact: np.ndarray, k: int, roundoff: float, reach: np.ndarray, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(k-th distance, window) per row: two distances within the window may swap in the graph (2 eps)."""
    kth = np.sort(exact, axis=1)[:, k - 1]
    return kth, 8 * roundoff * (reach + (n_features + 4) * kth)


_MINKOWSKI_P = {"euclidean": 2.0, "l2": 2.0, "manhattan": 1.0, "cityblock": 1.0, "l1": 1.0, "chebyshev": np.inf, "infinity": np.inf}


def _distances(est: Any, metric: Any, X: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(rows, candidates) exact float64 distances from each row to its candidate points (rows, candidates,
    features): from the differences, in numpy for Minkowski metrics, else by ``metric`` row by row."""
    name, params = est.effective_metric_, dict(getattr(est, "effective_metric_params_", None) or {})
    p = _MINKOWSKI_P.get(name, params.get("p") if name == "minkowski" and "w" not in params else None)
    if p is None:
        return np.stack([metric.pairwise(x[None], y)[0] for x, y in zip(X, points)])
    diff = np.abs(points - X[:, None, :])
    if p == np.inf:
        return diff.max(axis=-1)
    return np.sum(diff ** p, axis=-1) ** (1.0 / p)


def _choices(exact: np.ndarray, k: int, window: float) -> tuple[np.ndarray, bool]:
    """(sets, capped): every k-point set of nearest neighbours (positions in ``exact``) when distances
    within ``window`` of the k-th may come in any order; none when they are too many to enumerate."""
    kth = np.sort(exact)[k - 1]
    sure = np.flatnonzero(exact < kth - window)
    tied = np.flatnonzero(np.abs(exact - kth) <= window)
    m = k - sure.size
    if tied.size <= m:
        return np.concatenate([sure, tied])[None], False
    if comb(tied.size, m) > MAX_TIE_BREAKS:
        return np.empty((0, k), dtype=np.int64), True
    chosen = np.array(list(combinations(tied.tolist(), m)), dtype=np.int64).reshape(-1, m)
    return np.hstack([np.broadcast_to(sure, (len(chosen), sure.size)), chosen]), False


def _metric(est: Any) -> Any:
    from sklearn.metrics import DistanceMetric

    params = dict(getattr(est, "effective_metric_params_", None) or {})
    return DistanceMetric.get_metric(est.effective_metric_, **params)
