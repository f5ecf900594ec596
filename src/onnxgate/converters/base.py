"""The converter contract and the registry that discovers converters by entry point.

One framework is one subclass of :class:`Converter`, registered in the entry-point
group ``onnxgate.converters``. The built-in converters register the same way (see
``pyproject.toml``), so third-party plugins and built-ins share one path. Entry points
are loaded on first need and checked against the contract (pluggy's check at
registration): each method must take the parameters the base class declares, with the
same keyword-only-ness. A plugin whose import fails, or whose methods do not match,
becomes a :class:`BrokenConverter` that reports why when used and never breaks the
others; two plugins claiming one name is an error.
"""

from __future__ import annotations

import abc
import dataclasses
import inspect
import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, ClassVar, Mapping

import numpy as np

from onnxgate.errors import ContractError, DuplicateConverterError, NeedsSampleError, PluginError, SourceError
from onnxgate.trust import Trust

ENTRY_POINT_GROUP = "onnxgate.converters"


@dataclass
class Conversion:
    """What ``Converter.convert`` returns: the model and how it was produced."""

    model: Any  # onnx.ModelProto
    converter: str  # e.g. "skl2onnx 1.20.0"
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ConverterSettings:
    """A converter's own knobs, read from the ``options`` dict by field name.

    A converter declares its knobs as the fields of a frozen subclass (its
    ``settings_class``); this base class has none. ``options`` carries every stage's keys
    (it travels as JSON), so keys that are not fields are ignored here: refusing unknown
    names is the job of ``onnxgate.settings``.
    """

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> Any:
        options = options or {}
        values = {}
        for f in dataclasses.fields(cls):
            value = options.get(f.name)
            if value is not None:
                values[f.name] = _coerce(f, value)
        return cls(**values)


def _coerce(f: dataclasses.Field, value: Any) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if kind == "bool":
        return bool(value)
    if kind == "str":
        return str(value)
    return value


class Converter(abc.ABC):
    """One framework's path to ONNX. Framework imports happen inside the methods only.

    ``options`` is a plain dict at every call (it crosses process boundaries as JSON);
    a converter reads its own knobs through ``self.settings(options)``.
    """

    name: ClassVar[str] = ""
    install_hint: ClassVar[str] = ""
    settings_class: ClassVar[type[ConverterSettings]] = ConverterSettings
    # what --benchmark times as "the original": the call reference() makes, in words
    reference_call: ClassVar[str] = "reference()"
    # True: the original computes each output row from that input row alone (scikit-learn, the boosters), so the
    # judge may stack several inputs' rows into one call (judge/calibration.py); False (the default): never assumed
    independent_rows: ClassVar[bool] = False

    def settings(self, options: Mapping[str, Any] | None) -> Any:
        """This converter's knobs from the options dict (an instance of ``settings_class``)."""
        return self.settings_class.from_options(options)

    @abc.abstractmethod
    def accepts(self, source: Any) -> bool:
        """Cheaply recognise a path, a ``module:callable`` string or an in-memory object."""

    @abc.abstractmethod
    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        """Load the model, refusing what would run untrusted code."""

    @abc.abstractmethod
    def feeds(self, model: Any, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Map a loaded :class:`~onnxgate.inputs.samples.Sample` onto the ONNX input names."""

    def synthesize(self, model: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        """Inputs without a sample, from what the model records about its signature.

        The default knows nothing: it raises :class:`NeedsSampleError`, so the caller can
        fall back to the ONNX file's signature or ask for a sample.
        """
        raise NeedsSampleError(
            f"the {self.name} converter needs a sample to know the input shapes and dtypes",
            "pass --sample FILE (.npy, .npz, .csv or a test_data_set_N/ directory)",
        )

    @abc.abstractmethod
    def convert(self, model: Any, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        """Export ``model`` to an ``onnx.ModelProto`` whose inputs are named as ``feeds``."""

    @abc.abstractmethod
    def reference(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        """Run the original model; name and shape its outputs as the ONNX graph does."""

    def reference64(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray] | None:
        """The original computing in float64 on the same input values, named as :meth:`reference`.

        The judge measures the original's own float32 error against it (judge/calibration.py)
        and compares ONNX with it. ``None`` (the default) when the framework cannot compute
        this model in float64; the judge then estimates the noise floor from input
        perturbations. Optional: a converter without it keeps the contract.
        """
        return None

    def may_tie(self, model: Any) -> bool:
        """Whether :meth:`reference_ties` can find anything for this model: when False (the default),
        the judge does not ask for ties, saving a call per case. Optional, with :meth:`reference_ties`."""
        return False

    def reference_ties(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, Any]:
        """Outputs the original does not define uniquely on ``feeds`` (a nearest-neighbour tie):
        ``{name: judge.ties.TieSet}`` holding every valid tie-break's answer per value, which the
        judge accepts and counts as ties. Empty (the default) when every answer is unique.
        Optional: a converter without it keeps the contract."""
        return {}

    @abc.abstractmethod
    def versions(self) -> dict[str, str]:
        """Versions of the framework and converter packages, for the report."""

    def default_topk(self, model: Any) -> int | None:
        """The top-k agreement this model's outputs call for without ``--topk`` (a language model's logits); None: none."""
        return None

    def model_versions(self, model: Any) -> dict[str, str]:
        """Versions of the packages this loaded ``model`` involves: what the report records and
        the gate's drift check compares. The default is :meth:`versions`; a converter whose
        models can hold another framework's objects (a scikit-learn pipeline with an xgboost
        step) adds those packages only for the models that hold them."""
        return self.versions()

    def reference_context(self, feeds: dict[str, np.ndarray]) -> AbstractContextManager[Any]:
        """The context :meth:`reference` runs in for validation (never when timed): none by default."""
        return nullcontext()

    def speed_calls(self, model: Any, feeds: dict[str, np.ndarray]) -> dict[str, Callable[[], Any]]:
        """Other ways a user calls the original, timed by --benchmark beside :meth:`reference`:
        ``{label: zero-argument call on feeds}``. Keras: the compiled ``predict`` path and a
        ``tf.function``, since its reference is an eager call. The default has none."""
        return {}


def float64_outputs(reference: Callable[..., dict[str, np.ndarray]], wide_model: Any, feeds: dict[str, np.ndarray],
                    output_names: list[str]) -> dict[str, np.ndarray] | None:
    """``reference(wide_model, ...)`` on ``feeds`` cast to float64 (float inputs only), for a converter's
    ``reference64``; None when the model refuses float64 or any float output comes back narrower
    (a float64 copy that casts back is not a float64 reference)."""
    wide = {n: a.astype(np.float64) if a.dtype.kind == "f" else a for n, a in feeds.items()}
    try:
        out = reference(wide_model, wide, output_names)
    except Exception:  # noqa: BLE001 - a model that refuses float64 keeps the perturbation floor
        return None
    floats = [a for a in out.values() if a.dtype.kind == "f"]
    return out if floats and all(a.dtype == np.float64 for a in floats) else None


METHODS = ("accepts", "load", "feeds", "synthesize", "convert", "reference", "versions", "model_versions", "speed_calls",
           "reference_context", "default_topk")
ATTRIBUTES = ("name", "install_hint", "settings_class")


def _parameters(sig: inspect.Signature) -> tuple[list[str], dict[str, bool]]:
    """(positional names in order, {keyword-only name: has a default})."""
    positional = [p.name for p in sig.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keywords = {p.name: p.default is not p.empty for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY}
    return positional, keywords


def describe_signature(name: str, sig: inspect.Signature) -> str:
    """``load(self, source, *, trust, options)``: names and keyword-only-ness, no annotations."""
    parts, star = [], False
    for p in sig.parameters.values():
        if p.kind is p.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        star = star or p.kind is p.VAR_POSITIONAL
        parts.append(prefix + p.name)
    return f"{name}({', '.join(parts)})"


def expected_signature(method: str) -> str:
    return describe_signature(method, inspect.signature(getattr(Converter, method)))


def _method_problem(cls: type, method: str) -> str | None:
    """Same positional parameters in order, the same keyword-only ones; extra keyword-only ones need defaults."""
    want = inspect.signature(getattr(Converter, method))
    impl = getattr(cls, method, None)
    if impl is None or not callable(impl):
        return f"has no method {method}; expected {expected_signature(method)}"
    if getattr(impl, "__isabstractmethod__", False):
        return f"does not implement {expected_signature(method)}"
    try:
        got = inspect.signature(impl)
    except (TypeError, ValueError):
        return f"method {method} has no inspectable signature; expected {expected_signature(method)}"
    want_pos, want_kw = _parameters(want)
    got_pos, got_kw = _parameters(got)
    extra_kw_required = [k for k, has_default in got_kw.items() if k not in want_kw and not has_default]
    if got_pos != want_pos or not set(want_kw) <= set(got_kw) or extra_kw_required:
        return f"{describe_signature(method, got)} does not match the contract {expected_signature(method)}"
    return None


def contract_problems(cls: type) -> list[str]:
    """What ``cls`` lacks or gets wrong against :class:`Converter`; empty when it conforms."""
    problems = []
    for attr in ATTRIBUTES:
        if not hasattr(cls, attr):
            problems.append(f"has no class attribute {attr}")
    settings_class = getattr(cls, "settings_class", None)
    if settings_class is not None and not (dataclasses.is_dataclass(settings_class) and hasattr(settings_class, "from_options")):
        problems.append("settings_class is not a dataclass with a from_options(options) classmethod")
    problems += [p for p in (_method_problem(cls, m) for m in METHODS) if p]
    return problems


def check_contract(converter: Any) -> None:
    """Raise :class:`ContractError` (one line) when ``converter`` does not follow the contract."""
    cls = converter if isinstance(converter, type) else type(converter)
    problems = contract_problems(cls)
    if problems:
        raise ContractError(
            f"{cls.__module__}.{cls.__qualname__}: " + "; ".join(problems),
            "subclass onnxgate.converters.Converter and give each method the signature shown",
        )


class BrokenConverter(Converter):
    """Stands in for a plugin whose entry point failed to import or broke the contract (Polygraphy's pattern)."""

    def __init__(self, name: str, distribution: str, error: BaseException, install_hint: str):
        self.name = name  # type: ignore[misc]  # per instance: the entry point's name
        self.distribution = distribution
        self.error = error
        self.install_hint = install_hint  # type: ignore[misc]

    def _fail(self) -> Any:
        if isinstance(self.error, ContractError):
            raise PluginError(
                f"converter {self.name!r} from {self.distribution} breaks the converter contract: {self.error.message}",
                f"{self.error.hint}, or uninstall {self.distribution}",
            )
        raise PluginError(
            f"converter {self.name!r} from {self.distribution} failed to import: "
            f"{type(self.error).__name__}: {self.error}",
            self.install_hint,
        )

    def accepts(self, source: Any) -> bool:
        return False

    def load(self, source: Any, *, trust: Trust, options: dict[str, Any]) -> Any:
        return self._fail()

    def feeds(self, model: Any, sample: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return self._fail()

    def synthesize(self, model: Any, *, options: dict[str, Any]) -> dict[str, np.ndarray]:
        return self._fail()

    def convert(self, model: Any, feeds: dict[str, np.ndarray], *, opset: int | None, options: dict[str, Any]) -> Conversion:
        return self._fail()

    def reference(self, model: Any, feeds: dict[str, np.ndarray], output_names: list[str]) -> dict[str, np.ndarray]:
        return self._fail()

    def versions(self) -> dict[str, str]:
        return self._fail()


@dataclass(frozen=True)
class PluginInfo:
    """Where a converter came from, for ``onnxgate converters``."""

    name: str
    value: str  # "module:attr"
    distribution: str
    status: str  # "ok" | "broken" | "not loaded"
    error: str | None = None


def _install_hint(name: str) -> str:
    known = {"sklearn": "sklearn", "torch": "torch", "hf": "hf", "tensorflow": "tensorflow", "keras": "tensorflow", "catboost": "catboost"}
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
        """Register an in-process converter; a name already taken, or a broken contract, is an error."""
        entries = self._discover()
        if converter.name in entries or converter.name in self._loaded:
            raise DuplicateConverterError(
                f"converter {converter.name!r} is already registered "
                f"(from {self._dists.get(converter.name, '<runtime>')})",
                "pick another name or unregister the existing converter",
            )
        check_contract(converter)
        self._loaded[converter.name] = converter
        self._dists[converter.name] = distribution

    def names(self) -> list[str]:
        return sorted(set(self._discover()) | set(self._loaded))

    def get(self, name: str) -> Converter:
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
            check_contract(obj)
            converter = obj() if isinstance(obj, type) else obj
        except Exception as exc:  # a broken plugin fails alone
            converter = BrokenConverter(name, self._dists.get(name, "?"), exc, _install_hint(name))
        self._loaded[name] = converter
        return converter

    def all(self) -> list[Converter]:
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

    def select(self, source: Any, framework: str | None = None) -> Converter:
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
