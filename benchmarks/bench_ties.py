"""What finding neighbour ties costs, against the original's own predict (what the reference already runs).

For each neighbour model, in the same run: the median time of scikit-learn's own outputs (the
``reference()`` onnxgate calls anyway) and of ``reference_ties()`` (kneighbors for candidates,
exact distances, the enumeration of tie-breaks and their outputs), and their ratio. Models:
LocalOutlierFactor on iris (the catalogue's case: duplicate rows), a KNeighborsRegressor on 20k
random points (continuous: no tie), and a KNeighborsClassifier on an integer grid (ties on most rows).

Run: ``.venv/bin/python benchmarks/bench_ties.py [--repeat N]``.
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np

from _timing import median_seconds  # a sibling: this folder is on sys.path


def _models():
    from sklearn.datasets import load_iris
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor, LocalOutlierFactor

    rng = np.random.default_rng(0)
    iris = load_iris().data
    grid = rng.integers(0, 6, size=(2000, 3)).astype(np.float64)
    cont = rng.normal(size=(20000, 8))
    return [
        ("LOF iris, 150 fitted, 16 rows", LocalOutlierFactor(novelty=True).fit(iris), iris[np.random.default_rng(0).permutation(150)[:16]]),
        ("KNN regressor, 20k random fitted, 1000 rows", KNeighborsRegressor().fit(cont, cont[:, 0]), rng.normal(size=(1000, 8))),
        ("KNN classifier, 2000 grid fitted, 1000 rows", KNeighborsClassifier(algorithm="kd_tree").fit(grid, rng.integers(0, 3, 2000)),
         rng.integers(0, 6, size=(1000, 3)).astype(np.float64)),
    ]


def _fresh(conv):
    conv._kept = None  # no kept outputs: the original's predict runs
    return conv


def main() -> None:
    from onnxgate.converters.sklearn import SklearnConverter

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    conv = SklearnConverter()
    print(f"{'model':48} {'reference s':>12} {'ties s':>10} {'ratio':>7} {'rows on a tie':>14}")
    for label, est, rows in _models():
        feeds = {"X": rows.astype(np.float32)}
        names = ["scores", "label"] if hasattr(est, "offset_") else (["label", "probabilities"] if hasattr(est, "classes_") else ["variable"])
        ref_s = median_seconds(lambda: _fresh(conv).reference(est, feeds, names), args.repeat)
        conv.reference(est, feeds, names)  # reference_ties reuses the kept outputs, as in a run
        ties_s = median_seconds(lambda: conv.reference_ties(est, feeds, names), args.repeat)
        ties = conv.reference_ties(est, feeds, names)
        on = max((int(t.on_tie.reshape(len(rows), -1).any(axis=1).sum()) for t in ties.values()), default=0)
        print(f"{label:48} {ref_s:12.4f} {ties_s:10.4f} {ties_s / ref_s:7.2f} {on:>8} of {len(rows)}")


if __name__ == "__main__":
    main()
