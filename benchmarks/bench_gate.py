"""``onnxgate gate`` on 10 scikit-learn models against what a CI job would otherwise run.

(a) ``onnxgate gate`` over an onnxgate.toml of 10 models: one process, one framework worker
    reused across the models (scikit-learn is imported once, in the worker);
(b) the same 10 models as 10 ``onnxgate run`` processes (a shell loop in CI);
(c) a hand-written script: one process that loads each .skops, converts with skl2onnx, runs
    ORT and compares with numpy (no isolation, no sweep, no report): the floor.

Run: ``.venv/bin/python benchmarks/bench_gate.py [--repeat N]``. Prints medians and ratios,
all measured in this run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HAND_WRITTEN = textwrap.dedent(
    """
    import sys
    import numpy as np
    import onnxruntime as ort
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.base import is_classifier

    ok = True
    for src, sample in zip(sys.argv[1::2], sys.argv[2::2]):
        model = sio.load(src, trusted=sio.get_untrusted_types(file=src))
        x = np.load(sample).astype(np.float32)
        opts = {"zipmap": False} if is_classifier(model) else None
        onx = to_onnx(model, x[:1], options=opts)
        sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
        got = sess.run(None, {sess.get_inputs()[0].name: x})
        if is_classifier(model):
            ok &= bool((got[0] == model.predict(x)).all()) and np.allclose(got[1], model.predict_proba(x), atol=1e-4)
        else:
            ok &= np.allclose(got[0].ravel(), model.predict(x).ravel(), atol=1e-4, rtol=1e-3)
    sys.exit(0 if ok else 1)
    """
)


def build_models(root: Path) -> list[tuple[str, Path, Path]]:
    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
    from sklearn.ensemble import GradientBoostingRegressor, RandomForestClassifier
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVR
    from sklearn.tree import DecisionTreeClassifier

    iris, cancer, diabetes = load_iris(return_X_y=True), load_breast_cancer(return_X_y=True), load_diabetes(return_X_y=True)
    specs = [
        ("iris-logreg", LogisticRegression(max_iter=1000), iris),
        ("iris-forest", RandomForestClassifier(n_estimators=20, random_state=0), iris),
        ("iris-tree", DecisionTreeClassifier(random_state=0), iris),
        ("iris-knn", KNeighborsClassifier(), iris),
        ("cancer-pipe", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)), cancer),
        ("cancer-forest", RandomForestClassifier(n_estimators=20, random_state=0), cancer),
        ("diabetes-linear", LinearRegression(), diabetes),
        ("diabetes-ridge", Ridge(), diabetes),
        ("diabetes-gbr", GradientBoostingRegressor(n_estimators=20, random_state=0), diabetes),
        ("diabetes-svr", make_pipeline(StandardScaler(), SVR()), diabetes),
    ]
    out = []
    for name, model, (X, y) in specs:
        model.fit(X, y)
        src, sample = root / f"{name}.skops", root / f"{name}.npy"
        sio.dump(model, src)
        np.save(sample, X[::5][:32].astype(np.float32))  # every 5th row: all classes, not 32 of one (vacuous)
        out.append((name, src, sample))
    return out


def write_config(root: Path, models: list[tuple[str, Path, Path]]) -> Path:
    lines = ["[defaults]", "regression = \"off\"", "atol = 1e-4", "rtol = 1e-3", ""]
    for name, src, sample in models:
        lines += ["[[model]]", f'name = "{name}"', f'source = "{src.name}"', f'sample = "{sample.name}"', 'version = "1.0.0"', ""]
    path = root / "onnxgate.toml"
    path.write_text("\n".join(lines))
    return path


def wall(cmds: list[list[str]], repeat: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for cmd in cmds:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode not in (0,):
                raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {proc.stderr[-400:]}")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import os

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    env = dict(os.environ, ONNXGATE_TRUST="code")  # the corpus's skops files hold tree types (our own models)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_models(root)
        config = write_config(root, models)
        gate = wall([[py, "-m", "onnxgate", "-q", "gate", "--config", str(config)]], args.repeat, env)
        runs = wall([[py, "-m", "onnxgate", "-q", "run", str(s), "--sample", str(x)] for _, s, x in models], args.repeat, env)
        script = root / "by_hand.py"
        script.write_text(HAND_WRITTEN)
        hand = wall([[py, str(script), *[str(p) for _, s, x in models for p in (s, x)]]], args.repeat, env)
    print(f"10 scikit-learn models, median of {args.repeat}")
    print(f"  onnxgate gate (one framework worker, reused) {gate:7.2f}s")
    print(f"  10 x onnxgate run                             {runs:7.2f}s  gate/runs   = {gate / runs:.2f}x")
    print(f"  hand-written script (one process)             {hand:7.2f}s  gate/script = {gate / hand:.2f}x")


if __name__ == "__main__":
    main()
