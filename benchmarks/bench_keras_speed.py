"""How much of a Keras "speedup" is call overhead? ONNX Runtime against each way of calling the model.

The demo's Keras models (``onnxgate.demo_keras.build_keras_models``: a CNN, a two-input MLP),
validated with ``--benchmark``: the speed report times, at batch 1 and at the sample's batch
(32), with one thread on each side where it can be set,

* the reference, an eager ``model(x, training=False)``: mostly Keras' per-call overhead at
  these sizes;
* ``model.predict(x, batch_size=N, verbose=0)``: builds a data pipeline on every call;
* ``tf.function(model)(x)``: the traced graph, what a service calling TensorFlow would run;
* ONNX Runtime's ``InferenceSession.run``.

It prints, per model and batch, each median and the speedup of ONNX Runtime over it, all
measured in the same run: quote the ``tf.function`` ratio when comparing runtimes.

Run: ``.venv/bin/python benchmarks/bench_keras_speed.py [--seconds 0.5]``
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="timed seconds per figure (warm-up on top)")
    args = parser.parse_args()

    from onnxgate.demo_keras import build_keras_models
    from onnxgate.pipelines.run import run

    with tempfile.TemporaryDirectory() as tmp:
        built = build_keras_models(Path(tmp), epochs=1)
        print(f"{'model':<17} {'batch':>5} {'original call':<40} {'median ms':>10} {'ORT ms':>8} {'ORT speedup':>12}")
        for name in ("keras_cnn", "keras_two_input"):
            source, sample = built[name]
            report, conv = run(str(source), sample=str(sample), benchmark=True, benchmark_seconds=args.seconds)
            conv.reference.close()
            assert report.passed, report.failures()
            speed = report.speed
            for row in speed.rows:
                for label, timing in speed.original_timings(row):
                    print(f"{name:<17} {row.batch:>5} {label.removeprefix('keras '):<40} {timing.median_ms:>10.3f} "
                          f"{row.onnxruntime.median_ms:>8.4f} {row.speedup_over(timing):>11.1f}x")


if __name__ == "__main__":
    main()
