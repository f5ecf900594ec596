"""Execution providers: what ONNX Runtime has here, plugin EPs included, and why one cannot run.

ONNX Runtime 1.22+ loads execution providers from separate packages as plugin
libraries (``onnxruntime.register_execution_provider_library``). onnxgate registers
the plugins it knows (OpenVINO) when their package is installed, and any other the
user names with ``--ep-plugin NAME=LIBRARY_PATH`` (which replaces a known plugin of
the same name). A plugin EP only runs on the devices its factory claims; when it
claims none, discovery says which devices this machine has and why they were refused.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from onnxgate.errors import OnnxgateError

# Python packages that ship an ORT plugin EP: module name -> EP name.
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
    "NNAPI": "NnapiExecutionProvider",
}

# Providers that need a GPU and a GPU build of ONNX Runtime: listed even when absent, with the reason.
GPU_PROVIDERS = {
    "CUDAExecutionProvider": "onnxruntime-gpu",
    "TensorrtExecutionProvider": "onnxruntime-gpu",
}

PCI_VENDORS = {0x8086: "Intel", 0x1022: "AMD", 0x10DE: "NVIDIA", 0x1002: "AMD (GPU)", 0x106B: "Apple", 0x5143: "Qualcomm"}

# What a plugin's factory is known to require of a device (from its source), to explain a refusal.
PLUGIN_DEVICE_RULES = {
    "OpenVINOExecutionProvider": (0x8086, "the OpenVINO plugin only claims Intel devices (PCI vendor 0x8086)"),
}


# Built-in providers ONNX Runtime reports that cannot run a model's nodes here, and why.
NO_COMPUTE = {
    "AzureExecutionProvider": "it only runs the AzureTritonInvoker operator, which calls a remote endpoint; "
    "it executes no model nodes on this machine",
}


@dataclass
class ProviderInfo:
    name: str
    available: bool
    source: str  # "built-in" | "plugin: <package or path>" | "not installed"
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
_registered_paths: dict[str, str] = {}  # ep name -> library path
_plugin_errors: dict[str, str] = {}
_used: set[str] = set()  # plugin EPs a session was created with: their library must stay registered


def mark_used(ep_name: str) -> None:
    """ORT must not unregister a plugin library while a session made with it is alive."""
    _used.add(ep_name)


def parse_ep_plugins(values: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["OpenVINO=/path/lib.so"]`` -> ``{"OpenVINOExecutionProvider": "/path/lib.so"}``; bad input is a user error."""
    if not values:
        return {}
    if isinstance(values, dict):
        items = list(values.items())
    else:
        items = []
        for v in values:
            name, sep, path = v.partition("=")
            if not sep or not name.strip() or not path.strip():
                raise OnnxgateError(
                    f"--ep-plugin {v!r} is not NAME=LIBRARY_PATH",
                    "e.g. --ep-plugin OpenVINO=/path/to/libonnxruntime_providers_openvino_plugin.so",
                )
            items.append((name.strip(), path.strip()))
    out = {}
    for name, path in items:
        if not Path(path).is_file():
            raise OnnxgateError(f"--ep-plugin library {path!r} for {name} does not exist", "pass the path of the plugin's shared library")
        out[canonical_provider(name)] = str(Path(path).resolve())
    return out


def parse_provider_options(values: list[str] | dict[str, dict[str, str]] | None) -> dict[str, dict[str, str]]:
    """``["OpenVINO:precision=FP32"]`` -> ``{"OpenVINOExecutionProvider": {"precision": "FP32"}}``."""
    if not values:
        return {}
    if isinstance(values, dict):
        return {canonical_provider(k): {str(a): str(b) for a, b in v.items()} for k, v in values.items()}
    out: dict[str, dict[str, str]] = {}
    for v in values:
        provider, sep, rest = v.partition(":")
        key, eq, value = rest.partition("=")
        if not sep or not eq or not provider.strip() or not key.strip():
            raise OnnxgateError(
                f"--provider-option {v!r} is not PROVIDER:KEY=VALUE",
                "e.g. --provider-option OpenVINO:precision=FP32",
            )
        out.setdefault(canonical_provider(provider.strip()), {})[key.strip()] = value
    return out


def register_plugins(extra: dict[str, str] | None = None) -> None:
    """Register known plugin EP packages once per process, plus ``extra`` {ep name: library path}.

    An ``extra`` library for an EP that a known package registered replaces it (the
    user asked for that library); registering the same path twice is a no-op.
    """
    import onnxruntime as ort

    todo: dict[str, tuple[str, str]] = {}
    for module, ep_name in KNOWN_PLUGIN_PACKAGES.items():
        if ep_name in _registered or ep_name in _plugin_errors or ep_name in (extra or {}):
            continue
        if importlib.util.find_spec(module) is None:
            continue
        try:
            mod = importlib.import_module(module)
            todo[ep_name] = (mod.get_library_path(), f"plugin: {_dist_label(module)}")
        except Exception as exc:  # a broken plugin package fails alone
            _plugin_errors[ep_name] = f"{type(exc).__name__}: {exc}"
    for name, path in (extra or {}).items():
        if _registered_paths.get(name) == path:
            continue
        if name in _registered and name in _used:
            raise OnnxgateError(
                f"{short_name(name)} is already registered in this process from {_registered_paths[name]!r} "
                f"and sessions use it; cannot switch to {path!r}",
                "use one plugin library per execution provider per process",
            )
        if name in _registered:
            try:
                ort.unregister_execution_provider_library(name)
            except Exception:
                pass
            _registered.pop(name, None)
            _registered_paths.pop(name, None)
        _plugin_errors.pop(name, None)
        todo[name] = (path, f"plugin: {path}")
    for ep_name, (path, source) in todo.items():
        try:
            ort.register_execution_provider_library(ep_name, path)
            _registered[ep_name] = source
            _registered_paths[ep_name] = path
        except Exception as exc:
            _plugin_errors[ep_name] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:300]}"


def _dist_label(module: str) -> str:
    dist = module.replace("_", "-")
    try:
        return f"{dist} {metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return module


def canonical_provider(name: str) -> str:
    """``CPU`` -> ``CPUExecutionProvider``; full names pass through; case-insensitive."""
    lowered = {k.lower(): v for k, v in SHORT_NAMES.items()}
    if name.lower() in lowered:
        return lowered[name.lower()]
    for full in SHORT_NAMES.values():
        if name.lower() == full.lower():
            return full
    if not name.endswith("ExecutionProvider"):
        return name + "ExecutionProvider"
    return name


def short_name(provider: str) -> str:
    return provider.replace("ExecutionProvider", "")


def is_plugin(ep_name: str) -> bool:
    """A registered plugin EP, or one of its meta-device variants (``OpenVINOExecutionProvider.AUTO``)."""
    return ep_name in _registered or ep_name.split(".")[0] in _registered or ep_name in _plugin_errors


def plugin_devices(ep_name: str) -> list[Any]:
    import onnxruntime as ort

    return [d for d in ort.get_ep_devices() if d.ep_name == ep_name]


def describe_device(hw: Any) -> str:
    vendor = hw.vendor or PCI_VENDORS.get(int(hw.vendor_id), "unknown vendor")
    return f"{hw.type.name} {vendor} (PCI vendor {int(hw.vendor_id):#06x})"


def no_device_reason(ep_name: str) -> str:
    """Why a registered plugin claims no device here: the machine's devices and the plugin's rule."""
    import onnxruntime as ort

    try:
        hardware = ort.capi.onnxruntime_pybind11_state.get_hardware_devices()
    except Exception:
        hardware = [d.device for d in ort.get_ep_devices() if d.ep_name == "CPUExecutionProvider"]
    have = ", ".join(describe_device(h) for h in hardware) or "none found"
    rule = PLUGIN_DEVICE_RULES.get(ep_name)
    if rule is not None:
        vendor, text = rule
        if not any(int(h.vendor_id) == vendor for h in hardware):
            return f"{text}; this machine's devices: {have}"
    return f"the plugin claims none of this machine's devices ({have})"


def gpu_reason(ep_name: str) -> str:
    """Why a GPU provider is unavailable: no GPU build of ONNX Runtime, or no GPU/driver."""
    package = GPU_PROVIDERS.get(ep_name, "a GPU build of onnxruntime")
    try:
        metadata.version(package)
        installed = True
    except metadata.PackageNotFoundError:
        installed = False
    has_gpu = Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/version").exists()
    if not installed:
        tail = "" if has_gpu else " and an NVIDIA GPU with its driver (none found here)"
        return f"needs the {package} package (this environment has the CPU-only onnxruntime){tail}"
    if not has_gpu:
        return "needs an NVIDIA GPU with its driver (none found: no /dev/nvidia0)"
    return "ONNX Runtime does not report it available; check the CUDA/cuDNN/TensorRT libraries it needs (run with --debug)"


def list_providers(extra_plugins: dict[str, str] | None = None) -> list[ProviderInfo]:
    """Every provider ONNX Runtime reports or a plugin registered, with why it cannot run."""
    import onnxruntime as ort

    register_plugins(extra_plugins)
    available = ort.get_available_providers()
    infos = []
    for name in available:
        if is_plugin(name):
            continue
        reason = builtin_reason(name)
        infos.append(ProviderInfo(name, reason is None, "built-in", reason=reason))
    for name, source in _registered.items():
        devices = plugin_devices(name)
        infos.append(
            ProviderInfo(
                name,
                bool(devices),
                source,
                devices=[describe_device(d.device) + f" as {d.ep_metadata.get('ov_device', d.device.type.name)}" for d in devices],
                reason=None if devices else f"plugin registered but it claims no device: {no_device_reason(name)}",
            )
        )
    for name, err in _plugin_errors.items():
        infos.append(ProviderInfo(name, False, "plugin", reason=f"registration failed: {err}"))
    listed = {i.name for i in infos}
    for name in GPU_PROVIDERS:
        if name not in listed:
            infos.append(ProviderInfo(name, False, "not installed", reason=gpu_reason(name)))
    return infos


@functools.lru_cache(maxsize=None)
def builtin_reason(name: str) -> str | None:
    """Why a provider ONNX Runtime lists cannot run a model here (None: a session on it runs an Identity node)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    if name in NO_COMPUTE:
        return NO_COMPUTE[name]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])], [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    try:
        session = ort.InferenceSession(model.SerializeToString(), providers=[name])
    except Exception as exc:  # noqa: BLE001 - any failure to create a session means "not usable here"
        return f"ONNX Runtime lists it but cannot create a session with it: {str(exc).splitlines()[0][:200]}"
    if name not in session.get_providers():
        return "ONNX Runtime lists it but a session falls back to CPU without it"
    return None


def unavailable_error(name: str, infos: list[ProviderInfo]) -> OnnxgateError:
    """The user error for asking to validate on a provider that cannot run here."""
    info = next((i for i in infos if i.name == name), None)
    if info is None:
        return OnnxgateError(
            f"unknown execution provider {name}; this ONNX Runtime has {sorted(i.name for i in infos if i.available)}",
            "run 'onnxgate providers' to see what is available, or register a plugin with --ep-plugin NAME=LIBRARY_PATH",
        )
    return OnnxgateError(f"execution provider {short_name(name)} is not available here: {info.reason}", "run 'onnxgate providers' for details")


def device_capabilities(ep_name: str) -> dict[str, str]:
    """The EP's metadata for its first device (OpenVINO reports OPTIMIZATION_CAPABILITIES, ov_device…)."""
    devices = plugin_devices(ep_name) if ep_name in _registered else []
    return dict(devices[0].ep_metadata) if devices else {}

