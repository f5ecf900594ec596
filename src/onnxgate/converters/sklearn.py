"""scikit-learn (and xgboost/lightgbm estimators in its API) through skl2onnx.

Conventions this module relies on, from skl2onnx:

* classifiers emit ``label`` and ``probabilities`` (ZipMap disabled, so a plain tensor);
  a classifier without ``predict_proba`` puts ``decision_function`` in ``probabilities``,
  as ``[-d, d]`` for a binary problem;
* regressors and transformers emit ``variable`` of shape (N, k), k >= 1;
* clusterers and outlier detectors emit ``label`` and ``scores``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import installed_versions, one_line as _one_line
from onnxgate.converters.opsets import check_requested, skl2onnx_max_opset
from onnxgate.converters.base import Conversion, Converter, ConverterSettings
from onnxgate.converters import sklearn_inputs as forms
from onnxgate.converters.fixes import Applied
from onnxgate.converters.fixes import sklearn as fixes
from onnxgate.converters.fixes import sklearn_dict as dicts
from onnxgate.converters.fixes import sklearn_precision as precision
from onnxgate.converters.fixes import sklearn_quantile as quantile
from onnxgate.converters.fixes import sklearn_text as text
from onnxgate.trust import Trust
from onnxgate.errors import NeedsSampleError, OutputMismatchError, SampleError, SourceError, UnsupportedModelError

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")
SUFFIXES = (".skops",) + PICKLE_SUFFIXES


@dataclass(frozen=True)
class SklearnSettings(ConverterSettings):
    """``--double``: float64 inputs (skl2onnx's double-precision path) instead of float32."""

    double: bool = False

    @property
    def dtype(self) -> type:
        return np.float64 if self.double else np.float32


class SklearnConverter(Converter):
    name = "sklearn"
    install_hint = "pip install 'onnxgate[sklearn]'"
    settings_class = SklearnSettings
    reference_call = "predict/predict_proba/transform per output"
    independent_rows = True

    # -- recognise and load ---------------------------------------------------------------
    def accepts(self, source: Any) -> bool:
        if isinstance(source, (str, Path)):
            return Path(source).suffix.lower() in SUFFIXES
        module = type(source).__module__ or ""
        return module.split(".")[0] in ("sklearn", "xgboost", "lightgbm", "imblearn") and hasattr(source, "get_params")

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        if not isinstance(source, (str, Path)):
            return _check_fitted(source)
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"source {str(path)!r} does not exist", "check the path")
        if path.suffix.lower() == ".skops":
            model = load_skops(path, trust)
        else:
            from onnxgate.trust import require_pickle

            require_pickle(trust, repr(str(path)), alternative="save the model with skops.io.dump instead")
            model = _load_pickle(path)
        if (type(model).__module__ or "").split(".")[0] == "catboost":
            raise SourceError(
                f"{str(path)!r} holds a CatBoost {type(model).__name__}; the sklearn converter cannot export it",
                "pass --framework catboost, or save it with model.save_model('model.cbm')",
            )
        if not hasattr(model, "get_params"):
            raise SourceError(
                f"{str(path)!r} holds a {type(model).__name__}, not a scikit-learn estimator",
                "save the fitted estimator or pipeline itself",
            )
        return _check_fitted(model)

    # -- inputs ---------------------------------------------------------------------------
    def feeds(self, model: Any, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        form = forms.input_form(model)
        if form.kind == "mappings":  # a DictVectorizer's rows of {key: value}: fixes/sklearn_dict.py
            return forms.mapping_feeds(form, sample, self.settings(options).dtype)
        if form.special:  # documents, labels or tokens: see converters/sklearn_inputs.py
            return {"X": forms.form_feed(form, _one_array(sample, form), sample.path or "the sample")}
        dtype = self.settings(options).dtype
        names = getattr(model, "feature_names_in_", None)
        names = [str(n) for n in names] if names is not None else None
        columns = sample.arrays if sample.kind in ("table", "named") and len(sample.arrays) > 1 else None
        if columns is not None:
            if names is None:
                if sample.kind == "table" and all(v.dtype.kind == "f" for v in columns.values()):
                    return {"X": _as_matrix(np.column_stack(list(columns.values())), model, dtype, sample)}
                raise SampleError(
                    f"the sample has named columns {list(columns)} but the model was fitted without feature names",
                    "pass the features as one 2-D .npy array",
                )
            missing = [n for n in names if n not in columns]
            if missing:
                raise SampleError(
                    f"sample {sample.path!r} lacks column(s) {missing}; the model expects {names}",
                    "add the missing columns to the sample",
                )
            if _wants_columns(model, columns, names):
                return {n: _column_feed(columns[n], dtype) for n in names}
            return {"X": _as_matrix(np.column_stack([columns[n] for n in names]), model, dtype, sample)}
        (only,) = sample.arrays.values()
        return {"X": _as_matrix(only, model, dtype, sample)}

    def synthesize(self, model: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Inputs without a sample, from ``n_features_in_`` (and the feature names and
        categories where the model routes columns by name): see inputs.synthesize."""
        from onnxgate.inputs.synthesize import InputSpec, synthesize_from_options

        form = forms.input_form(model)
        if form.kind == "mappings":
            return forms.synthesize_mappings(model, options, self.settings(options).dtype)
        if form.special:
            return forms.synthesize_form(form, model, options)
        dtype = self.settings(options).dtype
        names = getattr(model, "feature_names_in_", None)
        categories = _column_categories(model)
        if names is not None and (categories or _wants_columns(model, {}, [])):
            specs = []
            for n in (str(x) for x in names):
                cats = categories.get(n)
                if cats is not None and any(isinstance(c, str) for c in cats):
                    specs.append(InputSpec(n, object, (None, 1), choices=tuple(str(c) for c in cats)))
                else:
                    specs.append(InputSpec(n, dtype, (None, 1)))
            return synthesize_from_options(specs, options)
        n_features = getattr(model, "n_features_in_", None)
        if n_features is None:
            raise NeedsSampleError(
                f"the {type(_final(model)).__name__} does not record how many features it was fitted on",
                "pass --sample FILE with a few rows of real inputs",
            )
        return synthesize_from_options([InputSpec("X", dtype, (None, int(n_features)))], options)

    # -- conversion -----------------------------------------------------------------------
    def convert(self, model: Any, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        import skl2onnx

        _register_boosters(model)
        core64 = precision.needs_float64_core(_final(model), self.settings(options).dtype)
        # a DictVectorizer first (fixes/sklearn_dict.py): skl2onnx converts the rest, on its dense [N, V] output
        head, rest = dicts.split(model) if forms.input_form(model).kind == "mappings" else (None, model)
        values_dtype = dicts.feed_dtype(feeds) if head is not None else None
        typed = feeds if head is None else {"X": np.zeros((1, len(head.feature_names_)), values_dtype)}
        initial = _initial_types(typed, core64)
        check_requested(opset, skl2onnx_max_opset(), f"skl2onnx {skl2onnx.__version__}")
        opset = opset or default_opset()
        applied = Applied()
        onx, found = None, []
        if rest is not None:
            source = fixes.conversion_copy(rest, applied)
            found = text.vectorizers(fixes.walk(source))
            onx = _skl2onnx(source, initial, opset, found, applied, _final(model))
            if core64:
                precision.float64_core(onx, applied)
        if head is not None:
            onx = dicts.attach(head, values_dtype, onx, opset, _ml_opset(opset), applied)
        fixes.repair_graph(onx, model, _final(model), applied)
        text.repair_graph(onx, list(fixes.walk(model)), _final(model), applied)
        self._note_reference_fixes(model, feeds, [o.name for o in onx.graph.output], applied)
        declared = _input_note(onx) if head is not None else [(n, str(t)) for n, t in _interface(initial, core64)]
        notes = [f"inputs: {declared}", *applied.notes, *_warned(text.known_differences(found, feeds))]
        return Conversion(onx, f"skl2onnx {skl2onnx.__version__}", notes=notes)

    def _note_reference_fixes(self, model: Any, feeds: dict[str, np.ndarray], names: list[str], applied: Applied) -> None:
        """Which reference-side fixes this model needs, for the conversion notes (a failure shows later).

        The outputs are kept (:class:`_KeptReference`): the sample's own case then costs nothing."""
        try:
            with _one_thread_for_few_rows(feeds):
                outputs = _reference_outputs(model, feeds, names, applied)
        except Exception:  # noqa: BLE001 - the reference stage reports it with its context
            return
        self._kept = _KeptReference.of(model, names, feeds, outputs)

    # -- reference ------------------------------------------------------------------------
    def reference(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        kept = getattr(self, "_kept", None)
        answer = kept.answer(model, output_names, feeds) if kept is not None else None
        if answer is not None:
            return answer
        outputs = _reference_outputs(model, feeds, output_names, None)
        self._kept = _KeptReference.of(model, output_names, feeds, outputs)
        return outputs

    def reference_context(self, feeds: dict[str, np.ndarray]) -> Any:
        return _one_thread_for_few_rows(feeds)

    def reference64(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """scikit-learn already computes in float64 on the (float64) input values: the reference
        is its own float64 reference. None for a model fitted in float32 (it computes in float32)
        and for XGBoost estimators (float32 thresholds and leaves: float32 is their definition)."""
        if fixes.fitted_float_dtype(model) == np.dtype(np.float32):
            return None
        if any(type(m).__module__.startswith("xgboost") for m in _walk(model)):
            return None
        return self.reference(model, feeds, output_names)

    def may_tie(self, model: Any) -> bool:
        """Neighbour models (converters/sklearn_ties.py)."""
        from onnxgate.converters import sklearn_ties

        return sklearn_ties.applies(model)

    def reference_ties(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        """Neighbour models: every valid tie-break's outputs on rows whose k-th and (k+1)-th
        neighbours are equidistant (converters/sklearn_ties.py); empty for any other model."""
        from onnxgate.converters import sklearn_ties

        if not self.may_tie(model):
            return {}
        graph_dtype = next((v.dtype for v in feeds.values() if v.dtype.kind == "f"), np.dtype(np.float32))
        reference = self.reference(model, feeds, output_names)  # kept: no second predict
        return sklearn_ties.tie_sets(model, _model_input(model, feeds), graph_dtype, reference)

    def versions(self) -> dict[str, str]:
        return installed_versions("scikit-learn", "skl2onnx", "skops")

    def model_versions(self, model: Any) -> dict[str, str]:
        """Plus the packages of the foreign estimators the model holds (and onnxmltools, which converts them)."""
        return {**self.versions(), **installed_versions(*involved_packages(model))}


# -- helpers ------------------------------------------------------------------------------

# top-level module of an estimator class -> its distribution; the boosters convert through onnxmltools
_FOREIGN = {"xgboost": "xgboost", "lightgbm": "lightgbm", "catboost": "catboost", "imblearn": "imbalanced-learn"}
_VIA_ONNXMLTOOLS = ("xgboost", "lightgbm", "catboost")


def involved_packages(model: Any) -> list[str]:
    """The distributions besides scikit-learn whose classes occur in ``model``'s estimator tree."""
    roots = {(type(o).__module__ or "").split(".")[0] for o in _estimator_tree(model)}
    found = sorted(_FOREIGN[r] for r in roots if r in _FOREIGN)
    return found + (["onnxmltools"] if roots & set(_VIA_ONNXMLTOOLS) else [])


def _estimator_tree(obj: Any, seen: set[int] | None = None) -> Any:
    """``obj`` and every estimator reachable through its parameters (pipeline steps, wrapped estimators)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    yield obj
    if isinstance(obj, (list, tuple)):
        children: Any = obj
    elif hasattr(obj, "get_params") and not isinstance(obj, type):
        try:
            children = obj.get_params(deep=False).values()
        except Exception:  # noqa: BLE001 - an estimator whose params cannot be read holds nothing we can see
            children = ()
    else:
        return
    for child in children:
        if isinstance(child, (list, tuple)) or hasattr(child, "get_params"):
            yield from _estimator_tree(child, seen)


@dataclass(frozen=True)
class _KeptReference:
    """The original's latest outputs, for a request on the same rows or on their first rows.

    scikit-learn predicts row by row, so the outputs for the first n rows are the first n rows of
    the outputs: the batch cases (the sample, its first row, its first half) cost one predict, as
    a hand-written check does, instead of three (a forest's predict is most of a run's time)."""

    model: Any
    names: tuple[str, ...]
    feeds: dict[str, np.ndarray]
    rows: int
    outputs: dict[str, np.ndarray]

    @classmethod
    def of(cls, model: Any, names: list[str], feeds: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> "_KeptReference":
        return cls(model, tuple(names), {k: np.array(v) for k, v in feeds.items()}, _rows(feeds), outputs)

    def answer(self, model: Any, names: list[str], feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
        """The kept outputs for ``feeds`` when they are this model's kept rows or their first rows, else None."""
        n = _rows(feeds)
        if model is not self.model or tuple(names) != self.names or set(feeds) != set(self.feeds) or not 0 < n <= self.rows:
            return None
        if any(np.shape(v)[0] != self.rows for v in self.outputs.values()):
            return None
        for name, arr in feeds.items():
            kept = self.feeds[name][:n]
            arr = np.asarray(arr)
            if arr.shape != kept.shape or not np.array_equal(arr, kept, equal_nan=arr.dtype.kind == "f"):
                return None
        return {k: v[:n] for k, v in self.outputs.items()} if n < self.rows else dict(self.outputs)


def _rows(feeds: dict[str, np.ndarray]) -> int:
    sizes = {np.shape(v)[0] for v in feeds.values() if np.ndim(v)}
    return sizes.pop() if len(sizes) == 1 else 0


# up to this many rows the original runs on one thread: OpenMP's team start-up and spinning (HistGradientBoosting,
# KMeans) cost more than a few rows of work, 10x more on a busy machine (0.2 s against 3 s for one HGB predict)
FEW_ROWS = 4096
_controller: Any = None


def _one_thread_for_few_rows(feeds: dict[str, np.ndarray]) -> Any:
    """A context that limits OpenMP and BLAS to one thread when the feeds are a few rows, else does nothing
    (validation only: a timed run keeps the thread count runtime.timing matches to ONNX Runtime's)."""
    from contextlib import nullcontext

    rows = max((np.shape(v)[0] for v in feeds.values() if np.ndim(v)), default=0)
    if rows > FEW_ROWS:
        return nullcontext()
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()  # inspects the loaded libraries once
    return _controller.limit(limits=1)


def _convert(model: Any, initial: list[Any], opset: int, options: dict[Any, Any], custom: tuple[dict, dict] = ({}, {})) -> Any:
    """skl2onnx's conversion; ``custom``: converters and shape calculators by estimator type, for this call only."""
    from skl2onnx import convert_sklearn

    return convert_sklearn(
        model,
        initial_types=initial,
        target_opset={"": opset, "ai.onnx.ml": _ml_opset(opset)},
        options=options or None,
        custom_conversion_functions=custom[0] or None,
        custom_shape_calculators=custom[1] or None,
    )


def _initial_types(feeds: dict[str, np.ndarray], core64: bool) -> list[Any]:
    """skl2onnx's ``initial_types``: one typed input per feed, batch dimension free; float32 declared as
    float64 where the core is converted in float64 (given its float32 interface afterwards)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, Int64TensorType, StringTensorType

    types = {np.dtype(np.float32): DoubleTensorType if core64 else FloatTensorType,
             np.dtype(np.float64): DoubleTensorType, np.dtype(np.int64): Int64TensorType}
    return [(name, (StringTensorType if arr.dtype.kind in "OUS" else types[arr.dtype])([None, *arr.shape[1:]]))
            for name, arr in feeds.items()]


def _skl2onnx(source: Any, initial: list[Any], opset: int, found: list[Any], applied: Applied, final: Any) -> Any:
    """skl2onnx's conversion of ``source`` with the fixes that act through its options and custom converters."""
    conv_options = fixes.zipmap_options(source, applied)
    conv_options = text.vectorizer_options(found, conv_options, applied)
    custom = quantile.custom_converters(source, opset, applied)
    try:
        return fixes.convert_with_int_attributes(lambda: _convert(source, initial, opset, conv_options, custom), applied)
    except Exception as exc:
        raise UnsupportedModelError(
            f"skl2onnx cannot convert {type(final).__name__}: {_one_line(exc)}",
            "see https://onnx.ai/sklearn-onnx/supported.html for supported estimators",
        ) from exc


def _input_note(onx: Any) -> list[tuple[str, str]]:
    """The graph's declared inputs, as the conversion notes list them."""
    from onnx import TensorProto

    return [(i.name, f"{TensorProto.DataType.Name(i.type.tensor_type.elem_type).lower()}"
             f"{[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]}") for i in onx.graph.input]


def _interface(initial: list[Any], core64: bool) -> list[Any]:
    """The declared input types as the published graph takes them (float32 where a float64 core was wrapped)."""
    if not core64:
        return initial
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    return [(n, FloatTensorType(t.shape) if isinstance(t, DoubleTensorType) else t) for n, t in initial]


def default_opset() -> int:
    import onnx
    from skl2onnx import get_latest_tested_opset_version

    return min(int(get_latest_tested_opset_version()), int(onnx.defs.onnx_opset_version()))


def _ml_opset(opset: int) -> int:
    # ai.onnx.ml 3 (TreeEnsemble* with double) arrived with opset 16; skl2onnx emits <= 3.
    return 3 if opset >= 16 else 1


def load_skops(path: Path, trust: Trust) -> Any:
    """skops with audited trust: the types onnxgate can audit are loaded and every instance
    audited before anything runs on it; any other untrusted type still needs --trust-type."""
    import zipfile

    from skops.io import get_untrusted_types, load

    from onnxgate.checks import audits
    from onnxgate.checks.limits import check_archive
    from onnxgate.trust import require_types

    what = repr(str(path))
    if not zipfile.is_zipfile(path):
        raise SourceError(f"{what} is not a valid .skops file (not a zip archive)", "re-save it with skops.io.dump")
    check_archive(path, what, json_members=("schema.json",))
    try:
        untrusted = get_untrusted_types(file=str(path))
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, OSError) as exc:
        raise SourceError(f"{what} is not a valid .skops file ({_one_line(exc)})", "re-save it with skops.io.dump") from None
    audited, rest = audits.auditable(untrusted)
    require_types(trust, what, rest)
    try:
        audits.audit_skops_payloads(path, audited)  # boosters' serialized models, before their parsers see them
    except audits.AuditError:
        if not trust.code:
            raise
    try:
        model = load(str(path), trusted=untrusted)
    except Exception as exc:
        raise SourceError(f"cannot load {what} with skops: {_one_line(exc)}", "re-save it with skops.io.dump") from None
    _audit(model, audited, trust)
    return model


def _audit(model: Any, types: list[str], trust: Trust) -> None:
    """Audit every instance of ``types`` in ``model``; a failure is refused unless code is trusted."""
    from onnxgate.checks import audits

    if not types:
        return
    try:
        counts = audits.audit_estimator(model, types)
    except audits.AuditError:
        if not trust.code:
            raise
        audits.record(", ".join(types), 0, "trusted by --trust-code although its audit failed")
        return
    audits.record_audits(counts)


def _load_pickle(path: Path) -> Any:
    try:
        import joblib

        return joblib.load(path)
    except Exception as exc:
        raise SourceError(f"cannot unpickle {str(path)!r}: {_one_line(exc)}", "check that it is a joblib or pickle file") from None


def _check_fitted(model: Any) -> Any:
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    try:
        check_is_fitted(_final(model))
    except NotFittedError:
        raise SourceError(f"the {type(model).__name__} is not fitted", "fit it before saving") from None
    except TypeError:
        pass  # not an estimator check_is_fitted understands; conversion will tell
    return model


def _final(model: Any) -> Any:
    steps = getattr(model, "steps", None)
    return _final(steps[-1][1]) if steps else model


def _wants_columns(model: Any, columns: dict[str, np.ndarray], names: list[str]) -> bool:
    """One ONNX input per column when the model routes columns by name or mixes strings and numbers."""
    if any(columns[n].dtype.kind in "OUS" for n in names):
        return True
    from sklearn.compose import ColumnTransformer

    stack = [model]
    while stack:
        m = stack.pop()
        if isinstance(m, ColumnTransformer):
            return True
        stack.extend(step for _, step in getattr(m, "steps", []) or [])
    return False


def _column_categories(model: Any) -> dict[str, list[Any]]:
    """Column name -> fitted categories, for encoders inside a ColumnTransformer."""
    from sklearn.compose import ColumnTransformer

    out: dict[str, list[Any]] = {}
    for m in _walk(model):
        if not isinstance(m, ColumnTransformer):
            continue
        for _, trans, cols in getattr(m, "transformers_", []) or []:
            enc = next((s for s in _walk(trans) if hasattr(s, "categories_")), None) if hasattr(trans, "get_params") else None
            if enc is None or not isinstance(cols, (list, tuple)):
                continue
            for col, cats in zip(cols, enc.categories_):
                out[str(col)] = list(cats)
    return out


def _column_feed(col: np.ndarray, dtype: type) -> np.ndarray:
    if col.dtype.kind in "OUS":
        return col.astype(str).astype(object).reshape(-1, 1)
    return col.astype(dtype).reshape(-1, 1)


def _warned(notes: list[str]) -> list[str]:
    """``notes`` (differences no fix removes), each also raised as a warning: the report keeps a framework's warnings."""
    import warnings

    for note in notes:
        warnings.warn(note, stacklevel=3)
    return notes


def _one_array(sample: Any, form: forms.InputForm) -> np.ndarray:
    """The sample's single array (a one-column table is its column) for a model that takes one."""
    if len(sample.arrays) != 1:
        raise SampleError(
            f"{sample.path or 'the sample'} holds {len(sample.arrays)} arrays {list(sample.arrays)}; "
            f"the {form.estimator} takes one input",
            f"pass {form.wanted()}",
        )
    return next(iter(sample.arrays.values()))


def _as_matrix(arr: np.ndarray, model: Any, dtype: type, sample: Any) -> np.ndarray:
    arr = np.asarray(arr)
    where = sample.path or "the sample"
    if arr.ndim != 2:
        raise SampleError(
            f"{where} has shape {list(arr.shape)}; a scikit-learn model needs a 2-D (rows, features) array",
            "reshape it to (n_rows, n_features), e.g. x.reshape(1, -1) for one row",
        )
    if arr.dtype.kind not in "fiub":
        raise SampleError(f"{where} holds {arr.dtype} values; the model expects numbers", "pass a numeric array")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and arr.shape[1] != expected:
        raise SampleError(
            f"{where} has {arr.shape[1]} feature column(s); the model expects {expected}",
            "pass a sample with the columns the model was fitted on",
        )
    return np.ascontiguousarray(arr.astype(dtype))


def _model_input(model: Any, feeds: dict[str, np.ndarray]) -> Any:
    """The feeds as scikit-learn expects them: float64 (the same values) and a DataFrame where named."""
    form = forms.input_form(model)
    if form.kind == "mappings":
        return forms.reference_rows(feeds)
    if list(feeds) == ["X"] and form.special:
        return forms.reference_input(feeds["X"], form)
    if list(feeds) == ["X"]:
        X = feeds["X"].astype(np.float64)
        names = getattr(model, "feature_names_in_", None)
        if names is None:
            return X
        import pandas as pd

        return pd.DataFrame(X, columns=list(names))
    import pandas as pd

    return pd.DataFrame(
        {n: (v[:, 0].astype(str) if v.dtype == object else v[:, 0].astype(np.float64)) for n, v in feeds.items()}
    )


def _reference_outputs(model: Any, feeds: dict[str, np.ndarray], names: list[str], applied: Applied | None) -> dict[str, np.ndarray]:
    X = _model_input(model, feeds)
    final = _final(model)
    return {name: _reference_output(model, final, name, X, applied) for name in names}


# output names skl2onnx gives a transformer's or regressor's single output
_VALUE_OUTPUTS = ("variable", "transformed_column", "union", "GPmean")


def _reference_output(model: Any, final: Any, name: str, X: Any, applied: Applied | None) -> np.ndarray:
    """The original's output named as skl2onnx names it; which method from scikit-learn's own tags."""
    kind = fixes.estimator_kind(final)

    def call(method: Any) -> Any:
        return fixes.dense_output(fixes.call_in_fitted_dtype(method, X, model, applied), applied)

    if name == "label":
        y = np.asarray(call(model.predict))
        return y.reshape(-1, 1) if kind in ("outlier_detector", "density_estimator") and y.ndim == 1 else y
    if name == "probabilities":
        return _probabilities(model, final, call, applied)
    if name in _VALUE_OUTPUTS:
        selector = fixes.converted_as_selector(final, applied)
        use_predict = (kind == "regressor" and not selector) or name == "GPmean" or not hasattr(model, "transform")
        y = np.asarray(call(model.predict if use_predict else model.transform))
        return y.reshape(-1, 1) if y.ndim == 1 and not forms.keeps_rank(final) else y
    if name in ("index", "distance"):  # NearestNeighbors: kneighbors()
        distance, index = call(final_kneighbors(model))
        return np.asarray(index if name == "index" else distance)
    if name == "scores":
        if kind == "outlier_detector":
            return np.asarray(call(model.decision_function)).reshape(-1, 1)
        if hasattr(model, "transform"):
            return np.asarray(call(model.transform))
        return np.asarray(call(model.score_samples)).reshape(-1, 1)
    raise OutputMismatchError(
        f"onnxgate does not know which {type(final).__name__} method produces ONNX output {name!r}",
        "report this estimator to onnxgate; compare the outputs with --framework and a custom converter meanwhile",
    )


def _hard_votes(model: Any, final: Any, call: Any) -> np.ndarray:
    """A hard VotingClassifier's 'probabilities' as skl2onnx computes them: the weighted share of votes per class."""
    head = (lambda X: model[:-1].transform(X)) if getattr(model, "steps", None) else (lambda X: X)
    weights = np.ones(len(final.estimators_)) if final.weights is None else np.asarray(final.weights, dtype=np.float64)
    weights = weights / weights.sum()
    votes = call(lambda X: np.stack([e.predict(head(X)) for e in final.estimators_], axis=1))
    out = np.zeros((votes.shape[0], len(final.classes_)))
    for i, w in enumerate(weights):
        out[np.arange(votes.shape[0]), np.asarray(votes[:, i], dtype=np.int64)] += w
    return out


def final_kneighbors(model: Any) -> Any:
    """``kneighbors`` of the final step, on the input the earlier steps of a pipeline produce."""
    steps = getattr(model, "steps", None)
    if not steps:
        return model.kneighbors
    head, final = model[:-1], _final(model)
    return lambda X: final.kneighbors(head.transform(X))


def _probabilities(model: Any, final: Any, call: Any, applied: Applied | None) -> np.ndarray:
    if getattr(final, "voting", None) == "hard":
        return _hard_votes(model, final, call)
    if hasattr(model, "predict_proba"):
        try:
            return np.asarray(fixes.stacked_probabilities(call(model.predict_proba), applied))
        except AttributeError:  # e.g. SVC(probability=False) exposes the attribute but refuses
            pass
    d = np.asarray(call(model.decision_function))
    if d.ndim == 1:  # binary: skl2onnx's LinearSVC emits the score as a column, others emit [-d, d]
        return d.reshape(-1, 1) if type(final).__name__ == "LinearSVC" else np.stack([-d, d], axis=1)
    return d


def _register_boosters(model: Any) -> None:
    """Teach skl2onnx the xgboost/lightgbm estimators, via onnxmltools, when the model uses them."""
    kinds = {type(m).__module__.split(".")[0] for m in _walk(model)}
    if not kinds & {"xgboost", "lightgbm"}:
        return
    from skl2onnx import update_registered_converter
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    opts = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    if "xgboost" in kinds:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        update_registered_converter(XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost, options=opts)
        update_registered_converter(XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost)
    if "lightgbm" in kinds:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        update_registered_converter(LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm, options=opts)
        update_registered_converter(LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm)


def _walk(model: Any):
    yield model
    for _, step in getattr(model, "steps", []) or []:
        yield from _walk(step)
    for _, trans, _cols in getattr(model, "transformers", []) or []:
        if hasattr(trans, "get_params"):
            yield from _walk(trans)
