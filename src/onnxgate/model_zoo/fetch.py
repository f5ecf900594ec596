"""Fetch zoo files into a content-addressed cache, checked against sha256 before use.

Downloads go to ``partial/<sha>.part`` and are renamed to ``sha256/<aa>/<sha>`` only once
complete and verified. An interrupted download resumes with an HTTP ``Range`` request
(in the same run after a retry, or in a later run from the kept ``.part``); connection
resets, timeouts and 5xx answers are retried with exponential backoff a bounded number
of times; a 404 fails that file only. A per-file ``fcntl`` lock lets two processes fetch
the same file at once without corrupting the cache: the second waits and reuses it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from onnxgate._io import sha256_file
from onnxgate.errors import OnnxgateError

RETRIES = 4  # after the first attempt
BACKOFF_S = 0.5  # first wait; doubles each retry
TIMEOUT_S = 60.0  # one socket read
DEADLINE_S = 600.0  # one file, all attempts together: a server trickling bytes is given up on
MAX_MANIFEST_BYTES = 64 * 1024**2
MAX_DOWNLOAD_BYTES = 16 * 1024**3  # when the manifest does not say how big a file is
CHUNK = 1 << 16
_URL_RE = re.compile(r"^(https?|file)://", re.IGNORECASE)
_HTTP_RE = re.compile(r"^https?://", re.IGNORECASE)
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


class FetchError(OnnxgateError):
    """One file could not be fetched (404, too many retries, checksum mismatch)."""


class ChecksumError(FetchError):
    """The downloaded bytes do not hash to the sha256 the manifest promises."""


class _Transient(Exception):
    """A failure worth retrying: connection reset, timeout, 5xx, truncated body."""


def default_cache_dir() -> Path:
    """``$ONNXGATE_CACHE``, else ``$XDG_CACHE_HOME/onnxgate``, else ``~/.cache/onnxgate``."""
    if os.environ.get("ONNXGATE_CACHE"):
        return Path(os.environ["ONNXGATE_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "onnxgate"


def is_url(location: str) -> bool:
    return bool(_URL_RE.match(location))


def local_path(location: str) -> Path:
    """A plain path or a ``file://`` URL as a local path."""
    if location.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(location)
        return Path(urllib.request.url2pathname(parsed.path))
    return Path(location).expanduser()


def resolve(manifest_location: str, ref: str) -> str:
    """Where ``ref`` (a manifest's ``model_path``) lives.

    A manifest read over http(s) names http(s) URLs only: a relative or absolute path
    resolves against the manifest's URL on its server, and ``file://``, other schemes and
    local paths are refused, so a remote manifest can never make onnxgate read local files.
    A local manifest's URLs stay as they are and its relative paths resolve against its directory.
    """
    if _HTTP_RE.match(manifest_location):
        return _remote_ref(manifest_location, ref)
    if is_url(ref) or os.path.isabs(ref):
        return ref
    base = local_path(manifest_location)
    base_dir = base if base.is_dir() else base.parent
    return str(base_dir / ref)


def _remote_ref(manifest_url: str, ref: str) -> str:
    if _HTTP_RE.match(ref):
        url = ref
    elif _SCHEME_RE.match(ref) or ref.startswith("\\\\"):
        raise _refused_ref(manifest_url, ref)
    else:
        url = urllib.parse.urljoin(manifest_url, urllib.parse.quote(ref))
    if not _HTTP_RE.match(url):
        raise _refused_ref(manifest_url, ref)
    return url


def _refused_ref(manifest_url: str, ref: str) -> "FetchError":
    return FetchError(
        f"refusing {ref!r} from the remote manifest {manifest_url}: a manifest fetched over http(s) may only name http(s) URLs",
        "the manifest is wrong or hostile; relative paths resolve against the manifest's URL",
    )


# -- HTTP ------------------------------------------------------------------------------


def _user_agent() -> str:
    from onnxgate import __version__

    return f"onnxgate/{__version__}"


def _open(url: str, *, start: int, timeout: float) -> http.client.HTTPResponse:
    headers = {"User-Agent": _user_agent(), "Accept-Encoding": "identity"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        if exc.code == 416:
            raise _RangeRefused() from None
        raise FetchError(f"HTTP {exc.code} {exc.reason} for {url}", "check the manifest's model_path") from None
    except urllib.error.URLError as exc:
        raise _Transient(f"{exc.reason}") from None
    except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
        raise _Transient(f"{type(exc).__name__}: {exc}") from None


class _RangeRefused(Exception):
    """416: the kept partial file is no prefix the server can continue; start over."""


def _download_once(url: str, part: Path, *, limit: int, timeout: float, deadline: float) -> None:
    have = part.stat().st_size if part.exists() else 0
    timeout = min(timeout, _left(url, deadline))
    if have > limit:
        part.unlink()
        have = 0
    try:
        resp = _open(url, start=have, timeout=timeout)
    except _RangeRefused:
        part.unlink(missing_ok=True)
        raise _Transient("server refused to resume (HTTP 416); starting over") from None
    with resp:
        resumed = have > 0 and resp.status == 206
        if resumed:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                raise _Transient(f"server resumed at the wrong offset ({resp.headers.get('Content-Range')!r})")
        else:
            have = 0
        length = resp.headers.get("Content-Length")
        expected = int(length) if length and length.isdigit() else None
        if expected is not None and have + expected > limit:
            raise FetchError(f"{url} is {have + expected} bytes, more than the {limit} the manifest allows", "check the manifest")
        written = 0
        with open(part, "ab" if resumed else "wb") as f:
            try:
                while chunk := resp.read1(CHUNK):  # read1: bytes received before a reset are kept
                    f.write(chunk)
                    written += len(chunk)
                    if have + written > limit:
                        raise FetchError(f"{url} sends more than the {limit} bytes the manifest allows", "check the manifest")
                    _left(url, deadline)
            except (ConnectionError, TimeoutError, http.client.HTTPException, OSError) as exc:
                raise _Transient(f"connection lost after {have + written} bytes ({type(exc).__name__})") from None
        if expected is not None and written < expected:
            raise _Transient(f"connection closed after {have + written} of {have + expected} bytes")


class DeadlineError(FetchError):
    """A download took longer than its overall deadline (all attempts together)."""


def _left(url: str, deadline: float) -> float:
    """Seconds left before ``deadline`` (time.monotonic); past it, a :class:`DeadlineError`."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineError(
            f"giving up on {url}: the download did not finish within its deadline",
            "the server is too slow or stalled; raise --timeout or try again later",
        )
    return left


def _with_retries(url: str, action, *, retries: int, backoff: float, deadline: float) -> None:
    attempt = 0
    while True:
        try:
            action()
            return
        except _Transient as exc:
            _left(url, deadline)
            if attempt >= retries:
                raise FetchError(
                    f"giving up on {url} after {attempt + 1} attempts: {exc}", "the server may be down; try again later"
                ) from None
            time.sleep(min(backoff * (2**attempt), _left(url, deadline)))
            attempt += 1


def download(
    location: str,
    part: Path,
    *,
    limit: int | None = None,
    retries: int = RETRIES,
    backoff: float = BACKOFF_S,
    timeout: float = TIMEOUT_S,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Fetch ``location`` (URL or path) into ``part``, resuming what ``part`` already holds.

    ``timeout`` bounds one socket read, ``deadline_s`` the whole download, retries included.
    """
    limit = MAX_DOWNLOAD_BYTES if limit is None else limit
    if _HTTP_RE.match(location):
        deadline = time.monotonic() + deadline_s
        _with_retries(location, lambda: _download_once(location, part, limit=limit, timeout=timeout, deadline=deadline),
                      retries=retries, backoff=backoff, deadline=deadline)
        return
    src = local_path(location)
    if not src.is_file():
        raise FetchError(f"{str(src)!r} does not exist", "check the manifest's model_path and where the manifest is")
    if src.stat().st_size > limit:
        raise FetchError(f"{str(src)!r} is {src.stat().st_size} bytes, more than the {limit} the manifest allows", "check the manifest")
    with open(src, "rb") as s, open(part, "wb") as d:
        shutil.copyfileobj(s, d, CHUNK)


def download_bytes(url: str, *, retries: int = RETRIES, backoff: float = BACKOFF_S, timeout: float = TIMEOUT_S,
                   deadline_s: float = DEADLINE_S) -> bytes:
    """A small file (a manifest) into memory, with the same retries and deadline."""
    with tempfile.TemporaryDirectory(prefix="onnxgate-") as tmp:
        part = Path(tmp) / "download"
        download(url, part, limit=MAX_MANIFEST_BYTES, retries=retries, backoff=backoff, timeout=timeout, deadline_s=deadline_s)
        return part.read_bytes()


# -- the cache -------------------------------------------------------------------------


@dataclass
class Fetched:
    path: Path
    sha256: str
    hit: bool  # already in the cache: nothing was downloaded


@dataclass
class Cache:
    """``root/sha256/<aa>/<sha>`` blobs, ``root/partial/<sha>.part`` downloads, ``root/extracted/<sha>/`` trees."""

    root: Path
    retries: int = RETRIES
    backoff: float = BACKOFF_S
    timeout: float = TIMEOUT_S
    deadline: float = DEADLINE_S

    def blob(self, sha: str) -> Path:
        return self.root / "sha256" / sha[:2] / sha

    def lock(self, sha: str) -> contextlib.AbstractContextManager[None]:
        from onnxgate._io import locked

        return locked(self.root / "locks" / f"{sha}.lock")

    def fetch(self, location: str, *, sha256: str, size: int | None = None) -> Fetched:
        """The verified local copy of ``location``; downloads only if the cache lacks it."""
        blob = self.blob(sha256)
        if blob.is_file() and sha256_file(blob) == sha256:
            return Fetched(blob, sha256, hit=True)
        with self.lock(sha256):
            if blob.is_file():  # another process finished it while we waited, or it rotted
                if sha256_file(blob) == sha256:
                    return Fetched(blob, sha256, hit=True)
                blob.unlink()
            part = self.root / "partial" / f"{sha256}.part"
            part.parent.mkdir(parents=True, exist_ok=True)
            resumed = part.is_file() and part.stat().st_size > 0
            self._download(location, part, size)
            actual = sha256_file(part)
            if actual != sha256 and resumed:  # the kept .part was no prefix of the file: start from zero
                part.unlink(missing_ok=True)
                self._download(location, part, size)
                actual = sha256_file(part)
            if actual != sha256:
                part.unlink(missing_ok=True)
                raise ChecksumError(
                    f"sha256 mismatch for {location}: the manifest says {sha256}, the download is {actual}; "
                    "the file was deleted",
                    "the file or the manifest changed; regenerate the manifest or report it to the publisher",
                )
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.replace(part, blob)
        return Fetched(blob, sha256, hit=False)

    def _download(self, location: str, part: Path, size: int | None) -> None:
        download(location, part, limit=size, retries=self.retries, backoff=self.backoff, timeout=self.timeout,
                 deadline_s=self.deadline)

    def extract(self, archive: Path, sha256: str, **limits: int) -> Path:
        """The archive's contents under ``root/extracted/<sha>/``, checked against the archive at every use.

        A tree that differs from the (sha256-verified) archive, a changed, missing or extra
        file, is removed and extracted again; debris of an extraction that was killed is
        removed first.
        """
        from onnxgate.model_zoo.archive import safe_extract, tree_matches

        target = self.root / "extracted" / sha256
        with self.lock(sha256):
            _remove_debris(target.parent, sha256)
            if target.is_dir() and not target.is_symlink() and tree_matches(archive, target):
                return target
            if target.is_symlink() or target.exists():
                _remove(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_debris_prefix(sha256), dir=target.parent))
            try:
                safe_extract(archive, tmp, **limits)
                os.rename(tmp, target)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        return target


def _debris_prefix(sha256: str) -> str:
    return f".{sha256[:12]}."


def _remove_debris(parent: Path, sha256: str) -> None:
    """Temporary trees of extractions of ``sha256`` that were killed (the caller holds that sha's lock)."""
    if parent.is_dir():
        for d in parent.glob(_debris_prefix(sha256) + "*"):
            _remove(d)


def _remove(path: Path) -> None:
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)
