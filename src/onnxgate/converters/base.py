"""The converter protocol and the registry that discovers converters by entry point.

One framework is one class implementing :class:`Converter`, registered in the
entry-point group ``onnxgate.converters``. The built-in converters register the
same way (see ``pyproject.toml``), so third-party plugins and built-ins share one
path. Entry points are loaded on first need; a plugin whose import fails becomes a
:class:`BrokenConverter` that reports its error and install hint when used, and
never breaks the others; two plugins claiming one name is an error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Protocol, runtime_checkable

from onnxgate.errors import DuplicateConverterError, PluginError, SourceError
from onnxgate.trust import Trust

ENTRY_POINT_GROUP = "onnxgate.converters"


@dataclass
class Conversion:
    """What ``Converter.convert`` returns: the model and how it was produced."""

    model: Any  # onnx.ModelProto
    converter: str  # e.g. "skl2onnx 1.20.0"
    notes: list[str] = field(default_factory=list)


@runtime_checkable
class Converter(Protocol):
    """One framework's path to ONNX. Framework imports happen inside the methods only."""

    name: str
    install_hint: str

    def accepts(self, source: Any) -> bool:
        """Cheaply recognise a path, a ``module:callable`` string or an in-memory object."""

    def load(self, source: Any, *, trust: Trust) -> Any:
        """Load the model, refusing what would run untrusted code."""

    def feeds(self, model: Any, sample: Any) -> dict[str, Any]:
        """Map a loaded :class:`~onnxgate.inputs.samples.Sample` onto the ONNX input names."""

    def convert(self, model: Any, feeds: dict[str, Any], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        """Export ``model`` to an ``onnx.ModelProto`` whose inputs are named as ``feeds``."""

    def reference(self, model: Any, feeds: dict[str, Any], output_names: list[str]) -> dict[str, Any]:
        """Run the original model; name and shape its outputs as the ONNX graph does."""

    def versions(self) -> dict[str, str]:
        """Versions of the framework and converter packages, for the report."""


class BrokenConverter:
    """Stands in for a plugin whose entry point failed to import (Polygraphy's pattern)."""

    def __init__(self, name: str, distribution: str, error: BaseException, install_hint: str):
        self.name = name
        self.distribution = distribution
        self.error = error
        self.install_hint = install_hint

    def accepts(self, source: Any) -> bool:
        return False

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise PluginError(
            f"converter {self.name!r} from {self.distribution} failed to import: "
            f"{type(self.error).__name__}: {self.error}",
            self.install_hint,
        )

    load = feeds = convert = reference = versions = _fail


@dataclass(frozen=True)
class PluginInfo:
    """Where a converter came from, for ``onnxgate converters``."""

    name: str
    value: str  # "module:attr"
    distribution: str
    status: str  # "ok" | "broken" | "not loaded"
    error: str | None = None


def _install_hint(name: str) -> str:
    known = {"sklearn": "sklearn", "torch": "torch", "tensorflow": "tensorflow", "keras": "tensorflow"}
    extra = known.get(name)
    return f"pip install 'onnxgate[{extra}]'" if extra else f"reinstall the package that provides {name!r}"


class Registry:
    """Converters by name, discovered from entry points on first use."""

    def __init__(self, group: str = ENTRY_POINT_GROUP):
        self.group = group
        self._lock = threading.Lock()
        self._entries: dict[str, metadata.EntryPoint] | None = None
        self._dists: dict[str, str] = {}
        self._loaded: dict[str, Any] = {}

    def _discover(self) -> dict[str, metadata.EntryPoint]:
        with self._lock:
            if self._entries is None:
                entries: dict[str, metadata.EntryPoint] = {}
                dists: dict[str, str] = {}
                for ep in metadata.entry_points(group=self.group):
                    dist = ep.dist.name if ep.dist is not None else "?"
                    previous = entries.get(ep.name)
                    if previous is not None and previous.value != ep.value:
                        raise DuplicateConverterError(
                            f"converter {ep.name!r} is registered twice: {previous.value} "
                            f"(from {dists[ep.name]}) and {ep.value} (from {dist})",
                            "uninstall one of the two distributions",
                        )
                    entries[ep.name] = ep
                    dists[ep.name] = dist
                self._entries, self._dists = entries, dists
            return self._entries

    def register(self, converter: Any, *, distribution: str = "<runtime>") -> None:
        """Register an in-process converter; a name already taken is an error."""
        entries = self._discover()
        if converter.name in entries or converter.name in self._loaded:
            raise DuplicateConverterError(
                f"converter {converter.name!r} is already registered "
                f"(from {self._dists.get(converter.name, '<runtime>')})",
                "pick another name or unregister the existing converter",
            )
        self._loaded[converter.name] = converter
        self._dists[converter.name] = distribution

    def names(self) -> list[str]:
        return sorted(set(self._discover()) | set(self._loaded))

    def get(self, name: str) -> Any:
        entries = self._discover()
        if name in self._loaded:
            return self._loaded[name]
        ep = entries.get(name)
        if ep is None:
            raise PluginError(
                f"unknown framework {name!r}; expected one of {self.names()}",
                "run 'onnxgate converters' to see what is installed",
            )
        try:
            obj = ep.load()
            converter = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken plugin fails alone
            converter = BrokenConverter(name, self._dists.get(name, "?"), exc, _install_hint(name))
        self._loaded[name] = converter
        return converter

    def all(self) -> list[Any]:
        return [self.get(name) for name in self.names()]

    def info(self) -> list[PluginInfo]:
        out = []
        entries = self._discover()
        for name in self.names():
            conv = self.get(name)
            value = entries[name].value if name in entries else type(conv).__module__
            broken = isinstance(conv, BrokenConverter)
            out.append(
                PluginInfo(
                    name=name,
                    value=value,
                    distribution=self._dists.get(name, "?"),
                    status="broken" if broken else "ok",
                    error=f"{type(conv.error).__name__}: {conv.error}" if broken else None,
                )
            )
        return out

    def select(self, source: Any, framework: str | None = None) -> Any:
        """The converter for ``source``: the named one, or the one that accepts it."""
        if framework is not None:
            return self.get(framework)
        candidates = [c for c in self.all() if c.accepts(source)]
        if len(candidates) == 1:
            return candidates[0]
        shown = source if isinstance(source, str) else type(source).__name__
        if not candidates:
            raise SourceError(
                f"no installed converter recognises {shown!r} (converters: {self.names()})",
                "pass --framework NAME, or install the framework's extra, e.g. pip install 'onnxgate[torch]'",
            )
        raise SourceError(
            f"{shown!r} is accepted by several converters: {[c.name for c in candidates]}",
            "pass --framework NAME to choose one",
        )


_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry."""
    global _registry
    if _registry is None:
        _registry = Registry()
    return _registry
