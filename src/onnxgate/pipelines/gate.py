"""The CI gate: convert and validate exactly the models a change touched.

``gate(changed_since="origin/main", shard=(1, 4))`` reads the config, asks git which
files changed in ``REV...HEAD`` (renames followed), selects the models whose source,
sample, ONNX file, watched paths or config table changed, or whose published report
records a package version other than the installed one (dependency drift, ``drift = false``
turns it off; the published model is then replayed on its own test data too), keeps this shard's share, and
for each one: converts, validates, replays the new ONNX model on the previously
published version's test data (drift and I/O signature changes are regressions), and
publishes it when asked. A CI matrix spreads the models over jobs (``--shard K/N``); within a
job, ``--engine ray`` checks each model as one Ray task (onnxgate.engines).

Results are data (:class:`GateResult`); the CLI renders JUnit, Markdown and the exit code.
"""

from __future__ import annotations

import fnmatch
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from onnxgate._progress import NullProgress, labelled
from onnxgate.errors import OnnxgateError, missing_package
from onnxgate.pipelines.config import ConfigError, GateConfig, ModelSpec, config_section, load_config


class GateError(OnnxgateError):
    """The gate cannot run: git failed, a bad --shard, --publish without a registry."""


# -- change selection ------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    status: str  # git's letter: A, M, D, R, C, T
    path: str  # repository-relative, posix
    old_path: str | None = None  # the other side of a rename or copy


def _git(args: Sequence[str], cwd: Path) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise GateError("git is not installed", "install git, or run the gate without --changed-since") from None
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise GateError(
            f"'git {' '.join(args)}' failed in {str(cwd)!r}: {detail}",
            "is this a git checkout with the base revision fetched? (CI: actions/checkout with fetch-depth: 0)",
        )
    return proc.stdout


def repo_root(cwd: Path) -> Path:
    return Path(_git(["rev-parse", "--show-toplevel"], cwd).strip()).resolve()


def parse_name_status(text: str) -> list[Change]:
    """``git diff --name-status -z`` output: ``STATUS\\0PATH\\0`` or ``RNNN\\0OLD\\0NEW\\0``."""
    tokens = text.split("\0")
    changes: list[Change] = []
    i = 0
    while i < len(tokens) and tokens[i]:
        status = tokens[i]
        if status[0] in "RC":
            changes.append(Change(status[0], tokens[i + 2], tokens[i + 1]))
            i += 3
        else:
            changes.append(Change(status[0], tokens[i + 1]))
            i += 2
    return changes


def check_revision(rev: str, cwd: Path) -> None:
    try:
        _git(["rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd)
    except GateError:
        raise GateError(
            f"unknown revision {rev!r} in {str(cwd)!r}",
            "fetch it first (git fetch origin main; in CI checkout with fetch-depth: 0) or pass an existing commit",
        ) from None


def is_null_revision(rev: str | None) -> bool:
    """git's all-zero object name: what CI passes as "before" on a branch's first push (there is no base)."""
    return bool(rev) and len(rev) in (40, 64) and set(rev) == {"0"}


NULL_REVISION_NOTE = ("--changed-since {rev:.12}… is git's null revision (a branch's first push has no previous "
                      "commit): every model is checked")


def changes_since(rev: str, cwd: Path) -> list[Change]:
    """What ``REV...HEAD`` changed (since the merge base), renames detected."""
    check_revision(rev, cwd)
    return parse_name_status(_git(["diff", "--name-status", "-M", "-z", f"{rev}...HEAD"], cwd))


def _old_section(config: GateConfig, top: Path, base: str | None) -> dict[str, Any] | None:
    """The config's onnxgate section at ``base`` (None when it did not exist or did not parse)."""
    if base is None:
        return None
    rel = config.path.resolve().relative_to(top).as_posix()
    try:
        text = _git(["show", f"{base}:{rel}"], top)
        return config_section(text, config.path)
    except OnnxgateError:
        return None


def _rel(path: Path, top: Path) -> str | None:
    try:
        return path.resolve().relative_to(top).as_posix()
    except ValueError:
        return None


def _touches(changed: str, target: str) -> bool:
    return changed == target or changed.startswith(target.rstrip("/") + "/")


def select_models(
    config: GateConfig,
    *,
    changed_since: str | None = None,
    files: Sequence[str | Path] | None = None,
    registry: str | Path | None = None,
) -> dict[str, str]:
    """``{model name: why it was selected}``, in config order.

    Without ``changed_since`` or ``files`` every model is selected. ``files`` (a
    pre-commit hook's staged paths) is compared against HEAD's config. A model whose
    files did not change is still selected when a package recorded in its published
    report (in ``registry``, the config's by default) has another version installed now.
    """
    return _selection(config, changed_since=changed_since, files=files, registry=registry)[0]


def _selection(
    config: GateConfig, *, changed_since: str | None, files: Sequence[str | Path] | None,
    registry: str | Path | None = None,
) -> tuple[dict[str, str], dict[str, Any] | None]:
    """The selected models, and the config's section at the base revision (None when there is none)."""
    if changed_since is None and files is None:
        return {m.name: "all models" for m in config.models}, None
    if is_null_revision(changed_since):
        return {m.name: "no base revision (first push)" for m in config.models}, None
    top = repo_root(config.root)
    if changed_since is not None:
        changes = changes_since(changed_since, top)
        base = _git(["merge-base", changed_since, "HEAD"], top).strip()
    else:
        try:
            base: str | None = _git(["rev-parse", "--verify", "--quiet", "HEAD"], top).strip() or None
        except GateError:  # no commit yet: every model is new
            base = None
        changes = [Change("M", r) for r in (_rel(Path(f), top) for f in files or []) if r]
    old = _old_section(config, top, base)
    old_tables = {t["name"]: t for t in (old or {}).get("model", []) if isinstance(t, dict) and isinstance(t.get("name"), str)}
    defaults_changed = old is not None and old.get("defaults", {}) != config.defaults
    published = _registry_entries(Path(registry) if registry is not None else config.registry)
    selected: dict[str, str] = {}
    for spec in config.models:
        why = _why(spec, config, top, changes, old_tables, old is None, defaults_changed) or _drift_why(spec, *published)
        if why:
            selected[spec.name] = why
    return selected, old


def _registry_entries(registry: Path | None) -> tuple[Path | None, list[dict[str, Any]]]:
    from onnxgate.pipelines.publish import registry_entries

    return registry, (registry_entries(registry) if registry is not None and registry.is_dir() else [])


def published_entry(entries: list[dict[str, Any]], name: str, version: str) -> dict[str, Any] | None:
    """The entry the gate compares ``name`` with: ``version`` itself when published, else the newest other one."""
    from onnxgate.pipelines.publish import version_key

    mine = [e for e in entries if e["model"] == name]
    same = next((e for e in mine if _version_of(e) == version), None)
    return same or max(mine, key=lambda e: version_key(_version_of(e)), default=None)


def _drift_why(spec: ModelSpec, registry: Path | None, entries: list[dict[str, Any]]) -> str | None:
    """"dependencies changed since published V: pkg A → B, ..." when the installed packages differ from the recorded ones."""
    from onnxgate.pipelines.drift import dependency_drift, drift_reason

    entry = published_entry(entries, spec.name, spec.version) if spec.drift and registry is not None else None
    if entry is None:
        return None
    changes = dependency_drift(entry, registry)
    return drift_reason(changes, _version_of(entry)) if changes else None


def _why(
    spec: ModelSpec, config: GateConfig, top: Path, changes: list[Change],
    old_tables: dict[str, Any], no_old_config: bool, defaults_changed: bool,
) -> str | None:
    targets = {k: _rel(p, top) for k, p in (("source", spec.source_path), ("sample", spec.sample), ("onnx", spec.onnx)) if p is not None}
    for change in changes:
        for what, target in targets.items():
            if target and _touches(change.path, target):
                if change.status == "R" and change.old_path:
                    return f"{what} renamed from {change.old_path}"
                return f"{what} changed"
        root = _rel(config.root, top) or ""
        for pattern in spec.watch:
            full = f"{root}/{pattern}" if root and root != "." else pattern
            if fnmatch.fnmatch(change.path, full):
                return f"watched {change.path} changed"
    if no_old_config or spec.name not in old_tables:
        return "new in the config"
    if old_tables[spec.name] != spec.table:
        return "config table changed"
    if defaults_changed:
        return "config defaults changed"
    return None


def parse_shard(text: str | tuple[int, int] | None) -> tuple[int, int] | None:
    if text is None or isinstance(text, tuple):
        return text
    k_s, sep, n_s = str(text).partition("/")
    if sep and k_s.isdigit() and n_s.isdigit() and 1 <= int(k_s) <= int(n_s):
        return int(k_s), int(n_s)
    raise GateError(f"invalid --shard {text!r}", "write K/N with 1 <= K <= N, e.g. --shard 2/4")


def shard_names(names: Sequence[str], shard: tuple[int, int] | None) -> list[str]:
    """Round-robin over the sorted names: every CI job computes the same split, shards differ by at most one."""
    if shard is None:
        return list(names)
    k, n = shard
    return [name for i, name in enumerate(sorted(names)) if i % n == k - 1]


# -- checking one model ----------------------------------------------------------------


@dataclass
class ModelOutcome:
    name: str
    version: str
    why: str
    report: Any = None  # judge.report.Report
    error: str | None = None  # a user error (bad source, failed conversion): the model could not be checked
    previous: str | None = None  # the published version it was compared with
    published: Path | None = None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "error" if self.error else self.report.status

    @property
    def label(self) -> str:
        """The status, or ``warn`` for a pass with accepted drift or other warnings (exit 0 all the same)."""
        return "warn" if self.status == "passed" and self.warnings() else self.status

    def failures(self) -> list[str]:
        return [self.error] if self.error else self.report.failures()

    def warnings(self) -> list[str]:
        """The report's warning findings (``regression = "warn"`` drift among them), one line each."""
        if self.report is None:
            return []
        return [f"{f.check}: {f.message}" for f in self.report.findings if f.level == "warning"]


@dataclass(frozen=True)
class GrantedTrust:
    """What the base revision's config trusts for one model: ``trust`` words and ``trust_types``."""

    words: tuple[str, ...] = ()
    types: tuple[str, ...] = ()


def base_trust(old: dict[str, Any] | None) -> dict[str, GrantedTrust]:
    """Per model name, the trust the config at the base revision grants (never the reviewed change's).

    ``old`` is the onnxgate section at the base revision (None: there is no base, so the
    config grants nothing and only ``ONNXGATE_TRUST`` applies). Malformed values grant nothing.
    """
    from onnxgate.pipelines.config import TRUST_KINDS

    if not old:
        return {}
    defaults = old.get("defaults") if isinstance(old.get("defaults"), dict) else {}
    out: dict[str, GrantedTrust] = {}
    for table in old.get("model", []) if isinstance(old.get("model"), list) else []:
        if not isinstance(table, dict) or not isinstance(table.get("name"), str):
            continue
        words = _strings(table.get("trust", defaults.get("trust", [])))
        types = _strings(table.get("trust_types", defaults.get("trust_types", [])))
        out[table["name"]] = GrantedTrust(tuple(w for w in words if w in TRUST_KINDS), types)
    return out


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()


def _settings(spec: ModelSpec, granted: GrantedTrust) -> Any:
    """The model's settings with the trust the base revision granted (or'ed with ONNXGATE_TRUST when the job sets it).

    Trust written in the reviewed config (``trust``, ``trust_types``) is never applied: a
    change could otherwise grant itself the right to run the code it adds.
    """
    return spec.settings.replace(
        trust_pickle="pickle" in granted.words, trust_code="code" in granted.words, trust_types=granted.types
    )


def _ignored_trust(spec: ModelSpec, granted: GrantedTrust) -> str | None:
    asked = set(spec.trust) | set(spec.settings.load.trust_types)
    extra = sorted(asked - set(granted.words) - set(granted.types))
    if not extra:
        return None
    return (f"trust {extra} in the reviewed config was not applied: the gate takes trust from {TRUST_ENV_NAME} "
            "or from the config at the base revision, never from the change under review")


TRUST_ENV_NAME = "ONNXGATE_TRUST"


def check_model(
    spec: ModelSpec,
    *,
    registry: Path | None,
    publish: bool = False,
    force: bool = False,
    why: str = "",
    progress: Any = None,
    granted: GrantedTrust | None = None,
) -> ModelOutcome:
    """Convert (or load the committed ONNX file), validate, compare with the published version, publish.

    ``granted``: the trust the base revision's config gives this model (none by default).
    """
    from onnxgate.pipelines.publish import latest_published, publish_report
    from onnxgate.pipelines.run import convert, load_source, validate

    progress = labelled(progress or NullProgress(), spec.name)
    start = time.perf_counter()
    outcome = ModelOutcome(spec.name, spec.version, why)
    granted = granted or GrantedTrust()
    ignored = _ignored_trust(spec, granted)
    if ignored:
        outcome.notes.append(ignored)
    try:
        s = _settings(spec, granted)
        policy = s.compare.policy()
        source = spec.source_path if spec.source_path is not None else spec.source
        if spec.onnx is not None:
            with load_source(source, s) as reference:
                report = validate(source, spec.onnx, s, reference=reference, progress=progress)
            model_bytes = spec.onnx.read_bytes()
        else:
            conv = convert(source, None, s, progress=progress)
            try:
                report = validate(source, conv.model, s, conversion=conv, progress=progress)
            finally:
                conv.reference.close()
            model_bytes = conv.model.SerializeToString()
        outcome.report = report
        if registry is not None and spec.regression != "off":
            entries = _published(registry, spec.name)
            same = next((e for e in entries if _version_of(e) == spec.version), None)
            previous = same or latest_published(registry, spec.name)
            if previous is not None:
                with progress.step(f"comparing {spec.name} with published {_version_of(previous)}"):
                    outcome.previous = compare_with_published(
                        report, spec.onnx if spec.onnx is not None else model_bytes, previous, registry, policy,
                        spec.regression, isolation=s.runtime.isolation(),
                    )
                if spec.drift:
                    outcome.notes += replay_if_drifted(report, previous, registry, spec.regression, isolation=s.runtime.isolation())
            if same is not None and publish and not force:
                outcome.notes.append(f"{spec.version} is already published: compared with it, not republished")
                publish = False
        if publish and report.passed:
            pub = publish_report(
                registry, name=spec.name, version=spec.version, model=model_bytes, report=report,
                tags=spec.tags, force=force, progress=progress, base=_source_base(spec),
            )
            outcome.published = pub.directory
    except OnnxgateError as exc:
        outcome.error = str(exc)
    except ModuleNotFoundError as exc:  # a framework this model needs is not installed: this model errors, the rest run
        missing = missing_package(exc)
        if missing is None:
            raise
        outcome.error = f"{spec.name}: {missing}"
    outcome.seconds = round(time.perf_counter() - start, 3)
    return outcome


def _published(registry: Path, name: str) -> list[dict[str, Any]]:
    from onnxgate.pipelines.publish import registry_entries

    return [e for e in registry_entries(registry) if e["model"] == name]


def _version_of(entry: dict[str, Any]) -> str:
    from onnxgate.pipelines.publish import entry_version

    return entry_version(entry)


def signature_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Differences between two ``io_ports`` (names, types, ranks, fixed dims); symbolic dims may change."""
    problems: list[str] = []
    for kind in ("inputs", "outputs"):
        before = {p["name"]: p for p in old.get(kind, [])}
        after = {p["name"]: p for p in new.get(kind, [])}
        for name in before.keys() - after.keys():
            problems.append(f"{kind[:-1]} {name!r} was removed")
        for name in after.keys() - before.keys():
            problems.append(f"{kind[:-1]} {name!r} was added")
        for name in before.keys() & after.keys():
            a, b = before[name], after[name]
            if a.get("type") != b.get("type"):
                problems.append(f"{kind[:-1]} {name!r} type {a.get('type')} -> {b.get('type')}")
            sa, sb = a.get("shape"), b.get("shape")
            if isinstance(sa, list) and isinstance(sb, list):
                fixed_differs = len(sa) != len(sb) or any(
                    isinstance(x, int) and isinstance(y, int) and x != y for x, y in zip(sa, sb)
                )
                if fixed_differs:
                    problems.append(f"{kind[:-1]} {name!r} shape {sa} -> {sb}")
    return sorted(problems)


def compare_with_published(
    report: Any, model: bytes | Path, entry: dict[str, Any], registry: Path, policy: Any, mode: str,
    *, isolation: Any = None,
) -> str:
    """Replay the new model (bytes, or its file) on the published version's test data; record drift
    and signature changes.

    With ``mode="fail"`` drift is a failing case ``vs VERSION`` and a signature change an
    error finding; with ``"warn"`` both are warning findings. ONNX Runtime runs in a worker
    unless ``isolation`` (runtime.isolation.IsolationPolicy) says otherwise, so a new model
    that crashes or hangs (past ``isolation.timeout``) fails this case alone. Returns the
    version compared.
    """
    import onnx

    from onnxgate.model_zoo.manifest import io_ports
    from onnxgate.inputs.evidence import read_test_data_set
    from onnxgate.judge.report import Finding
    from onnxgate.judge.run_cases import run_cases
    from onnxgate.runtime.isolation import IsolationPolicy
    from onnxgate.runtime.ort_runner import OrtRunner, SessionSpec

    version = _version_of(entry)
    level = "error" if mode == "fail" else "warning"
    proto = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load_model(str(model), load_external_data=False)
    new_ports = io_ports(proto)
    changes = signature_changes(entry.get("metadata", {}).get("io_ports") or {}, new_ports)
    for text in changes:
        report.findings.append(Finding(level, "regression", f"I/O signature changed since published {version}: {text}"))
    data_dir = registry / Path(entry["model_path"]).parent / "test_data_set_0"
    if not data_dir.is_dir():
        report.findings.append(Finding("warning", "regression", f"published {version} has no test_data_set_0; drift not checked"))
        return version
    inputs, outputs = read_test_data_set(data_dir)
    if sorted(inputs) != sorted(p["name"] for p in new_ports["inputs"]):
        return version  # the signature finding says why the old data cannot be replayed
    names = [p["name"] for p in new_ports["outputs"] if p["name"] in outputs]
    runner = OrtRunner(SessionSpec.of(model, isolation=isolation or IsolationPolicy(), label=f"the new model of {entry.get('model', '')!r}"))
    (case,) = run_cases(
        runner, [(f"vs published {version}", inputs)], {f"vs published {version}": outputs},
        policy=policy, output_names=names,
        explain=lambda name, feeds, exc: f"the new model cannot run on published {version}'s test data: {exc}",
    )
    if mode == "fail":
        report.cases.append(case)
    else:
        for o in case.outputs:
            if not o.passed:
                report.findings.append(Finding("warning", "regression", f"output {o.name!r} drifted from published {version}: {'; '.join(o.problems)}"))
        if case.error:
            report.findings.append(Finding("warning", "regression", case.error))
    return version


def replay_if_drifted(report: Any, entry: dict[str, Any], registry: Path, mode: str, *, isolation: Any = None) -> list[str]:
    """When the packages recorded for ``entry`` differ from the installed ones, replay the published
    model.onnx on its own published test data (drift.replay_published) and record it as ``mode``
    says (``"fail"``: its cases join the report; ``"warn"``: failures become warnings). Returns notes.
    """
    from onnxgate.judge.report import Finding
    from onnxgate.pipelines.drift import dependency_drift, drift_reason, replay_published

    changes = dependency_drift(entry, registry)
    if not changes:
        return []
    version = _version_of(entry)
    try:
        replay = replay_published(entry, registry, isolation=isolation)
    except OnnxgateError as exc:
        level = "error" if mode == "fail" else "warning"
        report.findings.append(Finding(level, "regression", f"published {version} cannot be replayed on its test data: {exc}"))
        return [drift_reason(changes, version)]
    for case in replay.cases:
        case.name = f"published {version} replayed: {case.name}"
    if mode == "fail":
        report.cases += replay.cases
        report.findings += [f for f in replay.findings if f.level == "error"]
    else:
        report.findings += [Finding("warning", "regression", line) for line in replay.failures()]
    return [f"{drift_reason(changes, version)}; published {version} replayed on its test data: {replay.status}"]


def _source_base(spec: ModelSpec) -> Any:
    from onnxgate.pipelines.provenance import SourceBase

    return SourceBase(spec.root, "config directory") if spec.root is not None else None


# -- the gate --------------------------------------------------------------------------


@dataclass
class GateResult:
    config: Path
    changed_since: str | None
    shard: tuple[int, int] | None
    selected: dict[str, str]  # before sharding: name -> why
    outcomes: list[ModelOutcome] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # about the run as a whole (e.g. no base revision)

    @property
    def status(self) -> str:
        statuses = {o.status for o in self.outcomes}  # the shared verdicts: the worst one wins
        return next((v for v in ("error", "failed", "vacuous") if v in statuses), "passed")

    @property
    def exit_code(self) -> int:
        return 0 if self.status == "passed" else 1

    def to_junit(self) -> str:
        """One <testsuite> per model (a model that could not be checked is one erroring testcase)."""
        from onnxgate.judge.report import Report, junit_xml

        suites = []
        for o in self.outcomes:
            report = o.report  # not ``o.report or ...``: a Report's truth value is "passed"
            if report is None:
                report = Report(source=None, framework=None, model={}, inputs={}, tolerances={}, versions={}, error=o.error)
            if o.error and o.report is not None:
                report.error = o.error
            report.seconds = report.seconds or o.seconds
            suites.append((o.name, report))
        return junit_xml(suites)

    def to_markdown(self) -> str:
        """A summary for $GITHUB_STEP_SUMMARY: one row per model, then the failures."""
        icon = {"passed": "✅", "warn": "🟡", "failed": "❌", "error": "⚠️", "vacuous": "⭕"}
        scope = f"changed since `{self.changed_since}`" if self.changed_since else "all models"
        shard = f", shard {self.shard[0]}/{self.shard[1]}" if self.shard else ""
        lines = [f"## onnxgate gate: {self.status.upper()}", "",
                 f"{len(self.outcomes)} model(s) checked ({scope}{shard}; {len(self.selected)} selected) in {self.seconds:.1f}s", ""]
        if self.outcomes:
            lines += ["| model | version | status | why | worst max abs err | compared with | published | time |",
                      "|---|---|---|---|---|---|---|---|"]
            for o in self.outcomes:
                lines.append(
                    f"| `{o.name}` | {o.version} | {icon.get(o.label, '')} {o.label} | {o.why} | {_worst(o)} | "
                    f"{o.previous or '—'} | {'yes' if o.published else 'no'} | {o.seconds:.1f}s |"
                )
        bad = [o for o in self.outcomes if o.status != "passed"]
        if bad:
            lines += ["", "### Failures", ""]
            for o in bad:
                lines += [f"- `{o.name}`: " + _md(line) for line in o.failures()]
        warned = [(o.name, w) for o in self.outcomes for w in o.warnings()]
        if warned:
            lines += ["", "### Warnings (accepted: the gate passes)", ""] + [f"- `{name}`: {_md(w)}" for name, w in warned]
        notes = [f"- `{o.name}`: {_md(n)}" for o in self.outcomes for n in o.notes] + [f"- {_md(n)}" for n in self.notes]
        if notes:
            lines += ["", "### Notes", ""] + notes
        return "\n".join(lines) + "\n"


def _worst(o: ModelOutcome) -> str:
    if o.report is None:
        return "—"
    errs = [x.max_abs_error for c in o.report.cases for x in c.outputs if x.max_abs_error is not None]
    return f"{max(errs):.3g}" if errs else "—"


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def check_providers(config: GateConfig, to_run: Sequence[str]) -> None:
    """Config errors (exit 2) before any model runs: a provider name ONNX Runtime does not know, in any
    model's table; a provider that cannot run here, in the tables of the models about to run (a
    GPU model may sit in a config that CPU-only shards also read)."""
    import onnxruntime as ort

    from onnxgate.pipelines.run import resolve_providers
    from onnxgate.runtime.providers import canonical_provider

    known = set(ort.get_all_providers())
    for spec in config.models:
        runtime = spec.settings.runtime
        try:
            if spec.name in to_run:
                resolve_providers(runtime.providers, ep_plugins=runtime.run_settings().ep_plugins)
            elif not runtime.ep_plugins:
                unknown = [n for n in runtime.providers or () if n != "all" and canonical_provider(n) not in known]
                if unknown:
                    raise OnnxgateError(f"unknown execution provider {unknown[0]}", "run 'onnxgate providers' to see the names")
        except OnnxgateError as exc:
            raise ConfigError(f"{config.path}: model {spec.name!r}: {exc.message}", exc.hint or "fix providers in the config") from None


def gate(
    config: str | Path | GateConfig | None = None,
    *,
    changed_since: str | None = None,
    files: Sequence[str | Path] | None = None,
    shard: str | tuple[int, int] | None = None,
    publish: bool | None = None,
    registry: str | Path | None = None,
    force: bool | None = None,
    progress: Any = None,
    on_result: Callable[[int, int, ModelOutcome], None] | None = None,
    engine: Any = None,
) -> GateResult:
    """Select, shard, check every model; never stops at the first failure.

    Bad config, git or flags raise (exit 2) before any model runs; a model that
    cannot be converted or loaded is an "error" outcome and the others still run.
    ``engine`` (onnxgate.engines.EngineSettings): by default the models are checked one after
    another here; with ``engine="ray"`` each is one Ray task, and outcomes arrive as they finish
    (``on_result`` in that order, the result in selection order).
    """
    from onnxgate.engines import EngineSettings, check_engine

    started = time.perf_counter()
    engine = engine or EngineSettings()
    check_engine(engine)
    cfg = config if isinstance(config, GateConfig) else load_config(config)
    shard_t = parse_shard(shard)
    reg = Path(registry) if registry is not None else cfg.registry
    if publish and reg is None:
        raise GateError("--publish needs a registry", f"set registry = \"DIR\" under [defaults] in {cfg.path}, or pass --registry DIR")
    selected, old = _selection(cfg, changed_since=changed_since, files=files, registry=reg)
    granted = base_trust(old)
    names = shard_names(list(selected), shard_t)
    check_providers(cfg, names)
    result = GateResult(cfg.path, changed_since, shard_t, selected)
    if is_null_revision(changed_since):
        result.notes.append(NULL_REVISION_NOTE.format(rev=changed_since))
    jobs = [(cfg.model(name), reg, bool(publish), bool(force), selected[name], granted.get(name)) for name in names]
    if engine.engine == "ray":
        result.outcomes = _check_on_ray(jobs, engine, on_result)
    else:
        for i, job in enumerate(jobs, 1):
            spec, reg_, publish_, force_, why, grant = job
            outcome = check_model(spec, registry=reg_, publish=publish_, force=force_, why=why, progress=progress, granted=grant)
            result.outcomes.append(outcome)
            if on_result is not None:
                on_result(i, len(names), outcome)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


_GPU_PROVIDERS = ("cuda", "tensorrt", "rocm", "migraphx", "dml")


def model_resources(spec: ModelSpec) -> dict[str, float]:
    """The Ray resource request for checking ``spec``: one CPU, and a GPU when it validates on a GPU provider."""
    providers = [p.lower() for p in spec.settings.runtime.providers or ()]
    gpu = any(p.startswith(g) for p in providers for g in _GPU_PROVIDERS)
    return {"num_cpus": 1, "num_gpus": 1} if gpu else {"num_cpus": 1}


def _check_remote(spec: ModelSpec, registry: Path | None, publish: bool, force: bool, why: str,
                  granted: GrantedTrust | None) -> ModelOutcome:
    """A Ray task: :func:`check_model` on a cluster node. It runs the model only in onnxgate's
    framework and ORT workers, as the gate does here, so a crash fails this model alone."""
    return check_model(spec, registry=registry, publish=publish, force=force, why=why, granted=granted)


def _check_on_ray(jobs: list[tuple[Any, ...]], engine: Any,
                  on_result: Callable[[int, int, ModelOutcome], None] | None) -> list[ModelOutcome]:
    from onnxgate.engines import CallFailed
    from onnxgate.engines.ray_engine import map_tasks

    outcomes: list[ModelOutcome | None] = [None] * len(jobs)
    finished = 0
    for index, got in map_tasks(_check_remote, jobs, [model_resources(j[0]) for j in jobs], engine):
        spec, why = jobs[index][0], jobs[index][4]
        if isinstance(got, CallFailed):
            got = ModelOutcome(spec.name, spec.version, why, error=got.reason)
        outcomes[index] = got
        finished += 1
        if on_result is not None:
            on_result(finished, len(jobs), got)
    return [o for o in outcomes if o is not None]


__all__ = ["ConfigError", "GateError", "GateResult", "ModelOutcome", "gate", "select_models", "shard_names", "parse_shard"]
