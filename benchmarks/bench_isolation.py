"""The cost of isolation: ONNX Runtime in a reused worker process against in this process.

Over the ONNX backend test data shipped in the ``onnx`` package (pytorch-converted,
pytorch-operator, simple: 140 models; tensor inputs only), each model is loaded
once and run on every ``test_data_set_N``, as ``zoo verify`` does: with
``IsolationPolicy(in_process=True)`` (plain ORT sessions) and with the default
worker pool (one worker, reused across models, started inside the timing; then the
same worker again, already started, for the steady state).

Run: ``.venv/bin/python benchmarks/bench_isolation.py [--repeat N]``. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from onnxgate.runtime.isolation import IsolationPolicy, WorkerPool, create_session
from onnxgate.runtime.runner import RunError

SUITES = ("pytorch-converted", "pytorch-operator", "simple")


def cases() -> list[tuple[Path, list[dict[str, np.ndarray]]]]:
    root = Path(onnx.__file__).parent / "backend" / "test" / "data"
    out = []
    for suite in SUITES:
        for model in sorted((root / suite).glob("*/model.onnx")):
            proto = onnx.load(str(model), load_external_data=False)
            inits = {i.name for i in proto.graph.initializer}
            names = [i.name for i in proto.graph.input if i.name not in inits]
            feeds_list = []
            for d in sorted(model.parent.glob("test_data_set_*")):
                tensors = []
                for pb in sorted(d.glob("input_*.pb"), key=lambda p: int(p.stem.split("_")[1])):
                    t = onnx.TensorProto()
                    t.ParseFromString(pb.read_bytes())
                    tensors.append(numpy_helper.to_array(t))
                if len(tensors) == len(names):
                    feeds_list.append(dict(zip(names, tensors)))
            if feeds_list:
                out.append((model, feeds_list))
    return out


def sweep(items, policy: IsolationPolicy, pool: WorkerPool | None) -> tuple[float, int]:
    start = time.perf_counter()
    ran = 0
    for model, feeds_list in items:
        try:
            session = create_session(str(model), policy=policy, pool=pool)
            for feeds in feeds_list:
                session.run(feeds)
            ran += 1
        except RunError:
            pass
    return time.perf_counter() - start, ran


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    items = cases()
    sweep(items, IsolationPolicy(in_process=True), None)  # warm the file cache and ORT's imports
    local, worker, warm = [], [], []
    for _ in range(args.repeat):
        t, ran_local = sweep(items, IsolationPolicy(in_process=True), None)
        local.append(t)
        pool = WorkerPool(max_workers=1)  # a fresh worker each repeat: its start-up is in the timing
        t, ran_worker = sweep(items, IsolationPolicy(), pool)
        worker.append(t)
        t, _ = sweep(items, IsolationPolicy(), pool)  # the same worker again: steady state, no start-up
        warm.append(t)
        pool.close()
    lm, wm, hm = statistics.median(local), statistics.median(worker), statistics.median(warm)
    print(f"{len(items)} models ({ran_local} ran in-process, {ran_worker} in the worker), {args.repeat} repeats")
    print(f"in-process  median {lm:.3f}s")
    print(f"worker      median {wm:.3f}s")
    print(f"worker warm median {hm:.3f}s (already started)")
    print(f"ratio worker/in-process {wm / lm:.2f}x cold start included, {hm / lm:.2f}x warm")


if __name__ == "__main__":
    main()
