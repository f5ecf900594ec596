"""Keras models: Keras 3 ``.keras`` files, legacy ``.h5`` (through tf-keras), in-memory models.

Conversion goes through tf2onnx's ``from_keras`` with an explicit input signature built
from ``model.inputs`` (batch dimension dynamic). Where tf2onnx cannot trace the model
(it fails on Sequential models without output names and on dict inputs), Keras's own
``model.export(format="onnx")`` is the fallback; ``Conversion.converter`` and its notes
say which path produced the file.

Names: ONNX inputs are the model's input names (dict keys for dict inputs); ONNX outputs
are the model's output names (dict keys for dict outputs). The reference runs
``model(x, training=False)`` so Dropout and BatchNormalization are in inference mode, and
its outputs are matched to those names through the model's own output structure.
"""

from __future__ import annotations

import json
import tempfile
import weakref
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from onnxgate.converters import _tf
from onnxgate.converters.opsets import check_requested
from onnxgate.converters.base import Conversion, Converter, ConverterSettings, float64_outputs
from onnxgate.converters.fixes import Applied
from onnxgate.converters.fixes.onnx_ops import EXPORTER_FALLBACK, repaired_rejection
from onnxgate.trust import Trust
from onnxgate.errors import ConversionError, OutputMismatchError, SourceError, UnsupportedModelError, UntrustedSourceError

KERAS_SUFFIXES = (".keras",)
H5_SUFFIXES = (".h5", ".hdf5")
TF_KERAS_HINT = "pip install tf-keras (the release matching your TensorFlow), or re-save the model in Keras 3 as model.keras"


@dataclass
class KerasModel:
    """A loaded Keras model with its inputs and outputs named as the ONNX graph names them."""

    model: Any
    label: str
    inputs: list[_tf.InputSpec]
    input_kind: str  # "single" | "list" | "dict" -- how model() takes its inputs
    outputs: list[str]  # in tf.nest.flatten order of model()'s result
    output_kind: str  # "single" | "list" | "dict"
    output_layers: dict[str, str] = field(default_factory=dict)  # ONNX output name -> layer that produces it
    token_high: dict[str, int] = field(default_factory=dict)  # integer input -> vocabulary size
    legacy: bool = False  # a tf-keras (Keras 2) model


@dataclass(frozen=True)
class KerasSettings(ConverterSettings):
    """None yet: a Keras model has one call signature, and its batch axis is always dynamic."""


class KerasConverter(Converter):
    name = "keras"
    reference_call = "eager model(x, training=False)"
    install_hint = _tf.INSTALL_HINT
    settings_class = KerasSettings

    # -- recognise and load ---------------------------------------------------------------
    def accepts(self, source: Any) -> bool:
        if isinstance(source, (str, Path)):
            return Path(source).suffix.lower() in KERAS_SUFFIXES + H5_SUFFIXES
        root = (type(source).__module__ or "").split(".")[0]
        return root in ("keras", "tf_keras") and hasattr(source, "inputs") and hasattr(source, "layers")

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> KerasModel:
        if not isinstance(source, (str, Path)):
            return describe_model(source, f"<{type(source).__name__} object>")
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"source {str(path)!r} does not exist", "check the path")
        if path.suffix.lower() in H5_SUFFIXES:
            return _load_h5(path, trust)
        return _load_keras(path, trust)

    # -- inputs ---------------------------------------------------------------------------
    def feeds(self, model: KerasModel, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return _tf.feeds_from_sample(model.inputs, sample)

    def synthesize(self, model: KerasModel, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return _tf.synthesize(model.inputs, options, int_high=model.token_high)

    # -- conversion -----------------------------------------------------------------------
    def convert(self, model: KerasModel, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        tf2onnx = _tf.import_tf2onnx()
        check_requested(opset, _tf.default_opset(), "tf2onnx")
        opset = opset or _tf.default_opset()
        inputs_note = "inputs: " + ", ".join(s.describe() for s in model.inputs)
        applied = Applied()
        grouped = _grouped_convolution(model)
        if grouped is not None:  # from_keras is known to fail on it: the inlined trace first, not after 30 s
            proto = _inlined_or_none(model, opset, applied)
            if proto is not None:
                applied.add(EXPORTER_FALLBACK, f"layer {grouped!r} is a grouped convolution, which Keras compiles with XLA on "
                                               "CPU and tf2onnx from_keras leaves as a StatefulPartitionedCall ORT refuses")
                notes = ["path: tf2onnx on the traced model call, XLA functions inlined (a grouped convolution: "
                         "from_keras not tried)", inputs_note, *applied.notes]
                return Conversion(proto, f"tf2onnx {tf2onnx.__version__} (traced call, XLA functions inlined)", notes=notes)
        try:
            proto = _from_keras(model, opset)
            rejected = repaired_rejection(proto, applied)
            if rejected is None:
                notes = ["path: tf2onnx.convert.from_keras", inputs_note, *applied.notes]
                return Conversion(proto, f"tf2onnx {tf2onnx.__version__} (from_keras)", notes=notes)
            first = f"its graph is refused: {rejected}"
        except ConversionError:
            raise
        except Exception as exc:
            first = f"{type(exc).__name__}: {_tf.one_line(exc)}"
        if model.legacy:
            raise UnsupportedModelError(f"tf2onnx cannot convert the tf-keras model {model.label}: {first}", "re-save the model in Keras 3 (.keras)")
        if "StatefulPartitionedCall" in first and model.input_kind != "dict":
            proto = _inlined_or_none(model, opset, applied)
            if proto is not None:
                applied.add(EXPORTER_FALLBACK, f"tf2onnx from_keras: {first}")
                notes = ["path: tf2onnx on the traced model call, XLA functions inlined (fallback)",
                         f"tf2onnx.convert.from_keras failed: {first}", inputs_note, *applied.notes]
                return Conversion(proto, f"tf2onnx {tf2onnx.__version__} (traced call, XLA functions inlined)", notes=notes)
        proto = _fallback_export(model, opset, first, applied)
        import keras

        notes = [
            "path: keras model.export(format='onnx') (fallback)",
            f"tf2onnx.convert.from_keras failed: {first}",
            inputs_note,
            *applied.notes,
        ]
        return Conversion(proto, f"keras {keras.__version__} export(format='onnx') via tf2onnx {tf2onnx.__version__}", notes=notes)

    # -- reference ------------------------------------------------------------------------
    def reference(self, model: KerasModel, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        unknown = [n for n in output_names if n not in model.outputs]
        if unknown:
            raise OutputMismatchError(
                f"the ONNX outputs {unknown} are not outputs of {model.label} (its outputs: {model.outputs})",
                "validate against the ONNX file converted from this model",
            )
        tf = _tf.import_tf()
        result = model.model(_model_input(model, {k: tf.constant(v) for k, v in feeds.items()}), training=False)
        named = _name_outputs(model, result)
        return {n: np.asarray(named[n]) for n in output_names}

    def reference64(self, model: KerasModel, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """The model rebuilt from its config under a float64 dtype policy, weights cast to float64;
        None for tf-keras models and models that cannot be rebuilt (custom layers) or refuse float64."""
        wide = _float64_model(model)
        if wide is None:
            return None
        return float64_outputs(self.reference, wide, feeds, output_names)

    def speed_calls(self, model: KerasModel, feeds: dict[str, np.ndarray]) -> dict[str, Callable[[], Any]]:
        """The reference is an eager call, mostly Keras' per-call overhead at small batches: time the
        paths a user would serve with too, ``predict`` (compiled, batched) and a ``tf.function``."""
        tf = _tf.import_tf()
        arrays = _model_input(model, feeds)
        tensors = _model_input(model, {k: tf.constant(v) for k, v in feeds.items()})
        batch = len(next(iter(feeds.values())))
        graph = tf.function(lambda x: model.model(x, training=False), reduce_retracing=True)
        return {
            f"model.predict(x, batch_size={batch})": lambda: model.model.predict(arrays, batch_size=batch, verbose=0),
            "tf.function(model)(x)": lambda: graph(tensors),
        }

    def versions(self) -> dict[str, str]:
        return _tf.versions(("tf-keras", "h5py"))

    def model_versions(self, model: KerasModel) -> dict[str, str]:
        """tf-keras for a legacy (Keras 2) model, keras for a Keras 3 one: never both."""
        other = "keras" if model.legacy else "tf-keras"
        return {k: v for k, v in self.versions().items() if k != other}


def _model_input(model: KerasModel, values: dict[str, Any]) -> Any:
    """``values`` (by ONNX input name) in the structure ``model()`` takes: one, a list or a dict."""
    if model.input_kind == "dict":
        return {s.name: values[s.name] for s in model.inputs}
    if model.input_kind == "list":
        return [values[s.name] for s in model.inputs]
    return values[model.inputs[0].name]


# -- loading ------------------------------------------------------------------------------


def _load_keras(path: Path, trust: Trust) -> KerasModel:
    if not zipfile.is_zipfile(path):
        raise SourceError(f"{str(path)!r} is not a valid .keras file (not a zip archive)", "re-save the model with model.save('model.keras')")
    from onnxgate.checks.limits import check_archive

    check_archive(path, repr(str(path)), json_members=("config.json", "metadata.json"))
    try:
        with zipfile.ZipFile(path) as zf:
            config = json.loads(zf.read("config.json"))
    except (KeyError, zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError, OSError) as exc:
        raise SourceError(
            f"{str(path)!r} is not a valid .keras file ({type(exc).__name__}: {_tf.one_line(exc)})",
            "re-save the model with model.save('model.keras')",
        ) from None
    _refuse_lambdas(path, config, trust)
    keras = _tf.import_keras()
    try:
        with _tf.quiet_stderr():
            model = keras.models.load_model(str(path), compile=False, safe_mode=not trust.code)
    except Exception as exc:
        text = _tf.one_line(exc)
        if "safe_mode" in text or "unsafe" in text.lower():
            raise UntrustedSourceError(
                f"keras refused to load {str(path)!r} in safe mode: {text}",
                "pass --trust-code if you trust this file",
            ) from None
        raise SourceError(
            f"cannot load {str(path)!r} with keras: {type(exc).__name__}: {text}",
            "custom layers must be registered (keras.saving.register_keras_serializable) in an importable module",
        ) from None
    return describe_model(model, repr(str(path)))


def _load_h5(path: Path, trust: Trust) -> KerasModel:
    try:
        import h5py

        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except ImportError:
        raw = None
    except OSError as exc:
        raise SourceError(f"{str(path)!r} is not a valid HDF5 file ({_tf.one_line(exc)})", "re-save the model with model.save") from None
    if raw is None:
        raise SourceError(
            f"{str(path)!r} holds no Keras model config (weights only?)",
            "save the whole model (model.save('model.h5') in Keras 2, or model.save('model.keras'))",
        )
    config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
    _refuse_lambdas(path, config, trust)
    _tf.import_tf()
    try:
        import tf_keras
    except ImportError:
        raise SourceError(f"{str(path)!r} is a legacy Keras 2 .h5 file; loading it needs tf-keras, which is not installed", TF_KERAS_HINT) from None
    try:
        with _tf.quiet_stderr():
            model = tf_keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise SourceError(
            f"cannot load {str(path)!r} with tf-keras: {type(exc).__name__}: {_tf.one_line(exc)}",
            "custom layers must be passed as custom_objects; re-save the model as .keras",
        ) from None
    return describe_model(model, repr(str(path)), legacy=True)


def _refuse_lambdas(path: Path, config: Any, trust: Trust) -> None:
    names = sorted(_lambda_layers(config))
    if names and not trust.code:
        raise UntrustedSourceError(
            f"refusing to load {str(path)!r}: Lambda layer(s) {names} hold Python code that loading would run",
            "pass --trust-code if you trust this file, or replace the Lambda layers with registered custom layers",
        )


def _lambda_layers(config: Any) -> list[str]:
    """Names of Lambda layers anywhere in a Keras model config (nested models included)."""
    found: list[str] = []
    stack = [config]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("class_name") == "Lambda":
                cfg = node.get("config") or {}
                found.append(str(cfg.get("name", "?")) if isinstance(cfg, dict) else "?")
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


# -- model structure ----------------------------------------------------------------------


def describe_model(model: Any, label: str, *, legacy: bool = False) -> KerasModel:
    """Name the inputs and outputs the way the ONNX graph will."""
    if not getattr(model, "inputs", None):
        raise SourceError(
            f"{label} has no defined inputs (a subclassed model that was never built?)",
            "build it with keras.Input(...) (functional API) or call it once on data before saving",
        )
    struct = _input_structure(model)
    if isinstance(struct, dict):
        kind, pairs = "dict", [(str(k), struct[k]) for k in sorted(struct)]
    elif isinstance(struct, (list, tuple)) and len(struct) != 1 or len(model.inputs) > 1:
        kind, pairs = "list", [(t.name, t) for t in model.inputs]
    else:
        kind, pairs = "single", [(model.inputs[0].name, model.inputs[0])]
    specs = [_spec(name, t) for name, t in pairs]
    if len({s.name for s in specs}) != len(specs):
        raise SourceError(f"{label} has duplicate input names {[s.name for s in specs]}", "give each keras.Input a unique name")
    out_kind, outputs, layers = _output_names(model)
    vocab = [int(layer.input_dim) for layer in _all_layers(model) if type(layer).__name__ == "Embedding"]
    token_high = {s.name: min(vocab) for s in specs if s.dtype.kind in "iu" and vocab}
    return KerasModel(model, label, specs, kind, outputs, out_kind, layers, token_high, legacy)


def _input_structure(model: Any) -> Any:
    struct = getattr(model, "_inputs_struct", None)
    if struct is None:
        try:
            struct = model.input
        except (AttributeError, ValueError):
            struct = model.inputs
    return struct


def _spec(name: str, tensor: Any) -> _tf.InputSpec:
    shape = tuple(None if d is None else int(d) for d in tensor.shape)
    if shape:
        shape = (None,) + shape[1:]  # the batch dimension is always dynamic
    dtype = tensor.dtype
    dtype = np.dtype(getattr(dtype, "as_numpy_dtype", dtype))
    return _tf.InputSpec(name, dtype, shape)


def _output_names(model: Any) -> tuple[str, list[str], dict[str, str]]:
    struct = getattr(model, "_outputs_struct", None)
    if struct is None:
        try:
            struct = model.output
        except (AttributeError, ValueError):
            struct = model.outputs
    if isinstance(struct, dict):
        keys = sorted(struct)
        return "dict", [str(k) for k in keys], {str(k): _layer_name(struct[k]) or str(k) for k in keys}
    tensors = list(struct) if isinstance(struct, (list, tuple)) else [struct]
    declared = list(getattr(model, "output_names", None) or [])
    if len(declared) == len(tensors) and len(set(declared)) == len(declared):
        names = [str(n) for n in declared]
    else:
        names = [_layer_name(t) or f"output_{i}" for i, t in enumerate(tensors)]
        if len(set(names)) != len(names):
            names = [f"output_{i}" for i in range(len(tensors))]
    kind = "list" if isinstance(struct, (list, tuple)) and len(tensors) > 1 else "single"
    if isinstance(struct, (list, tuple)) and len(tensors) == 1:
        kind = "list1"
    return kind, names, {n: _layer_name(t) or n for n, t in zip(names, tensors)}


def _layer_name(tensor: Any) -> str | None:
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        return None
    op = getattr(history, "operation", None) or getattr(history, "layer", None) or history[0]
    return getattr(op, "name", None)


def _all_layers(model: Any) -> list[Any]:
    out, stack = [], list(getattr(model, "layers", []))
    while stack:
        layer = stack.pop()
        out.append(layer)
        stack.extend(getattr(layer, "layers", []) or [])
    return out


def _name_outputs(model: KerasModel, result: Any) -> dict[str, Any]:
    """model()'s result by ONNX output name, following the model's own output structure."""
    if model.output_kind == "dict":
        return {k: result[k] for k in model.outputs}
    if model.output_kind == "single" and not isinstance(result, (list, tuple)):
        return {model.outputs[0]: result}
    items = list(result) if isinstance(result, (list, tuple)) else [result]
    if len(items) != len(model.outputs):
        raise OutputMismatchError(
            f"{model.label} returned {len(items)} outputs; its structure declares {model.outputs}",
            "report this model to onnxgate",
        )
    return dict(zip(model.outputs, items))


# -- the float64 reference ----------------------------------------------------------------

_FLOAT64_SKELETONS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _float64_model(model: KerasModel) -> KerasModel | None:
    """``model`` rebuilt under a float64 dtype policy, carrying its weights as they are now, cast.

    Only the rebuilt architecture is cached per model (rebuilding is the slow part); the weights
    are copied on every call, so a model whose weights were changed in place since the last run
    is never compared with a float64 copy of its old weights."""
    if model.legacy:
        return None
    rebuilt = _float64_skeleton(model.model)
    if rebuilt is None:
        return None
    try:
        rebuilt.set_weights([w.astype(np.float64) if w.dtype.kind == "f" else w for w in model.model.get_weights()])
    except Exception:  # noqa: BLE001 - weights that do not fit the rebuilt model: no float64 reference
        return None
    return KerasModel(rebuilt, model.label + " (float64)", model.inputs, model.input_kind, model.outputs,
                      model.output_kind, model.output_layers, model.token_high, model.legacy)


def _float64_skeleton(keras_model: Any) -> Any:
    """``keras_model``'s architecture rebuilt from its config under a float64 policy (cached); None if it cannot be."""
    try:
        return _FLOAT64_SKELETONS[keras_model]
    except (KeyError, TypeError):
        pass
    try:
        rebuilt = type(keras_model).from_config(_float64_config(keras_model.get_config()))
    except Exception:  # noqa: BLE001 - custom or subclassed layers: no float64 reference
        rebuilt = None
    try:
        _FLOAT64_SKELETONS[keras_model] = rebuilt
    except TypeError:
        pass
    return rebuilt


def _float64_config(config: Any) -> Any:
    """A Keras config with every float32 dtype and dtype policy made float64."""
    if isinstance(config, list):
        return [_float64_config(v) for v in config]
    if not isinstance(config, dict):
        return config
    if str(config.get("class_name", "")).endswith("DTypePolicy") and config.get("config", {}).get("name") == "float32":
        return dict(config, config=dict(config["config"], name="float64"))
    return {k: "float64" if k == "dtype" and v == "float32" else _float64_config(v) for k, v in config.items()}


# -- the two conversion paths -------------------------------------------------------------


def _tensor_specs(model: KerasModel) -> list[Any]:
    tf = _tf.import_tf()
    return [tf.TensorSpec(list(s.shape), tf.as_dtype(s.dtype), name=s.name) for s in model.inputs]


def _from_keras(model: KerasModel, opset: int) -> Any:
    """tf2onnx from_keras with an explicit signature; then outputs renamed to our names by layer."""
    import tf2onnx

    if model.input_kind == "dict":
        raise ValueError("tf2onnx.from_keras takes positional inputs; this model takes a dict")
    with _tf.quiet_stderr():
        proto, _ = tf2onnx.convert.from_keras(model.model, input_signature=_tensor_specs(model), opset=opset)
    _check_inputs(model, proto)
    got = [o.name for o in proto.graph.output]
    if sorted(got) != sorted(model.outputs):
        by_layer = {layer: name for name, layer in model.output_layers.items()}
        if sorted(got) != sorted(by_layer):
            raise ValueError(f"tf2onnx named the outputs {got}; the model's outputs are {model.outputs}")
        _tf.rename_outputs(proto, by_layer)
    return proto


def _grouped_convolution(model: KerasModel) -> str | None:
    """The name of the first convolution with ``groups > 1`` (ConvNeXt's depthwise blocks), for a model whose
    inputs can be traced positionally and that is not tf-keras; None otherwise."""
    if model.legacy or model.input_kind == "dict":
        return None
    layers = getattr(model.model, "_flatten_layers", None)
    for layer in layers(include_self=False, recursive=True) if layers else []:
        if int(getattr(layer, "groups", 1) or 1) > 1:
            return str(layer.name)
    return None


def _inlined_or_none(model: KerasModel, opset: int, applied: Applied) -> Any:
    """:func:`_tf2onnx_inlined` when its graph passes the checker and ORT's loader, else None."""
    attempt = Applied()
    try:
        proto = _tf2onnx_inlined(model, opset, attempt)
    except ConversionError:
        raise
    except Exception:  # noqa: BLE001 - the next exporter is tried; its failure names both
        return None
    if repaired_rejection(proto, attempt) is not None:
        return None
    applied.merge(attempt)
    return proto


def _tf2onnx_inlined(model: KerasModel, opset: int, applied: Applied) -> Any:
    """tf2onnx on the traced ``model(x, training=False)`` with XLA-compiled functions inlined (fix
    tf.xla_function_call); outputs named by position, in tf.nest.flatten order as Keras's export."""
    tf = _tf.import_tf()
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    from onnxgate.converters.fixes.tf import inline_xla_functions

    def call(*xs: Any) -> Any:
        return model.model(list(xs) if model.input_kind == "list" else xs[0], training=False)

    func = tf.function(call).get_concrete_function(*_tensor_specs(model))
    inputs = [t.name for t in func.inputs if t.dtype != tf.dtypes.resource][: len(model.inputs)]
    outputs = [t.name for t in func.outputs]
    with _tf.quiet_stderr(), tf.device("/cpu:0"):
        frozen = inline_xla_functions(tf_loader.from_function(func, inputs, outputs), inputs, outputs, applied)
        proto, _ = _convert_common(frozen, name="keras", opset=opset, input_names=inputs, output_names=outputs,
                                   tensors_to_rename=dict(zip(inputs, [s.name for s in model.inputs])))
    _check_inputs(model, proto)
    _check_output_ranks(model, proto)
    _tf.rename_outputs(proto, dict(zip([o.name for o in proto.graph.output], model.outputs)))
    return proto


def _fallback_export(model: KerasModel, opset: int, first: str, applied: Applied) -> Any:
    """Keras's own export after tf2onnx from_keras failed (``first``: why); refused when its graph is too."""
    hint = "see https://github.com/onnx/tensorflow-onnx/blob/main/support_status.md for supported ops"
    try:
        proto = _keras_export(model, opset)
    except ConversionError:
        raise
    except Exception as exc:
        raise UnsupportedModelError(
            f"cannot convert {model.label}: tf2onnx from_keras failed ({first}) and keras model.export(format='onnx') "
            f"failed ({type(exc).__name__}: {_tf.one_line(exc)})", hint,
        ) from exc
    rejected = repaired_rejection(proto, applied)
    if rejected is not None:
        raise UnsupportedModelError(
            f"cannot convert {model.label}: tf2onnx from_keras failed ({first}) and keras model.export(format='onnx') "
            f"wrote a graph that is refused too: {rejected}", hint,
        )
    if first.startswith("its graph is refused"):
        applied.add(EXPORTER_FALLBACK, first)
    return proto


def _keras_export(model: KerasModel, opset: int) -> Any:
    """Keras's own ONNX export; its outputs (Identity:0, ...) come in tf.nest.flatten order of model()."""
    import onnx

    specs = _tensor_specs(model)
    if model.input_kind == "dict":
        signature: list[Any] = [{s.name: spec for s, spec in zip(model.inputs, specs)}]
    elif model.input_kind == "list":
        signature = [specs]
    else:
        signature = specs
    with tempfile.TemporaryDirectory(prefix="onnxgate-keras-") as tmp:
        target = Path(tmp) / "model.onnx"
        with _tf.quiet_stderr():
            model.model.export(str(target), format="onnx", verbose=False, input_signature=signature, opset_version=opset)
        proto = onnx.load(str(target))
    _check_inputs(model, proto)
    got = [o.name for o in proto.graph.output]
    if len(got) != len(model.outputs):
        raise OutputMismatchError(
            f"keras export produced {len(got)} outputs {got}; the model has {model.outputs}",
            "report this model to onnxgate",
        )
    _check_output_ranks(model, proto)
    _tf.rename_outputs(proto, dict(zip(got, model.outputs)))
    return proto


def _check_inputs(model: KerasModel, proto: Any) -> None:
    got = sorted(i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer})
    want = sorted(s.name for s in model.inputs)
    if got != want:
        raise OutputMismatchError(f"the converted graph's inputs are {got}; the model's are {want}", "report this model to onnxgate")


def _check_output_ranks(model: KerasModel, proto: Any) -> None:
    """Positional naming is safe only if each output's rank matches the model's output in that place."""
    struct = getattr(model.model, "outputs", None) or []
    if model.output_kind == "dict":
        outs = getattr(model.model, "_outputs_struct", None) or model.model.output
        struct = [outs[k] for k in model.outputs]
    if len(struct) != len(proto.graph.output):
        return
    for t, o in zip(struct, proto.graph.output):
        dims = o.type.tensor_type.shape.dim
        if o.type.tensor_type.HasField("shape") and len(dims) != len(t.shape):
            raise OutputMismatchError(
                f"keras export's output {o.name!r} has rank {len(dims)} where the model's output has rank {len(t.shape)}",
                "report this model to onnxgate",
            )
