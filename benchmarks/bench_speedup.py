"""Is ONNX Runtime worth it here? Speedup over the original at batch 1 and batch 64.

Two models:

* the demo's scikit-learn RandomForest (``onnxgate.demo.sklearn_models()["cancer_random_forest"]``),
  converted by onnxgate (skl2onnx);
* the demo's PyTorch CNN (``onnxgate.demo_torch.torch_models()["torch_small_cnn"]``: Conv2d +
  BatchNorm + ReLU with a residual block) at 3x32x32, exported with
  ``torch.onnx.export`` (dynamic batch) and validated by onnxgate against the module.

For each, ``onnxgate.validate(..., benchmark=True, threads=T)`` produces the speed report
(median of N timed calls after warm-up, same thread count on both sides). The whole
measurement is repeated ``--rounds`` times to show the spread (the machine may be shared).

Independent check (the issue's "agree within 20%"): for each model and batch, a separate
Python process times ``session.run`` with ``timeit`` (same model file, same feeds, same
intra-op threads), right after the speed report of the same round. It prints the median of
single timed calls (``repeat(number=1)``, what the report's median estimates) and classic
timeit's mean of back-to-back calls (best of 5); the ratio report/timeit uses the median.
On a busy machine the mean absorbs the time other processes take, the median much less.

Run: ``.venv/bin/python benchmarks/bench_speedup.py [--threads 1 2] [--rounds 3] [--seconds 0.5]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np

TIMEIT = textwrap.dedent(
    """
    import sys, timeit, json
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(sys.argv[3])
    sess = ort.InferenceSession(sys.argv[1], sess_options=so, providers=["CPUExecutionProvider"])
    x = np.load(sys.argv[2])
    feeds = {sess.get_inputs()[0].name: x}
    timer = timeit.Timer(lambda: sess.run(None, feeds))
    number, total = timer.autorange()                  # calls per repeat taking >= 0.2 s
    # per-call times (number=1): their median is what the speed report's median estimates
    calls = max(20, min(5000, int(number * 0.5 / max(total, 1e-9))))
    single = sorted(timer.repeat(repeat=calls, number=1))
    # classic timeit: total / number, the mean of back-to-back calls (best of 5 repeats)
    mean = min(timer.repeat(repeat=5, number=number)) / number
    print(json.dumps({"median_ms": single[len(single) // 2] * 1e3, "calls": calls, "mean_ms": mean * 1e3, "number": number}))
    """
)


def forest_case(work: Path):
    from onnxgate.demo import sklearn_models
    from onnxgate.pipelines.run import convert

    est, (X, y) = sklearn_models()["cancer_random_forest"]
    est.fit(X, y)
    x64 = np.asarray(X[:64], dtype=np.float32)
    sample = work / "forest.npy"
    np.save(sample, x64)
    onnx_path = work / "forest.onnx"
    convert(est, onnx_path, sample=sample)
    return "sklearn RandomForest (50 trees, depth 6)", est, onnx_path, sample, x64


def cnn_case(work: Path):
    import torch

    from onnxgate.demo_torch import torch_models

    net, _ = torch_models()["torch_small_cnn"]  # the demo's CNN, so the figures are the demo's
    x64 = np.random.default_rng(0).standard_normal((64, 3, 32, 32)).astype(np.float32)
    sample = work / "cnn.npy"
    np.save(sample, x64)
    onnx_path = work / "cnn.onnx"
    torch.onnx.export(
        net, (torch.from_numpy(x64[:2]),), str(onnx_path), input_names=["image"], output_names=["logits"],
        dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False,
    )
    return "demo PyTorch CNN (conv-bn-relu + residual block, 3x32x32)", net, onnx_path, sample, x64


def independent(onnx_path: Path, x: np.ndarray, threads: int, work: Path) -> dict[str, float]:
    feed = work / f"feed_{x.shape[0]}.npy"
    np.save(feed, x)
    out = subprocess.run(
        [sys.executable, "-c", TIMEIT, str(onnx_path), str(feed), str(threads)], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=0.5, help="timed seconds per figure")
    args = parser.parse_args()

    from onnxgate.pipelines.run import validate

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for build in (forest_case, cnn_case):
            title, source, onnx_path, sample, x64 = build(work)
            for threads in args.threads:
                rows: dict[int, list] = {}
                ratios: dict[int, list[float]] = {}
                timeit_ms: dict[int, list[float]] = {}
                for _ in range(args.rounds):
                    report = validate(source, onnx_path, sample=sample, benchmark=True, threads=threads,
                                      benchmark_seconds=args.seconds)
                    assert report.passed, report.failures()
                    for r in report.speed.rows:  # the independent check right after, in the same round
                        ref = independent(onnx_path, x64[: r.batch], threads, work)
                        rows.setdefault(r.batch, []).append(r)
                        timeit_ms.setdefault(r.batch, []).append(ref)
                        ratios.setdefault(r.batch, []).append(r.onnxruntime.median_ms / ref["median_ms"])
                print(f"\n{title}: {threads} thread(s), {args.rounds} rounds, load average {os.getloadavg()[0]:.2f}; "
                      f"original = {report.speed.original_label}")
                print(f"{'batch':>5} {'original ms':>12} {'ORT ms':>9} {'speedup median (min-max)':>26} "
                      f"{'reps orig/ORT':>14} {'timeit median/mean ms':>22} {'report/timeit median (min-max)':>31}")
                for batch, rs in sorted(rows.items()):
                    sp, ra = [r.speedup for r in rs], ratios[batch]
                    orig = statistics.median(r.original.median_ms for r in rs)
                    ort_ms = statistics.median(r.onnxruntime.median_ms for r in rs)
                    t_med = statistics.median(t["median_ms"] for t in timeit_ms[batch])
                    t_mean = statistics.median(t["mean_ms"] for t in timeit_ms[batch])
                    print(f"{batch:>5} {orig:>12.3f} {ort_ms:>9.4f} "
                          f"{statistics.median(sp):>9.1f}x ({min(sp):.1f}-{max(sp):.1f}x) "
                          f"{rs[0].original.repetitions:>6}/{rs[0].onnxruntime.repetitions:<7} "
                          f"{t_med:>10.4f}/{t_mean:<10.4f} "
                          f"{statistics.median(ra):>12.2f} ({min(ra):.2f}-{max(ra):.2f})")

if __name__ == "__main__":
    main()
