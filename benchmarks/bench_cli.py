"""Whole-process wall time of the CLI against what a user would otherwise write.

(a) ``onnxgate --help`` against ``python -c "import onnxruntime"`` (the floor of any
    ORT-based tool);
(b) ``onnxgate run`` on a RandomForest against a hand-written script doing the same
    skl2onnx conversion, ORT run and comparison (target: at most 1.3x).

(c) with ``--before TREE`` (a checkout of an earlier onnxgate, e.g. ``git worktree add /tmp/before
    REV``), the same ``onnxgate run`` from that tree, interleaved with this one in the same run.

Run: ``.venv/bin/python benchmarks/bench_cli.py [--repeat N] [--before TREE]``. Reports medians
and ratios.
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

BASELINE_RUN = textwrap.dedent(
    """
    import sys
    import numpy as np
    import onnxruntime as ort
    import skops.io as sio
    from skl2onnx import to_onnx

    model = sio.load(sys.argv[1], trusted=sio.get_untrusted_types(file=sys.argv[1]))
    x = np.load(sys.argv[2]).astype(np.float32)
    onx = to_onnx(model, x[:1], options={"zipmap": False})
    sess = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    label, proba = sess.run(None, {"X": x})
    ok = (label == model.predict(x)).all() and np.allclose(proba, model.predict_proba(x), atol=1e-5, rtol=1e-4)
    with open(sys.argv[3], "wb") as f:
        f.write(onx.SerializeToString())
    sys.exit(0 if ok else 1)
    """
)


def wall(cmd: list[str], repeat: int, env: dict[str, str] | None = None) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", metavar="TREE", help="an earlier onnxgate checkout to time beside this one")
    args = parser.parse_args()
    py = sys.executable
    onnxgate = [py, "-m", "onnxgate"]

    help_t = wall(onnxgate + ["--help"], args.repeat)
    ort_t = wall([py, "-c", "import onnxruntime"], args.repeat)
    print(f"(a) onnxgate --help {help_t * 1000:.0f} ms; import onnxruntime {ort_t * 1000:.0f} ms; ratio {help_t / ort_t:.2f}x")

    import numpy as np
    import skops.io as sio
    from sklearn.datasets import load_breast_cancer
    from sklearn.ensemble import RandomForestClassifier

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        X, y = load_breast_cancer(return_X_y=True)
        sio.dump(RandomForestClassifier(n_estimators=100, max_depth=8, random_state=0).fit(X, y), d / "rf.skops")
        np.save(d / "x.npy", X[::2].astype(np.float32))
        (d / "baseline.py").write_text(BASELINE_RUN)
        script = [py, str(d / "baseline.py"), str(d / "rf.skops"), str(d / "x.npy"), str(d / "b.onnx")]
        run_cmd = onnxgate + ["-q", "run", str(d / "rf.skops"), "--sample", str(d / "x.npy"), "-o", str(d / "o.onnx"), "--trust-code"]
        before_env = None
        if args.before:
            import os

            before_env = dict(os.environ, PYTHONPATH=str(Path(args.before).resolve() / "src"))
        # interleaved, one of each per round: a shared machine's load moves all three alike
        rounds: dict[str, list[float]] = {"script": [], "run": [], "before": []}
        for _ in range(args.repeat):
            rounds["script"].append(wall(script, 1))
            rounds["run"].append(wall(run_cmd, 1))
            if before_env is not None:
                rounds["before"].append(wall(run_cmd, 1, before_env))
        base_t, run_t = statistics.median(rounds["script"]), statistics.median(rounds["run"])
        before_t = statistics.median(rounds["before"]) if rounds["before"] else None
    print(
        f"(b) onnxgate run RandomForest(100 trees) {run_t:.2f} s; hand-written script {base_t:.2f} s; "
        f"ratio {run_t / base_t:.2f}x (goal <= 1.0x)"
    )
    if before_t is not None:
        print(f"(c) the same run from {args.before}: {before_t:.2f} s; now/before {run_t / before_t:.2f}x, "
              f"before/script {before_t / base_t:.2f}x")


if __name__ == "__main__":
    main()
