"""Models whose input is not a feature matrix: text documents, labels, rows of tokens.

A text classifier, Pipeline(TfidfVectorizer(), LogisticRegression()), goes through the real CLI from a
.skops file and a .npy of strings, and a copy with one idf_ entry scaled by 1.01 must fail. Each text
fix is shown needed (ONNXGATE_DISABLE_FIXES), and wrong input shapes are one-line errors, exit 2.
The documents are sentences of the bundled data sets' descriptions (tests/converters/sklearn_catalogue.py).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV
from tests.conftest import run_onnxgate
from tests.converters.sklearn_catalogue import sentences

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")
skops_io = pytest.importorskip("skops.io")

# the documents the gate checks: real sentences, with accents and one-letter words mixed in
EXTRA = ["Le café naïve à Zürich: a résumé of 3 élèves.", "I am a cat, and a b c d are letters.",
         "Straße über Ölfeld, déjà vu."]


def _corpus() -> tuple[list[str], np.ndarray]:
    """Sentences and, as the class, which of the first three thirds of the corpus each comes from."""
    docs = sentences()
    return docs, (np.arange(len(docs)) * 3 // len(docs))


def _classifier():
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    docs, y = _corpus()
    return make_pipeline(TfidfVectorizer(), LogisticRegression(max_iter=1000)).fit(docs + EXTRA, [*y, 0, 1, 2])


def _documents() -> np.ndarray:
    docs, _ = _corpus()
    return np.array(docs[::6] + EXTRA)


def _run(est, X, tmp_path, **kwargs):
    from onnxgate.pipelines.run import run

    sample = tmp_path / "x.npy"
    np.save(sample, X)
    report, _ = run(est, sample=str(sample), in_process=True, **kwargs)
    return report


def _fixes(report) -> list[str]:
    return [n.split(":")[0].removeprefix("fix ") for n in report.conversion.notes if n.startswith("fix ")]


def test_text_classifier_cli_passes_and_an_original_with_a_scaled_idf_fails(cli, tmp_path):
    model = _classifier()
    skops_io.dump(model, tmp_path / "text.skops")
    np.save(tmp_path / "docs.npy", _documents())
    assert np.load(tmp_path / "docs.npy").dtype.kind == "U"  # no pickle
    ok = cli("-q", "run", tmp_path / "text.skops", "--sample", tmp_path / "docs.npy", "-o", tmp_path / "text.onnx",
             "--report", tmp_path / "r.json")
    assert ok.code == 0, ok.out + ok.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "passed" and (tmp_path / "text.onnx").exists()

    tfidf = model.steps[0][1]
    tfidf.idf_[tfidf.vocabulary_["the"]] *= 1.01  # one word's weight, 1% off: the graph no longer matches
    skops_io.dump(model, tmp_path / "broken.skops")
    bad = cli("-q", "validate", tmp_path / "broken.skops", tmp_path / "text.onnx", "--sample", tmp_path / "docs.npy")
    assert bad.code == 1 and "FAILED" in bad.out, bad.out + bad.err


def _onnx_with_idf_scaled(model, path: Path) -> None:
    """The converted graph with the idf weight of 'the' (a constant of the vocabulary's length) scaled by 1.01."""
    import onnx
    from onnx import numpy_helper

    tfidf = model.steps[0][1]
    onx = onnx.load(path)
    init = next(i for i in onx.graph.initializer if list(i.dims) in ([len(tfidf.idf_)], [1, len(tfidf.idf_)]))
    idf = numpy_helper.to_array(init).copy()
    np.testing.assert_allclose(idf.reshape(-1), tfidf.idf_, rtol=1e-6)  # it is the idf vector
    idf.reshape(-1)[tfidf.vocabulary_["the"]] *= 1.01
    init.CopyFrom(numpy_helper.from_array(idf, init.name))
    onnx.save(onx, path)


def test_validate_catches_a_scaled_idf_in_the_onnx_graph(cli, tmp_path):
    """The other direction: the original is right, the graph has one idf weight 1% off."""
    from onnx import numpy_helper

    model = _classifier()
    skops_io.dump(model, tmp_path / "text.skops")
    np.save(tmp_path / "docs.npy", _documents())
    assert cli("-q", "convert", tmp_path / "text.skops", "-o", tmp_path / "m.onnx", "--sample", tmp_path / "docs.npy").code == 0
    assert cli("-q", "validate", tmp_path / "text.skops", tmp_path / "m.onnx", "--sample", tmp_path / "docs.npy").code == 0
    evidence = tmp_path / "test_data_set_0"  # a STRING TensorProto reads back as an object array of str
    evidence.mkdir()
    (evidence / "input_0.pb").write_bytes(numpy_helper.from_array(_documents().astype(object), "X").SerializeToString())
    assert cli("-q", "validate", tmp_path / "text.skops", tmp_path / "m.onnx", "--sample", evidence).code == 0
    _onnx_with_idf_scaled(model, tmp_path / "m.onnx")
    bad = cli("-q", "validate", tmp_path / "text.skops", tmp_path / "m.onnx", "--sample", tmp_path / "docs.npy")
    assert bad.code == 1, bad.out + bad.err


@pytest.mark.parametrize("suffix", [".txt", ".json"])
def test_text_and_json_samples_feed_documents(suffix, cli, tmp_path):
    skops_io.dump(_classifier(), tmp_path / "text.skops")
    docs = [str(d) for d in _documents()]
    sample = tmp_path / f"docs{suffix}"
    if suffix == ".txt":
        sample.write_text("\r\n".join(docs) + "\r\n", encoding="utf-8")
    else:
        sample.write_text(json.dumps(docs, ensure_ascii=False), encoding="utf-8")
    result = cli("-q", "run", tmp_path / "text.skops", "--sample", sample, "--report", tmp_path / "r.json")
    assert result.code == 0, result.out + result.err
    assert json.loads((tmp_path / "r.json").read_text())["inputs"]["shapes"] == {"X": [len(docs)]}


def test_without_a_sample_documents_come_from_the_vocabulary(tmp_path):
    """No --sample: documents of vocabulary words, seeded; every row counts words, so the run is not vacuous."""
    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.pipelines.run import run

    model = _classifier()
    feeds = SklearnConverter().synthesize(model, options={})
    assert feeds["X"].ndim == 1 and feeds["X"].dtype == object
    assert (model.steps[0][1].transform(feeds["X"]).sum(axis=1) > 0).all()
    assert list(SklearnConverter().synthesize(model, options={})["X"]) == list(feeds["X"])  # deterministic
    report, _ = run(model, in_process=True)
    assert report.status == "passed", report.to_markdown()[:2000]


@pytest.mark.parametrize("bad", ["2d", "object", "numbers"])
def test_wrong_sample_for_a_text_model_is_one_line_exit_2(bad, cli, tmp_path):
    skops_io.dump(_classifier(), tmp_path / "text.skops")
    docs = _documents()
    sample = tmp_path / "x.npy"
    if bad == "object":
        np.save(sample, docs.astype(object), allow_pickle=True)
    else:
        np.save(sample, docs.reshape(-1, 1) if bad == "2d" else np.arange(6.0))
    result = cli("-q", "run", tmp_path / "text.skops", "--sample", sample, "-o", tmp_path / "m.onnx")
    expected = {"2d": "takes a 1-D array of documents", "object": "dtype=str", "numbers": "holds float64 values"}[bad]
    assert result.code == 2 and expected in result.err and "Traceback" not in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_a_matrix_model_still_refuses_one_dimensional_input(cli, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    X, y = load_iris(return_X_y=True)
    skops_io.dump(LogisticRegression(max_iter=500).fit(X, y), tmp_path / "m.skops")
    np.save(tmp_path / "x.npy", X[0])
    result = cli("-q", "run", tmp_path / "m.skops", "--sample", tmp_path / "x.npy")
    assert result.code == 2 and "needs a 2-D (rows, features) array" in result.err


def test_label_encoder_takes_one_label_per_row_and_refuses_a_matrix(cli, tmp_path):
    from sklearn.datasets import load_iris
    from sklearn.preprocessing import LabelEncoder

    iris = load_iris()
    labels = np.asarray(iris.target_names)[iris.target]
    skops_io.dump(LabelEncoder().fit(labels), tmp_path / "le.skops")
    np.save(tmp_path / "y.npy", labels[::10])
    assert cli("-q", "run", tmp_path / "le.skops", "--sample", tmp_path / "y.npy").code == 0
    np.save(tmp_path / "y2.npy", labels[::10].reshape(-1, 1))
    result = cli("-q", "run", tmp_path / "le.skops", "--sample", tmp_path / "y2.npy")
    assert result.code == 2 and "takes a 1-D array of labels (strings)" in result.err and "x.ravel()" in result.err


def test_label_encoder_with_a_wrong_class_table_fails(tmp_path):
    """Parity can fail: the graph's classes table swapped for two classes gives other codes."""
    from sklearn.preprocessing import LabelEncoder

    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.pipelines.run import validate

    labels = np.array(["setosa", "versicolor", "virginica"])[np.arange(30) % 3]
    est = LabelEncoder().fit(labels)
    assert _run(est, labels, tmp_path).status == "passed"
    onx = SklearnConverter().convert(est, {"X": labels.astype(object)}, opset=None, options={}).model
    node = next(n for n in onx.graph.node if n.op_type == "LabelEncoder")
    keys = next(a for a in node.attribute if a.name == "keys_strings")
    keys.strings[0], keys.strings[1] = keys.strings[1], keys.strings[0]
    path = tmp_path / "swapped.onnx"
    path.write_bytes(onx.SerializeToString())
    np.save(tmp_path / "y.npy", labels)
    assert validate(est, path, sample=str(tmp_path / "y.npy"), in_process=True).status == "failed"


def test_edge_values_an_integer_label_encoder_refuses_are_not_compared(tmp_path):
    """--edge probes zeros and large values; labels the encoder never saw have no answer: those cases are
    dropped with a warning, the rest is still judged (a wrong class table still fails)."""
    from sklearn.preprocessing import LabelEncoder

    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.pipelines.run import validate

    labels = np.array([3, 1, 2, 3, 7, 7, 1])
    est = LabelEncoder().fit(labels)
    report = _run(est, labels, tmp_path, edge=True)
    assert report.status == "passed", report.to_markdown()
    refused = [f.message for f in report.findings if f.check == "edge"]
    assert len(refused) == 2 and all("not compared: the original refuses" in m and "unseen labels" in m for m in refused)
    assert not any(c.name.startswith("edge:") for c in report.cases)
    onx = SklearnConverter().convert(est, {"X": labels}, opset=None, options={}).model
    node = next(n for n in onx.graph.node if n.op_type == "LabelEncoder")
    keys = next(a for a in node.attribute if a.name in ("keys_int64s", "keys_floats"))
    keys.ints[0], keys.ints[1] = keys.ints[1], keys.ints[0]
    (tmp_path / "swapped.onnx").write_bytes(onx.SerializeToString())
    assert validate(est, tmp_path / "swapped.onnx", sample=str(tmp_path / "x.npy"), in_process=True, edge=True).status == "failed"


def test_feature_hasher_takes_rows_of_tokens_from_json(cli, tmp_path):
    from sklearn.feature_extraction import FeatureHasher

    rows = [d.split()[:5] for d in sentences()[:12]]
    skops_io.dump(FeatureHasher(n_features=64, input_type="string").fit(rows), tmp_path / "fh.skops")
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    result = cli("-q", "run", tmp_path / "fh.skops", "--sample", tmp_path / "rows.json")
    assert result.code == 0, result.out + result.err


# -- the text fixes: each needed ----------------------------------------------------------------


def test_token_pattern_fix_counts_accented_words_and_bigrams(tmp_path, monkeypatch):
    """skl2onnx's [a-zA-Z0-9_]+ cuts 'café' and keeps 'a', so unigrams with accents and bigrams around
    one-letter words differ; with scikit-learn's pattern in re2 syntax every count matches."""
    from sklearn.feature_extraction.text import CountVectorizer

    docs = sentences()[:40] + EXTRA
    est = CountVectorizer(ngram_range=(1, 2)).fit(docs)
    report = _run(est, np.array(docs[::4] + EXTRA), tmp_path)
    assert report.status == "passed" and "sklearn.text_token_pattern" in _fixes(report), report.to_markdown()[:2000]
    monkeypatch.setenv(DISABLE_ENV, "sklearn.text_token_pattern")
    assert _run(est, np.array(docs[::4] + EXTRA), tmp_path).status == "failed"


def test_count_dtype_fix_gives_integer_counts(tmp_path, monkeypatch):
    from sklearn.feature_extraction.text import CountVectorizer

    est = CountVectorizer().fit(sentences())
    report = _run(est, np.array(sentences()[:10]), tmp_path)
    assert report.status == "passed" and "sklearn.count_dtype" in _fixes(report)
    monkeypatch.setenv(DISABLE_ENV, "sklearn.count_dtype")
    assert _run(est, np.array(sentences()[:10]), tmp_path).status == "failed"


def test_binary_label_binarizer_declares_one_column(tmp_path, monkeypatch):
    from sklearn.preprocessing import LabelBinarizer

    labels = np.array(["spam", "ham"])[np.arange(10) % 2]
    est = LabelBinarizer().fit(labels)
    report = _run(est, labels, tmp_path)
    assert report.status == "passed" and "sklearn.binary_label_binarizer_shape" in _fixes(report)
    monkeypatch.setenv(DISABLE_ENV, "sklearn.binary_label_binarizer_shape")
    assert _run(est, labels, tmp_path).status == "failed"


def test_case_mapping_difference_is_reported_not_hidden(tmp_path):
    """Python lowercases a final 'Σ' to 'ς', ONNX's StringNormalizer to 'σ': no option fixes it, so the run
    fails on that row and the conversion notes name the rows and the reason."""
    from sklearn.feature_extraction.text import CountVectorizer

    docs = ["ΟΔΟΣ ΣΟΦΙΑΣ", "the road", "Η ΟΔΟΣ ΕΙΝΑΙ"]
    est = CountVectorizer().fit(docs)
    report = _run(est, np.array(docs), tmp_path)
    note = next(n for n in report.conversion.notes if n.startswith("text:"))
    assert "(rows [0, 2])" in note and "final 'Σ'" in note
    assert report.status == "failed"
    assert _run(est, np.array(docs[1:2]), tmp_path, accept_vacuous=True).conversion.notes[-1].startswith("fix ")


def _locale_dir(tmp_path: Path) -> Path | None:
    """A LOCPATH holding only C.UTF-8: en_US.UTF-8, ORT's default, is then missing on any glibc machine."""
    c_utf8 = next((p for p in (Path("/usr/lib/locale/C.utf8"), Path("/usr/lib/locale/C.UTF-8")) if p.is_dir()), None)
    if c_utf8 is None:
        return None
    d = tmp_path / "locales"
    d.mkdir()
    (d / "C.utf8").symlink_to(c_utf8)
    return d


@pytest.mark.slow
def test_locale_fix_loads_where_en_us_is_missing(tmp_path):
    """ONNX Runtime lowercases in en_US.UTF-8 unless told otherwise and refuses the graph where that locale is
    not installed (slim images). Forced here with LOCPATH, in fresh processes: with the fix the graph names
    C.UTF-8 and `convert` (which loads what it writes in ONNX Runtime) succeeds; without it, exit 1, no file."""
    import onnx

    locales = _locale_dir(tmp_path)
    if locales is None:
        pytest.skip("no C.UTF-8 locale directory to build a LOCPATH from")
    skops_io.dump(_classifier(), tmp_path / "text.skops")
    np.save(tmp_path / "docs.npy", _documents())
    env = {"LOCPATH": str(locales), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    args = ("-q", "convert", tmp_path / "text.skops", "--sample", tmp_path / "docs.npy", "-o")
    ok = run_onnxgate(*args, tmp_path / "ok.onnx", env=env)
    assert ok.code == 0, ok.err
    normalizer = next(n for n in onnx.load(tmp_path / "ok.onnx").graph.node if n.op_type == "StringNormalizer")
    assert {a.name: a.s for a in normalizer.attribute}["locale"] == b"C.UTF-8"
    broken = run_onnxgate(*args, tmp_path / "broken.onnx", env={**env, DISABLE_ENV: "sklearn.text_locale"})
    assert broken.code == 1 and "locale" in broken.err and not (tmp_path / "broken.onnx").exists(), broken.err


def test_sublinear_tf_fix_weighs_counts_as_scikit_learn(tmp_path, monkeypatch):
    """skl2onnx's log(1 + tf) against scikit-learn's 1 + log(tf): every non-zero weight differs without the fix."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    est = TfidfVectorizer(sublinear_tf=True).fit(sentences())
    report = _run(est, np.array(sentences()[:10]), tmp_path)
    assert report.status == "passed" and "sklearn.sublinear_tf" in _fixes(report), report.to_markdown()[:2000]
    monkeypatch.setenv(DISABLE_ENV, "sklearn.sublinear_tf")
    assert _run(est, np.array(sentences()[:10]), tmp_path).status == "failed"


def test_stop_words_with_ngrams_are_a_named_difference(tmp_path):
    from sklearn.feature_extraction.text import CountVectorizer

    est = CountVectorizer(stop_words="english", ngram_range=(1, 2)).fit(sentences())
    report = _run(est, np.array(sentences()[:12]), tmp_path)
    assert report.status == "failed"
    assert any("with stop words and n-grams" in n for n in report.conversion.notes)


def test_text_column_of_a_dataframe_model_from_csv(tmp_path):
    """ColumnTransformer routing a text column to a TfidfVectorizer and a number column to a scaler:
    a CSV sample gives one ONNX input per column, and the text fixes reach the vectorizer inside."""
    import pandas as pd
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.feature_extraction.text import TfidfVectorizer

    from onnxgate.pipelines.run import run

    docs, y = _corpus()
    frame = pd.DataFrame({"review": docs, "stars": np.arange(len(docs), dtype=float) % 5})
    model = make_pipeline(ColumnTransformer([("text", TfidfVectorizer(), "review"), ("num", StandardScaler(), ["stars"])]),
                          LogisticRegression(max_iter=1000)).fit(frame, y)
    frame.iloc[::7].to_csv(tmp_path / "rows.csv", index=False)
    report, _ = run(model, sample=str(tmp_path / "rows.csv"), in_process=True)
    assert report.status == "passed" and "sklearn.text_token_pattern" in _fixes(report), report.to_markdown()[:2000]


def test_validate_a_hand_converted_graph_that_takes_a_column_of_documents(cli, tmp_path):
    """skl2onnx's documentation declares text as StringTensorType([None, 1]); a graph converted so (with the
    hand fixes, so it loads and agrees) validates against the same .txt sample, the documents fed as a column."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import StringTensorType

    from onnxgate.converters.fixes.sklearn_text import UNICODE_TOKENS, loadable_locale

    model = _classifier()
    hand = {id(model.steps[0][1]): {"locale": loadable_locale(), "tokenexp": UNICODE_TOKENS}, id(model.steps[1][1]): {"zipmap": False}}
    onx = convert_sklearn(model, initial_types=[("X", StringTensorType([None, 1]))], options=hand)
    (tmp_path / "hand.onnx").write_bytes(onx.SerializeToString())
    skops_io.dump(model, tmp_path / "text.skops")
    (tmp_path / "docs.txt").write_text("\n".join(_documents()) + "\n", encoding="utf-8")
    result = cli("-q", "validate", tmp_path / "text.skops", tmp_path / "hand.onnx", "--sample", tmp_path / "docs.txt")
    assert result.code == 0, result.out + result.err


def test_integer_labels_take_whole_numbers_only():
    from sklearn.preprocessing import LabelEncoder

    from onnxgate.converters.sklearn_inputs import form_feed, input_form
    from onnxgate.errors import SampleError

    form = input_form(LabelEncoder().fit([3, 1, 2]))
    assert (form.kind, form.dtype) == ("labels", np.dtype(np.int64))
    assert form_feed(form, np.array([1.0, 3.0]), "y.json").tolist() == [1, 3]  # a JSON list of 1.0, 3.0
    for bad, message in ((np.array([1.5]), "fitted on integers"), (np.array(["1"]), "fitted on integers")):
        with pytest.raises(SampleError, match=message):
            form_feed(form, bad, "y.json")
