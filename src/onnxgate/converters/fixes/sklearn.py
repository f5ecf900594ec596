"""Known breakages of skl2onnx and scikit-learn, and what onnxgate does about each.

Three kinds, by where they act:

* before conversion, on a copy of the model or on skl2onnx's options
  (:func:`conversion_copy`, :func:`zipmap_options`, :func:`convert_with_int_attributes`);
* after conversion, on the graph (:func:`repair_graph`);
* on the original's outputs, so that they are named and shaped as the graph's are
  (:func:`reference_input`, :func:`dense_output`, :func:`stacked_probabilities`).

Each function checks its symptom first and does nothing when it is absent.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable

import numpy as np

from onnxgate.converters.fixes import Applied, Fix, enabled, free_declared_batch, rename_value
from onnxgate.converters.fixes import sklearn_neighbors as neighbors
from onnxgate.converters.fixes import sklearn_outputs as outputs
from onnxgate.converters.fixes import sklearn_precision as precision

HGB_BOOL_ATTRIBUTE = Fix(
    "sklearn.hgb_bool_attribute",
    "skl2onnx puts Python bools into an ints attribute of TreeEnsemble* (HistGradientBoosting*); "
    "onnx>=1.19 refuses them ('Expected an int, got a boolean')",
    "converted again with bools in ints attributes written as 0/1",
    "skl2onnx 1.20 with onnx 1.19+; no upstream issue yet",
)
VOTING_FLATTEN_TRANSFORM = Fix(
    "sklearn.voting_flatten_transform",
    "skl2onnx refuses VotingClassifier(flatten_transform=True), the default, although the flag only shapes transform()",
    "converted a copy with flatten_transform=False (predict and predict_proba are unchanged)",
    "https://github.com/onnx/sklearn-onnx/issues/867",
)
DENSE_OUTPUT_COPY = Fix(
    "sklearn.dense_output_copy",
    "skl2onnx refuses transformers configured for sparse output (KBinsDiscretizer(encode='onehot'), "
    "RandomTreesEmbedding(sparse_output=True)): ONNX Runtime has no sparse tensors",
    "converted a copy configured for the same values as a dense matrix; the reference is densified",
    "https://github.com/onnx/sklearn-onnx/issues/437",
)
NEIGHBORS_RADIUS = Fix(
    "sklearn.nearest_neighbors_radius",
    "skl2onnx refuses NearestNeighbors with both n_neighbors and radius set (the defaults), "
    "although kneighbors() uses only n_neighbors",
    "converted a copy with radius=None (kneighbors is unchanged)",
)
PIPELINE_ZIPMAP = Fix(
    "sklearn.pipeline_zipmap_option",
    "skl2onnx's Pipeline parser gives every classifier step the zipmap option, which LinearSVC's converter "
    "refuses ('Option zipmap not in [...]')",
    "the classifier step gets its own options (zipmap only where its converter takes it)",
)
LABEL_SHAPE = Fix(
    "sklearn.label_shape",
    "skl2onnx declares and emits some outputs with another rank than the estimator kind's "
    "(OneVsOneClassifier labels (N, 1), QuadraticDiscriminantAnalysis (1, N), SGDOneClassSVM (N,)); "
    "GaussianProcessClassifier declares (N,) and returns (N, 1)",
    "a Reshape to onnxgate's convention: classifier labels (N,), outlier-detector labels and scores (N, 1)",
)
MULTIOUTPUT_PROBABILITIES = Fix(
    "sklearn.multioutput_probabilities",
    "MultiOutputClassifier's probabilities are a list of arrays in scikit-learn and a sequence of tensors in "
    "ONNX, which neither ONNX Runtime's tensor outputs nor most consumers compare",
    "the sequence is concatenated along the columns in the graph (ConcatFromSequence) and in the reference",
)
DECLARED_SHAPES = Fix(
    "sklearn.declared_shapes",
    "skl2onnx declares shapes that ONNX shape inference contradicts (PLSRegression, OneVsOneClassifier): "
    "onnx.checker's strict shape inference rejects a graph that ONNX Runtime runs",
    "the contradicted declarations are dropped (intermediate values) or replaced by the inferred shape (outputs)",
)
DETERMINISTIC_NAME = Fix(
    "sklearn.deterministic_graph_name",
    "skl2onnx names each graph with a random uuid, so the same model converts to different bytes",
    "the graph is named after the estimator",
)
FITTED_DTYPE = Fix(
    "sklearn.fitted_dtype_reference",
    "an estimator fitted on float32 (KMeans, ...) raises 'Buffer dtype mismatch' in its own predict on float64",
    "the reference runs on the inputs in the dtype the estimator was fitted on",
)
DENSE_REFERENCE = Fix(
    "sklearn.dense_reference",
    "the transformer returns a scipy sparse matrix (OneHotEncoder, TfidfTransformer, KNeighborsTransformer), "
    "the graph a dense tensor",
    "the reference output is densified",
)

SELECTOR_FIRST_COLUMN = Fix(
    "sklearn.selector_first_column",
    "skl2onnx tests `index.any()` on the selected column indices, so a selector that keeps only column 0 "
    "becomes ConstantOfShape(X), a graph onnx.checker refuses (a float shape)",
    "the ConstantOfShape is replaced by the column lookup skl2onnx meant (ArrayFeatureExtractor of column 0)",
    "skl2onnx/operator_converters/feature_selection.py: `if index.any():`",
)
CONSTANT_SOLVE = Fix(
    "sklearn.constant_solve",
    "skl2onnx's GaussianProcessClassifier solves a triangular system with com.microsoft:Solve, an op ONNX "
    "Runtime does not register ('Could not find an implementation'); its matrix is a constant of the model",
    "Solve(A, B) becomes MatMul(inv(A), B), the triangular inverse computed once in float64 at conversion",
)
SELECTOR_TRANSFORM = Fix(
    "sklearn.selector_transform",
    "skl2onnx converts a feature selector (RFE, RFECV, SelectFromModel) as its transform(), the selected "
    "columns [N, k]; scikit-learn's tags call RFE(regressor) a regressor, so the reference ran predict() [N, 1]",
    "the reference of a feature selector is its transform(), what the graph computes",
)
RADIUS_NEGATIVE_INDEX = Fix(
    "sklearn.radius_neighbors_negative_index",
    "skl2onnx's RadiusNeighborsClassifier marks neighbours outside the radius with index -1 and looks their "
    "labels up with ArrayFeatureExtractor before masking them out; ONNX Runtime refuses an index of -1 "
    "('index is out of range'), numpy would wrap it",
    "the indices are wrapped into range, (i + N) mod N, before the lookup, as numpy does (the mask is unchanged)",
)
RADIUS_INCLUSIVE = Fix(
    "sklearn.radius_neighbors_inclusive",
    "skl2onnx keeps neighbours with distance < radius; scikit-learn keeps distance <= radius, so a neighbour "
    "exactly at the radius counts in the original and not in the graph",
    "the radius comparison is LessOrEqual",
)

_UUID_NAME = re.compile(r"^[0-9a-f]{32}$")


# -- before conversion --------------------------------------------------------------------


def walk(model: Any):
    """The model and every estimator inside it (pipeline steps, column and union transformers, meta-estimators)."""
    yield model
    for _, step in getattr(model, "steps", None) or []:
        yield from walk(step)
    for attr in ("transformers_", "transformer_list"):
        for item in getattr(model, attr, None) or []:
            if hasattr(item[1], "get_params"):
                yield from walk(item[1])
    for attr in ("estimators_", "best_estimator_", "estimator_"):
        inner = getattr(model, attr, None)
        for m in inner if isinstance(inner, list) else [inner]:
            if hasattr(m, "get_params"):
                yield from walk(m)


def conversion_copy(model: Any, applied: Applied) -> Any:
    """A copy with the settings skl2onnx refuses changed to equivalent ones, or ``model`` itself."""
    changes = [(m, attr, value, fix) for m in walk(model) for attr, value, fix in _refused_settings(m) if enabled(fix)]
    if not changes:
        return model
    memo: dict[int, Any] = {}
    clone = copy.deepcopy(model, memo)
    for m, attr, value, fix in changes:
        setattr(memo[id(m)], attr, value)
        applied.add(fix, f"{type(m).__name__}.{attr}={value!r}")
    return clone


def _refused_settings(m: Any) -> list[tuple[str, Any, Fix]]:
    """(attribute, equivalent value, fix) for the settings of ``m`` skl2onnx refuses."""
    name = type(m).__name__
    if name == "VotingClassifier" and getattr(m, "flatten_transform", False):
        return [("flatten_transform", False, VOTING_FLATTEN_TRANSFORM)]
    if name == "KBinsDiscretizer" and getattr(m, "encode", None) == "onehot":
        return [("encode", "onehot-dense", DENSE_OUTPUT_COPY)]
    if name == "RandomTreesEmbedding" and getattr(m, "sparse_output", False):
        return [("sparse_output", False, DENSE_OUTPUT_COPY)]
    if name == "NearestNeighbors" and getattr(m, "n_neighbors", None) is not None and getattr(m, "radius", None) is not None:
        return [("radius", None, NEIGHBORS_RADIUS)]
    return []


def zipmap_options(model: Any, applied: Applied) -> dict[int, dict[str, Any]]:
    """skl2onnx options: zipmap off for every classifier whose converter takes it (plain tensors out).

    A classifier step of a Pipeline whose converter does not take zipmap gets an option it
    does take, at its default, so that the Pipeline parser does not hand it zipmap.
    """
    from sklearn.base import is_classifier

    options: dict[int, dict[str, Any]] = {}
    for m in _parsed(model):
        if not is_classifier(m):
            continue
        allowed = _allowed_options(m)
        if _takes_zipmap(m):
            options[id(m)] = {"zipmap": False}
        elif _in_pipeline(model, m) and allowed and not getattr(m, "steps", None) and enabled(PIPELINE_ZIPMAP):
            default = "nocl" if "nocl" in allowed else sorted(allowed)[0]
            options[id(m)] = {default: False}
            applied.add(PIPELINE_ZIPMAP, type(m).__name__)
    return options


def _parsed(model: Any):
    """The model and the steps skl2onnx parses as models of their own (pipelines, column and union transformers,
    a search's best estimator)."""
    yield model
    for _, step in getattr(model, "steps", None) or []:
        yield from _parsed(step)
    if hasattr(getattr(model, "best_estimator_", None), "get_params"):
        yield from _parsed(model.best_estimator_)
    for attr in ("transformers_", "transformer_list"):
        for item in getattr(model, attr, None) or []:
            if hasattr(item[1], "get_params"):
                yield from _parsed(item[1])


def _takes_zipmap(m: Any) -> bool:
    """Whether skl2onnx's converter takes zipmap for ``m`` (a pipeline: for its final step)."""
    from skl2onnx._supported_operators import sklearn_classifier_list

    steps = getattr(m, "steps", None)
    if steps:
        return _takes_zipmap(steps[-1][1])
    allowed = _allowed_options(m)
    if allowed is not None:  # the converter lists its options (a registered booster's include zipmap)
        return "zipmap" in allowed
    return type(m) in sklearn_classifier_list  # else only what skl2onnx parses as a classifier (not RFE)


def _allowed_options(m: Any) -> set[str] | None:
    """The options skl2onnx's converter for ``m`` accepts (None: it accepts any)."""
    from skl2onnx import get_model_alias
    from skl2onnx.common._registration import get_converter

    try:
        allowed = get_converter(get_model_alias(type(m))).get_allowed_options()
    except (RuntimeError, ValueError, KeyError):
        return set()
    return None if allowed is None else set(allowed)


def _in_pipeline(model: Any, m: Any) -> bool:
    return any(step is m for p in walk(model) for _, step in getattr(p, "steps", None) or [])


def convert_with_int_attributes(convert: Callable[[], Any], applied: Applied) -> Any:
    """``convert()``; when onnx refuses a bool in an ints attribute, again with bools as 0/1."""
    if not enabled(HGB_BOOL_ATTRIBUTE):
        return convert()
    try:
        return convert()
    except (ValueError, TypeError) as exc:
        if not _bool_in_ints(exc):
            raise
    from skl2onnx.common._container import ModelComponentContainer

    original = ModelComponentContainer.add_node

    def add_node(self: Any, op_type: Any, inputs: Any, outputs: Any, *args: Any, **attrs: Any) -> Any:
        return original(self, op_type, inputs, outputs, *args, **{k: _ints_not_bools(v) for k, v in attrs.items()})

    ModelComponentContainer.add_node = add_node
    try:
        onx = convert()
    finally:
        ModelComponentContainer.add_node = original
    applied.add(HGB_BOOL_ATTRIBUTE)
    return onx


def _bool_in_ints(exc: BaseException | None) -> bool:
    while exc is not None:
        if "got a boolean" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _ints_not_bools(value: Any) -> Any:
    if isinstance(value, (list, tuple)) and any(isinstance(v, (bool, np.bool_)) for v in value):
        return [int(v) for v in value]
    return value


# -- after conversion ---------------------------------------------------------------------


def repair_graph(onx: Any, model: Any, final: Any, applied: Applied) -> Any:
    """The graph fixes, each where its symptom shows."""
    _name_graph(onx, model, applied)
    outputs.canonical_output_names(onx, applied)
    _stack_sequence_probabilities(onx, applied)
    _repair_declared_shapes(onx, applied)
    _reshape_outputs(onx, final, applied)
    _select_first_column(onx, model, applied)
    _constant_solve(onx, applied)
    estimators = list(walk(model))
    precision.round_down_hgb_thresholds(onx, estimators, applied)
    precision.center_naive_bayes_log_probabilities(onx, estimators, applied)
    precision.float64_erf(onx, applied)
    neighbors.distance_weights(onx, estimators, applied)
    neighbors.nan_zeros_dtype(onx, applied)
    if type(final).__name__.startswith("RadiusNeighbors"):
        _wrap_lookup_indices(onx, applied)
        _inclusive_radius(onx, getattr(final, "radius", None), applied)
    free_declared_batch(onx, applied)
    return onx


def _constant_solve(onx: Any, applied: Applied) -> None:
    """com.microsoft:Solve(A, B) with a constant A -> MatMul(inv(A), B) (``lower``/``transposed`` honoured)."""
    if not enabled(CONSTANT_SOLVE):
        return
    from onnx import helper, numpy_helper

    constants = {i.name: i for i in onx.graph.initializer}
    for node in onx.graph.node:
        if node.op_type != "Solve" or node.domain != "com.microsoft" or node.input[0] not in constants:
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        a = numpy_helper.to_array(constants[node.input[0]])
        if attrs.get("transposed", 0):
            a = a.T
        inverse = f"{node.input[0]}_inverse"
        onx.graph.initializer.append(numpy_helper.from_array(np.linalg.inv(a.astype(np.float64)).astype(a.dtype), inverse))
        node.op_type, node.domain = "MatMul", ""
        node.input[0] = inverse
        del node.attribute[:]
        applied.add(CONSTANT_SOLVE)
    if not any(n.domain == "com.microsoft" for n in onx.graph.node):
        kept = [i for i in onx.opset_import if i.domain != "com.microsoft"]
        if len(kept) != len(onx.opset_import):
            del onx.opset_import[:]
            onx.opset_import.extend(kept)


def _select_first_column(onx: Any, model: Any, applied: Applied) -> None:
    """ConstantOfShape fed a float tensor (skl2onnx's selector keeping only column 0) -> the column-0 lookup."""
    if not enabled(SELECTOR_FIRST_COLUMN):
        return
    from onnx import TensorProto, helper, shape_inference
    from sklearn.feature_selection import SelectorMixin

    first_only = [m for m in walk(model) if isinstance(m, SelectorMixin) and list(m.get_support(indices=True)) == [0]]
    if not first_only:
        return
    inferred = shape_inference.infer_shapes(onx)
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.graph.input, *inferred.graph.value_info]}
    for node in onx.graph.node:
        if node.op_type == "ConstantOfShape" and types.get(node.input[0]) in (TensorProto.FLOAT, TensorProto.DOUBLE):
            columns = f"{node.name or node.output[0]}_columns"
            onx.graph.initializer.append(helper.make_tensor(columns, TensorProto.INT64, [1], [0]))
            node.op_type, node.domain = "ArrayFeatureExtractor", "ai.onnx.ml"
            node.input.append(columns)
            applied.add(SELECTOR_FIRST_COLUMN, ", ".join(type(m).__name__ for m in first_only))
    uses_ml = any(n.domain == "ai.onnx.ml" for n in onx.graph.node)
    if uses_ml and not any(i.domain == "ai.onnx.ml" for i in onx.opset_import):
        onx.opset_import.add(domain="ai.onnx.ml", version=1)


def _wrap_lookup_indices(onx: Any, applied: Applied) -> None:
    """Indices of ArrayFeatureExtractor lookups into a constant, wrapped into range as numpy would."""
    if not enabled(RADIUS_NEGATIVE_INDEX):
        return
    from onnx import helper, numpy_helper

    constants = {i.name: i for i in onx.graph.initializer}
    nodes = []
    for node in onx.graph.node:
        if node.op_type == "ArrayFeatureExtractor" and node.input[0] in constants:
            size = int(numpy_helper.to_array(constants[node.input[0]]).shape[-1])
            n, shifted, wrapped = f"{node.name}_size", f"{node.input[1]}_shifted", f"{node.input[1]}_wrapped"
            onx.graph.initializer.append(numpy_helper.from_array(np.array(size, dtype=np.int64), n))
            nodes += [helper.make_node("Add", [node.input[1], n], [shifted], name=f"{node.name}_shift"),
                      helper.make_node("Mod", [shifted, n], [wrapped], name=f"{node.name}_wrap")]
            node.input[1] = wrapped
            applied.add(RADIUS_NEGATIVE_INDEX)
        nodes.append(node)
    del onx.graph.node[:]
    onx.graph.node.extend(nodes)


def _inclusive_radius(onx: Any, radius: Any, applied: Applied) -> None:
    """``distance < radius`` (skl2onnx) made ``distance <= radius`` (scikit-learn)."""
    if not enabled(RADIUS_INCLUSIVE):
        return
    from onnx import numpy_helper

    if radius is None:
        return
    constants = {i.name: numpy_helper.to_array(i) for i in onx.graph.initializer}
    has_less_or_equal = _default_opset(onx) >= 12
    for node in onx.graph.node:
        value = constants.get(node.input[1]) if node.op_type == "Less" and len(node.input) == 2 else None
        if value is not None and value.size == 1 and np.isclose(float(value.reshape(-1)[0]), float(radius)):
            if has_less_or_equal:
                node.op_type = "LessOrEqual"
            else:  # opset < 12 has no LessOrEqual: d < next float above r is d <= r, NaN still excluded
                bumped = np.nextafter(value, np.array(np.inf, dtype=value.dtype)).astype(value.dtype)
                node.input[1] = f"{node.input[1]}_inclusive"
                onx.graph.initializer.append(numpy_helper.from_array(bumped, node.input[1]))
            applied.add(RADIUS_INCLUSIVE)


def _default_opset(onx: Any) -> int:
    return next((o.version for o in onx.opset_import if o.domain in ("", "ai.onnx")), 0)


def _name_graph(onx: Any, model: Any, applied: Applied) -> None:
    if not enabled(DETERMINISTIC_NAME):
        return
    if _UUID_NAME.match(onx.graph.name):
        onx.graph.name = f"onnxgate_{type(model).__name__}"
        applied.add(DETERMINISTIC_NAME)


def _stack_sequence_probabilities(onx: Any, applied: Applied) -> None:
    if not enabled(MULTIOUTPUT_PROBABILITIES):
        return
    from onnx import TensorProto, helper

    for out in onx.graph.output:
        if out.name == "probabilities" and out.type.HasField("sequence_type"):
            elem = out.type.sequence_type.elem_type.tensor_type.elem_type
            rename_value(onx.graph.node, out.name, "probabilities_sequence")
            onx.graph.node.append(helper.make_node(
                "ConcatFromSequence", ["probabilities_sequence"], [out.name], axis=1, name="onnxgate_stack_probabilities"))
            out.type.CopyFrom(helper.make_tensor_type_proto(elem or TensorProto.FLOAT, [None, None]))
            applied.add(MULTIOUTPUT_PROBABILITIES)


def _shape_conflict(onx: Any) -> str | None:
    """The strict shape inference error that contradicts a declared shape, or None."""
    from onnx import shape_inference

    try:
        shape_inference.infer_shapes(onx, check_type=True, strict_mode=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises several types for one complaint
        text = str(exc)
        return text if "differ" in text else None
    return None


def _repair_declared_shapes(onx: Any, applied: Applied) -> None:
    """Drop declared shapes that inference contradicts: intermediate ones, then outputs' (set to the inferred)."""
    if not enabled(DECLARED_SHAPES):
        return
    from onnx import shape_inference

    if _shape_conflict(onx) is None:
        return
    del onx.graph.value_info[:]
    if _shape_conflict(onx) is not None:
        bare = copy.deepcopy(onx)
        for out in bare.graph.output:
            if out.type.HasField("tensor_type"):
                out.type.tensor_type.ClearField("shape")
        inferred = {v.name: v for v in shape_inference.infer_shapes(bare).graph.output}
        for out in onx.graph.output:
            known = inferred.get(out.name)
            if known is not None and known.type.tensor_type.HasField("shape"):
                out.type.tensor_type.shape.CopyFrom(known.type.tensor_type.shape)
    if _shape_conflict(onx) is None:
        applied.add(DECLARED_SHAPES)




def _reshape_outputs(onx: Any, final: Any, applied: Applied) -> None:
    """Classifier labels to (N,), outlier-detector labels and scores to (N, 1)."""
    if not enabled(LABEL_SHAPE):
        return
    from onnx import helper

    kind = estimator_kind(final)
    for out in onx.graph.output:
        dims = list(out.type.tensor_type.shape.dim) if out.type.HasField("tensor_type") else None
        if dims is None or not out.type.tensor_type.HasField("shape"):
            continue
        if kind == "classifier" and out.name == "label" and len(dims) == 2 and any(d.dim_value == 1 for d in dims):
            target, shape = [-1], [None]
        elif kind == "classifier" and out.name == "label" and len(dims) == 1 and _transposed_label(onx, final):
            target, shape = [-1], [None]
        elif kind == "outlier_detector" and out.name in ("label", "scores") and len(dims) == 1:
            target, shape = [-1, 1], [None, 1]
        else:
            continue
        raw, const = f"{out.name}_unshaped", f"{out.name}_shape"
        rename_value(onx.graph.node, out.name, raw)
        onx.graph.initializer.append(helper.make_tensor(const, 7, [len(target)], target))
        onx.graph.node.append(helper.make_node("Reshape", [raw, const], [out.name], name=f"onnxgate_reshape_{out.name}"))
        out.type.CopyFrom(helper.make_tensor_type_proto(out.type.tensor_type.elem_type, shape))
        applied.add(LABEL_SHAPE, f"{out.name} of {type(final).__name__}")


def _transposed_label(onx: Any, final: Any) -> bool:
    """A one-column classifier's label declared (N,) but made by a Transpose, which keeps its input's rank:
    GaussianProcessClassifier's Transpose(ArrayFeatureExtractor(classes, (N, 1) index)) returns (N, 1)."""
    producer = next((n for n in onx.graph.node if "label" in n.output), None)
    return producer is not None and producer.op_type == "Transpose" and np.ndim(getattr(final, "classes_", None)) == 1




# -- the original's outputs -----------------------------------------------------------------


def estimator_kind(est: Any) -> str | None:
    """classifier, regressor, clusterer, outlier_detector, density_estimator or None (a transformer),
    from scikit-learn's own tags (scikit-learn >= 1.6 has no ``_estimator_type``)."""
    try:
        from sklearn.utils import get_tags

        return get_tags(est).estimator_type
    except (ImportError, AttributeError, TypeError, ValueError):
        return getattr(est, "_estimator_type", None)


def converted_as_selector(final: Any, applied: Applied | None) -> bool:
    """Whether skl2onnx converts ``final`` as a feature selector (its transform), whatever its tags say."""
    if not enabled(SELECTOR_TRANSFORM):
        return False
    from sklearn.feature_selection import SelectorMixin

    if not isinstance(final, SelectorMixin):
        return False
    if applied is not None and estimator_kind(final) in ("regressor", "classifier"):
        applied.add(SELECTOR_TRANSFORM, type(final).__name__)
    return True


def call_in_fitted_dtype(method: Callable[[Any], Any], X: Any, model: Any, applied: Applied | None) -> Any:
    """``method(X)``; when the estimator refuses float64 for float32 fitted arrays, again in float32."""
    if not enabled(FITTED_DTYPE):
        return method(X)
    try:
        return method(X)
    except ValueError as exc:
        if "Buffer dtype mismatch" not in str(exc) or not isinstance(X, np.ndarray):
            raise
    fitted = fitted_float_dtype(model)
    if fitted is None or fitted == X.dtype:
        raise
    if applied is not None:
        applied.add(FITTED_DTYPE, str(fitted))
    return method(X.astype(fitted))


def fitted_float_dtype(model: Any) -> np.dtype | None:
    """The float dtype of the fitted arrays (``name_`` attributes) of the estimators in ``model``."""
    kinds = {v.dtype for m in walk(model) for k, v in vars(m).items()
             if k.endswith("_") and isinstance(v, np.ndarray) and v.dtype.kind == "f"}
    return kinds.pop() if len(kinds) == 1 else None


def dense_output(y: Any, applied: Applied | None) -> Any:
    """A scipy sparse matrix as a dense array; anything else unchanged."""
    if not enabled(DENSE_REFERENCE):
        return y
    if hasattr(y, "toarray") and hasattr(y, "nnz"):
        if applied is not None:
            applied.add(DENSE_REFERENCE)
        return y.toarray()
    return y


def stacked_probabilities(p: Any, applied: Applied | None) -> Any:
    """MultiOutputClassifier's list of probability arrays, concatenated along the columns as the graph does."""
    if not enabled(MULTIOUTPUT_PROBABILITIES):
        return p
    if isinstance(p, list):
        if applied is not None:
            applied.add(MULTIOUTPUT_PROBABILITIES)
        return np.concatenate([np.asarray(a) for a in p], axis=1)
    return p
