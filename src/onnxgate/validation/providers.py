"""Execution providers: what ONNX Runtime has here, plugin EPs included.

ONNX Runtime 1.22+ loads execution providers from separate packages as plugin
libraries (``onnxruntime.register_execution_provider_library``). onnxgate registers
the plugins it knows (OpenVINO) when their package is installed, and any other the
user names with ``NAME=LIBRARY_PATH``.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any

# Python packages that ship an ORT plugin EP: module name -> how to get (ep name, library path).
KNOWN_PLUGIN_PACKAGES = {
    "onnxruntime_ep_openvino": "OpenVINOExecutionProvider",
}

SHORT_NAMES = {
    "CPU": "CPUExecutionProvider",
    "CUDA": "CUDAExecutionProvider",
    "TensorRT": "TensorrtExecutionProvider",
    "OpenVINO": "OpenVINOExecutionProvider",
    "DirectML": "DmlExecutionProvider",
    "CoreML": "CoreMLExecutionProvider",
    "ROCm": "ROCMExecutionProvider",
    "MIGraphX": "MIGraphXExecutionProvider",
    "QNN": "QNNExecutionProvider",
    "XNNPACK": "XnnpackExecutionProvider",
}


@dataclass
class ProviderInfo:
    name: str
    available: bool
    source: str  # "built-in" | "plugin: <package or path>"
    devices: list[str] = field(default_factory=list)
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "available": self.available,
            "source": self.source,
            "devices": self.devices,
            "reason": self.reason,
        }


_registered: dict[str, str] = {}  # ep name -> source
_plugin_errors: dict[str, str] = {}


def register_plugins(extra: dict[str, str] | None = None) -> None:
    """Register known plugin EP packages once per process, plus ``extra`` {name: library path}."""
    import onnxruntime as ort

    todo: dict[str, tuple[str, str]] = {}
    for module, ep_name in KNOWN_PLUGIN_PACKAGES.items():
        if ep_name in _registered or ep_name in _plugin_errors:
            continue
        if importlib.util.find_spec(module) is None:
            continue
        try:
            mod = importlib.import_module(module)
            todo[ep_name] = (mod.get_library_path(), f"plugin: {module}")
        except Exception as exc:  # a broken plugin package fails alone
            _plugin_errors[ep_name] = f"{type(exc).__name__}: {exc}"
    for name, path in (extra or {}).items():
        full = canonical_provider(name)
        if full not in _registered:
            todo[full] = (path, f"plugin: {path}")
    for ep_name, (path, source) in todo.items():
        try:
            ort.register_execution_provider_library(ep_name, path)
            _registered[ep_name] = source
        except Exception as exc:
            _plugin_errors[ep_name] = f"{type(exc).__name__}: {str(exc).strip()}"


def canonical_provider(name: str) -> str:
    """``CPU`` -> ``CPUExecutionProvider``; full names pass through; case-insensitive."""
    lowered = {k.lower(): v for k, v in SHORT_NAMES.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    if not name.endswith("ExecutionProvider"):
        return name + "ExecutionProvider"
    return name


def plugin_devices(ep_name: str) -> list[Any]:
    import onnxruntime as ort

    return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]


def list_providers(extra_plugins: dict[str, str] | None = None) -> list[ProviderInfo]:
    """Every provider ONNX Runtime reports or a plugin registered, with why it cannot run."""
    import onnxruntime as ort

    register_plugins(extra_plugins)
    available = ort.get_available_providers()
    infos = []
    for name in available:
        if name in _registered:
            continue
        infos.append(ProviderInfo(name, True, "built-in"))
    for name, source in _registered.items():
        devices = plugin_devices(name)
        infos.append(
            ProviderInfo(
                name,
                bool(devices),
                source,
                devices=[f"{d.device.type.name}:{d.device.vendor}" for d in devices],
                reason=None if devices else "plugin registered but it reports no supported device on this machine",
            )
        )
    for name, err in _plugin_errors.items():
        infos.append(ProviderInfo(name, False, "plugin", reason=f"registration failed: {err}"))
    return infos
