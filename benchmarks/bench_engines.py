"""``zoo verify`` engines against each other, in the same run: ``--jobs 1``, ``--jobs 2``, ``--engine ray``.

(a) The ONNX backend test data shipped in the ``onnx`` package (pytorch-converted,
    pytorch-operator, simple: 140 small models), verified in place (DIR mode).
(b) A heavier synthetic zoo generated here: N models of about M MB of float32 weights each
    (L MatMul+Tanh layers of distinct square weights), 3 data sets each, whose stored
    outputs numpy computes. Loading, ``onnx.checker`` and the runs dominate, so the engines'
    parallelism should pay off.

Ray runs on a local runtime with 2 CPUs (``ray.init(num_cpus=2)``), started once; its
start-up is timed on its own and reported beside the per-run times, because a single CLI
call (``onnxgate zoo verify --engine ray`` without ``--ray-address``) pays it every time.
The first Ray run also starts onnxgate's worker inside each Ray worker; later runs (and part
(b), which follows (a) on the same runtime) reuse it, imports done, while every local
``--jobs`` run starts its workers afresh: the in-process Ray figures are those of a
long-lived runtime (``--ray-address``). The last lines of each part are the honest
one-shot figures: one ``onnxgate zoo verify`` CLI process per engine, Ray's local runtime
started and stopped inside it.

Run: ``.venv/bin/python benchmarks/bench_engines.py [--repeat N] [--heavy-models 40] [--heavy-mb 20]``.

Measured 2026-12-03 on the project's 2-core machine, shared (load average 6.5), ray 2.60.0:
ray.init 9.5 s (2.4 s on an idle machine, 19 s at load 11).
(a) 140 models, in-process medians: --jobs 1 6.95 s, --jobs 2 4.03 s (1.72x), Ray warm 1.29 s
    (5.4x: warm workers against the local engine's fresh ones); one CLI call each: 8.51 s,
    5.93 s (1.44x), --engine ray 11.77 s (0.72x: the local runtime's start-up dominates).
(b) 40 models x 20 MB, 3 data sets: --jobs 1 15.2 s, --jobs 2 10.8 s (1.40x), Ray 8.4 s (1.81x);
    one CLI call each: 19.1 s, 12.7 s (1.50x), --engine ray 22.5 s (0.85x).
Ray pays off on a long-lived runtime (``--ray-address``) or more machines, not as a 2-core pool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx

from onnxgate.model_zoo.zoo import ZooReport, verify_zoo

from bench_zoo_verify import write_tanh_chain  # benchmarks/ is on sys.path when run as a script

SUITES = ("pytorch-converted", "pytorch-operator", "simple")
ENGINES: dict[str, dict] = {"--jobs 1": {"jobs": 1}, "--jobs 2": {"jobs": 2}, "--engine ray": {"jobs": 2, "engine": "ray"}}


def heavy_zoo(root: Path, n: int, mb: float, layers: int = 4, rows: int = 64) -> None:
    """``n`` models with ``layers`` distinct ``width``-square float32 weights (``mb`` MB in all), 3 data sets each."""
    width = int(np.sqrt(mb * 2**20 / 4 / layers))
    rng = np.random.default_rng(0)
    for m in range(n):
        weights = {f"W{i}": (rng.standard_normal((width, width)) / np.sqrt(width)).astype(np.float32) for i in range(layers)}
        write_tanh_chain(root / f"heavy{m:03d}", f"heavy{m}", weights, list(weights), rng, rows)


def compare(label: str, root: Path, repeat: int) -> None:
    """Interleaved runs of every engine (the machine's load drifts); medians and ratios to --jobs 1."""
    times: dict[str, list[float]] = {name: [] for name in ENGINES}
    first: dict[str, float] = {}
    verdicts: dict[str, dict[str, str]] = {}
    for _ in range(repeat):
        for name, kwargs in ENGINES.items():
            t = time.perf_counter()
            report: ZooReport = verify_zoo(root, **kwargs)
            took = time.perf_counter() - t
            first.setdefault(name, took)
            times[name].append(took)
            verdicts[name] = {r.name: r.status for r in report.results}
    assert all(v == verdicts["--jobs 1"] for v in verdicts.values()), "the engines disagree on a verdict"
    base = statistics.median(times["--jobs 1"])
    counts = ZooReport("", []).counts
    for status in verdicts["--jobs 1"].values():
        counts[status] += 1
    print(f"{label}: {len(verdicts['--jobs 1'])} models, {dict((k, v) for k, v in counts.items() if v)}; "
          f"median of {repeat} (first run)")
    for name in ENGINES:
        med = statistics.median(times[name])
        print(f"  {name:<13} {med:7.2f}s ({first[name]:6.2f}s)  speed-up over --jobs 1: {base / med:5.2f}x")
    cli = {name: timed(lambda: _cli(root, name)) for name in ENGINES}
    print("  one CLI call each (a fresh process: imports, workers and, for Ray, a local runtime started and stopped):")
    for name, took in cli.items():
        print(f"  {'onnxgate ' + name:<22} {took:7.2f}s  speed-up over --jobs 1: {cli['--jobs 1'] / took:5.2f}x")


def _cli(root: Path, engine: str) -> None:
    """``onnxgate zoo verify ROOT`` with the engine's flags, as a user runs it (exit 1: some models did not pass)."""
    flags = engine.split() + (["--jobs", "2"] if "ray" in engine else [])
    proc = subprocess.run([sys.executable, "-m", "onnxgate", "-q", "zoo", "verify", str(root), *flags],
                          capture_output=True, text=True, check=False)
    assert proc.returncode in (0, 1), proc.stderr[-2000:]


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--heavy-models", type=int, default=40)
    ap.add_argument("--heavy-mb", type=float, default=20.0, help="MB of weights per heavy model")
    args = ap.parse_args()
    import ray

    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    up = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False))
    print(f"Ray local runtime start-up (ray.init, 2 CPUs): {up:.2f}s -- paid by every CLI call without --ray-address")
    data = Path(onnx.__file__).parent / "backend" / "test" / "data"
    try:
        with tempfile.TemporaryDirectory(prefix="onnxgate-bench-engines-") as tmp:
            corpus = Path(tmp) / "corpus"
            for s in SUITES:
                shutil.copytree(data / s, corpus / s)
            compare("(a) backend corpus", corpus, args.repeat)
            shutil.rmtree(corpus)
            heavy = Path(tmp) / "heavy"
            made = timed(lambda: heavy_zoo(heavy, args.heavy_models, args.heavy_mb))
            size = sum(p.stat().st_size for p in heavy.rglob("*") if p.is_file()) / 2**20
            print(f"(b) generated {args.heavy_models} models, {size:.0f} MB on disk, in {made:.1f}s")
            compare(f"(b) heavy zoo ({args.heavy_mb:g} MB/model, 3 data sets)", heavy, max(1, args.repeat - 1))
    finally:
        down = timed(ray.shutdown)
        print(f"Ray shutdown: {down:.2f}s; load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
