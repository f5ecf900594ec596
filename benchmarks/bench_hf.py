"""The same saved transformers directories through ``optimum-cli export onnx`` (optimum's
exporter, which exports and validates at one dummy shape) and through ``onnxgate run``.

Per model: whole-process wall time of each tool (run one after the other, the order
alternating from model to model and repeat to repeat, so the machine's load hits both
alike; with ``--repeat N`` the median), the input shapes each one checked, and its verdict. optimum only
*warns* on a value mismatch, so its verdict is read from its log: "error" when it exits
non-zero, "mismatch" when it logs that values differ beyond its atol, else "passed".
onnxgate's shapes come from its JSON report (every case it ran); optimum's are its one
validation shape (its defaults: batch 2, sequence 16; images and audio at the config's size).

The models are the tests' tiny ones (tests/converters/hf_tiny.py: hidden 32, 2 layers),
saved with save_pretrained in a temp dir; nothing is downloaded.

Run: ``.venv/bin/python benchmarks/bench_hf.py [--models bert,gpt2] [--repeat 3]``. Without optimum-onnx
installed (``pip install 'onnxgate[bench]'``) the optimum column is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("USE_TF", "0")  # building the tiny models here needs no TensorFlow
MODELS = ["bert", "distilbert", "t5", "whisper", "gpt2", "llama", "vit"]
OPTIMUM_SHAPES = {"vit": "2x3x32x32", "whisper": "2x16x64"}  # the rest: input_ids etc. at 2x16
# optimum cannot infer the task of a local directory: the task each model was saved for
OPTIMUM_TASKS = {
    "bert": "text-classification", "distilbert": "feature-extraction", "t5": "feature-extraction",
    "whisper": "automatic-speech-recognition", "gpt2": "text-generation", "llama": "text-generation",
    "vit": "image-classification",
}


@dataclass
class Row:
    tool: str
    model: str
    seconds: float
    shapes: str
    verdict: str


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    return time.perf_counter() - start, proc


def optimum_row(name: str, source: Path, out: Path, env: dict[str, str]) -> Row:
    cli = shutil.which("optimum-cli") or str(Path(sys.executable).with_name("optimum-cli"))
    seconds, proc = timed([cli, "export", "onnx", "-m", str(source), "--task", OPTIMUM_TASKS[name], str(out)], env)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        lines = [l for l in log.splitlines() if l.strip()]
        verdict = "error: " + (lines[-1][:90] if lines else "?")
    elif "not within" in log or "mismatch" in log.lower():
        verdict = "mismatch (warned, exit 0)"
    else:
        verdict = "passed"
    return Row("optimum-cli export onnx", name, seconds, OPTIMUM_SHAPES.get(name, "2x16"), verdict)


def onnxgate_row(name: str, source: Path, out: Path, env: dict[str, str]) -> Row:
    report = out.with_suffix(".json")
    cmd = [sys.executable, "-m", "onnxgate", "-q", "run", str(source), "-o", str(out), "--report", str(report)]
    seconds, proc = timed(cmd, env)
    if not report.exists():
        return Row("onnxgate run", name, seconds, "-", f"error: {proc.stderr.strip()[-70:]}")
    data = json.loads(report.read_text())
    shapes = sorted({"x".join(map(str, shape)) for c in data["cases"] for shape in _first_input_shapes(c)})
    return Row("onnxgate run", name, seconds, ", ".join(shapes), data["status"])


def _median(runs: list[Row]) -> Row:
    ordered = sorted(runs, key=lambda r: r.seconds)
    return ordered[len(ordered) // 2]


def _first_input_shapes(case: dict) -> list[list[int]]:
    shapes = case.get("input_shapes") or case.get("shapes") or {}
    return [shapes[k] for k in list(shapes)[:1]] if isinstance(shapes, dict) else []


def build(root: Path, names: list[str]) -> dict[str, Path]:
    sys.path.insert(0, str(ROOT))
    from tests.converters import hf_tiny

    paths = {}
    for name in names:
        paths[name] = root / name
        getattr(hf_tiny, name)().save_pretrained(paths[name])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool and model; the median is reported")
    args = parser.parse_args(argv)
    names = [n for n in args.models.split(",") if n]
    env = dict(os.environ, USE_TF="0", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    have_optimum = shutil.which("optimum-cli") is not None or Path(sys.executable).with_name("optimum-cli").exists()
    if not have_optimum:
        print("optimum-cli not found: the optimum column is skipped (pip install 'onnxgate[bench]')", file=sys.stderr)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for i, (name, source) in enumerate(build(root, names).items()):
            tools = [lambda k: onnxgate_row(name, source, root / f"{name}-{k}.onnx", env)]
            if have_optimum:
                tools.append(lambda k: optimum_row(name, source, root / f"{name}-optimum-{k}", env))
            runs: list[list[Row]] = [[] for _ in tools]
            for k in range(args.repeat):
                order = list(range(len(tools)))[:: 1 if (i + k) % 2 else -1]  # alternate who goes first
                for t in order:
                    runs[t].append(tools[t](k))
            rows += [_median(r) for r in runs[::-1]]
    print(f"| model | tool | wall s | shapes tested (first input) | verdict |\n|---|---|---:|---|---|")
    for r in rows:
        print(f"| {r.model} | {r.tool} | {r.seconds:.1f} | {r.shapes} | {r.verdict} |")
    if have_optimum:
        by = {(r.model, r.tool.split()[0]): r.seconds for r in rows}
        ratios = [by[(n, "onnxgate")] / by[(n, "optimum-cli")] for n in names]
        print(f"\nonnxgate / optimum wall time per model: " + ", ".join(f"{n} {x:.2f}" for n, x in zip(names, ratios)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
