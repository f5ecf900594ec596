"""What the --html report costs, measured against what runs anyway.

(a) ``compare_outputs`` with the bounded error summary (judge/error_summary.py) against the
    same comparison without it, on float32 outputs of 10k and 1M elements: the summary is
    computed for every comparison, so its cost is a ratio of the comparison a user runs anyway
    (``np.allclose``-style maths), measured interleaved in the same run.
(b) rendering the HTML page of a real validation report (LogisticRegression on iris, 6 cases)
    against rendering its JSON and Markdown reports.

Run: ``.venv/bin/python benchmarks/bench_html.py [--repeat N]``. Reports medians and ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from _timing import median_seconds  # a sibling: this folder is on sys.path


def bench_compare(repeat: int) -> None:
    import onnxgate.judge.compare as compare

    rng = np.random.default_rng(0)
    real = compare.summarize_errors
    for size in (10_000, 1_000_000):
        ref = rng.standard_normal(size).astype(np.float32).reshape(-1, 100)
        got = ref * np.float32(1.0000001)
        with_ms, without_ms = [], []
        for _ in range(repeat):  # interleaved: load on a shared machine hits both alike
            compare.summarize_errors = real
            with_ms.append(median_seconds(lambda: compare.compare_outputs({"y": ref}, {"y": got}), 1) * 1000)
            compare.summarize_errors = lambda *a, **k: None
            without_ms.append(median_seconds(lambda: compare.compare_outputs({"y": ref}, {"y": got}), 1) * 1000)
        compare.summarize_errors = real
        a, b = statistics.median(with_ms), statistics.median(without_ms)
        print(f"compare_outputs, {size:>9,} float32 elements: {a:8.2f} ms with the summary, {b:8.2f} ms without ({a / b:.2f}x)")


def bench_render(repeat: int) -> None:
    import skops.io as sio
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    from onnxgate.judge.html import render_report
    from onnxgate.judge.html.render import plotly_js
    from onnxgate.pipelines.run import validate

    X, y = load_iris(return_X_y=True)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        model = LogisticRegression(max_iter=500).fit(X, y)
        sio.dump(model, d / "lr.skops")
        np.save(d / "x.npy", X[::3].astype(np.float32))
        (d / "lr.onnx").write_bytes(to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False}).SerializeToString())
        report = validate(str(d / "lr.skops"), d / "lr.onnx", sample=str(d / "x.npy"))
    start = time.perf_counter()
    page = render_report(report)
    first = (time.perf_counter() - start) * 1000
    html = median_seconds(lambda: render_report(report), repeat) * 1000
    js = median_seconds(report.to_json, repeat) * 1000
    md = median_seconds(report.to_markdown, repeat) * 1000
    print(f"render, {len(report.cases)} cases: html {html:.2f} ms (first call {first:.0f} ms: templates and plotly.js read once), "
          f"json {js:.2f} ms, markdown {md:.2f} ms; html/json {html / js:.2f}x; page {len(page) / 1e6:.2f} MB, "
          f"of which plotly.js (inlined once) {len(plotly_js()) / len(page):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    bench_compare(args.repeat)
    bench_render(args.repeat)


if __name__ == "__main__":
    main()
