"""``onnxgate demo``: build small models from data that ships with the frameworks, then
convert -> validate -> report each, and print a summary table.

Nothing is downloaded: the data sets come with scikit-learn.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxgate.demo_model import DemoModel


def _mixed_frame() -> tuple[Any, np.ndarray]:
    """Iris with a string column derived from petal length: a mixed-type table."""
    import pandas as pd
    from sklearn.datasets import load_iris

    iris = load_iris()
    df = pd.DataFrame(iris.data, columns=["sepal_length", "sepal_width", "petal_length", "petal_width"])
    df["petal_size"] = pd.cut(df["petal_length"], bins=[0, 2, 5, 10], labels=["small", "medium", "large"]).astype(str)
    return df, iris.target


def sklearn_models() -> dict[str, tuple[Any, Any]]:
    """name -> (unfitted estimator, (X, y)) for the demo."""
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    iris, diabetes, cancer = load_iris(), load_diabetes(), load_breast_cancer()
    mixed, mixed_y = _mixed_frame()
    numeric = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    column_model = make_pipeline(
        ColumnTransformer([("num", StandardScaler(), numeric), ("cat", OneHotEncoder(handle_unknown="ignore"), ["petal_size"])]),
        LogisticRegression(max_iter=500),
    )
    return {
        "iris_logreg_pipeline": (make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), (iris.data, iris.target)),
        "diabetes_ridge": (Ridge(alpha=0.5), (diabetes.data, diabetes.target)),
        "cancer_random_forest": (RandomForestClassifier(n_estimators=50, max_depth=6, random_state=0), (cancer.data, cancer.target)),
        "iris_mixed_columns": (column_model, (mixed, mixed_y)),
    }


def build_sklearn_demo(workdir: Path) -> list[DemoModel]:
    """Fit, save as .skops, and write a sample per model (CSV for the mixed table)."""
    import skops.io as sio

    workdir.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (est, (X, y)) in sklearn_models().items():
        est.fit(X, y)
        src = workdir / f"{name}.skops"
        sio.dump(est, src)
        if hasattr(X, "to_csv"):
            sample = workdir / f"{name}.csv"
            X.iloc[::5].to_csv(sample, index=False)
        else:
            sample = workdir / f"{name}.npy"
            np.save(sample, np.asarray(X[::5], dtype=np.float32))
        out.append(DemoModel(name, src, sample, "sklearn", tuple(sio.get_untrusted_types(file=src))))
    return out


# Later issues extend this list (torch, keras, tensorflow builders).
BUILDERS: list[Callable[[Path], list[DemoModel]]] = [build_sklearn_demo]


def build_torch_demo(workdir: Path) -> list[DemoModel]:
    """The PyTorch models (onnxgate.demo_torch); none when torch is not installed."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return []
    from onnxgate.demo_torch import build_torch_demo as build

    return build(workdir)


BUILDERS.append(build_torch_demo)


def build_keras_demo(workdir: Path) -> list[DemoModel]:
    """The Keras and TensorFlow models (onnxgate.demo_keras); none when TensorFlow is not installed."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None or importlib.util.find_spec("tf2onnx") is None:
        return []
    from onnxgate.demo_keras import build_keras_demo as build

    return build(workdir)


BUILDERS.append(build_keras_demo)


def run_demo(workdir: str | Path, *, progress: Any = None) -> int:
    from onnxgate._progress import labelled
    from onnxgate.trust import Trust
    from onnxgate.pipelines.run import run

    root = Path(workdir)
    root.mkdir(parents=True, exist_ok=True)
    models: list[DemoModel] = []
    for build in BUILDERS:
        models.extend(build(root / "models"))
    reports, onnx_dir = root / "reports", root / "onnx"
    reports.mkdir(exist_ok=True)
    onnx_dir.mkdir(exist_ok=True)
    rows = []
    speeds: list[tuple[str, str, Any]] = []
    worst = 0
    for m in models:
        start = time.perf_counter()
        report, _ = run(
            str(m.source),
            output=onnx_dir / f"{m.name}.onnx",
            sample=str(m.sample),
            framework=m.framework,
            trust=Trust(types=m.trusted_types),
            report_paths={
                "json": reports / f"{m.name}.json",
                "markdown": reports / f"{m.name}.md",
                "junit": reports / f"{m.name}.xml",
            },
            progress=labelled(progress, m.source.name),
            benchmark=True,
            benchmark_seconds=0.1,  # a demo's figure; benchmarks/bench_speedup.py times longer
        )
        speeds.append((m.name, m.framework, report.speed))
        max_err = max((o.max_abs_error or 0.0 for c in report.cases for o in c.outputs), default=0.0)
        rows.append((m.name, m.framework, report.status, len(report.cases), max_err, time.perf_counter() - start))
        worst = max(worst, 0 if report.passed else 1)
    print(f"{'model':<26} {'framework':<10} {'status':<7} {'cases':>5} {'max abs err':>12} {'seconds':>8}")
    for name, fw, status, cases, err, secs in rows:
        print(f"{name:<26} {fw:<10} {status:<7} {cases:>5} {err:>12.3g} {secs:>8.2f}")
    _print_speed_table(speeds)
    print(f"reports in {reports}, ONNX files in {onnx_dir}")
    return worst


def _print_speed_table(speeds: list[tuple[str, str, Any]]) -> None:
    """Is it worth it? Median latency of the original and of ONNX Runtime, same threads for both."""
    measured = [(n, fw, s) for n, fw, s in speeds if s is not None]
    if not measured:
        return
    print(f"\nspeed: median latency, {measured[0][2].threads} thread(s) for both (--threads N to change)")
    print(f"{'model':<26} {'batch':>5} {'original call':<50} {'original ms':>12} {'onnxruntime ms':>15} {'speedup':>8}")
    for name, _, speed in measured:
        for r in speed.rows:
            for label, t in speed.original_timings(r):
                print(f"{name:<26} {r.batch:>5} {label:<50} {t.median_ms:>12.3f} "
                      f"{r.onnxruntime.median_ms:>15.4f} {r.speedup_over(t):>7.1f}x")
