"""TensorFlow SavedModel directories, through tf2onnx.

One signature is converted: ``serving_default`` unless ``options["signature"]``
(``--signature NAME``) names another. Inputs take the signature's argument names,
dtypes and dynamic dimensions; outputs keep the signature's output keys, so the
reference (the signature function itself) and the ONNX graph name every output
the same way and comparison never guesses by position.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate.converters import _tf
from onnxgate.converters.opsets import check_requested
from onnxgate.converters.base import Conversion, Converter, ConverterSettings
from onnxgate.converters.fixes import Applied
from onnxgate.converters.fixes.onnx_ops import repaired_rejection
from onnxgate.trust import Trust
from onnxgate.errors import OutputMismatchError, SourceError, UnsupportedModelError

DEFAULT_SIGNATURE = "serving_default"
MARKERS = ("saved_model.pb", "saved_model.pbtxt")


@dataclass
class SavedModel:
    """A loaded SavedModel and the one signature being converted."""

    path: Path
    signature: str
    imported: Any  # what tf.saved_model.load returned (keeps the variables alive)
    function: Any  # the signature's ConcreteFunction
    inputs: list[_tf.InputSpec]  # in tf2onnx's order (the flattened structured signature)
    arg_keys: dict[str, str]  # ONNX input name -> keyword the signature function takes
    outputs: list[str]  # the signature's output keys, sorted as tf2onnx emits them


def is_saved_model_dir(path: Path) -> bool:
    return path.is_dir() and any((path / m).is_file() for m in MARKERS)


@dataclass(frozen=True)
class TensorflowSettings(ConverterSettings):
    """``--signature NAME``: the SavedModel signature to convert."""

    signature: str = DEFAULT_SIGNATURE


class TensorflowConverter(Converter):
    name = "tensorflow"
    reference_call = "serving signature (a concrete tf.function)"
    install_hint = _tf.INSTALL_HINT
    settings_class = TensorflowSettings

    # -- recognise and load ---------------------------------------------------------------
    def accepts(self, source: Any) -> bool:
        return isinstance(source, (str, Path)) and is_saved_model_dir(Path(source))

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> SavedModel:
        path = Path(source)
        if not is_saved_model_dir(path):
            what = "a directory" if path.is_dir() else "not a directory"
            raise SourceError(
                f"{str(path)!r} is not a TensorFlow SavedModel ({what} without saved_model.pb)",
                "pass the directory written by tf.saved_model.save or model.export()",
            )
        _refuse_code_ops(path, trust)
        tf = _tf.import_tf()
        try:
            with _tf.quiet_stderr():
                imported = tf.saved_model.load(str(path))
        except Exception as exc:
            raise SourceError(
                f"cannot load SavedModel {str(path)!r}: {type(exc).__name__}: {_tf.one_line(exc)}",
                "check that the directory is complete (saved_model.pb and variables/) and written by TensorFlow 2",
            ) from None
        signature = self.settings(options).signature or DEFAULT_SIGNATURE
        available = sorted(k for k in getattr(imported, "signatures", {}).keys() if not k.startswith("_"))
        if signature not in available:
            if not available:
                raise SourceError(
                    f"SavedModel {str(path)!r} has no signatures",
                    "save it with tf.saved_model.save(obj, dir, signatures=obj.__call__.get_concrete_function(...))",
                )
            raise SourceError(
                f"SavedModel {str(path)!r} has no signature {signature!r}; available signatures: {available}",
                "pass --signature NAME with one of them",
            )
        return _describe(path, signature, imported, imported.signatures[signature])

    # -- inputs ---------------------------------------------------------------------------
    def feeds(self, model: SavedModel, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return _tf.feeds_from_sample(model.inputs, sample)

    def synthesize(self, model: SavedModel, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return _tf.synthesize(model.inputs, options)

    # -- conversion -----------------------------------------------------------------------
    def convert(self, model: SavedModel, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        tf = _tf.import_tf()
        tf2onnx = _tf.import_tf2onnx()
        from tf2onnx import tf_loader
        from tf2onnx.convert import _convert_common

        check_requested(opset, _tf.default_opset(), "tf2onnx")
        opset = opset or _tf.default_opset()
        func = model.function
        graph_inputs = [t.name for t in func.inputs if t.dtype != tf.dtypes.resource]
        captured = _captured_names(func)
        graph_inputs = [n for n in graph_inputs if n not in captured]
        graph_outputs = [t.name for t in func.outputs if t.dtype != tf.dtypes.resource]
        if len(graph_inputs) != len(model.inputs) or len(graph_outputs) != len(model.outputs):
            raise UnsupportedModelError(
                f"signature {model.signature!r} has {len(model.inputs)} inputs and {len(model.outputs)} outputs "
                f"but its graph has {len(graph_inputs)} and {len(graph_outputs)}",
                "re-export the SavedModel with a plain tf.function signature",
            )
        # The same naming tf2onnx's own SavedModel loader applies: graph placeholders and the
        # (sorted) signature outputs take the signature's names.
        rename = dict(zip(graph_inputs, [s.name for s in model.inputs]))
        rename.update(zip(graph_outputs, model.outputs))
        try:
            with _tf.quiet_stderr(), tf.device("/cpu:0"):
                frozen, tables = tf_loader.from_trackable(model.imported, func, graph_inputs, graph_outputs, False)
                proto, _ = _convert_common(
                    frozen,
                    name=model.path.name,
                    continue_on_error=False,
                    opset=opset,
                    input_names=graph_inputs,
                    output_names=graph_outputs,
                    tensors_to_rename=rename,
                    initialized_tables=tables,
                )
        except Exception as exc:
            raise UnsupportedModelError(
                f"tf2onnx cannot convert signature {model.signature!r}: {type(exc).__name__}: {_tf.one_line(exc)}",
                "see https://github.com/onnx/tensorflow-onnx/blob/main/support_status.md for supported ops",
            ) from exc
        got = [o.name for o in proto.graph.output]
        if sorted(got) != sorted(model.outputs):
            raise OutputMismatchError(
                f"tf2onnx named the outputs {got}; signature {model.signature!r} has {model.outputs}",
                "report this model to onnxgate",
            )
        applied = Applied()
        rejected = repaired_rejection(proto, applied)
        if rejected is not None:
            raise UnsupportedModelError(
                f"tf2onnx returned a graph for signature {model.signature!r} that is refused: {rejected}",
                "see https://github.com/onnx/tensorflow-onnx/blob/main/support_status.md for supported ops, or try another --opset",
            )
        notes = [f"signature: {model.signature}", "inputs: " + ", ".join(s.describe() for s in model.inputs), *applied.notes]
        return Conversion(proto, f"tf2onnx {tf2onnx.__version__} (SavedModel)", notes=notes)

    # -- reference ------------------------------------------------------------------------
    def reference(self, model: SavedModel, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        tf = _tf.import_tf()
        kwargs = {model.arg_keys[name]: tf.constant(value) for name, value in feeds.items()}
        result = model.function(**kwargs)
        unknown = [n for n in output_names if n not in result]
        if unknown:
            raise OutputMismatchError(
                f"the ONNX outputs {unknown} are not outputs of signature {model.signature!r} ({sorted(result)})",
                "validate against the ONNX file converted from this signature (or pass --signature NAME)",
            )
        return {n: np.asarray(result[n]) for n in output_names}

    def versions(self) -> dict[str, str]:
        return {k: v for k, v in _tf.versions().items() if k != "keras"}  # a SavedModel loads without Keras


# Ops that reach the file system or run Python: refused unless --trust-code. (SaveV2/RestoreV2
# are not here: every SavedModel's own checkpoint functions hold them.)
CODE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "MatchingFilesDataset", "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "ImmutableConst", "WholeFileReader", "WholeFileReaderV2", "TFRecordReader", "TFRecordReaderV2",
    "TextLineReader", "TextLineReaderV2", "FixedLengthRecordReader", "FixedLengthRecordReaderV2",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset", "FixedLengthRecordDatasetV2",
    "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "SqlDataset", "ExperimentalSqlDataset",
    "LoadDataset", "SaveDataset", "SaveDatasetV2", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "DebugIdentityV2", "DebugIdentityV3",
})


def code_ops(path: Path) -> list[tuple[str, str]]:
    """(op, where) for every file-system or Python op in a SavedModel's graphs and function
    library, read from ``saved_model.pb`` without loading it (nothing runs)."""
    from onnxgate.checks.limits import check_model_size

    pb = path / "saved_model.pb"
    if not pb.is_file():
        return []  # a text-format SavedModel: TensorFlow's loader decides (rare; not scanned)
    check_model_size(pb.stat().st_size, repr(str(pb)))
    _tf.import_tf()
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString(pb.read_bytes())
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise SourceError(f"{str(pb)!r} is not a SavedModel protobuf: {_tf.one_line(exc)}", "re-save the model") from None
    found = []
    for meta in saved.meta_graphs:
        for node in meta.graph_def.node:
            found += _flagged(node, "the graph")
        for fn in meta.graph_def.library.function:
            for node in fn.node_def:
                found += _flagged(node, f"function {fn.signature.name}")
    return found


def _flagged(node: Any, where: str) -> list[tuple[str, str]]:
    if node.op in CODE_OPS:
        return [(node.op, f"{where} ({node.name})")]
    if node.op == "PrintV2" and node.attr["output_stream"].s.startswith(b"file://"):
        return [("PrintV2 to a file", f"{where} ({node.name})")]
    return []


def _refuse_code_ops(path: Path, trust: Trust) -> None:
    if trust.code:
        return
    found = code_ops(path)
    if found:
        from onnxgate.trust import require_code

        ops = sorted({op for op, _ in found})
        require_code(trust, f"SavedModel {str(path)!r}",
                     why=f"its graph reads or writes files or runs Python: {ops} in {found[0][1]}")


def _describe(path: Path, signature: str, imported: Any, func: Any) -> SavedModel:
    args, kwargs = func.structured_input_signature
    if args:
        raise SourceError(
            f"signature {signature!r} of {str(path)!r} takes positional arguments",
            "save the SavedModel with keyword (named) signature inputs",
        )
    specs, keys = [], {}
    for key in sorted(kwargs):  # tf.nest flattens dicts by sorted key: the graph's placeholder order
        spec = kwargs[key]
        name = spec.name or key
        shape = tuple(None if d is None else int(d) for d in spec.shape.as_list()) if spec.shape.rank is not None else ()
        specs.append(_tf.InputSpec(name, np.dtype(spec.dtype.as_numpy_dtype), shape))
        keys[name] = key
    outputs = func.structured_outputs
    if not isinstance(outputs, dict):
        raise SourceError(
            f"signature {signature!r} of {str(path)!r} does not return a dict of named outputs",
            "re-save it so that the signature returns {'name': tensor, ...}",
        )
    return SavedModel(path, signature, imported, func, specs, keys, sorted(outputs))


def _captured_names(func: Any) -> set[str]:
    graph = func.graph
    if hasattr(graph, "_captures"):
        return {t.name for _, t in graph._captures.values()}
    return {t.name for t in graph.function_captures.by_val_internal.values()}
