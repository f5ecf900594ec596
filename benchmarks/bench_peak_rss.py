"""Peak RSS of validating a model whose weights live in external data, as a ratio to its size.

Builds a chain of MatMul+Tanh layers holding ``--mb`` MB of float32 weights (default
500), saved with ``onnx.save(..., save_as_external_data=True)``, and the evidence
(inputs and numpy-computed outputs) next to it; then, in a fresh interpreter, runs

    onnxgate -q validate model.onnx --evidence ev

and reads that process's peak RSS (``ru_maxrss`` from ``os.wait4``). Target: at most
2.5x the model's size (weights loaded once: ONNX Runtime reads the external data
itself, onnxgate never parses the weights into a ModelProto).

A second figure, the ratio for a plain ``python -c "import onnxruntime; InferenceSession(path)"``,
is the floor any ORT-based validator pays.

Run: ``.venv/bin/python benchmarks/bench_peak_rss.py [--mb 500] [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WIDTH = 1024  # one layer = WIDTH x WIDTH float32 = 4 MiB


def build(directory: Path, megabytes: int) -> tuple[Path, int]:
    """The model (external weights) and its evidence; returns (model path, bytes on disk)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from onnxgate.inputs.evidence import write_evidence

    layers = max(1, megabytes * 1024 * 1024 // (WIDTH * WIDTH * 4))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, WIDTH)).astype(np.float32)
    nodes, inits, prev, h = [], [], "x", x.astype(np.float64)
    for i in range(layers):
        w = (rng.standard_normal((WIDTH, WIDTH)) / np.sqrt(WIDTH)).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"W{i}"))
        nodes.append(helper.make_node("MatMul", [prev, f"W{i}"], [f"m{i}"], name=f"layer{i}/MatMul"))
        nodes.append(helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"layer{i}/Tanh"))
        h = np.tanh(h @ w.astype(np.float64))
        prev = f"t{i}"
        del w
    graph = helper.make_graph(
        nodes, "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", WIDTH])],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["N", WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = directory / "model.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="weights.bin")
    write_evidence(directory / "ev", [({"x": x}, {prev: h})])
    size = path.stat().st_size + (directory / "weights.bin").stat().st_size
    return path, size


def peak_rss(cmd: list[str]) -> tuple[int, float, int]:
    """(peak RSS in bytes, seconds, exit code) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        print(err, file=sys.stderr)
    return usage.ru_maxrss * 1024, seconds, code


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="weights in MB (default 500)")
    parser.add_argument("--keep", metavar="DIR", help="build in DIR and keep it")
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    directory = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="onnxgate-rss-"))
    directory.mkdir(parents=True, exist_ok=True)
    if args.build_only:
        build(directory, args.mb)
        return 0
    # Build in a child: a fork of this process after building would start with its
    # pages, and ru_maxrss would count them against the command being measured.
    subprocess.run([sys.executable, __file__, "--mb", str(args.mb), "--keep", str(directory), "--build-only"], check=True)
    path = directory / "model.onnx"
    size = path.stat().st_size + (directory / "weights.bin").stat().st_size
    floor_cmd = [sys.executable, "-c",
                 "import sys, onnxruntime as o; o.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])", str(path)]
    floor, floor_s, _ = peak_rss(floor_cmd)
    rss, seconds, code = peak_rss([sys.executable, "-m", "onnxgate", "-q", "validate", str(path), "--evidence", str(directory / "ev")])
    print(f"model: {size / 1e6:.0f} MB ({path})")
    print(f"onnxgate validate --evidence: exit {code}, peak RSS {rss / 1e6:.0f} MB = {rss / size:.2f}x the model, {seconds:.1f}s")
    print(f"ORT InferenceSession alone:   peak RSS {floor / 1e6:.0f} MB = {floor / size:.2f}x the model, {floor_s:.1f}s")
    print(f"target <= 2.5x: {'met' if rss / size <= 2.5 else 'NOT met'}")
    if not args.keep:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
