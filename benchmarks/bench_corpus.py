"""Corpus wall time per model: onnxgate (convert + validate) against the raw converter script.

For each model of a small breadth corpus (scikit-learn estimators of every kind, xgboost,
lightgbm and CatBoost estimators, optionally a Keras CNN), built in code from bundled data,
two timings are taken in the same process, in the same round:

* **onnxgate**: ``onnxgate.pipelines.run.run(model, sample=rows, in_process=True)``: the
  conversion with its known fixes, the checker and ORT load, reference run, calibration,
  parity on batch sizes and optimisation levels, the report;
* **raw**: what an expert writes by hand with the same libraries: ``skl2onnx.to_onnx``
  (zipmap off for classifiers) / ``onnxmltools.convert_xgboost`` / ``convert_lightgbm`` /
  ``CatBoost.save_model(format="onnx")`` / ``tf2onnx.convert.from_keras``, one
  ``onnxruntime.InferenceSession``, one ``run`` and ``np.allclose`` against ``predict``.

The first round warms imports and is dropped; the median of the others is reported with the
ratio onnxgate/raw. ``raw ok`` says whether the hand script's own check passed (a raw script
that fails, e.g. on an estimator that needs one of onnxgate's fixes, has no ratio).

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_corpus.py [--rounds 3] [--keras] [--convnext] [--only NAME ...]``
(``--stacking``: instead of the raw script, onnxgate against itself with the calibration's perturbed copies run
one call each, interleaved, with the time spent measuring the noise floor.)
(``--convnext --rounds 0 --only ConvNeXtTiny``: one cold round of ConvNeXtTiny, whose raw from_keras graph
ONNX Runtime refuses and onnxgate converts through its exporter fallback).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np

warnings.filterwarnings("ignore")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _data() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_diabetes, load_iris

    return {"classifier": load_iris(return_X_y=True), "regressor": load_diabetes(return_X_y=True),
            "transformer": load_iris(return_X_y=True), "clusterer": load_iris(return_X_y=True)}


def _sklearn_corpus() -> dict[str, tuple[str, Callable[[], Any]]]:
    from sklearn import cluster, decomposition, ensemble, linear_model, neighbors, neural_network, pipeline, preprocessing, svm, tree

    return {
        "LogisticRegression": ("classifier", lambda: linear_model.LogisticRegression(max_iter=500)),
        "RandomForestClassifier": ("classifier", lambda: ensemble.RandomForestClassifier(n_estimators=50, random_state=0)),
        "GradientBoostingRegressor": ("regressor", lambda: ensemble.GradientBoostingRegressor(random_state=0)),
        "HistGradientBoostingClassifier": ("classifier", lambda: ensemble.HistGradientBoostingClassifier(random_state=0)),
        "DecisionTreeRegressor": ("regressor", lambda: tree.DecisionTreeRegressor(random_state=0)),
        "Ridge": ("regressor", lambda: linear_model.Ridge()),
        "Pipeline(StandardScaler,SVC)": ("classifier", lambda: pipeline.make_pipeline(preprocessing.StandardScaler(), svm.SVC(probability=True, random_state=0))),
        "MLPClassifier": ("classifier", lambda: neural_network.MLPClassifier(max_iter=300, random_state=0)),
        "KNeighborsClassifier": ("classifier", lambda: neighbors.KNeighborsClassifier()),
        "KMeans": ("clusterer", lambda: cluster.KMeans(n_clusters=3, n_init=3, random_state=0)),
        "PCA": ("transformer", lambda: decomposition.PCA(n_components=2)),
        # default n_quantiles (150 on iris): skl2onnx's own converter takes ~45 s, onnxgate's graph (fix
        # sklearn.quantile_transformer_graph) well under one; skl2onnx refuses the normal output
        "QuantileTransformer": ("transformer", lambda: preprocessing.QuantileTransformer(random_state=0)),
        "QuantileTransformer(normal)": ("transformer", lambda: preprocessing.QuantileTransformer(output_distribution="normal", random_state=0)),
    }


def _booster_corpus() -> dict[str, tuple[str, Callable[[], Any]]]:
    import catboost
    import lightgbm
    import xgboost

    return {
        "XGBClassifier": ("classifier", lambda: xgboost.XGBClassifier(n_estimators=30, max_depth=4, n_jobs=1)),
        "XGBRegressor": ("regressor", lambda: xgboost.XGBRegressor(n_estimators=30, max_depth=4, n_jobs=1)),
        "LGBMClassifier": ("classifier", lambda: lightgbm.LGBMClassifier(n_estimators=30, verbose=-1, n_jobs=1)),
        "LGBMRegressor": ("regressor", lambda: lightgbm.LGBMRegressor(n_estimators=30, verbose=-1, n_jobs=1)),
        "CatBoostClassifier": ("classifier", lambda: catboost.CatBoostClassifier(iterations=30, depth=4, verbose=False, random_seed=0, thread_count=1, allow_writing_files=False)),
        "CatBoostRegressor": ("regressor", lambda: catboost.CatBoostRegressor(iterations=30, depth=4, verbose=False, random_seed=0, thread_count=1, allow_writing_files=False)),
    }


# models run on rows they were not fitted on: on its own training rows every value of a QuantileTransformer sits
# on a repeated quantile, where the output jumps within one float32 ulp of the input and a hand script's
# allclose fails (onnxgate passes them too, with its noise-floor warning); held-out rows are what one checks
HELD_OUT = {"QuantileTransformer", "QuantileTransformer(normal)"}


def _held_out(rows: np.ndarray, X: np.ndarray) -> np.ndarray:
    """``rows`` moved by 5% of each feature's spread (seeded): off the training grid."""
    return rows + np.random.default_rng(0).normal(scale=0.05, size=rows.shape) * X.std(0)


# -- the raw scripts: what a user writes by hand -------------------------------------------------


def _raw_expected(model: Any, kind: str, rows: np.ndarray) -> list[np.ndarray]:
    if kind == "classifier":
        return [model.predict(rows), model.predict_proba(rows)]
    if kind == "transformer":
        return [model.transform(rows)]
    return [model.predict(rows)]


def _raw_onnx(name: str, model: Any, rows32: np.ndarray, kind: str) -> bytes:
    from onnxmltools.convert.common.data_types import FloatTensorType

    initial = [("X", FloatTensorType([None, rows32.shape[1]]))]
    if name.startswith("XGB"):
        from onnxmltools import convert_xgboost

        return convert_xgboost(model, initial_types=initial, target_opset=15).SerializeToString()
    if name.startswith("LGBM"):
        from onnxmltools import convert_lightgbm

        return convert_lightgbm(model, initial_types=initial, target_opset=15, zipmap=False).SerializeToString()
    if name.startswith("CatBoost"):
        with tempfile.TemporaryDirectory() as tmp:
            model.save_model(f"{tmp}/m.onnx", format="onnx")
            return Path(f"{tmp}/m.onnx").read_bytes()
    from skl2onnx import to_onnx

    options = {id(model): {"zipmap": False}} if kind == "classifier" else None
    return to_onnx(model, rows32[:1], options=options).SerializeToString()


def raw_script(name: str, model: Any, rows: np.ndarray, kind: str) -> bool:
    """Convert, load one ORT session, run once, compare with the original; True when it agrees."""
    import onnxruntime as ort

    rows32 = rows.astype(np.float32)
    session = ort.InferenceSession(_raw_onnx(name, model, rows32, kind), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: rows32})
    expected = _raw_expected(model, kind, rows32 if name.startswith(("XGB", "LGBM", "CatBoost")) else rows)
    try:
        return all(np.allclose(np.asarray(g, dtype=np.float64).reshape(np.shape(e)), np.asarray(e, dtype=np.float64), rtol=1e-3, atol=1e-4)
                   for g, e in zip(got, expected))
    except (ValueError, TypeError):
        return False


def onnxgate_run(model: Any, sample: Path) -> str:
    from onnxgate.pipelines.run import run

    framework = {"framework": "catboost"} if type(model).__module__.startswith("catboost") else {}
    report, _ = run(model, sample=str(sample), in_process=True, accept_vacuous=True, **framework)
    return report.status


# -- Keras (optional: importing TensorFlow takes ~10 s) -------------------------------------------


def _keras_cnn() -> tuple[Any, np.ndarray]:
    from onnxgate.converters import _tf

    keras = _tf.import_keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((16, 16, 3), name="x")
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    h = keras.layers.DepthwiseConv2D(3, padding="same")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(x, keras.layers.Dense(4, activation="softmax")(h))
    return model, np.random.RandomState(0).rand(16, 16, 16, 3).astype(np.float32)


def _convnext() -> tuple[Any, np.ndarray]:
    """ConvNeXtTiny, weights=None, at 32x32: tf2onnx's from_keras graph keeps a StatefulPartitionedCall."""
    from onnxgate.converters import _tf

    keras = _tf.import_keras()
    keras.utils.set_random_seed(0)
    model = keras.applications.ConvNeXtTiny(weights=None, input_shape=(32, 32, 3), classes=10)
    return model, (np.random.RandomState(0).rand(4, 32, 32, 3) * 255).astype(np.float32)


def keras_raw(model: Any, rows: np.ndarray) -> bool:
    import onnxruntime as ort
    import tensorflow as tf
    import tf2onnx

    proto, _ = tf2onnx.convert.from_keras(model, input_signature=[tf.TensorSpec([None, *rows.shape[1:]], tf.float32, name="x")])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return bool(np.allclose(session.run(None, {"x": rows})[0], model(rows, training=False).numpy(), rtol=1e-3, atol=1e-5))


# -- the measurement ------------------------------------------------------------------------------


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - a failing raw script is a result, not a crash
        value = f"error: {type(exc).__name__}"
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    parser.add_argument("--keras", action="store_true", help="add a small Keras CNN (imports TensorFlow)")
    parser.add_argument("--convnext", action="store_true", help="add ConvNeXtTiny at 32x32 (minutes: two conversions)")
    parser.add_argument("--only", nargs="*", help="model names to run")
    parser.add_argument("--stacking", action="store_true",
                        help="onnxgate with the calibration's perturbed copies stacked into one call vs one call each")
    args = parser.parse_args()
    if args.stacking:
        return stacking(args.only, args.rounds)

    data = _data()
    corpus = {**_sklearn_corpus(), **_booster_corpus()}
    rows_out = []
    with tempfile.TemporaryDirectory(prefix="bench-corpus-") as tmp:
        for name, (kind, make) in corpus.items():
            if args.only and name not in args.only:
                continue
            X, y = data[kind]
            model = make().fit(X, y) if kind != "transformer" else make().fit(X)
            rows = _held_out(X[::10], X) if name in HELD_OUT else X[::10]
            sample = Path(tmp) / f"{len(rows_out)}.npy"
            np.save(sample, rows.astype(np.float32))
            rows_out.append(_measure(name, lambda: onnxgate_run(model, sample), lambda: raw_script(name, model, rows, kind), args.rounds))
        if args.keras and (not args.only or "KerasCNN" in args.only):
            model, rows = _keras_cnn()
            sample = Path(tmp) / "keras.npy"
            np.save(sample, rows)
            rows_out.append(_measure("KerasCNN", lambda: onnxgate_run(model, sample), lambda: keras_raw(model, rows), args.rounds))
        if args.convnext:
            model, rows = _convnext()
            sample = Path(tmp) / "convnext.npy"
            np.save(sample, rows)
            rows_out.append(_measure("ConvNeXtTiny", lambda: onnxgate_run(model, sample), lambda: keras_raw(model, rows), args.rounds))
    _print(rows_out)


def stacking(only: list[str] | None, rounds: int) -> None:
    """Per scikit-learn/booster model: onnxgate's run and its noise-floor time with the perturbed copies stacked into
    one call of the original (the default for independent rows) and with one call per copy, interleaved."""
    from onnxgate.judge import calibration

    measure = calibration.noise_floors
    spent: list[float] = []

    def timed(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return measure(*a, **k)
        finally:
            spent.append(time.perf_counter() - start)

    calibration.noise_floors = timed
    data, stacked_rows, totals = _data(), calibration.STACK_ROWS, {"stacked": [0.0, 0.0], "one call each": [0.0, 0.0]}
    with tempfile.TemporaryDirectory(prefix="bench-stacking-") as tmp:
        for name, (kind, make) in {**_sklearn_corpus(), **_booster_corpus()}.items():
            if only and name not in only:
                continue
            X, y = data[kind]
            model = make().fit(X, y) if kind != "transformer" else make().fit(X)
            sample = Path(tmp) / "x.npy"
            np.save(sample, (_held_out(X[::10], X) if name in HELD_OUT else X[::10]).astype(np.float32))
            times: dict[str, list[tuple[float, float]]] = {label: [] for label in totals}
            for r in range(rounds + 1):
                for label, limit in (("stacked", stacked_rows), ("one call each", 0)):
                    calibration.STACK_ROWS, spent[:] = limit, []
                    seconds, _ = _timed(lambda: onnxgate_run(model, sample))
                    if r:
                        times[label].append((seconds, sum(spent)))
            medians = {label: np.median(np.array(t), axis=0) for label, t in times.items()}
            for label, (run_s, floor_s) in medians.items():
                totals[label][0] += run_s
                totals[label][1] += floor_s
            (a, fa), (b, fb) = medians["one call each"], medians["stacked"]
            print(f"  {name:34s} run {a:.3f} -> {b:.3f} s   noise floor {fa * 1e3:6.1f} -> {fb * 1e3:6.1f} ms", flush=True)
    calibration.STACK_ROWS = stacked_rows
    (a, fa), (b, fb) = totals["one call each"], totals["stacked"]
    print(f"\none call per copy -> stacked: runs {a:.3f} -> {b:.3f} s ({b / a:.2f}x), noise floor {fa:.3f} -> {fb:.3f} s "
          f"({fb / fa:.2f}x) (sums of medians of {rounds} interleaved rounds)")


def _measure(name: str, ours: Callable[[], Any], raw: Callable[[], Any], rounds: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = {"onnxgate": [], "raw": []}
    results: dict[str, Any] = {}
    for r in range(rounds + 1):
        for label, fn in (("onnxgate", ours), ("raw", raw)):
            seconds, value = _timed(fn)
            results[label] = value
            if r or not rounds:  # round 0 warms imports and caches (--rounds 0: time that one round)
                timings[label].append(seconds)
    row = {"model": name, "onnxgate_s": statistics.median(timings["onnxgate"]), "raw_s": statistics.median(timings["raw"]),
           "onnxgate": results["onnxgate"], "raw_ok": results["raw"]}
    row["ratio"] = row["onnxgate_s"] / row["raw_s"] if row["raw_ok"] is True else float("nan")
    print(f"  {name:34s} onnxgate {row['onnxgate_s']:7.3f}s ({row['onnxgate']})  raw {row['raw_s']:7.3f}s (ok={row['raw_ok']})  "
          f"ratio {_ratio(row['ratio'])}", flush=True)
    return row


def _print(rows: list[dict[str, Any]]) -> None:
    print("\n| model | onnxgate s (verdict) | raw script s (its check) | onnxgate / raw |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['model']} | {r['onnxgate_s']:.3f} ({r['onnxgate']}) | {r['raw_s']:.3f} ({'ok' if r['raw_ok'] is True else r['raw_ok']}) | {_ratio(r['ratio'])} |")
    both = [r for r in rows if r["raw_ok"] is True]
    total_ours = sum(r["onnxgate_s"] for r in both)
    total_raw = sum(r["raw_s"] for r in both)
    print(f"\ncorpus: {len(rows)} models; onnxgate verdicts: {sorted({r['onnxgate'] for r in rows})}; raw scripts that "
          f"passed their own check: {len(both)}/{len(rows)}; over those, onnxgate {total_ours:.2f} s, raw {total_raw:.2f} s, "
          + (f"ratio {_ratio(total_ours / total_raw)}, median per-model ratio {_ratio(statistics.median(r['ratio'] for r in both))} "
             "(medians of timed rounds)" if both else "no ratio"))


def _ratio(r: float) -> str:
    """onnxgate / raw: one decimal where onnxgate is the slower, the speed-up where it is much faster."""
    if r != r:  # nan: the raw script failed its own check
        return "-"
    return f"{r:.1f}x" if r >= 0.1 else f"{r:.2g}x ({1 / r:.0f}x faster)"


if __name__ == "__main__":
    main()
