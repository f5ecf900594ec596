"""Provenance of a published model: where it came from and what it was checked with.

``metadata.onnxgate`` of a published entry (and the published ``report.json``) never holds
an absolute path of the publishing machine:

* ``source`` / ``sample``: ``{"path", "relative_to", "sha256"}``; the path is relative to the
  git repository that holds the file, else to the base directory the caller names (the
  gate's config directory, the working directory of ``onnxgate run``), else only the file
  name is kept. A ``module:callable`` source is kept as written.
* ``git``: ``{"commit", "dirty"}`` of that repository (None outside one). ``dirty`` is true
  when any tracked or untracked, not ignored, file other than the registry differs from the
  commit.
* ``host``: the platform and ONNX Runtime's available execution providers on the publisher.
* ``tolerance_rules``: per output, the rule it was held to, with atol and rtol.
"""

from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onnxgate._io import sha256_file


@dataclass(frozen=True)
class SourceBase:
    """The directory a path is made relative to when no git repository holds it, and what it is."""

    directory: Path
    what: str  # "config directory" | "working directory"

    @classmethod
    def cwd(cls) -> "SourceBase":
        return cls(Path.cwd(), "working directory")


@dataclass(frozen=True)
class GitState:
    top: Path
    commit: str | None  # None in a repository without a commit yet
    dirty: bool

    def as_dict(self) -> dict[str, Any]:
        return {"commit": self.commit, "dirty": self.dirty}


def _git(args: list[str], cwd: Path) -> str | None:
    """Git's output, or None where git is missing or says no (not a repository, no commit)."""
    try:
        proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_state(path: Path, *, exclude: Path | None = None) -> GitState | None:
    """The commit and dirty flag of the repository holding ``path`` (``exclude``: a directory not counted as dirt)."""
    here = path if path.is_dir() else path.parent
    top_text = _git(["rev-parse", "--show-toplevel"], here)
    if not top_text:
        return None
    top = Path(top_text.strip()).resolve()
    commit = (_git(["rev-parse", "--verify", "--quiet", "HEAD"], top) or "").strip() or None
    spec = ["."]
    if exclude is not None and (rel := _relative_to(exclude, top)) not in (None, "."):
        spec.append(f":(exclude){rel}")
    status = _git(["status", "--porcelain", "--untracked-files=normal", "--", *spec], top)
    return GitState(top, commit, bool(status and status.strip()))


def _relative_to(path: Path, directory: Path) -> str | None:
    try:
        return path.resolve().relative_to(directory.resolve()).as_posix()
    except ValueError:
        return None


def file_reference(path: Path, base: SourceBase, git: GitState | None) -> dict[str, Any]:
    """``{"path", "relative_to", "sha256"}`` of a source or sample file, never an absolute path."""
    for directory, what in ((git.top if git else None, "repository"), (base.directory, base.what)):
        rel = _relative_to(path, directory) if directory is not None else None
        if rel is not None:
            break
    else:
        rel, what = path.name, "file name only"
    return {"path": rel, "relative_to": what, "sha256": sha256_file(path) if path.is_file() else None}


def _local_path(text: str | None) -> Path | None:
    """The file a report's source or sample names, when it is one."""
    if not text or text.startswith("<"):
        return None
    p = Path(text)
    return p if p.exists() else None


def source_provenance(report: Any, base: SourceBase, *, registry: Path | None = None) -> dict[str, Any]:
    """``source``, ``sample`` and ``git`` for ``metadata.onnxgate``."""
    source = _local_path(report.source)
    sample = _local_path(report.inputs.sample)
    git = git_state(source or sample or base.directory, exclude=registry)
    return {
        "source": file_reference(source, base, git) if source else {"path": report.source, "relative_to": None, "sha256": None},
        "sample": file_reference(sample, base, git) if sample else None,
        "git": git.as_dict() if git else None,
    }


def host_info() -> dict[str, Any]:
    """Where the model was validated: platform and ONNX Runtime's available execution providers."""
    import onnxruntime

    return {
        "platform": platform.platform(terse=True),
        "machine": platform.machine(),
        "providers": list(onnxruntime.get_available_providers()),
    }


def tolerance_rules(report: Any) -> dict[str, dict[str, Any]]:
    """Per output, the first rule it was held to (the calibrated one, an override, a dtype default)."""
    rules: dict[str, dict[str, Any]] = {}
    for case in report.cases:
        for o in case.outputs:
            if o.rule and o.name not in rules:
                rules[o.name] = {"rule": o.rule, "atol": o.atol, "rtol": o.rtol}
    return rules


def public_report_json(report: Any, refs: dict[str, Any]) -> str:
    """``report.to_json()`` with the source and sample as their relative references, not absolute paths."""
    saved = report.source, report.inputs.sample
    try:
        report.source = refs["source"]["path"]
        report.inputs.sample = refs["sample"]["path"] if refs.get("sample") else saved[1]
        return report.to_json()
    finally:
        report.source, report.inputs.sample = saved
