"""Run an ONNX model under ONNX Runtime on one execution provider."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from onnxgate._util import one_line
from onnxgate.runtime.placement import RECORD_ASSIGNMENT_KEY, Placement, placement_of
from onnxgate.runtime.providers import canonical_provider, is_plugin, mark_used, plugin_devices, register_plugins

OPT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}


KINDS = ("load", "run", "crash", "timeout", "memory")


class RunError(Exception):
    """ONNX Runtime could not create a session or run the model (not a user error by itself).

    ``kind`` says how, set where it is raised: ``"load"`` (no session), ``"run"`` (the
    session raised), ``"crash"`` (the worker died), ``"timeout"`` (the worker was killed
    past the time limit) or ``"memory"`` (killed with SIGKILL, MemoryError, an allocation
    failure). Callers branch on ``kind``, never on the message.
    """

    def __init__(self, message: str, kind: str = "run"):
        if kind not in KINDS:
            raise ValueError(f"RunError kind {kind!r}: expected one of {KINDS}")
        super().__init__(message)
        self.kind = kind


# ORT's own words for an allocation failure (its exceptions carry no type for it).
_ALLOCATION_FAILED = ("Failed to allocate memory", "bad_alloc", "std::bad_alloc")


def failure_kind(exc: BaseException, default: str) -> str:
    """``"memory"`` for a MemoryError or an ONNX Runtime allocation failure, else ``default``."""
    if isinstance(exc, MemoryError) or any(s in str(exc) for s in _ALLOCATION_FAILED):
        return "memory"
    return default


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

    def input_shapes(self) -> dict[str, list[int | str | None]]:
        return {i.name: list(i.shape) if i.shape is not None else None for i in self.session.get_inputs()}

    def placement(self) -> Placement:
        """Which provider took which node (needs ``record_placement=True`` at creation)."""
        return placement_of(self.session, self.provider, self.optimization)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v) for k, v in self.run_values(feeds).items()}

    def run_values(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """Outputs as ONNX Runtime returns them: arrays, and lists or dicts for sequences and maps."""
        feeds = _cast_feeds(feeds, self.input_types())
        try:
            values = self.session.run(None, feeds)
        except Exception as exc:
            raise RunError(f"ONNX Runtime failed to run the model: {one_line(exc, 400)}", failure_kind(exc, "run")) from exc
        return dict(zip(self.output_names(), values))


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
        if isinstance(value, (list, dict)) or value is None:  # a sequence, map or optional input
            out[name] = value
            continue
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
    optimized_path: str | None = None,
) -> Session:
    """An ORT session on ``provider`` (built-in or plugin), falling back to CPU for nodes it does not take.

    ``config`` holds extra session config entries (``SessionOptions.add_session_config_entry``);
    ``optimized_path`` makes ORT save the graph as optimised at ``optimization`` there.

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
    if optimized_path:
        so.optimized_model_filepath = optimized_path
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
            raise RunError(f"execution provider {provider} is not available here", "load")
        session = ort.InferenceSession(model, sess_options=so, providers=providers)
        if devices:
            mark_used(provider)
    except RunError:
        raise
    except Exception as exc:
        raise RunError(f"ONNX Runtime could not load the model: {one_line(exc, 400)}", failure_kind(exc, "load")) from exc
    return Session(session, provider, optimization)
