"""Publish a model that passed into a registry in the ONNX model-zoo layout.

```
REGISTRY/ONNX_HUB_MANIFEST.json        the ONNX hub manifest, + metadata.onnxgate provenance
REGISTRY/NAME/VERSION/model.onnx
REGISTRY/NAME/VERSION/test_data_set_0/  inputs + the ORIGINAL framework's outputs
REGISTRY/NAME/VERSION/data.json         the tolerances it was validated with (zoo verify reads them)
REGISTRY/NAME/VERSION/report.json
REGISTRY/NAME/VERSION/NAME-VERSION.tar.gz
```

Why it is safe to run anywhere, at any time:

* Everything is built in a staging directory inside the registry (same filesystem) and
  renamed into place, so a reader sees a whole version or none of it. A publisher killed
  half-way leaves only a hidden staging directory, which the next publish removes.
* The rename and the manifest update happen under one exclusive file lock (the
  manifest's hidden lock, ``.ONNX_HUB_MANIFEST.json.lock``); the manifest is replaced atomically. Concurrent publishers of
  different models both end up listed; of the same version, exactly one wins.
* A version listed in the manifest is never overwritten without ``force`` (it is then
  swapped in with one ``renameat2(RENAME_EXCHANGE)`` where the OS has it). A version
  directory that the manifest does not list is debris of a killed publish and is replaced.
* Only a report whose status is "passed" is published.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from onnxgate._io import write_atomic
from onnxgate._progress import NullProgress
from onnxgate.errors import OnnxgateError

MANIFEST_NAME = "ONNX_HUB_MANIFEST.json"
STAGING = ".onnxgate-staging"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


class PublishError(OnnxgateError):
    """A model cannot be published: a bad name or version, an existing version, a failed report."""


@dataclass
class Publication:
    name: str
    version: str
    directory: Path
    manifest: Path
    entry: dict[str, Any]
    replaced: bool  # an existing version was overwritten (force, or debris of a killed publish)


@dataclass
class PublishResult:
    """What :func:`publish` did: the validation report, and the publication when it passed."""

    report: Any
    publication: Publication | None

    @property
    def passed(self) -> bool:
        return self.report.passed


# -- registry queries --------------------------------------------------------------------


def model_path(name: str, version: str) -> str:
    return f"{name}/{version}/model.onnx"


def manifest_of(registry: str | Path) -> Path:
    return Path(registry) / MANIFEST_NAME


def registry_entries(registry: str | Path) -> list[dict[str, Any]]:
    """The registry's manifest entries ([] for a registry that does not exist yet)."""
    from onnxgate.model_zoo.manifest import read_manifest

    path = manifest_of(registry)
    return read_manifest(path) if path.is_file() else []


def entry_version(entry: dict[str, Any]) -> str:
    meta = entry.get("metadata", {}).get("onnxgate") or {}
    return str(meta.get("version") or Path(entry["model_path"]).parent.name)


def version_key(version: str) -> tuple[Any, ...]:
    """Natural order: "1.10.0" after "1.9.0"; numbers before words at the same place."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[.\-+_]|(?<=\d)(?=\D)|(?<=\D)(?=\d)", version) if p)


def latest_published(registry: str | Path, name: str, *, before: str | None = None) -> dict[str, Any] | None:
    """The newest published entry of ``name`` other than version ``before`` (None if there is none)."""
    entries = [e for e in registry_entries(registry) if e["model"] == name and entry_version(e) != before]
    return max(entries, key=lambda e: version_key(entry_version(e)), default=None)


def check_name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise PublishError(
            f"invalid {what} {value!r}: it becomes a directory name",
            "use letters, digits and . _ + - (starting with a letter or digit)",
        )
    return value


def check_target(registry: str | Path, name: str, version: str, *, force: bool = False) -> Path:
    """Fail before any work when ``name``/``version`` is bad or already published (and not ``force``)."""
    check_name(name, "model name")
    check_name(version, "version")
    reg = Path(registry)
    if reg.exists() and not reg.is_dir():
        raise PublishError(f"registry {str(reg)!r} is not a directory", "pass a directory to --publish")
    check_manifest_path(manifest_of(reg))
    if not force and _is_listed(registry_entries(reg), name, version):
        raise PublishError(
            f"{name} {version} is already published in {str(reg)!r}",
            "bump --version, or pass --force to overwrite it",
        )
    return reg / name / version


def _is_listed(entries: list[dict[str, Any]], name: str, version: str) -> bool:
    return any(e["model"] == name and e["model_path"] == model_path(name, version) for e in entries)


# -- publishing ------------------------------------------------------------------------


def publish_report(
    registry: str | Path,
    *,
    name: str,
    version: str,
    model: Any,
    report: Any,
    inputs: dict[str, Any] | None = None,
    outputs: dict[str, Any] | None = None,
    tags: Sequence[str] = (),
    force: bool = False,
    progress: Any = None,
    base: Any = None,
) -> Publication:
    """Publish ``model`` (bytes or ModelProto) with the evidence of a passed ``report``.

    ``inputs``/``outputs`` (the original's outputs on ``inputs``) default to the data
    ``validate()`` kept on the report for its first case. ``base`` (a
    :class:`~onnxgate.pipelines.provenance.SourceBase`, the working directory by default) is
    what source paths are recorded relative to outside a git repository.
    """
    from onnxgate.pipelines.provenance import SourceBase, source_provenance

    progress = progress or NullProgress()
    check_target(registry, name, version, force=force)
    if not report.passed:
        raise PublishError(
            f"refusing to publish {name} {version}: validation {report.status}", "only a model that passed is published"
        )
    if inputs is None or outputs is None:
        if report.evidence is None:
            raise PublishError(f"cannot publish {name} {version}: no reference outputs", "pass inputs= and outputs=")
        inputs, outputs = report.evidence.inputs, report.evidence.outputs
    raw = model if isinstance(model, bytes) else model.SerializeToString()
    reg = Path(registry)
    refs = source_provenance(report, base or SourceBase.cwd(), registry=reg)
    reg.mkdir(parents=True, exist_ok=True)
    (reg / STAGING).mkdir(exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=reg / STAGING))
    try:
        with progress.step(f"publishing {name} {version} to {reg}"):
            build = staging / version
            entry = _stage(build, staging, raw, report, inputs, outputs, name=name, version=version, tags=tags, refs=refs)
            return _commit(reg, build, entry, name=name, version=version, force=force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _stage(
    build: Path, staging: Path, raw: bytes, report: Any, inputs: dict[str, Any], outputs: dict[str, Any],
    *, name: str, version: str, tags: Sequence[str], refs: dict[str, Any],
) -> dict[str, Any]:
    """Write the version's files into ``build`` and return its manifest entry (paths as published)."""
    from onnxgate.model_zoo.manifest import model_entry
    from onnxgate.inputs.evidence import write_test_data_set
    from onnxgate.pipelines.provenance import public_report_json

    build.mkdir()
    write_atomic(build / "model.onnx", raw)
    write_test_data_set(build / "test_data_set_0", inputs, outputs)
    tolerances = validated_tolerances(report)
    if tolerances:
        write_atomic(build / "data.json", json.dumps(tolerances) + "\n")
    report.model.path = model_path(name, version)
    write_atomic(build / "report.json", public_report_json(report, refs))
    extra = provenance(report, name, version, refs)
    entry = model_entry(build, name=name, root=staging, tags=list(tags), extra=extra, version=version)
    _readable(build)
    entry["model_path"] = f"{name}/{entry['model_path']}"
    meta = entry["metadata"]
    if "model_with_data_path" in meta:
        meta["model_with_data_path"] = f"{name}/{meta['model_with_data_path']}"
    return entry


def _readable(build: Path) -> None:
    """Files and directories as ``open``/``mkdir`` would create them under the umask (temp files start as 0600)."""
    from onnxgate._io import current_umask

    umask = current_umask()
    for p in [build, *build.rglob("*")]:
        os.chmod(p, (0o777 if p.is_dir() else 0o666) & ~umask)


JOURNAL = ".onnxgate-journal.json"  # a --force swap in progress: what to undo if its publisher died
ASIDE = ".onnxgate-aside"  # the other side of a --force swap: the new version before, the old one after
PENDING = ".ONNX_HUB_MANIFEST.json.pending"  # the manifest that a --force swap will install
CRASH_ENV = "ONNXGATE_PUBLISH_CRASH_AT"  # fault injection: die before the N-th file-system step of a commit


class _Steps:
    """Counts the commit's file-system steps, for crash injection at each of them."""

    count = 0
    crash_at: int | None = None  # in-process tests: raise SimulatedCrash instead of exiting


class SimulatedCrash(BaseException):
    """Raised at the injected step by in-process crash tests (nothing after it runs, as in a crash)."""


def _step(fn: Any, *args: Any) -> Any:
    _Steps.count += 1
    at = _Steps.crash_at or int(os.environ.get(CRASH_ENV) or 0)
    if at and _Steps.count == at:
        if _Steps.crash_at:
            raise SimulatedCrash(_Steps.count)
        os._exit(86)
    return fn(*args)


def check_manifest_path(manifest: Path) -> None:
    """The manifest must be a regular file or absent: a (dangling) link would be written through, outside the registry."""
    if manifest.is_symlink() or (manifest.exists() and not manifest.is_file()):
        raise PublishError(
            f"refusing to publish: {str(manifest)!r} is a symbolic link or not a regular file",
            "replace it with a regular file (or remove it); onnxgate never writes a manifest through a link",
        )


def _commit(reg: Path, build: Path, entry: dict[str, Any], *, name: str, version: str, force: bool) -> Publication:
    """Under the manifest lock: move the version into place, then replace the manifest.

    Replacing a listed version (``force``) goes through a journal, so that after a crash at
    any step the next publish (or :func:`recover`) puts the registry back in step: the old
    version and the old manifest, or the new version and the new manifest, never a mix.
    """
    from onnxgate._io import locked
    from onnxgate.model_zoo.manifest import dumps, lock_path, merge_entries, read_manifest

    manifest = manifest_of(reg)
    check_manifest_path(manifest)
    target = reg / name / version
    _Steps.count = 0
    with locked(lock_path(manifest)):
        _recover_locked(reg)
        existing = read_manifest(manifest) if manifest.is_file() else []
        listed = _is_listed(existing, name, version)
        if listed and not force:  # another publisher won the race since check_target
            raise PublishError(f"{name} {version} is already published in {str(reg)!r}", "bump --version, or pass --force to overwrite it")
        _remove_stale_staging(reg / STAGING)
        target.parent.mkdir(exist_ok=True)
        text = dumps(merge_entries(existing, [entry]))
        replaced = target.exists()
        if listed:
            _swap_listed(reg, build, target, text)
        else:  # nothing listed is lost: a directory here is debris of a killed publish
            if replaced:
                _step(shutil.rmtree, target)
            _step(os.rename, build, target)
            _step(_fsync_dir, target.parent)
            _step(write_atomic, manifest, text)
    return Publication(name, version, target, manifest, entry, replaced)


def _swap_listed(reg: Path, build: Path, target: Path, manifest_text: str) -> None:
    """Replace a listed version: pending manifest and journal first, then the swap, then the manifest."""
    aside = reg / ASIDE
    spare, spare_old = aside / "version", aside / "version.old"
    _step(lambda: aside.mkdir(exist_ok=True))
    _step(write_atomic, reg / PENDING, manifest_text)
    journal = {"target": str(target.relative_to(reg)), "new_inode": os.stat(build).st_ino}
    _step(write_atomic, reg / JOURNAL, json.dumps(journal))
    _step(os.rename, build, spare)
    if not _step(_exchange, spare, target):  # no renameat2: two renames, the journal covers the gap
        _step(os.rename, target, spare_old)
        _step(os.rename, spare, target)
    _step(_fsync_dir, target.parent)
    _step(os.replace, reg / PENDING, manifest_of(reg))  # the commit point
    _step(_fsync_dir, reg)
    _step(_finish, reg)


def _finish(reg: Path) -> None:
    """After the commit point: drop the old version and the journal."""
    shutil.rmtree(reg / ASIDE, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(reg / JOURNAL)


def recover(registry: str | Path) -> bool:
    """Put a registry whose publisher died mid-``--force`` back in step (under the manifest lock); True if it had to."""
    from onnxgate._io import locked
    from onnxgate.model_zoo.manifest import lock_path

    reg = Path(registry)
    with locked(lock_path(manifest_of(reg))):
        return _recover_locked(reg)


def _recover_locked(reg: Path) -> bool:
    journal_path = reg / JOURNAL
    if not journal_path.is_file():
        with contextlib.suppress(FileNotFoundError):
            os.unlink(reg / PENDING)  # written before a journal that never was: nothing was swapped
        shutil.rmtree(reg / ASIDE, ignore_errors=True)
        return False
    try:
        journal = json.loads(journal_path.read_text())
        target, new_inode = reg / journal["target"], int(journal["new_inode"])
    except (OSError, ValueError, KeyError, TypeError):
        raise PublishError(f"{str(journal_path)!r} is unreadable", "inspect the registry by hand; the old version is under .onnxgate-aside") from None
    if (reg / PENDING).is_file():  # the manifest was not replaced: roll the files back to the old version
        _roll_back(reg, target, new_inode)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(reg / PENDING)
    _finish(reg)
    _fsync_dir(reg)
    return True


def _roll_back(reg: Path, target: Path, new_inode: int) -> None:
    spare, spare_old = reg / ASIDE / "version", reg / ASIDE / "version.old"
    swapped = target.exists() and os.stat(target).st_ino == new_inode
    if swapped and spare.exists():  # exchanged: the old version is the spare
        if not _exchange(spare, target):
            os.rename(target, spare_old.with_name("version.new"))
            os.rename(spare, target)
    elif swapped and spare_old.exists():  # two renames, both done
        os.rename(target, spare)
        os.rename(spare_old, target)
    elif not target.exists() and spare_old.exists():  # two renames, the first done
        os.rename(spare_old, target)
    _fsync_dir(target.parent)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _remove_stale_staging(staging_root: Path) -> None:
    """Staging directories of publishers that died (their pid is gone); called under the lock."""
    for d in staging_root.glob("*-*"):
        pid = d.name.split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def validated_tolerances(report: Any) -> dict[str, float]:
    """The loosest atol/rtol any float output was held to: what a zoo verifier should use too."""
    atols = [o.atol for c in report.cases for o in c.outputs if o.kind == "float" and o.atol is not None]
    rtols = [o.rtol for c in report.cases for o in c.outputs if o.kind == "float" and o.rtol is not None]
    out: dict[str, float] = {}
    if atols:
        out["atol"] = float(max(atols))
    if rtols:
        out["rtol"] = float(max(rtols))
    return out


def provenance(report: Any, name: str, version: str, refs: dict[str, Any]) -> dict[str, Any]:
    """``metadata.onnxgate``: where the model came from and what it was checked against.

    ``refs``: :func:`onnxgate.pipelines.provenance.source_provenance` (source, sample, git).
    """
    from onnxgate.pipelines.provenance import host_info, tolerance_rules

    return {
        "version": version,
        "status": report.status,
        **refs,
        "framework": report.framework,
        "converter": report.conversion.converter if report.conversion else None,
        "versions": report.versions,
        "providers": sorted({c.provider for c in report.cases}),
        "host": host_info(),
        "tolerances": {k: v for k, v in report.tolerances.items() if k != "defaults"},
        "tolerance_rules": tolerance_rules(report),
        "inputs_hash": report.inputs.hash,
        "report": f"{name}/{version}/report.json",
        "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def publish(
    source: Any,
    registry: str | Path,
    settings: Any = None,
    *,
    name: str,
    version: str,
    force: bool = False,
    tags: Sequence[str] | None = None,
    progress: Any = None,
    **options: Any,
) -> PublishResult:
    """Convert and validate ``source``; publish it into ``registry`` only if it passed.

    ``settings``/``options`` take every option of :func:`onnxgate.pipelines.run.validate`
    (settings.Settings field names). Name, version and the registry are checked before any
    work; a failed validation publishes nothing (``result.publication`` is None).
    """
    from onnxgate.pipelines.run import resolve_settings, convert, validate

    s = resolve_settings(settings, options)
    check_target(registry, name, version, force=bool(force))
    conv = convert(source, None, s, progress=progress)
    try:
        report = validate(source, conv.model, s, progress=progress, conversion=conv)
    finally:
        conv.reference.close()
    if not report.passed:
        return PublishResult(report, None)
    pub = publish_report(
        registry, name=name, version=version, model=conv.model, report=report,
        tags=tags or (), force=bool(force), progress=progress,
    )
    return PublishResult(report, pub)
