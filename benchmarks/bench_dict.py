"""DictVectorizer's keys/values graph (fix sklearn.dict_vectorizer_tensors): scatter against one-hot.

A DictVectorizer fitted on 1000 synthetic rows of 30 entries each out of a 5000-key vocabulary
(seeded), converted at opset 22 (ScatterElements, reduction="add": memory N x (V + M)) and at
opset 15 (Equal against range(V), Cast, Mul, ReduceSum: memory N x M x V). One ONNX Runtime
session per graph (one intra-op thread), median of 10 runs on the 1000 rows, beside scikit-learn's
``transform(rows).toarray()`` on the same rows; the graphs' columns are checked equal to it first.

Run: ``PYTHONPATH=src .venv/bin/python benchmarks/bench_dict.py`` (a few seconds).
"""

from __future__ import annotations

import warnings

import numpy as np

from _timing import median_seconds  # a sibling: this folder is on sys.path

warnings.filterwarnings("ignore")

VOCABULARY, ENTRIES, ROWS, REPEAT = 5000, 30, 1000, 10


def main() -> None:
    import onnxruntime as ort
    from sklearn.feature_extraction import DictVectorizer

    from onnxgate.converters.fixes import sklearn_dict as dicts

    rng = np.random.default_rng(0)
    keys = [f"f{i}" for i in range(VOCABULARY)]
    rows = [{keys[j]: float(rng.normal()) for j in rng.choice(VOCABULARY, ENTRIES, replace=False)} for _ in range(ROWS)]
    dv = DictVectorizer().fit(rows)
    feeds = dicts.rows_to_tensors(rows)
    expected = dv.transform(rows).toarray().astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    print(f"V={len(dv.feature_names_)} M={ENTRIES} N={ROWS}, median of {REPEAT}, one thread")
    for label, opset in (("scatter (opset 22)", 22), ("one-hot (opset 15)", 15)):
        model = dicts.standalone(dv, np.float32, opset, 3)
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(session.run(None, feeds)[0], expected)
        print(f"{label:24s} {median_seconds(lambda: session.run(None, feeds), REPEAT) * 1e3:8.1f} ms")
    print(f"{'scikit-learn':24s} {median_seconds(lambda: dv.transform(rows).toarray(), REPEAT) * 1e3:8.1f} ms")


if __name__ == "__main__":
    main()
