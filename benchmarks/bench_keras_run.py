"""Whole-process wall time of ``onnxgate run`` on the demo's Keras CNN (Conv2D + BatchNorm +
Dropout, ``.keras``) against a hand-written script doing the same tf2onnx conversion, ORT
run and comparison.

The baseline is what a careful user writes: load the ``.keras`` file, convert it with
``tf2onnx.convert.from_keras`` and an explicit input signature, run ORT at the sample's
batch size, compare with ``model(x, training=False)`` through ``allclose`` and write the
file. onnxgate also sweeps batch 1 and an odd size, runs the static checks and writes a
report. Target: at most 1.3x.

Run: ``.venv/bin/python benchmarks/bench_keras_run.py [--repeat N]``. Reports medians; the two
commands alternate so that a busy machine slows both alike.
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

BASELINE = textwrap.dedent(
    """
    import os, sys
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np
    import onnxruntime as ort
    import tensorflow as tf
    import keras
    import tf2onnx

    model = keras.models.load_model(sys.argv[1], compile=False)
    x = np.load(sys.argv[2])
    spec = [tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name) for t in model.inputs]
    onx, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=18)
    data = onx.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {spec[0].name: x})
    want = np.asarray(model(x, training=False))
    ok = np.allclose(got, want, atol=1e-5, rtol=1e-4)
    with open(sys.argv[3], "wb") as f:
        f.write(data)
    sys.exit(0 if ok else 1)
    """
)


def once(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return took


def interleaved(a: list[str], b: list[str], repeat: int) -> tuple[float, float]:
    """Median wall times, alternating the two commands so that load on a shared machine hits both alike."""
    once(a), once(b)  # warm the page cache for both
    ta, tb = [], []
    for _ in range(repeat):
        ta.append(once(a))
        tb.append(once(b))
    return statistics.median(ta), statistics.median(tb)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        build = "from pathlib import Path; from onnxgate.demo_keras import build_keras_models; build_keras_models(Path(r'%s'))" % d
        subprocess.run([py, "-c", build], check=True, capture_output=True)
        src, sample = d / "keras_cnn.keras", d / "keras_cnn.npy"
        script = d / "baseline.py"
        script.write_text(BASELINE)
        base, ours = interleaved(
            [py, str(script), str(src), str(sample), str(d / "base.onnx")],
            [py, "-m", "onnxgate", "-q", "run", str(src), "--sample", str(sample), "-o", str(d / "ours.onnx"), "--report", str(d / "r.json")],
            args.repeat,
        )
    print(f"hand-written tf2onnx+ORT+compare: {base:.2f}s (median of {args.repeat})")
    print(f"onnxgate run (3 batch sizes, checks, report): {ours:.2f}s")
    print(f"ratio: {ours / base:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
