"""onnxgate: convert models to ONNX, prove parity under ONNX Runtime, publish what passed.

The public API is imported lazily so that ``import onnxgate`` loads no framework
(and not even numpy or onnx) until a function is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_API = {
    "convert": "onnxgate.pipelines.run",
    "validate": "onnxgate.pipelines.run",
    "run": "onnxgate.pipelines.run",
    "inspect": "onnxgate.pipelines.run",
    "publish": "onnxgate.pipelines.publish",
    "gate": "onnxgate.pipelines.gate",
    "load_source": "onnxgate.pipelines.run",
    "Report": "onnxgate.judge.report",
    "compare_outputs": "onnxgate.judge.compare",
    "TolerancePolicy": "onnxgate.judge.tolerances",
    "load_sample": "onnxgate.inputs.samples",
    "list_providers": "onnxgate.runtime.providers",
    "Trust": "onnxgate.trust",
    "registry": "onnxgate.converters.base",
    "OnnxgateError": "onnxgate.errors",
    "best_variant": "onnxgate.pipelines.optimize",
}

__all__ = sorted(_API) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'onnxgate' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
