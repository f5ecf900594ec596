"""Error types: user errors (exit 2) and failed checks (exit 1) are distinct from bugs.

Anything that is not an :class:`OnnxgateError` is a bug in onnxgate or in a library
it calls, and keeps its traceback.
"""

from __future__ import annotations


class OnnxgateError(Exception):
    """A problem with the user's input: a missing file, a refused pickle, a bad flag.

    The message is one line saying what is wrong; ``hint`` says how to fix it.
    The CLI prints both on one line and exits with status 2.
    """

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class SourceError(OnnxgateError):
    """The source model cannot be found, recognised or loaded."""


class UntrustedSourceError(SourceError):
    """Loading the source would run code the user has not trusted."""


class SampleError(OnnxgateError):
    """The sample inputs cannot be read or do not fit the model."""


class ModelFileError(OnnxgateError):
    """An ONNX file cannot be read, parsed or run."""


class ConversionError(OnnxgateError):
    """The converter could not export the model."""


class PluginError(OnnxgateError):
    """A converter plugin is missing, broken or registered twice."""


class DuplicateConverterError(PluginError):
    """Two plugins registered the same converter name."""


class OutputPathError(OnnxgateError):
    """An output path cannot be written."""


class NeedsSampleError(SampleError):
    """The converter cannot synthesise inputs for this model: a sample (or another signature) is needed."""


class UnsupportedModelError(ConversionError):
    """The converter does not support this model, layer or operator."""


class OpsetError(ConversionError):
    """The requested opset is outside what the converter can export to."""


class OutputMismatchError(ConversionError):
    """The ONNX graph's inputs or outputs do not correspond to the original model's."""


class FrameworkMissingError(PluginError):
    """The converter's framework or exporter package cannot be imported."""


class ContractError(PluginError):
    """A converter plugin's class does not follow the ``Converter`` contract."""


class InvalidModelError(ConversionError):
    """The converted model fails ``onnx.checker`` or ONNX Runtime's loader, so it is not written.

    Exit 1, like any failed check: the input was acceptable, the result is not.
    """

    exit_code = 1


# The pip extra (pyproject.toml) that installs each optional top-level package.
EXTRA_FOR_MODULE = {
    "sklearn": "sklearn", "skl2onnx": "sklearn", "skops": "sklearn", "pandas": "sklearn", "onnxmltools": "sklearn",
    "joblib": "sklearn", "xgboost": "boosting", "lightgbm": "boosting", "catboost": "catboost", "torch": "torch",
    "onnxscript": "torch", "tensorflow": "tensorflow", "keras": "tensorflow", "tf2onnx": "tensorflow",
    "tf_keras": "keras2",
}


def missing_package(exc: ModuleNotFoundError) -> OnnxgateError | None:
    """The user error for an optional framework that is not installed (None: not one of those, a bug)."""
    top = (exc.name or "").split(".")[0]
    if not top or top == "onnxgate":
        return None
    extra = EXTRA_FOR_MODULE.get(top, "all")
    return OnnxgateError(
        f"this model needs the Python package {exc.name!r}, which is not installed",
        f"pip install 'onnxgate[{extra}]'",
    )
