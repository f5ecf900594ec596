"""Run an ONNX model under ONNX Runtime on one execution provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxgate._util import one_line
from onnxgate.runtime.placement import RECORD_ASSIGNMENT_KEY, Placement, placement_of
from onnxgate.runtime.providers import canonical_provider, is_plugin, mark_used, plugin_devices, register_plugins

OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


class RunError(Exception):
    """ONNX Runtime could not create a session or run the model (not a user error by itself)."""


@dataclass
class Session:
    """An ORT session plus what was asked of it."""

    session: Any
    provider: str
    optimization: str

    @property
    def providers_used(self) -> list[str]:
        return list(self.session.get_providers())

    def input_types(self) -> dict[str, str]:
        return {i.name: i.type for i in self.session.get_inputs()}

    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def placement(self) -> Placement:
        """Which provider took which node (needs ``record_placement=True`` at creation)."""
        return placement_of(self.session, self.provider, self.optimization)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = _cast_feeds(feeds, self.input_types())
        try:
            values = self.session.run(None, feeds)
        except Exception as exc:
            raise RunError(f"ONNX Runtime failed to run the model: {one_line(exc, 400)}") from exc
        return dict(zip(self.output_names(), (np.asarray(v) for v in values)))


_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
}


def _cast_feeds(feeds: dict[str, np.ndarray], types: dict[str, str]) -> dict[str, np.ndarray]:
    """Cast inputs to the declared dtype where this is lossless in kind (float->float, int->int)."""
    out = {}
    for name, value in feeds.items():
        want = _ORT_TO_NUMPY.get(types.get(name, ""))
        arr = np.asarray(value)
        if want is not None and arr.dtype != want and np.dtype(want).kind == arr.dtype.kind:
            arr = arr.astype(want)
        elif types.get(name) == "tensor(string)" and arr.dtype.kind != "O":
            arr = arr.astype(object)
        out[name] = arr
    return out


def create_session(
    model: bytes | str,
    *,
    provider: str = "CPUExecutionProvider",
    optimization: str = "all",
    provider_options: dict[str, str] | None = None,
    threads: int | None = None,
    record_placement: bool = False,
    ep_plugins: dict[str, str] | None = None,
    config: dict[str, str] | None = None,
) -> Session:
    """An ORT session on ``provider`` (built-in or plugin), falling back to CPU for nodes it does not take.

    ``config`` holds extra session config entries (``SessionOptions.add_session_config_entry``).

    Plugin EPs are selected through their devices (``add_provider_for_devices``); only the
    devices of that exact EP name are used (not its meta-device variants such as ``.AUTO``).
    """
    import onnxruntime as ort

    provider = canonical_provider(provider)
    register_plugins(ep_plugins)
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[optimization])
    so.log_severity_level = 4  # errors come back as exceptions; ORT printing them too garbles the output
    if record_placement:
        so.add_session_config_entry(RECORD_ASSIGNMENT_KEY, "1")
    for key, value in (config or {}).items():
        so.add_session_config_entry(key, value)
    if threads:
        so.intra_op_num_threads = threads
    providers: list[Any] | None = None
    try:
        # a registered plugin EP also shows in get_available_providers(), but only its devices select it
        devices = plugin_devices(provider) if provider != "CPUExecutionProvider" else []
        if provider == "CPUExecutionProvider":
            providers = [("CPUExecutionProvider", provider_options or {})] if provider_options else ["CPUExecutionProvider"]
        elif devices:
            so.add_provider_for_devices(devices, {k: str(v) for k, v in (provider_options or {}).items()})
        elif provider in ort.get_available_providers() and not is_plugin(provider):
            providers = [(provider, provider_options or {}), "CPUExecutionProvider"]
        else:
            raise RunError(f"execution provider {provider} is not available here")
        session = ort.InferenceSession(model, sess_options=so, providers=providers)
        if devices:
            mark_used(provider)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"ONNX Runtime could not load the model: {one_line(exc, 400)}") from exc
    return Session(session, provider, optimization)
