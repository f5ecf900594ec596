"""The gate's configuration: ``onnxgate.toml`` or ``[tool.onnxgate]`` in ``pyproject.toml``.

Per-model knobs are data (STYLE 4), checked strictly: an unknown key, a wrong type,
a missing source or a duplicated name is an error naming the file, the line and the
key, so a typo never silently turns a check off.

```toml
[defaults]                 # every key optional; each one can be overridden per model
registry = "registry"      # where passing models are published (relative to this file)
providers = ["CPU"]        # or "all"
opset = 17
atol = 1e-5
rtol = 1e-3
regression = "fail"        # "fail" | "warn" | "off": drift against the published version
drift = true               # re-check a model whose recorded package versions differ from the installed ones

[[model]]
name = "iris"              # required, unique; the registry directory name
source = "models/iris.skops"
sample = "data/iris.npy"
version = "1.0.0"          # required; published as registry/iris/1.0.0/
framework = "sklearn"      # optional converter name
onnx = "models/iris.onnx"  # optional: validate this committed ONNX file instead of converting
tol = { variable = [1e-4, 1e-3] }
watch = ["training/*.py"]  # extra paths whose change selects the model
edge = true                # any option of validate: the keys are the fields of onnxgate/settings.py
timeout = 60               #   (the CLI flags without "--", dashes as underscores), e.g.
dims = { batch = 4 }       #   --dim batch=4 -> dims = { batch = 4 }
```

Trust (``trust = ["pickle"]``, ``trust_types``) is read here but applied by the gate only as
the config reads at the base revision (``pipelines/gate.py``: ``base_trust``), never from the
change under review.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from onnxgate.errors import OnnxgateError

CONFIG_NAME = "onnxgate.toml"
PYPROJECT = "pyproject.toml"
REGRESSION_MODES = ("fail", "warn", "off")
TRUST_KINDS = ("pickle", "code")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

# The gate's own keys: key -> (type check, what the error says it must be). Every other key
# is a validate option, declared once in onnxgate/settings.py and read by Settings.from_table.
_GATE_KEYS: dict[str, tuple[Any, str]] = {
    "tags": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "regression": (lambda v: v in REGRESSION_MODES, f"one of {list(REGRESSION_MODES)}"),
    "trust": (lambda v: isinstance(v, list) and all(x in TRUST_KINDS for x in v), f"a list drawn from {list(TRUST_KINDS)}"),
    "drift": (lambda v: isinstance(v, bool), "true or false"),
}
_DEFAULT_KEYS: dict[str, tuple[Any, str]] = {**_GATE_KEYS, "registry": (lambda v: isinstance(v, str) and v, "a directory path")}
_MODEL_KEYS: dict[str, tuple[Any, str]] = {
    **_GATE_KEYS,
    "name": (lambda v: isinstance(v, str) and bool(NAME_RE.match(v)), "a name of letters, digits and . _ + -"),
    "source": (lambda v: isinstance(v, str) and v, "a path (relative to the config file) or module:callable"),
    "sample": (lambda v: isinstance(v, str) and v, "a path relative to the config file"),
    "version": (lambda v: isinstance(v, str) and bool(NAME_RE.match(v)), 'a quoted string such as "1.0.0"'),
    "onnx": (lambda v: isinstance(v, str) and v, "a path to a committed .onnx file"),
    "watch": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of glob patterns"),
}
_REQUIRED = ("name", "source", "version")
_TOP_KEYS = ("defaults", "model")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0


class ConfigError(OnnxgateError):
    """The gate configuration is missing, malformed or names something that does not exist."""


@dataclass(frozen=True)
class ModelSpec:
    """One ``[[model]]`` table with the defaults applied and paths resolved against the config's directory."""

    name: str
    version: str
    source: str  # as written
    source_path: Path | None  # None for module:callable sources
    sample: Path | None
    onnx: Path | None
    settings: Any  # settings.Settings: every validate option, [defaults] then the model's table
    tags: tuple[str, ...]
    regression: str
    trust: tuple[str, ...]
    watch: tuple[str, ...]
    table: dict[str, Any] = field(compare=False)  # the raw table, for change detection
    drift: bool = True  # selected when a package its published report records has another version now
    root: Path | None = None  # the config's directory (provenance paths are relative to it outside git)

    def paths(self) -> list[Path]:
        """Files whose change selects this model (a directory source covers everything under it)."""
        return [p for p in (self.source_path, self.sample, self.onnx) if p is not None]


@dataclass(frozen=True)
class GateConfig:
    path: Path  # the file it came from
    root: Path  # its directory: relative paths resolve here
    registry: Path | None
    defaults: dict[str, Any]
    models: list[ModelSpec]

    def model(self, name: str) -> ModelSpec:
        return next(m for m in self.models if m.name == name)


def find_config(path: str | Path | None = None, cwd: str | Path | None = None) -> Path:
    """``path`` if given, else ``onnxgate.toml``, else a ``pyproject.toml`` with ``[tool.onnxgate]``."""
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist", f"pass --config PATH to an {CONFIG_NAME}")
        return p
    here = Path(cwd or ".")
    if (here / CONFIG_NAME).is_file():
        return here / CONFIG_NAME
    pyproject = here / PYPROJECT
    if pyproject.is_file():
        tool = _parse(read_text(pyproject), pyproject).get("tool")
        if isinstance(tool, dict) and "onnxgate" in tool:
            return pyproject
    raise ConfigError(
        f"no {CONFIG_NAME} (or [tool.onnxgate] in {PYPROJECT}) in {str(here.resolve())!r}",
        f"create {CONFIG_NAME} with one [[model]] table per model, or pass --config PATH",
    )


def _parse(text: str, path: Path) -> dict[str, Any]:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}", "fix the syntax (see https://toml.io)") from None
    except RecursionError:
        raise ConfigError(f"{path}: invalid TOML: nested too deeply", "a gate config needs two levels of tables") from None


def read_text(path: Path) -> str:
    """A config file as text; binary content is a ConfigError, not a traceback."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})", "a config file is TOML text") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read it: {exc.strerror}", "check the path and its permissions") from None


def config_section(text: str, path: Path) -> dict[str, Any]:
    """The onnxgate table of a config text: the whole file, or ``[tool.onnxgate]`` of a pyproject."""
    data = _parse(text, path)
    if path.name == PYPROJECT:
        section = data.get("tool", {}).get("onnxgate")
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: no [tool.onnxgate] table", f"add one, or use {CONFIG_NAME}")
        return section
    return data


def load_config(path: str | Path | None = None, *, cwd: str | Path | None = None, check_paths: bool = True) -> GateConfig:
    """Read and check the gate config; every problem is a :class:`ConfigError` naming file, line and key."""
    p = find_config(path, cwd)
    text = read_text(p)
    return parse_config(text, p, check_paths=check_paths)


def parse_config(text: str, path: Path, *, check_paths: bool = True) -> GateConfig:
    section = config_section(text, path)
    lines = _Lines(text, pyproject=path.name == PYPROJECT)
    root = path.resolve().parent
    for key in section:
        if key not in _TOP_KEYS:
            raise ConfigError(
                f"{path}:{lines.top(key) or '?'}: unknown key {key!r}", f"the top-level keys are {list(_TOP_KEYS)}"
            )
    defaults = section.get("defaults", {})
    if not isinstance(defaults, dict):
        raise ConfigError(f"{path}: 'defaults' must be a table", "write [defaults]")
    _check_table(defaults, _DEFAULT_KEYS, path, lambda k: lines.defaults(k), "[defaults]")
    tables = section.get("model", [])
    if not isinstance(tables, list) or not tables:
        raise ConfigError(f"{path}: no [[model]] tables", "add one [[model]] table per model (name, source, version)")
    models: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, table in enumerate(tables):
        where = f"[[model]] #{i + 1}" + (f" {table.get('name')!r}" if isinstance(table.get("name"), str) else "")
        _check_table(table, _MODEL_KEYS, path, lambda k, i=i: lines.model(i, k), where)
        for key in _REQUIRED:
            if key not in table:
                raise ConfigError(f"{path}:{lines.model(i) or '?'}: {where}: missing key {key!r}", f"every [[model]] needs {list(_REQUIRED)}")
        name = table["name"]
        if name in seen:
            raise ConfigError(
                f"{path}:{lines.model(i, 'name') or '?'}: duplicate model name {name!r} (first at line {seen[name] or '?'})",
                "give every [[model]] a unique name",
            )
        seen[name] = lines.model(i, "name") or 0
        spec = _spec(table, defaults, root)
        if check_paths:
            _check_paths(spec, table, path, lambda k, i=i: lines.model(i, k), where)
        models.append(spec)
    registry = defaults.get("registry")
    return GateConfig(path, root, (root / registry) if registry else None, defaults, models)


def _check_table(table: Any, known: dict[str, tuple[Any, str]], path: Path, line_of: Any, where: str) -> None:
    """The gate's own keys are checked here; every other key must be a settings field, checked by its parser."""
    from onnxgate.settings import Settings, SettingsError

    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table", "see the README's gate section")
    settings_keys = _settings_keys()
    for key, value in table.items():
        if key in known:
            check, what = known[key]
            if not check(value):
                raise ConfigError(f"{path}:{line_of(key) or '?'}: {where}: {key!r} must be {what}, got {value!r}", "fix the value")
        elif key in settings_keys:
            try:
                Settings.from_table({key: value}, where=f"{path}:{line_of(key) or '?'}: {where}")
            except SettingsError as exc:
                raise ConfigError(exc.message, exc.hint) from None
        else:
            raise ConfigError(
                f"{path}:{line_of(key) or '?'}: {where}: unknown key {key!r}",
                f"known keys: {', '.join(sorted(set(known) | settings_keys))}",
            )


def _settings_keys() -> set[str]:
    from onnxgate.settings import STAGES

    return {f.name for cls in STAGES.values() for f in dataclasses.fields(cls) if f.metadata["toml"]}


def _spec(table: dict[str, Any], defaults: dict[str, Any], root: Path) -> ModelSpec:
    from onnxgate.settings import Settings

    def get(key: str, fallback: Any = None) -> Any:
        return table.get(key, defaults.get(key, fallback))

    own = set(_MODEL_KEYS) | set(_DEFAULT_KEYS)
    settings = Settings.from_table({k: v for k, v in defaults.items() if k not in own})
    settings = Settings.from_table({k: v for k, v in table.items() if k not in own}, settings)
    source = table["source"]
    is_factory = bool(_FACTORY.match(source)) and not (root / source).exists()
    sample = root / table["sample"] if "sample" in table else None
    if sample is not None:
        settings = settings.replace(sample=str(sample))
    return ModelSpec(
        name=table["name"],
        version=table["version"],
        source=source,
        source_path=None if is_factory else root / source,
        sample=sample,
        onnx=root / table["onnx"] if "onnx" in table else None,
        settings=settings,
        tags=tuple(get("tags", [])),
        regression=get("regression", "fail"),
        trust=tuple(get("trust", [])),
        watch=tuple(table.get("watch", [])),
        table=dict(table),
        drift=get("drift", True),
        root=root,
    )


def _check_paths(spec: ModelSpec, table: dict[str, Any], path: Path, line_of: Any, where: str) -> None:
    for key, p in (("source", spec.source_path), ("sample", spec.sample), ("onnx", spec.onnx)):
        if p is not None and not p.exists():
            raise ConfigError(
                f"{path}:{line_of(key) or '?'}: {where}: {key} {table[key]!r} does not exist",
                f"paths are relative to {str(path.resolve().parent)!r}; fix the path or commit the file",
            )


class _Lines:
    """Line numbers of tables and keys (tomllib keeps none), found by scanning the text."""

    def __init__(self, text: str, *, pyproject: bool):
        prefix = r"tool\.onnxgate\." if pyproject else ""
        self.lines = text.splitlines()
        self.model_re = re.compile(rf"^\s*\[\[\s*{prefix}model\s*\]\]")
        self.defaults_re = re.compile(rf"^\s*\[\s*{prefix}defaults\s*\]")
        self.top_re = re.compile(r"^\s*\[\s*tool\.onnxgate\s*\]") if pyproject else None
        self.models = [i for i, line in enumerate(self.lines) if self.model_re.match(line)]

    def _key_in(self, start: int | None, key: str) -> int | None:
        if start is None:
            return None
        key_re = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=""")
        for j in range(start + 1, len(self.lines)):
            if re.match(r"^\s*\[", self.lines[j]):
                break
            if key_re.match(self.lines[j]):
                return j + 1
        return None

    def model(self, index: int, key: str | None = None) -> int | None:
        start = self.models[index] if index < len(self.models) else None
        if key is None:
            return None if start is None else start + 1
        return self._key_in(start, key) or (None if start is None else start + 1)

    def defaults(self, key: str) -> int | None:
        start = next((i for i, line in enumerate(self.lines) if self.defaults_re.match(line)), None)
        return self._key_in(start, key)

    def top(self, key: str) -> int | None:
        if self.top_re is not None:
            start = next((i for i, line in enumerate(self.lines) if self.top_re.match(line)), None)
            return self._key_in(start, key)
        header_re = re.compile(rf"""^\s*\[+\s*["']?{re.escape(key)}["']?\s*[\].]""")
        assign_re = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*[=.]""")
        in_header = False
        for j, line in enumerate(self.lines):
            if header_re.match(line) or (not in_header and assign_re.match(line)):
                return j + 1
            in_header = in_header or bool(re.match(r"^\s*\[", line))
        return None
