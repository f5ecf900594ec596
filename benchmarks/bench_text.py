"""A text classifier, Pipeline(TfidfVectorizer(), LogisticRegression()): onnxgate against the hand script.

The model is fitted on the sentences of scikit-learn's bundled data set descriptions plus three
sentences with accents and one-letter words; the sample is every sixth sentence plus those three.
Timed in the same process, the same rounds (``bench_corpus._measure``: one warm-up round dropped,
the median of the others):

* **onnxgate**: ``run(model, sample=docs.npy, in_process=True)``: conversion with the text fixes,
  checker and ORT load, reference, calibration, parity at three batch sizes and two optimisation
  levels, the report;
* **raw**, three hand scripts an expert would write, each ``skl2onnx.convert_sklearn`` with a
  ``StringTensorType([None])`` input, one ``InferenceSession``, one ``run`` and ``np.allclose``
  against ``predict_proba``: ``raw`` as skl2onnx documents it; ``raw+locale`` with the
  ``locale`` option (ONNX Runtime's default en_US.UTF-8 is missing on slim images);
  ``raw+locale+tokenexp`` with scikit-learn's token pattern in re2 syntax as well: the hand
  fixes onnxgate applies by itself. The ratio is against the scripts whose own check passed.

Run: ``PYTHONPATH=src:. .venv/bin/python benchmarks/bench_text.py [--rounds 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_corpus import _measure, _print, onnxgate_run
from tests.converters.sklearn_catalogue import sentences

warnings.filterwarnings("ignore")

EXTRA = ["Le café naïve à Zürich: a résumé of 3 élèves.", "I am a cat, and a b c d are letters.",
         "Straße über Ölfeld, déjà vu."]
HAND_FIXES = {"raw": {}, "raw+locale": {"locale": "C.UTF-8"},
              "raw+locale+tokenexp": {"locale": "C.UTF-8", "tokenexp": r"[\p{L}\p{N}_]{2,}"}}


def text_classifier() -> tuple[Any, np.ndarray]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs = sentences() + EXTRA
    y = np.arange(len(docs)) * 3 // len(docs)
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(docs, y)
    return model, np.array(docs[::6] + EXTRA)


def raw_script(model: Any, docs: np.ndarray, vectorizer_options: dict[str, Any]) -> bool:
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    options = {id(model.steps[-1][1]): {"zipmap": False}}
    if vectorizer_options:
        options[id(model.steps[0][1])] = vectorizer_options
    onx = convert_sklearn(model, initial_types=[("X", StringTensorType([None]))], options=options)
    session = ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])
    _, proba = session.run(None, {"X": docs})
    return bool(np.allclose(proba, model.predict_proba(docs), rtol=1e-3, atol=1e-4))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds after one warm-up round (default 3)")
    args = parser.parse_args()
    model, docs = text_classifier()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-text-") as tmp:
        sample = Path(tmp) / "docs.npy"
        np.save(sample, docs)
        for label, opts in HAND_FIXES.items():
            rows.append(_measure(f"TfidfVectorizer+LR vs {label}", lambda: onnxgate_run(model, sample),
                                 lambda opts=opts: raw_script(model, docs, opts), args.rounds))
    _print(rows)


if __name__ == "__main__":
    main()
