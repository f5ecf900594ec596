"""QuantileTransformer: skl2onnx's graph against onnxgate's (fix sklearn.quantile_transformer_graph).

A default QuantileTransformer fitted on iris (150 quantiles), measured in the same run:

* conversion: ``skl2onnx.convert_sklearn`` alone against onnxgate's ``SklearnConverter.convert``
  (its fixes and the reference run included);
* inference: one ONNX Runtime session per graph (one intra-op thread), median of 7 runs on
  16 and on 100 000 rows, beside scikit-learn's own ``transform``.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_quantile.py`` (about a minute: skl2onnx's conversion).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from _timing import median_seconds  # a sibling: this folder is on sys.path

warnings.filterwarnings("ignore")


def main() -> None:
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import QuantileTransformer

    from onnxgate.converters.sklearn import SklearnConverter

    X, _ = load_iris(return_X_y=True)
    qt = QuantileTransformer(random_state=0).fit(X)
    graphs: dict[str, Any] = {}

    def ours() -> None:
        graphs["onnxgate"] = SklearnConverter().convert(qt, {"X": X[:4].astype(np.float32)}, opset=None, options={}).model

    def raw() -> None:
        graphs["skl2onnx"] = convert_sklearn(qt, initial_types=[("X", FloatTensorType([None, X.shape[1]]))],
                                             target_opset={"": 18, "ai.onnx.ml": 3})

    ours()  # imports
    convert = {"onnxgate": median_seconds(ours), "skl2onnx": median_seconds(raw)}
    print(f"conversion: skl2onnx {convert['skl2onnx']:.2f} s, onnxgate {convert['onnxgate']:.3f} s "
          f"({convert['skl2onnx'] / convert['onnxgate']:.0f}x faster)")
    rows = (np.random.default_rng(0).normal(size=(100_000, X.shape[1])) * X.std(0) + X.mean(0)).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for name, model in graphs.items():
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        cells = []
        for n in (16, len(rows)):
            feeds = {"X": rows[:n]}
            session.run(None, feeds)
            cells.append(f"{n} rows {median_seconds(lambda: session.run(None, feeds), 7) * 1e3:.2f} ms")
        print(f"inference {name:9s} ({len(model.graph.node)} nodes): " + ", ".join(cells))
    wide = rows.astype(np.float64)
    print(f"scikit-learn transform: {len(rows)} rows {median_seconds(lambda: qt.transform(wide), 7) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
