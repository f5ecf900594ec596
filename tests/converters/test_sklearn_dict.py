"""DictVectorizer models: rows of {key: number or string}, fed as keys/values tensors.

A DictVectorizer alone and Pipeline(DictVectorizer(), LogisticRegression()) go through the real CLI
from a .skops file and a .json list of objects (numbers and a string value) with no flags, and a
broken copy (one vocabulary index swapped; the LogisticRegression's coef_ x1.01) must FAIL against
the graph of the original. With the fix switched off the model is refused in one line, as is a
.json row with a nested value. The rows are iris' measurements by feature name plus its species name.
"""

from __future__ import annotations

import hashlib
import json
import warnings

import numpy as np
import pytest

from onnxgate.converters.fixes import DISABLE_ENV
from onnxgate.converters.fixes.sklearn_dict import DICT_TENSORS, KEYS, VALUES
from tests.converters.sklearn_catalogue import iris_dicts

warnings.filterwarnings("ignore")
pytest.importorskip("skl2onnx")
skops_io = pytest.importorskip("skops.io")


def iris_rows() -> tuple[list[dict], np.ndarray]:
    """Iris as rows of {feature name: value, "species": name} and a binary target (long sepals)."""
    rows = iris_dicts()
    return rows, np.array([r["sepal length (cm)"] > 5.8 for r in rows], dtype=int)


def _dict_vectorizer():
    from sklearn.feature_extraction import DictVectorizer

    return DictVectorizer().fit(iris_rows()[0])


def _pipeline():
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(DictVectorizer(), LogisticRegression(max_iter=500)).fit(*iris_rows())


def _swap_vocabulary(dv) -> None:
    """Two features' columns exchanged: scikit-learn now writes petal length where the graph writes width."""
    a, b = dv.feature_names_[0], dv.feature_names_[1]
    dv.vocabulary_[a], dv.vocabulary_[b] = dv.vocabulary_[b], dv.vocabulary_[a]


def _scale_coef(pipe) -> None:
    pipe.steps[-1][1].coef_ *= 1.01


MODELS = {"DictVectorizer": (_dict_vectorizer, _swap_vocabulary),
          "Pipeline": (_pipeline, _scale_coef)}


def _sample(tmp_path, rows=None):
    """Every 10th iris row, one with a key the model never saw (ignored on both sides) and one empty."""
    rows = rows if rows is not None else iris_rows()[0][::10] + [{"colour": 2.0, "species": "setosa"}, {}]
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(rows))
    return path


@pytest.mark.parametrize("name", list(MODELS))
def test_cli_passes_with_no_flags_and_a_broken_copy_fails(name, cli, tmp_path):
    make, break_it = MODELS[name]
    model = make()
    skops_io.dump(model, tmp_path / "m.skops")
    sample = _sample(tmp_path)
    ok = cli("-q", "run", tmp_path / "m.skops", "--sample", sample, "-o", tmp_path / "m.onnx", "--report", tmp_path / "r.json")
    assert ok.code == 0, ok.out + ok.err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["status"] == "passed"
    assert any(n.startswith(f"fix {DICT_TENSORS.name}:") for n in report["conversion"]["notes"])

    break_it(model)
    skops_io.dump(model, tmp_path / "broken.skops")
    bad = cli("-q", "validate", tmp_path / "broken.skops", tmp_path / "m.onnx", "--sample", sample)
    assert bad.code == 1 and "FAILED" in bad.out, bad.out + bad.err


def test_graph_inputs_are_keys_and_values_tensors_and_string_values_are_one_hot(tmp_path):
    import onnx
    import onnxruntime as ort

    from onnxgate.inputs.samples import load_sample
    from onnxgate.pipelines.run import convert

    result = convert(_dict_vectorizer(), tmp_path / "dv.onnx", sample=str(_sample(tmp_path)), in_process=True)
    result.reference.close()
    model = onnx.load(tmp_path / "dv.onnx")
    assert [(i.name, i.type.tensor_type.elem_type) for i in model.graph.input] == [
        (KEYS, onnx.TensorProto.STRING), (VALUES, onnx.TensorProto.FLOAT)]
    feeds = load_sample(_sample(tmp_path, [{"species": "virginica", "sepal width (cm)": 3.5}])).arrays
    assert feeds[KEYS].tolist() == [["species=virginica", "sepal width (cm)"]]
    out = ort.InferenceSession(str(tmp_path / "dv.onnx")).run(None, {KEYS: feeds[KEYS], VALUES: feeds[VALUES].astype(np.float32)})[0]
    expected = _dict_vectorizer().transform([{"species": "virginica", "sepal width (cm)": 3.5}]).toarray()
    np.testing.assert_array_equal(out, expected.astype(np.float32))


def test_without_the_fix_the_model_is_refused_in_one_line(cli, tmp_path, monkeypatch):
    skops_io.dump(_pipeline(), tmp_path / "m.skops")
    monkeypatch.setenv(DISABLE_ENV, DICT_TENSORS.name)
    result = cli("-q", "run", tmp_path / "m.skops", "--sample", _sample(tmp_path), "-o", tmp_path / "m.onnx", "--in-process")
    assert result.code == 2 and "one map(string, float) per call" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "m.onnx").exists()


def test_a_nested_value_is_a_one_line_error(cli, tmp_path):
    skops_io.dump(_pipeline(), tmp_path / "m.skops")
    sample = _sample(tmp_path, [{"sepal length (cm)": 5.1}, {"tags": ["a", "b"]}])
    result = cli("-q", "run", tmp_path / "m.skops", "--sample", sample, "-o", tmp_path / "m.onnx")
    assert result.code == 2 and "row 1 key 'tags' holds a list value" in result.err, result.err
    assert len(result.err.strip().splitlines()) == 1 and not (tmp_path / "m.onnx").exists()


def test_no_sample_synthesises_rows_of_the_vocabulary_in_the_given_value_range():
    """Rows of the fitted features; a DictVectorizer records no value ranges: standard normal values put every
    row in one class of this model (vacuous, said), iris' own range (--input-range values=0:8) passes."""
    from onnxgate.pipelines.run import run

    report, _ = run(_pipeline(), in_process=True, input_ranges=("values=0:8",))
    assert report.status == "passed", report.to_markdown()[:2000]
    assert report.inputs.kind == "synthesised" and set(report.inputs.shapes) == {KEYS, VALUES}
    assert run(_pipeline(), in_process=True)[0].status == "vacuous"


@pytest.mark.parametrize("opset", [12, 15, None])
def test_same_model_same_bytes_and_exact_columns_at_each_opset(opset, tmp_path):
    """Deterministic bytes at each opset, accepted by the full checker; the scatter graph (opset >= 16) and the
    one-hot graph (12: ReduceSum's axes as an attribute; 15) give scikit-learn's columns exactly."""
    import onnx
    import onnxruntime as ort

    from onnxgate.converters.sklearn import SklearnConverter
    from onnxgate.inputs.samples import load_sample

    feeds = load_sample(_sample(tmp_path)).arrays
    feeds[VALUES] = feeds[VALUES].astype(np.float32)
    models = [SklearnConverter().convert(model, feeds, opset=opset, options={}).model
              for model in (_pipeline(), _pipeline(), _dict_vectorizer())]
    onnx.checker.check_model(models[0], full_check=True)
    assert len({hashlib.sha256(m.SerializeToString()).hexdigest() for m in models[:2]}) == 1
    columns = ort.InferenceSession(models[2].SerializeToString()).run(None, feeds)[0]
    expected = _dict_vectorizer().transform(json.loads(_sample(tmp_path).read_text())).toarray()
    np.testing.assert_array_equal(columns, expected.astype(np.float32))


def test_the_symptom_is_present_in_the_raw_converter():
    """skl2onnx alone still gives one map per call (drop the fix when this fails)."""
    from onnx import TensorProto
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DictionaryType, FloatTensorType, StringTensorType

    raw = convert_sklearn(_dict_vectorizer(), initial_types=[("X", DictionaryType(StringTensorType([1]), FloatTensorType([1])))])
    (x,) = raw.graph.input
    assert x.type.HasField("map_type") and x.type.map_type.key_type == TensorProto.STRING  # one map, not a batch
    assert [op.op_type for op in raw.graph.node] == ["DictVectorizer"]
