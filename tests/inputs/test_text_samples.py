"""Samples for models that take documents, labels or rows of tokens: .txt, .json and .npy of strings.

The loaders are strict: UTF-8 only, a size cap before parsing, one-line SampleErrors that say how to
fix the file, and an object .npy (which needs pickle) refused with the way to save strings instead.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from onnxgate.errors import SampleError
from onnxgate.inputs import samples
from onnxgate.inputs.samples import load_sample


def _one(sample) -> np.ndarray:
    (arr,) = sample.arrays.values()
    return arr


def test_txt_is_one_document_per_line(tmp_path):
    p = tmp_path / "docs.txt"
    p.write_bytes("first line, café\r\n\r\nthird: ΟΔΟΣ\n".encode())
    arr = _one(load_sample(p))
    assert arr.dtype.kind == "U" and arr.tolist() == ["first line, café", "", "third: ΟΔΟΣ"]
    p.write_text("no final newline")
    assert _one(load_sample(p)).tolist() == ["no final newline"]


def test_txt_must_be_utf8_and_not_empty(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(SampleError, match="is not UTF-8 .byte 3") as exc:
        load_sample(p)
    assert exc.value.hint == "save it as UTF-8"
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SampleError, match="holds no lines"):
        load_sample(tmp_path / "empty.txt")


def test_text_size_is_capped_before_parsing(tmp_path, monkeypatch):
    monkeypatch.setattr(samples, "MAX_TEXT_BYTES", 100)
    p = tmp_path / "big.json"
    p.write_text(json.dumps(["word " * 30]))
    with pytest.raises(SampleError, match="reads at most"):
        load_sample(p)


@pytest.mark.parametrize("value, dtype, shape", [
    (["a doc", "another doc"], "U", (2,)),
    ([3, 1, 2], "i", (3,)),
    ([0.5, 1, 2.5], "f", (3,)),
    ([["a", "b"], ["c", "d"], ["e", "f"]], "U", (3, 2)),
])
def test_json_lists(value, dtype, shape, tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(value))
    arr = _one(load_sample(p))
    assert arr.dtype.kind == dtype and arr.shape == shape


def test_json_objects_load_as_padded_keys_and_values(tmp_path):
    """A DictVectorizer's rows: a string value is one-hot under key=value, rows padded with key "" and value 0."""
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"age": 31, "city": "Paris"}, {"age": 2.5}, {}]))
    sample = load_sample(p)
    assert sample.kind == "named" and sample.arrays["keys"].tolist() == [["age", "city=Paris"], ["age", ""], ["", ""]]
    assert sample.arrays["values"].tolist() == [[31.0, 1.0], [2.5, 0.0], [0.0, 0.0]]


@pytest.mark.parametrize("value, message", [
    ({"a": 1}, "not a non-empty JSON list"),
    ([], "not a non-empty JSON list"),
    (["a", 1], "mixes"),
    ([True, False], "mixes"),
    ([["a"], ["b", "c"]], "different lengths"),
    ([{"a": 1.0}, {"b": [2.0]}], "row 1 key 'b' holds a list value"),
    ([{"a": {"b": 1}}], "row 0 key 'a' holds a dict value"),
    ([{"a": None}], "holds a NoneType value"),
    ([{"": 1.0}], "holds an empty key"),
    ([{"a": 1.0}, "b"], "mixes"),
    ([2**70], "beyond int64"),
])
def test_json_refusals_are_one_line(value, message, tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps(value))
    with pytest.raises(SampleError, match=message) as exc:
        load_sample(p)
    assert "\n" not in str(exc.value)


def test_malformed_and_deep_json_are_sample_errors(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("[1, 2")
    with pytest.raises(SampleError, match="cannot read .* as JSON"):
        load_sample(p)
    p.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(SampleError):
        load_sample(p)


def test_npy_of_strings_loads_and_object_npy_is_refused(tmp_path):
    np.save(tmp_path / "s.npy", np.array(["one doc", "two docs"]))
    assert _one(load_sample(tmp_path / "s.npy")).dtype.kind == "U"
    np.save(tmp_path / "o.npy", np.array(["one doc", "two docs"], dtype=object), allow_pickle=True)
    with pytest.raises(SampleError, match="needs pickle, which onnxgate refuses") as exc:
        load_sample(tmp_path / "o.npy")
    assert "dtype=str" in exc.value.hint
