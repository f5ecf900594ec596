"""Native xgboost and lightgbm model files (not pickles), converted with onnxmltools.

xgboost: ``*.ubj`` or ``*.json`` saved by ``Booster.save_model``; lightgbm: the text
format of ``Booster.save_model`` (``*.txt``). Both formats are plain data, so loading
them runs no code. Estimators in the scikit-learn API inside pipelines go through the
sklearn converter instead.

onnxmltools' conventions relied on: classifiers emit ``label`` and ``probabilities``
((N, 2) for binary objectives), regressors emit ``variable`` of shape (N, 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from onnxgate._util import installed_versions
from onnxgate.converters.opsets import check_requested, skl2onnx_max_opset
from onnxgate.converters.base import Conversion, Converter, ConverterSettings
from onnxgate.trust import Trust
from onnxgate.errors import OutputMismatchError, SampleError, SourceError, UnsupportedModelError

# onnxmltools' tree-ensemble converters are tested up to this opset.
DEFAULT_OPSET = 15


def _peek(path: Path, n: int = 64) -> bytes:
    try:
        with path.open("rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _read_bounded(path: Path, overhead: int) -> bytes:
    from onnxgate.checks.limits import check_model_size

    check_model_size(path.stat().st_size * max(overhead // 3, 1), repr(str(path)))
    return path.read_bytes()


def _audited_xgboost(path: Path) -> bytearray | None:
    """A JSON model's trees audited (checks/audits.py) before xgboost parses it; returns the
    bytes that were audited, which xgboost then loads. UBJSON is not audited (None)."""
    from onnxgate.checks import audits

    if path.suffix.lower() != ".json":
        return None
    data = _read_bounded(path, 30)
    try:
        model = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise SourceError(f"cannot load {str(path)!r} as an xgboost model: {exc}", "save it with Booster.save_model") from None
    audits.audit_xgboost_json(model, repr(str(path)))
    audits.record("xgboost JSON trees", len(model.get("learner", {}).get("gradient_booster", {}).get("model", {}).get("trees", [])),
                  "audited: children in range and after their parent (no cycles), split indices < num_feature, node arrays of one length")
    return bytearray(data)


def _audited_lightgbm(path: Path) -> str:
    """A text model's trees audited before lightgbm parses it; returns the audited text."""
    from onnxgate.checks import audits

    try:
        text = _read_bounded(path, 10).decode()
    except UnicodeDecodeError as exc:
        raise SourceError(f"cannot load {str(path)!r} as a lightgbm model: {exc}", "save it with Booster.save_model") from None
    audits.audit_lightgbm_text(text, repr(str(path)))
    audits.record("lightgbm text trees", text.count("\nTree="),
                  "audited: child indices in range and after their parent (no cycles), split features <= max_feature_idx")
    return text


@dataclass(frozen=True)
class BoosterSettings(ConverterSettings):
    """``--double``: float64 inputs (and a double-precision tree ensemble) instead of float32."""

    double: bool = False


class _BoosterConverter(Converter):
    name = ""
    reference_call = "predict on float64 input"
    independent_rows = True
    install_hint = ""
    package = ""
    settings_class = BoosterSettings

    def feeds(self, model: Any, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        if len(sample.arrays) != 1:
            raise SampleError(
                f"a {self.name} model takes one feature matrix; the sample has {list(sample.arrays)}",
                "pass the features as one 2-D .npy array",
            )
        (x,) = sample.arrays.values()
        expected = self._num_features(model)
        if x.ndim != 2 or x.dtype.kind not in "fiub" or x.shape[1] != expected:
            raise SampleError(
                f"{sample.path or 'the sample'} is {x.dtype}{list(x.shape)}; the model expects (rows, {expected}) numbers",
                "pass a 2-D numeric array with the model's feature columns",
            )
        dtype = np.float64 if self.settings(options).double else np.float32
        return {"X": np.ascontiguousarray(x.astype(dtype))}

    def convert(self, model: Any, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        import onnxmltools
        from onnxmltools.convert.common.data_types import DoubleTensorType, FloatTensorType

        check_requested(opset, skl2onnx_max_opset(), f"onnxmltools {onnxmltools.__version__}")
        x = feeds["X"]
        tensor = DoubleTensorType if x.dtype == np.float64 else FloatTensorType
        try:
            onx = self._convert(model, [("X", tensor([None, x.shape[1]]))], opset or DEFAULT_OPSET)
        except Exception as exc:
            raise UnsupportedModelError(
                f"onnxmltools cannot convert this {self.name} model: {' '.join(str(exc).split())[:300]}",
                f"try --opset {DEFAULT_OPSET} or lower",
            ) from exc
        from onnxgate.converters.fixes import Applied, free_declared_batch

        applied = Applied()
        free_declared_batch(onx, applied)
        return Conversion(onx, f"onnxmltools {onnxmltools.__version__}", applied.notes)

    def reference(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        pred = np.asarray(self._predict(model, feeds["X"].astype(np.float64)))
        out: dict[str, np.ndarray] = {}
        probs = np.stack([1 - pred, pred], axis=1) if pred.ndim == 1 else pred
        for name in output_names:
            if name == "probabilities":
                out[name] = probs
            elif name == "label":
                out[name] = np.argmax(probs, axis=1).astype(np.int64)
            elif name == "variable":
                out[name] = pred.reshape(-1, 1) if pred.ndim == 1 else pred
            else:
                raise OutputMismatchError(f"unexpected ONNX output {name!r} for a {self.name} model", "report this to onnxgate")
        return out

    def versions(self) -> dict[str, str]:
        return installed_versions(self.package, "onnxmltools")


class XGBoostConverter(_BoosterConverter):
    name = "xgboost"
    install_hint = "pip install 'onnxgate[boosting]'"
    package = "xgboost"

    def accepts(self, source: Any) -> bool:
        if not isinstance(source, (str, Path)):
            return type(source).__module__.startswith("xgboost") and type(source).__name__ == "Booster"
        p = Path(source)
        suffix = p.suffix.lower()
        return suffix == ".ubj" or (suffix == ".json" and _peek(p).lstrip().startswith(b'{"learner"'))

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        import xgboost

        if isinstance(source, xgboost.Booster):
            return source
        data = _audited_xgboost(Path(source))
        try:
            return xgboost.Booster(model_file=data if data is not None else str(source))
        except xgboost.core.XGBoostError as exc:
            raise SourceError(f"cannot load {str(source)!r} as an xgboost model: {str(exc).splitlines()[0][:200]}", "save it with Booster.save_model") from None

    def _num_features(self, model: Any) -> int:
        return int(model.num_features())

    def _convert(self, model: Any, initial: list[Any], opset: int) -> Any:
        from onnxmltools import convert_xgboost

        return convert_xgboost(model, initial_types=initial, target_opset=opset)

    def _predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        import xgboost

        objective = json.loads(model.save_config())["learner"]["objective"]["name"]
        if objective.startswith("multi:softmax"):
            raise UnsupportedModelError("multi:softmax boosters return labels only", "train with multi:softprob to export probabilities")
        return model.predict(xgboost.DMatrix(X))


class LightGBMConverter(_BoosterConverter):
    name = "lightgbm"
    install_hint = "pip install 'onnxgate[boosting]'"
    package = "lightgbm"

    def accepts(self, source: Any) -> bool:
        if not isinstance(source, (str, Path)):
            return type(source).__module__.startswith("lightgbm") and type(source).__name__ == "Booster"
        p = Path(source)
        return p.suffix.lower() in (".txt", ".lgb") and _peek(p).startswith(b"tree\nversion=")

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        import lightgbm

        if isinstance(source, lightgbm.Booster):
            return source
        text = _audited_lightgbm(Path(source))
        try:
            return lightgbm.Booster(model_str=text)
        except lightgbm.basic.LightGBMError as exc:
            raise SourceError(f"cannot load {str(source)!r} as a lightgbm model: {str(exc).splitlines()[0][:200]}", "save it with Booster.save_model") from None

    def _num_features(self, model: Any) -> int:
        return int(model.num_feature())

    def _convert(self, model: Any, initial: list[Any], opset: int) -> Any:
        from onnxmltools import convert_lightgbm

        return convert_lightgbm(model, initial_types=initial, target_opset=opset, zipmap=False)

    def _predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        return model.predict(X)

    def reference64(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """LightGBM computes in float64 (double thresholds and leaves): its reference is its own
        float64 reference. (XGBoost has none: float32 thresholds and leaves are its definition.)"""
        return self.reference(model, feeds, output_names)
