"""Known breakages of skl2onnx's text vectorizers (CountVectorizer, TfidfVectorizer) and label binarizer.

skl2onnx converts a vectorizer to StringNormalizer (lowercase) -> Tokenizer (a regular
expression, re2 in ONNX Runtime) -> TfIdfVectorizer (n-gram counts) -> idf weights. Two fixes act
before conversion, through the converter's documented per-estimator options (``locale``,
``tokenexp``: :func:`vectorizer_options`); three after it, on the graph (:func:`repair_graph`:
integer counts, sublinear tf, a binary LabelBinarizer's declared shape). Differences that no
option removes are named instead (:func:`known_differences`), so a failure explains itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled

TEXT_LOCALE = Fix(
    "sklearn.text_locale",
    "ONNX Runtime's StringNormalizer lowercases in the locale en_US.UTF-8 unless the graph names one, and "
    "refuses to load the model where that locale is not installed (slim Linux images: 'Failed to construct "
    "locale with name:en_US.UTF-8')",
    "the StringNormalizer names a UTF-8 locale that loads here (skl2onnx's documented 'locale' option)",
    "onnxruntime/core/providers/cpu/text/string_normalizer.cc: default_locale",
)
TEXT_TOKEN_PATTERN = Fix(
    "sklearn.text_token_pattern",
    "skl2onnx replaces scikit-learn's default token pattern (?u)\\b\\w\\w+\\b by [a-zA-Z0-9_]+: words with "
    "non-ASCII letters are cut ('café' -> 'caf', so they never count) and one-letter words are kept, which "
    "shifts the n-grams ('I am a cat': 'am cat' is lost)",
    "the Tokenizer gets the same pattern in re2 syntax, [\\p{L}\\p{N}_]{2,} (runs of two or more Unicode "
    "letters, digits or underscores), through skl2onnx's documented 'tokenexp' option",
    "skl2onnx/operator_converters/text_vectoriser.py: default_pattern",
)

DEFAULT_TOKEN_PATTERN = r"(?u)\b\w\w+\b"
# Python's \w is str.isalnum() or "_": the Unicode letters (L*) and numbers (N*), as re2 names them
UNICODE_TOKENS = r"[\p{L}\p{N}_]{2,}"
UTF8_LOCALES = ("C.UTF-8", "C.utf8", "en_US.UTF-8", "en_US.utf8")
_VECTORIZERS = ("CountVectorizer", "TfidfVectorizer")


def vectorizers(estimators: Any) -> list[Any]:
    """The text vectorizers among ``estimators`` (a model's walk)."""
    return [m for m in estimators if type(m).__name__ in _VECTORIZERS]


def vectorizer_options(found: list[Any], options: dict[int, dict[str, Any]], applied: Applied) -> dict[int, dict[str, Any]]:
    """skl2onnx's options with the text fixes each vectorizer in ``found`` needs, merged in."""
    for v in found:
        extra = {**_locale_option(v, applied), **_token_option(v, applied)}
        if extra:
            options[id(v)] = {**options.get(id(v), {}), **extra}
    return options


def _locale_option(v: Any, applied: Applied) -> dict[str, Any]:
    if not enabled(TEXT_LOCALE) or not (v.lowercase or v.stop_words) or default_locale_loads():
        return {}
    locale = loadable_locale()
    if locale is None:  # nothing loads: the ORT load error names the locale to install
        return {}
    applied.add(TEXT_LOCALE, f"locale={locale}; the published graph needs it where it runs")
    return {"locale": locale}


def _token_option(v: Any, applied: Applied) -> dict[str, Any]:
    if not enabled(TEXT_TOKEN_PATTERN) or v.analyzer != "word" or v.token_pattern != DEFAULT_TOKEN_PATTERN:
        return {}
    applied.add(TEXT_TOKEN_PATTERN, type(v).__name__)
    return {"tokenexp": UNICODE_TOKENS}


@lru_cache(maxsize=None)
def _session_loads(locale: str | None) -> bool:
    """Whether ONNX Runtime here loads a lowercasing StringNormalizer in ``locale`` (None: its default)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    attrs: dict[str, Any] = {"case_change_action": "LOWER", "is_case_sensitive": 0}
    if locale is not None:
        attrs["locale"] = locale
    node = helper.make_node("StringNormalizer", ["x"], ["y"], **attrs)
    vi = [helper.make_tensor_value_info(n, TensorProto.STRING, [None]) for n in ("x", "y")]
    model = helper.make_model(helper.make_graph([node], "locale_probe", vi[:1], vi[1:]),
                              opset_imports=[helper.make_opsetid("", 10)])
    model.ir_version = 7
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the failure is the answer, not an error to log
    try:
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001 - ORT raises its own Fail type
        return False
    return True


def default_locale_loads() -> bool:
    return _session_loads(None)


def loadable_locale() -> str | None:
    """The first of :data:`UTF8_LOCALES` that ONNX Runtime loads here, or None."""
    return next((name for name in UTF8_LOCALES if _session_loads(name)), None)


def known_differences(found: list[Any], feeds: dict[str, np.ndarray]) -> list[str]:
    """Notes on the differences between skl2onnx's text graph and scikit-learn that no option removes,
    where this model and these documents show them: they explain a failure instead of hiding it."""
    notes = [case_mapping_note(found, feeds), stop_word_ngrams_note(found)]
    return [n for n in notes if n]


def case_mapping_note(found: list[Any], feeds: dict[str, np.ndarray]) -> str | None:
    """A note naming the documents that ONNX's StringNormalizer lowercases differently from Python's
    ``str.lower()``, or None. ONNX lowercases one code point at a time; Python applies the Unicode
    special casing: a final capital sigma becomes 'ς' (ONNX: 'σ'), 'İ' becomes 'i' plus a combining
    dot (ONNX: 'i'). No option changes either side, so those rows may differ: reported, not hidden."""
    if not any(v.lowercase for v in found):
        return None
    for name, values in feeds.items():
        if values.dtype != object or values.ndim > 2 or (values.ndim == 2 and values.shape[1] != 1):
            continue
        rows = [i for i, doc in enumerate(values.reshape(len(values))) if _special_casing(str(doc))]
        if rows:
            return (f"text: {len(rows)} of {len(values)} documents of {name!r} (rows {rows[:10]}) hold letters whose "
                    "lowercase depends on context or takes two code points in Python (final 'Σ', 'İ'); ONNX's "
                    "StringNormalizer lowercases one code point at a time, so their tokens can differ (a known "
                    "ONNX limit, no workaround)")
    return None


def stop_word_ngrams_note(found: list[Any]) -> str | None:
    """scikit-learn drops stop words before it forms n-grams; skl2onnx's graph forms them over every token."""
    names = [type(v).__name__ for v in found if v.stop_words is not None and v.analyzer == "word" and v.ngram_range[1] > 1]
    if not names:
        return None
    return (f"text: {', '.join(names)} with stop words and n-grams: scikit-learn forms n-grams after dropping stop "
            "words ('cat the sat' -> 'cat sat'), skl2onnx's graph over every token (ONNX's StringNormalizer cannot "
            "filter the tokens of each row), so n-grams across a stop word differ (no workaround)")


def _special_casing(doc: str) -> bool:
    return doc.lower() != "".join(c.lower() for c in doc) or any(len(c.lower()) > 1 for c in doc)


COUNT_DTYPE = Fix(
    "sklearn.count_dtype",
    "skl2onnx's CountVectorizer emits its counts as float32 (ONNX's TfIdfVectorizer op); scikit-learn's are "
    "int64 (the vectorizer's dtype): a consumer of the published signature gets another type, and the "
    "comparison fails on dtype",
    "the counts are cast to the vectorizer's integer dtype at the output (exact below 2**24 per cell)",
)


def count_dtype(onx: Any, final: Any, applied: Applied) -> None:
    """:data:`COUNT_DTYPE`: a Cast of a final CountVectorizer's float output to its integer dtype."""
    if not enabled(COUNT_DTYPE) or type(final).__name__ != "CountVectorizer":
        return
    from onnx import TensorProto, helper

    from onnxgate.converters.fixes import rename_value

    target = np.dtype(getattr(final, "dtype", np.int64))
    if target.kind not in "iu":
        return
    elem = helper.np_dtype_to_tensor_dtype(target)
    for out in onx.graph.output:
        if out.type.tensor_type.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
            continue
        raw = f"{out.name}_counts"
        rename_value(onx.graph.node, out.name, raw)
        onx.graph.node.append(helper.make_node("Cast", [raw], [out.name], to=elem, name=f"onnxgate_cast_{out.name}"))
        out.type.tensor_type.elem_type = elem
        applied.add(COUNT_DTYPE, str(target))


BINARY_LABEL_COLUMNS = Fix(
    "sklearn.binary_label_binarizer_shape",
    "skl2onnx declares a two-class LabelBinarizer's output [N, 2]; the graph returns one column [N, 1], as "
    "scikit-learn does, so the published signature lies",
    "the output is declared [N, 1]",
)


def binary_label_columns(onx: Any, final: Any, applied: Applied) -> None:
    """:data:`BINARY_LABEL_COLUMNS`, for a final two-class LabelBinarizer (not multilabel)."""
    if not enabled(BINARY_LABEL_COLUMNS) or type(final).__name__ != "LabelBinarizer":
        return
    if len(getattr(final, "classes_", ())) != 2 or getattr(final, "y_type_", "binary") != "binary":
        return
    for out in onx.graph.output:
        dims = out.type.tensor_type.shape.dim
        if len(dims) == 2 and dims[1].dim_value == 2:
            dims[1].dim_value = 1
            applied.add(BINARY_LABEL_COLUMNS)


SUBLINEAR_TF = Fix(
    "sklearn.sublinear_tf",
    "skl2onnx computes TfidfTransformer/TfidfVectorizer(sublinear_tf=True) as log(1 + tf); scikit-learn "
    "replaces each non-zero tf by 1 + log(tf) (a count of 1 weighs 1, not log 2 = 0.69)",
    "Log(Add(tf, 1)) becomes Where(tf > 0, Add(Log(tf), 1), 0)",
    "skl2onnx/operator_converters/tfidf_transformer.py: sublinear_tf",
)


def sublinear_tf(onx: Any, estimators: list[Any], applied: Applied) -> None:
    """:data:`SUBLINEAR_TF`: each Log fed by an Add of a constant vector of ones, rewritten as scikit-learn computes it."""
    if not enabled(SUBLINEAR_TF) or not any(getattr(m, "sublinear_tf", False) for m in estimators):
        return
    from onnx import helper, numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in onx.graph.initializer}
    nodes = list(onx.graph.node)
    producer = {o: k for k, n in enumerate(nodes) for o in n.output}
    rewrites: dict[int, list[Any]] = {}  # index of the Add -> the nodes that replace it
    dropped: set[int] = set()  # indices of the Logs
    for k, log in enumerate(nodes):
        add = nodes[producer[log.input[0]]] if log.op_type == "Log" and log.input[0] in producer else None
        ones = next((i for i in add.input if i in constants and np.all(constants[i] == 1)), None) if add is not None and add.op_type == "Add" else None
        if ones is None:
            continue
        tf = next(i for i in add.input if i != ones)
        zero = f"{log.output[0]}_zero"
        onx.graph.initializer.append(numpy_helper.from_array(np.zeros((), dtype=constants[ones].dtype), zero))
        logged, plus1, positive = (f"{log.output[0]}_{s}" for s in ("log_tf", "plus1", "positive"))
        rewrites[producer[log.input[0]]] = [
            helper.make_node("Log", [tf], [logged], name=f"{logged}_node"),
            helper.make_node("Add", [logged, ones], [plus1], name=f"{plus1}_node"),
            helper.make_node("Greater", [tf, zero], [positive], name=f"{positive}_node"),
            helper.make_node("Where", [positive, plus1, zero], [log.output[0]], name=f"{log.output[0]}_sublinear"),
        ]
        dropped.add(k)
        applied.add(SUBLINEAR_TF)
    if not rewrites:
        return
    kept = [m for k, n in enumerate(nodes) if k not in dropped for m in rewrites.get(k, [n])]
    del onx.graph.node[:]
    onx.graph.node.extend(kept)


def repair_graph(onx: Any, estimators: list[Any], final: Any, applied: Applied) -> None:
    """The graph fixes of this module, each where its symptom shows."""
    count_dtype(onx, final, applied)
    binary_label_columns(onx, final, applied)
    sublinear_tf(onx, estimators, applied)
