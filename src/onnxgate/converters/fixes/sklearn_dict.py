"""DictVectorizer as a batched graph of two tensors, in place of skl2onnx's one-map-per-call graph.

skl2onnx converts a DictVectorizer to ``ai.onnx.ml.DictVectorizer``, whose input is ONE
``map(string, float)`` and whose output is ``[1, k]``: a batch of rows is a sequence of maps,
which ONNX Runtime does not take as a graph input (``seq(map)`` inputs make an invalid model),
and onnxgate's feeds are tensors. So a ``Pipeline(DictVectorizer(), LogisticRegression())`` could
not be validated or served in batches.

With :data:`DICT_TENSORS` the DictVectorizer (alone, or the first step of a Pipeline) becomes a
graph of two tensor inputs, one row of (key, value) entries per sample:

* ``keys``: string ``[N, M]``, rows padded with the key ``""`` (:data:`PAD_KEY`);
* ``values``: float ``[N, M]``, 0 at the padding.

``out[n, j] = sum_m values[n, m] * (keys[n, m] == feature_names_[j])``: a LabelEncoder from key to
vocabulary index (a key not in the vocabulary, which scikit-learn ignores, gets none), then from
opset 16 a ScatterElements(reduction="add") of each value into its column of zeros [N, V + 1]
(column V, the unknown keys', sliced off: memory N x (V + M)), below 16 Equal against ``range(V)``,
Cast, Mul, ReduceSum (memory N x M x V; ReduceSum's axes an attribute below 13). Six or seven
nodes whatever V, at every opset skl2onnx writes (Equal on strings would need opset 19).
benchmarks/bench_dict.py, V=4990, M=30, N=1000, one thread: scatter 8.5 ms, one-hot 204 ms,
scikit-learn's transform + toarray 40 ms.
A string value is one-hot in scikit-learn (``{"city": "Paris"}`` -> feature ``"city=Paris"`` = 1,
with the vectorizer's ``separator``): the sample loader writes it as key ``"city=Paris"``, value 1
(inputs/samples.py), and so must a server (README). The remaining steps of a Pipeline are
converted by skl2onnx on a float ``[N, V]`` input and joined after the DictVectorizer's nodes
(:func:`join`), so their outputs keep skl2onnx's names.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled
from onnxgate.errors import UnsupportedModelError

DICT_TENSORS = Fix(
    "sklearn.dict_vectorizer_tensors",
    "skl2onnx converts a DictVectorizer to a graph whose input is one map(string, float) per call (output "
    "[1, k]); ONNX Runtime takes no batch of maps (a seq(map) graph input is an invalid model), so the model "
    "cannot be fed a batch",
    "the DictVectorizer is a graph of two tensor inputs, keys (string [N, M]) and values (float [N, M], rows "
    "padded with key ''), out[n, j] = sum_m values[n, m] * (keys[n, m] == feature_names_[j]) (a scatter-add "
    "from opset 16, a one-hot sum before); the rest of a Pipeline is converted by skl2onnx on its float [N, V] output",
    "skl2onnx/operator_converters/dict_vectoriser.py",
)

KEYS, VALUES = "keys", "values"
PAD_KEY = ""  # the key of a padding entry (value 0): matches no feature, skipped when rows are rebuilt
_PREFIX = "onnxgate_dict_"
ML_OPSET = 2  # LabelEncoder's keys_strings/values_int64s arrived with ai.onnx.ml 2


def is_dict_vectorizer(step: Any) -> bool:
    return type(step).__name__ == "DictVectorizer" and hasattr(step, "feature_names_")


def require() -> None:
    """Refuse, in one line, a DictVectorizer model when :data:`DICT_TENSORS` is switched off."""
    if not enabled(DICT_TENSORS):
        raise UnsupportedModelError(
            "a DictVectorizer's ONNX graph (skl2onnx) takes one map(string, float) per call and ONNX Runtime takes "
            "no batch of maps, so onnxgate cannot feed it rows",
            f"remove {DICT_TENSORS.name} from ONNXGATE_DISABLE_FIXES to convert it to keys/values tensor inputs",
        )


def feed_dtype(feeds: dict[str, np.ndarray]) -> np.dtype:
    """The float type of the ``values`` feed (float32, or float64 with --double); refused when the fix is off."""
    require()
    return np.asarray(feeds[VALUES]).dtype


def split(model: Any) -> tuple[Any, Any | None]:
    """(the DictVectorizer, the rest of the model or None): the rest is the Pipeline's other steps
    (one step alone: that estimator)."""
    steps = getattr(model, "steps", None)
    if not steps:
        return model, None
    head, rest = steps[0][1], steps[1:]
    if getattr(head, "steps", None):  # a nested Pipeline first: its own first step is the DictVectorizer
        inner, inner_rest = split(head)
        rest = ([("dict_rest", inner_rest)] if inner_rest is not None else []) + rest
        head = inner
    if len(rest) <= 1:
        return head, rest[0][1] if rest else None
    from sklearn.pipeline import Pipeline

    return head, Pipeline(rest)


def rows_to_tensors(rows: list[dict[str, float]], dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Rows of {key: number} as the ``keys``/``values`` feeds, padded to the longest row."""
    width = max((len(r) for r in rows), default=0) or 1
    keys = np.full((len(rows), width), PAD_KEY, dtype=object)
    values = np.zeros((len(rows), width), dtype=dtype)
    for n, row in enumerate(rows):
        for m, (k, v) in enumerate(row.items()):
            keys[n, m], values[n, m] = k, v
    return {KEYS: keys, VALUES: values}


def tensors_to_rows(keys: np.ndarray, values: np.ndarray) -> list[dict[str, float]]:
    """The rows of dicts the ``keys``/``values`` feeds stand for (padding skipped), as scikit-learn takes them.
    A key repeated within a row (a hand-built feed; a JSON object has none) is summed by the graph, kept last here."""
    return [{str(k): float(v) for k, v in zip(kr, vr) if k != PAD_KEY} for kr, vr in zip(keys, values)]


# -- the graph --------------------------------------------------------------------------------


SCATTER_OPSET = 16  # ScatterElements' reduction="add"


def head_nodes(dv: Any, values_dtype: Any, output: str, opset: int) -> tuple[list[Any], list[Any], list[Any]]:
    """(nodes, initializers, inputs) computing ``output`` = the DictVectorizer's dense [N, V] in ``values_dtype``:
    from opset 16 a scatter-add of each entry into its column (memory N x (V + M)), before it a one-hot sum
    (memory N x M x V)."""
    from onnx import TensorProto, helper

    names = [str(f) for f in dv.feature_names_]
    elem = helper.np_dtype_to_tensor_dtype(np.dtype(values_dtype))
    unknown = len(names) if opset >= SCATTER_OPSET else -1  # scatter: a spare column V, dropped at the end
    lookup = helper.make_node("LabelEncoder", [KEYS], [f"{_PREFIX}index"], domain="ai.onnx.ml", name=f"{_PREFIX}lookup",
                              keys_strings=names, values_int64s=list(range(len(names))), default_int64=unknown)
    inits: list[Any] = []
    body = (_scatter_nodes if opset >= SCATTER_OPSET else _one_hot_nodes)(len(names), elem, output, opset, inits)
    inputs = [helper.make_tensor_value_info(KEYS, TensorProto.STRING, ["N", "M"]),
              helper.make_tensor_value_info(VALUES, elem, ["N", "M"])]
    return [lookup, *body], inits, inputs


def _scatter_nodes(width: int, elem: int, output: str, opset: int, inits: list[Any]) -> list[Any]:
    """zeros [N, V + 1], each value added at (row, its key's index; V for a key outside the vocabulary), column V dropped."""
    from onnx import helper, numpy_helper

    p = _PREFIX
    inits += [numpy_helper.from_array(np.array([width + 1], dtype=np.int64), f"{p}width"),
              numpy_helper.from_array(np.array([0], dtype=np.int64), f"{p}zero"),
              numpy_helper.from_array(np.array([width], dtype=np.int64), f"{p}end"),
              numpy_helper.from_array(np.array([1], dtype=np.int64), f"{p}axis")]
    zero = helper.make_tensor("value", elem, [1], [0])
    return [
        helper.make_node("Shape", [KEYS], [f"{p}rows"], start=0, end=1, name=f"{p}rows"),
        helper.make_node("Concat", [f"{p}rows", f"{p}width"], [f"{p}shape"], axis=0, name=f"{p}shape"),
        helper.make_node("ConstantOfShape", [f"{p}shape"], [f"{p}zeros"], value=zero, name=f"{p}zeros"),
        helper.make_node("ScatterElements", [f"{p}zeros", f"{p}index", VALUES], [f"{p}sums"], axis=1, reduction="add",
                         name=f"{p}scatter"),
        helper.make_node("Slice", [f"{p}sums", f"{p}zero", f"{p}end", f"{p}axis"], [output], name=f"{p}drop_unknown"),
    ]


def _one_hot_nodes(width: int, elem: int, output: str, opset: int, inits: list[Any]) -> list[Any]:
    """Equal(index, range(V)) as floats, times the values, summed over the entries."""
    from onnx import helper, numpy_helper

    p = _PREFIX
    inits += [numpy_helper.from_array(np.array([0, 0, 1], dtype=np.int64), f"{p}column"),
              numpy_helper.from_array(np.arange(width, dtype=np.int64), f"{p}indices")]
    return [
        helper.make_node("Reshape", [f"{p}index", f"{p}column"], [f"{p}index3"], name=f"{p}reshape_index"),
        helper.make_node("Equal", [f"{p}index3", f"{p}indices"], [f"{p}hit"], name=f"{p}equal"),
        helper.make_node("Cast", [f"{p}hit"], [f"{p}onehot"], to=elem, name=f"{p}cast"),
        helper.make_node("Reshape", [VALUES, f"{p}column"], [f"{p}values3"], name=f"{p}reshape_values"),
        helper.make_node("Mul", [f"{p}onehot", f"{p}values3"], [f"{p}weighted"], name=f"{p}mul"),
        _reduce_sum(f"{p}weighted", output, opset, inits),
    ]


def _reduce_sum(source: str, output: str, opset: int, inits: list[Any]) -> Any:
    """ReduceSum over the entries axis (1), not kept: axes as an input from opset 13, an attribute before."""
    from onnx import helper, numpy_helper

    name = f"{_PREFIX}sum"
    if opset < 13:
        return helper.make_node("ReduceSum", [source], [output], axes=[1], keepdims=0, name=name)
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), f"{_PREFIX}axis"))
    return helper.make_node("ReduceSum", [source, f"{_PREFIX}axis"], [output], keepdims=0, name=name)


def standalone(dv: Any, values_dtype: Any, opset: int, ml_opset: int) -> Any:
    """The model of a DictVectorizer alone: output ``variable`` [N, V] (skl2onnx's name for a transformer's)."""
    from onnx import helper

    nodes, inits, inputs = head_nodes(dv, values_dtype, "variable", opset)
    elem = inputs[1].type.tensor_type.elem_type
    out = helper.make_tensor_value_info("variable", elem, ["N", len(dv.feature_names_)])
    graph = helper.make_graph(nodes, f"{_PREFIX}DictVectorizer", inputs, [out], initializer=inits)
    imports = [helper.make_opsetid("", opset), helper.make_opsetid("ai.onnx.ml", max(ml_opset, ML_OPSET))]
    model = helper.make_model(graph, opset_imports=imports, producer_name="onnxgate")
    model.ir_version = helper.find_min_ir_version_for(imports)
    return model


def attach(dv: Any, values_dtype: Any, tail: Any | None, opset: int, ml_opset: int, applied: Applied) -> Any:
    """The DictVectorizer's graph (:func:`standalone`), or ``tail`` fed by it (:func:`join`); the fix recorded."""
    applied.add(DICT_TENSORS, f"{len(dv.feature_names_)} features")
    return standalone(dv, values_dtype, opset, ml_opset) if tail is None else join(dv, values_dtype, tail, opset)


def join(dv: Any, values_dtype: Any, tail: Any, opset: int) -> Any:
    """``tail`` (skl2onnx's graph of the rest, one float input ``[N, V]``) fed by the DictVectorizer's nodes:
    its input replaced by ``keys``/``values``, cast where the tail takes another float type."""
    from onnx import helper

    graph = tail.graph
    (x,) = graph.input
    wanted = x.type.tensor_type.elem_type
    same = wanted == helper.np_dtype_to_tensor_dtype(np.dtype(values_dtype))
    nodes, inits, inputs = head_nodes(dv, values_dtype, x.name if same else f"{_PREFIX}dense", opset)
    if not same:
        nodes.append(helper.make_node("Cast", [f"{_PREFIX}dense"], [x.name], to=wanted, name=f"{_PREFIX}cast_dense"))
    kept = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + kept)
    graph.initializer.extend(inits)
    del graph.input[:]
    graph.input.extend(inputs)
    ml = next((o for o in tail.opset_import if o.domain == "ai.onnx.ml"), None)
    if ml is None:
        tail.opset_import.append(helper.make_opsetid("ai.onnx.ml", ML_OPSET))
    elif ml.version < ML_OPSET:
        ml.version = ML_OPSET
    return tail
