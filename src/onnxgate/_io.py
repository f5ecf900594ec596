"""Output files: checked before work starts, written atomically (never half a file)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path
from typing import Iterator

from onnxgate.errors import OutputPathError


def check_output_path(path: str | Path | None, what: str = "output") -> Path | None:
    """Fail early, before any work, if ``path`` cannot be written.

    A terminal, pipe or FIFO (``/dev/stdout``) is written through; anything else must be a
    regular file (or not exist yet) in a directory where a temporary file can be created and
    renamed: ``/proc/version``, a socket or a directory is refused here, not after the work.
    """
    if path is None:
        return None
    p = Path(path)
    real = Path(os.path.realpath(p)) if p.is_symlink() else p
    kind = _kind(real)
    if kind in ("chr", "fifo"):
        return p  # /dev/stdout, a FIFO: written through, not replaced
    if kind == "dir":
        raise OutputPathError(f"cannot write {what} {str(p)!r}: it is a directory", "give a file path")
    if kind not in ("reg", None):
        raise OutputPathError(f"cannot write {what} {str(p)!r}: it is a {kind}, not a regular file", "give a file path")
    parent = real.parent if str(real.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(
            f"cannot write {what} {str(p)!r}: directory {str(parent)!r} does not exist",
            "create it first or choose another path",
        )
    _probe(parent, p, what)
    return p


def _kind(p: Path) -> str | None:
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        return None
    except OSError:
        return "path that cannot be examined"
    for test, name in ((stat.S_ISREG, "reg"), (stat.S_ISDIR, "dir"), (stat.S_ISCHR, "chr"), (stat.S_ISFIFO, "fifo"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISBLK, "block device")):
        if test(mode):
            return name
    return "special file"


def _write_through(p: Path) -> bool:
    """Paths that must be written in place: symlinks (renaming would replace the link) and non-regular files."""
    if p.is_symlink():
        return True
    try:
        return not stat.S_ISREG(os.stat(p).st_mode)
    except FileNotFoundError:
        return False


def _probe(parent: Path, p: Path, what: str) -> None:
    """Create and remove a temporary file where :func:`write_atomic` will: proves the directory takes writes."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=parent)
    except OSError as exc:
        raise OutputPathError(
            f"cannot write {what} {str(p)!r}: directory {str(parent)!r} does not take new files ({exc.strerror})",
            "choose a path on a normal, writable file system",
        ) from None
    os.close(fd)
    os.unlink(tmp)


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
        os.fchmod(fd, 0o666 & ~current_umask())  # as open() would create it; mkstemp's 0600 is not the user's choice
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


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def locked(lock_path: Path) -> Iterator[None]:
    """An exclusive advisory lock (``fcntl.flock``) held for the block; other processes wait."""
    import fcntl

    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
