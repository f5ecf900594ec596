"""The input a scikit-learn model takes when it is not a 2-D numeric feature matrix.

Most estimators take ``X``, a (rows, features) matrix of numbers. A few take something else,
decided by the fitted estimator (for a Pipeline, by its first step):

* ``documents``: the text vectorizers (CountVectorizer, TfidfVectorizer) take one string per
  row, a 1-D array of shape (n,);
* ``labels``: LabelEncoder and LabelBinarizer take one label per row, a 1-D array in the
  dtype of the fitted ``classes_`` (integers, floats or strings);
* ``tokens``: FeatureHasher(input_type="string") takes rows of tokens, a 2-D string array
  (n, tokens per row);
* ``mappings``: DictVectorizer takes rows of {key: value}, fed as two tensors ``keys`` (string)
  and ``values`` (float), both (n, entries per row), padded with key "" (fixes/sklearn_dict.py).

:func:`input_form` says which; :func:`form_feed` checks a sample against it (one-line
:class:`SampleError`s that name the shape wanted) and :func:`synthesize_form` builds inputs
without a sample from what the model was fitted on (the vocabulary, the classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxgate.converters.fixes import sklearn_dict as dicts
from onnxgate.errors import NeedsSampleError, SampleError

VECTORIZERS = ("CountVectorizer", "TfidfVectorizer")
LABEL_TRANSFORMERS = ("LabelEncoder", "LabelBinarizer")
WORDS_PER_DOCUMENT = 12  # synthesised documents: this many vocabulary words each

_ONE_D = ("documents", "labels")


@dataclass(frozen=True)
class InputForm:
    """What one model's single input ``X`` holds.

    ``kind``: "matrix" (the usual (rows, features) numbers), "documents", "labels", "tokens" or "mappings";
    ``estimator``: the class that decides it; ``dtype``: the dtype to feed (None: the converter's float).
    """

    kind: str
    estimator: str = ""
    dtype: np.dtype | None = None

    @property
    def ndim(self) -> int:
        return 1 if self.kind in _ONE_D else 2

    @property
    def special(self) -> bool:
        return self.kind != "matrix"

    def wanted(self) -> str:
        """The shape and values wanted, in words, for error messages."""
        return {
            "documents": "a 1-D array of documents, one string per row, shape (n,)",
            "labels": f"a 1-D array of labels ({_dtype_words(self.dtype)}), one per row, shape (n,)",
            "tokens": "a 2-D array of strings, one row of tokens per sample, shape (n, tokens)",
            "mappings": "a .json list of objects, one {key: number or string} per row",
        }.get(self.kind, "a 2-D (rows, features) array of numbers")


MATRIX = InputForm("matrix")


def first_step(model: Any) -> Any:
    """The estimator that first sees the input: the first step of a (nested) Pipeline, else the model."""
    steps = getattr(model, "steps", None)
    return first_step(steps[0][1]) if steps else model


def input_form(model: Any) -> InputForm:
    """The form of ``model``'s input, from its first step."""
    first = first_step(model)
    name = type(first).__name__
    if name in VECTORIZERS and getattr(first, "input", "content") == "content":
        return InputForm("documents", name, np.dtype(object))
    if name in LABEL_TRANSFORMERS and hasattr(first, "classes_"):
        return InputForm("labels", name, _label_dtype(np.asarray(first.classes_)))
    if name == "FeatureHasher" and getattr(first, "input_type", None) == "string":
        return InputForm("tokens", name, np.dtype(object))
    if dicts.is_dict_vectorizer(first):
        return InputForm("mappings", name, np.dtype(object))
    return MATRIX


def _label_dtype(classes: np.ndarray) -> np.dtype:
    if classes.dtype.kind in "iub":
        return np.dtype(np.int64)
    if classes.dtype.kind == "f":
        return np.dtype(np.float32)
    return np.dtype(object)


def _dtype_words(dtype: np.dtype | None) -> str:
    kind = np.dtype(dtype).kind if dtype is not None else "O"
    return {"i": "integers", "f": "numbers"}.get(kind, "strings")


def form_feed(form: InputForm, arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` (the sample's one array) checked against ``form`` and cast to the dtype fed to ONNX."""
    arr = np.asarray(arr)
    if arr.ndim != form.ndim:
        hint = "pass x.ravel()" if form.ndim == 1 and arr.ndim == 2 and 1 in arr.shape else f"save {form.wanted()}"
        raise SampleError(f"{where} has shape {list(arr.shape)}; the {form.estimator} takes {form.wanted()}", hint)
    if form.dtype == np.dtype(object):
        return _string_feed(form, arr, where)
    return _number_feed(form, arr, where)


def _string_feed(form: InputForm, arr: np.ndarray, where: str) -> np.ndarray:
    if arr.dtype.kind not in "US" and not _strings(arr):
        raise SampleError(
            f"{where} holds {arr.dtype} values; the {form.estimator} takes {form.wanted()}",
            "save the strings with numpy.save(path, numpy.asarray(values, dtype=str))",
        )
    return arr.astype(str).astype(object)


def _number_feed(form: InputForm, arr: np.ndarray, where: str) -> np.ndarray:
    """Labels fitted as numbers: integers (or floats that are whole numbers, for integer classes) or floats."""
    whole = form.dtype.kind != "i" or arr.dtype.kind != "f" or _integral(arr)
    if arr.dtype.kind not in "iubf" or not whole:
        raise SampleError(
            f"{where} holds {arr.dtype} values; the {form.estimator} was fitted on {_dtype_words(form.dtype)}",
            f"pass {form.wanted()}",
        )
    return np.ascontiguousarray(arr.astype(form.dtype))


def _strings(arr: np.ndarray) -> bool:
    """An object array of str only: what a STRING TensorProto (a test_data_set_N/ .pb file) reads as."""
    return arr.dtype == object and all(isinstance(v, str) for v in arr.reshape(-1))


def _integral(arr: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))


def synthesize_form(form: InputForm, model: Any, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """Seeded inputs from what the first step was fitted on: documents of vocabulary words, or
    labels drawn from ``classes_``. Tokens (a FeatureHasher records no tokens) need a sample."""
    from onnxgate.inputs.synthesize import InputSpec, synthesize_from_options

    first = first_step(model)
    if form.kind == "documents":
        words = vocabulary_words(first)
        spec = InputSpec("X", object, (None, WORDS_PER_DOCUMENT), choices=words)
        rows = synthesize_from_options([spec], options)["X"]
        return {"X": np.array([" ".join(r) for r in rows], dtype=object)}
    if form.kind == "labels":
        classes = tuple(np.asarray(first.classes_).tolist())
        labels = synthesize_from_options([InputSpec("X", object, (None,), choices=classes)], options)["X"]
        return {"X": labels.astype(str).astype(object) if form.dtype == np.dtype(object) else labels.astype(form.dtype)}
    raise NeedsSampleError(
        f"the {form.estimator} records no tokens to build inputs from",
        "pass --sample FILE with rows of tokens (a 2-D string .npy or a .json list of lists)",
    )


MAPPING_ROWS = 8  # synthesised rows of {key: value}
MAX_ENTRIES = 8  # at most this many entries per synthesised row


def mapping_feeds(form: InputForm, sample: Any, dtype: type) -> dict[str, np.ndarray]:
    """The ``keys``/``values`` feeds of a DictVectorizer model from a sample (a .json list of objects, or
    ``keys``/``values`` arrays from an .npz or a test_data_set_N/ directory), checked."""
    dicts.require()
    where = sample.path or "the sample"
    arrays = sample.arrays
    if set(arrays) != {dicts.KEYS, dicts.VALUES}:
        raise SampleError(f"{where} holds {list(arrays)}; the {form.estimator} takes {form.wanted()}",
                          'write the rows as JSON, e.g. [{"city": "Paris", "age": 31}]')
    keys, values = np.asarray(arrays[dicts.KEYS]), np.asarray(arrays[dicts.VALUES])
    if keys.ndim != 2 or keys.shape != values.shape or values.dtype.kind not in "fiu" or not (
            keys.dtype.kind in "US" or _strings(keys)):
        raise SampleError(f"{where} has keys {keys.dtype}{list(keys.shape)} and values {values.dtype}{list(values.shape)}; "
                          "they must be strings and numbers of one (rows, entries) shape", f"pass {form.wanted()}")
    return {dicts.KEYS: keys.astype(str).astype(object), dicts.VALUES: np.ascontiguousarray(values.astype(dtype))}


def synthesize_mappings(model: Any, options: dict[str, Any], dtype: type) -> dict[str, np.ndarray]:
    """Seeded rows of distinct features of the DictVectorizer's ``feature_names_`` (up to :data:`MAX_ENTRIES`
    each): a feature named ``key=value`` (a string value, one-hot) gets 1, the others a standard normal draw,
    or a uniform one in ``--input-range values=LO:HI`` (a DictVectorizer records no value ranges, so a model
    fitted on another scale may answer the same on every row: the verdict then says vacuous, and why).
    Every synthesised row is a row the vectorizer maps onto its vocabulary, never all zeros."""
    dicts.require()
    first = first_step(model)
    names = [str(f) for f in first.feature_names_]
    if not names:
        raise NeedsSampleError("the DictVectorizer has no features", "pass --sample FILE with rows as a .json list of objects")
    rng = np.random.default_rng(options.get("seed"))
    one_hot = getattr(first, "separator", "=")
    bounds = (options.get("input_ranges") or {}).get(dicts.VALUES)
    draw = (lambda: float(rng.uniform(*bounds))) if bounds else (lambda: float(rng.standard_normal()))
    rows = []
    for _ in range(MAPPING_ROWS):
        chosen = rng.choice(len(names), size=int(rng.integers(1, min(len(names), MAX_ENTRIES) + 1)), replace=False)
        rows.append({names[j]: 1.0 if one_hot in names[j] else draw() for j in sorted(chosen)})
    return dicts.rows_to_tensors(rows, dtype)


def vocabulary_words(vectorizer: Any) -> tuple[str, ...]:
    """The words of a fitted vectorizer's vocabulary (n-gram terms split), sorted: documents made of
    them tokenise back to vocabulary terms, so no synthesised row is all zeros."""
    terms = getattr(vectorizer, "vocabulary_", None) or {}
    words = sorted({w for term in terms for w in str(term).split()})
    if not words:
        raise NeedsSampleError(f"the {type(vectorizer).__name__} has an empty vocabulary", "pass --sample FILE with documents")
    return tuple(words)


def reference_rows(feeds: dict[str, np.ndarray]) -> list[dict[str, float]]:
    """A DictVectorizer model's feeds as the rows of dicts scikit-learn takes (padding skipped)."""
    return dicts.tensors_to_rows(feeds[dicts.KEYS], np.asarray(feeds[dicts.VALUES], dtype=np.float64))


def reference_input(arr: np.ndarray, form: InputForm) -> Any:
    """The feed as scikit-learn takes it: strings as an array of str, labels in their fitted dtype; documents
    and labels fed as a column (an ONNX file that declares them [N, 1]) as the 1-D array they are."""
    if form.ndim == 1 and arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.dtype == object:
        return arr.astype(str)
    return arr.astype(np.float64) if arr.dtype.kind == "f" else arr


def keeps_rank(final: Any) -> bool:
    """Whether the graph's value output is 1-D like the original's (LabelEncoder: (n,) labels)."""
    return type(final).__name__ == "LabelEncoder"
