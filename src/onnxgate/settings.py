"""Settings, declared once: one frozen dataclass per pipeline stage.

Every option of ``convert``/``validate``/``run`` (and of the gate's ``onnxgate.toml``) is a
field of exactly one stage class below. The field's metadata (:func:`option`) says how the
option looks on the command line and how a value is normalised; three loaders read the same
declarations (Olive's ``PassConfigParam``, Polygraphy's per-stage argument groups):

- :func:`add_arguments` / :meth:`Settings.from_namespace`: argparse flags;
- :meth:`Settings.from_table`: a ``[defaults]`` or ``[[model]]`` table of ``onnxgate.toml``;
- :meth:`Settings.from_kwargs`: keyword arguments of the Python API.

Adding a field to a stage class is the whole change: the flag, the TOML key and the keyword
exist from then on, checked and normalised the same way (``tests/test_settings.py`` checks
that every field reaches all three). A name that refers to nothing is an error that lists the
known names.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
from dataclasses import dataclass, field, fields
from typing import Any, Callable, Iterable, Mapping

from onnxgate.errors import OnnxgateError


class SettingsError(OnnxgateError):
    """An option name or value that refers to nothing, or does not parse."""


# -- declaring an option -----------------------------------------------------------------


def option(
    default: Any,
    help: str,
    *,
    kind: str = "value",
    metavar: str | None = None,
    parse: Callable[[Any], Any] | None = None,
    flag: str | None = None,
    example: Any = None,
    toml: bool = True,
    commands: tuple[str, ...] = ("convert", "validate", "run"),
) -> Any:
    """A settings field. ``kind``: ``"flag"`` (store_true), ``"value"`` or ``"list"`` (repeatable).

    ``parse`` turns a command-line string, a TOML value or an API value into the stored value
    and raises ``ValueError`` with a readable reason when it cannot; ``example`` is a value the
    settings tests feed through all three loaders. ``toml=False`` keeps an option off
    ``onnxgate.toml`` (trust is never read from the file a change reviews); ``commands`` lists
    the CLI verbs that take it.
    """
    meta = {"help": help, "kind": kind, "metavar": metavar, "parse": parse, "flag": flag, "example": example,
            "toml": toml, "commands": commands}
    if isinstance(default, (list, dict, set)):
        raise TypeError("settings defaults must be immutable (use a tuple)")
    return field(default=default, metadata=meta)


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


# -- value parsers ------------------------------------------------------------------------


MAX_SECONDS = 7 * 24 * 3600.0  # a week: longer is a typo, and would overflow the OS timers
MAX_THREADS = 1024
MAX_SEED = 2**32 - 1  # numpy's SeedSequence range used by the synthesiser
MIN_OPSET = 7  # the oldest default-domain opset ONNX Runtime runs


def _finite(x: Any) -> float:
    if isinstance(x, bool):
        raise ValueError(f"expected a number, got {x!r}")
    try:
        value = float(x)
    except OverflowError:
        raise ValueError(f"expected a finite number, got {x!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {x!r}")
    return value


def _number(x: Any) -> float:
    value = _finite(x)
    if value < 0:
        raise ValueError(f"expected a non-negative number, got {x!r}")
    return value


def _at_most(bound: str, what: str) -> Callable[[Any], float]:
    """A finite non-negative number no greater than judge.tolerances' ``bound`` (read when parsing)."""

    def parse(x: Any) -> float:
        from onnxgate.judge import tolerances

        limit = getattr(tolerances, bound)
        value = _number(x)
        if value > limit:
            raise ValueError(f"{what} {x!r} is larger than the maximum {limit:g}, which would let a wrong model pass")
        return value

    parse.__name__ = f"_{what.replace(' ', '_')}"
    return parse


_atol = _at_most("MAX_ATOL", "absolute tolerance")
_rtol = _at_most("MAX_RTOL", "relative tolerance")


def _int(x: Any) -> int:
    if isinstance(x, bool) or (isinstance(x, float) and not x.is_integer()):
        raise ValueError(f"expected a whole number, got {x!r}")
    try:
        return int(x)
    except OverflowError:
        raise ValueError(f"expected a whole number, got {x!r}") from None


def _positive_int(x: Any) -> int:
    value = _int(x)
    if value < 1:
        raise ValueError(f"expected a number >= 1, got {x!r}")
    return value


def _bounded_int(low: int, high: int, what: str) -> Callable[[Any], int]:
    def parse(x: Any) -> int:
        value = _int(x)
        if not low <= value <= high:
            raise ValueError(f"{what} must be between {low} and {high}, got {x!r}")
        return value

    parse.__name__ = f"_{what.replace(' ', '_')}"
    return parse


_seed = _bounded_int(0, MAX_SEED, "the seed")
_threads = _bounded_int(1, MAX_THREADS, "the thread count")
_jobs = _bounded_int(1, 256, "the number of jobs")


def newest_opset() -> int:
    """The newest default-domain opset the installed onnx knows (converters cannot write a newer one)."""
    import onnx.defs

    return int(onnx.defs.onnx_opset_version())


def _opset(x: Any) -> int:
    value = _int(x)
    newest = newest_opset()
    if not MIN_OPSET <= value <= newest:
        raise ValueError(f"opset {x!r} is outside the range the installed onnx and ONNX Runtime support ({MIN_OPSET}..{newest})")
    return value


def _seconds(x: Any) -> float:
    value = _number(x)
    if not value > 0:
        raise ValueError(f"expected a positive number of seconds, got {x!r}")
    if value > MAX_SECONDS:
        raise ValueError(f"expected at most {MAX_SECONDS:g} seconds (a week), got {x!r}")
    return value


def _text(x: Any) -> str:
    if not isinstance(x, str) or not x:
        raise ValueError(f"expected a non-empty string, got {x!r}")
    return x


def _path(x: Any) -> str:
    if isinstance(x, os.PathLike):
        x = os.fspath(x)
    return _text(x)


def _sample(x: Any) -> Any:
    """A sample path, or (API) an already loaded inputs.samples.Sample."""
    return x if type(x).__name__ == "Sample" else _path(x)


def _bool(x: Any) -> bool:
    if not isinstance(x, bool):
        raise ValueError(f"expected true or false, got {x!r}")
    return x


def _assignments(separator: str = ":") -> Callable[[Any], tuple[str, ...]]:
    """``NAME=VALUE`` strings (CLI, API) or a TOML table ``{NAME = VALUE}`` -> sorted ``NAME=VALUE`` strings.

    A table value that is a list is joined with ``separator`` (``{out = [1e-4, 1e-3]}`` ->
    ``out=0.0001:0.001``), so both spellings normalise to the same stored value.
    """

    def parse(value: Any) -> tuple[str, ...]:
        if isinstance(value, Mapping):
            items = []
            for k, v in value.items():
                v = separator.join(repr(x) if isinstance(x, float) else str(x) for x in v) if isinstance(v, (list, tuple)) else v
                items.append(f"{k}={v}")
            return tuple(items)
        if isinstance(value, str):
            return (value,)
        return tuple(str(v) for v in value)

    return parse


def _words(value: Any) -> tuple[str, ...]:
    """``"a,b"`` or ``["a", "b"]`` -> ``("a", "b")``."""
    if isinstance(value, str):
        value = value.split(",")
    return tuple(w.strip() for w in value if str(w).strip())


# -- the stages ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSettings:
    """Which converter loads the source, and what it may run."""

    framework: str | None = option(None, "converter to use (default: the one that recognises SOURCE)", metavar="NAME", parse=_text, example="sklearn")
    trust_pickle: bool = option(False, "allow loading pickles (.pkl/.joblib), which runs code", kind="flag", toml=False, example=True)
    trust_code: bool = option(False, "allow module:callable sources and untrusted types", kind="flag", toml=False, example=True)
    trust_types: tuple[str, ...] = option((), "trust one type in a .skops file (repeatable)", kind="list", metavar="T", flag="--trust-type", example=("numpy.float64",))
    signature: str | None = option(None, "SavedModel signature to convert (default: serving_default)", metavar="NAME", parse=_text, example="serving_default")
    task: str | None = option(None, "Hugging Face task to load a save_pretrained directory for (default: from config.architectures)", metavar="TASK", parse=_text, example="text-classification")

    def trust(self, environ: Mapping[str, str] | None = None) -> Any:
        from onnxgate.trust import from_flags

        return from_flags(pickle=self.trust_pickle, code=self.trust_code, types=self.trust_types, environ=environ)


@dataclass(frozen=True)
class InputSettings:
    """The shared inputs: a sample file, or inputs synthesised from the model's signature."""

    sample: Any = option(None, "shared inputs: .npy, .npz, .csv, .txt, .json or test_data_set_N/", metavar="F", parse=_sample, example="x.npy", toml=False)
    seed: int | None = option(None, "seed for inputs synthesised without --sample (default 0; recorded in the report)", metavar="N", parse=_seed, example=3)
    dims: tuple[str, ...] = option((), "size of a dynamic dim for synthesised inputs (symbolic name, or INPUT:AXIS)", kind="list", metavar="NAME=SIZE", flag="--dim", parse=_assignments(), example=("batch=4",))
    input_ranges: tuple[str, ...] = option((), "value range of a synthesised input (HI exclusive for integers)", kind="list", metavar="NAME=LO:HI", flag="--input-range", parse=_assignments(), example=("x=0:1",))

    def __post_init__(self) -> None:
        from onnxgate.inputs.synthesize import parse_dims, parse_ranges

        parse_dims(self.dims)
        parse_ranges(self.input_ranges)

    def dim_map(self) -> dict[str, int]:
        from onnxgate.inputs.synthesize import parse_dims

        return parse_dims(self.dims)

    def range_map(self) -> dict[str, tuple[float, float]]:
        from onnxgate.inputs.synthesize import parse_ranges

        return parse_ranges(self.input_ranges)


@dataclass(frozen=True)
class ConvertSettings:
    """How the model is exported."""

    opset: int | None = option(None, "ONNX opset (default: newest the converter and ONNX Runtime support)", metavar="N", parse=_opset, example=17, commands=("convert", "run"))
    double: bool = option(False, "export with float64 inputs instead of float32", kind="flag", example=True)
    static: bool = option(False, "keep the batch axis fixed at the sample's size (default: dynamic)", kind="flag", example=True)
    upcast_bf16: bool = option(False, "export a float32 copy of a bfloat16 torch model (ORT's CPU provider has no bfloat16 kernels); compared at bfloat16 tolerances", kind="flag", example=True)


@dataclass(frozen=True)
class CompareSettings:
    """The tolerance policy: defaults by dtype, overridden globally or per output."""

    atol: float | None = option(None, "absolute tolerance for float outputs (default: by dtype)", metavar="X", parse=_atol, example=1e-4, commands=("validate", "run"))
    rtol: float | None = option(None, "relative tolerance for float outputs (default: by dtype)", metavar="Y", parse=_rtol, example=1e-3, commands=("validate", "run"))
    tol: tuple[str, ...] = option((), "tolerance for one output (repeatable)", kind="list", metavar="NAME=ATOL:RTOL", parse=_assignments(), example=("variable=0.0001:0.001",), commands=("validate", "run"))
    error_stat: str | None = option(None, "error statistic for float outputs (default: max, element-wise)", metavar="max|mean|quantile:Q", parse=_text, example="mean", commands=("validate", "run"))
    topk: int | None = option(None, "also require top-K class agreement for score/logit outputs", metavar="K", parse=_positive_int, example=2, commands=("validate", "run"))
    no_calibration: bool = option(False, "compare with the fixed dtype tolerances only: do not measure the original's noise floor", kind="flag", example=True, commands=("validate", "run"))
    accept_vacuous: bool = option(False, "pass a check whose reference outputs are degenerate (constant, NaN, near zero) instead of calling it vacuous", kind="flag", example=True, commands=("validate", "run"))

    def __post_init__(self) -> None:
        self.policy()  # a bad value fails here, before any work

    def policy(self) -> Any:
        from onnxgate.judge.tolerances import TolerancePolicy

        return TolerancePolicy.from_options(atol=self.atol, rtol=self.rtol, per_output=self.tol, error_stat=self.error_stat, topk=self.topk)


@dataclass(frozen=True)
class RuntimeSettings:
    """Where and how ONNX Runtime (and the original framework) run."""

    providers: tuple[str, ...] | None = option(None, "execution providers to validate on (default: CPU)", metavar="all|A,B", parse=_words, example=("CPU",), commands=("validate", "run"))
    provider_options: tuple[str, ...] = option((), "an execution provider option passed to its session and recorded in the report (repeatable), e.g. 'OpenVINO:load_config={\"CPU\":{\"INFERENCE_PRECISION_HINT\":\"f32\"}}'", kind="list", metavar="PROVIDER:KEY=VALUE", flag="--provider-option", example=("CPU:arena_extend_strategy=kSameAsRequested",), commands=("validate", "run"))
    ep_plugins: tuple[str, ...] = option((), "register a plugin execution provider library (repeatable)", kind="list", metavar="NAME=LIBRARY_PATH", flag="--ep-plugin", toml=False, example=(), commands=("validate", "run"))
    opt_levels: tuple[str, ...] | None = option(None, "graph optimisation levels to validate at (default: disable,all)", metavar="disable,all", parse=_words, example=("all",), commands=("validate", "run"))
    require_full_placement: bool = option(False, "fail when any node falls back from a provider to CPU", kind="flag", example=True, commands=("validate", "run"))
    in_process: bool = option(False, "run the original framework and ONNX Runtime in this process (for debugging: a crash in them ends onnxgate)", kind="flag", toml=False, example=True)
    timeout: float | None = option(None, "kill and report a model whose load, conversion or run takes longer", metavar="SECONDS", parse=_seconds, example=30.0)

    def __post_init__(self) -> None:
        self.run_settings()

    def run_settings(self) -> Any:
        from onnxgate.diagnose.provider_checks import RunSettings

        return RunSettings.resolve(self.provider_options, self.ep_plugins, self.opt_levels, self.require_full_placement)

    def isolation(self) -> Any:
        from onnxgate.runtime.isolation import IsolationPolicy

        return IsolationPolicy(in_process=self.in_process, timeout=self.timeout)


@dataclass(frozen=True)
class DepthSettings:
    """Cases beyond the batch sweep, evidence and localisation."""

    edge: bool = option(False, "also validate on edge cases: all zeros, large magnitudes", kind="flag", example=True, commands=("validate", "run"))
    save_evidence: str | None = option(None, "write DIR/test_data_set_N (inputs + the original's outputs) to re-verify with ORT alone", metavar="DIR", parse=_path, toml=False, example="ev", commands=("validate", "run"))
    evidence: str | None = option(None, "re-verify against stored test_data_set_N/ outputs with ONNX Runtime alone", metavar="DIR", parse=_path, toml=False, example="ev", commands=("validate",))
    localize: bool = option(False, "when parity fails, name the first ONNX node whose output diverges", kind="flag", example=True, commands=("validate", "run"))


@dataclass(frozen=True)
class StaticSettings:
    """Checks on the ONNX file itself."""

    target_ort: str | None = option(None, "write for (convert/run: lower the IR version, convert the opset) and check opset/IR version against this ONNX Runtime release", metavar="VERSION", parse=_text, example="1.17")
    mobile_check: bool = option(False, "summarise ORT's NNAPI/CoreML usability checker in the report", kind="flag", example=True, commands=("validate", "run"))

    def __post_init__(self) -> None:
        if self.target_ort:
            from onnxgate.checks.static import parse_target_ort

            parse_target_ort(self.target_ort)


@dataclass(frozen=True)
class SpeedSettings:
    """Is it worth it: timing and optimised variants."""

    benchmark: bool = option(False, "time the original and ONNX Runtime at batch 1 and the sample's batch", kind="flag", example=True, commands=("validate", "run"))
    threads: int | None = option(None, "threads for both the original and ONNX Runtime when timing (default 1)", metavar="N", parse=_threads, example=2, commands=("validate", "run"))
    optimize: bool = option(False, "also build, validate and time optimised variants (ORT offline, float16, int8)", kind="flag", example=True, commands=("validate", "run"))
    benchmark_seconds: float | None = option(None, "time budget per timed figure (default: a few seconds)", metavar="SECONDS", parse=_seconds, example=1.0, commands=("validate", "run"))


STAGES: dict[str, type] = {
    "load": LoadSettings,
    "inputs": InputSettings,
    "convert": ConvertSettings,
    "compare": CompareSettings,
    "runtime": RuntimeSettings,
    "depth": DepthSettings,
    "static": StaticSettings,
    "speed": SpeedSettings,
}


def _field_index() -> dict[str, tuple[str, dataclasses.Field]]:
    out: dict[str, tuple[str, dataclasses.Field]] = {}
    for stage, cls in STAGES.items():
        for f in fields(cls):
            if f.name in out:
                raise TypeError(f"settings field {f.name!r} is declared twice")
            out[f.name] = (stage, f)
    return out


def known_names() -> list[str]:
    return sorted(_field_index())


def _normalise(f: dataclasses.Field, value: Any, where: str) -> Any:
    """A CLI string, TOML value or API value -> the stored form; a bad value is a SettingsError."""
    if value is None:
        return f.default
    kind, parse = f.metadata["kind"], f.metadata.get("parse")
    try:
        if kind == "flag":
            return _bool(value)
        if kind == "list":
            if parse is not None:
                return parse(value)
            if isinstance(value, str):
                return (value,)
            if isinstance(value, Mapping):
                raise ValueError(f"expected a list, got {value!r}")
            return tuple(str(v) for v in value)
        return parse(value) if parse is not None else value
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"{where}: {exc}", f"see '{_flag(f)}' in onnxgate --help") from None


@dataclass(frozen=True)
class Settings:
    """Every stage's settings: what ``convert``, ``validate``, ``run``, ``publish`` and the gate take."""

    load: LoadSettings = field(default_factory=lambda: STAGES["load"]())
    inputs: InputSettings = field(default_factory=lambda: STAGES["inputs"]())
    convert: ConvertSettings = field(default_factory=lambda: STAGES["convert"]())
    compare: CompareSettings = field(default_factory=lambda: STAGES["compare"]())
    runtime: RuntimeSettings = field(default_factory=lambda: STAGES["runtime"]())
    depth: DepthSettings = field(default_factory=lambda: STAGES["depth"]())
    static: StaticSettings = field(default_factory=lambda: STAGES["static"]())
    speed: SpeedSettings = field(default_factory=lambda: STAGES["speed"]())

    # -- the three loaders ---------------------------------------------------------------

    @classmethod
    def from_kwargs(cls, base: "Settings | None" = None, **kwargs: Any) -> "Settings":
        """Keyword arguments of the API, by field name; an unknown name lists the known ones."""
        return (base or cls()).replace(_where="keyword", **kwargs)

    @classmethod
    def from_namespace(cls, ns: argparse.Namespace, base: "Settings | None" = None) -> "Settings":
        """The parsed command line (flags added by :func:`add_arguments`)."""
        index = _field_index()
        given = {name: getattr(ns, name) for name in index if getattr(ns, name, None) not in (None, [], False)}
        return (base or cls()).replace(_where="option", **given)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], base: "Settings | None" = None, *, where: str = "onnxgate.toml",
                   ignore: Iterable[str] = ()) -> "Settings":
        """A TOML table; keys in ``ignore`` belong to the caller (name, source, version, ...)."""
        index = _field_index()
        skip = set(ignore)
        given = {}
        for key, value in table.items():
            if key in skip:
                continue
            found = index.get(key)
            if found is None or not found[1].metadata["toml"]:
                known = sorted([n for n, (_, f) in index.items() if f.metadata["toml"]] + list(skip))
                raise SettingsError(f"{where}: unknown key {key!r}", f"known keys: {', '.join(known)}")
            given[key] = value
        return (base or cls()).replace(_where=f"{where}: key", **given)

    def replace(self, _where: str = "keyword", **kwargs: Any) -> "Settings":
        """A copy with some fields changed, by field name (values normalised as on the CLI)."""
        index = _field_index()
        changes: dict[str, dict[str, Any]] = {}
        for name, value in kwargs.items():
            found = index.get(name)
            if found is None:
                raise SettingsError(f"unknown {_where.split(': ')[-1]} {name!r}", f"known names: {', '.join(known_names())}")
            stage, f = found
            changes.setdefault(stage, {})[name] = _normalise(f, value, f"{_where} {name!r}")
        staged = {}
        for stage, values in changes.items():
            try:
                staged[stage] = dataclasses.replace(getattr(self, stage), **values)
            except (ValueError, TypeError) as exc:
                raise SettingsError(f"{stage} settings: {exc}", "check the option values") from None
        return dataclasses.replace(self, **staged)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {stage: dataclasses.asdict(getattr(self, stage)) for stage in STAGES}

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> "Settings":
        """The inverse of :meth:`as_dict` (how settings travel to a worker)."""
        staged = {}
        for stage, values in data.items():
            klass = STAGES[stage]
            staged[stage] = klass(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})
        return cls(**staged)

    def converter_options(self) -> dict[str, Any]:
        """The options dict converters read (``options.get("double")`` and friends)."""
        return {
            "double": self.convert.double,
            "static": self.convert.static,
            "upcast_bf16": self.convert.upcast_bf16,
            "signature": self.load.signature,
            "task": self.load.task,
            "seed": self.inputs.seed,
            "dims": self.inputs.dim_map(),
            "input_ranges": self.inputs.range_map(),
            "edge": self.depth.edge,
        }


# -- argparse ----------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, command: str, stages: Iterable[str] | None = None) -> None:
    """One argument group per stage, with the flags that ``command`` takes."""
    for stage in stages or STAGES:
        cls = STAGES[stage]
        group = parser.add_argument_group(f"{stage} options", (cls.__doc__ or "").strip().splitlines()[0])
        for f in fields(cls):
            meta = f.metadata
            if command not in meta["commands"]:
                continue
            kw: dict[str, Any] = {"dest": f.name, "help": meta["help"]}
            if meta["kind"] == "flag":
                kw["action"] = "store_true"
                kw["default"] = None
            elif meta["kind"] == "list":
                kw["action"] = "append"
                kw["metavar"] = meta["metavar"]
            else:
                kw["metavar"] = meta["metavar"]
                kw["type"] = _cli_type(f)
            group.add_argument(_flag(f), **kw)


def _cli_type(f: dataclasses.Field) -> Callable[[str], Any]:
    parse = f.metadata.get("parse")

    def convert(text: str) -> Any:
        if parse is None:
            return text
        try:
            parse(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    convert.__name__ = f.name
    return convert
