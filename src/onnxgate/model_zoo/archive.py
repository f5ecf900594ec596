"""Safe extraction of zoo ``.tar.gz`` archives.

Zoo archives hold a model and its ``test_data_set_N/`` directories: regular files and
directories only. Everything else is refused before a byte is written: absolute names,
``..`` components, symbolic and hard links, devices and FIFOs, and archives that would
unpack to more than ``max_bytes`` or ``max_files`` (decompression bombs). The caller
extracts into a fresh temporary directory and renames it into place only on success.
"""

from __future__ import annotations

import os
import re
import tarfile
from pathlib import Path, PurePosixPath

from onnxgate.errors import OnnxgateError

MAX_BYTES = 8 * 1024**3
MAX_FILES = 10_000
CHUNK = 1 << 20


class ArchiveError(OnnxgateError):
    """An archive is unreadable or tries to write outside its target."""


def _refuse(archive: Path, member: str, why: str) -> ArchiveError:
    return ArchiveError(
        f"refusing to extract {archive.name}: member {member!r} {why}",
        "the archive is corrupt or malicious; do not use it",
    )


def _member_path(archive: Path, target: Path, info: tarfile.TarInfo) -> Path:
    name = info.name
    if not name or name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise _refuse(archive, name, "has an absolute path")
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise _refuse(archive, name, "has a '..' component that leaves the target directory")
    dest = target.joinpath(*[p for p in parts if p not in (".", "")])
    # Belt and braces: nothing already on disk (a link) may redirect the path outside.
    if not dest.resolve().is_relative_to(target.resolve()):
        raise _refuse(archive, name, "resolves outside the target directory")
    return dest


def safe_extract(archive: Path, target: Path, *, max_bytes: int = MAX_BYTES, max_files: int = MAX_FILES) -> None:
    """Extract regular files and directories of ``archive`` into ``target``, or raise :class:`ArchiveError`."""
    archive, target = Path(archive), Path(target)
    target.mkdir(parents=True, exist_ok=True)
    files = total = 0
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ArchiveError(f"{archive.name} is not a readable tar archive: {exc}", "re-download or regenerate it") from None
    with tar:
        try:
            for info in tar:
                files += 1
                if files > max_files:
                    raise _refuse(archive, info.name, f"is past the cap of {max_files} entries")
                if info.issym() or info.islnk():
                    raise _refuse(archive, info.name, f"is a link (to {info.linkname!r}); zoo archives hold regular files only")
                if info.isdev():
                    raise _refuse(archive, info.name, "is a device or FIFO")
                dest = _member_path(archive, target, info)
                if info.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                if not info.isfile():
                    raise _refuse(archive, info.name, f"has an unsupported type {info.type!r}")
                total += info.size
                if total > max_bytes:
                    raise _refuse(archive, info.name, f"takes the archive past the cap of {max_bytes} extracted bytes")
                dest.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(info)
                assert src is not None
                with src, open(dest, "wb") as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                os.chmod(dest, 0o644)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise ArchiveError(f"{archive.name} is truncated or corrupt: {exc}", "re-download or regenerate it") from None


def _archive_tree(archive: Path) -> dict[str, str | None]:
    """``{relative path: sha256 of a file, None for a directory}`` as the archive holds them."""
    import hashlib

    tree: dict[str, str | None] = {}
    with tarfile.open(archive, "r:*") as tar:
        for info in tar:
            parts = [p for p in PurePosixPath(info.name.replace("\\", "/")).parts if p not in (".", "")]
            for i in range(1, len(parts)):
                tree.setdefault("/".join(parts[:i]), None)
            if not parts:
                continue
            if info.isdir():
                tree.setdefault("/".join(parts), None)
                continue
            h = hashlib.sha256()
            src = tar.extractfile(info)
            if src is not None:
                with src:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
            tree["/".join(parts)] = h.hexdigest()
    return tree


def _disk_tree(target: Path) -> dict[str, str | None] | None:
    """The same for a directory on disk; None when it holds a link or a special file (never followed)."""
    from onnxgate._io import sha256_file

    tree: dict[str, str | None] = {}
    for here, dirs, files in os.walk(target, followlinks=False):
        for name in dirs + files:
            p = Path(here) / name
            rel = p.relative_to(target).as_posix()
            if p.is_symlink():
                return None
            if p.is_dir():
                tree[rel] = None
            elif p.is_file():
                tree[rel] = sha256_file(p)
            else:
                return None
    return tree


def tree_matches(archive: Path, target: Path) -> bool:
    """Does ``target`` hold exactly what ``archive`` does: the same files with the same bytes, nothing else?"""
    try:
        return _disk_tree(Path(target)) == _archive_tree(Path(archive))
    except (tarfile.TarError, EOFError, OSError):
        return False
