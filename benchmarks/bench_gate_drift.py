"""Dependency drift in the gate: what re-checking only the drifted models costs and saves.

A git repository of the 10 scikit-learn models of bench_gate.py, published once by
``onnxgate gate --publish``. Then, with nothing committed:

(a) ``gate --changed-since HEAD`` with ``drift = false``: git diff only, nothing selected;
(b) the same with drift on and nothing drifted: (b) - (a) is what checking every published
    report's versions costs;
(c) one model's published report records another scikit-learn version (an upgrade that only
    it saw): the gate selects it alone, re-checks it and replays its published model;
(d) what a team would otherwise run after a dependency upgrade: ``gate`` over every model.

Run: ``.venv/bin/python benchmarks/bench_gate_drift.py [--repeat N]``. Medians and ratios,
all measured in this run.

Measured here (2 shared CPUs, median of 3): (a) 0.55 s, (b) 0.68 s (+135 ms for 10 reports),
(c) 14.1 s, (d) 13.6 s: (c)/(d) = 1.04x. On these small models the framework worker's start
(importing scikit-learn and skl2onnx, ~8-10 s) is the whole cost and each further model adds
~0.3 s, so re-checking one model costs as much as re-checking ten; what drift selection buys
here is that an upgrade is checked at all on a pull request that changes no model file.
It saves time only where models are expensive to check (large networks, many data sets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gate import build_models, wall  # noqa: E402  (the same 10 models, the same timer)

HEADER = '[defaults]\nregistry = "registry"\nregression = "fail"\natol = 1e-4\nrtol = 1e-3\n{extra}\n'


def write_configs(root: Path, models: list[tuple[str, Path, Path]]) -> tuple[Path, Path]:
    tables = "".join(
        f'[[model]]\nname = "{name}"\nsource = "{src.name}"\nsample = "{sample.name}"\nversion = "1.0.0"\n\n'
        for name, src, sample in models
    )
    on, off = root / "onnxgate.toml", root / "onnxgate-nodrift.toml"
    on.write_text(HEADER.format(extra="") + tables)
    off.write_text(HEADER.format(extra="drift = false") + tables)
    return on, off


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def record_version(report: Path, package: str, version: str) -> None:
    data = json.loads(report.read_text())
    data["versions"][package] = version
    report.write_text(json.dumps(data))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    py = sys.executable
    env = dict(os.environ, ONNXGATE_TRUST="code")  # the corpus's skops files hold tree types (our own models)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        models = build_models(root)
        on, off = write_configs(root, models)
        (root / ".gitignore").write_text("registry/\n")
        git(root, "init", "-q", "-b", "main")
        git(root, "-c", "user.email=b@example.com", "-c", "user.name=b", "add", "-A")
        git(root, "-c", "user.email=b@example.com", "-c", "user.name=b", "commit", "-q", "-m", "models")
        gate = [py, "-m", "onnxgate", "-q", "gate"]
        publish = wall([[*gate, "--config", str(on), "--publish"]], 1, env)
        since = ["--changed-since", "HEAD"]
        off_t = wall([[*gate, "--config", str(off), *since]], args.repeat, env)
        on_t = wall([[*gate, "--config", str(on), *since]], args.repeat, env)
        record_version(root / "registry" / "iris-forest" / "1.0.0" / "report.json", "scikit-learn", "1.0.2")
        one = wall([[*gate, "--config", str(on), *since]], args.repeat, env)
        everything = wall([[*gate, "--config", str(on)]], args.repeat, env)
    n = len(models)
    print(f"{n} scikit-learn models, published once in {publish:.2f}s; median of {args.repeat}")
    print(f"  (a) --changed-since HEAD, drift = false          {off_t:7.2f}s")
    print(f"  (b) --changed-since HEAD, drift on, no drift     {on_t:7.2f}s  (b)-(a) = {1000 * (on_t - off_t):+.0f} ms for {n} reports")
    print(f"  (c) --changed-since HEAD, 1 model drifted        {one:7.2f}s")
    print(f"  (d) gate over all {n} models (re-check all)       {everything:7.2f}s  (c)/(d) = {one / everything:.2f}x")


if __name__ == "__main__":
    main()
