"""CatBoost: ``.cbm`` files and estimator objects, exported by CatBoost's own ONNX writer.

``.cbm`` is CatBoost's binary model format: loading it runs no pickle. The export is
``model.save_model(path, format="onnx")``; its graph takes one float32 matrix named
``features``. Two repairs make the graph say what it computes (each listed in the notes):
the classifier's ``probabilities`` come out of a ZipMap (a sequence of maps, which no
tensor consumer reads and parity cannot compare) and are published as the
``[N, classes]`` tensor the tree ensemble computes; the regressor declares
``predictions`` as ``[N]`` while ONNX Runtime returns ``[N, 1]``.

The reference uses the prediction type the graph computes: class labels and
probabilities for a classifier, raw values for a regressor.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import installed_versions, one_line
from onnxgate.converters.base import Conversion, Converter, ConverterSettings
from onnxgate.converters.fixes import Applied, sort_metadata
from onnxgate.errors import OutputMismatchError, SampleError, SourceError, UnsupportedModelError
from onnxgate.trust import Trust

SUFFIXES = (".cbm",)
PICKLE_SUFFIXES = (".joblib", ".pkl", ".pickle")
SKOPS_SUFFIX = ".skops"
INPUT = "features"
INSTALL_HINT = "pip install 'onnxgate[catboost]'"


@dataclass(frozen=True)
class CatBoostSettings(ConverterSettings):
    """``--double`` is refused: CatBoost's ONNX writer takes float32 features only."""

    double: bool = False


class CatBoostConverter(Converter):
    name = "catboost"
    reference_call = "predict, one call per ONNX output"
    independent_rows = True
    install_hint = INSTALL_HINT
    settings_class = CatBoostSettings

    def accepts(self, source: Any) -> bool:
        if isinstance(source, (str, Path)):
            return Path(source).suffix.lower() in SUFFIXES
        return (type(source).__module__ or "").split(".")[0] == "catboost" and hasattr(source, "save_model")

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        if not isinstance(source, (str, Path)):
            return _check_fitted(_check_catboost(source, "the object"))
        path = Path(source)
        if path.suffix.lower() in PICKLE_SUFFIXES:  # only with --framework catboost (the sklearn converter claims these)
            return _check_fitted(_load_pickle(path, trust))
        if path.suffix.lower() == SKOPS_SUFFIX:  # likewise; the booster's CBM payload is checked before it loads
            from onnxgate.converters.sklearn import load_skops

            return _check_fitted(_check_catboost(load_skops(path, trust), repr(str(path))))
        return _load_cbm(path)

    def feeds(self, model: Any, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        if len(sample.arrays) != 1:
            raise SampleError(f"a catboost model takes one feature matrix; the sample has {list(sample.arrays)}",
                              "pass the features as one 2-D .npy array")
        (x,) = sample.arrays.values()
        expected = _num_features(model)
        if x.ndim != 2 or x.dtype.kind not in "fiub" or x.shape[1] != expected:
            raise SampleError(
                f"{sample.path or 'the sample'} is {x.dtype}{list(x.shape)}; the model expects (rows, {expected}) numbers",
                "pass a 2-D numeric array with the model's feature columns",
            )
        return {INPUT: np.ascontiguousarray(x.astype(np.float32))}

    def synthesize(self, model: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        from onnxgate.inputs.synthesize import InputSpec, synthesize_from_options

        return synthesize_from_options([InputSpec(INPUT, np.dtype(np.float32), (None, _num_features(model)))], options)

    def convert(self, model: Any, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        import catboost

        if self.settings(options).double:
            raise UnsupportedModelError("--double: CatBoost's ONNX export takes float32 features only", "drop --double")
        proto = _export(model)
        notes = [f"inputs: [('{INPUT}', 'float32', [N, {_num_features(model)}])]"]
        notes += _publish_probability_tensor(proto) + _declare_prediction_matrix(proto)
        applied = Applied()
        sort_metadata(proto, applied)
        notes += applied.notes
        if opset is not None:
            notes.append(f"opset: CatBoost's ONNX writer has no opset option; it writes ai.onnx.ml opset {_ml_opset(proto)} only")
        return Conversion(proto, f"catboost {catboost.__version__} save_model(format='onnx')", notes)

    def reference(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        x = feeds[INPUT]
        out: dict[str, np.ndarray] = {}
        for name in output_names:
            if name == "probabilities":
                out[name] = np.asarray(model.predict(x, prediction_type="Probability"), dtype=np.float64)
            elif name == "label":
                out[name] = _labels(model.predict(x, prediction_type="Class"))
            elif name == "predictions":
                out[name] = np.asarray(model.predict(x, prediction_type="RawFormulaVal"), dtype=np.float64).reshape(len(x), -1)
            else:
                raise OutputMismatchError(f"unexpected ONNX output {name!r} for a catboost model", "report this to onnxgate")
        return out

    def versions(self) -> dict[str, str]:
        return installed_versions("catboost")


# -- helpers ------------------------------------------------------------------------------


def _check_fitted(model: Any) -> Any:
    if not model.is_fitted():
        raise SourceError(f"the {type(model).__name__} is not fitted", "call fit() before converting")
    return model


def _check_catboost(model: Any, what: str) -> Any:
    if (type(model).__module__ or "").split(".")[0] != "catboost" or not hasattr(model, "save_model"):
        raise SourceError(f"{what} holds a {type(model).__name__}, not a CatBoost model", "pass a CatBoost model or its .cbm file")
    return model


def _load_pickle(path: Path, trust: Trust) -> Any:
    """A joblib/pickle file, only with --trust-pickle; .cbm needs no trust."""
    import joblib

    from onnxgate.trust import require_pickle

    require_pickle(trust, repr(str(path)), alternative="save the model with model.save_model('model.cbm') instead")
    if not path.is_file():
        raise SourceError(f"source {str(path)!r} does not exist", "check the path")
    return _check_catboost(joblib.load(path), repr(str(path)))


def _load_cbm(path: Path) -> Any:
    """CatBoost's own binary format (no pickle), size-bounded before parsing."""
    import catboost

    from onnxgate.checks.limits import check_model_size

    if not path.is_file():
        raise SourceError(f"source {str(path)!r} does not exist", "check the path")
    check_model_size(path.stat().st_size * 4, repr(str(path)))
    model = catboost.CatBoost()
    try:
        model.load_model(str(path), format="cbm")
    except catboost.CatBoostError as exc:
        raise SourceError(f"cannot load {str(path)!r} as a CatBoost model: {one_line(exc, 200)}",
                          "save it with model.save_model(path) (format 'cbm')") from None
    return model


def _num_features(model: Any) -> int:
    return len(model.feature_names_)


def _export(model: Any) -> Any:
    import catboost
    import onnx

    if model.get_cat_feature_indices():
        raise UnsupportedModelError("CatBoost's ONNX export does not support categorical features",
                                    "train without cat_features, or encode them before CatBoost")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            model.save_model(str(path), format="onnx")
        except catboost.CatBoostError as exc:
            raise UnsupportedModelError(f"CatBoost cannot export this model to ONNX: {one_line(exc, 300)}",
                                        "see https://catboost.ai/docs/en/concepts/apply-onnx-ml") from None
        return onnx.load(str(path))


def _ml_opset(proto: Any) -> int:
    return next((int(i.version) for i in proto.opset_import if i.domain == "ai.onnx.ml"), 0)


def _publish_probability_tensor(proto: Any) -> list[str]:
    """Symptom: ``probabilities`` is ZipMap's sequence of maps. Fix: publish ZipMap's input tensor under that name."""
    from onnx import TensorProto, helper

    zipmaps = [n for n in proto.graph.node if n.op_type == "ZipMap" and n.output[0] in {o.name for o in proto.graph.output}]
    if not zipmaps:
        return []
    zipmap = zipmaps[0]
    name, tensor = zipmap.output[0], zipmap.input[0]
    producer = next(n for n in proto.graph.node if tensor in n.output)
    producer.output[list(producer.output).index(tensor)] = name
    proto.graph.node.remove(zipmap)
    classes = _class_count(producer)
    out = next(o for o in proto.graph.output if o.name == name)
    out.type.CopyFrom(helper.make_tensor_type_proto(TensorProto.FLOAT, ["N", classes]))
    return [f"fix catboost.zipmap_probabilities: output {name!r} was a ZipMap sequence of maps; published as the float tensor [N, {classes}]"]


def _class_count(node: Any) -> int:
    for attr in node.attribute:
        if attr.name == "classlabels_int64s":
            return len(attr.ints)
        if attr.name == "classlabels_strings":
            return len(attr.strings)
    raise OutputMismatchError("CatBoost's TreeEnsembleClassifier has no class labels", "report this to onnxgate")


def _declare_prediction_matrix(proto: Any) -> list[str]:
    """Symptom: ``predictions`` declared ``[N]``; ONNX Runtime returns ``[N, 1]``. Fix: declare ``[N, targets]``."""
    out = next((o for o in proto.graph.output if o.name == "predictions"), None)
    if out is None or len(out.type.tensor_type.shape.dim) != 1:
        return []
    node = next(n for n in proto.graph.node if "predictions" in n.output)
    targets = next((a.i for a in node.attribute if a.name == "n_targets"), 1)
    out.type.tensor_type.shape.dim.add().dim_value = targets
    return [f"fix catboost.prediction_shape: output 'predictions' declared [N]; ONNX Runtime returns [N, {targets}]: declared so"]


def _labels(predicted: Any) -> np.ndarray:
    labels = np.asarray(predicted).reshape(-1)
    if labels.dtype.kind in "iub":
        return labels.astype(np.int64)
    try:
        return labels.astype(np.int64)
    except ValueError:
        return labels.astype(object)
