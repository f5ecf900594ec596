"""Whole-process wall time of ``onnxgate run`` on the demo's small CNN (.pt2) against a
hand-written script doing the same ``torch.onnx.export`` + ORT run + comparison.

The baseline is what a careful user writes: load the ExportedProgram, export it with
the dynamo exporter, run ORT at the sample's batch size, compare with ``allclose`` and
write the file. onnxgate also sweeps batch 1 and an odd size, runs the static checks
and writes a report. Target: at most 1.3x.

Run: ``.venv/bin/python benchmarks/bench_torch_run.py [--repeat N]``. Reports medians.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

BASELINE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import onnxruntime as ort
    import torch

    program = torch.export.load(sys.argv[1])
    x = np.load(sys.argv[2])
    onx = torch.onnx.export(program, dynamo=True, verbose=False).model_proto
    data = onx.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (got,) = sess.run(None, {sess.get_inputs()[0].name: x})
    with torch.no_grad():
        want = program.module()(torch.from_numpy(x)).numpy()
    ok = np.allclose(got, want, atol=1e-5, rtol=1e-4)
    with open(sys.argv[3], "wb") as f:
        f.write(data)
    sys.exit(0 if ok else 1)
    """
)


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user+sys) of one whole process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return elapsed, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def medians(cmds: dict[str, list[str]], repeat: int) -> dict[str, tuple[float, float]]:
    """Runs the commands interleaved, so a change in the machine's load hits both alike.

    CPU time is reported next to wall time because on a shared, loaded machine wall
    time mostly measures the other tenants.
    """
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for _ in range(repeat):
        for name, cmd in cmds.items():
            runs[name].append(measure(cmd))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    py = sys.executable
    from onnxgate.demo_torch import export_program, save_sample, torch_models

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        module, inputs = torch_models()["torch_small_cnn"]
        src = export_program(module, inputs, d / "cnn.pt2")
        sample = save_sample(inputs, d / "cnn")
        script = d / "baseline.py"
        script.write_text(BASELINE)
        out = medians(
            {
                "base": [py, str(script), str(src), str(sample), str(d / "base.onnx")],
                "ours": [py, "-m", "onnxgate", "-q", "run", str(src), "--sample", str(sample), "-o", str(d / "ours.onnx"),
                         "--report", str(d / "r.json")],
            },
            args.repeat,
        )
    base, ours = out["base"], out["ours"]
    print(f"hand-written export+ORT+compare: wall {base[0]:.2f}s, cpu {base[1]:.2f}s (medians of {args.repeat})")
    print(f"onnxgate run (3 batch sizes, checks, report): wall {ours[0]:.2f}s, cpu {ours[1]:.2f}s")
    print(f"ratio: wall {ours[0] / base[0]:.2f}x, cpu {ours[1] / base[1]:.2f}x (target <= 1.3x)")


if __name__ == "__main__":
    main()
