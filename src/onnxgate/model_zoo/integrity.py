"""Check every byte a manifest entry names before anything runs.

A hub client downloads ``model_path`` (checked against ``metadata.model_sha`` and
``metadata.model_bytes``) or ``model_with_data_path`` (against ``model_with_data_sha``);
the archive's model must be the manifest's model, and in a local registry the loose
``test_data_set_N/`` files beside ``model_path`` must be the archive's. Each function
returns the problems it found, one line each, naming the file; none is a pass.
"""

from __future__ import annotations

import re
from pathlib import Path

from onnxgate._io import sha256_file

_DATA_SET = re.compile(r"^test_data_set_\d+$")


def local_file_problems(path: Path, label: str, *, sha: str | None, size: int | None) -> list[str]:
    """A local file the manifest names: present, of the recorded size, with the recorded sha256."""
    if not path.is_file() or path.is_symlink():
        return [f"{label}: missing or not a regular file"]
    problems = []
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        problems.append(f"{label}: {actual_size} bytes, the manifest says {size}")
    if sha and (actual := sha256_file(path)) != sha:
        problems.append(f"{label}: sha256 is {actual}, the manifest says {sha}")
    return problems


def archive_model_problems(model_file: Path, archive_label: str, *, sha: str | None) -> list[str]:
    """The model inside the (already sha-checked) archive must be the manifest's ``model_sha``."""
    if sha and (actual := sha256_file(model_file)) != sha:
        return [f"{archive_label}: its {model_file.name} has sha256 {actual}, the manifest's model_sha is {sha}"]
    return []


def _data_files(model_dir: Path) -> dict[str, Path]:
    """``data.json`` and every file under ``test_data_set_N/``, by path relative to ``model_dir``."""
    files = {}
    if (model_dir / "data.json").is_file():
        files["data.json"] = model_dir / "data.json"
    for ds in model_dir.iterdir() if model_dir.is_dir() else ():
        if ds.is_dir() and _DATA_SET.match(ds.name):
            for f in ds.rglob("*"):
                if f.is_file() or f.is_symlink():
                    files[f.relative_to(model_dir).as_posix()] = f
    return files


def loose_data_problems(loose_dir: Path, archived_dir: Path, label_dir: str) -> list[str]:
    """Loose test data beside ``model_path`` against the archive's (extracted and checked) copy.

    Only when the loose directory holds test data: an onnx/models-style zoo keeps it in the archive alone.
    """
    loose = _data_files(loose_dir)
    if not any(k != "data.json" for k in loose):
        return []
    archived = _data_files(archived_dir)
    problems = []
    for rel in sorted(set(loose) | set(archived)):
        label = f"{label_dir}/{rel}" if label_dir else rel
        if rel not in archived:
            problems.append(f"{label}: not in the archive (added after publishing)")
        elif rel not in loose:
            problems.append(f"{label}: missing, the archive holds it")
        elif loose[rel].is_symlink() or sha256_file(loose[rel]) != sha256_file(archived[rel]):
            problems.append(f"{label}: differs from the archive's copy")
    return problems
