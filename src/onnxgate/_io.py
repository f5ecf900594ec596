"""Output files: checked before work starts, written atomically (never half a file)."""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from pathlib import Path

from onnxgate.errors import OutputPathError


def check_output_path(path: str | Path | None, what: str = "output") -> Path | None:
    """Fail early, before any work, if ``path`` cannot be written."""
    if path is None:
        return None
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(
            f"cannot write {what} {str(p)!r}: directory {str(parent)!r} does not exist",
            "create it first or choose another path",
        )
    if _write_through(p) and not p.is_dir():
        return p  # a device, FIFO or symlink such as /dev/stdout: written through, not replaced
    if p.is_dir():
        raise OutputPathError(f"cannot write {what} {str(p)!r}: it is a directory", "give a file path")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write {what} {str(p)!r}: directory is not writable", "choose another path")
    return p


def _write_through(p: Path) -> bool:
    """Paths that must be written in place: symlinks (renaming would replace the link) and non-regular files."""
    if p.is_symlink():
        return True
    try:
        return not stat.S_ISREG(os.stat(p).st_mode)
    except FileNotFoundError:
        return False


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write to a temp file in the same directory, fsync, then rename over ``path``."""
    p = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    if _write_through(p):  # /dev/stdout, a FIFO, a symlink: write through, never rename over it
        with open(p, "wb") as f:
            f.write(raw)
        return
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent or ".")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
